/**
 * `stepwise plot NAME`: the chapter's pictures, from a run folder (`--run`) or, for the
 * illustrations, from the built-in demos (`Demos`). Each picture is written as PNG and/or SVG.
 */
import * as Path from "@effect/platform/Path"
import { Engine, TorchWeights } from "@stepwise/core"
import type { Errors as OptimErrors } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either, Option, Schema } from "effect"
import * as Charts from "./Charts.js"
import * as Checkpoint from "./Checkpoint.js"
import type * as Cli from "./Cli.js"
import * as Demos from "./Demos.js"
import { PlotError, RunFolderError } from "./Errors.js"
import * as Pipeline from "./Pipeline.js"
import { Output } from "./Progress.js"
import * as Recipe from "./Recipe.js"
import type * as Render from "./Render.js"
import * as Run from "./RunFolder.js"

export type Args = Cli.Values<typeof Cli.plot>
export type Format = Run.Format

/** What `stepwise lr-find` leaves in its folder (RunFolder reads and writes run files). */
export const LR_FINDER_FILE = Run.LR_FINDER_FILE
export const LrFinderResult = Run.LrFinderResult
export const writePicture = Run.writePicture

const needRun = (plot: string) =>
  new PlotError({ plot, reason: "needs --run RUN_DIR (a folder written by stepwise train)" })

/** Flattens a recipe to `path -> value` (arrays as JSON), for naming what differs between runs. */
const flatten = (value: unknown, prefix = ""): Array<readonly [string, string]> =>
  value !== null && typeof value === "object" && !Array.isArray(value)
    ? Object.entries(value).flatMap(([k, v]) => flatten(v, prefix === "" ? k : `${prefix}.${k}`))
    : [[prefix, JSON.stringify(value)] as const]

const FIELD_NAMES: Readonly<Record<string, string>> = {
  "model.dropout": "dropout p",
  "model.filters": "filters",
  "optimizer.name": "optimizer",
  "optimizer.lr": "lr",
  "scheduler.name": "scheduler"
}

/**
 * Legend labels for compared runs: the recipe fields whose values differ (`dropout p = 0.3` vs
 * `dropout p = 0`), or the folder names when the recipes are the same.
 */
export const differenceLabels = (
  a: { readonly name: string; readonly recipe: unknown },
  b: { readonly name: string; readonly recipe: unknown }
): readonly [string, string] => {
  const fa = new Map(flatten(a.recipe))
  const fb = new Map(flatten(b.recipe))
  const keys = [...new Set([...fa.keys(), ...fb.keys()])].filter(
    (k) => k !== "epochs" && k !== "backend" && fa.get(k) !== fb.get(k)
  )
  if (keys.length === 0) return [a.name, b.name]
  const show = (m: Map<string, string>) =>
    keys.map((k) => `${FIELD_NAMES[k] ?? k} = ${(m.get(k) ?? "-").replace(/^"(.*)"$/, "$1")}`).join(", ")
  return [show(fa), show(fb)]
}

/** Losses of a run folder (Figure 6.10 / 6.31) or, without one, SGD vs Adam on the linear regression (6.19). */
const lossesSpec = (run: string | undefined, compare: string | undefined) =>
  Effect.gen(function* () {
    if (run === undefined) {
      const runs = (yield* Demos.optimizerRuns()).slice(0, 2)
      return Charts.lossPanels(
        runs.map((r) => ({ label: r.label, losses: r.losses, valLosses: r.valLosses })),
        "Losses on the linear regression (SGD and Adam)"
      )
    }
    const p = yield* Path.Path
    const load = (dir: string) =>
      Effect.map(Run.readMetrics(dir), (rows) => ({
        losses: rows.map((r) => r.loss),
        valLosses: rows.flatMap((r) => (r.valLoss === null ? [] : [r.valLoss]))
      }))
    const first = yield* load(run)
    if (first.losses.length === 0)
      return yield* new PlotError({ plot: "losses", reason: `${run} has no epochs in metrics.jsonl` })
    if (compare === undefined) return Charts.losses([first])
    const recipeOf = (dir: string) =>
      Effect.map(Run.readConfig(dir), (c) => ({ name: p.basename(p.resolve(dir)), recipe: c.recipe }))
    const [la, lb] = differenceLabels(yield* recipeOf(run), yield* recipeOf(compare))
    return Charts.losses(
      [
        { label: la, ...first },
        { label: lb, ...(yield* load(compare)) }
      ],
      "Losses (compared)"
    )
  })

