/**
 * Issue 10 item 1 (data side): a normalizer that cannot standardise is an error naming the
 * channel, never NaN or Infinity handed to training. Item 2 (data side): class lists compared by
 * name.
 */

import { it } from "@effect/vitest"
import { DataLoader, Errors, ImageFolder, Statistics, TensorDataset, Transforms } from "@stepwise/data"
import { Effect, Either } from "effect"
import { describe, expect } from "vitest"

/** `n` 2x2 RGB images; channel c of image i holds `pixel(i, c, k)` at position k. */
const images = (n: number, pixel: (i: number, c: number, k: number) => number) =>
  Either.getOrThrow(
    TensorDataset.make({
      x: Float32Array.from({ length: n * 12 }, (_, j) =>
        pixel(Math.floor(j / 12), Math.floor((j % 12) / 4), j % 4)
      ),
      y: new Int32Array(n),
      sampleShape: [3, 2, 2]
    })
  )

const normalizerOf = (ds: TensorDataset.TensorDataset) =>
  Effect.flatMap(DataLoader.fromTensorDataset(ds, { batchSize: 2 }), Statistics.makeNormalizer)

describe("the normalizer refuses what would divide by zero or spread NaN", () => {
  it.effect("solid-colour images: std 0 in channel 1 is InvalidNormalizer naming channel 1", () =>
    Effect.gen(function* () {
      // Channels 0 and 2 vary inside each image; channel 1 is 0.5 everywhere.
      const ds = images(4, (i, c, k) => (c === 1 ? 0.5 : (i + k) / 10))
      const e = yield* Effect.flip(normalizerOf(ds))
      expect(e).toBeInstanceOf(Errors.InvalidNormalizer)
      expect(e).toMatchObject({ channel: 1, mean: 0.5, std: 0 })
      expect(e.message).toMatch(/channel 1 .*std 0/)
    })
  )

  it.effect("a NaN pixel makes the mean of its channel non-finite: InvalidNormalizer naming it", () =>
    Effect.gen(function* () {
      const ds = images(4, (i, c, k) => (i === 2 && c === 2 && k === 1 ? Number.NaN : (i + k + c) / 10))
      const e = yield* Effect.flip(normalizerOf(ds))
      expect(e).toMatchObject({ _tag: "InvalidNormalizer", channel: 2 })
      expect(e.message).toMatch(/not a finite number/)
    })
  )

  it.effect("an empty loader is InvalidArgument, not a crash in the reduction", () =>
    Effect.gen(function* () {
      const empty = Either.getOrThrow(
        TensorDataset.make({ x: new Float32Array(0), y: new Int32Array(0), sampleShape: [3, 2, 2] })
      )
      const e = yield* Effect.flip(normalizerOf(empty))
      expect(e).toMatchObject({ _tag: "InvalidArgument", field: "loader" })
    })
  )

  it.effect("varying images still give the chapter's normalizer (mean of means, mean of stds)", () =>
    Effect.gen(function* () {
      const ds = images(2, (i, c, k) => (k % 2 === 0 ? 0 : 1) * (i + 1) * (c + 1) * 0.1)
      const n = yield* normalizerOf(ds)
      // Image i, channel c: two 0s and two a = 0.1 (i+1)(c+1): mean a/2, sample std a/sqrt(3).
      const a = (i: number, c: number) => 0.1 * (i + 1) * (c + 1)
      for (let c = 0; c < 3; c++) {
        expect(n.mean[c]).toBeCloseTo((a(0, c) / 2 + a(1, c) / 2) / 2, 6)
        expect(n.std[c]).toBeCloseTo((a(0, c) / Math.sqrt(3) + a(1, c) / Math.sqrt(3)) / 2, 6)
      }
    })
  )

  it.effect("TensorDataset.normalize and checkNormalize refuse a zero or non-finite std too", () =>
    Effect.gen(function* () {
      const ds = images(2, (i, c, k) => i + c + k)
      const zero = yield* Effect.flip(TensorDataset.normalize(ds, { mean: [0, 0, 0], std: [1, 1e-50, 1] }))
      expect(zero).toMatchObject({ _tag: "InvalidNormalizer", channel: 1 }) // 1e-50 is 0 in float32
      const inf = Transforms.checkNormalize({ mean: [0, Number.POSITIVE_INFINITY, 0], std: [1, 1, 1] }, 3)
      expect(Either.isLeft(inf) && inf.left).toMatchObject({ _tag: "InvalidNormalizer", channel: 1 })
      const count = Transforms.checkNormalize({ mean: [0], std: [1] }, 3)
      expect(Either.isLeft(count) && count.left._tag).toBe("InvalidArgument")
      const ok = yield* TensorDataset.normalize(ds, { mean: [1, 1, 1], std: [2, 2, 2] })
      expect(ok.x[1]).toBe((ds.x[1] - 1) / 2)
    })
  )

  it.effect("TensorDataset.normalizeInPlace gives normalize's values bit for bit, in the same buffer", () =>
    Effect.gen(function* () {
      const params = { mean: [0.51, 0.47, 0.43], std: [0.21, 0.19, 0.23] }
      const ds = images(5, (i, c, k) => Math.fround((i * 31 + c * 7 + k * 3) / 255))
      const copy = yield* TensorDataset.normalize(ds, params)
      const before = ds.x
      const inPlace = yield* TensorDataset.normalizeInPlace(ds, params)
      expect(inPlace.x).toBe(before)
      expect(Array.from(inPlace.x)).toEqual(Array.from(copy.x))
      // A bad normalizer is refused before anything is overwritten.
      const bad = yield* Effect.flip(TensorDataset.normalizeInPlace(ds, { mean: [0, 0, 0], std: [1, 0, 1] }))
      expect(bad).toMatchObject({ _tag: "InvalidNormalizer", channel: 1 })
      expect(Array.from(ds.x)).toEqual(Array.from(copy.x))
    })
  )
})

