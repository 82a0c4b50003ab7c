import { Context, Effect, Layer, Schema } from "effect"
import * as ChainedScheduler from "./ChainedScheduler.js"
import * as CosineAnnealingLR from "./CosineAnnealingLR.js"
import * as CosineAnnealingWarmRestarts from "./CosineAnnealingWarmRestarts.js"
import * as CyclicLR from "./CyclicLR.js"
import { InvalidHyperparameter } from "./Errors.js"
import * as ExponentialLR from "./ExponentialLR.js"
import * as F from "./Fields.js"
import * as MultiStepLR from "./MultiStepLR.js"
import * as OneCycleLR from "./OneCycleLR.js"
import type { Hyper } from "./Optimizer.js"
import { Optimizer } from "./Optimizers.js"
import * as ReduceLROnPlateau from "./ReduceLROnPlateau.js"
import type * as S from "./Scheduler.js"
import * as SequentialLR from "./SequentialLR.js"
import * as StepLR from "./StepLR.js"

type Leaf =
  | StepLR.Config
  | MultiStepLR.Config
  | ExponentialLR.Config
  | CosineAnnealingLR.Config
  | ReduceLROnPlateau.Config
  | CyclicLR.Config
  | OneCycleLR.Config
  | CosineAnnealingWarmRestarts.Config
type LeafEncoded =
  | typeof StepLR.Config.Encoded
  | typeof MultiStepLR.Config.Encoded
  | typeof ExponentialLR.Config.Encoded
  | typeof CosineAnnealingLR.Config.Encoded
  | typeof ReduceLROnPlateau.Config.Encoded
  | typeof CyclicLR.Config.Encoded
  | typeof OneCycleLR.Config.Encoded
  | typeof CosineAnnealingWarmRestarts.Config.Encoded

export interface SequentialConfig {
  readonly _tag: "SequentialLR"
  readonly schedulers: ReadonlyArray<SchedulerConfig>
  readonly milestones: ReadonlyArray<number>
}
export interface SequentialEncoded {
  readonly _tag: "SequentialLR"
  readonly schedulers: ReadonlyArray<SchedulerConfigEncoded>
  readonly milestones: ReadonlyArray<number>
}
export interface ChainedConfig {
  readonly _tag: "ChainedScheduler"
  readonly schedulers: ReadonlyArray<SchedulerConfig>
}
export interface ChainedEncoded {
  readonly _tag: "ChainedScheduler"
  readonly schedulers: ReadonlyArray<SchedulerConfigEncoded>
}

export type SchedulerConfig = Leaf | SequentialConfig | ChainedConfig
export type SchedulerConfigEncoded = LeafEncoded | SequentialEncoded | ChainedEncoded

/** When a config's scheduler steps (what `fromConfig(config).cadence` will be). */
export const cadenceOf = (config: SchedulerConfig): S.Cadence => {
  switch (config._tag) {
    case "StepLR":
    case "MultiStepLR":
    case "ExponentialLR":
    case "CosineAnnealingLR":
      return "epoch"
    case "ReduceLROnPlateau":
      return "metric"
    case "CyclicLR":
    case "OneCycleLR":
      return "batch"
    case "CosineAnnealingWarmRestarts":
      return config.cadence
    case "SequentialLR":
    case "ChainedScheduler":
      return config.schedulers.length === 0 ? "epoch" : cadenceOf(config.schedulers[0])
  }
}

/** The rules of a composed scheduler's parts: at least one, none on the metric, one cadence. */
const composable = (schedulers: ReadonlyArray<SchedulerConfig>) => {
  if (schedulers.length === 0) return { path: ["schedulers"], message: "needs a scheduler" }
  const cadence = cadenceOf(schedulers[0])
  for (let i = 0; i < schedulers.length; i++) {
    if (cadenceOf(schedulers[i]) === "metric")
      return { path: ["schedulers", i], message: "ReduceLROnPlateau cannot be composed" }
    if (cadenceOf(schedulers[i]) !== cadence)
      return { path: ["schedulers", i], message: `composed schedulers must share one cadence (${cadence})` }
  }
  return undefined
}

