import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import type { Hyper } from "./Optimizer.js"
import { cosineAnnealing, type Scheduler } from "./Scheduler.js"

export const Config = Schema.TaggedStruct("CosineAnnealingWarmRestarts", {
  t0: Schema.Number,
  tMult: Schema.optionalWith(Schema.Number, { default: () => 1 }),
  etaMin: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  /**
   * The chapter steps it after every mini-batch with the fractional epoch (its `StepByStep`
   * counts it among the batch schedulers); "epoch" steps it once an epoch instead.
   */
  cadence: Schema.optionalWith(Schema.Literal("batch", "epoch"), { default: () => "batch" as const })
})
export type Config = typeof Config.Type

export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check([
    H.positiveInt("t0", c.t0),
    {
      field: "tMult",
      value: c.tMult,
      ok: Number.isInteger(c.tMult) && c.tMult >= 1,
      reason: "must be an integer >= 1"
    }
  ]).pipe(Effect.as(c))

export interface State {
  readonly base: Hyper
  /** Epochs since the last restart (fractional when stepped with fractional epochs). */
  readonly tCur: number
  /** The current period. */
  readonly tI: number
  readonly lastEpoch: number
}

/**
 * SGDR: a cosine from base to `etaMin` over `tI` epochs, then a restart with the period times
 * `tMult`. Stepped per batch with a fractional `signal.epoch = epoch + batch / batches` (the
 * chapter's way; cadence "batch", the default), or per epoch. A step without an epoch adds one.
 */
export const scheduler = (c: Config): Scheduler<State> => ({
  name: "CosineAnnealingWarmRestarts",
  cadence: c.cadence,
  fractionalEpoch: true,
  init: (base) => ({ base, tCur: 0, tI: c.t0, lastEpoch: 0 }),
  step: (s, signal) => {
    const epoch = signal?.epoch
    if (epoch === undefined) {
      const tCur = s.tCur + 1
      return tCur >= s.tI
        ? { base: s.base, tCur: tCur - s.tI, tI: s.tI * c.tMult, lastEpoch: s.lastEpoch + 1 }
        : { ...s, tCur, lastEpoch: s.lastEpoch + 1 }
    }
    const lastEpoch = Math.floor(Math.max(epoch, 0))
    if (epoch < c.t0) return { base: s.base, tCur: Math.max(epoch, 0), tI: c.t0, lastEpoch }
    if (c.tMult === 1) return { base: s.base, tCur: epoch % c.t0, tI: s.tI, lastEpoch }
    const n = Math.trunc(Math.log((epoch / c.t0) * (c.tMult - 1) + 1) / Math.log(c.tMult))
    return {
      base: s.base,
      tCur: epoch - (c.t0 * (c.tMult ** n - 1)) / (c.tMult - 1),
      tI: c.t0 * c.tMult ** n,
      lastEpoch
    }
  },
  current: (s) => ({
    ...s.base,
    lr: cosineAnnealing(s.base.lr, c.etaMin, s.tCur, s.tI)
  })
})

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  H.decode(Config)({ ...input, _tag: "CosineAnnealingWarmRestarts" }).pipe(
    Effect.flatMap(validate),
    Effect.map(scheduler)
  )
