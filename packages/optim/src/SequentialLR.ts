import { Either } from "effect"
import type { Hyper } from "./Optimizer.js"
import { bisectRight, type Cadence, type Scheduler } from "./Scheduler.js"

export interface State {
  readonly base: Hyper
  readonly epoch: number
  /** The active scheduler's own state. */
  readonly inner: unknown
}

/**
 * Runs `schedulers[i]` from `milestones[i - 1]` on, each restarting from the base values at its
 * milestone (PyTorch's `SequentialLR`, which calls `step(0)` there). All share one cadence.
 */
export const make = (
  schedulers: ReadonlyArray<Scheduler<any>>,
  milestones: ReadonlyArray<number>,
  cadence: Cadence = schedulers[0].cadence
): Scheduler<State> => ({
  name: "SequentialLR",
  cadence,
  init: (base) => ({ base, epoch: 0, inner: schedulers[0].init(base) }),
  step: (s) => {
    const epoch = s.epoch + 1
    const i = bisectRight(milestones, epoch)
    const restart = i > 0 && milestones[i - 1] === epoch
    return restart
      ? Either.right({ base: s.base, epoch, inner: schedulers[i].init(s.base) })
      : Either.map(schedulers[i].step(s.inner), (inner) => ({ base: s.base, epoch, inner }))
  },
  current: (s) => schedulers[bisectRight(milestones, s.epoch)].current(s.inner)
})
