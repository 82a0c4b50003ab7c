/**
 * `stepwise train`: recipe -> data -> CNN2 -> the epochs, with a live progress bar, a run folder
 * (config, metrics.jsonl, a checkpoint per epoch, pictures, TensorBoard events) and `--json`.
 *
 * Training is core's fold, consumed as a stream of per-epoch results; everything here is a
 * consumer of it: each epoch's row goes to metrics.jsonl and TensorBoard (appended), its trainer
 * to a checkpoint, its line to the terminal. Per-batch progress and captured gradients come from
 * the `TrainEvents` bus. An interrupt stops the fold between two mini-batches; the epoch being
 * written when it arrives is finished first, so the run folder always ends consistent.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type { Errors as CoreErrors } from "@stepwise/core"
import * as Core from "@stepwise/core"
import { Engine, Events, Metrics, ModelSpec, Trainer } from "@stepwise/core"
import type { Errors as DataErrors } from "@stepwise/data"
import type { InvalidHyperparameter } from "@stepwise/optim"
import { Clock, Console, Effect, Fiber, Option, Ref, Stream } from "effect"
import * as Checkpoint from "./Checkpoint.js"
import type * as Cli from "./Cli.js"
import { COMMAND_LINE, ConfigError, DataMismatch, RunFolderError, runFolderError } from "./Errors.js"
import * as Pipeline from "./Pipeline.js"
import { formatBar, formatEpochLine, makePace, Output, summaryTable } from "./Progress.js"
import * as Recipe from "./Recipe.js"
import * as Renderer from "./Renderer.js"
import * as Resolve from "./Resolve.js"
import * as Run from "./RunFolder.js"
import * as TB from "./TensorBoard.js"

export type Args = Cli.Values<typeof Cli.train>

const accuracy = (rows: Metrics.PerClass | null) => (rows === null ? null : Metrics.accuracy(rows))

/** Where a run starts: its recipe, the folder it writes, and whether it continues one. */
interface Opened {
  readonly recipe: Recipe.Recipe
  readonly origin: Recipe.Origin
  readonly runDir: string
  readonly resumed: boolean
  readonly config: Run.RunConfig | undefined
  /** `--resume FILE`: the checkpoint a new run folder starts from (its recipe and classes inside). */
  readonly from?: { readonly path: string; readonly classes: ReadonlyArray<string> } | undefined
}

/**
 * The recipe and the run folder, locked for this process (a second writer fails at once). A new
 * run gets a fresh folder; `--resume` keeps the saved recipe (only `--epochs` may extend it).
 */
const open = (args: Args, started: number) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const resumeDir = Option.getOrUndefined(args.resume)
    if (resumeDir !== undefined) {
      const fs = yield* FileSystem.FileSystem
      const info = yield* fs.stat(resumeDir).pipe(Effect.mapError(runFolderError(resumeDir)))
      // A checkpoint file continues in a new folder, so there --out is allowed.
      const given = Resolve.givenRecipeFlags(info.type === "File" ? { ...args, out: Option.none() } : args)
      if (given !== undefined) {
        return yield* new ConfigError({
          file: COMMAND_LINE,
          field: given,
          reason: `cannot change a resumed run's recipe (only --epochs can extend it)`
        })
      }
      if (info.type === "File") return yield* openCheckpoint(args, resumeDir, started)
      const config = yield* Run.readConfig(resumeDir)
      yield* Run.lock(resumeDir)
      const epochs = Option.getOrElse(args.epochs, () => config.recipe.epochs)
      return {
        recipe: { ...config.recipe, epochs },
        origin: Recipe.fromFile(p.join(resumeDir, Run.CONFIG_FILE)),
        runDir: resumeDir,
        resumed: true,
        config,
        from: undefined
      } satisfies Opened
    }
    const { recipe, origin } = yield* Resolve.resolve(args)
    yield* Pipeline.validateEarly(recipe, origin)
    const out = Option.getOrUndefined(args.out)
    const runDir = out ?? (yield* Run.claimNewDir(Run.defaultRunDir(new Date(started))))
    yield* Run.lock(runDir, { removeIfEmpty: true })
    if (yield* Run.exists(p.join(runDir, Run.CONFIG_FILE))) {
      return yield* new RunFolderError({
        path: runDir,
        reason: `already holds a run (continue it with --resume ${runDir}, or choose another --out)`
      })
    }
    return { recipe, origin, runDir, resumed: false, config: undefined, from: undefined } satisfies Opened
  })

