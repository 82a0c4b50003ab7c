import { Effect, Schema } from "effect"
import * as F from "./Fields.js"
import { closedForm, cosineAnnealing, type EpochState, type Scheduler } from "./Scheduler.js"

export const fields = {
  tMax: F.required(F.positive, "epochs of the half cosine (T_max)"),
  etaMin: F.withDefault(F.finite, 0, "minimum learning rate")
}
export const Config = Schema.TaggedStruct("CosineAnnealingLR", fields)
export type Config = typeof Config.Type

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
  F.decode(Config)({ ...input, _tag: "CosineAnnealingLR" }).pipe(Effect.map(scheduler))
