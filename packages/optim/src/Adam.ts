import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import type { Numeric } from "./Numeric.js"
import { filled, gradient, type Optimizer, type OptimizerDef, perParameter } from "./Optimizer.js"

const Betas = Schema.Tuple(Schema.Number, Schema.Number)

/** The fields Adam and AdamW share (AdamW differs only in the weight-decay default). */
export const fields = (weightDecay: number) => ({
  lr: Schema.optionalWith(Schema.Number, { default: () => 1e-3 }),
  betas: Schema.optionalWith(Betas, { default: () => [0.9, 0.999] as const }),
  eps: Schema.optionalWith(Schema.Number, { default: () => 1e-8 }),
  weightDecay: Schema.optionalWith(Schema.Number, { default: () => weightDecay }),
  amsgrad: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  maximize: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

/** `torch.optim.Adam` hyperparameters, PyTorch's defaults. */
export const Config = Schema.TaggedStruct("Adam", fields(0))
export type Config = typeof Config.Type

export interface Hyperparameters {
  readonly lr: number
  readonly betas: readonly [number, number]
  readonly eps: number
  readonly weightDecay: number
  readonly amsgrad: boolean
  readonly maximize: boolean
}

export const validate = <C extends Hyperparameters>(c: C): Effect.Effect<C, H.InvalidHyperparameter> =>
  H.check([
    H.nonNegative("lr", c.lr),
    H.nonNegative("eps", c.eps),
    H.unitInterval("betas.0", c.betas[0]),
    H.unitInterval("betas.1", c.betas[1]),
    H.nonNegative("weightDecay", c.weightDecay)
  ]).pipe(Effect.as(c))

/**
 * Adam, and AdamW when `decoupled`. `hyper.beta1` (a cyclic scheduler's) overrides betas[0].
 *   m = b1 m + (1 - b1) g          v = b2 v + (1 - b2) g^2          (vmax = max(vmax, v))
 *   p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * L2 decay adds `wd * p` to g; decoupled decay first shrinks p by `1 - lr * wd` (current lr).
 */
export const adam =
  (c: Hyperparameters, decoupled: boolean): OptimizerDef =>
  <T>(N: Numeric<T>): Optimizer<T> => ({
    name: decoupled ? "AdamW" : "Adam",
    defaults: { lr: c.lr, beta1: c.betas[0] },
    init: (params) => {
      const zeros = () => filled(N, params, 0)
      const slots = { expAvg: zeros(), expAvgSq: zeros() }
      return { step: 0, slots: c.amsgrad ? { ...slots, maxExpAvgSq: zeros() } : slots }
    },
    update: (state, grads, params, hyper) => {
      const { lr } = hyper
      const [beta1, beta2] = [hyper.beta1 ?? c.betas[0], c.betas[1]]
      const step = state.step + 1
      const stepSize = lr / (1 - beta1 ** step)
      const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** step)
      const { expAvg, expAvgSq, maxExpAvgSq } = state.slots
      // The L2 term of `gradient` (none when decay is decoupled): once per step, not per parameter.
      const l2 = { maximize: c.maximize, weightDecay: decoupled ? 0 : c.weightDecay }
      const next = perParameter(params, (name, p) => {
        const g = gradient(N, grads[name], p, l2)
        if (decoupled && c.weightDecay !== 0) p = N.scale(p, 1 - lr * c.weightDecay)
        const m = N.add(N.scale(expAvg[name], beta1), N.scale(g, 1 - beta1))
        const v = N.add(N.scale(expAvgSq[name], beta2), N.scale(N.mul(g, g), 1 - beta2))
        const vmax = c.amsgrad ? N.maximum(maxExpAvgSq[name], v) : v
        const denom = N.addScalar(N.scale(N.sqrt(vmax), 1 / biasCorrection2Sqrt), c.eps)
        const param = N.sub(p, N.scale(N.div(m, denom), stepSize))
        return { param, slots: { expAvg: m, expAvgSq: v, maxExpAvgSq: c.amsgrad ? vmax : undefined } }
      })
      return { state: { step, slots: next.slots }, params: next.params }
    }
  })

export const optimizer = (c: Config): OptimizerDef => adam(c, false)

export const make = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<OptimizerDef, H.InvalidHyperparameter> =>
  H.decode(Config)({ ...input, _tag: "Adam" }).pipe(Effect.flatMap(validate), Effect.map(optimizer))
