import { Context, Effect, Layer, Schema } from "effect"
import * as ChainedScheduler from "./ChainedScheduler.js"
import * as CosineAnnealingLR from "./CosineAnnealingLR.js"
import * as CosineAnnealingWarmRestarts from "./CosineAnnealingWarmRestarts.js"
import * as CyclicLR from "./CyclicLR.js"
import * as ExponentialLR from "./ExponentialLR.js"
import * as H from "./InvalidHyperparameter.js"
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

/** Every built-in scheduler's configuration, tagged (LambdaLR and custom scale functions are code-only). */
export const SchedulerConfig: Schema.Schema<SchedulerConfig, SchedulerConfigEncoded> = Schema.Union(
  StepLR.Config,
  MultiStepLR.Config,
  ExponentialLR.Config,
  CosineAnnealingLR.Config,
  ReduceLROnPlateau.Config,
  CyclicLR.Config,
  OneCycleLR.Config,
  CosineAnnealingWarmRestarts.Config,
  Schema.TaggedStruct("SequentialLR", {
    schedulers: Schema.Array(Schema.suspend(() => SchedulerConfig)),
    milestones: Schema.Array(Schema.Number)
  }),
  Schema.TaggedStruct("ChainedScheduler", { schedulers: Schema.Array(Schema.suspend(() => SchedulerConfig)) })
)

/** Decodes an untrusted config (filling PyTorch's defaults); errors name the field and value. */
export const decode: (input: unknown) => Effect.Effect<SchedulerConfig, H.InvalidHyperparameter> =
  H.decode(SchedulerConfig)

export interface Options {
  /** Mini-batches per epoch: converts CyclicLR step sizes in epochs and OneCycleLR's `epochs`. */
  readonly stepsPerEpoch: number
}

const composite = (
  field: string,
  configs: ReadonlyArray<SchedulerConfig>,
  options: Options
): Effect.Effect<ReadonlyArray<S.Scheduler<any>>, H.InvalidHyperparameter> =>
  Effect.gen(function* () {
    if (configs.length === 0)
      return yield* new H.InvalidHyperparameter({ field, value: [], reason: "needs a scheduler" })
    const built = yield* Effect.forEach(configs, (c) => fromConfig(c, options))
    yield* H.check([
      ...built.map((s, i) => ({
        field: `${field}.${i}`,
        value: s.name,
        ok: s.cadence !== "metric",
        reason: "ReduceLROnPlateau cannot be composed"
      })),
      ...built.map((s, i) => ({
        field: `${field}.${i}`,
        value: s.cadence,
        ok: s.cadence === built[0].cadence,
        reason: `composed schedulers must share one cadence (${built[0].cadence})`
      }))
    ])
    return built
  })

/** Validates a config like PyTorch's constructors and builds the scheduler. */
export const fromConfig = (
  config: SchedulerConfig,
  options: Options = { stepsPerEpoch: 1 }
): Effect.Effect<S.Scheduler<any>, H.InvalidHyperparameter> => {
  switch (config._tag) {
    case "StepLR":
      return Effect.map(StepLR.validate(config), StepLR.scheduler)
    case "MultiStepLR":
      return Effect.map(MultiStepLR.validate(config), MultiStepLR.scheduler)
    case "ExponentialLR":
      return Effect.map(ExponentialLR.validate(config), ExponentialLR.scheduler)
    case "CosineAnnealingLR":
      return Effect.map(CosineAnnealingLR.validate(config), CosineAnnealingLR.scheduler)
    case "ReduceLROnPlateau":
      return Effect.map(ReduceLROnPlateau.validate(config), ReduceLROnPlateau.scheduler)
    case "CyclicLR":
      return H.check([H.positiveInt("stepsPerEpoch", options.stepsPerEpoch)]).pipe(
        Effect.zipRight(CyclicLR.validate(config)),
        Effect.map((c) => CyclicLR.scheduler(c, options.stepsPerEpoch))
      )
    case "OneCycleLR":
      return Effect.map(OneCycleLR.validate(config, options.stepsPerEpoch), (c) =>
        OneCycleLR.scheduler(c, options.stepsPerEpoch)
      )
    case "CosineAnnealingWarmRestarts":
      return Effect.map(CosineAnnealingWarmRestarts.validate(config), CosineAnnealingWarmRestarts.scheduler)
    case "SequentialLR":
      return Effect.gen(function* () {
        const built = yield* composite("schedulers", config.schedulers, options)
        const ms = config.milestones
        yield* H.check([
          {
            field: "milestones",
            value: ms,
            ok: ms.length === built.length - 1,
            reason: `needs one milestone fewer than schedulers (${built.length})`
          },
          ...ms.map((m, i) => ({
            field: `milestones.${i}`,
            value: m,
            ok: Number.isInteger(m) && m > 0 && (i === 0 || m >= ms[i - 1]),
            reason: "milestones must be positive integers in increasing order"
          }))
        ])
        return SequentialLR.make(built, ms)
      })
    case "ChainedScheduler":
      return Effect.map(composite("schedulers", config.schedulers, options), (built) =>
        ChainedScheduler.make(built)
      )
  }
}

/**
 * PyTorch's check that a momentum-cycling scheduler has a momentum (or beta1) to cycle: with
 * `cycleMomentum` on an optimizer without either (Adagrad), it fails naming `cycleMomentum`.
 */
export const checkCompatible = (
  config: SchedulerConfig,
  defaults: Hyper
): Effect.Effect<void, H.InvalidHyperparameter> => {
  switch (config._tag) {
    case "CyclicLR":
    case "OneCycleLR":
      return H.check([
        {
          field: "cycleMomentum",
          value: config.cycleMomentum,
          ok: !config.cycleMomentum || defaults.momentum !== undefined || defaults.beta1 !== undefined,
          reason: "optimizer must support momentum or beta1 with cycleMomentum enabled"
        }
      ])
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
  { readonly config: SchedulerConfig; readonly scheduler: S.Scheduler<any> }
>() {}

/** The `Scheduler` service from a config, checked against the program's `Optimizer`. */
export const layer = (
  config: SchedulerConfig,
  options: Options
): Layer.Layer<Scheduler, H.InvalidHyperparameter, Optimizer> =>
  Layer.effect(
    Scheduler,
    Effect.gen(function* () {
      const optimizer = yield* Optimizer
      yield* checkCompatible(config, optimizer.defaults)
      const scheduler = yield* fromConfig(config, options)
      return { config, scheduler }
    })
  )
