/**
 * Recipe -> the things a command runs: datasets and loaders (decoded once, normalized with the
 * training set's statistics), CNN2, the optimizer and the scheduler. Built only from the public
 * APIs of @stepwise/data, @stepwise/optim and @stepwise/core.
 */

import type { FileSystem } from "@effect/platform"
import { Cnn2, Engine, Loss, TorchWeights, Trainer } from "@stepwise/core"
import {
  type Errors as DataErrors,
  DataLoader,
  DecodePool,
  ImageFolder,
  Random,
  Rps,
  Statistics,
  TensorDataset,
  type Transforms
} from "@stepwise/data"
import type { InvalidHyperparameter, Optimizer } from "@stepwise/optim"
import { Optimizers, Schedulers as OptimSchedulers, TfNumeric } from "@stepwise/optim"
import type * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import { ConfigError } from "./Errors.js"
import { Output } from "./Progress.js"
import * as Recipe from "./Recipe.js"
import * as Schedulers from "./SchedulerConfig.js"
import * as SquareImages from "./SquareImages.js"

export interface Datasets {
  readonly train: TensorDataset.TensorDataset
  readonly val: TensorDataset.TensorDataset | undefined
  readonly classes: ReadonlyArray<string>
  readonly normalizer: Transforms.NormalizeParams | undefined
  /** Where the data came from, for the run's config and messages. */
  readonly trainRoot: string
  readonly valRoot: string | undefined
}

export const trainRootOf = (recipe: Recipe.Recipe): string => recipe.data.train ?? Rps.bundled().train

export const valRootOf = (recipe: Recipe.Recipe): string | undefined =>
  recipe.data.val ?? (recipe.data.valSplit === undefined ? Rps.bundled().test : undefined)

/**
 * Decodes an ImageFolder at the recipe's size. The decode pool lives for this one load (its
 * threads start only if full-size images need them, and end with the load).
 */
export const loadFolder = (
  root: string,
  resize: Recipe.Resize
): Effect.Effect<TensorDataset.TensorDataset, DataErrors.ImageFolderError, FileSystem.FileSystem> =>
  ImageFolder.loadImageFolder(root, { resize: Recipe.resizeOf(resize) }).pipe(
    Effect.provide(DecodePool.layerDefault)
  )

/**
 * The chapter's data preparation: a temporary unshuffled loader over the training images gives
 * the normalizer, which then standardizes both sets. With `valSplit`, a seeded permutation holds
 * out that fraction of the training folder first (statistics come from the rest only).
 */
export const prepareData = (
  recipe: Recipe.Recipe
): Effect.Effect<
  Datasets,
  DataErrors.ImageFolderError | DataErrors.InvalidArgument | DataErrors.InvalidNormalizer | ConfigError,
  FileSystem.FileSystem
> =>
  Effect.gen(function* () {
    const trainRoot = trainRootOf(recipe)
    const valRoot = valRootOf(recipe)
    const full = yield* loadFolder(trainRoot, recipe.data.resize)
    let train = full
    let val: TensorDataset.TensorDataset | undefined
    if (recipe.data.valSplit !== undefined) {
      const [perm] = Random.shuffle(Random.foldIn(Random.make(recipe.seed), 0x5e1), full.length)
      const nVal = Math.round(recipe.data.valSplit * full.length)
      if (nVal === 0 || nVal === full.length) {
        return yield* new ConfigError({
          file: "command line",
          field: "data.valSplit",
          reason: `${recipe.data.valSplit} of ${full.length} images leaves an empty set`
        })
      }
      // Keep dataset order inside each part, like torch's random_split followed by sorted indices.
      const valIdx = Uint32Array.from(perm.subarray(0, nVal)).sort()
      const trainIdx = Uint32Array.from(perm.subarray(nVal)).sort()
      val = TensorDataset.subset(full, valIdx)
      train = TensorDataset.subset(full, trainIdx)
    } else if (valRoot !== undefined) {
      val = yield* loadFolder(valRoot, recipe.data.resize)
    }
    const normalizer = recipe.data.normalize
      ? yield* Statistics.makeNormalizer(
          yield* DataLoader.fromTensorDataset(train, { batchSize: recipe.batchSize })
        )
      : undefined
    const norm = (ds: TensorDataset.TensorDataset) =>
      normalizer === undefined ? Either.right(ds) : ImageFolder.normalizeDataset(ds, normalizer)
    return {
      train: yield* norm(train),
      val: val === undefined ? undefined : yield* norm(val),
      classes: full.classes ?? Rps.CLASSES,
      normalizer,
      trainRoot,
      valRoot
    } satisfies Datasets
  })