/**
 * `--resume FILE`: a checkpoint alone (its `run` info holds the recipe) continues in a new run
 * folder (`--out`, or a fresh one); only `--epochs` may extend the recipe.
 */
const openCheckpoint = (args: Args, path: string, started: number) =>
  Effect.gen(function* () {
    const snapshot = yield* Checkpoint.load(path)
    const info = yield* Core.Checkpoint.runOf(snapshot, path).pipe(Effect.mapError(runFolderError(path)))
    if (info.recipe === null) {
      return yield* new RunFolderError({
        path,
        reason: "its run info has no recipe (saved from code): cannot resume"
      })
    }
    const origin = Recipe.fromFile(path)
    const saved = yield* Recipe.decode(info.recipe, origin)
    const recipe = { ...saved, epochs: Option.getOrElse(args.epochs, () => saved.epochs) }
    const runDir =
      Option.getOrUndefined(args.out) ?? (yield* Run.claimNewDir(Run.defaultRunDir(new Date(started))))
    yield* Run.lock(runDir, { removeIfEmpty: true })
    const p = yield* Path.Path
    if (yield* Run.exists(p.join(runDir, Run.CONFIG_FILE))) {
      return yield* new RunFolderError({ path: runDir, reason: "already holds a run (choose another --out)" })
    }
    return {
      recipe,
      origin,
      runDir,
      resumed: false,
      config: undefined,
      from: { path, classes: info.classes }
    } satisfies Opened
  })