const lrSpec = (run: string | undefined) =>
  Effect.gen(function* () {
    if (run === undefined)
      return Charts.learningRates(
        yield* Demos.cyclicSchedules(),
        "batch",
        "CyclicLR modes (1e-4 to 1e-3, step size 2)"
      )
    const rows = yield* Run.readMetrics(run)
    if (rows.length === 0)
      return yield* new PlotError({ plot: "lr", reason: `${run} has no epochs in metrics.jsonl` })
    return Charts.learningRates([{ label: "learning rate", lrs: rows.flatMap((r) => r.batchLrs) }], "batch")
  })

/** conv filters of a run's latest checkpoint, in PyTorch's layout. */
const filtersSpec = (run: string | undefined, layer: string) =>
  Effect.gen(function* () {
    if (run === undefined) return yield* needRun("filters")
    const p = yield* Path.Path
    const config = yield* Run.readConfig(run)
    const path = yield* Checkpoint.latest(p.join(run, Run.CHECKPOINT_DIR))
    if (path === undefined) return yield* new RunFolderError({ path: run, reason: "has no checkpoint" })
    const snapshot = yield* Checkpoint.load(path)
    // The run's own model (CNN2 or its recipe's layers), for the weights' PyTorch layout.
    const net = yield* Pipeline.buildModel(
      config.recipe,
      Recipe.fromFile(p.join(run, Run.CONFIG_FILE)),
      Pipeline.inputShapeOf(config.recipe),
      config.classes.length
    )
    const name = `${layer}.weight`
    const host = snapshot.params[name]
    if (host === undefined || host.shape.length !== 4) {
      return yield* new PlotError({
        plot: "filters",
        reason: `no conv layer ${layer} in ${path} (try conv1 or conv2)`
      })
    }
    // Reordering the weights to PyTorch's layout runs on tensors: a cpu engine for this call.
    return yield* Effect.scoped(
      Effect.map(Engine.make("cpu"), () => {
        const params = Object.fromEntries(
          Object.entries(snapshot.params).map(([k, v]) => [
            k,
            tf.tensor(Float32Array.from(v.data as ArrayLike<number>), [...v.shape])
          ])
        )
        try {
          const torch = TorchWeights.toTorch(net.built.module, params)[name]
          return Charts.filters(
            layer,
            torch.data,
            torch.shape as unknown as readonly [number, number, number, number]
          )
        } finally {
          for (const x of Object.values(params)) x.dispose()
        }
      })
    )
  })

const lrFinderSpec = (run: string | undefined) =>
  Effect.gen(function* () {
    if (run === undefined) {
      const t = Demos.linearRegressionRangeTest()
      return Charts.lrFinder(t.tracking.lr, t.tracking.loss, suggestionMarks(t.suggestions))
    }
    const p = yield* Path.Path
    const path = p.join(run, LR_FINDER_FILE)
    if (!(yield* Run.exists(path))) {
      return yield* new PlotError({
        plot: "lr-finder",
        reason: `${run} has no ${LR_FINDER_FILE} (write one with stepwise lr-find --out ${run})`
      })
    }
    const r = yield* Schema.decodeUnknown(Schema.parseJson(LrFinderResult))(yield* Run.readText(path)).pipe(
      Effect.mapError(() => new RunFolderError({ path, reason: "not a valid LR finder result" }))
    )
    return Charts.lrFinder(
      r.lr,
      r.loss,
      Object.entries(r.suggestions).flatMap(([key, lr]) =>
        lr === null ? [] : [{ label: SUGGESTION_LABELS[key] ?? key, lr }]
      )
    )
  })

export const SUGGESTION_LABELS = Charts.SUGGESTION_LABELS
export const suggestionMarks = Charts.suggestionMarks

const adaptedSpec = (run: string | undefined, layer: string | undefined) =>
  Effect.gen(function* () {
    if (run === undefined)
      return Charts.adaptedGradients(
        Demos.adaptedGradients(yield* Demos.adamWeightGradients(), "linear.weight")
      )
    const names = yield* Run.capturedLayers(run)
    const chosen = layer ?? names[0]
    if (chosen === undefined || !names.includes(chosen)) {
      return yield* new PlotError({
        plot: "adapted-gradients",
        reason: `${run} has no captured gradients${layer === undefined ? "" : ` of ${layer}`} (train with --capture-gradients LAYER)`
      })
    }
    const captured = yield* Run.readGradients(run, chosen)
    const param = captured.weight ?? Object.values(captured)[0]
    const series = param.steps.map((step) => step[0])
    return Charts.adaptedGradients(Demos.adaptedGradients(series, `${chosen}.weight[0]`))
  })

