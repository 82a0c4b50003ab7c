import { Effect, Schema } from "effect"
import * as H from "./InvalidHyperparameter.js"
import { closedForm, type EpochState, type Scheduler, withMomentum } from "./Scheduler.js"

export const Config = Schema.TaggedStruct("CyclicLR", {
  baseLr: Schema.Number,
  maxLr: Schema.Number,
  stepSizeUp: Schema.optionalWith(Schema.Number, { default: () => 2000 }),
  /** Defaults to `stepSizeUp`. */
  stepSizeDown: Schema.optional(Schema.Number),
  /** The unit of the step sizes: mini-batches, or epochs (times the loader's batches per epoch). */
  unit: Schema.optionalWith(Schema.Literal("batches", "epochs"), { default: () => "batches" as const }),
  mode: Schema.optionalWith(Schema.Literal("triangular", "triangular2", "exp_range"), {
    default: () => "triangular" as const
  }),
  gamma: Schema.optionalWith(Schema.Number, { default: () => 1 }),
  cycleMomentum: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  baseMomentum: Schema.optionalWith(Schema.Number, { default: () => 0.8 }),
  maxMomentum: Schema.optionalWith(Schema.Number, { default: () => 0.9 })
})
export type Config = typeof Config.Type

export const validate = (c: Config): Effect.Effect<Config, H.InvalidHyperparameter> =>
  H.check([
    H.nonNegative("baseLr", c.baseLr),
    H.nonNegative("maxLr", c.maxLr),
    H.positive("stepSizeUp", c.stepSizeUp),
    ...(c.stepSizeDown === undefined ? [] : [H.positive("stepSizeDown", c.stepSizeDown)])
  ]).pipe(Effect.as(c))

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
  H.decode(Config)({ ...input, _tag: "CyclicLR" }).pipe(
    Effect.flatMap(validate),
    Effect.map((c) => scheduler(c, stepsPerEpoch, custom))
  )
