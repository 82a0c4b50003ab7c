import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import type { Numeric } from "./Numeric.js"
import { filled, gradient, type Optimizer, type OptimizerDef, perParameter } from "./Optimizer.js"

/** `torch.optim.Adagrad` hyperparameters, PyTorch's defaults. */
export const Config = Schema.TaggedStruct("Adagrad", {
  lr: Schema.optionalWith(Schema.Number, { default: () => 1e-2 }),
  lrDecay: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  weightDecay: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  initialAccumulatorValue: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  eps: Schema.optionalWith(Schema.Number, { default: () => 1e-10 }),
  maximize: Schema.optionalWith(Schema.Boolean, { default: () => false })
})
export type Config = typeof Config.Type

export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check(H.nonNegativeFields(c, ["lr", "lrDecay", "weightDecay", "initialAccumulatorValue", "eps"])).pipe(
    Effect.as(c)
  )

/**
 * Adagrad: `sum = sum + g^2`, `p = p - clr * g / (sqrt(sum) + eps)` with the decayed rate
 * `clr = lr / (1 + (t - 1) * lrDecay)`. The accumulator starts at `initialAccumulatorValue`.
 */
export const optimizer =
  (c: Config): OptimizerDef =>
  <T>(N: Numeric<T>): Optimizer<T> => ({
    name: "Adagrad",
    defaults: { lr: c.lr },
    init: (params) => ({
      step: 0,
      slots: { sum: filled(N, params, c.initialAccumulatorValue) }
    }),
    update: (state, grads, params, hyper) => {
      const step = state.step + 1
      const clr = hyper.lr / (1 + (step - 1) * c.lrDecay)
      const next = perParameter(params, (name, p) => {
        const g = gradient(N, grads[name], p, c)
        const sum = N.add(state.slots.sum[name], N.mul(g, g))
        const std = N.addScalar(N.sqrt(sum), c.eps)
        return { param: N.sub(p, N.scale(N.div(g, std), clr)), slots: { sum } }
      })
      return { state: { step, slots: next.slots }, params: next.params }
    }
  })

export const make = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<OptimizerDef, H.InvalidHyperparameter> =>
  H.decode(Config)({ ...input, _tag: "Adagrad" }).pipe(Effect.flatMap(validate), Effect.map(optimizer))
