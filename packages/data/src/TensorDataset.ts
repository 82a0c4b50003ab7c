/**
 * An in-memory dataset: every sample already a float32 tensor, laid end to end.
 * This is what `ImageFolder` decodes to once, and what loaders slice batches from.
 */
import { Either } from "effect"
import type { Batch, Targets } from "./Batch.js"
import { InvalidArgument, type InvalidNormalizer, ShapeMismatch } from "./Errors.js"
import * as Random from "./Random.js"
import { checkNormalize, type NormalizeParams, normalizeCHWInto } from "./Transforms.js"

/** (Declared in `Errors`; re-exported where it was first defined.) */
export { ShapeMismatch }

export interface TensorDataset<Y extends Targets = Int32Array> {
  /** `length` samples of `sampleShape` each, row-major, one after another. */
  readonly x: Float32Array
  /** Targets; `length * targetSize` entries. */
  readonly y: Y
  /** Shape of one sample: `[c, h, w]` for images, `[features]` for tabular data. */
  readonly sampleShape: ReadonlyArray<number>
  readonly length: number
  /** Class names (index = class id), when the targets are classes. */
  readonly classes?: ReadonlyArray<string>
}

/** Elements in one sample. */
export const sampleSize = (ds: { readonly sampleShape: ReadonlyArray<number> }): number =>
  ds.sampleShape.reduce((a, b) => a * b, 1)

/** Targets per sample (1 for class indices and for single-output regression). */
export const targetSize = (ds: TensorDataset<Targets>): number =>
  ds.length === 0 ? 1 : ds.y.length / ds.length

/**
 * A dataset from flat arrays, checking that `x` and `y` agree with `sampleShape`.
 * The arrays are used as they are (not copied): treat them as immutable afterwards.
 */
export const make = <Y extends Targets>(args: {
  readonly x: Float32Array
  readonly y: Y
  readonly sampleShape: ReadonlyArray<number>
  readonly classes?: ReadonlyArray<string>
}): Either.Either<TensorDataset<Y>, ShapeMismatch> => {
  const per = sampleSize(args)
  const length = args.y.length === 0 ? 0 : Math.floor(args.x.length / per)
  if (per <= 0 || length * per !== args.x.length) {
    return Either.left(new ShapeMismatch({ field: "x", expected: length * per, actual: args.x.length }))
  }
  if (length > 0 && args.y.length % length !== 0) {
    return Either.left(new ShapeMismatch({ field: "y", expected: length, actual: args.y.length }))
  }
  return Either.right({
    x: args.x,
    y: args.y,
    sampleShape: [...args.sampleShape],
    length,
    ...(args.classes ? { classes: [...args.classes] } : {})
  })
}

/** The samples at `indices`, in that order, as one batch (the loader's gather step). */
export const gather = <Y extends Targets>(ds: TensorDataset<Y>, indices: ArrayLike<number>): Batch<Y> =>
  gatherInto(ds, indices, batchArrays(ds, indices.length))

/** Zeroed arrays for a batch of `n` samples of `ds` (its targets' type: labels or values). */
export const batchArrays = <Y extends Targets>(
  ds: TensorDataset<Y>,
  n: number
): { readonly x: Float32Array; readonly y: Y } => ({
  x: new Float32Array(n * sampleSize(ds)),
  y: (ds.y instanceof Int32Array
    ? new Int32Array(n * targetSize(ds))
    : new Float32Array(n * targetSize(ds))) as Y
})

/**
 * `gather` into given arrays (at least `indices.length` samples and targets long): the batch
 * views their first `indices.length` samples. For a loader that reuses its buffers.
 */
export const gatherInto = <Y extends Targets>(
  ds: TensorDataset<Y>,
  indices: ArrayLike<number>,
  into: { readonly x: Float32Array; readonly y: Y }
): Batch<Y> => {
  const per = sampleSize(ds)
  const ty = targetSize(ds)
  const n = indices.length
  const x = into.x.length === n * per ? into.x : into.x.subarray(0, n * per)
  const y = (into.y.length === n * ty ? into.y : into.y.subarray(0, n * ty)) as Y
  for (let k = 0; k < n; k++) {
    const i = indices[k]
    x.set(ds.x.subarray(i * per, (i + 1) * per), k * per)
    for (let t = 0; t < ty; t++) y[k * ty + t] = ds.y[i * ty + t]
  }
  return { x, shape: [n, ...ds.sampleShape], y }
}

/** A new dataset holding the samples at `indices` (copied). */
export const subset = <Y extends Targets>(
  ds: TensorDataset<Y>,
  indices: ArrayLike<number>
): TensorDataset<Y> => {
  const b = gather(ds, indices)
  return {
    x: b.x,
    y: b.y,
    sampleShape: ds.sampleShape,
    length: indices.length,
    ...(ds.classes ? { classes: ds.classes } : {})
  }
}