const pathsSpec = (): Either.Either<Render.Spec, OptimErrors.SchedulerStepError> =>
  Either.map(Demos.optimizerRuns(), (runs) =>
    Charts.optimizerPaths(
      Demos.lossSurface(runs),
      runs,
      Demos.optimum(),
      "Paths over the linear-regression loss surface"
    )
  )

const updateTermsSpec = (): Either.Either<Render.Spec, OptimErrors.SchedulerStepError> =>
  Either.map(Demos.optimizerRuns(), (runs) => {
    const pick = (label: string, shown: string) => {
      const r = runs.find((x) => x.label === label)!
      return { label: shown, gradients: r.gradW, updates: r.updateW }
    }
    return Charts.updateTerms([
      pick("SGD", "SGD"),
      pick("SGD + Momentum", "SGD + Momentum"),
      pick("SGD + Nesterov", "SGD + Nesterov")
    ])
  })

/** Every picture this invocation can draw: the run's and the demos'. */
export const specsFor = (
  which: Cli.PlotName,
  run: string | undefined,
  compare: string | undefined,
  layer: string | undefined
) =>
  Effect.gen(function* () {
    const demo = (name: string, spec: Render.Spec) => [name, spec] as const
    switch (which) {
      case "losses":
        return [demo("losses", yield* lossesSpec(run, compare))]
      case "lr":
        return [demo("lr", yield* lrSpec(run))]
      case "filters": {
        const l = layer ?? "conv1"
        return [demo(`filters-${l}`, yield* filtersSpec(run, l))]
      }
      case "lr-finder":
        return [demo("lr-finder", yield* lrFinderSpec(run))]
      case "ewma": {
        const m = Demos.movingAverages(19)
        return [
          demo("ewma", Charts.movingAverages(m.values, m.series, "Moving average vs EWMA (19 periods)"))
        ]
      }
      case "adapted-gradients":
        return [demo("adapted-gradients", yield* adaptedSpec(run, layer))]
      case "dropout":
        return [demo("dropout", Charts.dropoutDistributions(Demos.dropoutDistributions()))]
      case "paths":
        return [demo("paths", yield* pathsSpec())]
      case "update-terms":
        return [demo("update-terms", yield* updateTermsSpec())]
      case "all": {
        const out: Array<readonly [string, Render.Spec]> = []
        const m = Demos.movingAverages(19)
        out.push(demo("losses", yield* lossesSpec(run, compare)))
        out.push(demo("lr", yield* lrSpec(run)))
        if (run !== undefined) {
          out.push(demo("filters-conv1", yield* filtersSpec(run, "conv1")))
          out.push(demo("filters-conv2", yield* filtersSpec(run, "conv2")))
        }
        out.push(demo("lr-finder", yield* lrFinderSpec(undefined)))
        out.push(
          demo("ewma", Charts.movingAverages(m.values, m.series, "Moving average vs EWMA (19 periods)"))
        )
        out.push(demo("adapted-gradients", yield* adaptedSpec(undefined, undefined)))
        out.push(demo("dropout", Charts.dropoutDistributions(Demos.dropoutDistributions())))
        out.push(demo("paths", yield* pathsSpec()))
        out.push(demo("update-terms", yield* updateTermsSpec()))
        return out
      }
    }
  })

export const run = (args: Args) =>
  Effect.gen(function* () {
    const out = yield* Output
    const p = yield* Path.Path
    const runDir = Option.getOrUndefined(args.run)
    if (runDir !== undefined && !(yield* Run.exists(runDir))) {
      return yield* new RunFolderError({ path: runDir, reason: "no such run folder" })
    }
    const dir = Option.getOrElse(args.out, () =>
      runDir === undefined ? p.join("runs", "plots") : p.join(runDir, Run.PLOTS_DIR)
    )
    const format = Option.getOrElse(args.format, () => "png" as const)
    const specs = yield* specsFor(
      args.which,
      runDir,
      Option.getOrUndefined(args.compare),
      Option.getOrUndefined(args.layer)
    )
    const files: Array<string> = []
    for (const [name, spec] of specs) {
      const written = yield* writePicture(dir, name, spec, format)
      for (const f of written) yield* out.line(`wrote ${f}`)
      files.push(...written)
    }
    yield* out.json({ command: "plot", plot: args.which, files })
  })