export const run = (args: Args) =>
  Effect.gen(function* () {
    const out = yield* Output
    const p = yield* Path.Path
    const started = yield* Clock.currentTimeMillis
    const { recipe, origin, runDir, resumed, config: saved, from } = yield* open(args, started)
    yield* Run.removeStaleTemps(runDir)

    // Engine, data, model, optimizer, scheduler.
    // (A resumed run restores a checkpoint: its `initFrom` weights were read once, when it started.)
    const {
      data,
      loaders,
      trainer: fresh,
      engine,
      run: runInfo,
      built
    } = yield* Pipeline.setup(resumed ? { ...recipe, initFrom: undefined } : recipe, origin)
    const onEngine = Effect.provideService(Engine.Engine, engine)
    const parameters = Trainer.countParameters(fresh)
    const buffers = built.module.buffers.reduce((n, b) => n + b.shape.reduce((a, d) => a * d, 1), 0)
    const fingerprint = yield* Pipeline.fingerprint(data)
    if (saved !== undefined) {
      yield* Pipeline.sameClasses(`${runDir} (saved classes)`, saved.classes, data.trainRoot, data.classes)
      if (
        saved.dataFingerprint !== undefined &&
        saved.dataFingerprint !== fingerprint &&
        !args.allowDataChange
      ) {
        Trainer.dispose(fresh)
        return yield* new DataMismatch({
          what: data.trainRoot,
          reason:
            `the data changed since ${runDir} was trained on it (files added, removed or modified); ` +
            "resuming would continue on other data (pass --allow-data-change to do it anyway)"
        })
      }
    }
    if (from !== undefined)
      yield* Pipeline.sameClasses(`${from.path} (saved classes)`, from.classes, data.trainRoot, data.classes)
    const start =
      from !== undefined ? { path: from.path } : resumed ? yield* Run.reconcile(runDir) : undefined
    // A checkpoint of the initial state carries the run's seed (what resume replays from).
    const t0: Pipeline.AnyTrainer =
      start === undefined
        ? { ...fresh, seed: recipe.seed }
        : yield* onEngine(Checkpoint.restore(start.path, fresh))
    if (t0.totalEpochs >= recipe.epochs) {
      Trainer.dispose(t0)
      return yield* new ConfigError({
        file: COMMAND_LINE,
        field: "--epochs",
        reason: `${runDir} already trained ${t0.totalEpochs} of ${recipe.epochs} epochs (extend with --epochs N)`
      })
    }
    yield* Effect.addFinalizer(() => Effect.sync(() => Trainer.dispose(t0)))

    const captureLayer = Option.getOrUndefined(args.captureGradients)
    const layers = [...new Set(Object.keys(fresh.params).map(Events.layerOf))]
    if (captureLayer !== undefined && !layers.includes(captureLayer)) {
      return yield* new ConfigError({
        file: COMMAND_LINE,
        field: "--capture-gradients",
        reason: `no layer ${captureLayer} with parameters (the model has ${layers.join(", ")})`
      })
    }
    const keep = Option.getOrUndefined(args.keepCheckpoints)
    // The running accuracy comes free with the steps; the exact one costs a forward pass over
    // the training set per epoch (as much CPU as ~40% of the epoch's training).
    const trainCorrectKind = args.exactTrainAccuracy ? "eval" : "running"

    // The run folder.
    const runConfig: Run.RunConfig = {
      recipe,
      classes: data.classes,
      normalizer:
        data.normalizer === undefined ? null : { mean: data.normalizer.mean, std: data.normalizer.std },
      trainRoot: data.trainRoot,
      valRoot: data.valRoot ?? null,
      dataFingerprint: fingerprint,
      batchesPerEpoch: loaders.train.numBatches,
      parameters
    }
    yield* Run.writeConfig(runDir, runConfig)
    if (start === undefined) yield* Checkpoint.save(yield* Run.checkpointPath(runDir, 0), t0, runInfo)
    const rows: Array<Run.EpochMetrics> = resumed ? [...(yield* Run.readMetrics(runDir))] : []
    const tbOn = Option.getOrElse(args.tensorboard, () => true)
    const plotsOn = Option.getOrElse(args.plots, () => true)
    const tbPath = p.join(runDir, Run.TENSORBOARD_DIR, TB.eventFileName(started / 1000, "stepwise"))
    if (tbOn) yield* Run.appendFile(tbPath, TB.fileVersionRecord(started / 1000))
    // The pictures' worker loads its libraries (~0.7 s) on the other core while the last two
    // epochs train. Not sooner, and never before the first epoch's end: on this 2-core VM its
    // loading slows the training thread (~25% for those epochs) and adds ~80 MB while it lasts.
    const renderer = plotsOn
      ? yield* Effect.acquireRelease(Effect.sync(Renderer.make), (r) => Effect.promise(r.close))
      : undefined
    const beginPicturesAfter = Math.max(1, recipe.epochs - 2)
    if (t0.totalEpochs >= beginPicturesAfter) renderer?.begin()

    yield* out.line(
      `stepwise: ${resumed ? `resuming at epoch ${t0.totalEpochs + 1}` : "training"} ` +
        `${describeModel(recipe.model, parameters)} with ` +
        `${Pipeline.describeOptimizer(recipe)} on ${data.train.length} images ` +
        `(${loaders.train.numBatches} mini-batches of ${recipe.batchSize}), validating on ` +
        `${data.val?.length ?? 0}; run folder ${runDir}`
    )
    // torchinfo's table: each layer's output shape (batch first) and parameters.
    yield* out.line(ModelSpec.summary(built, recipe.batchSize))

    // Per-batch consumers of the event bus: the live bar and captured gradients.
    const bus = yield* Events.makeBus
    const batches = loaders.train.numBatches
    if (captureLayer !== undefined) {
      yield* Events.register("Gradients", [captureLayer]).pipe(Effect.provideService(Events.TrainEvents, bus))
    }
    // The consumer ends with the run's last mini-batch (its gradients, when captured).
    const lastEvent = (e: Events.TrainEvent) =>
      e._tag === (captureLayer === undefined ? "BatchEnd" : "Gradients") &&
      "batch" in e &&
      e.epoch === recipe.epochs - 1 &&
      e.batch === batches - 1
    // Only when it has something to do: without a terminal (`--json`, output to a file or a pipe)
    // and without captured gradients no bar is drawn, and an event nobody subscribed to costs nothing.
    const consumer =
      out.live || captureLayer !== undefined
        ? yield* Effect.forkScoped(
            Stream.runForEach(
              Stream.takeUntil(
                yield* Events.subscribe.pipe(Effect.provideService(Events.TrainEvents, bus)),
                lastEvent
              ),
              batchConsumer({ out, recipe, batches, runDir, captureLayer })
            )
          )
        : undefined

    // The fold, and its per-epoch consumers. Each epoch's files are written uninterruptibly, so
    // an interrupt lands between mini-batches or after a complete epoch, never between its files.
    // They are written while the next epoch trains (the checkpoint's bytes are taken from the
    // trainer at once): the next epoch's files, an interrupt and the end of the run wait for them.
    const saved$ = yield* Ref.make(t0.totalEpochs)
    const writing = yield* Ref.make<Fiber.Fiber<void, RunFolderError> | undefined>(undefined)
    const written = Effect.flatMap(Ref.getAndSet(writing, undefined), (f) =>
      f === undefined ? Effect.void : Fiber.join(f)
    )
    const last = yield* Ref.make<Pipeline.AnyTrainer | undefined>(undefined)
    // An epoch's seconds run from the previous epoch's row to this one's: training, validation
    // and every per-epoch step here (accuracy, the previous epoch's files), not the fold alone.
    const mark = yield* Ref.make(0)
    const onEpoch = (r: EpochResult) =>
      Effect.gen(function* () {
        const trainCorrect =
          trainCorrectKind === "eval" ? yield* correctOn(r.trainer, loaders.train) : (r.trainCorrect ?? [])
        // The validation pass counted them (eval mode, the chapter's `correct`).
        const valCorrect = loaders.val === undefined ? null : (r.valCorrect ?? null)
        const now = yield* Clock.currentTimeMillis
        const row: Run.EpochMetrics = {
          epoch: r.epoch,
          loss: r.loss,
          valLoss: r.valLoss ?? null,
          lr: r.lr,
          batchLrs: r.learningRates,
          trainCorrect,
          trainCorrectKind,
          valCorrect,
          seconds: (now - (yield* Ref.getAndSet(mark, now))) / 1000
        }
        const checkpoint = yield* Run.checkpointPath(runDir, r.epoch)
        const bytes = yield* Checkpoint.encode(checkpoint, r.trainer, runInfo)
        const events = tbOn
          ? tbRecords(row, r.batchLosses, batches, yield* Clock.currentTimeMillis)
          : undefined
        yield* written
        const write = Effect.gen(function* () {
          // The row first: a crash before the checkpoint leaves a row that resume drops.
          yield* Run.appendMetrics(runDir, row)
          yield* Run.writeFileAtomic(checkpoint, bytes)
          yield* Ref.set(saved$, r.epoch)
          if (events !== undefined) yield* Run.appendFile(tbPath, events)
          if (keep !== undefined) yield* Run.pruneCheckpoints(runDir, keep)
        })
        yield* Ref.set(writing, yield* Effect.forkScoped(Effect.uninterruptible(write)))
        rows.push(row)
        if (r.epoch === beginPicturesAfter) renderer?.begin()
        yield* Ref.set(last, r.trainer)
        yield* out.line(
          formatEpochLine(
            {
              epoch: r.epoch,
              loss: row.loss,
              valLoss: row.valLoss,
              lr: row.lr,
              trainAccuracy: accuracy(trainCorrect),
              valAccuracy: accuracy(valCorrect),
              seconds: row.seconds
            },
            recipe.epochs
          )
        )
      })

    yield* Ref.set(mark, yield* Clock.currentTimeMillis)
    yield* Stream.runForEach(
      epochsOf(t0, { epochs: recipe.epochs - t0.totalEpochs, seed: recipe.seed, countCorrect: true }).pipe(
        Stream.provideService(Engine.Engine, engine)
      ),
      onEpoch
    ).pipe(
      Effect.provideService(Events.TrainEvents, bus),
      Effect.onInterrupt(() =>
        Effect.gen(function* () {
          yield* out.clearStatus
          // (a failed write is reported by the run's failure, not here)
          yield* Effect.ignore(written)
          const epoch = yield* Ref.get(saved$)
          const at = yield* Run.checkpointPath(runDir, epoch)
          yield* Console.error(
            // (the Console adds the `stepwise: ` prefix to each line)
            `\ninterrupted during epoch ${epoch + 1}; saved the state after epoch ${epoch} to ${at}` +
              `\nresume with: stepwise train --resume ${runDir}`
          )
        })
      ),
      Effect.tap(() => written),
      Effect.tap(() => (consumer === undefined ? Effect.void : Fiber.join(consumer))),
      Effect.zipRight(Ref.get(last)),
      Effect.flatMap((final) =>
        report({
          args,
          runDir,
          rows,
          final: final ?? t0,
          data,
          renderer,
          started,
          parameters,
          buffers
        })
      ),
      Effect.ensuring(
        // The last trainer the stream emitted is ours to release.
        Effect.flatMap(Ref.get(last), (t) =>
          Effect.sync(() => t !== undefined && t !== t0 && Trainer.dispose(t))
        )
      )
    )
  }).pipe(Effect.scoped)

