import { Effect, Either, Schema } from "effect"
import * as F from "./Fields.js"
import type { Hyper } from "./Optimizer.js"
import {
  HyperSchema,
  type Json,
  JsonNumber,
  jsonState,
  make as makeScheduler,
  type Scheduler
} from "./Scheduler.js"

export const fields = {
  mode: F.withDefault(Schema.Literal("min", "max"), "min", "min: the metric should fall; max: rise"),
  factor: F.withDefault(
    F.finite.pipe(Schema.lessThan(1, { message: () => "Factor should be < 1.0" })),
    0.1,
    "multiplicative factor of each reduction"
  ),
  patience: F.withDefault(F.nonNegativeInt, 10, "bad epochs tolerated before a reduction"),
  threshold: F.withDefault(F.nonNegative, 1e-4, "minimal change that counts as an improvement"),
  thresholdMode: F.withDefault(
    Schema.Literal("rel", "abs"),
    "rel",
    "threshold relative to best (rel) or absolute (abs)"
  ),
  cooldown: F.withDefault(F.nonNegativeInt, 0, "epochs to wait after a reduction"),
  minLr: F.withDefault(F.nonNegative, 0, "lower bound of the lr"),
  eps: F.withDefault(F.nonNegative, 1e-8, "minimal decay: smaller reductions are skipped")
}
export const Config = Schema.TaggedStruct("ReduceLROnPlateau", fields)
export type Config = typeof Config.Type

/** PyTorch's attributes; `best` starts at its `mode_worse` (inf for "min", -inf for "max"). */
export interface State {
  readonly base: Hyper
  readonly lr: number
  readonly best: number
  readonly numBadEpochs: number
  readonly cooldownCounter: number
  readonly lastEpoch: number
}

/**
 * The state as JSON, `best` a JSON-safe number ("Infinity" before the first metric). A null
 * best (format-1 checkpoints wrote the initial best so) reads as `worst`, the mode's initial one.
 */
export const stateSchema = (worst: number): Schema.Schema<State, Json> =>
  jsonState(
    Schema.Struct({
      base: HyperSchema,
      lr: JsonNumber,
      best: Schema.Union(
        JsonNumber,
        Schema.transform(Schema.Null, Schema.Number, {
          strict: true,
          decode: () => worst,
          encode: () => null
        })
      ),
      numBadEpochs: JsonNumber,
      cooldownCounter: JsonNumber,
      lastEpoch: JsonNumber
    })
  )

/**
 * Cuts the lr by `factor` after more than `patience` epochs without improvement (so patience 4
 * reduces on the 5th bad epoch), then ignores bad epochs for `cooldown` epochs. Stepped with
 * the validation metric; a step without a metric leaves the state unchanged.
 */
export const scheduler = (c: Config): Scheduler<State> => {
  const worst = c.mode === "min" ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY
  const isBetter = (a: number, best: number): boolean => {
    if (c.mode === "min")
      return c.thresholdMode === "rel" ? a < best * (1 - c.threshold) : a < best - c.threshold
    return c.thresholdMode === "rel" ? a > best * (1 + c.threshold) : a > best + c.threshold
  }
  return makeScheduler({
    name: "ReduceLROnPlateau",
    cadence: "metric",
    stateSchema: stateSchema(worst),
    init: (base) => ({ base, lr: base.lr, best: worst, numBadEpochs: 0, cooldownCounter: 0, lastEpoch: 0 }),
    step: (s, signal) => {
      const metric = signal?.metric
      if (metric === undefined) return Either.right(s)
      const better = isBetter(metric, s.best)
      const best = better ? metric : s.best
      let numBadEpochs = better ? 0 : s.numBadEpochs + 1
      let cooldownCounter = s.cooldownCounter
      if (cooldownCounter > 0) {
        cooldownCounter -= 1
        numBadEpochs = 0
      }
      let lr = s.lr
      if (numBadEpochs > c.patience) {
        const reduced = Math.max(lr * c.factor, c.minLr)
        if (lr - reduced > c.eps) lr = reduced
        cooldownCounter = c.cooldown
        numBadEpochs = 0
      }
      return Either.right({
        base: s.base,
        lr,
        best,
        numBadEpochs,
        cooldownCounter,
        lastEpoch: signal?.epoch ?? s.lastEpoch + 1
      })
    },
    current: (s) => ({ ...s.base, lr: s.lr })
  })
}

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  F.decode(Config)({ ...input, _tag: "ReduceLROnPlateau" }).pipe(Effect.map(scheduler))
