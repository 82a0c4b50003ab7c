/**
 * The recipe's scheduler section -> @stepwise/optim's tagged scheduler config, validated and
 * built. `"epoch"` step sizes become the loader's mini-batches per epoch (the chapter's
 * `step_size_up=len(train_loader)`); OneCycleLR spans the whole run unless told otherwise.
 */
import type { InvalidHyperparameter, Optimizer, Scheduler } from "@stepwise/optim"
import { Schedulers } from "@stepwise/optim"
import { Effect } from "effect"
import { ConfigError } from "./Errors.js"
import type * as Recipe from "./Recipe.js"

const TAGS = {
  step: "StepLR",
  multistep: "MultiStepLR",
  exponential: "ExponentialLR",
  cosine: "CosineAnnealingLR",
  plateau: "ReduceLROnPlateau",
  cyclic: "CyclicLR",
  onecycle: "OneCycleLR",
  "cosine-warm-restarts": "CosineAnnealingWarmRestarts"
} as const

/** Which recipe fields each scheduler takes (PyTorch's constructor arguments). */
export const SCHEDULER_FIELDS: { readonly [K in keyof typeof TAGS]: ReadonlyArray<string> } = {
  step: ["stepSize", "gamma"],
  multistep: ["milestones", "gamma"],
  exponential: ["gamma"],
  cosine: ["tMax", "etaMin"],
  plateau: ["mode", "factor", "patience", "threshold", "thresholdMode", "cooldown", "minLr"],
  cyclic: [
    "baseLr",
    "maxLr",
    "stepSizeUp",
    "stepSizeDown",
    "mode",
    "gamma",
    "cycleMomentum",
    "baseMomentum",
    "maxMomentum"
  ],
  onecycle: [
    "maxLr",
    "totalSteps",
    "pctStart",
    "annealStrategy",
    "cycleMomentum",
    "baseMomentum",
    "maxMomentum",
    "divFactor",
    "finalDivFactor",
    "threePhase"
  ],
  "cosine-warm-restarts": ["t0", "tMult", "etaMin"]
}

/** The tagged input for `Schedulers.decode`, or undefined for `none`. */
export const schedulerInput = (
  recipe: Recipe.Recipe,
  file: string,
  batchesPerEpoch: number
): Effect.Effect<Record<string, unknown> | undefined, ConfigError> => {
  const s = recipe.scheduler
  const given = Object.keys(s).filter((k) => k !== "name" && (s as Record<string, unknown>)[k] !== undefined)
  if (s.name === "none") {
    return given.length === 0
      ? Effect.succeed(undefined)
      : Effect.fail(
          new ConfigError({
            file,
            field: `scheduler.${given[0]}`,
            reason: "given, but no scheduler is chosen"
          })
        )
  }
  const allowed = new Set(SCHEDULER_FIELDS[s.name])
  const extra = given.find((k) => !allowed.has(k))
  if (extra !== undefined) {
    return Effect.fail(
      new ConfigError({ file, field: `scheduler.${extra}`, reason: `does not apply to ${s.name}` })
    )
  }
  const input: Record<string, unknown> = { _tag: TAGS[s.name] }
  for (const k of given) {
    const v = (s as Record<string, unknown>)[k]
    input[k] = v === "epoch" ? batchesPerEpoch : v
  }
  if (s.name === "onecycle" && input.totalSteps === undefined) input.epochs = recipe.epochs
  return Effect.succeed(input)
}

/**
 * Decodes, checks against the optimizer (momentum cycling needs its `defaults` to hold a
 * momentum or beta1) and builds; undefined for `none`.
 */
export const build = (
  recipe: Recipe.Recipe,
  file: string,
  batchesPerEpoch: number,
  optimizerDefaults: Optimizer.Hyper
): Effect.Effect<
  Scheduler.Scheduler<any> | undefined,
  ConfigError | InvalidHyperparameter.InvalidHyperparameter
> =>
  Effect.gen(function* () {
    const input = yield* schedulerInput(recipe, file, batchesPerEpoch)
    if (input === undefined) return undefined
    const config = yield* Schedulers.decode(input)
    yield* Schedulers.checkCompatible(config, optimizerDefaults)
    return yield* Schedulers.fromConfig(config, { stepsPerEpoch: batchesPerEpoch })
  })
