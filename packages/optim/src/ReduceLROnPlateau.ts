import { Effect, Either, Schema } from "effect"
import * as F from "./Fields.js"
import type { Hyper } from "./Optimizer.js"
import type { Scheduler } from "./Scheduler.js"

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
  }
}

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  F.decode(Config)({ ...input, _tag: "ReduceLROnPlateau" }).pipe(Effect.map(scheduler))
