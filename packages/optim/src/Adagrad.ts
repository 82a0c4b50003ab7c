import { Effect, Schema } from "effect"
import type { InvalidHyperparameter } from "./Errors.js"
import * as F from "./Fields.js"
import type { Numeric, Params } from "./Numeric.js"
import { filled, gradient, type Optimizer, perParameter } from "./Optimizer.js"

/** `torch.optim.Adagrad`'s arguments and PyTorch's defaults, in its check order. */
export const fields = {
  lr: F.withDefault(F.nonNegative, 1e-2, "learning rate"),
  lrDecay: F.withDefault(F.nonNegative, 0, "learning-rate decay: lr / (1 + (t - 1) * lrDecay)"),
  weightDecay: F.withDefault(F.nonNegative, 0, "L2 penalty added to the gradient"),
  initialAccumulatorValue: F.withDefault(F.nonNegative, 0, "starting value of the sum of squared gradients"),
  eps: F.withDefault(F.nonNegative, 1e-10, "added to the denominator, after the square root"),
  maximize: F.withDefault(Schema.Boolean, false, "maximize the objective instead of minimizing")
}
export const Config = Schema.TaggedStruct("Adagrad", fields)
export type Config = typeof Config.Type

export type State<T> = { readonly step: number; readonly sum: Params<T> }

/**
 * Adagrad: `sum = sum + g^2`, `p = p - clr * g / (sqrt(sum) + eps)` with the decayed rate
 * `clr = lr / (1 + (t - 1) * lrDecay)`. The accumulator starts at `initialAccumulatorValue`.
 */
export const optimizer =
  (c: Config) =>
  <T>(N: Numeric<T>): Optimizer<T, State<T>> => ({
    name: "Adagrad",
    defaults: { lr: c.lr },
    init: (params) => ({ step: 0, sum: filled(N, params, c.initialAccumulatorValue) }),
    update: (state, grads, params, hyper) => {
      const step = state.step + 1
      const clr = hyper.lr / (1 + (step - 1) * c.lrDecay)
      const next = perParameter(params, (name, p) => {
        const g = gradient(N, grads[name], p, c)
        const sum = N.add(state.sum[name], N.mul(g, g))
        const std = N.addScalar(N.sqrt(sum), c.eps)
        return { param: N.sub(p, N.scale(N.div(g, std), clr)), slots: { sum } }
      })
      return { state: { step, sum: next.slots.sum }, params: next.params }
    }
  })

/** Decodes a config without its tag (filling PyTorch's defaults, checking its rules). */
export const decode = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<Config, InvalidHyperparameter> => F.decode(Config)({ ...input, _tag: "Adagrad" })

/** Decodes and builds. */
export const make = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<ReturnType<typeof optimizer>, InvalidHyperparameter> => Effect.map(decode(input), optimizer)
