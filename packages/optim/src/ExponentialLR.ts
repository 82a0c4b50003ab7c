import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import { closedForm, type EpochState, type Scheduler } from "./Scheduler.js"

export const Config = Schema.TaggedStruct("ExponentialLR", { gamma: Schema.Number })
export type Config = typeof Config.Type

export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check([H.nonNegative("gamma", c.gamma)]).pipe(Effect.as(c))

/** `lr = base * gamma ** epoch`. */
export const scheduler = (c: Config): Scheduler<EpochState> =>
  closedForm("ExponentialLR", "epoch", (base, epoch) => ({ ...base, lr: base.lr * c.gamma ** epoch }))

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  H.decode(Config)({ ...input, _tag: "ExponentialLR" }).pipe(Effect.flatMap(validate), Effect.map(scheduler))