describe("Statistics.sum / mean (loader_apply's reductions)", () => {
  it("add element-wise, and refuse results of different shapes with InvalidArgument", () => {
    expect(Statistics.sum([[[1, 2]], [[3, 4]], [[5, 6]]])).toEqual(Either.right([[9, 12]]))
    expect(
      Statistics.mean([
        [1, 3],
        [3, 5]
      ])
    ).toEqual(Either.right([2, 4]))
    const ragged = Statistics.sum<Statistics.Nested>([
      [1, 2],
      [1, 2, 3]
    ])
    expect(Either.getLeft(ragged).pipe((o) => (o._tag === "Some" ? o.value.message : "accepted"))).toBe(
      'invalid loaderApply results = "per batch": have different shapes'
    )
  })
})

describe("ImageFolder.matchClasses (issue 10 item 2)", () => {
  it("the same names: the index of each found class among the expected ones", () => {
    expect(
      ImageFolder.matchClasses(["paper", "rock", "scissors"], ["paper", "rock", "scissors"], "x")
    ).toEqual(Either.right([0, 1, 2]))
    expect(ImageFolder.matchClasses(["a", "b", "c"], ["c", "a", "b"], "x")).toEqual(Either.right([2, 0, 1]))
  })

  it("missing and extra classes are a ClassMismatch naming them and where", () => {
    const two = ImageFolder.matchClasses(["paper", "rock", "scissors"], ["paper", "scissors"], "eval data /d")
    expect(Either.isLeft(two) && two.left).toMatchObject({
      _tag: "ClassMismatch",
      missing: ["rock"],
      extra: [],
      where: "eval data /d"
    })
    expect(Either.isLeft(two) && two.left.message).toBe(
      'classes of eval data /d do not match: missing "rock"'
    )
    const four = ImageFolder.matchClasses(
      ["paper", "rock", "scissors"],
      ["lizard", "paper", "rock", "scissors"],
      "v"
    )
    expect(Either.isLeft(four) && [four.left.missing, four.left.extra]).toEqual([[], ["lizard"]])
    const swapped = ImageFolder.matchClasses(["a", "b"], ["a", "c"], "w")
    expect(Either.isLeft(swapped) && swapped.left.message).toBe(
      'classes of w do not match: missing "b"; unexpected "c"'
    )
  })
})
