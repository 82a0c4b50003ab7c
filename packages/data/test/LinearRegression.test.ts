import { readFileSync } from "node:fs"
import { it as eit } from "@effect/vitest"
import { DataLoader, LinearRegression, Mt19937, TensorDataset } from "@stepwise/data"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"

const fixtures = JSON.parse(readFileSync(new URL("./fixtures/torchvision.json", import.meta.url), "utf8"))
const lr = fixtures.linearRegression

describe("the chapter's linear-regression data", () => {
  it("reproduces NumPy's seed-42 points exactly and torch's seed-13 random_split", () => {
    const data = LinearRegression.chapter()
    expect(Array.from(data.x)).toEqual(lr.x)
    // randn goes through log/sqrt: allow the last bit of libm differences.
    data.y.forEach((v, i) => {
      expect(Math.abs(v - lr.y[i])).toBeLessThan(1e-15)
    })
    expect(data.trainIndices).toEqual(lr.trainIndices)
    expect(data.valIndices).toEqual(lr.valIndices)
    expect(data.train.length).toBe(80)
    expect(data.val.length).toBe(20)
    expect(data.train.x[0]).toBe(Math.fround(lr.x[lr.trainIndices[0]]))
    expect(data.train.y[0]).toBe(Math.fround(lr.y[lr.trainIndices[0]]))
  })

  it("torch.randperm matches for another seed and size", () => {
    expect(Array.from(Mt19937.torchRandperm(7, 37))).toEqual(lr.randperm37seed7)
  })

  it("seeded generation: same seed same data, a fit recovers b = 1, w = 2", () => {
    const a = Either.getOrThrow(LinearRegression.generate({ seed: 1, n: 2000 }))
    expect(Either.getOrThrow(LinearRegression.generate({ seed: 1, n: 2000 })).y).toEqual(a.y)
    expect(Either.getOrThrow(LinearRegression.generate({ seed: 2, n: 2000 })).y).not.toEqual(a.y)
    const n = a.x.length
    const mx = a.x.reduce((p, q) => p + q, 0) / n
    const my = a.y.reduce((p, q) => p + q, 0) / n
    let sxy = 0
    let sxx = 0
    for (let i = 0; i < n; i++) {
      sxy += (a.x[i] - mx) * (a.y[i] - my)
      sxx += (a.x[i] - mx) ** 2
    }
    const w = sxy / sxx
    const b = my - w * mx
    // Standard errors for n = 2000, noise 0.1: ~0.008 for w, ~0.0045 for b.
    expect(Math.abs(w - 2)).toBeLessThan(0.03)
    expect(Math.abs(b - 1)).toBeLessThan(0.02)
    expect(a.train.length).toBe(1600)
  })

  eit.effect("loaders: 5 training batches of 16 (shuffled, seeded), 2 validation batches (16 + 4)", () =>
    Effect.gen(function* () {
      const { train, val } = yield* LinearRegression.loaders(LinearRegression.chapter(), { seed: 42 })
      const tb = yield* DataLoader.collect(train)
      const vb = yield* DataLoader.collect(val)
      expect(tb.map((b) => b.shape)).toEqual(Array(5).fill([16, 1]))
      expect(vb.map((b) => b.shape[0])).toEqual([16, 4])
      expect(vb[0].y).toBeInstanceOf(Float32Array)
    })
  )
})

describe("randomSplit", () => {
  const ds = Either.getOrThrow(
    TensorDataset.make({
      x: Float32Array.from({ length: 10 }, (_, i) => i),
      y: Int32Array.from({ length: 10 }, (_, i) => i),
      sampleShape: [1]
    })
  )
  const split = (lengths: ReadonlyArray<number>, seed: number) =>
    Either.getOrThrow(TensorDataset.randomSplit(ds, lengths, seed))
  it("partitions the dataset, reproducibly per seed", () => {
    const [a, b] = split([7, 3], 5)
    expect([a.length, b.length]).toEqual([7, 3])
    expect([...a.y, ...b.y].sort((p, q) => p - q)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(split([7, 3], 5)[0].y).toEqual(a.y)
    expect(split([7, 3], 6)[0].y).not.toEqual(a.y)
  })
  it("accepts fractions (remainder to the first pieces) and rejects bad lengths as a value", () => {
    expect(TensorDataset.splitCounts(10, [0.33, 0.33, 0.34])).toEqual(Either.right([4, 3, 3]))
    expect(TensorDataset.splitCounts(100, [0.8, 0.2])).toEqual(Either.right([80, 20]))
    const bad = TensorDataset.randomSplit(ds, [5, 4], 1)
    expect(Either.isLeft(bad) && [bad.left._tag, bad.left.field]).toEqual(["InvalidArgument", "lengths"])
    expect(Either.isLeft(bad) && bad.left.message).toMatch(/neither sum to 10/)
  })
})
