/**
 * `stepwise eval`: a checkpoint on a data set: per-class `[correct, total]` (the chapter's
 * `loader_apply(val_loader, correct)`), the accuracy, and the confusion matrix. The images are
 * standardized with the training set's statistics saved in the run's config.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Core from "@stepwise/core"
import { Engine, Loss, Metrics, Trainer } from "@stepwise/core"
import type { Errors as DataErrors } from "@stepwise/data"
import { DataLoader, ImageFolder, Random } from "@stepwise/data"
import type { InvalidHyperparameter } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Option, Stream } from "effect"
import * as Charts from "./Charts.js"
import * as Checkpoint from "./Checkpoint.js"
import type * as Cli from "./Cli.js"
import { RunFolderError, runFolderError } from "./Errors.js"
import * as Pipeline from "./Pipeline.js"
import { Output } from "./Progress.js"
import * as Recipe from "./Recipe.js"
import * as Run from "./RunFolder.js"

export type Args = Cli.Values<typeof Cli.evaluate>

/** A checkpoint path or a run folder -> (run folder, checkpoint file). */
export const locate = (target: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    const info = yield* fs.stat(target).pipe(Effect.mapError(runFolderError(target)))
    if (info.type === "Directory") {
      const ckpt = yield* Run.latestCheckpoint(target)
      if (ckpt === undefined) return yield* new RunFolderError({ path: target, reason: "has no checkpoint" })
      return { runDir: target, checkpoint: ckpt.path }
    }
    return { runDir: p.dirname(p.dirname(target)), checkpoint: target }
  })

/**
 * What evaluation needs of a checkpoint: classes, preprocessing, the recipe's data defaults, and
 * the model's outputs. From the checkpoint's own run info when it has one (a file saved anywhere,
 * by the CLI or from code), else from the run folder it sits in (format-1 checkpoints).
 */
interface Evaluated {
  readonly classes: ReadonlyArray<string>
  readonly normalizer: { readonly mean: ReadonlyArray<number>; readonly std: ReadonlyArray<number> } | null
  readonly resize: Recipe.Resize
  readonly batchSize: number
  /** The recipe (absent for a checkpoint saved from code without one). */
  readonly recipe: Recipe.Recipe | undefined
  /** The run's validation folder, if it had one. */
  readonly valRoot: string | undefined
  /** Where classes and preprocessing come from, for messages. */
  readonly from: string
  readonly outputs: (b: { readonly x: Float32Array; readonly shape: ReadonlyArray<number> }) => {
    readonly values: Float32Array
  }
}

