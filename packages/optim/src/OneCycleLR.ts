import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import type { Scheduler } from "./Scheduler.js"
import { type EpochState, withMomentum } from "./Scheduler.js"

export const Config = Schema.TaggedStruct("OneCycleLR", {
  maxLr: Schema.Number,
  /** Total mini-batches; or give `epochs` and the loader's batches per epoch count. */
  totalSteps: Schema.optional(Schema.Number),
  epochs: Schema.optional(Schema.Number),
  pctStart: Schema.optionalWith(Schema.Number, { default: () => 0.3 }),
  annealStrategy: Schema.optionalWith(Schema.Literal("cos", "linear"), { default: () => "cos" as const }),
  cycleMomentum: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  baseMomentum: Schema.optionalWith(Schema.Number, { default: () => 0.85 }),
  maxMomentum: Schema.optionalWith(Schema.Number, { default: () => 0.95 }),
  divFactor: Schema.optionalWith(Schema.Number, { default: () => 25 }),
  finalDivFactor: Schema.optionalWith(Schema.Number, { default: () => 1e4 }),
  threePhase: Schema.optionalWith(Schema.Boolean, { default: () => false })
})
export type Config = typeof Config.Type

export const totalSteps = (c: Config, stepsPerEpoch: number): number =>
  c.totalSteps ?? (c.epochs ?? 0) * stepsPerEpoch

export const validate = (c: Config, stepsPerEpoch = 1): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check([
    c.totalSteps !== undefined
      ? H.positiveInt("totalSteps", c.totalSteps)
      : c.epochs !== undefined
        ? H.positiveInt("epochs", c.epochs)
        : { field: "totalSteps", value: undefined, ok: false, reason: "give totalSteps, or epochs" },
    H.positiveInt("stepsPerEpoch", stepsPerEpoch),
    {
      field: "pctStart",
      value: c.pctStart,
      ok: c.pctStart >= 0 && c.pctStart <= 1,
      reason: "must be in [0, 1]"
    }
  ]).pipe(Effect.as(c))

const cosine = (start: number, end: number, pct: number) =>
  end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1)
const linear = (start: number, end: number, pct: number) => (end - start) * pct + start

/**
 * The 1cycle policy, stepped per mini-batch: from `maxLr / divFactor` up to `maxLr` over
 * `pctStart` of the steps, then down to `initial / finalDivFactor` (three phases: back to the
 * initial lr first). Momentum / beta1 moves inversely. Stepping past `totalSteps`, where
 * PyTorch raises, holds the value reached at `totalSteps`.
 */
export const scheduler = (c: Config, stepsPerEpoch = 1): Scheduler<EpochState> => {
  const total = totalSteps(c, stepsPerEpoch)
  const initial = c.maxLr / c.divFactor
  const min = initial / c.finalDivFactor
  const [hi, lo] = [c.maxMomentum, c.baseMomentum]
  const phases = c.threePhase
    ? [
        { end: c.pctStart * total - 1, lr: [initial, c.maxLr], m: [hi, lo] },
        { end: 2 * c.pctStart * total - 2, lr: [c.maxLr, initial], m: [lo, hi] },
        { end: total - 1, lr: [initial, min], m: [hi, hi] }
      ]
    : [
        { end: c.pctStart * total - 1, lr: [initial, c.maxLr], m: [hi, lo] },
        { end: total - 1, lr: [c.maxLr, min], m: [lo, hi] }
      ]
  const anneal = c.annealStrategy === "cos" ? cosine : linear
  return {
    name: "OneCycleLR",
    cadence: "batch",
    init: (base) => ({ epoch: 0, base }),
    step: (s, signal) => ({ epoch: Math.min(signal?.epoch ?? s.epoch + 1, total), base: s.base }),
    current: ({ base, epoch }) => {
      let start = 0
      for (let i = 0; i < phases.length; i++) {
        const phase = phases[i]
        if (epoch <= phase.end || i === phases.length - 1) {
          const pct = (epoch - start) / (phase.end - start)
          const lr = anneal(phase.lr[0], phase.lr[1], pct)
          return withMomentum(base, lr, c.cycleMomentum ? anneal(phase.m[0], phase.m[1], pct) : undefined)
        }
        start = phase.end
      }
      return base // unreachable: the last phase always matches
    }
  }
}

export const make = (input: Omit<typeof Config.Encoded, "_tag">, stepsPerEpoch = 1) =>
  H.decode(Config)({ ...input, _tag: "OneCycleLR" }).pipe(
    Effect.flatMap((c) => validate(c, stepsPerEpoch)),
    Effect.map((c) => scheduler(c, stepsPerEpoch))
  )
