import type { Hyper } from "./Optimizer.js"

/**
 * When a training loop steps a scheduler: after every mini-batch, after every epoch, or after
 * every validation with the validation metric (ReduceLROnPlateau).
 */
export type Cadence = "batch" | "epoch" | "metric"

/**
 * What a step receives. `epoch` may be fractional (`epoch + batch / batches`) for the schedulers
 * that accept it (CosineAnnealingWarmRestarts); `metric` is the validation loss for "metric".
 * An empty signal is PyTorch's argument-less `scheduler.step()`.
 */
export interface Signal {
  readonly epoch?: number
  readonly metric?: number
}

/**
 * A scheduler as a pure state machine. `init(base)` gives the state whose `current` is the lr
 * used for the first step (PyTorch's "lr at step 0"); each `step` is one `scheduler.step()`.
 * States are plain JSON data so checkpoints can hold them.
 */
export interface Scheduler<S = unknown> {
  readonly name: string
  readonly cadence: Cadence
  readonly init: (base: Hyper) => S
  readonly step: (state: S, signal?: Signal) => S
  readonly current: (state: S) => Hyper
}
