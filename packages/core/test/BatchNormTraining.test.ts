import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { expect, layer } from "@effect/vitest"
import { Random } from "@stepwise/data"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import * as Checkpoint from "../src/Checkpoint.js"
import * as Engine from "../src/Engine.js"
import * as Loss from "../src/Loss.js"
import * as ModelSpec from "../src/ModelSpec.js"
import * as Trainer from "../src/Trainer.js"
import * as F from "./fixtures.js"

/** The acceptance model in small: BatchNorm, LeakyReLU, average pooling, from data. */
const model = () => {
  const built = ModelSpec.make(
    {
      layers: [
        { type: "Conv2d", name: "conv1", outChannels: 4, kernelSize: 3, padding: 1 },
        { type: "BatchNorm2d", name: "bn1" },
        { type: "LeakyReLU" },
        { type: "AvgPool2d", kernelSize: 2 },
        { type: "Dropout2d", p: 0.2 },
        { type: "Flatten" },
        { type: "Linear", name: "fc1", outFeatures: 16 },
        { type: "BatchNorm1d", name: "bn2" },
        { type: "ReLU" },
        { type: "Linear", name: "fc2", outFeatures: 3 }
      ]
    },
    [3, 12, 12]
  )
  if (Either.isLeft(built)) throw built.left
  return built.right.module
}

const trainer = () => {
  const l = F.loaders()
  return Trainer.unsafeMake(
    { model: model(), loss: Loss.crossEntropy, optimizer: F.adam(), trainLoader: l.train, valLoader: l.val },
    Random.unsafeMake(13)
  )
}

const bufferValues = (t: Trainer.Trainer<any, any>) => F.values(t.buffers)

layer(Engine.wasm)("training a model with BatchNorm: the trainer threads its buffers", (it) => {
  it.effect(
    "running statistics move with every step, never through the optimizer; eval mode reads them",
    () =>
      Effect.gen(function* () {
        const t = trainer()
        expect(Object.keys(t.buffers).sort()).toEqual([
          "bn1.num_batches_tracked",
          "bn1.running_mean",
          "bn1.running_var",
          "bn2.num_batches_tracked",
          "bn2.running_mean",
          "bn2.running_var"
        ])
        expect(Object.keys(t.params)).not.toContain("bn1.running_mean")
        const done = yield* Trainer.train(t, 3, 42)
        const after = bufferValues(done)
        // 40 samples in batches of 8: 5 steps an epoch.
        expect(after["bn1.num_batches_tracked"]).toEqual([15])
        expect(after["bn2.num_batches_tracked"]).toEqual([15])
        expect(after["bn1.running_mean"].some((v) => Math.abs(v) > 1e-3)).toBe(true)
        expect(after["bn1.running_var"].every((v) => v > 0 && v !== 1)).toBe(true)
        expect(bufferValues(t)["bn1.num_batches_tracked"]).toEqual([0])
        expect(done.losses[2]).toBeLessThan(done.losses[0])
        // Validation is eval mode: the running statistics, so the same numbers as a recomputation.
        const val = F.loaders().val
        const recomputed = yield* Trainer.evaluate(done, val, 3)
        expect(recomputed).toBe(done.valLosses[2])
        // And those statistics matter: fresh ones give another validation loss.
        const fresh = { ...done, buffers: trainer().buffers }
        expect(yield* Trainer.evaluate(fresh, val, 3)).not.toBe(done.valLosses[2])
        Trainer.dispose(t)
        Trainer.dispose(done)
        tf.dispose(Object.values(fresh.buffers))
      })
  )

  it.scoped("buffers reach checkpoints: resuming gives exactly the uninterrupted run", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const path = `${yield* fs.makeTempDirectoryScoped()}/run.safetensors`
      const t = trainer()
      const whole = yield* Trainer.train(t, 3, 42)
      const half = yield* Trainer.train(t, 1, 42, { onEpochEnd: Checkpoint.everyEpoch(path) })
      const resumed = yield* Checkpoint.resume(path, t)
      expect(bufferValues(resumed)).toEqual(bufferValues(half))
      const finished = yield* Trainer.train(resumed, 2, 42)
      F.expectSameRun(finished, whole)
      expect(bufferValues(finished)).toEqual(bufferValues(whole))
      for (const x of [t, whole, half, resumed, finished]) Trainer.dispose(x)
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
