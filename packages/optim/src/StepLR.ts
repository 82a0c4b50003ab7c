import { Effect, Schema } from "effect"
import * as F from "./Fields.js"
import { closedForm, type EpochState, type Scheduler } from "./Scheduler.js"

export const fields = {
  stepSize: F.required(F.positiveInt, "epochs between two decays"),
  gamma: F.withDefault(F.finite, 0.1, "multiplicative factor of each decay")
}
export const Config = Schema.TaggedStruct("StepLR", fields)
export type Config = typeof Config.Type

/** `lr = base * gamma ** floor(epoch / stepSize)`, stepped per epoch. */
export const scheduler = (c: Config): Scheduler<EpochState> =>
  closedForm("StepLR", "epoch", (base, epoch) => ({
    ...base,
    lr: base.lr * c.gamma ** Math.floor(epoch / c.stepSize)
  }))

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  F.decode(Config)({ ...input, _tag: "StepLR" }).pipe(Effect.map(scheduler))
