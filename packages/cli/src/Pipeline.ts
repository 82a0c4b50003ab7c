/**
 * Recipe -> the things a command runs: datasets and loaders (decoded once, normalized with the
 * training set's statistics), the model (CNN2 or the recipe's layers), the optimizer (optim's or
 * a module's) and the scheduler. Built only from the public APIs of @stepwise/data,
 * @stepwise/optim and @stepwise/core.
 */

import { createHash } from "node:crypto"
import { basename, relative, resolve as resolvePath } from "node:path"
import type { FileSystem } from "@effect/platform"
import {
  type Checkpoint,
  Engine,
  Loss,
  ModelSpec,
  Module,
  type Safetensors,
  TorchWeights,
  Trainer
} from "@stepwise/core"
import {
  type Batch,
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
import type { Numeric, Optimizer, Scheduler } from "@stepwise/optim"
import { TfNumeric } from "@stepwise/optim"
import type * as tf from "@tensorflow/tfjs-core"
import { Context, Effect, Either, Option, Schema, type Scope, Stream } from "effect"
import * as CustomOptimizer from "./CustomOptimizer.js"
import { COMMAND_LINE, ConfigError, DataMismatch, describeIoError, OptimizerModuleError } from "./Errors.js"
import { Output } from "./Progress.js"
import * as Recipe from "./Recipe.js"
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

/**
 * The validation folder: the recipe's, or the bundled test set when training on the bundled
 * set. Own training data never validates on the bundled set (see `prepareData`).
 */
export const valRootOf = (recipe: Recipe.Recipe): string | undefined =>
  recipe.data.val ??
  (recipe.data.valSplit === undefined && recipe.data.train === undefined ? Rps.bundled().test : undefined)

/**
 * Decodes an ImageFolder at the recipe's size. Images that come out in different sizes (a
 * single-number `--resize` keeps each one's aspect ratio) are reported as the flag to change.
 */
export const loadFolder = (
  root: string,
  resize: Recipe.Resize,
  listing?: ImageFolder.Listing
): Effect.Effect<
  TensorDataset.TensorDataset,
  Exclude<DataErrors.ImageFolderError, DataErrors.SampleShapeMismatch> | ConfigError,
  FileSystem.FileSystem
> =>
  ImageFolder.loadImageFolder(root, {
    resize: Recipe.resizeOf(resize),
    ...(listing === undefined ? {} : { listing })
  }).pipe(
    // the decode pool lives for this one load (threads start only if full-size images need them)
    Effect.provide(DecodePool.layerDefault),
    Effect.catchTag("SampleShapeMismatch", (e) => {
      const side = Math.min(...e.expected.slice(1))
      return Effect.fail(
        new ConfigError({
          file: COMMAND_LINE,
          field: `--resize ${resizeText(resize)}`,
          reason:
            `${e.path} comes out ${e.actual.slice(1).join("x")}, other images ${e.expected.slice(1).join("x")} ` +
            `(a single size keeps each image's aspect ratio): pass --resize ${side}x${side}`,
          cause: e
        })
      )
    })
  )

const resizeText = (r: Recipe.Resize) => (Array.isArray(r) ? r.join("x") : String(r))

/**
 * Checks that two class lists are the same names in the same order (a model's output k means
 * the k-th class of the data it was trained on); the error names what differs.
 */
export const sameClasses = (
  expectedFrom: string,
  expected: ReadonlyArray<string>,
  gotFrom: string,
  got: ReadonlyArray<string>
): Effect.Effect<void, DataMismatch> => {
  if (expected.length === got.length && expected.every((c, i) => c === got[i])) return Effect.void
  return Effect.fail(
    new DataMismatch({ what: gotFrom, reason: classDifference(expectedFrom, expected, got) })
  )
}

const classDifference = (
  expectedFrom: string,
  expected: ReadonlyArray<string>,
  got: ReadonlyArray<string>
) => {
  const missing = expected.filter((c) => !got.includes(c))
  const extra = got.filter((c) => !expected.includes(c))
  const parts = [
    ...(missing.length > 0 ? [`lacks ${missing.join(", ")}`] : []),
    ...(extra.length > 0 ? [`has ${extra.join(", ")} that ${expectedFrom} does not`] : [])
  ]
  return `classes [${got.join(", ")}] do not match ${expectedFrom} [${expected.join(", ")}]${
    parts.length > 0 ? ` (${parts.join("; ")})` : ""
  }`
}

/**
 * Relabels a dataset whose classes are a subset of `classes` so that its labels index
 * `classes` by name (evaluating a 3-class model on a folder with two of its classes). A class
 * the model does not know is an error naming it.
 */
export const alignClasses = (
  ds: TensorDataset.TensorDataset,
  source: string,
  classes: ReadonlyArray<string>,
  classesFrom: string
): Effect.Effect<TensorDataset.TensorDataset, DataMismatch> => {
  const own = ds.classes ?? []
  const unknown = own.filter((c) => !classes.includes(c))
  if (unknown.length > 0) {
    return Effect.fail(new DataMismatch({ what: source, reason: classDifference(classesFrom, classes, own) }))
  }
  const index = own.map((c) => classes.indexOf(c))
  return Effect.succeed({ ...ds, y: Int32Array.from(ds.y, (y) => index[y]), classes })
}

/**
 * A hash of the data files a run reads (relative names, sizes, modification times), so a
 * resumed run can tell that its data changed.
 */
export const fingerprint = (data: Pick<Datasets, "trainRoot" | "valRoot">) =>
  Effect.suspend(() => {
    // (data `prepareData` made: it fingerprinted the listings it decoded; from a DataCache: its
    // files were just fingerprinted for the cache's key, by this run)
    const known = fingerprinted.get(data)
    return known === undefined ? scanFingerprint(data) : Effect.succeed(known)
  })

/** Prepared data (`prepareData`'s, or taken from a DataCache) and the fingerprint this run computed for it. */
const fingerprinted = new WeakMap<object, string>()

const scanFingerprint = (data: Pick<Datasets, "trainRoot" | "valRoot">) =>
  Effect.gen(function* () {
    const listed: Array<readonly [string, ImageFolder.Listing]> = [
      [data.trainRoot, yield* ImageFolder.scan(data.trainRoot)]
    ]
    if (data.valRoot !== undefined) listed.push([data.valRoot, yield* ImageFolder.scan(data.valRoot)])
    return fingerprintOf(listed)
  })

/** The fingerprint of folders as listed (each root with its listing, training folder first). */
const fingerprintOf = (listed: ReadonlyArray<readonly [string, ImageFolder.Listing]>): string => {
  const hash = createHash("sha256")
  for (const [root, { samples }] of listed) {
    hash.update(`${root}\n`)
    for (const s of samples) hash.update(`${relative(root, s.path)}\t${s.size}\t${s.mtimeMs}\n`)
  }
  return hash.digest("hex")
}

/**
 * The chapter's data preparation: a temporary unshuffled loader over the training images gives
 * the normalizer, which then standardizes both sets. With `valSplit`, a seeded permutation holds
 * out that fraction of the training folder first (statistics come from the rest only). The
 * validation classes must be the training classes, by name.
 *
 * Each folder is listed once: `trainListing` is the training folder as `setup` already listed it,
 * and the listings give the data's `fingerprint` (the files this run decoded).
 */
export const prepareData = (
  recipe: Recipe.Recipe,
  trainListing?: ImageFolder.Listing,
  valListing?: ImageFolder.Listing
): Effect.Effect<
  Datasets,
  | DataErrors.ImageFolderError
  | DataErrors.InvalidArgument
  | DataErrors.InvalidNormalizer
  | ConfigError
  | DataMismatch,
  FileSystem.FileSystem
> =>
  Effect.gen(function* () {
    const trainRoot = resolvePath(trainRootOf(recipe))
    const valRoot = Option.getOrUndefined(Option.map(Option.fromNullable(valRootOf(recipe)), resolvePath))
    if (recipe.data.train !== undefined && valRoot === undefined && recipe.data.valSplit === undefined) {
      return yield* new ConfigError({
        file: COMMAND_LINE,
        field: "--data",
        reason:
          "own training data needs validation data of the same classes: pass --val DIR, or " +
          "--val-split 0.2 to hold out a part of it"
      })
    }
    const trainListed = trainListing ?? (yield* ImageFolder.scan(trainRoot))
    const listed: Array<readonly [string, ImageFolder.Listing]> = [[trainRoot, trainListed]]
    const full = yield* loadFolder(trainRoot, recipe.data.resize, trainListed)
    let train = full
    let val: TensorDataset.TensorDataset | undefined
    if (recipe.data.valSplit !== undefined) {
      const [perm] = Random.shuffle(Random.foldIn(yield* Random.make(recipe.seed), 0x5e1), full.length)
      const nVal = Math.round(recipe.data.valSplit * full.length)
      if (nVal === 0 || nVal === full.length) {
        return yield* new ConfigError({
          file: COMMAND_LINE,
          field: "--val-split",
          reason: `${recipe.data.valSplit} of ${full.length} images leaves an empty set`
        })
      }
      // Keep dataset order inside each part, like torch's random_split followed by sorted indices.
      const valIdx = Uint32Array.from(perm.subarray(0, nVal)).sort()
      const trainIdx = Uint32Array.from(perm.subarray(nVal)).sort()
      val = TensorDataset.subset(full, valIdx)
      train = TensorDataset.subset(full, trainIdx)
    } else if (valRoot !== undefined) {
      const valListed = valListing ?? (yield* ImageFolder.scan(valRoot))
      listed.push([valRoot, valListed])
      val = yield* loadFolder(valRoot, recipe.data.resize, valListed)
      yield* sameClasses(`the training data ${trainRoot}`, full.classes ?? [], valRoot, val.classes ?? [])
    }
    const normalizer = recipe.data.normalize
      ? yield* Statistics.makeNormalizer(
          yield* DataLoader.fromTensorDataset(train, { batchSize: recipe.batchSize })
        )
      : undefined
    // Both sets were decoded (or split off) here and nothing else holds them: standardised in
    // place, so the pixels are not held twice (issue 14's peak memory).
    const norm = (ds: TensorDataset.TensorDataset) =>
      normalizer === undefined ? Either.right(ds) : TensorDataset.normalizeInPlace(ds, normalizer)
    const data: Datasets = {
      train: yield* norm(train),
      val: val === undefined ? undefined : yield* norm(val),
      classes: full.classes ?? Rps.CLASSES,
      normalizer,
      trainRoot,
      valRoot: recipe.data.valSplit === undefined ? valRoot : undefined
    }
    fingerprinted.set(data, fingerprintOf(listed))
    return data
  })

/**
 * Prepared data kept between runs in one process: a sweep runner's worker trains epoch after
 * epoch of many trials on the same folders. Given the key (the recipe's data settings and the
 * files' fingerprint) and the preparation, it returns a kept result or runs the preparation.
 * Without it in the context (every command), `setup` prepares the data each time.
 */
export class DataCache extends Context.Tag("@stepwise/cli/Pipeline/DataCache")<
  DataCache,
  <E, R>(key: string, prepare: Effect.Effect<Datasets, E, R>) => Effect.Effect<Datasets, E, R>
>() {}

/** `prepareData`, through the `DataCache` when there is one. */
const preparedData = (recipe: Recipe.Recipe, trainListing: ImageFolder.Listing) =>
  Effect.flatMap(Effect.serviceOption(DataCache), (cache) => {
    if (Option.isNone(cache)) return prepareData(recipe, trainListing)
    const trainRoot = resolvePath(trainRootOf(recipe))
    const valRoot = Option.getOrUndefined(Option.map(Option.fromNullable(valRootOf(recipe)), resolvePath))
    // what prepareData reads: the data settings, the batch size (statistics), the seed (valSplit)
    const settings = { data: recipe.data, batchSize: recipe.batchSize, seed: recipe.seed }
    // Each folder listed once: the training folder as `setup` listed it, the validation folder
    // here; a cache miss decodes these listings.
    return Effect.gen(function* () {
      const listed: Array<readonly [string, ImageFolder.Listing]> = [[trainRoot, trainListing]]
      const valListing = valRoot === undefined ? undefined : yield* ImageFolder.scan(valRoot)
      if (valRoot !== undefined && valListing !== undefined) listed.push([valRoot, valListing])
      const files = fingerprintOf(listed)
      const data = yield* cache.value(
        JSON.stringify({ ...settings, files }),
        prepareData(recipe, trainListing, valListing)
      )
      fingerprinted.set(data, files)
      return data
    })
  })

/**
 * Prepares the data `setup` would prepare for this recipe, into the `DataCache`: a sweep runner's
 * training thread does it while the runner joins its cluster, so that its first epoch finds the
 * images decoded (the same key: the same settings and files).
 */
export const warmData = (recipe: Recipe.Recipe) =>
  Effect.flatMap(ImageFolder.scan(resolvePath(trainRootOf(recipe))), (listing) =>
    preparedData(recipe, listing)
  )

export interface Loaders {
  readonly train: DataLoader.DataLoader
  readonly val: DataLoader.DataLoader | undefined
}

/**
 * A loader that lets the event loop run before each mini-batch. A training step is synchronous
 * and Effect's scheduler yields mostly through microtasks, so without this a signal (Ctrl-C,
 * SIGTERM) is only seen at the next file write: the end of the epoch. One `setImmediate` a
 * mini-batch lets the interrupt land between two mini-batches.
 */
export const yielding = <Y extends Batch.Targets, E, R>(
  loader: DataLoader.DataLoader<Y, E, R>
): DataLoader.DataLoader<Y, E, R> => ({
  ...loader,
  batches: (epoch, how) => Stream.tap(loader.batches(epoch, how), () => macrotask)
})

const macrotask = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/** Shuffled training loader (order = f(seed, epoch)) and the validation loader in dataset order. */
export const loaders = (
  data: Datasets,
  recipe: Recipe.Recipe
): Either.Either<Loaders, DataErrors.InvalidArgument> =>
  Either.all({
    train: Either.map(
      DataLoader.fromTensorDataset(data.train, {
        batchSize: recipe.batchSize,
        shuffle: true,
        seed: recipe.seed
      }),
      yielding
    ),
    val:
      data.val === undefined
        ? Either.right(undefined)
        : Either.map(DataLoader.fromTensorDataset(data.val, { batchSize: recipe.batchSize }), yielding)
  })

/**
 * The shape of a recipe's images, known before any is decoded: RGB (ImageFolder decodes every
 * image to 3 channels) at the resize's size; a single number gives square images, which
 * `SquareImages.requireSquare` checks on the first image before the folder is decoded.
 */
export const inputShapeOf = (recipe: Recipe.Recipe): ReadonlyArray<number> => {
  const size = Recipe.resizeOf(recipe.data.resize)
  return typeof size === "number" ? [3, size, size] : [3, size[0], size[1]]
}

/**
 * The recipe's model as core's spec. CNN2's flags become the CNN2 preset: the same layers,
 * names, parameter order and dropout streams as `Cnn2.make` (core's tests hold them equal), so
 * a recipe without `model` reproduces earlier runs bit for bit. A preset without `nClasses`
 * gets the data's.
 */
export const specOf = (model: Recipe.Model, nClasses: number): ModelSpec.Model =>
  "layers" in model
    ? model
    : "preset" in model
      ? { ...model, nClasses: model.nClasses ?? nClasses }
      : { preset: "CNN2", nFilters: model.filters, p: model.dropout, nClasses }

/** A recipe's model, built: its spec (what a checkpoint describes) and core's build. */
export interface Model {
  readonly spec: ModelSpec.Model
  readonly built: ModelSpec.Built
}

/**
 * Builds the recipe's model for inputs of `inputShape` ([C, H, W]) with `nClasses` outputs;
 * pure. `nClasses` undefined (before the data is read) skips the output check. A spec that
 * does not fit fails naming the layer and the field.
 */
export const buildModel = (
  recipe: Recipe.Recipe,
  origin: Recipe.Origin,
  inputShape: ReadonlyArray<number>,
  nClasses: number | undefined
): Either.Either<Model, ConfigError> => {
  const model = recipe.model
  if (!Recipe.isSpec(model)) {
    // CNN2 by its flags: today's messages, in flag terms, for the sizes it cannot take.
    const [h, w] = inputShape.slice(1)
    const side = Math.min(h, w)
    if (h !== w)
      return Either.left(
        new ConfigError({
          file: COMMAND_LINE,
          field: "--resize",
          reason: `CNN2 needs square images, got ${h}x${w}: pass --resize ${side}x${side}`
        })
      )
    if (h < 10)
      return Either.left(
        new ConfigError({
          file: COMMAND_LINE,
          field: "--resize",
          reason: `CNN2 needs images of at least 10x10, got ${h}x${w}: pass --resize 28x28 or larger`
        })
      )
  }
  const spec = specOf(model, nClasses ?? Rps.CLASSES.length)
  return Either.flatMap(
    Either.mapLeft(ModelSpec.build(spec, inputShape), (e) => Recipe.modelSpecError(origin, e)),
    (built) => {
      const out = built.outputShape
      if (nClasses === undefined || (out.length === 1 && out[0] === nClasses))
        return Either.right({ spec, built })
      const last = "layers" in model ? `model.layers[${model.layers.length - 1}]` : "model.nClasses"
      return Either.left(
        Recipe.errorAt(
          origin,
          last,
          `the model outputs [${out.join(", ")}] per image, but the data has ${nClasses} classes ` +
            `(a classifier ends with ${nClasses} logits: Linear with outFeatures ${nClasses})`
        )
      )
    }
  )
}

/** `buildModel` for the data at hand. */
export const model = (
  recipe: Recipe.Recipe,
  origin: Recipe.Origin,
  sampleShape: ReadonlyArray<number>,
  nClasses: number
): Effect.Effect<Model, ConfigError> => buildModel(recipe, origin, sampleShape, nClasses)

/**
 * What a checkpoint records of this run so the file alone rebuilds the model and its
 * preprocessing: the model's spec, the input shape, class names, normalizer and the recipe.
 */
export const runInfo = (recipe: Recipe.Recipe, data: Datasets, spec: ModelSpec.Model): Checkpoint.Run => {
  const [c, h, w] = data.train.sampleShape
  return {
    model: spec,
    inputShape: [c, h, w],
    classes: [...data.classes],
    normalizer:
      data.normalizer === undefined
        ? null
        : { mean: [...data.normalizer.mean], std: [...data.normalizer.std] },
    // through JSON text: the encoded recipe's absent optional fields are dropped, as in config.json
    recipe: JSON.parse(JSON.stringify(Schema.encodeSync(Recipe.Recipe)(recipe)))
  }
}

/**
 * Decodes, validates (PyTorch's rules, or a module's schema) and builds the optimizer on tfjs
 * tensors.
 */
export const optimizer = (
  recipe: Recipe.Recipe,
  origin: Recipe.Origin,
  numeric: Numeric.Numeric<tf.Tensor> = TfNumeric.TfNumeric
): Effect.Effect<
  { readonly config: Recipe.OptimizerSectionConfig; readonly optimizer: Optimizer.Optimizer<tf.Tensor> },
  ConfigError | OptimizerModuleError
> =>
  Effect.flatMap(Recipe.optimizerOf(recipe.optimizer, origin), ({ config, def }) =>
    Effect.suspend(() => {
      const made = def(numeric)
      if (config._tag === "module" && !CustomOptimizer.isOptimizer(made))
        return Effect.fail(
          new OptimizerModuleError({
            module: config.module,
            export: config.export,
            reason:
              "make(config)(numeric) must return optim's Optimizer: { name, defaults: { lr }, init, update }"
          })
        )
      return Effect.succeed({ config, optimizer: made })
    })
  )

/** The scheduler of a recipe for this run (undefined: none), checked against the optimizer. */
export const scheduler = (
  recipe: Recipe.Recipe,
  origin: Recipe.Origin,
  batchesPerEpoch: number,
  optimizerDefaults: Optimizer.Hyper
): Effect.Effect<Scheduler.Any | undefined, ConfigError> =>
  Recipe.schedulerOf(recipe.scheduler, origin, { batchesPerEpoch, epochs: recipe.epochs }, optimizerDefaults)

/** A fresh trainer: the model initialised from the seed (the chapter's `torch.manual_seed(13)`). */
export const trainer = (
  recipe: Recipe.Recipe,
  origin: Recipe.Origin,
  data: Datasets,
  batchesPerEpoch: number,
  numeric: Numeric.Numeric<tf.Tensor> = TfNumeric.TfNumeric
): Effect.Effect<
  { readonly trainer: AnyTrainer; readonly model: Model },
  | ConfigError
  | OptimizerModuleError
  | DataErrors.InvalidArgument
  | TorchWeights.WeightMismatch
  | Safetensors.SafetensorsError,
  FileSystem.FileSystem | Engine.Engine
> =>
  Effect.gen(function* () {
    const net = yield* model(recipe, origin, data.train.sampleShape, data.classes.length)
    const { optimizer: opt } = yield* optimizer(recipe, origin, numeric)
    const sched = yield* scheduler(recipe, origin, batchesPerEpoch, opt.defaults)
    const l = yield* loaders(data, recipe)
    const config: Trainer.Config = {
      model: net.built.module,
      loss: Loss.crossEntropy,
      optimizer: opt,
      scheduler: sched,
      trainLoader: l.train,
      valLoader: l.val
    }
    const init =
      recipe.initFrom === undefined
        ? undefined
        : yield* initialWeights(recipe.initFrom, net.built.module, origin)
    const trainer =
      init === undefined
        ? yield* Trainer.make(config, yield* Random.make(recipe.seed), { seed: recipe.seed })
        : yield* Trainer.make(config, init.params, { seed: recipe.seed, buffers: init.buffers })
    return { trainer, model: net }
  })

/**
 * `initFrom`: a PyTorch `state_dict` file read into the model, strictly (a missing, unexpected
 * or misshapen tensor is a `WeightMismatch` naming it and the file).
 */
export const initialWeights = (path: string, model: Module.Module, origin: Recipe.Origin) =>
  TorchWeights.read(path, model).pipe(
    Effect.catchTag("SystemError", "BadArgument", (e) =>
      Effect.fail(Recipe.errorAt(origin, "initFrom", describeIoError(e), path, e))
    )
  )

/**
 * What `train` and `lr-find` start from: the recipe checked before any data is read, its engine,
 * the prepared data, the loaders and a fresh trainer; and the model as data (`spec`, built for
 * `inputShape`, the shape of one image as PyTorch orders it) with its summary rows (`built`).
 */
export const setup = (
  recipe: Recipe.Recipe,
  origin: Recipe.Origin
): Effect.Effect<
  {
    readonly data: Datasets
    readonly loaders: Loaders
    readonly trainer: AnyTrainer
    readonly engine: Engine.EngineService
    /** What checkpoints record of the run (`runInfo`). */
    readonly run: Checkpoint.Run
    readonly spec: ModelSpec.Model
    readonly inputShape: ReadonlyArray<number>
    readonly built: ModelSpec.Built
  },
  | ConfigError
  | OptimizerModuleError
  | DataMismatch
  | DataErrors.ImageFolderError
  | DataErrors.InvalidArgument
  | DataErrors.InvalidNormalizer
  | TorchWeights.WeightMismatch
  | Safetensors.SafetensorsError
  | Engine.BackendUnavailable,
  Output | FileSystem.FileSystem | Scope.Scope
> =>
  Effect.gen(function* () {
    const out = yield* Output
    yield* validateEarly(recipe, origin)
    // The training folder is listed once, here: the square check reads its first image's header,
    // the data preparation decodes what it lists.
    const trainListing = yield* ImageFolder.scan(resolvePath(trainRootOf(recipe)))
    yield* SquareImages.requireSquareListed(
      trainListing,
      recipe.data.resize,
      "layers" in recipe.model ? "the recipe's model (built for the resize's size)" : "CNN2"
    )
    yield* out.line(`stepwise: ${recipe.backend} engine, loading data...`)
    // The engine lives as long as the caller's scope (its kernels are restored when it closes).
    // (our layers have explicit backwards: tfjs' gradient configs load only if a recipe needs autodiff)
    const engine = yield* Engine.make(recipe.backend, { gradients: "onDemand" })
    const data = yield* preparedData(recipe, trainListing)
    const l = yield* loaders(data, recipe)
    const fresh = yield* trainer(recipe, origin, data, l.train.numBatches, engine.numeric).pipe(
      Effect.provideService(Engine.Engine, engine)
    )
    return {
      data,
      loaders: l,
      trainer: fresh.trainer,
      engine,
      run: runInfo(recipe, data, fresh.model.spec),
      spec: fresh.model.spec,
      inputShape: fresh.model.built.inputShape,
      built: fresh.model.built
    }
  })

/** `Adam lr=0.0003 + CyclicLR` for the first line of a run. */
export const describeOptimizer = (recipe: Recipe.Recipe): string => {
  const o = recipe.optimizer
  const tag = Recipe.isModuleSection(o)
    ? `${o.export ?? "default"} of ${basename(o.module)}`
    : (Recipe.tagOf(Recipe.optimizerTags, o.name) ?? o.name)
  const lr = o.lr ?? (Recipe.isModuleSection(o) ? "(its default)" : Recipe.DEFAULT_LR)
  const s = recipe.scheduler
  const sched =
    s === undefined || s.name === "none" ? "" : ` + ${Recipe.tagOf(Recipe.schedulerTags, s.name) ?? s.name}`
  return `${tag} lr=${lr}${sched}`
}

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
 * Checks the optimizer and scheduler sections and the model before any data is read, so a bad
 * hyperparameter or layer fails in a moment (the scheduler is built for real once the loader's
 * size is known, and the model's output is checked against the classes once they are known).
 */
export const validateEarly = (
  recipe: Recipe.Recipe,
  origin: Recipe.Origin
): Effect.Effect<void, ConfigError | OptimizerModuleError> =>
  Effect.gen(function* () {
    const { optimizer: opt } = yield* optimizer(recipe, origin)
    yield* scheduler(recipe, origin, 1, opt.defaults)
    const m = recipe.model
    if (!Recipe.isSpec(m)) {
      const size = Recipe.resizeOf(recipe.data.resize)
      const parameters = cnn2Parameters(m.filters, typeof size === "number" ? size : size[0])
      if (parameters > MAX_PARAMETERS)
        return yield* tooLarge(origin, "model.filters", "CNN2", parameters, m.filters)
      return
    }
    const { built } = yield* buildModel(recipe, origin, inputShapeOf(recipe), undefined)
    const parameters = Module.countParameters(built.module)
    if (parameters > MAX_PARAMETERS) return yield* tooLarge(origin, "model", "the model", parameters)
  })

const tooLarge = (origin: Recipe.Origin, path: string, what: string, parameters: number, value?: unknown) =>
  Recipe.errorAt(
    origin,
    path,
    `${what} would have ${parameters.toLocaleString("en-US")} parameters, more than the ` +
      `${MAX_PARAMETERS.toLocaleString("en-US")} this machine's training can hold ` +
      "(parameters, gradients and optimizer state are each that many float32 values)",
    value
  )

/** A bound on model size checked before any data is read (about 2 GB of float32 with Adam). */
export const MAX_PARAMETERS = 100_000_000

/**
 * CNN2's parameter count for `filters` and square `imageSize` RGB images, 3 classes: two 3x3
 * convolutions each followed by a 2x2 max-pool, then Linear(filters * s * s, 50), Linear(50, 3).
 */
export const cnn2Parameters = (filters: number, imageSize: number): number => {
  const s = Math.floor((Math.floor((imageSize - 2) / 2) - 2) / 2)
  return 3 * filters * 9 + filters + filters * filters * 9 + filters + filters * s * s * 50 + 50 + 50 * 3 + 3
}