/**
 * The model in the run's first line: CNN2 by its flags as before (`CNN2 (5 filters, p=0.3, 6823
 * parameters)`), a preset or a list of layers by what it is.
 */
export const describeModel = (model: Recipe.Model, parameters: number): string =>
  "layers" in model
    ? `the recipe's model (${model.layers.length} layers, ${parameters} parameters)`
    : "preset" in model
      ? `CNN2 (preset, ${model.nFilters} filters, p=${model.p ?? 0}, ${parameters} parameters)`
      : `CNN2 (${model.filters} filters, p=${model.dropout}, ${parameters} parameters)`

/** Core's per-epoch result, numbered as the CLI counts: `epoch` n is the state after n epochs. */
type EpochResult = Trainer.EpochResult<never, never>

/** Core's training fold (`Trainer.epochs`), its epochs numbered from 1 like rows and checkpoints. */
const epochsOf = (t0: Pipeline.AnyTrainer, options: Trainer.EpochsOptions) =>
  Stream.map(Trainer.epochs(t0, options), (r): EpochResult => ({ ...r, epoch: r.epoch + 1 }))

/**
 * The consumer of per-batch events: redraws the live bar (its pace from `Progress.makePace`, so
 * a validation pause does not show as a slow rate) and writes one file of captured gradients
 * per epoch.
 */