export interface Loaders {
  readonly train: DataLoader.DataLoader
  readonly val: DataLoader.DataLoader | undefined
}

/** Shuffled training loader (order = f(seed, epoch)) and the validation loader in dataset order. */
export const loaders = (
  data: Datasets,
  recipe: Recipe.Recipe
): Either.Either<Loaders, DataErrors.InvalidArgument> =>
  Either.all({
    train: DataLoader.fromTensorDataset(data.train, {
      batchSize: recipe.batchSize,
      shuffle: true,
      seed: recipe.seed
    }),
    val:
      data.val === undefined
        ? Either.right(undefined)
        : DataLoader.fromTensorDataset(data.val, { batchSize: recipe.batchSize })
  })

/** CNN2 for the data's image size (it must be square: CNN2's classifier is sized for it). */
export const model = (recipe: Recipe.Recipe, sampleShape: ReadonlyArray<number>, nClasses: number) =>
  Effect.gen(function* () {
    const [c, h, w] = sampleShape
    if (h !== w) {
      return yield* new ConfigError({
        file: "command line",
        field: "data.resize",
        reason: `CNN2 needs square images, got ${h}x${w}`
      })
    }
    if (h < 10) {
      return yield* new ConfigError({
        file: "command line",
        field: "data.resize",
        reason: `CNN2 needs images of at least 10x10, got ${h}x${w}`
      })
    }
    return Cnn2.make({
      nFilters: recipe.model.filters,
      p: recipe.model.dropout,
      inChannels: c,
      imageSize: h,
      nClasses
    })
  })

const OPTIMIZER_TAGS = {
  sgd: "SGD",
  adam: "Adam",
  adamw: "AdamW",
  rmsprop: "RMSprop",
  adagrad: "Adagrad"
} as const

/** Which recipe fields each optimizer takes (PyTorch's constructor arguments). */
export const OPTIMIZER_FIELDS: { readonly [K in Recipe.OptimizerName]: ReadonlyArray<string> } = {
  sgd: ["momentum", "dampening", "nesterov", "weightDecay"],
  adam: ["beta1", "beta2", "eps", "weightDecay", "amsgrad"],
  adamw: ["beta1", "beta2", "eps", "weightDecay", "amsgrad"],
  rmsprop: ["alpha", "eps", "weightDecay", "momentum", "centered"],
  adagrad: ["lrDecay", "weightDecay", "initialAccumulatorValue", "eps"]
}

/** The recipe's optimizer section as @stepwise/optim's tagged config input. */
export const optimizerInput = (
  o: Recipe.Optimizer,
  file: string
): Effect.Effect<Record<string, unknown>, ConfigError> => {
  const allowed = new Set(["name", "lr", ...OPTIMIZER_FIELDS[o.name]])
  const extra = Object.keys(o).find((k) => !allowed.has(k) && (o as Record<string, unknown>)[k] !== undefined)
  if (extra !== undefined) {
    return Effect.fail(
      new ConfigError({ file, field: `optimizer.${extra}`, reason: `does not apply to ${o.name}` })
    )
  }
  const { name, beta1, beta2, ...rest } = o
  const input: Record<string, unknown> = { _tag: OPTIMIZER_TAGS[name], ...rest }
  if (beta1 !== undefined || beta2 !== undefined) input.betas = [beta1 ?? 0.9, beta2 ?? 0.999]
  for (const k of Object.keys(input)) if (input[k] === undefined) delete input[k]
  return Effect.succeed(input)
}

