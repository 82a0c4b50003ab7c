import { it as eit } from "@effect/vitest"
import { DataLoader, Random, TensorDataset } from "@stepwise/data"
import { Effect, Either, Stream } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"

// 10 samples of shape [1, 1, 2]: sample i holds [i, 10 + i], label i % 3.
const ds = Either.getOrThrow(
  TensorDataset.make({
    x: Float32Array.from({ length: 20 }, (_, k) => (k % 2 === 0 ? k / 2 : 10 + (k - 1) / 2)),
    y: Int32Array.from({ length: 10 }, (_, i) => i % 3),
    sampleShape: [1, 1, 2],
    classes: ["a", "b", "c"]
  })
)

describe("TensorDataset", () => {
  it("checks shapes and gathers samples in the given order", () => {
    expect(ds.length).toBe(10)
    const b = TensorDataset.gather(ds, [3, 0])
    expect(b.shape).toEqual([2, 1, 1, 2])
    expect(Array.from(b.x)).toEqual([3, 13, 0, 10])
    expect(Array.from(b.y)).toEqual([0, 0])
    const bad = TensorDataset.make({ x: new Float32Array(5), y: new Int32Array(2), sampleShape: [2] })
    expect(Either.isLeft(bad) && bad.left._tag).toBe("ShapeMismatch")
    expect(Either.isLeft(bad) && bad.left.message).toMatch(/x has 5 elements, expected 4/)
    const badY = TensorDataset.make({ x: new Float32Array(4), y: new Int32Array(3), sampleShape: [2] })
    expect(Either.isLeft(badY) && [badY.left.field, badY.left.expected, badY.left.actual]).toEqual([
      "y",
      2,
      3
    ])
  })

  it("a bad batch size is an InvalidArgument value, not an exception", () => {
    for (const batchSize of [0, -1, 2.5, Number.NaN]) {
      const r = DataLoader.fromTensorDataset(ds, { batchSize })
      expect(Either.isLeft(r) && [r.left._tag, r.left.field]).toEqual(["InvalidArgument", "batchSize"])
    }
    expect(Either.isRight(DataLoader.fromTensorDataset(ds, { batchSize: 1 }))).toBe(true)
  })
})

describe("DataLoader", () => {
  eit.effect("without shuffle: dataset order, last batch short unless dropLast", () =>
    Effect.gen(function* () {
      const loader = yield* DataLoader.fromTensorDataset(ds, { batchSize: 4 })
      expect(loader.numBatches).toBe(3)
      const batches = yield* DataLoader.collect(loader)
      expect(batches.map((b) => b.shape[0])).toEqual([4, 4, 2])
      expect(Array.from(batches[2].x)).toEqual([8, 18, 9, 19])
      expect(Array.from(batches[2].y)).toEqual([2, 0])
      const dropped = yield* DataLoader.fromTensorDataset(ds, { batchSize: 4, dropLast: true })
      expect(dropped.numBatches).toBe(2)
      expect((yield* DataLoader.collect(dropped)).length).toBe(2)
    })
  )

  eit.effect("shuffle order is a pure function of (seed, epoch) and changes per epoch", () =>
    Effect.gen(function* () {
      const loader = yield* DataLoader.fromTensorDataset(ds, { batchSize: 3, shuffle: true, seed: 5 })
      const labelsOf = (bs: ReadonlyArray<{ x: Float32Array }>) =>
        bs.flatMap((b) => Array.from(b.x).filter((_, k) => k % 2 === 0))
      const e0 = labelsOf(yield* DataLoader.collect(loader, 0))
      const e0again = labelsOf(
        yield* DataLoader.collect(
          yield* DataLoader.fromTensorDataset(ds, { batchSize: 3, shuffle: true, seed: 5 }),
          0
        )
      )
      const e1 = labelsOf(yield* DataLoader.collect(loader, 1))
      expect(e0).toEqual(e0again)
      expect(e0).not.toEqual(e1)
      expect([...e0].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      const [expected] = Random.shuffle(Random.foldIn(Random.unsafeMake(5), 1), 10)
      expect(e1).toEqual(Array.from(expected))
    })
  )

  eit.effect(
    "reused batches: the fresh batches' values, in a few buffers, for a consumer done with each before the next",
    () =>
      Effect.gen(function* () {
        for (const prefetch of [0, 2]) {
          const options = { batchSize: 3, shuffle: true, seed: 7, prefetch }
          const loader = yield* DataLoader.fromTensorDataset(ds, options)
          const fresh = yield* DataLoader.collect(loader, 4)
          // Copied as they arrive: each is only valid until the next pull.
          const seen: Array<{ x: Array<number>; y: Array<number>; shape: ReadonlyArray<number> }> = []
          const buffers = new Set<ArrayBufferLike>()
          yield* Stream.runForEach(loader.batches(4, { reuse: true }), (b) =>
            Effect.sync(() => {
              seen.push({ x: Array.from(b.x), y: Array.from(b.y), shape: b.shape })
              buffers.add(b.x.buffer)
            })
          )
          expect(seen).toEqual(fresh.map((b) => ({ x: Array.from(b.x), y: Array.from(b.y), shape: b.shape })))
          expect(seen.map((b) => b.shape[0])).toEqual([3, 3, 3, 1])
          // 4 batches from prefetch + 3 buffers: without prefetch the 4th reuses the 1st's.
          expect(buffers.size).toBe(Math.min(4, prefetch + 3))
          // The next epoch takes the same buffers back (no fresh memory per epoch).
          const again = new Set<ArrayBufferLike>()
          yield* Stream.runForEach(loader.batches(5, { reuse: true }), (b) =>
            Effect.sync(() => again.add(b.x.buffer))
          )
          expect([...again].every((b) => buffers.has(b))).toBe(true)
        }
      })
  )

  it("batchIndices partitions the samples (minus the dropped tail) for any size, batch and epoch", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 1, max: 40 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 1000 }),
        fc.nat(50),
        (n, batchSize, shuffle, dropLast, seed, epoch) => {
          const batches = DataLoader.batchIndices(n, { batchSize, shuffle, dropLast, seed }, epoch)
          expect(batches.length).toBe(DataLoader.countBatches(n, batchSize, dropLast))
          const seen = batches.flatMap((b) => Array.from(b))
          expect(new Set(seen).size).toBe(seen.length)
          expect(seen.every((i) => i >= 0 && i < n)).toBe(true)
          expect(seen.length).toBe(dropLast ? batches.length * batchSize : n)
          batches.forEach((b, k) => {
            expect(b.length).toBe(k < batches.length - 1 || dropLast ? batchSize : n - k * batchSize)
          })
        }
      )
    )
  })
})