const batchConsumer = (ctx: {
  readonly out: Output["Type"]
  readonly recipe: Recipe.Recipe
  readonly batches: number
  readonly runDir: string
  readonly captureLayer: string | undefined
}) => {
  let grads: Run.Captured = {}
  let lastDraw = 0
  const pace = makePace(ctx.recipe.batchSize)
  return (e: Events.TrainEvent) =>
    Effect.gen(function* () {
      if (e._tag === "Gradients") {
        for (const [param, v] of Object.entries(e.values)) {
          if (grads[param] === undefined) grads[param] = { shape: v.shape, steps: [] }
          grads[param].steps.push(v.values) // a fresh host copy per event (core copies via toTorch)
        }
        if (e.batch === ctx.batches - 1 && ctx.captureLayer !== undefined) {
          yield* Run.writeGradients(ctx.runDir, ctx.captureLayer, e.epoch + 1, grads)
          grads = {}
        }
      } else if (e._tag === "BatchEnd") {
        const now = yield* Clock.currentTimeMillis
        const rate = pace(e.epoch, e.batch + 1, now)
        if (ctx.out.live && (now - lastDraw > 80 || e.batch + 1 === ctx.batches)) {
          lastDraw = now
          yield* ctx.out.status(
            formatBar(
              {
                epoch: e.epoch + 1,
                epochs: ctx.recipe.epochs,
                batch: e.batch + 1,
                batches: ctx.batches,
                loss: e.loss,
                lr: e.lr,
                ...rate
              },
              ctx.out.columns
            )
          )
        }
      }
    })
}

