import { Effect, Schema } from "effect"
import type { InvalidHyperparameter } from "./Errors.js"
import * as F from "./Fields.js"
import type { Numeric, Params } from "./Numeric.js"
import { filled, gradient, type Optimizer, perParameter } from "./Optimizer.js"

const Betas = Schema.Tuple(F.unitInterval, F.unitInterval)

/** The fields Adam and AdamW share (AdamW differs only in the weight-decay default). */
export const fieldsWith = (weightDecay: number, weightDecayDescription: string) => ({
  lr: F.withDefault(F.nonNegative, 1e-3, "learning rate"),
  betas: F.withDefault(Betas, [0.9, 0.999] as const, "coefficients of the running averages of g and g^2"),
  eps: F.withDefault(F.nonNegative, 1e-8, "added to the denominator, after the square root"),
  weightDecay: F.withDefault(F.nonNegative, weightDecay, weightDecayDescription),
  amsgrad: F.withDefault(Schema.Boolean, false, "use the running maximum of the second moment (AMSGrad)"),
  maximize: F.withDefault(Schema.Boolean, false, "maximize the objective instead of minimizing")
})

/** `torch.optim.Adam`'s arguments and PyTorch's defaults. */
export const fields = fieldsWith(0, "L2 penalty added to the gradient")
export const Config = Schema.TaggedStruct("Adam", fields)
export type Config = typeof Config.Type

export interface Hyperparameters {
  readonly lr: number
  readonly betas: readonly [number, number]
  readonly eps: number
  readonly weightDecay: number
  readonly amsgrad: boolean
  readonly maximize: boolean
}

/** Adam's and AdamW's state (`maxExpAvgSq` with amsgrad). */
export type State<T> = {
  readonly step: number
  readonly expAvg: Params<T>
  readonly expAvgSq: Params<T>
  readonly maxExpAvgSq?: Params<T>
}

/**
 * Adam, and AdamW when `decoupled`. `hyper.beta1` (a cyclic scheduler's) overrides betas[0].
 *   m = b1 m + (1 - b1) g          v = b2 v + (1 - b2) g^2          (vmax = max(vmax, v))
 *   p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * L2 decay adds `wd * p` to g; decoupled decay first shrinks p by `1 - lr * wd` (current lr).
 * A numeric with `fused.adam` runs the same step as one call over every parameter.
 */
export const adam =
  (c: Hyperparameters, decoupled: boolean) =>
  <T>(N: Numeric<T>): Optimizer<T, State<T>> => ({
    name: decoupled ? "AdamW" : "Adam",
    defaults: { lr: c.lr, beta1: c.betas[0] },
    init: (params) => {
      const zeros = () => filled(N, params, 0)
      const state = { step: 0, expAvg: zeros(), expAvgSq: zeros() }
      return c.amsgrad ? { ...state, maxExpAvgSq: zeros() } : state
    },
    update: (state, grads, params, hyper) => {
      const { lr } = hyper
      const [beta1, beta2] = [hyper.beta1 ?? c.betas[0], c.betas[1]]
      const step = state.step + 1
      const stepSize = lr / (1 - beta1 ** step)
      const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** step)
      const { expAvg, expAvgSq, maxExpAvgSq } = state
      const fused = N.fused?.adam
      const hyperparameters = {
        lr,
        beta1,
        beta2,
        eps: c.eps,
        weightDecay: c.weightDecay,
        decoupled,
        amsgrad: c.amsgrad,
        maximize: c.maximize,
        step
      }
      // The L2 term of `gradient` (none when decay is decoupled): once per step, not per parameter.
      const l2 = { maximize: c.maximize, weightDecay: decoupled ? 0 : c.weightDecay }
      // The fused hook takes every parameter in one call (one kernel per step on the engine).
      const names = Object.keys(params)
      const fusedOut =
        fused === undefined
          ? undefined
          : fused(
              names.map((name) => ({
                param: params[name],
                grad: grads[name],
                expAvg: expAvg[name],
                expAvgSq: expAvgSq[name],
                maxExpAvgSq: maxExpAvgSq?.[name]
              })),
              hyperparameters
            )
      let i = 0
      const next = perParameter(params, (name, p) => {
        if (fusedOut !== undefined) {
          const out = fusedOut[i++]
          return {
            param: out.param,
            slots: { expAvg: out.expAvg, expAvgSq: out.expAvgSq, maxExpAvgSq: out.maxExpAvgSq }
          }
        }
        const g = gradient(N, grads[name], p, l2)
        if (decoupled && c.weightDecay !== 0) p = N.scale(p, 1 - lr * c.weightDecay)
        const m = N.add(N.scale(expAvg[name], beta1), N.scale(g, 1 - beta1))
        const v = N.add(N.scale(expAvgSq[name], beta2), N.scale(N.mul(g, g), 1 - beta2))
        const vmax = maxExpAvgSq === undefined ? v : N.maximum(maxExpAvgSq[name], v)
        const denom = N.addScalar(N.scale(N.sqrt(vmax), 1 / biasCorrection2Sqrt), c.eps)
        const param = N.sub(p, N.scale(N.div(m, denom), stepSize))
        return { param, slots: { expAvg: m, expAvgSq: v, maxExpAvgSq: c.amsgrad ? vmax : undefined } }
      })
      const { expAvg: m, expAvgSq: v, maxExpAvgSq: vmax } = next.slots
      return {
        state: c.amsgrad
          ? { step, expAvg: m, expAvgSq: v, maxExpAvgSq: vmax }
          : { step, expAvg: m, expAvgSq: v },
        params: next.params
      }
    }
  })

export const optimizer = (c: Config) => adam(c, false)

/** Decodes a config without its tag (filling PyTorch's defaults, checking its rules). */
export const decode = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<Config, InvalidHyperparameter> => F.decode(Config)({ ...input, _tag: "Adam" })

/** Decodes and builds. */
export const make = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<ReturnType<typeof optimizer>, InvalidHyperparameter> => Effect.map(decode(input), optimizer)
