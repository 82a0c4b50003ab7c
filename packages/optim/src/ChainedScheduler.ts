import { Either } from "effect"
import type { Hyper } from "./Optimizer.js"
import type { Cadence, Scheduler, Signal } from "./Scheduler.js"

export interface State {
  readonly base: Hyper
  readonly inner: ReadonlyArray<unknown>
}

/**
 * Steps every scheduler together; the lr is the base times each one's factor `lr_i / base`,
 * which is PyTorch's `ChainedScheduler` for its multiplicative schedulers (Step, MultiStep,
 * Exponential, Lambda-like, cosine with etaMin 0 before its first minimum). Momentum / beta1:
 * the last scheduler that moves it wins.
 */
export const make = (
  schedulers: ReadonlyArray<Scheduler<any>>,
  cadence: Cadence = schedulers[0].cadence
): Scheduler<State> => ({
  name: "ChainedScheduler",
  cadence,
  init: (base) => ({ base, inner: schedulers.map((s) => s.init(base)) }),
  step: (s, signal?: Signal) =>
    Either.map(Either.all(schedulers.map((sch, i) => sch.step(s.inner[i], signal))), (inner) => ({
      base: s.base,
      inner
    })),
  current: ({ base, inner }) => {
    let out: Hyper = base
    let factor = 1
    schedulers.forEach((sch, i) => {
      const h = sch.current(inner[i])
      factor *= base.lr === 0 ? 0 : h.lr / base.lr
      if (h.momentum !== base.momentum) out = { ...out, momentum: h.momentum }
      if (h.beta1 !== base.beta1) out = { ...out, beta1: h.beta1 }
    })
    return { ...out, lr: base.lr * factor }
  }
})
