/**
 * Loaders: a dataset cut into batches, in an order that is a pure function of (seed, epoch).
 *
 * `batches(epoch)` is a `Stream`, so the training loop folds over it and a resumed run that
 * starts at epoch k sees exactly the batches an uninterrupted run would have seen.
 */
import { Effect, Either, Option, Stream } from "effect"
import type { Batch, Targets } from "./Batch.js"
import { InvalidArgument } from "./Errors.js"
import * as Random from "./Random.js"
import * as TensorDataset from "./TensorDataset.js"

export interface DataLoader<Y extends Targets = Int32Array, E = never, R = never> {
  /** Samples the loader draws from (before `dropLast`). */
  readonly numSamples: number
  /** Batches per epoch (after `dropLast`). */
  readonly numBatches: number
  readonly batchSize: number
  /** The batches of one epoch (epochs count from 0). */
  readonly batches: (epoch: number, how?: BatchesOptions) => Stream.Stream<Batch<Y>, E, R>
}

/** How a consumer takes an epoch's batches. */
export interface BatchesOptions {
  /**
   * The consumer is done with a batch when it pulls the next one (the trainer's fold: a step
   * uploads the batch and keeps none of its arrays). The loader may then gather every batch
   * into the same few buffers instead of fresh arrays, so an epoch allocates no memory per
   * batch (fresh memory is costly: each new page is a fault, ~20 us on a VM). Each batch is
   * then valid until the next pull or the end of the stream. A loader or a wrapper that
   * ignores the option hands out fresh batches, which is always correct.
   */
  readonly reuse?: boolean
}

export interface Options {
  readonly batchSize: number
  /** Reshuffle every epoch (default false: dataset order, like PyTorch's default). */
  readonly shuffle?: boolean
  /** Seed of the shuffle; the order of epoch e is `Random.shuffle(foldIn(make(seed), e))`. */
  readonly seed?: number
  /** Drop the last incomplete batch (default false). */
  readonly dropLast?: boolean
  /**
   * Batches prepared ahead of the consumer while it works on the current one. Default: 0 for
   * in-memory data (gathering is a memory copy, a buffer only adds hand-offs), 2 for images
   * while they are being decoded.
   */
  readonly prefetch?: number
}

/** Number of batches for `n` samples. */
export const countBatches = (n: number, batchSize: number, dropLast: boolean): number =>
  dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize)

/**
 * The sample order of an epoch: identity without shuffling, otherwise a permutation that depends
 * only on (seed, epoch).
 */
export const epochOrder = (
  n: number,
  options: { readonly shuffle?: boolean; readonly seed?: number },
  epoch: number
) => {
  if (!options.shuffle) return Uint32Array.from({ length: n }, (_, i) => i)
  // The loader constructors checked the seed (`checkOptions`).
  const [perm] = Random.shuffle(Random.foldIn(Random.unsafeMake(options.seed ?? 0), epoch), n)
  return perm
}

/** The index lists of the batches of one epoch (pure; what `batches` gathers). */
export const batchIndices = (n: number, options: Options, epoch: number): ReadonlyArray<Uint32Array> => {
  const order = epochOrder(n, options, epoch)
  const count = countBatches(n, options.batchSize, options.dropLast ?? false)
  return Array.from({ length: count }, (_, b) =>
    order.subarray(b * options.batchSize, Math.min(n, (b + 1) * options.batchSize))
  )
}

/** `InvalidArgument` unless `batchSize` is a positive integer (every loader's check). */
export const checkBatchSize = (batchSize: number): Either.Either<number, InvalidArgument> =>
  Number.isInteger(batchSize) && batchSize >= 1
    ? Either.right(batchSize)
    : Either.left(
        new InvalidArgument({ field: "batchSize", value: batchSize, reason: "must be a positive integer" })
      )

/** `InvalidArgument` for a bad `batchSize` or `seed` (every loader's check of its options). */
export const checkOptions = (options: Options): Either.Either<Options, InvalidArgument> =>
  Either.flatMap(checkBatchSize(options.batchSize), () =>
    Either.map(Random.checkSeed(options.seed ?? 0), () => options)
  )

/**
 * A loader over an in-memory dataset; `InvalidArgument` for a bad `batchSize` or `seed`. An `Either` is an
 * `Effect` too: `yield* DataLoader.fromTensorDataset(ds, options)` inside `Effect.gen`.
 */
export const fromTensorDataset = <Y extends Targets>(
  dataset: TensorDataset.TensorDataset<Y>,
  options: Options
): Either.Either<DataLoader<Y>, InvalidArgument> =>
  Either.map(checkOptions(options), () => inMemory(dataset, options))

const inMemory = <Y extends Targets>(
  dataset: TensorDataset.TensorDataset<Y>,
  options: Options
): DataLoader<Y> => {
  const prefetch = options.prefetch ?? 0
  // Rings of reused batch buffers, kept between epochs (fresh ones would cost their page faults
  // every epoch): a stream takes one when it starts and gives it back when it ends.
  const rings: Array<ReadonlyArray<{ readonly x: Float32Array; readonly y: Y }>> = []
  return {
    numSamples: dataset.length,
    numBatches: countBatches(dataset.length, options.batchSize, options.dropLast ?? false),
    batchSize: options.batchSize,
    batches: (epoch, how) =>
      // Batches are gathered lazily, one per pull: memory holds a batch, not an epoch.
      Stream.suspend(() => {
        const indices = batchIndices(dataset.length, options, epoch)
        const buffered = <A>(stream: Stream.Stream<A>) =>
          prefetch > 0 ? Stream.buffer(stream, { capacity: prefetch }) : stream
        if (how?.reuse !== true)
          return buffered(
            Stream.unfold(0, (b) =>
              b < indices.length
                ? Option.some([TensorDataset.gather(dataset, indices[b]), b + 1] as const)
                : Option.none()
            )
          )
        // One buffer per batch alive at once (the consumer's, the prefetched ones, the one
        // being offered to a full prefetch buffer), plus one to spare; given back once the
        // consumer is done with the stream (not when the prefetching ends).
        const ring = rings.pop() ?? buffers(dataset, options.batchSize, prefetch + 3)
        return Stream.ensuring(
          buffered(
            Stream.unfold(0, (b) =>
              b < indices.length
                ? Option.some([
                    TensorDataset.gatherInto(dataset, indices[b], ring[b % ring.length]),
                    b + 1
                  ] as const)
                : Option.none()
            )
          ),
          Effect.sync(() => rings.push(ring))
        )
      })
  }
}

/** `count` pairs of batch arrays for `dataset` (`batchSize` samples each). */
const buffers = <Y extends Targets>(
  dataset: TensorDataset.TensorDataset<Y>,
  batchSize: number,
  count: number
) =>
  Array.from({ length: count }, () => TensorDataset.batchArrays(dataset, Math.min(batchSize, dataset.length)))

/** Every batch of an epoch collected (convenient for small datasets and tests). */
export const collect = <Y extends Targets, E, R>(
  loader: DataLoader<Y, E, R>,
  epoch = 0
): Effect.Effect<ReadonlyArray<Batch<Y>>, E, R> =>
  Effect.map(Stream.runCollect(loader.batches(epoch)), (chunk) => Array.from(chunk))
