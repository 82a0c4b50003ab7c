import { NodeFileSystem } from "@effect/platform-node"
import { it } from "@effect/vitest"
import { DataLoader, ImageFolder, Rps, Statistics } from "@stepwise/data"
import { Effect } from "effect"
import { describe, expect } from "vitest"

describe("bundled Rock Paper Scissors", () => {
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
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )

  it.effect("statistics after Resize(28) + ToTensor equal torchvision's (mean/std to 1e-4)", () =>
    Effect.gen(function* () {
      const ds = yield* ImageFolder.loadImageFolder(Rps.bundled().train, { resize: 28 })
      expect(ds.sampleShape).toEqual([3, 28, 28])
      expect(ds.length).toBe(2520)
      const loader = DataLoader.fromTensorDataset(ds, { batchSize: 16 })
      const totals = yield* Statistics.loaderApply(loader, Statistics.statisticsPerChannel)
      expect(totals[0]).toEqual([2520, 2520, 2520])
      const norm = yield* Statistics.makeNormalizer(loader)
      const expectClose = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
        a.forEach((v, i) => {
          expect(Math.abs(v - b[i])).toBeLessThan(1e-4)
        })
      expectClose(norm.mean, [0.8489, 0.8198, 0.8098])
      expectClose(norm.std, [0.2165, 0.26, 0.2748])
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
})
