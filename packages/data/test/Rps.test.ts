import { readFileSync } from "node:fs"
import { relative } from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { it } from "@effect/vitest"
import { DataLoader, DecodePool, ImageFolder, Rps, Statistics, TensorDataset } from "@stepwise/data"
import { Effect, Layer } from "effect"
import { describe, expect } from "vitest"

const live = Layer.merge(NodeFileSystem.layer, DecodePool.layerDefault)
const fixtures = JSON.parse(readFileSync(new URL("./fixtures/torchvision.json", import.meta.url), "utf8"))

describe("bundled Rock Paper Scissors", () => {
  it.effect("lists files in exactly torchvision's order", () =>
    Effect.gen(function* () {
      const rel = (p: string) => relative(Rps.bundled().root, p)
      const train = yield* ImageFolder.make(Rps.bundled().train)
      const test = yield* ImageFolder.make(Rps.bundled().test)
      expect(train.classes).toEqual(fixtures.rps.classes)
      expect(train.samples.map((s) => rel(s.path))).toEqual(fixtures.rps.trainPaths)
      expect(test.samples.map((s) => rel(s.path))).toEqual(fixtures.rps.testPaths)
    }).pipe(Effect.provide(live))
  )

  it.effect("the chapter's first-batch statistics and totals equal torch's (float32 sums, 1e-4)", () =>
    Effect.gen(function* () {
      const ds = yield* ImageFolder.loadImageFolder(Rps.bundled().train, { resize: 28 })
      const loader = yield* DataLoader.fromTensorDataset(ds, { batchSize: 16 })
      const [first] = yield* DataLoader.collect(loader)
      expect(Array.from(first.y)).toEqual(fixtures.rps.firstBatchLabels)
      const close = (
        a: ReadonlyArray<ReadonlyArray<number>>,
        b: ReadonlyArray<ReadonlyArray<number>>,
        tol: number
      ) =>
        a.forEach((row, i) => {
          row.forEach((v, j) => {
            expect(Math.abs(v - b[i][j])).toBeLessThan(tol)
          })
        })
      close(Statistics.statisticsPerChannel(first), fixtures.rps.firstBatch, 1e-4)
      const totals = yield* Statistics.loaderApply(loader, Statistics.statisticsPerChannel)
      // Sums of 2,520 float32 values in torch: compare relative to their size.
      close(totals, fixtures.rps.totals, 2e-3)
      const norm = yield* Statistics.normalizerFromTotals(totals)
      close([norm.mean, norm.std], [fixtures.rps.mean, fixtures.rps.std], 1e-6)
    }).pipe(Effect.provide(live))
  )

  it.effect("has exactly 2,520 training and 372 test images, 840 / 124 per class", () =>
    Effect.gen(function* () {
      const train = yield* ImageFolder.make(Rps.bundled().train)
      const test = yield* ImageFolder.make(Rps.bundled().test)
      expect(train.classes).toEqual(["paper", "rock", "scissors"])
      expect(train.classToIdx).toEqual({ paper: 0, rock: 1, scissors: 2 })
      expect(train.length).toBe(2520)
      expect(test.length).toBe(372)
      for (let c = 0; c < 3; c++) {
        expect(train.samples.filter((s) => s.label === c).length).toBe(840)
        expect(test.samples.filter((s) => s.label === c).length).toBe(124)
      }
      expect(train.samples[0].path.endsWith("rps/paper/paper01-000.png")).toBe(true)
    }).pipe(Effect.provide(live))
  )

  it.effect("statistics after Resize(28) + ToTensor equal torchvision's (mean/std to 1e-4)", () =>
    Effect.gen(function* () {
      const ds = yield* ImageFolder.loadImageFolder(Rps.bundled().train, { resize: 28 })
      expect(ds.sampleShape).toEqual([3, 28, 28])
      expect(ds.length).toBe(2520)
      const loader = yield* DataLoader.fromTensorDataset(ds, { batchSize: 16 })
      const totals = yield* Statistics.loaderApply(loader, Statistics.statisticsPerChannel)
      expect(totals[0]).toEqual([2520, 2520, 2520])
      const norm = yield* Statistics.makeNormalizer(loader)
      const expectClose = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
        a.forEach((v, i) => {
          expect(Math.abs(v - b[i])).toBeLessThan(1e-4)
        })
      expectClose(norm.mean, [0.8489, 0.8198, 0.8098])
      expectClose(norm.std, [0.2165, 0.26, 0.2748])
      // Standardised with its own statistics, the set has mean 0 and std 1 in the chapter's sense.
      const standardised = yield* TensorDataset.normalize(ds, norm)
      const again = yield* Statistics.makeNormalizer(
        yield* DataLoader.fromTensorDataset(standardised, { batchSize: 16 })
      )
      again.mean.forEach((m) => {
        expect(Math.abs(m)).toBeLessThan(1e-5)
      })
      again.std.forEach((s) => {
        expect(Math.abs(s - 1)).toBeLessThan(1e-5)
      })
    }).pipe(Effect.provide(live))
  )
})
