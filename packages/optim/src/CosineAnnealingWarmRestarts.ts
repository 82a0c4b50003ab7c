import { Effect, Either, Schema } from "effect"
import { SchedulerStepError } from "./Errors.js"
import * as F from "./Fields.js"
import type { Hyper } from "./Optimizer.js"
import {
  cosineAnnealing,
  HyperSchema,
  JsonNumber,
  jsonState,
  make as makeScheduler,
  type Scheduler
} from "./Scheduler.js"

export const fields = {
  t0: F.required(F.positiveInt, "epochs until the first restart (T_0)"),
  tMult: F.withDefault(
    F.int.pipe(Schema.greaterThanOrEqualTo(1, { message: () => "must be an integer >= 1" })),
    1,
    "factor by which the period grows after each restart (T_mult)"
  ),
  etaMin: F.withDefault(F.finite, 0, "minimum learning rate"),
  /**
   * The chapter steps it after every mini-batch with the fractional epoch (its `StepByStep`
   * counts it among the batch schedulers); "epoch" steps it once an epoch instead.
   */
  cadence: F.withDefault(
    Schema.Literal("batch", "epoch"),
    "batch",
    "step after every mini-batch with the fractional epoch, or once an epoch"
  )
}
export const Config = Schema.TaggedStruct("CosineAnnealingWarmRestarts", fields)
export type Config = typeof Config.Type

export interface State {
  readonly base: Hyper
  /** Epochs since the last restart (fractional when stepped with fractional epochs). */
  readonly tCur: number
  /** The current period. */
  readonly tI: number
  readonly lastEpoch: number
}

export const State = jsonState(
  Schema.Struct({ base: HyperSchema, tCur: JsonNumber, tI: JsonNumber, lastEpoch: JsonNumber })
)

/**
 * SGDR: a cosine from base to `etaMin` over `tI` epochs, then a restart with the period times
 * `tMult`. Stepped per batch with a fractional `signal.epoch = epoch + batch / batches` (the
 * chapter's way; cadence "batch", the default), or per epoch. A step without an epoch adds one;
 * a negative epoch fails, as PyTorch raises.
 */
export const scheduler = (c: Config): Scheduler<State> =>
  makeScheduler({
    name: "CosineAnnealingWarmRestarts",
    stateSchema: State,
    cadence: c.cadence,
    fractionalEpoch: true,
    init: (base) => ({ base, tCur: 0, tI: c.t0, lastEpoch: 0 }),
    step: (s, signal) => {
      const epoch = signal?.epoch
      if (epoch === undefined) {
        const tCur = s.tCur + 1
        return Either.right(
          tCur >= s.tI
            ? { base: s.base, tCur: tCur - s.tI, tI: s.tI * c.tMult, lastEpoch: s.lastEpoch + 1 }
            : { ...s, tCur, lastEpoch: s.lastEpoch + 1 }
        )
      }
      if (!(epoch >= 0)) {
        return Either.left(
          new SchedulerStepError({
            scheduler: "CosineAnnealingWarmRestarts",
            reason: `Expected non-negative epoch, but got ${epoch}`
          })
        )
      }
      const lastEpoch = Math.floor(epoch)
      if (epoch < c.t0) return Either.right({ base: s.base, tCur: epoch, tI: c.t0, lastEpoch })
      if (c.tMult === 1) return Either.right({ base: s.base, tCur: epoch % c.t0, tI: s.tI, lastEpoch })
      const n = Math.trunc(Math.log((epoch / c.t0) * (c.tMult - 1) + 1) / Math.log(c.tMult))
      return Either.right({
        base: s.base,
        tCur: epoch - (c.t0 * (c.tMult ** n - 1)) / (c.tMult - 1),
        tI: c.t0 * c.tMult ** n,
        lastEpoch
      })
    },
    current: (s) => ({
      ...s.base,
      lr: cosineAnnealing(s.base.lr, c.etaMin, s.tCur, s.tI)
    })
  })

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  F.decode(Config)({ ...input, _tag: "CosineAnnealingWarmRestarts" }).pipe(Effect.map(scheduler))
