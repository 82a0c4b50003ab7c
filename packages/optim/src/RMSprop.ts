import { Effect, Schema } from "effect"
import type { InvalidHyperparameter } from "./Errors.js"
import * as F from "./Fields.js"
import type { Numeric, Params } from "./Numeric.js"
import { filled, gradient, type Optimizer, perParameter } from "./Optimizer.js"

/** `torch.optim.RMSprop`'s arguments and PyTorch's defaults, in its check order. */
export const fields = {
  lr: F.withDefault(F.nonNegative, 1e-2, "learning rate"),
  alpha: F.withDefault(F.nonNegative, 0.99, "smoothing constant of the running average of g^2"),
  eps: F.withDefault(F.nonNegative, 1e-8, "added to the denominator, after the square root"),
  weightDecay: F.withDefault(F.nonNegative, 0, "L2 penalty added to the gradient"),
  momentum: F.withDefault(F.nonNegative, 0, "momentum factor"),
  centered: F.withDefault(Schema.Boolean, false, "normalize by the estimated variance of the gradient"),
  maximize: F.withDefault(Schema.Boolean, false, "maximize the objective instead of minimizing")
}
export const Config = Schema.TaggedStruct("RMSprop", fields)
export type Config = typeof Config.Type

/** `gradAvg` when centered, `momentumBuffer` when momentum > 0 (or once a cycled momentum was). */
export type State<T> = {
  readonly step: number
  readonly squareAvg: Params<T>
  readonly gradAvg?: Params<T>
  readonly momentumBuffer?: Params<T>
}

/**
 * RMSprop (no bias correction; eps added after the square root):
 *   squareAvg = a squareAvg + (1 - a) g^2;  centered: gradAvg = a gradAvg + (1 - a) g,
 *   avg = sqrt(squareAvg - gradAvg^2) + eps, else sqrt(squareAvg) + eps
 *   momentum > 0: buf = momentum buf + g / avg; p = p - lr buf.   Else p = p - lr g / avg.
 */
export const optimizer =
  (c: Config) =>
  <T>(N: Numeric<T>): Optimizer<T, State<T>> => ({
    name: "RMSprop",
    defaults: { lr: c.lr, momentum: c.momentum },
    init: (params) => ({
      step: 0,
      squareAvg: filled(N, params, 0),
      ...(c.momentum > 0 ? { momentumBuffer: filled(N, params, 0) } : {}),
      ...(c.centered ? { gradAvg: filled(N, params, 0) } : {})
    }),
    update: (state, grads, params, hyper) => {
      const { lr } = hyper
      const momentum = hyper.momentum ?? c.momentum
      const { squareAvg, gradAvg, momentumBuffer } = state
      const a = c.alpha
      const next = perParameter(params, (name, p) => {
        const g = gradient(N, grads[name], p, c)
        const sq = N.add(N.scale(squareAvg[name], a), N.scale(N.mul(g, g), 1 - a))
        const ga = gradAvg === undefined ? undefined : N.add(N.scale(gradAvg[name], a), N.scale(g, 1 - a))
        const avg = N.addScalar(N.sqrt(ga === undefined ? sq : N.sub(sq, N.mul(ga, ga))), c.eps)
        if (momentum > 0) {
          const previous = momentumBuffer?.[name] ?? N.fullLike(p, 0) // a cycled momentum may start late
          const buf = N.add(N.scale(previous, momentum), N.div(g, avg))
          return {
            param: N.sub(p, N.scale(buf, lr)),
            slots: { squareAvg: sq, gradAvg: ga, momentumBuffer: buf }
          }
        }
        return {
          param: N.sub(p, N.scale(N.div(g, avg), lr)),
          slots: { squareAvg: sq, gradAvg: ga, momentumBuffer: momentumBuffer?.[name] }
        }
      })
      const s = next.slots
      return {
        state: {
          step: state.step + 1,
          squareAvg: s.squareAvg,
          ...(gradAvg === undefined ? {} : { gradAvg: s.gradAvg }),
          ...(momentumBuffer === undefined && momentum === 0 ? {} : { momentumBuffer: s.momentumBuffer })
        },
        params: next.params
      }
    }
  })

/** Decodes a config without its tag (filling PyTorch's defaults, checking its rules). */
export const decode = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<Config, InvalidHyperparameter> => F.decode(Config)({ ...input, _tag: "RMSprop" })

/** Decodes and builds. */
export const make = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<ReturnType<typeof optimizer>, InvalidHyperparameter> => Effect.map(decode(input), optimizer)