/** Pictures, the summary table and the `--json` result, after the last epoch. */
const report = (ctx: {
  readonly args: Args
  readonly runDir: string
  readonly rows: ReadonlyArray<Run.EpochMetrics>
  readonly final: Pipeline.AnyTrainer
  readonly data: Pipeline.Datasets
  readonly renderer: Renderer.Renderer | undefined
  readonly started: number
  readonly parameters: number
  readonly buffers: number
}) =>
  Effect.gen(function* () {
    const out = yield* Output
    const p = yield* Path.Path
    const { rows, runDir } = ctx
    const plots: Array<string> = []
    const renderer = ctx.renderer
    if (renderer !== undefined) {
      const plotDir = p.join(runDir, Run.PLOTS_DIR)
      const pictures: Array<readonly [string, Renderer.Picture]> = [
        [
          "losses",
          {
            chart: "losses",
            args: [
              [
                {
                  losses: rows.map((r) => r.loss),
                  valLosses: rows.flatMap((r) => (r.valLoss === null ? [] : [r.valLoss]))
                }
              ]
            ]
          }
        ],
        [
          "lr",
          { chart: "learningRates", args: [[{ label: "lr", lrs: rows.flatMap((r) => r.batchLrs) }], "batch"] }
        ]
      ]
      for (const layer of ["conv1", "conv2"]) {
        const w = Pipeline.torchWeight(ctx.final, layer)
        if (w !== undefined)
          pictures.push([`filters-${layer}`, { chart: "filters", args: [layer, w.values, w.shape] }])
      }
      // Drawn at once (the worker draws while this thread writes), written in this order.
      const drawn = yield* Effect.forEach(
        pictures,
        ([name, picture]) =>
          Effect.gen(function* () {
            const png = yield* Effect.promise(() => renderer.draw(picture))
            const path = p.join(plotDir, `${name}.png`)
            yield* Run.writeFileAtomic(path, png)
            return [path]
          }).pipe(
            // A picture that cannot be drawn does not fail a finished training.
            Effect.catchAllCause((cause) =>
              Effect.as(
                out.line(`stepwise: could not draw ${name}.png (${String(cause).split("\n")[0]})`),
                []
              )
            )
          ),
        { concurrency: "unbounded" }
      )
      plots.push(...drawn.flat())
    }
    yield* out.line("")
    yield* out.line(
      summaryTable(
        rows.map((r) => ({
          ...r,
          trainAccuracy: accuracy(r.trainCorrect),
          valAccuracy: accuracy(r.valCorrect)
        }))
      )
    )
    if (rows.some((r) => r.trainCorrectKind === "running"))
      yield* out.line(
        "train_acc: running accuracy of each epoch's training steps (train mode, dropout on); " +
          "--exact-train-accuracy measures the trained model in eval mode instead"
      )
    const lastRow = rows[rows.length - 1]
    const seconds = ((yield* Clock.currentTimeMillis) - ctx.started) / 1000
    const lastCheckpoint = yield* Run.checkpointPath(runDir, ctx.final.totalEpochs)
    yield* out.line(
      `\nstepwise: done in ${seconds.toFixed(1)}s. Validation accuracy ${
        lastRow?.valCorrect ? `${(100 * Metrics.accuracy(lastRow.valCorrect)).toFixed(2)}%` : "-"
      }. Run folder: ${runDir}`
    )
    yield* out.line(`stepwise: evaluate with: stepwise eval --checkpoint ${runDir}`)
    yield* out.json({
      command: "train",
      runDir,
      checkpoint: lastCheckpoint,
      classes: ctx.data.classes,
      epochs: rows.length,
      losses: rows.map((r) => r.loss),
      valLosses: rows.map((r) => r.valLoss),
      learningRates: rows.map((r) => r.lr),
      trainCorrect: rows.map((r) => r.trainCorrect),
      trainCorrectKind: rows.map((r) => r.trainCorrectKind ?? "eval"),
      valCorrect: rows.map((r) => r.valCorrect),
      trainAccuracy: lastRow === undefined ? null : accuracy(lastRow.trainCorrect),
      valAccuracy: lastRow === undefined ? null : accuracy(lastRow.valCorrect),
      epochSeconds: rows.map((r) => r.seconds),
      parameters: ctx.parameters,
      buffers: ctx.buffers,
      seconds,
      plots
    })
  })

const correctOn = (t: Pipeline.AnyTrainer, loader: Trainer.Loader) =>
  Effect.map(
    Trainer.loaderApply(loader, (b) => Trainer.correct(t, b)),
    (rows) => rows.map((r) => [r[0], r[1]] as const) as Metrics.PerClass
  )

/**
 * One epoch's TensorBoard records: per mini-batch (global step = mini-batches trained so far)
 * the loss and the lr, so a cyclic schedule shows as cycles; per epoch the chapter's scalars.
 */
const tbRecords = (
  row: Run.EpochMetrics,
  batchLosses: ReadonlyArray<number>,
  batches: number,
  nowMs: number
): Uint8Array => {
  const first = (row.epoch - 1) * batches
  const records = batchLosses.map((loss, i) =>
    TB.scalarsRecord(nowMs / 1000, first + i + 1, [
      { tag: "batch/loss", value: loss },
      { tag: "batch/learning_rate", value: row.batchLrs[i] }
    ])
  )
  records.push(TB.scalarsRecord(nowMs / 1000, row.epoch, tbScalars(row)))
  return concat(records)
}

const tbScalars = (row: Run.EpochMetrics): ReadonlyArray<TB.Scalar> => [
  { tag: "loss/training", value: row.loss },
  ...(row.valLoss === null ? [] : [{ tag: "loss/validation", value: row.valLoss }]),
  { tag: "learning_rate", value: row.lr },
  { tag: "accuracy/training", value: Metrics.accuracy(row.trainCorrect) },
  ...(row.valCorrect === null
    ? []
    : [{ tag: "accuracy/validation", value: Metrics.accuracy(row.valCorrect) }])
]

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const bytes = new Uint8Array(parts.reduce((n, x) => n + x.length, 0))
  let at = 0
  for (const x of parts) {
    bytes.set(x, at)
    at += x.length
  }
  return bytes
}

/** The failures of this command besides the CLI's own (named so the declaration can be emitted). */
export type PackageErrors =
  | DataErrors.ImageFolderError
  | InvalidHyperparameter.InvalidHyperparameter
  | Engine.BackendUnavailable
  | CoreErrors.WeightMismatch
  | CoreErrors.SafetensorsError
