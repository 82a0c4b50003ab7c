import { Effect, Schema } from "effect"
import * as F from "./Fields.js"
import { closedForm, type EpochState, type Scheduler, withMomentum } from "./Scheduler.js"

export const fields = {
  baseLr: F.required(F.nonNegative, "lower learning-rate bound of the cycle"),
  maxLr: F.required(F.nonNegative, "upper learning-rate bound of the cycle"),
  stepSizeUp: F.withDefault(F.positive, 2000, "steps of the increasing half of a cycle"),
  stepSizeDown: F.optional(F.positive, "steps of the decreasing half (default: stepSizeUp)"),
  unit: F.withDefault(
    Schema.Literal("batches", "epochs"),
    "batches",
    "unit of the step sizes: mini-batches, or epochs (times the loader's batches per epoch)"
  ),
  mode: F.withDefault(
    Schema.Literal("triangular", "triangular2", "exp_range"),
    "triangular",
    "amplitude policy: triangular, triangular2 (halved each cycle) or exp_range (gamma ** iteration)"
  ),
  gamma: F.withDefault(F.finite, 1, "exp_range's factor"),
  cycleMomentum: F.withDefault(Schema.Boolean, true, "cycle momentum (or beta1) inversely to the lr"),
  baseMomentum: F.withDefault(F.finite, 0.8, "momentum at the lr peak"),
  maxMomentum: F.withDefault(F.finite, 0.9, "momentum at the cycle's start")
}
export const Config = Schema.TaggedStruct("CyclicLR", fields)
export type Config = typeof Config.Type

/** A custom amplitude scale, replacing `mode`: a function of the cycle (1, 2, ...) or of the iteration. */
export interface ScaleFn {
  readonly scaleFn: (x: number) => number
  readonly scaleMode: "cycle" | "iterations"
}

const builtIn = (c: Config): ScaleFn => {
  switch (c.mode) {
    case "triangular":
      return { scaleFn: () => 1, scaleMode: "cycle" }
    case "triangular2":
      return { scaleFn: (cycle) => 1 / 2 ** (cycle - 1), scaleMode: "cycle" }
    case "exp_range":
      return { scaleFn: (iteration) => c.gamma ** iteration, scaleMode: "iterations" }
  }
}

/**
 * Cyclical learning rates, stepped per mini-batch; the optimizer's own lr is ignored (`baseLr`
 * is the floor). With `cycleMomentum`, momentum (SGD, RMSprop) or beta1 (Adam family: PyTorch
 * >= 2.2; 1.13 raised) moves inversely, from `maxMomentum` down to `baseMomentum` at the peak.
 * `stepsPerEpoch` converts step sizes given in epochs.
 */
export const scheduler = (c: Config, stepsPerEpoch = 1, custom?: ScaleFn): Scheduler<EpochState> => {
  const unit = c.unit === "epochs" ? stepsPerEpoch : 1
  const up = c.stepSizeUp * unit
  const down = (c.stepSizeDown ?? c.stepSizeUp) * unit
  const totalSize = up + down
  const stepRatio = up / totalSize
  const { scaleFn, scaleMode } = custom ?? builtIn(c)
  return closedForm("CyclicLR", "batch", (base, epoch) => {
    const cycle = Math.floor(1 + epoch / totalSize)
    const x = 1 + epoch / totalSize - cycle
    const scaleFactor = x <= stepRatio ? x / stepRatio : (x - 1) / (stepRatio - 1)
    const scale = scaleFn(scaleMode === "cycle" ? cycle : epoch)
    const lr = c.baseLr + (c.maxLr - c.baseLr) * scaleFactor * scale
    const momentum = c.maxMomentum - (c.maxMomentum - c.baseMomentum) * scaleFactor * scale
    return withMomentum(base, lr, c.cycleMomentum ? momentum : undefined)
  })
}

export const make = (input: Omit<typeof Config.Encoded, "_tag">, stepsPerEpoch = 1, custom?: ScaleFn) =>
  F.decode(Config)({ ...input, _tag: "CyclicLR" }).pipe(
    Effect.map((c) => scheduler(c, stepsPerEpoch, custom))
  )
