import { Effect, Schema } from "effect"
import type { InvalidHyperparameter } from "./Errors.js"
import * as F from "./Fields.js"
import type { Numeric, Params } from "./Numeric.js"
import { gradient, type Optimizer, perParameter } from "./Optimizer.js"

/** `torch.optim.SGD`'s arguments (lr is required, as in PyTorch 1.13), in its check order. */
export const fields = {
  lr: F.required(F.nonNegative, "learning rate"),
  momentum: F.withDefault(F.nonNegative, 0, "momentum factor (0: plain SGD)"),
  dampening: F.withDefault(F.finite, 0, "dampening for momentum (not applied on the first step)"),
  weightDecay: F.withDefault(F.nonNegative, 0, "L2 penalty added to the gradient"),
  nesterov: F.withDefault(Schema.Boolean, false, "Nesterov momentum (needs momentum > 0 and dampening 0)"),
  maximize: F.withDefault(Schema.Boolean, false, "maximize the objective instead of minimizing")
}

/** The config, with PyTorch's cross-field rule on nesterov. */
export const Config = Schema.TaggedStruct("SGD", fields).pipe(
  Schema.filter(
    (c) =>
      !c.nesterov ||
      (c.momentum > 0 && c.dampening === 0) || {
        path: ["nesterov"],
        message: `Nesterov momentum requires a momentum and zero dampening (momentum = ${c.momentum}, dampening = ${c.dampening})`
      }
  )
)
export type Config = typeof Config.Type

/** PyTorch's lazily created buffer: absent until the first step with momentum. */
export type State<T> = { readonly step: number; readonly momentumBuffer?: Params<T> }

/**
 * SGD. `hyper.momentum` (a cyclic scheduler's) overrides the configured momentum.
 * First step: the buffer is the gradient itself, undampened (PyTorch's rule); later
 * `buf = momentum * buf + (1 - dampening) * g`. Nesterov steps along `g + momentum * buf`.
 * A numeric with `fused.sgd` runs the same step as one call over every parameter.
 */
export const optimizer =
  (c: Config) =>
  <T>(N: Numeric<T>): Optimizer<T, State<T>> => ({
    name: "SGD",
    defaults: { lr: c.lr, momentum: c.momentum },
    init: () => ({ step: 0 }),
    update: (state, grads, params, hyper) => {
      const lr = hyper.lr
      const momentum = hyper.momentum ?? c.momentum
      const buffers = state.momentumBuffer
      const fused = N.fused?.sgd
      // The fused hook takes every parameter in one call (one kernel per step on the engine).
      const fusedOut =
        fused === undefined
          ? undefined
          : fused(
              Object.keys(params).map((name) => ({
                param: params[name],
                grad: grads[name],
                momentumBuffer: buffers?.[name]
              })),
              {
                lr,
                momentum,
                dampening: c.dampening,
                weightDecay: c.weightDecay,
                nesterov: c.nesterov,
                maximize: c.maximize,
                first: buffers === undefined
              }
            )
      let i = 0
      const next = perParameter(params, (name, p) => {
        const previous = buffers?.[name]
        if (fusedOut !== undefined) {
          const out = fusedOut[i++]
          return {
            param: out.param,
            slots: { momentumBuffer: momentum === 0 ? undefined : out.momentumBuffer }
          }
        }
        const g = gradient(N, grads[name], p, c)
        if (momentum === 0) return { param: N.sub(p, N.scale(g, lr)), slots: {} }
        // scale(g, 1) copies, so the state never aliases the caller's gradient
        const buf =
          previous === undefined
            ? N.scale(g, 1)
            : N.add(N.scale(previous, momentum), c.dampening === 0 ? g : N.scale(g, 1 - c.dampening))
        const direction = c.nesterov ? N.add(g, N.scale(buf, momentum)) : buf
        return { param: N.sub(p, N.scale(direction, lr)), slots: { momentumBuffer: buf } }
      })
      // With momentum 0 this step, PyTorch leaves any existing buffer untouched.
      const momentumBuffer = momentum === 0 ? buffers : next.slots.momentumBuffer
      const step = state.step + 1
      return {
        state: momentumBuffer === undefined ? { step } : { step, momentumBuffer },
        params: next.params
      }
    }
  })

/** Decodes a config without its tag (filling PyTorch's defaults, checking its rules). */
export const decode = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<Config, InvalidHyperparameter> => F.decode(Config)({ ...input, _tag: "SGD" })

/** Decodes and builds. */
export const make = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<ReturnType<typeof optimizer>, InvalidHyperparameter> => Effect.map(decode(input), optimizer)