const Sequential = Schema.TaggedStruct("SequentialLR", {
  schedulers: F.required(
    Schema.Array(Schema.suspend(() => SchedulerConfig)),
    "the schedulers, run one after the other"
  ),
  milestones: F.required(Schema.Array(F.positiveInt), "steps at which the next scheduler takes over")
}).pipe(
  Schema.filter((c) => {
    const ms = c.milestones
    if (ms.length !== c.schedulers.length - 1) {
      return {
        path: ["milestones"],
        message: `Sequential Schedulers expects number of schedulers provided to be one more than the number of milestone points, but got number of schedulers ${c.schedulers.length} and the number of milestones to be equal to ${ms.length}`
      }
    }
    const unsorted = ms.findIndex((m, i) => i > 0 && m < ms[i - 1])
    if (unsorted >= 0)
      return { path: ["milestones", unsorted], message: "milestones must be in increasing order" }
    return composable(c.schedulers) ?? true
  })
)

const Chained = Schema.TaggedStruct("ChainedScheduler", {
  schedulers: F.required(
    Schema.Array(Schema.suspend(() => SchedulerConfig)),
    "the schedulers, stepped together"
  )
}).pipe(Schema.filter((c) => composable(c.schedulers) ?? true))

/**
 * Every built-in scheduler's configuration, tagged with PyTorch's class name (LambdaLR and
 * custom scale functions are code-only). The schemas are the only definition of the
 * hyperparameters, their defaults and PyTorch's constructor rules.
 */
export const SchedulerConfig: Schema.Schema<SchedulerConfig, SchedulerConfigEncoded> = Schema.Union(
  StepLR.Config,
  MultiStepLR.Config,
  ExponentialLR.Config,
  CosineAnnealingLR.Config,
  ReduceLROnPlateau.Config,
  CyclicLR.Config,
  OneCycleLR.Config,
  CosineAnnealingWarmRestarts.Config,
  Sequential,
  Chained
)

export type Tag = SchedulerConfig["_tag"]

const fieldsByTag: { readonly [K in Tag]: Schema.Struct.Fields } = {
  StepLR: StepLR.fields,
  MultiStepLR: MultiStepLR.fields,
  ExponentialLR: ExponentialLR.fields,
  CosineAnnealingLR: CosineAnnealingLR.fields,
  ReduceLROnPlateau: ReduceLROnPlateau.fields,
  CyclicLR: CyclicLR.fields,
  OneCycleLR: OneCycleLR.fields,
  CosineAnnealingWarmRestarts: CosineAnnealingWarmRestarts.fields,
  SequentialLR: Sequential.from.fields,
  ChainedScheduler: Chained.from.fields
}

/** The tags, in the order a CLI lists them (`fieldsByTag`'s keys: its type makes it exhaustive). */
export const tags = Object.keys(fieldsByTag) as ReadonlyArray<Tag>

/**
 * The fields of a scheduler's config with type, default and description, read from its
 * schema: what a CLI derives its flags from (`fieldsOf("OneCycleLR")` -> maxLr, totalSteps, ...).
 */
export const fieldsOf = (tag: Tag): ReadonlyArray<F.FieldInfo> => F.fieldsOf(fieldsByTag[tag])

/**
 * Decodes an untrusted config, filling PyTorch's defaults and checking its rules; the first
 * broken rule fails as `InvalidHyperparameter { config, field, value, reason }` (`config` is
 * the innermost scheduler: `StepLR` / `stepSize` inside a SequentialLR).
 */
export const decode: (input: unknown) => Effect.Effect<SchedulerConfig, InvalidHyperparameter> =
  F.decode(SchedulerConfig)

export interface Options {
  /**
   * Mini-batches per epoch (the training loader's): OneCycleLR's `epochs` and CyclicLR step
   * sizes in epochs need it (a config's own OneCycleLR `stepsPerEpoch` wins).
   */
  readonly stepsPerEpoch?: number
}

const needsStepsPerEpoch = (config: string, value: unknown, reason: string) =>
  new InvalidHyperparameter({ config, field: "stepsPerEpoch", value, reason })

