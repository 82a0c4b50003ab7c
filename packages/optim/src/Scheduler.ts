import { Either } from "effect"
import type { SchedulerStepError } from "./Errors.js"
import type { Hyper } from "./Optimizer.js"

/**
 * When a training loop steps a scheduler: after every mini-batch, after every epoch, or after
 * every validation with the validation metric (ReduceLROnPlateau).
 */
export type Cadence = "batch" | "epoch" | "metric"

/**
 * What a step receives. `epoch` may be fractional (`epoch + batch / batches`) for the schedulers
 * that declare `fractionalEpoch` (CosineAnnealingWarmRestarts); `metric` is the validation loss
 * for "metric".
 * An empty signal is PyTorch's argument-less `scheduler.step()`.
 */
export interface Signal {
  readonly epoch?: number
  readonly metric?: number
}

/**
 * A scheduler as a pure state machine. `init(base)` gives the state whose `current` is the lr
 * used for the first step (PyTorch's "lr at step 0"); each `step` is one `scheduler.step()`.
 * States are plain JSON data so checkpoints can hold them. `step` returns an Either: it fails
 * with `SchedulerStepError` where PyTorch's `step()` raises (OneCycleLR past its total steps,
 * CosineAnnealingWarmRestarts given a negative epoch); in `Effect.gen` write
 * `state = yield* scheduler.step(state)`.
 */
export interface Scheduler<S = unknown> {
  readonly name: string
  readonly cadence: Cadence
  /**
   * True when a "batch" step should receive the fractional epoch, `signal.epoch = epoch +
   * batch / batches` (0-based; PyTorch's documented use of CosineAnnealingWarmRestarts). Others
   * get a plain step, as the chapter's argument-less `scheduler.step()`.
   */
  readonly fractionalEpoch?: boolean
  readonly init: (base: Hyper) => S
  readonly step: (state: S, signal?: Signal) => Either.Either<S, SchedulerStepError>
  readonly current: (state: S) => Hyper
}

/** The state of every scheduler that is a closed form of the step count: plain JSON. */
export interface EpochState {
  /** PyTorch's `last_epoch`: 0 after construction, +1 each `step()`. */
  readonly epoch: number
  readonly base: Hyper
}

/**
 * A scheduler given by its closed form `at(base, epoch)`. A signal's `epoch` sets the count
 * explicitly (PyTorch's deprecated `step(epoch)`); a plain step adds one.
 */
export const closedForm = (
  name: string,
  cadence: Cadence,
  at: (base: Hyper, epoch: number) => Hyper
): Scheduler<EpochState> => ({
  name,
  cadence,
  init: (base) => ({ epoch: 0, base }),
  step: (state, signal) => Either.right({ epoch: signal?.epoch ?? state.epoch + 1, base: state.base }),
  current: (state) => at(state.base, state.epoch)
})

/** `bisect.bisect_right(sorted, x)`: how many entries are <= x. */
export const bisectRight = (sorted: ReadonlyArray<number>, x: number): number => {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (x < sorted[mid]) hi = mid
    else lo = mid + 1
  }
  return lo
}

/** Which hyperparameter a momentum-cycling scheduler drives: `beta1` on Adam-like, else `momentum`. */
export const withMomentum = (base: Hyper, lr: number, momentum: number | undefined): Hyper =>
  momentum === undefined
    ? { ...base, lr }
    : base.beta1 !== undefined
      ? { ...base, lr, beta1: momentum }
      : { ...base, lr, momentum }

/** The cosine annealing of CosineAnnealingLR and SGDR: `etaMin + (base - etaMin) (1 + cos(pi t / period)) / 2`. */
export const cosineAnnealing = (base: number, etaMin: number, t: number, period: number): number =>
  etaMin + ((base - etaMin) * (1 + Math.cos((Math.PI * t) / period))) / 2
