/**
 * `stepwise lr-find`: the chapter's LR range test on CNN2 and the training data. The trainer
 * is a value, so nothing needs restoring afterwards; the curve, the suggestions and the
 * picture go to `--out`.
 */
import * as Path from "@effect/platform/Path"
import type { Errors as CoreErrors } from "@stepwise/core"
import { Engine, Trainer } from "@stepwise/core"
import type { Errors as DataErrors } from "@stepwise/data"
import type { InvalidHyperparameter } from "@stepwise/optim"
import { Clock, Effect, Option } from "effect"
import * as Charts from "./Charts.js"
import type * as Cli from "./Cli.js"
import { COMMAND_LINE, ConfigError } from "./Errors.js"
import * as Pipeline from "./Pipeline.js"
import { Output } from "./Progress.js"
import * as Recipe from "./Recipe.js"
import * as Resolve from "./Resolve.js"
import * as Run from "./RunFolder.js"

export type Args = Cli.Values<typeof Cli.lrFind>

export const run = (args: Args) =>
  Effect.gen(function* () {
    const out = yield* Output
    const p = yield* Path.Path
    const now = yield* Clock.currentTimeMillis
    const { recipe: base, origin } = yield* Resolve.resolve(args)
    const startLr = Option.getOrElse(args.startLr, () => Number(base.optimizer.lr ?? Recipe.DEFAULT_LR))
    const endLr = Option.getOrElse(args.endLr, () => 0.1)
    const numIter = Option.getOrElse(args.numIter, () => 100)
    const stepMode = Option.getOrElse(args.stepMode, () => "exp" as const)
    const alpha = Option.getOrElse(args.smoothing, () => 0.05)
    if (stepMode === "exp" && !(startLr > 0)) {
      return yield* new ConfigError({
        file: COMMAND_LINE,
        field: "--start-lr",
        reason: `must be > 0 for an exponential test (got ${startLr})`
      })
    }
    if (!(endLr > startLr)) {
      return yield* new ConfigError({
        file: COMMAND_LINE,
        field: "--end-lr",
        reason: `must be above the start lr ${startLr} (got ${endLr})`
      })
    }
    // The test runs without any scheduler: it is its own schedule.
    const recipe = {
      ...base,
      optimizer: { ...base.optimizer, lr: startLr },
      scheduler: undefined
    }
    yield* Pipeline.validateEarly(recipe, origin)
    const given = Option.getOrUndefined(args.out)
    const dir = given ?? (yield* Run.claimNewDir(Run.defaultRunDir(new Date(now), "lr-find-")))
    yield* Run.lock(dir, { removeIfEmpty: given === undefined })
    yield* Run.removeStaleTemps(dir)
    const { trainer: t, engine } = yield* Pipeline.setup(recipe, origin)
    yield* out.line(
      `stepwise: LR range test of ${Recipe.isSpec(recipe.model) ? "the recipe's model" : "CNN2"} with ${Pipeline.describeOptimizer(recipe)}, ${startLr} -> ${endLr} over ${numIter} mini-batches (${stepMode})`
    )
    const result = yield* Trainer.lrRangeTest(t, { endLr, numIter, stepMode, alpha, seed: recipe.seed }).pipe(
      Effect.provideService(Engine.Engine, engine),
      Effect.ensuring(Effect.sync(() => Trainer.dispose(t)))
    )
    const s = result.suggestions
    const suggestions = {
      steepest: s.steepest?.lr ?? null,
      valley: s.valley?.lr ?? null,
      minimum: s.minimum?.lr ?? null
    }
    const show = (x: number | null) => (x === null ? "-" : x.toExponential(2))
    yield* out.line(
      `suggested learning rates: steepest ${show(suggestions.steepest)}, valley ${show(suggestions.valley)}, minimum/10 ${show(suggestions.minimum)}`
    )
    if (result.stopped !== undefined)
      yield* out.line(
        `(the test stopped early: the loss ${result.stopped === "diverged" ? "diverged" : "was not finite"})`
      )
    const payload = {
      lr: result.tracking.lr,
      loss: result.tracking.loss,
      suggestions,
      stopped: result.stopped ?? null
    }
    yield* Run.writeFileAtomic(p.join(dir, Run.LR_FINDER_FILE), `${JSON.stringify(payload)}\n`)
    const plots = yield* Run.writePicture(
      dir,
      "lr-finder",
      Charts.lrFinder(
        result.tracking.lr,
        result.tracking.loss,
        Charts.suggestionMarks(s),
        stepMode === "exp"
      ),
      "png"
    )
    for (const f of plots) yield* out.line(`wrote ${f}`)
    yield* out.json({ command: "lr-find", dir, startLr, endLr, numIter, stepMode, ...payload, plots })
  }).pipe(Effect.scoped)

/** The failures of this command besides the CLI's own (named so the declaration can be emitted). */
export type PackageErrors =
  | DataErrors.ImageFolderError
  | InvalidHyperparameter.InvalidHyperparameter
  | Engine.BackendUnavailable
  | CoreErrors.WeightMismatch
  | CoreErrors.SafetensorsError
