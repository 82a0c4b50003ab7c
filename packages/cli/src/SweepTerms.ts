/**
 * The sweep's terms that a trial's workflow payload carries (the metric, the stopping rule), apart
 * from `SweepSpace` so that a runner's main thread, which only decodes payloads, loads no recipe,
 * data or engine module. `SweepSpace` re-exports them.
 */
import { Schema } from "effect"

export const positiveInt = Schema.Int.pipe(Schema.positive({ message: () => "must be a positive integer" }))

export const Metrics = ["valAccuracy", "valLoss"] as const
export type Metric = (typeof Metrics)[number]

export const Stopping = Schema.Struct({
  /** Median stopping (Golovin et al., Google Vizier 2017). */
  rule: Schema.Literal("median"),
  /** No trial stops before this many epochs. */
  minEpochs: Schema.optionalWith(positiveInt, { default: () => 1 }),
  /** The median needs at least this many other trials that reached the epoch. */
  minTrials: Schema.optionalWith(positiveInt, { default: () => 3 })
})
export type Stopping = typeof Stopping.Type

/** The file in a trial's folder that holds its recipe (what `train --config` is given). */
export const RECIPE_FILE = "recipe.json"

/** The folder of a trial inside its sweep folder. */
export const trialDir = (
  p: { readonly join: (...parts: ReadonlyArray<string>) => string },
  sweepDir: string,
  trial: string
) => p.join(sweepDir, "trials", trial)
