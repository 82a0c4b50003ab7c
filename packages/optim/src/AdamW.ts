import { Effect, Schema } from "effect"
import * as Adam from "./Adam.js"
import type { InvalidHyperparameter } from "./Errors.js"
import * as F from "./Fields.js"

/** `torch.optim.AdamW`'s arguments: Adam's, with a decoupled weight decay of 1e-2 by default. */
export const fields = Adam.fieldsWith(
  1e-2,
  "decoupled weight decay: p *= 1 - lr * weightDecay before the step"
)
export const Config = Schema.TaggedStruct("AdamW", fields)
export type Config = typeof Config.Type

export type State<T> = Adam.State<T>

/** AdamW: Adam whose decay shrinks the parameter by `1 - lr * weightDecay` (current lr) first. */
export const optimizer = (c: Config) => Adam.adam(c, true)

/** Decodes a config without its tag (filling PyTorch's defaults, checking its rules). */
export const decode = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<Config, InvalidHyperparameter> => F.decode(Config)({ ...input, _tag: "AdamW" })

/** Decodes and builds. */
export const make = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<ReturnType<typeof optimizer>, InvalidHyperparameter> => Effect.map(decode(input), optimizer)