export const run = (args: Args) =>
  Effect.gen(function* () {
    const out = yield* Output
    const { runDir, checkpoint } = yield* locate(args.checkpoint)
    const snapshot = yield* Checkpoint.load(checkpoint)
    const info = snapshot.meta.run
    const backendOf = (recipe: Recipe.Recipe | undefined) =>
      Option.getOrElse(args.backend, () => recipe?.backend ?? ("wasm" as const))
    const ev: Evaluated & { readonly engine: Engine.EngineService } =
      info !== null
        ? yield* Effect.gen(function* () {
            const recipe =
              info.recipe === null
                ? undefined
                : yield* Recipe.decode(info.recipe, Recipe.fromFile(checkpoint))
            const engine = yield* Engine.make(backendOf(recipe))
            const m = yield* Core.Checkpoint.trained(snapshot, checkpoint).pipe(
              Effect.provideService(Engine.Engine, engine)
            )
            yield* Effect.addFinalizer(() =>
              Effect.sync(() => tf.dispose([...Object.values(m.params), ...Object.values(m.buffers)]))
            )
            return {
              engine,
              classes: info.classes,
              normalizer: info.normalizer,
              resize: [info.inputShape[1], info.inputShape[2]] as const,
              batchSize: Option.getOrElse(args.batchSize, () => recipe?.batchSize ?? 16),
              recipe,
              valRoot: recipe === undefined ? undefined : Pipeline.valRootOf(recipe),
              from: checkpoint,
              outputs: (b) =>
                Loss.outputs(m.built.module, m.params, b, { training: false, buffers: m.buffers })
            } satisfies Evaluated & { readonly engine: Engine.EngineService }
          })
        : yield* Effect.gen(function* () {
            const config = yield* Run.readConfig(runDir).pipe(
              Effect.mapError(
                (e) =>
                  new RunFolderError({
                    path: checkpoint,
                    reason: `has no run info (a format-1 checkpoint, or saved from code without it), and ${e.message}`,
                    cause: e
                  })
              )
            )
            const recipe = {
              ...config.recipe,
              batchSize: Option.getOrElse(args.batchSize, () => config.recipe.batchSize),
              backend: backendOf(config.recipe)
            }
            const engine = yield* Engine.make(recipe.backend)
            const origin = Recipe.fromFile(`${runDir}/${Run.CONFIG_FILE}`)
            const net = yield* Pipeline.model(
              recipe,
              origin,
              Pipeline.inputShapeOf(recipe),
              config.classes.length
            )
            const { optimizer } = yield* Pipeline.optimizer(recipe, origin, engine.numeric)
            // The scheduler too: a checkpoint restores only into the optimizer and scheduler it was saved with.
            const scheduler = yield* Pipeline.scheduler(
              recipe,
              origin,
              config.batchesPerEpoch,
              optimizer.defaults
            )
            const t = yield* Effect.flatMap(
              Trainer.make(
                { model: net.built.module, loss: Loss.crossEntropy, optimizer, scheduler },
                yield* Random.make(recipe.seed)
              ),
              (fresh) => Checkpoint.restore(checkpoint, fresh)
            ).pipe(Effect.provideService(Engine.Engine, engine))
            yield* Effect.addFinalizer(() => Effect.sync(() => Trainer.dispose(t)))
            return {
              engine,
              classes: config.classes,
              normalizer: config.normalizer,
              resize: recipe.data.resize,
              batchSize: recipe.batchSize,
              recipe,
              valRoot: config.valRoot ?? undefined,
              from: runDir,
              outputs: (b) => Trainer.outputs(t, b)
            } satisfies Evaluated & { readonly engine: Engine.EngineService }
          })
    const { classes, recipe } = ev
    // Images are standardized with the statistics training saved, and labelled by class name
    // (a folder with some of the model's classes is scored on those).
    const fromFolder = (root: string) =>
      Effect.gen(function* () {
        const raw = yield* Pipeline.loadFolder(root, ev.resize)
        const aligned = yield* Pipeline.alignClasses(raw, root, classes, `the classes of ${ev.from}`)
        const dataset =
          ev.normalizer === null ? aligned : yield* ImageFolder.normalizeDataset(aligned, ev.normalizer)
        return { dataset, source: root }
      })
    const dataDir = Option.getOrUndefined(args.data)
    const valRoot = ev.valRoot
    // Without --data: the run's own validation set, prepared exactly as training prepared it.
    const { dataset, source } =
      dataDir !== undefined
        ? yield* fromFolder(dataDir)
        : recipe !== undefined && recipe.data.valSplit === undefined && valRoot !== undefined
          ? yield* fromFolder(valRoot)
          : yield* Effect.gen(function* () {
              const data = recipe === undefined ? undefined : yield* Pipeline.prepareData(recipe)
              if (data?.val === undefined)
                return yield* new RunFolderError({
                  path: ev.from,
                  reason: "the run has no validation set; pass --data DIR"
                })
              return { dataset: data.val, source: `${data.trainRoot} (held-out split)` }
            })
    const loader = yield* DataLoader.fromTensorDataset(dataset, { batchSize: ev.batchSize })
    const k = classes.length
    const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0))
    yield* Stream.runForEach(loader.batches(0), (b) =>
      Effect.sync(() => {
        const o = ev.outputs(b)
        const predicted = Metrics.predictions(o.values, k)
        predicted.forEach((pc, i) => {
          if (b.y[i] >= 0 && b.y[i] < k && pc >= 0) confusion[b.y[i]][pc] += 1
        })
      })
    )
    const perClass = classes.map((name, c) => {
      const total = confusion[c].reduce((a, x) => a + x, 0)
      return {
        class: name,
        correct: confusion[c][c],
        total,
        accuracy: total === 0 ? null : confusion[c][c] / total
      }
    })
    const rows: Metrics.PerClass = perClass.map((r) => [r.correct, r.total] as const)
    const [correct, total] = Metrics.total(rows)
    const width = Math.max(8, ...classes.map((c) => c.length))
    yield* out.line(`${checkpoint} on ${source} (${total} images)`)
    yield* out.line(`${"class".padEnd(width)}  correct  total  accuracy`)
    for (const r of perClass) {
      yield* out.line(
        `${r.class.padEnd(width)}  ${String(r.correct).padStart(7)}  ${String(r.total).padStart(5)}  ${r.accuracy === null ? "-" : `${(100 * r.accuracy).toFixed(2)}%`}`
      )
    }
    yield* out.line(
      `${"total".padEnd(width)}  ${String(correct).padStart(7)}  ${String(total).padStart(5)}  ${(100 * (correct / total)).toFixed(2)}%`
    )
    yield* out.line("")
    yield* out.line(`confusion matrix (rows: actual, columns: predicted)`)
    yield* out.line(`${"".padEnd(width)}  ${classes.map((c) => c.padStart(width)).join(" ")}`)
    for (let i = 0; i < k; i++)
      yield* out.line(
        `${classes[i].padEnd(width)}  ${confusion[i].map((x) => String(x).padStart(width)).join(" ")}`
      )
    const plotFile = Option.getOrUndefined(args.plot)
    let written: ReadonlyArray<string> = []
    if (plotFile !== undefined) {
      const p = yield* Path.Path
      const ext = p.extname(plotFile)
      written = yield* Run.writePicture(
        p.dirname(plotFile),
        p.basename(plotFile, ext),
        Charts.confusionMatrix(classes, confusion),
        ext === ".svg" ? "svg" : "png"
      )
      for (const f of written) yield* out.line(`wrote ${f}`)
    }
    yield* out.json({
      command: "eval",
      checkpoint,
      data: source,
      classes,
      perClass,
      correct: rows,
      total: { correct, total, accuracy: total === 0 ? null : correct / total },
      confusion,
      plots: written
    })
  }).pipe(Effect.scoped)

/** The failures of this command besides the CLI's own (named so the declaration can be emitted). */
export type PackageErrors = DataErrors.ImageFolderError | InvalidHyperparameter.InvalidHyperparameter
