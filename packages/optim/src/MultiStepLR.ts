import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import { bisectRight, closedForm, type EpochState, type Scheduler } from "./Scheduler.js"

export const Config = Schema.TaggedStruct("MultiStepLR", {
  milestones: Schema.Array(Schema.Number),
  gamma: Schema.optionalWith(Schema.Number, { default: () => 0.1 })
})
export type Config = typeof Config.Type

export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check(c.milestones.map((m, i) => H.nonNegativeInt(`milestones.${i}`, m))).pipe(Effect.as(c))

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
  H.decode(Config)({ ...input, _tag: "MultiStepLR" }).pipe(Effect.flatMap(validate), Effect.map(scheduler))
