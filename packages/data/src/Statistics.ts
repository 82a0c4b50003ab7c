/**
 * The chapter's per-channel statistics, `loader_apply`, and `make_normalizer`.
 */
import { Effect, Either, Stream } from "effect"
import type { Batch, Targets } from "./Batch.js"
import type { DataLoader } from "./DataLoader.js"
import { InvalidArgument, type InvalidNormalizer } from "./Errors.js"
import { checkNormalize, type NormalizeParams } from "./Transforms.js"

/**
 * For an NCHW batch, a 3 x C table: the number of images, the sum over images of each image's
 * mean pixel value, and the sum of each image's standard deviation (with Bessel's correction,
 * like `torch.std`), per channel. Summed over a loader, row 1 / row 0 is the mean and
 * row 2 / row 0 the std that `Normalize` uses.
 */
export const statisticsPerChannel = (batch: Batch<Targets>): ReadonlyArray<ReadonlyArray<number>> => {
  const [n, c] = batch.shape
  const hw = batch.shape.slice(2).reduce((a, b) => a * b, 1)
  const sumMeans = new Array<number>(c).fill(0)
  const sumStds = new Array<number>(c).fill(0)
  for (let i = 0; i < n; i++) {
    for (let ch = 0; ch < c; ch++) {
      const base = (i * c + ch) * hw
      let s = 0
      for (let k = 0; k < hw; k++) s += batch.x[base + k]
      const mean = s / hw
      let ss = 0
      for (let k = 0; k < hw; k++) ss += (batch.x[base + k] - mean) ** 2
      sumMeans[ch] += mean
      sumStds[ch] += Math.sqrt(ss / (hw - 1))
    }
  }
  return [new Array<number>(c).fill(n), sumMeans, sumStds]
}

/** A number or nested arrays of numbers (what per-batch functions return). */
export type Nested = number | ReadonlyArray<Nested>

/** Thrown inside `zipWith` only, and caught by `sum`: the two results differ in shape. */
class ShapeDiffers {}

const zipWith = (a: Nested, b: Nested, f: (x: number, y: number) => number): Nested => {
  if (typeof a === "number" && typeof b === "number") return f(a, b)
  if (typeof a !== "number" && typeof b !== "number" && a.length === b.length) {
    return a.map((v, i) => zipWith(v, b[i], f))
  }
  throw new ShapeDiffers()
}

const mapNested = (a: Nested, f: (x: number) => number): Nested =>
  typeof a === "number" ? f(a) : a.map((v) => mapNested(v, f))

/**
 * Element-wise sum of the per-batch results (the chapter's `reduce='sum'`); `InvalidArgument`
 * when two results differ in shape (a per-batch function whose rows depend on the batch).
 */
export const sum = <R extends Nested>(results: ReadonlyArray<R>): Either.Either<R, InvalidArgument> => {
  try {
    return Either.right(results.reduce((acc, r) => zipWith(acc, r, (x, y) => x + y) as R))
  } catch (e) {
    if (!(e instanceof ShapeDiffers)) throw e
    return Either.left(
      new InvalidArgument({
        field: "loaderApply results",
        value: "per batch",
        reason: "have different shapes"
      })
    )
  }
}

/** Element-wise mean of the per-batch results (`reduce='mean'`), checked like `sum`. */
export const mean = <R extends Nested>(results: ReadonlyArray<R>): Either.Either<R, InvalidArgument> =>
  Either.map(sum(results), (total) => mapNested(total, (v) => v / results.length) as R)

/**
 * `loader_apply(loader, func, reduce)`: applies `fn` to every batch of epoch `epoch` and reduces
 * the results (default: element-wise sum).
 */
export const loaderApply = <Y extends Targets, R, E, Rq>(
  loader: DataLoader<Y, E, Rq>,
  fn: (batch: Batch<Y>) => R,
  reduce: (results: ReadonlyArray<R>) => Either.Either<R, InvalidArgument> = sum as unknown as (
    results: ReadonlyArray<R>
  ) => Either.Either<R, InvalidArgument>,
  epoch = 0
): Effect.Effect<R, E | InvalidArgument, Rq> =>
  Effect.flatMap(
    Stream.runFold(loader.batches(epoch), [] as Array<R>, (acc, b) => {
      acc.push(fn(b))
      return acc
    }),
    (results) => reduce(results)
  )

/**
 * Mean and std per channel from `statisticsPerChannel` totals; `InvalidNormalizer` naming the
 * channel when a std is zero (solid-colour images) or a value is not finite (no images, NaN
 * pixels), since standardising with them would put NaN or Infinity into training.
 */
export const normalizerFromTotals = (
  totals: ReadonlyArray<ReadonlyArray<number>>
): Either.Either<NormalizeParams, InvalidNormalizer | InvalidArgument> =>
  checkNormalize(
    {
      mean: totals[1].map((s, c) => s / totals[0][c]),
      std: totals[2].map((s, c) => s / totals[0][c])
    },
    totals[0].length
  )

/** `make_normalizer(loader)`: the `Normalize` parameters learned from a (training) loader. */
export const makeNormalizer = <Y extends Targets, E, R>(
  loader: DataLoader<Y, E, R>
): Effect.Effect<NormalizeParams, E | InvalidNormalizer | InvalidArgument, R> =>
  loader.numSamples === 0
    ? Effect.fail(
        new InvalidArgument({
          field: "loader",
          value: 0,
          reason: "has no samples to learn a normalizer from"
        })
      )
    : Effect.flatMap(loaderApply(loader, statisticsPerChannel), normalizerFromTotals)
