/**
 * The real data end to end, kept small for CI: the bundled RPS validation folder (372 images,
 * 124 per class) decoded, normalized with its own statistics, one epoch of the chapter's Adam
 * recipe. The full 10-epoch acceptance on 2,520 + 372 images is `npm run acceptance -w packages/core`.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { DataLoader, ImageFolder, Random, Rps, Statistics } from "@stepwise/data"
import { Effect } from "effect"
import * as Cnn2 from "../src/Cnn2.js"
import * as Loss from "../src/Loss.js"
import * as Metrics from "../src/Metrics.js"
import * as Trainer from "../src/Trainer.js"
import * as F from "./fixtures.js"

beforeAll(F.useEngine)

describe("Acceptance (smoke)", () => {
  it.effect("one epoch of CNN2 + Adam on real Rock Paper Scissors images", () =>
    Effect.gen(function* () {
      const raw = yield* ImageFolder.loadImageFolder(Rps.bundled().test, { resize: 28 })
      expect(raw.length).toBe(372)
      expect(raw.sampleShape).toEqual([3, 28, 28])
      const normalizer = yield* Statistics.makeNormalizer(
        DataLoader.fromTensorDataset(raw, { batchSize: 16 })
      )
      const ds = ImageFolder.normalizeDataset(raw, normalizer)
      const loader = DataLoader.fromTensorDataset(ds, { batchSize: 16, shuffle: true, seed: 13 })
      const t = Trainer.make(
        {
          model: Cnn2.make({ nFilters: 5, p: 0.3 }).model,
          loss: Loss.crossEntropy,
          optimizer: F.adam(3e-4),
          trainLoader: loader,
          valLoader: DataLoader.fromTensorDataset(ds, { batchSize: 16 })
        },
        Random.make(13)
      )
      expect(Trainer.countParameters(t)).toBe(6823)
      const done = yield* Trainer.train(t, 1, 42)
      expect(done.losses).toHaveLength(1)
      // Starts near ln 3 (three balanced classes) and is finite.
      expect(done.losses[0]).toBeGreaterThan(0.8)
      expect(done.losses[0]).toBeLessThan(1.2)
      const rows = yield* Trainer.loaderApply(DataLoader.fromTensorDataset(ds, { batchSize: 16 }), (b) =>
        Trainer.correct(done, b)
      )
      expect(rows.map((r) => r[1])).toEqual([124, 124, 124])
      expect(Metrics.accuracy(rows as Metrics.PerClass)).toBeGreaterThan(1 / 3)
      Trainer.dispose(t)
      Trainer.dispose(done)
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
})
