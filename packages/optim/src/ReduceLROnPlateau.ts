import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import type { Hyper } from "./Optimizer.js"
import type { Scheduler } from "./Scheduler.js"

export const Config = Schema.TaggedStruct("ReduceLROnPlateau", {
  mode: Schema.optionalWith(Schema.Literal("min", "max"), { default: () => "min" as const }),
  factor: Schema.optionalWith(Schema.Number, { default: () => 0.1 }),
  patience: Schema.optionalWith(Schema.Number, { default: () => 10 }),
  threshold: Schema.optionalWith(Schema.Number, { default: () => 1e-4 }),
  thresholdMode: Schema.optionalWith(Schema.Literal("rel", "abs"), { default: () => "rel" as const }),
  cooldown: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  minLr: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  eps: Schema.optionalWith(Schema.Number, { default: () => 1e-8 })
})
export type Config = typeof Config.Type

export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check([
    { field: "factor", value: c.factor, ok: c.factor < 1, reason: "Factor should be < 1.0" },
    H.nonNegativeInt("patience", c.patience),
    H.nonNegativeInt("cooldown", c.cooldown),
    H.nonNegative("threshold", c.threshold),
    H.nonNegative("minLr", c.minLr)
  ]).pipe(Effect.as(c))

/** Plain JSON: `best` is null until the first metric (PyTorch's +-inf, which JSON cannot hold). */
export interface State {
  readonly base: Hyper
  readonly lr: number
  readonly best: number | null
  readonly numBadEpochs: number
  readonly cooldownCounter: number
  readonly lastEpoch: number
}

/**
 * Cuts the lr by `factor` after more than `patience` epochs without improvement (so patience 4
 * reduces on the 5th bad epoch), then ignores bad epochs for `cooldown` epochs. Stepped with
 * the validation metric; a step without a metric leaves the state unchanged.
 */
export const scheduler = (c: Config): Scheduler<State> => {
  const isBetter = (a: number, best: number | null): boolean => {
    if (best === null) return !Number.isNaN(a) // anything beats PyTorch's initial inf / -inf
    if (c.mode === "min")
      return c.thresholdMode === "rel" ? a < best * (1 - c.threshold) : a < best - c.threshold
    return c.thresholdMode === "rel" ? a > best * (1 + c.threshold) : a > best + c.threshold
  }
  return {
    name: "ReduceLROnPlateau",
    cadence: "metric",
    init: (base) => ({ base, lr: base.lr, best: null, numBadEpochs: 0, cooldownCounter: 0, lastEpoch: 0 }),
    step: (s, signal) => {
      const metric = signal?.metric
      if (metric === undefined) return s
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
      return {
        base: s.base,
        lr,
        best,
        numBadEpochs,
        cooldownCounter,
        lastEpoch: signal?.epoch ?? s.lastEpoch + 1
      }
    },
    current: (s) => ({ ...s.base, lr: s.lr })
  }
}

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  H.decode(Config)({ ...input, _tag: "ReduceLROnPlateau" }).pipe(
    Effect.flatMap(validate),
    Effect.map(scheduler)
  )
