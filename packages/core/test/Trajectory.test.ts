/**
 * The training loop against PyTorch 1.13 (fixture by scripts/trajectory_fixture.py): the same
 * initial weights and mini-batches, two epochs of StepByStep's loop, for Adam and for the
 * chapter's SGD + Nesterov + CyclicLR(triangular2) stepped per batch with momentum cycling.
 * Every mini-batch loss, the epoch and validation losses, the learning rates and the final
 * weights must agree (float32 arithmetic in a different order: small tolerances).
 */
import { readFileSync } from "node:fs"
import { expect, layer } from "@effect/vitest"
import { DataLoader, TensorDataset } from "@stepwise/data"
import { Adam, CyclicLR, type Optimizer, Optimizers, SGD, TfNumeric } from "@stepwise/optim"
import type * as tf from "@tensorflow/tfjs-core"
import { Chunk, Effect, Either, Fiber, Stream } from "effect"
import * as Cnn2 from "../src/Cnn2.js"
import * as Engine from "../src/Engine.js"
import * as Events from "../src/Events.js"
import * as Loss from "../src/Loss.js"
import * as TorchWeights from "../src/TorchWeights.js"
import * as Trainer from "../src/Trainer.js"

interface Encoded {
  readonly shape: Array<number>
  readonly data: string
}
interface Run {
  readonly batchLosses: Array<number>
  readonly losses: Array<number>
  readonly valLosses: Array<number>
  readonly learningRates: Array<number>
  readonly final: Record<string, Encoded>
}
const fixture: { init: Record<string, Encoded>; x: Encoded; y: Array<number>; adam: Run; sgd: Run } =
  JSON.parse(readFileSync(new URL("./fixtures/trajectory-torch.json", import.meta.url), "utf8"))

const decode = (e: Encoded): TorchWeights.TorchTensor => {
  const bytes = Buffer.from(e.data, "base64")
  return {
    shape: e.shape,
    data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length))
  }
}
const decodeAll = (r: Record<string, Encoded>) =>
  Object.fromEntries(Object.entries(r).map(([k, v]) => [k, decode(v)]))

const { model } = Either.getOrThrow(Cnn2.make({ nFilters: 5, p: 0 }))
const x = decode(fixture.x).data
const per = 3 * 28 * 28
const set = (from: number, to: number) =>
  Either.getOrThrow(
    TensorDataset.make({
      x: x.slice(from * per, to * per),
      y: Int32Array.from(fixture.y.slice(from, to)),
      sampleShape: [3, 28, 28]
    })
  )
const trainLoader = Either.getOrThrow(DataLoader.fromTensorDataset(set(0, 32), { batchSize: 8, prefetch: 0 }))
const valLoader = Either.getOrThrow(DataLoader.fromTensorDataset(set(32, 48), { batchSize: 8, prefetch: 0 }))

/** optim's definition on plain tfjs ops, and on the engine's numeric (its fused kernels). */
const optimizers = (config: Optimizers.OptimizerConfig) =>
  Effect.gen(function* () {
    const def = yield* Optimizers.fromConfig(config)
    const { numeric } = yield* Engine.Engine
    return { generic: def(TfNumeric.TfNumeric), fused: def(numeric) }
  })

const check = (
  run: Run,
  optimizer: Optimizer.Optimizer<tf.Tensor>,
  scheduler?: Trainer.Config["scheduler"]
) =>
  Effect.gen(function* () {
    const t = Trainer.unsafeMake(
      { model, loss: Loss.crossEntropy, optimizer, scheduler, trainLoader, valLoader },
      Either.getOrThrow(TorchWeights.unsafeFromTorch(model, decodeAll(fixture.init)))
    )
    const events = yield* Events.nextRun
    const fiber = yield* Effect.fork(Stream.runCollect(events))
    const done = yield* Trainer.train(t, 2)
    const batchLosses = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      .filter(Events.TrainEvent.$is("BatchEnd"))
      .map((e) => e.loss)
    const close = (a: ReadonlyArray<number>, b: ReadonlyArray<number>, tol: number) => {
      expect(a).toHaveLength(b.length)
      a.forEach((v, i) => {
        expect(Math.abs(v - b[i])).toBeLessThan(tol * Math.max(1, Math.abs(b[i])))
      })
    }
    close(batchLosses, run.batchLosses, 2e-5)
    close(done.losses, run.losses, 2e-5)
    close(done.valLosses, run.valLosses, 2e-5)
    close(done.learningRates, run.learningRates, 1e-12)
    const ours = TorchWeights.toTorch(model, done.params)
    for (const [name, want] of Object.entries(decodeAll(run.final))) {
      close(Array.from(ours[name].data), Array.from(want.data), 1e-4)
    }
    Trainer.dispose(t)
    Trainer.dispose(done)
  }).pipe(Effect.scoped, Effect.provide(Events.layer))

layer(Engine.wasm)("Trainer against PyTorch's StepByStep loop (fixture)", (it) => {
  it.effect("Adam: every mini-batch loss, validation losses and final weights", () =>
    Effect.gen(function* () {
      const o = yield* optimizers(Adam.Config.make({ lr: 3e-3 }))
      yield* check(fixture.adam, o.generic)
      yield* check(fixture.adam, o.fused)
    })
  )

  it.effect("SGD Nesterov + CyclicLR(triangular2) per batch: losses, learning rates and final weights", () =>
    Effect.gen(function* () {
      const o = yield* optimizers(yield* SGD.decode({ lr: 0.03, momentum: 0.9, nesterov: true }))
      const cyclic = yield* CyclicLR.make({ baseLr: 1e-3, maxLr: 1e-2, stepSizeUp: 4, mode: "triangular2" })
      yield* check(fixture.sgd, o.generic, cyclic)
      yield* check(fixture.sgd, o.fused, cyclic)
    })
  )
})
