import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import type { Numeric } from "./Numeric.js"
import { filled, gradient, type Optimizer, type OptimizerDef, perParameter } from "./Optimizer.js"

/** `torch.optim.RMSprop` hyperparameters, PyTorch's defaults. */
export const Config = Schema.TaggedStruct("RMSprop", {
  lr: Schema.optionalWith(Schema.Number, { default: () => 1e-2 }),
  alpha: Schema.optionalWith(Schema.Number, { default: () => 0.99 }),
  eps: Schema.optionalWith(Schema.Number, { default: () => 1e-8 }),
  weightDecay: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  momentum: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  centered: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  maximize: Schema.optionalWith(Schema.Boolean, { default: () => false })
})
export type Config = typeof Config.Type

export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check(H.nonNegativeFields(c, ["lr", "eps", "momentum", "weightDecay", "alpha"])).pipe(Effect.as(c))

/**
 * RMSprop (no bias correction; eps added after the square root):
 *   squareAvg = a squareAvg + (1 - a) g^2;  centered: gradAvg = a gradAvg + (1 - a) g,
 *   avg = sqrt(squareAvg - gradAvg^2) + eps, else sqrt(squareAvg) + eps
 *   momentum > 0: buf = momentum buf + g / avg; p = p - lr buf.   Else p = p - lr g / avg.
 */
export const optimizer =
  (c: Config): OptimizerDef =>
  <T>(N: Numeric<T>): Optimizer<T> => ({
    name: "RMSprop",
    defaults: { lr: c.lr, momentum: c.momentum },
    init: (params) => ({
      step: 0,
      slots: {
        squareAvg: filled(N, params, 0),
        ...(c.momentum > 0 ? { momentumBuffer: filled(N, params, 0) } : {}),
        ...(c.centered ? { gradAvg: filled(N, params, 0) } : {})
      }
    }),
    update: (state, grads, params, hyper) => {
      const { lr } = hyper
      const momentum = hyper.momentum ?? c.momentum
      const { squareAvg, gradAvg, momentumBuffer } = state.slots
      const a = c.alpha
      const next = perParameter(params, (name, p) => {
        const g = gradient(N, grads[name], p, c)
        const sq = N.add(N.scale(squareAvg[name], a), N.scale(N.mul(g, g), 1 - a))
        const ga = c.centered ? N.add(N.scale(gradAvg[name], a), N.scale(g, 1 - a)) : undefined
        const avg = N.addScalar(N.sqrt(ga === undefined ? sq : N.sub(sq, N.mul(ga, ga))), c.eps)
        if (momentum > 0) {
          const previous = momentumBuffer?.[name] ?? N.fullLike(p, 0) // a cycled momentum may start late
          const buf = N.add(N.scale(previous, momentum), N.div(g, avg))
          return {
            param: N.sub(p, N.scale(buf, lr)),
            slots: { squareAvg: sq, gradAvg: ga, momentumBuffer: buf }
          }
        }
        const kept = momentumBuffer?.[name]
        return {
          param: N.sub(p, N.scale(N.div(g, avg), lr)),
          slots: { squareAvg: sq, gradAvg: ga, momentumBuffer: kept }
        }
      })
      return { state: { step: state.step + 1, slots: next.slots }, params: next.params }
    }
  })

export const make = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<OptimizerDef, H.InvalidHyperparameter> =>
  H.decode(Config)({ ...input, _tag: "RMSprop" }).pipe(Effect.flatMap(validate), Effect.map(optimizer))
