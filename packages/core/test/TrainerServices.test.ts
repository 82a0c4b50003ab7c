import { expect, layer } from "@effect/vitest"
import { Random } from "@stepwise/data"
import { Optimizers, Schedulers, TfNumeric } from "@stepwise/optim"
import { Effect, Layer } from "effect"
import * as Engine from "../src/Engine.js"
import * as Loss from "../src/Loss.js"
import * as Trainer from "../src/Trainer.js"
import * as F from "./fixtures.js"

// The optimizer and scheduler named once, as optim's layers; the engine runs them.
layer(Engine.wasm)("Trainer.fromServices", (it) => {
  it.effect("trains exactly as make with the same optimizer and scheduler built by hand", () =>
    Effect.gen(function* () {
      const adam = yield* Optimizers.decode({ _tag: "Adam", lr: 0.003 })
      const stepLr = yield* Schedulers.decode({ _tag: "StepLR", stepSize: 1, gamma: 0.5 })
      const l = F.loaders()
      const base = { model: F.cnn(), loss: Loss.crossEntropy, trainLoader: l.train, valLoader: l.val }
      const services = Schedulers.layer(stepLr).pipe(Layer.provideMerge(Optimizers.layer(adam)))
      const viaServices = yield* Effect.provide(Trainer.fromServices(base, Random.unsafeMake(13)), services)
      const engine = yield* Engine.Engine
      // by hand: the same definitions, on the engine's numeric
      const byHand = yield* Trainer.make(
        {
          ...base,
          optimizer: (yield* Optimizers.fromConfig(adam))(engine.numeric),
          scheduler: yield* Schedulers.fromConfig(stepLr)
        },
        Random.unsafeMake(13)
      )
      const a = yield* Trainer.train(viaServices, 2)
      const b = yield* Trainer.train(byHand, 2)
      expect(a.losses).toEqual(b.losses)
      expect(a.valLosses).toEqual(b.valLosses)
      // StepLR(step 1, gamma 0.5) halves the lr every epoch
      expect(a.learningRates).toEqual([0.0015, 0.00075])
      // the engine's numeric, not the generic one: on wasm that is the fused kernels
      expect(engine.numeric).not.toBe(TfNumeric.TfNumeric)
      for (const t of [viaServices, byHand, a, b]) Trainer.dispose(t)
    })
  )

  it.effect("without a Scheduler in context the lr stays the optimizer's", () =>
    Effect.gen(function* () {
      const sgd = yield* Optimizers.decode({ _tag: "SGD", lr: 0.05, momentum: 0.9 })
      const l = F.loaders()
      const t = yield* Effect.provide(
        Trainer.fromServices(
          { model: F.cnn(), loss: Loss.crossEntropy, trainLoader: l.train, valLoader: l.val },
          Random.unsafeMake(13)
        ),
        Optimizers.layer(sgd)
      )
      expect(t.scheduled).toBeUndefined()
      expect(Trainer.hyper(t)).toEqual({ lr: 0.05, momentum: 0.9 })
      const after = yield* Trainer.train(t, 1)
      expect(after.learningRates).toEqual([0.05])
      Trainer.dispose(t)
      Trainer.dispose(after)
    })
  )
})
