import * as LambdaLR from "./LambdaLR.js"
import type { EpochState, Scheduler } from "./Scheduler.js"

export type StepMode = "exp" | "linear"

/**
 * The chapter's `make_lr_fn`: the factor applied to `start` at each iteration of an LR range
 * test, so that `start * lrFn(numIter) == end` (up to rounding), growing exponentially or
 * linearly in between.
 */
export const makeLrFn = (start: number, end: number, numIter: number, mode: StepMode = "exp") => {
  if (mode === "linear") {
    const factor = (end / start - 1) / numIter
    return (iteration: number): number => 1 + iteration * factor
  }
  const factor = (Math.log(end) - Math.log(start)) / numIter
  return (iteration: number): number => Math.exp(factor) ** iteration
}

/**
 * The range test's schedule as a per-batch `LambdaLR` (the chapter's); start it from an
 * optimizer whose lr is `start`.
 */
export const scheduler = (
  start: number,
  end: number,
  numIter: number,
  mode: StepMode = "exp"
): Scheduler<EpochState> => LambdaLR.make(makeLrFn(start, end, numIter, mode), "batch")