/**
 * Applies `f` to every sample's values (e.g. a `Normalize`), producing a new dataset;
 * `ShapeMismatch` when `f` returns samples of different sizes.
 */
export const mapSamples = <Y extends Targets>(
  ds: TensorDataset<Y>,
  f: (sample: Float32Array, shape: ReadonlyArray<number>) => Float32Array
): Either.Either<TensorDataset<Y>, ShapeMismatch> => {
  const per = sampleSize(ds)
  const first = ds.length > 0 ? f(ds.x.slice(0, per), ds.sampleShape) : new Float32Array(0)
  const outPer = ds.length > 0 ? first.length : per
  const x = new Float32Array(ds.length * outPer)
  if (ds.length > 0) x.set(first, 0)
  for (let i = 1; i < ds.length; i++) {
    const out = f(ds.x.slice(i * per, (i + 1) * per), ds.sampleShape)
    if (out.length !== outPer)
      return Either.left(new ShapeMismatch({ field: `sample ${i}`, expected: outPer, actual: out.length }))
    x.set(out, i * outPer)
  }
  return Either.right({ ...ds, x, sampleShape: outPer === per ? ds.sampleShape : [outPer] })
}

/**
 * `random_split(dataset, lengths)` with this package's generator: a seeded permutation cut into
 * consecutive pieces. `lengths` are counts summing to the length, or fractions summing to 1
 * (remainders go to the first pieces one by one, as PyTorch does).
 */
export const randomSplit = <Y extends Targets>(
  ds: TensorDataset<Y>,
  lengths: ReadonlyArray<number>,
  seed: number
): Either.Either<ReadonlyArray<TensorDataset<Y>>, InvalidArgument> =>
  Either.map(Either.all([splitCounts(ds.length, lengths), Random.make(seed)]), ([counts, state]) => {
    const [perm] = Random.shuffle(state, ds.length)
    let offset = 0
    return counts.map((c) => {
      const part = subset(ds, perm.subarray(offset, offset + c))
      offset += c
      return part
    })
  })

/** The piece sizes of a split (validates the lengths). */
export const splitCounts = (
  n: number,
  lengths: ReadonlyArray<number>
): Either.Either<ReadonlyArray<number>, InvalidArgument> => {
  const total = lengths.reduce((a, b) => a + b, 0)
  if (lengths.every((l) => Number.isInteger(l) && l >= 0) && total === n) return Either.right(lengths)
  if (lengths.every((l) => l >= 0 && l <= 1) && Math.abs(total - 1) < 1e-9) {
    const counts = lengths.map((f) => Math.floor(n * f))
    let rest = n - counts.reduce((a, b) => a + b, 0)
    for (let i = 0; rest > 0; i = (i + 1) % counts.length, rest--) counts[i]++
    return Either.right(counts)
  }
  return Either.left(
    new InvalidArgument({
      field: "lengths",
      value: lengths,
      reason: `neither sum to ${n} nor are fractions summing to 1`
    })
  )
}

/**
 * `Normalize(mean, std)` on every sample of a CHW image dataset, as a new dataset (the chapter's
 * `Compose([Resize(28), ToTensor(), normalizer])` done once instead of every epoch). Fails as
 * `Transforms.checkNormalize` does (a zero or non-finite std names its channel).
 */
export const normalize = <Y extends Targets>(
  ds: TensorDataset<Y>,
  params: NormalizeParams
): Either.Either<TensorDataset<Y>, InvalidArgument | InvalidNormalizer> =>
  Either.map(normalizeInto(ds, params, new Float32Array(ds.x.length)), (x) => ({ ...ds, x }))

/** Every sample of `ds` normalized into `out` (which may be `ds.x`: each value is read before the same index is written). */
const normalizeInto = <Y extends Targets>(
  ds: TensorDataset<Y>,
  params: NormalizeParams,
  out: Float32Array
): Either.Either<Float32Array, InvalidArgument | InvalidNormalizer> => {
  const channels = ds.sampleShape[0]
  return Either.map(checkNormalize(params, channels), (checked) => {
    const per = sampleSize(ds)
    for (let i = 0; i < ds.length; i++) {
      const [from, to] = [i * per, (i + 1) * per]
      normalizeCHWInto(ds.x.subarray(from, to), channels, checked, out.subarray(from, to))
    }
    return out
  })
}

/**
 * `normalize` overwriting the dataset's own `x` instead of allocating a second one: the same
 * values, for a dataset nobody else reads (one just decoded by `ImageFolder.loadImageFolder`),
 * where a copy would double the memory the pixels take. Returns `ds` itself.
 */
export const normalizeInPlace = <Y extends Targets>(
  ds: TensorDataset<Y>,
  params: NormalizeParams
): Either.Either<TensorDataset<Y>, InvalidArgument | InvalidNormalizer> =>
  Either.map(normalizeInto(ds, params, ds.x), () => ds)
