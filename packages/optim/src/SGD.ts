import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import type { Numeric } from "./Numeric.js"
import { gradient, type Optimizer, type OptimizerDef, perParameter } from "./Optimizer.js"

/** `torch.optim.SGD` hyperparameters (lr is required, as in PyTorch 1.13). */
export const Config = Schema.TaggedStruct("SGD", {
  lr: Schema.Number,
  momentum: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  dampening: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  weightDecay: Schema.optionalWith(Schema.Number, { default: () => 0 }),
  nesterov: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  maximize: Schema.optionalWith(Schema.Boolean, { default: () => false })
})
export type Config = typeof Config.Type

/** PyTorch's constructor checks. */
export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check([
    ...H.nonNegativeFields(c, ["lr", "momentum", "weightDecay"]),
    {
      field: "nesterov",
      value: c.nesterov,
      ok: !c.nesterov || (c.momentum > 0 && c.dampening === 0),
      reason: `Nesterov momentum requires a momentum and zero dampening (momentum = ${c.momentum}, dampening = ${c.dampening})`
    }
  ]).pipe(Effect.as(c))

/**
 * SGD. `hyper.momentum` (a cyclic scheduler's) overrides the configured momentum.
 * First step: the buffer is the gradient itself, undampened (PyTorch's rule); later
 * `buf = momentum * buf + (1 - dampening) * g`. Nesterov steps along `g + momentum * buf`.
 */
export const optimizer =
  (c: Config): OptimizerDef =>
  <T>(N: Numeric<T>): Optimizer<T> => ({
    name: "SGD",
    defaults: { lr: c.lr, momentum: c.momentum },
    init: () => ({ step: 0, slots: {} }),
    update: (state, grads, params, hyper) => {
      const lr = hyper.lr
      const momentum = hyper.momentum ?? c.momentum
      const buffers = state.slots.momentumBuffer
      const next = perParameter(params, (name, p) => {
        const g = gradient(N, grads[name], p, c)
        if (momentum === 0) return { param: N.sub(p, N.scale(g, lr)), slots: {} }
        const previous = buffers?.[name]
        // scale(g, 1) copies, so the state never aliases the caller's gradient
        const buf =
          previous === undefined
            ? N.scale(g, 1)
            : N.add(N.scale(previous, momentum), c.dampening === 0 ? g : N.scale(g, 1 - c.dampening))
        const direction = c.nesterov ? N.add(g, N.scale(buf, momentum)) : buf
        return { param: N.sub(p, N.scale(direction, lr)), slots: { momentumBuffer: buf } }
      })
      // With momentum 0 this step, PyTorch leaves any existing buffer untouched.
      const slots = momentum === 0 ? state.slots : next.slots
      return { state: { step: state.step + 1, slots }, params: next.params }
    }
  })

/** Decodes (filling PyTorch's defaults), validates and builds. */
export const make = (
  input: Omit<typeof Config.Encoded, "_tag">
): Effect.Effect<OptimizerDef, H.InvalidHyperparameter> =>
  H.decode(Config)({ ...input, _tag: "SGD" }).pipe(Effect.flatMap(validate), Effect.map(optimizer))
