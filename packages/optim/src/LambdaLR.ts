import { type Cadence, closedForm, type EpochState, type Scheduler } from "./Scheduler.js"

/**
 * `lr = base * lrLambda(epoch)`, applied from construction on (so the first lr is
 * `base * lrLambda(0)`). Code-only: a function has no config-file form.
 */
export const make = (
  lrLambda: (epoch: number) => number,
  cadence: Cadence = "epoch"
): Scheduler<EpochState> =>
  closedForm("LambdaLR", cadence, (base, epoch) => ({ ...base, lr: base.lr * lrLambda(epoch) }))
