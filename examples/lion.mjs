/**
 * Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), written as a user
 * would: a plain ES module that `stepwise train` loads from a recipe
 * (`examples/recipe-custom-optimizer.json`), and that `@stepwise/optim/testing` can property-test
 * as it is (`Laws.checkOptimizer(lion.make(config))`).
 *
 * Per parameter, with an interpolation c = beta1 * m + (1 - beta1) * g:
 *
 *   p <- p * (1 - lr * weightDecay) - lr * sign(c)      (every step has size lr: sign-based)
 *   m <- beta2 * m + (1 - beta2) * g
 *
 * The export is `{ name, schema, make }`: the hyperparameters' schema (built from optim's own
 * field helpers, so a bad value reads like a built-in's) and `make`, a decoded config to optim's
 * `OptimizerDef` (one definition for every Numeric backend). `beta1` is what a cyclic scheduler
 * may drive (`hyper.beta1`), as for Adam; the lr always comes from `hyper.lr`.
 */
import { Fields as F, Optimizer } from "@stepwise/optim"
import { Schema } from "effect"

const schema = Schema.Struct({
  lr: F.withDefault(F.positive, 1e-4, "learning rate (Lion's is 3-10x smaller than Adam's)"),
  betas: F.withDefault(Schema.Tuple(F.unitInterval, F.unitInterval), [0.9, 0.99], "(beta1, beta2)"),
  weightDecay: F.withDefault(F.nonNegative, 0, "decoupled weight decay"),
  clip: F.withDefault(F.nonNegative, 0, "clip gradients elementwise to [-clip, clip] first (0: off)")
})

/** @param {typeof schema.Type} c */
const make = (c) => (N) => ({
  name: "Lion",
  defaults: { lr: c.lr, beta1: c.betas[0] },
  // The momentum slot appears at the first step (absent: zeros), like SGD's buffer in PyTorch.
  init: () => ({ step: 0 }),
  update: (state, grads, params, hyper) => {
    const beta1 = hyper.beta1 ?? c.betas[0]
    const beta2 = c.betas[1]
    const next = Optimizer.perParameter(params, (name, p) => {
      const g = c.clip > 0 ? N.clamp(grads[name], -c.clip, c.clip) : grads[name]
      const m = state.expAvg?.[name]
      const interpolated =
        m === undefined ? N.scale(g, 1 - beta1) : N.add(N.scale(m, beta1), N.scale(g, 1 - beta1))
      const decayed = c.weightDecay === 0 ? p : N.scale(p, 1 - hyper.lr * c.weightDecay)
      const param = N.sub(decayed, N.scale(N.sign(interpolated), hyper.lr))
      const expAvg = m === undefined ? N.scale(g, 1 - beta2) : N.add(N.scale(m, beta2), N.scale(g, 1 - beta2))
      return { param, slots: { expAvg } }
    })
    return { state: { step: state.step + 1, expAvg: next.slots.expAvg }, params: next.params }
  }
})

export const lion = { name: "Lion", schema, make }
