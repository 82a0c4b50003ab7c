import { Effect, Schema } from "effect"
import * as Adam from "./Adam.js"
import type * as H from "./InvalidHyperparameter.js"
import { decode } from "./InvalidHyperparameter.js"
import type { OptimizerDef } from "./Optimizer.js"

/** `torch.optim.AdamW` hyperparameters: Adam's, with weight decay 1e-2 by default. */
export const Config = Schema.TaggedStruct("AdamW", Adam.fields(1e-2))
export type Config = typeof Config.Type

export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> => Adam.validate(c)

/** AdamW: Adam whose decay shrinks the parameter by `1 - lr * weightDecay` (current lr) first. */
export const optimizer = (c: Config): OptimizerDef => Adam.adam(c, true)

export const make = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<OptimizerDef, H.InvalidHyperparameter> =>
  decode(Config)({ ...input, _tag: "AdamW" }).pipe(Effect.flatMap(validate), Effect.map(optimizer))
