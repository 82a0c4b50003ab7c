import { Effect, Schema } from "effect"
import * as F from "./Fields.js"
import { closedForm, type EpochState, type Scheduler } from "./Scheduler.js"

export const fields = {
  gamma: F.required(F.nonNegative, "multiplicative factor of the decay, every epoch")
}
export const Config = Schema.TaggedStruct("ExponentialLR", fields)
export type Config = typeof Config.Type

/** `lr = base * gamma ** epoch`. */
export const scheduler = (c: Config): Scheduler<EpochState> =>
  closedForm("ExponentialLR", "epoch", (base, epoch) => ({ ...base, lr: base.lr * c.gamma ** epoch }))

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  F.decode(Config)({ ...input, _tag: "ExponentialLR" }).pipe(Effect.map(scheduler))