/** Decodes, validates (PyTorch's rules) and builds the optimizer on tfjs tensors. */
export const optimizer = (
  recipe: Recipe.Recipe,
  file: string
): Effect.Effect<
  { readonly config: Optimizers.OptimizerConfig; readonly optimizer: Optimizer.Optimizer<tf.Tensor> },
  ConfigError | InvalidHyperparameter.InvalidHyperparameter
> =>
  Effect.gen(function* () {
    const input = yield* optimizerInput(recipe.optimizer, file)
    const config = yield* Optimizers.decode(input)
    const def = yield* Optimizers.fromConfig(config)
    return { config, optimizer: def(TfNumeric.TfNumeric) }
  })

/** A fresh trainer: CNN2 initialised from the seed (the chapter's `torch.manual_seed(13)`). */
export const trainer = (
  recipe: Recipe.Recipe,
  file: string,
  data: Datasets,
  batchesPerEpoch: number
): Effect.Effect<
  AnyTrainer,
  ConfigError | InvalidHyperparameter.InvalidHyperparameter | DataErrors.InvalidArgument
> =>
  Effect.gen(function* () {
    const net = yield* model(recipe, data.train.sampleShape, data.classes.length)
    const { optimizer: opt } = yield* optimizer(recipe, file)
    const scheduler = yield* Schedulers.build(recipe, file, batchesPerEpoch, opt.defaults)
    const l = yield* loaders(data, recipe)
    const config: Trainer.Config = {
      model: net.model,
      loss: Loss.crossEntropy,
      optimizer: opt,
      scheduler,
      trainLoader: l.train,
      valLoader: l.val
    }
    return Trainer.make(config, Random.make(recipe.seed))
  })

/**
 * What `train` and `lr-find` start from: the recipe checked before any data is read, its engine,
 * the prepared data, the loaders and a fresh trainer.
 */
export const setup = (
  recipe: Recipe.Recipe,
  file: string
): Effect.Effect<
  { readonly data: Datasets; readonly loaders: Loaders; readonly trainer: AnyTrainer },
  | ConfigError
  | DataErrors.InvalidArgument
  | DataErrors.InvalidNormalizer
  | InvalidHyperparameter.InvalidHyperparameter
  | DataErrors.ImageFolderError
  | Engine.BackendUnavailable,
  Output | FileSystem.FileSystem
> =>
  Effect.gen(function* () {
    const out = yield* Output
    yield* validateEarly(recipe, file)
    yield* SquareImages.requireSquare(trainRootOf(recipe), recipe.data.resize)
    yield* out.line(`stepwise: ${recipe.backend} engine, loading data...`)
    yield* Engine.use(recipe.backend)
    const data = yield* prepareData(recipe)
    const l = yield* loaders(data, recipe)
    const fresh = yield* trainer(recipe, file, data, l.train.numBatches)
    return { data, loaders: l, trainer: fresh }
  })

export type AnyTrainer = Trainer.Trainer<never, never>
export type Tensor = tf.Tensor

/** A conv layer's weight in PyTorch's layout [out, in, kh, kw] (for `visualize_filters`). */
export const torchWeight = (
  t: Pick<AnyTrainer, "config" | "params">,
  layer: string
):
  | { readonly values: Float32Array; readonly shape: readonly [number, number, number, number] }
  | undefined => {
  const w = TorchWeights.toTorch(t.config.model, t.params)[`${layer}.weight`]
  if (w === undefined || w.shape.length !== 4) return undefined
  return { values: w.data, shape: [w.shape[0], w.shape[1], w.shape[2], w.shape[3]] }
}

/**
 * Checks the optimizer and scheduler sections before any data is read, so a bad hyperparameter
 * fails in a moment (the scheduler is built for real once the loader's size is known).
 */
export const validateEarly = (
  recipe: Recipe.Recipe,
  file: string
): Effect.Effect<void, ConfigError | InvalidHyperparameter.InvalidHyperparameter> =>
  Effect.gen(function* () {
    yield* optimizer(recipe, file)
    const input = yield* Schedulers.schedulerInput(recipe, file, 1)
    if (input !== undefined) yield* OptimSchedulers.decode(input)
  })
