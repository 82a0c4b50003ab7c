/**
 * The chapter's synthetic linear-regression data: y = b + w x + noise, with b = 1, w = 2,
 * N = 100, x ~ U(0, 1), noise = 0.1 N(0, 1), split 80/20, batches of 16 (used for the optimizer
 * path figures).
 */
import { Either } from "effect"
import * as DataLoader from "./DataLoader.js"
import type { InvalidArgument } from "./Errors.js"
import * as Mt19937 from "./Mt19937.js"
import * as Random from "./Random.js"
import * as TensorDataset from "./TensorDataset.js"

export interface Options {
  readonly seed: number
  readonly n?: number
  readonly trueB?: number
  readonly trueW?: number
  readonly noise?: number
}

export interface Data {
  /** The generated points (float64, before any split). */
  readonly x: Float64Array
  readonly y: Float64Array
  /** Float32 datasets of shape [1] -> [1], as `TensorDataset(x_tensor, y_tensor)` after the split. */
  readonly train: TensorDataset.TensorDataset<Float32Array>
  readonly val: TensorDataset.TensorDataset<Float32Array>
  readonly trainIndices: ReadonlyArray<number>
  readonly valIndices: ReadonlyArray<number>
}

const split = (x: Float64Array, y: Float64Array, perm: ArrayLike<number>, nTrain: number): Data => {
  // One feature and one target per point: consistent by construction, nothing to check.
  const all: TensorDataset.TensorDataset<Float32Array> = {
    x: Float32Array.from(x),
    y: Float32Array.from(y),
    sampleShape: [1],
    length: x.length
  }
  const order = Array.from(perm)
  const trainIndices = order.slice(0, nTrain)
  const valIndices = order.slice(nTrain)
  return {
    x,
    y,
    train: TensorDataset.subset(all, trainIndices),
    val: TensorDataset.subset(all, valIndices),
    trainIndices,
    valIndices
  }
}

/** Seeded data from this package's own generator (any size); `InvalidArgument` for a bad seed. */
export const generate = (options: Options): Either.Either<Data, InvalidArgument> =>
  Either.map(Random.make(options.seed), (state) => {
    const n = options.n ?? 100
    const b = options.trueB ?? 1
    const w = options.trueW ?? 2
    const noise = options.noise ?? 0.1
    const [xs, s1] = Random.uniforms(state, n)
    const [eps, s2] = Random.normals(s1, n)
    const y = xs.map((v, i) => b + w * v + noise * eps[i])
    const [perm] = Random.shuffle(s2, n)
    return split(xs, y, perm, Math.trunc(n * 0.8))
  })

/**
 * The book's exact points and split: `np.random.seed(42)`, `x = np.random.rand(100, 1)`,
 * `epsilon = .1 * np.random.randn(100, 1)`, then `torch.manual_seed(13)` and
 * `random_split(dataset, [80, 20])`.
 */
export const chapter = (): Data => {
  const n = 100
  const [xs, s1] = Mt19937.rand(Mt19937.make(42), n)
  const [eps] = Mt19937.randn(s1, n)
  const y = xs.map((v, i) => 1 + 2 * v + 0.1 * eps[i])
  return split(xs, y, Mt19937.torchRandperm(13, n), 80)
}

/** The chapter's loaders: training shuffled (seeded), validation in order, batches of 16. */
export const loaders = (
  data: Data,
  options: { readonly seed: number; readonly batchSize?: number }
): Either.Either<
  { readonly train: DataLoader.DataLoader<Float32Array>; readonly val: DataLoader.DataLoader<Float32Array> },
  InvalidArgument
> =>
  Either.all({
    train: DataLoader.fromTensorDataset(data.train, {
      batchSize: options.batchSize ?? 16,
      shuffle: true,
      seed: options.seed
    }),
    val: DataLoader.fromTensorDataset(data.val, { batchSize: options.batchSize ?? 16 })
  })
