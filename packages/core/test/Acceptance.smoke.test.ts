/**
 * The real data end to end, kept small enough for CI. (The full 10-epoch acceptance of both of
 * the chapter's recipes is `npm run acceptance -w packages/core`.)
 *
 * 1. One epoch of CNN2 + Adam on the real Rock Paper Scissors training images, from PyTorch's
 *    initial weights, in ImageFolder order without dropout, against PyTorch 1.13 doing the same
 *    (fixture by scripts/rps_trajectory_fixture.py): all 158 mini-batch losses and the validation
 *    loss agree. On real images (flat white backgrounds: ties in every max-pool window) this is
 *    the whole pipeline, data preparation included, step for step.
 * 2. The chapter's Adam recipe with our own initialisation and dropout for one epoch.
 */
import { readFileSync } from "node:fs"
import { NodeFileSystem } from "@effect/platform-node"
import { expect, layer } from "@effect/vitest"
import { DataLoader, DecodePool, ImageFolder, Random, Rps, Statistics } from "@stepwise/data"
import { Chunk, Effect, Either, Fiber, Layer, Stream } from "effect"
import * as Cnn2 from "../src/Cnn2.js"
import * as Engine from "../src/Engine.js"
import * as Events from "../src/Events.js"
import * as Loss from "../src/Loss.js"
import * as Metrics from "../src/Metrics.js"
import * as TorchWeights from "../src/TorchWeights.js"
import * as Trainer from "../src/Trainer.js"
import * as F from "./fixtures.js"

interface Encoded {
  readonly shape: Array<number>
  readonly data: string
}
const fixture: {
  init: Record<string, Encoded>
  batchLosses: Array<number>
  loss: number
  valLoss: number
} = JSON.parse(readFileSync(new URL("./fixtures/rps-trajectory-torch.json", import.meta.url), "utf8"))

const decode = (e: Encoded): TorchWeights.TorchTensor => {
  const bytes = Buffer.from(e.data, "base64")
  return {
    shape: e.shape,
    data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length))
  }
}

// The chapter's data preparation, decoded once for both tests.
const loadData = Effect.gen(function* () {
  const root = Rps.bundled()
  const rawTrain = yield* ImageFolder.loadImageFolder(root.train, { resize: 28 })
  const rawVal = yield* ImageFolder.loadImageFolder(root.test, { resize: 28 })
  const normalizer = yield* Statistics.makeNormalizer(
    yield* DataLoader.fromTensorDataset(rawTrain, { batchSize: 16 })
  )
  return {
    train: yield* ImageFolder.normalizeDataset(rawTrain, normalizer),
    val: yield* ImageFolder.normalizeDataset(rawVal, normalizer)
  }
}).pipe(
  Effect.provide(Layer.merge(NodeFileSystem.layer, DecodePool.layerDefault)),
  Effect.cached,
  Effect.runPromise
)
const data = await loadData

layer(Engine.wasm)("Acceptance (smoke, real images)", (it) => {
  it.effect("one epoch matches PyTorch 1.13 mini-batch for mini-batch", () =>
    Effect.gen(function* () {
      const { train, val } = yield* data
      expect([train.length, val.length]).toEqual([2520, 372])
      const { model } = Either.getOrThrow(Cnn2.make({ nFilters: 5, p: 0 }))
      const init = Object.fromEntries(Object.entries(fixture.init).map(([k, v]) => [k, decode(v)]))
      const t = Trainer.unsafeMake(
        {
          model,
          loss: Loss.crossEntropy,
          optimizer: F.adam(3e-4),
          trainLoader: yield* DataLoader.fromTensorDataset(train, { batchSize: 16 }),
          valLoader: yield* DataLoader.fromTensorDataset(val, { batchSize: 16 })
        },
        Either.getOrThrow(TorchWeights.unsafeFromTorch(model, init))
      )
      const events = yield* Events.nextRun
      const fiber = yield* Effect.fork(Stream.runCollect(events))
      const done = yield* Trainer.train(t, 1)
      const losses = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
        .filter(Events.TrainEvent.$is("BatchEnd"))
        .map((e) => e.loss)
      expect(losses).toHaveLength(158)
      // float32 in a different summation order: differences stay at rounding level.
      losses.forEach((l, i) => {
        expect(Math.abs(l - fixture.batchLosses[i])).toBeLessThan(1e-4)
      })
      expect(done.losses[0]).toBeCloseTo(fixture.loss, 5)
      expect(done.valLosses[0]).toBeCloseTo(fixture.valLoss, 5)
      Trainer.dispose(t)
      Trainer.dispose(done)
    }).pipe(Effect.scoped, Effect.provide(Events.layer))
  )

  it.effect("one epoch of the chapter's Adam recipe with our initialisation and dropout", () =>
    Effect.gen(function* () {
      const { train, val } = yield* data
      const valLoader = yield* DataLoader.fromTensorDataset(val, { batchSize: 16 })
      const t = Trainer.unsafeMake(
        {
          model: Either.getOrThrow(Cnn2.make({ nFilters: 5, p: 0.3 })).model,
          loss: Loss.crossEntropy,
          optimizer: F.adam(3e-4),
          trainLoader: yield* DataLoader.fromTensorDataset(train, { batchSize: 16, shuffle: true, seed: 13 }),
          valLoader
        },
        Random.unsafeMake(13)
      )
      expect(Trainer.countParameters(t)).toBe(6823)
      const done = yield* Trainer.train(t, 1, 42)
      // Starts near ln 3 (three balanced classes) and learns within the epoch.
      expect(done.losses[0]).toBeLessThan(1.1)
      expect(done.valLosses[0]).toBeLessThan(1.1)
      const rows = yield* Trainer.loaderApply(valLoader, (b) => Trainer.correct(done, b))
      expect(rows.map((r) => r[1])).toEqual([124, 124, 124])
      expect(Metrics.accuracy(rows as Metrics.PerClass)).toBeGreaterThan(0.4)
      Trainer.dispose(t)
      Trainer.dispose(done)
    })
  )
})
