import { Effect, Schema } from "effect"
import * as F from "./Fields.js"
import { bisectRight, closedForm, type EpochState, type Scheduler } from "./Scheduler.js"

export const fields = {
  milestones: F.required(Schema.Array(F.nonNegativeInt), "epochs at which the lr decays (repeats compound)"),
  gamma: F.withDefault(F.finite, 0.1, "multiplicative factor of each decay")
}
export const Config = Schema.TaggedStruct("MultiStepLR", fields)
export type Config = typeof Config.Type

/**
 * `lr = base * gamma ** (milestones passed)`. A milestone listed twice counts twice, so
 * repeated milestones compound (PyTorch's Counter).
 */
export const scheduler = (c: Config): Scheduler<EpochState> => {
  const sorted = [...c.milestones].sort((a, b) => a - b)
  return closedForm("MultiStepLR", "epoch", (base, epoch) => ({
    ...base,
    lr: base.lr * c.gamma ** bisectRight(sorted, epoch)
  }))
}

export const make = (input: Omit<typeof Config.Encoded, "_tag">) =>
  F.decode(Config)({ ...input, _tag: "MultiStepLR" }).pipe(Effect.map(scheduler))
