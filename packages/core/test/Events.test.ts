import { expect, layer } from "@effect/vitest"
import { Chunk, Effect, Fiber, Ref, Stream } from "effect"
import * as Engine from "../src/Engine.js"
import * as Events from "../src/Events.js"
import * as TorchWeights from "../src/TorchWeights.js"
import * as Trainer from "../src/Trainer.js"
import * as F from "./fixtures.js"

layer(Engine.wasm)("Events", (it) => {
  it.scoped("a run streams BatchEnd, LearningRate and EpochEnd events that match the histories", () =>
    Effect.gen(function* () {
      const events = yield* Events.nextRun
      const fiber = yield* Effect.fork(Stream.runCollect(events))
      const t = F.trainer()
      const done = yield* Trainer.train(t, 2, 42)
      const all = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      const batches = all.filter(Events.TrainEvent.$is("BatchEnd"))
      const epochs = all.filter(Events.TrainEvent.$is("EpochEnd"))
      expect(batches).toHaveLength(2 * 5)
      expect(epochs.map((e) => e.loss)).toEqual(done.losses)
      expect(epochs.map((e) => e.valLoss)).toEqual(done.valLosses)
      // The epoch loss is the mean of its mini-batch losses (the chapter's np.mean).
      const first = batches.filter((b) => b.epoch === 0).map((b) => b.loss)
      expect(done.losses[0]).toBeCloseTo(first.reduce((a, b) => a + b, 0) / 5, 12)
      // No scheduler: the lr is announced once.
      expect(all.filter(Events.TrainEvent.$is("LearningRate"))).toEqual([
        Events.TrainEvent.LearningRate({ epoch: 0, batch: 0, lr: 3e-3, momentum: 0.9 })
      ])
      expect(all.at(-1)).toEqual(Events.TrainEvent.TrainEnd({ epochs: 2 }))
      // Nobody asked for layer data: none was copied.
      expect(
        all.some((e) => e._tag === "Gradients" || e._tag === "Parameters" || e._tag === "Activations")
      ).toBe(false)
      Trainer.dispose(t)
      Trainer.dispose(done)
    }).pipe(Effect.provide(Events.layer))
  )

  it.scoped(
    "captureGradients/captureParameters/attachHooks collect only the requested layers, one entry a batch",
    () =>
      Effect.gen(function* () {
        const grads = yield* Events.captureGradients(["fc2"])
        const params = yield* Events.captureParameters(["conv1"])
        const acts = yield* Events.attachHooks(["pool1", "fc1"])
        const t = F.trainer()
        const done = yield* Trainer.train(t, 2, 42)
        const g = yield* grads
        const p = yield* params
        const a = yield* acts
        expect(Object.keys(g)).toEqual(["fc2"])
        expect(Object.keys(g.fc2).sort()).toEqual(["bias", "weight"])
        expect(g.fc2.weight).toHaveLength(10)
        expect(g.fc2.bias[0]).toHaveLength(3)
        expect(Object.keys(p)).toEqual(["conv1"])
        // Parameters as used by the first forward pass are the initial ones.
        // ...in PyTorch's layout ([out, in, kh, kw]), as the chapter's hooks would log them.
        const torch = TorchWeights.toTorch(t.config.model, t.params)
        expect(Array.from(p.conv1.weight[0])).toEqual(Array.from(torch["conv1.weight"].data))
        expect(p.conv1.bias).toHaveLength(10)
        expect(Object.keys(a).sort()).toEqual(["fc1", "pool1"])
        expect(a.pool1).toHaveLength(10)
        // pool1 of a 12x12 input with 3 filters: [8, 3, 5, 5] as PyTorch (NCHW) shows it.
        expect(a.pool1[0].shape).toEqual([8, 3, 5, 5])
        expect(a.fc1[0].shape).toEqual([8, 50])
        // The last gradient of fc2's bias sums to zero (softmax minus one-hot, averaged).
        expect(Math.abs(g.fc2.bias[9].reduce((s, v) => s + v, 0))).toBeLessThan(1e-6)
        Trainer.dispose(t)
        Trainer.dispose(done)
      }).pipe(Effect.provide(Events.layer))
  )

  it.effect("interest lasts exactly as long as the subscriber's scope: nothing to remove", () =>
    Effect.gen(function* () {
      const bus = yield* Events.TrainEvents
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* Events.gradients(["fc1", "fc2"])
          yield* Events.gradients(["fc1"])
          const i = yield* Ref.get(bus.interest)
          expect([...Events.wanted(i, "Gradients")].sort()).toEqual(["fc1", "fc2"])
          expect(i.Gradients.get("fc1")).toBe(2)
        })
      )
      const after = yield* Ref.get(bus.interest)
      expect(Events.wanted(after, "Gradients")).toEqual([])
    }).pipe(Effect.provide(Events.layer))
  )

  it.effect("training without a bus, or with nobody listening, gives the same numbers", () =>
    Effect.gen(function* () {
      const t = F.trainer({ p: 0.3 })
      const plain = yield* Trainer.train(t, 2, 42)
      const observed = yield* Effect.scoped(
        Effect.gen(function* () {
          yield* Events.captureGradients(["fc1"])
          return yield* Trainer.train(t, 2, 42)
        })
      ).pipe(Effect.provide(Events.layer))
      expect(observed.losses).toEqual(plain.losses)
      for (const x of [t, plain, observed]) Trainer.dispose(x)
    })
  )

  it("names layers like PyTorch's named_modules", () => {
    expect(Events.layerOf("featurizer.conv1.weight")).toBe("featurizer.conv1")
    expect(Events.leafOf("featurizer.conv1.weight")).toBe("weight")
  })
})
