import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import { closedForm, type EpochState, type Scheduler } from "./Scheduler.js"

export const Config = Schema.TaggedStruct("StepLR", {
  stepSize: Schema.Number,
  gamma: Schema.optionalWith(Schema.Number, { default: () => 0.1 })
})
export type Config = typeof Config.Type

export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check([H.positiveInt("stepSize", c.stepSize)]).pipe(Effect.as(c))

/** `lr = base * gamma ** floor(epoch / stepSize)`, stepped per epoch. */
export const scheduler = (c: Config): Scheduler<EpochState> =>
  closedForm("StepLR", "epoch", (base, epoch) => ({
    ...base,
    lr: base.lr * c.gamma ** Math.floor(epoch / c.stepSize)
  }))

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  H.decode(Config)({ ...input, _tag: "StepLR" }).pipe(Effect.flatMap(validate), Effect.map(scheduler))
