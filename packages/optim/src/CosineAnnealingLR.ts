import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import { closedForm, cosineAnnealing, type EpochState, type Scheduler } from "./Scheduler.js"

export const Config = Schema.TaggedStruct("CosineAnnealingLR", {
  tMax: Schema.Number,
  etaMin: Schema.optionalWith(Schema.Number, { default: () => 0 })
})
export type Config = typeof Config.Type

export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check([H.positive("tMax", c.tMax)]).pipe(Effect.as(c))

/**
 * `lr = etaMin + (base - etaMin) (1 + cos(pi epoch / tMax)) / 2`. Not clamped at tMax: past it
 * the lr rises again (a cosine of period 2 tMax), as in PyTorch.
 */
export const scheduler = (c: Config): Scheduler<EpochState> =>
  closedForm("CosineAnnealingLR", "epoch", (base, epoch) => ({
    ...base,
    lr: cosineAnnealing(base.lr, c.etaMin, epoch, c.tMax)
  }))

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  H.decode(Config)({ ...input, _tag: "CosineAnnealingLR" }).pipe(
    Effect.flatMap(validate),
    Effect.map(scheduler)
  )