const build = (config: SchedulerConfig, options: Options): Effect.Effect<S.Any, InvalidHyperparameter> => {
  switch (config._tag) {
    case "StepLR":
      return Effect.succeed(StepLR.scheduler(config))
    case "MultiStepLR":
      return Effect.succeed(MultiStepLR.scheduler(config))
    case "ExponentialLR":
      return Effect.succeed(ExponentialLR.scheduler(config))
    case "CosineAnnealingLR":
      return Effect.succeed(CosineAnnealingLR.scheduler(config))
    case "ReduceLROnPlateau":
      return Effect.succeed(ReduceLROnPlateau.scheduler(config))
    case "CyclicLR": {
      const perEpoch = options.stepsPerEpoch
      if (config.unit === "batches") return Effect.succeed(CyclicLR.scheduler(config, 1))
      return perEpoch !== undefined && Number.isInteger(perEpoch) && perEpoch > 0
        ? Effect.succeed(CyclicLR.scheduler(config, perEpoch))
        : Effect.fail(
            needsStepsPerEpoch(
              "CyclicLR",
              perEpoch,
              "step sizes in epochs need the loader's mini-batches per epoch"
            )
          )
    }
    case "OneCycleLR":
      return Effect.map(OneCycleLR.totalSteps(config, options.stepsPerEpoch), (total) =>
        OneCycleLR.scheduler(config, total)
      )
    case "CosineAnnealingWarmRestarts":
      return Effect.succeed(CosineAnnealingWarmRestarts.scheduler(config))
    case "SequentialLR":
      return Effect.map(
        Effect.forEach(config.schedulers, (c) => build(c, options)),
        (built) => SequentialLR.make(built, config.milestones)
      )
    case "ChainedScheduler":
      return Effect.map(
        Effect.forEach(config.schedulers, (c) => build(c, options)),
        (built) => ChainedScheduler.make(built)
      )
  }
}

/** Checks a config like PyTorch's constructors (it may have been built in code) and builds the scheduler. */
export const fromConfig = (
  config: SchedulerConfig,
  options: Options = {}
): Effect.Effect<S.Any, InvalidHyperparameter> =>
  Effect.flatMap(F.validate(SchedulerConfig)(config), (c) => build(c, options))

/**
 * PyTorch's check that a momentum-cycling scheduler has a momentum (or beta1) to cycle: with
 * `cycleMomentum` on an optimizer without either (Adagrad), it fails naming `cycleMomentum`.
 */
export const checkCompatible = (
  config: SchedulerConfig,
  defaults: Hyper
): Effect.Effect<void, InvalidHyperparameter> => {
  switch (config._tag) {
    case "CyclicLR":
    case "OneCycleLR":
      return !config.cycleMomentum || defaults.momentum !== undefined || defaults.beta1 !== undefined
        ? Effect.void
        : Effect.fail(
            new InvalidHyperparameter({
              config: config._tag,
              field: "cycleMomentum",
              value: config.cycleMomentum,
              reason: "optimizer must support momentum or beta1 with cycleMomentum enabled"
            })
          )
    case "SequentialLR":
    case "ChainedScheduler":
      return Effect.forEach(config.schedulers, (c) => checkCompatible(c, defaults), { discard: true })
    default:
      return Effect.void
  }
}

/** The configured scheduler of a program, with its config (a loop reads `scheduler.cadence`). */
export class Scheduler extends Context.Tag("@stepwise/optim/Scheduler")<
  Scheduler,
  { readonly config: SchedulerConfig; readonly scheduler: S.Any }
>() {}

/** The `Scheduler` service from a config, checked against the program's `Optimizer`. */
export const layer = (
  config: SchedulerConfig,
  options: Options = {}
): Layer.Layer<Scheduler, InvalidHyperparameter, Optimizer> =>
  Layer.effect(
    Scheduler,
    Effect.gen(function* () {
      const optimizer = yield* Optimizer
      yield* checkCompatible(config, optimizer.defaults)
      const scheduler = yield* fromConfig(config, options)
      return { config, scheduler }
    })
  )
