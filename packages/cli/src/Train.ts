/**
 * `stepwise train`: recipe -> data -> CNN2 -> epochs, with a live progress bar, a run folder
 * (config, metrics.jsonl, a checkpoint per epoch, pictures, TensorBoard events) and `--json`.
 * Training goes one epoch at a time through core's `Trainer.train`, so the state after every
 * epoch is a value that is checkpointed before the next starts: Ctrl-C therefore always has a
 * consistent checkpoint to leave behind, and `--resume` restarts the fold from it.
 */
import { FileSystem, Path } from "@effect/platform"
import { type Engine, Events, Metrics, Safetensors, Trainer } from "@stepwise/core"
import type { Errors as DataErrors } from "@stepwise/data"
import type { InvalidHyperparameter } from "@stepwise/optim"
import { Clock, Effect, Exit, Fiber, Option, Queue, Schema, Stream } from "effect"
import * as Charts from "./Charts.js"
import * as Checkpoint from "./Checkpoint.js"
import type * as Cli from "./Cli.js"
import { ConfigError, RunFolderError, runFolderError } from "./Errors.js"
import * as Pipeline from "./Pipeline.js"
import { formatBar, formatEpochLine, makePace, Output, summaryTable } from "./Progress.js"
import * as Recipe from "./Recipe.js"
import * as Render from "./Render.js"
import * as Resolve from "./Resolve.js"
import * as Run from "./RunFolder.js"
import * as TB from "./TensorBoard.js"

export type Args = Cli.Values<typeof Cli.train>

/** What `config.json` holds: the resolved recipe plus what the data turned out to be. */
export const RunConfig = Schema.Struct({
  recipe: Recipe.Recipe,
  classes: Schema.Array(Schema.String),
  normalizer: Schema.NullOr(
    Schema.Struct({ mean: Schema.Array(Schema.Number), std: Schema.Array(Schema.Number) })
  ),
  trainRoot: Schema.String,
  valRoot: Schema.NullOr(Schema.String),
  batchesPerEpoch: Schema.Number,
  parameters: Schema.Number
})
export type RunConfig = typeof RunConfig.Type

/** One line of `metrics.jsonl`. */
export interface EpochMetrics {
  readonly epoch: number
  readonly loss: number
  readonly valLoss: number | null
  /** The lr after this epoch's scheduler steps (the chapter's `learning_rates`). */
  readonly lr: number
  /** The lr each mini-batch of this epoch was trained with. */
  readonly batchLrs: ReadonlyArray<number>
  readonly trainCorrect: Metrics.PerClass
  readonly valCorrect: Metrics.PerClass | null
  readonly seconds: number
}

export const readRunConfig = (dir: string) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const file = p.join(dir, Run.CONFIG_FILE)
    if (!(yield* Run.exists(file))) {
      return yield* new RunFolderError({ path: dir, reason: `not a run folder (no ${Run.CONFIG_FILE})` })
    }
    const text = yield* Run.readText(file)
    return yield* Schema.decodeUnknown(Schema.parseJson(RunConfig))(text).pipe(
      Effect.mapError(() => new RunFolderError({ path: file, reason: "not a valid run config" }))
    )
  })

export const readMetrics = (dir: string) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const file = p.join(dir, Run.METRICS_FILE)
    if (!(yield* Run.exists(file))) return [] as ReadonlyArray<EpochMetrics>
    return Run.decodeMetrics(yield* Run.readText(file)) as ReadonlyArray<EpochMetrics>
  })

const accuracy = (rows: Metrics.PerClass | null) => (rows === null ? null : Metrics.accuracy(rows))

/** Flags that make up the recipe: a resumed run keeps its recipe, so these are refused with --resume. */
const RECIPE_FLAGS = [
  "config",
  "batchSize",
  "seed",
  "backend",
  "filters",
  "dropout",
  "optimizer",
  "lr",
  ...Resolve.OPTIMIZER_FIELDS,
  "scheduler",
  "data",
  "val",
  "valSplit",
  "resize",
  "normalize",
  "out",
  ...Resolve.SCHEDULER_FIELDS
]

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

export const run = (args: Args) =>
  Effect.gen(function* () {
    const out = yield* Output
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    const started = yield* Clock.currentTimeMillis
    const resumeDir = Option.getOrUndefined(args.resume)

    // 1. The recipe and the run folder (nothing is written until everything validated).
    let recipe: Recipe.Recipe
    let file: string
    let runDir: string
    let checkpointPath: string | undefined
    if (resumeDir !== undefined) {
      const given = RECIPE_FLAGS.find(
        (k) => Option.isOption((args as any)[k]) && Option.isSome((args as any)[k])
      )
      if (given !== undefined) {
        return yield* new ConfigError({
          file: resumeDir,
          reason: `--${kebab(given)} cannot change a resumed run's recipe (only --epochs can extend it)`
        })
      }
      const saved = yield* readRunConfig(resumeDir)
      const epochs = Option.getOrElse(args.epochs, () => saved.recipe.epochs)
      recipe = { ...saved.recipe, epochs }
      file = p.join(resumeDir, Run.CONFIG_FILE)
      runDir = resumeDir
      checkpointPath = yield* Checkpoint.latest(p.join(runDir, Run.CHECKPOINT_DIR))
      if (checkpointPath === undefined) {
        return yield* new RunFolderError({ path: runDir, reason: "has no checkpoint to resume from" })
      }
    } else {
      recipe = yield* Resolve.resolve(args)
      file = Option.getOrElse(args.config, () => "command line")
      runDir = Option.getOrElse(args.out, () => Run.defaultRunDir(new Date(started)))
      if (yield* fs.exists(p.join(runDir, Run.CONFIG_FILE)).pipe(Effect.orElseSucceed(() => false))) {
        return yield* new RunFolderError({
          path: runDir,
          reason: `already holds a run (continue it with --resume ${runDir}, or choose another --out)`
        })
      }
    }

    // 2. Engine, data, model, optimizer, scheduler.
    const { data, loaders, trainer: fresh } = yield* Pipeline.setup(recipe, file)
    const parameters = Trainer.countParameters(fresh)
    let t: Pipeline.AnyTrainer =
      checkpointPath === undefined ? fresh : yield* Checkpoint.restore(checkpointPath, fresh)
    if (t.totalEpochs >= recipe.epochs) {
      const message = `${runDir} already trained ${t.totalEpochs} of ${recipe.epochs} epochs (extend with --epochs N)`
      Trainer.dispose(t)
      return yield* new ConfigError({ file, field: "epochs", reason: message })
    }

    const captureLayer = Option.getOrUndefined(args.captureGradients)
    const layers = [...new Set(Object.keys(fresh.params).map((n) => n.slice(0, n.lastIndexOf("."))))]
    if (captureLayer !== undefined && !layers.includes(captureLayer)) {
      Trainer.dispose(t)
      return yield* new ConfigError({
        file: "command line",
        field: "capture-gradients",
        reason: `no layer ${captureLayer} with parameters (CNN2 has ${layers.join(", ")})`
      })
    }
    const capturedGrads: Captured =
      captureLayer === undefined || resumeDir === undefined
        ? {}
        : yield* readCaptured(
            p.join(runDir, gradientsFile(captureLayer)),
            t.totalEpochs * loaders.train.numBatches
          )

    // 3. The run folder.
    const runConfig: RunConfig = {
      recipe,
      classes: data.classes,
      normalizer:
        data.normalizer === undefined ? null : { mean: data.normalizer.mean, std: data.normalizer.std },
      trainRoot: data.trainRoot,
      valRoot: data.valRoot ?? null,
      batchesPerEpoch: loaders.train.numBatches,
      parameters
    }
    yield* Run.writeFileAtomic(
      p.join(runDir, Run.CONFIG_FILE),
      `${JSON.stringify(Schema.encodeSync(RunConfig)(runConfig), null, 2)}\n`
    )
    const ckptDir = p.join(runDir, Run.CHECKPOINT_DIR)
    if (checkpointPath === undefined) yield* Checkpoint.save(p.join(ckptDir, Checkpoint.fileName(0)), t)
    const previous = resumeDir === undefined ? [] : (yield* readMetrics(runDir)).slice(0, t.totalEpochs)
    const rows: Array<EpochMetrics> = [...previous]
    const tbOn = Option.getOrElse(args.tensorboard, () => true)
    const plotsOn = Option.getOrElse(args.plots, () => true)
    const tbPath = p.join(runDir, Run.TENSORBOARD_DIR, TB.eventFileName(started / 1000, "stepwise"))
    const tbRecords: Array<Uint8Array> = [TB.fileVersionRecord(started / 1000)]

    yield* out.line(
      `stepwise: ${resumeDir === undefined ? "training" : `resuming at epoch ${t.totalEpochs + 1}`} CNN2 ` +
        `(${recipe.model.filters} filters, p=${recipe.model.dropout}, ${parameters} parameters) with ` +
        `${recipe.optimizer.name} lr=${recipe.optimizer.lr}` +
        `${recipe.scheduler.name === "none" ? "" : ` + ${recipe.scheduler.name}`} on ${data.train.length} images ` +
        `(${loaders.train.numBatches} mini-batches of ${recipe.batchSize}), validating on ` +
        `${data.val?.length ?? 0}; run folder ${runDir}`
    )

    // 4. Events -> progress. The consumer reports each epoch's end on `epochDone`.
    const bus = yield* Events.makeBus
    const epochDone = yield* Queue.unbounded<{
      batchLrs: ReadonlyArray<number>
      batchLosses: ReadonlyArray<number>
      grads: Captured
    }>()
    if (captureLayer !== undefined) {
      yield* Events.register("Gradients", [captureLayer]).pipe(Effect.provideService(Events.TrainEvents, bus))
    }
    const epochs = recipe.epochs
    const events = yield* Events.subscribe.pipe(Effect.provideService(Events.TrainEvents, bus))
    const consumer = yield* Effect.forkScoped(
      Effect.gen(function* () {
        let batchLrs: Array<number> = []
        let batchLosses: Array<number> = []
        let grads: Record<string, { shape: ReadonlyArray<number>; steps: Array<Float32Array> }> = {}
        let lastDraw = 0
        const pace = makePace(recipe.batchSize)
        yield* Stream.runForEach(events, (e) =>
          Effect.gen(function* () {
            if (e._tag === "LearningRate" && e.batch === 0) {
              // published as each epoch starts (a fresh `train` call announces its lr)
              batchLrs = []
              batchLosses = []
              grads = {}
            } else if (e._tag === "Gradients") {
              for (const [param, v] of Object.entries(e.values)) {
                if (grads[param] === undefined) grads[param] = { shape: v.shape, steps: [] }
                grads[param].steps.push(Float32Array.from(v.values))
              }
            } else if (e._tag === "BatchEnd") {
              batchLrs.push(e.lr)
              batchLosses.push(e.loss)
              const now = yield* Clock.currentTimeMillis
              const n = loaders.train.numBatches
              if (out.live && (now - lastDraw > 80 || e.batch + 1 === n)) {
                lastDraw = now
                yield* out.status(
                  formatBar(
                    {
                      epoch: e.epoch + 1,
                      epochs,
                      batch: e.batch + 1,
                      batches: n,
                      loss: e.loss,
                      lr: e.lr,
                      ...pace(e.epoch, e.batch + 1, now)
                    },
                    out.columns
                  )
                )
              }
            } else if (e._tag === "TrainEnd") {
              yield* Queue.offer(epochDone, { batchLrs, batchLosses, grads })
            }
          })
        )
      }).pipe(Effect.provideService(Events.TrainEvents, bus))
    )

    const writeMetrics = Effect.suspend(() =>
      Run.writeFileAtomic(p.join(runDir, Run.METRICS_FILE), Run.encodeMetrics(rows))
    )
    const resumeHint = `stepwise train --resume ${runDir}`

    // 5. The epochs.
    const loop = Effect.gen(function* () {
      while (t.totalEpochs < epochs) {
        const epochStarted = yield* Clock.currentTimeMillis
        const next = yield* Trainer.train(t, 1, recipe.seed).pipe(
          Effect.provideService(Events.TrainEvents, bus)
        )
        const { batchLrs, batchLosses, grads } = yield* Queue.take(epochDone)
        const trainCorrect = yield* correctOn(next, loaders.train)
        const valCorrect = loaders.val === undefined ? null : yield* correctOn(next, loaders.val)
        const epochEnded = yield* Clock.currentTimeMillis
        const epoch = next.totalEpochs
        const row: EpochMetrics = {
          epoch,
          loss: next.losses[epoch - 1],
          valLoss: next.valLosses[epoch - 1] ?? null,
          lr: next.learningRates[epoch - 1],
          batchLrs,
          trainCorrect,
          valCorrect,
          seconds: (epochEnded - epochStarted) / 1000
        }
        // The new state is saved before the old one is let go: an interrupt in between leaves
        // the previous epoch's checkpoint, which is still valid.
        if (captureLayer !== undefined) {
          for (const [param, g] of Object.entries(grads)) {
            if (capturedGrads[param] === undefined) capturedGrads[param] = { shape: g.shape, steps: [] }
            capturedGrads[param].steps.push(...g.steps)
          }
          yield* writeCaptured(p.join(runDir, gradientsFile(captureLayer)), capturedGrads)
        }
        yield* Checkpoint.save(p.join(ckptDir, Checkpoint.fileName(epoch)), next)
        Trainer.dispose(t)
        t = next
        rows.push(row)
        yield* writeMetrics
        if (tbOn) {
          // Per mini-batch (global step = mini-batches trained so far) the loss and the lr, so
          // a cyclic schedule shows as cycles; per epoch (step = epoch) the chapter's scalars.
          const first = (epoch - 1) * loaders.train.numBatches
          batchLosses.forEach((loss, i) => {
            tbRecords.push(
              TB.scalarsRecord(epochEnded / 1000, first + i + 1, [
                { tag: "batch/loss", value: loss },
                { tag: "batch/learning_rate", value: batchLrs[i] }
              ])
            )
          })
          tbRecords.push(TB.scalarsRecord(epochEnded / 1000, epoch, tbScalars(row)))
          yield* Run.writeFileAtomic(tbPath, concat(tbRecords))
        }
        yield* out.line(
          formatEpochLine(
            {
              epoch,
              loss: row.loss,
              valLoss: row.valLoss,
              lr: row.lr,
              trainAccuracy: accuracy(row.trainCorrect),
              valAccuracy: accuracy(row.valCorrect),
              seconds: row.seconds
            },
            epochs
          )
        )
      }
    })

    const interrupted = yield* loop.pipe(
      Effect.onInterrupt(() =>
        Effect.gen(function* () {
          yield* out.clearStatus
          const at = p.join(ckptDir, Checkpoint.fileName(t.totalEpochs))
          // Already written at the end of that epoch; writing again costs little and makes the
          // promise below true even if that write was the one interrupted.
          yield* Checkpoint.save(at, t).pipe(Effect.ignore)
          yield* writeMetrics.pipe(Effect.ignore)
          process.stderr.write(
            `\nstepwise: interrupted during epoch ${t.totalEpochs + 1}; saved the state after epoch ` +
              `${t.totalEpochs} to ${at}\nstepwise: resume with: ${resumeHint}\n`
          )
        })
      ),
      Effect.exit
    )
    yield* Fiber.interrupt(consumer)
    if (Exit.isFailure(interrupted)) {
      return yield* Effect.failCause(interrupted.cause)
    }

    // 6. Pictures and the summary.
    const plots: Array<string> = []
    if (plotsOn) {
      const plotDir = p.join(runDir, Run.PLOTS_DIR)
      const write = (name: string, spec: Render.Spec) =>
        Effect.gen(function* () {
          const png = yield* Effect.promise(() => Render.toPng(spec))
          const path = p.join(plotDir, `${name}.png`)
          yield* Run.writeFileAtomic(path, png)
          plots.push(path)
        })
      yield* write(
        "losses",
        Charts.losses([
          {
            losses: rows.map((r) => r.loss),
            valLosses: rows.flatMap((r) => (r.valLoss === null ? [] : [r.valLoss]))
          }
        ])
      )
      yield* write(
        "lr",
        Charts.learningRates([{ label: "lr", lrs: rows.flatMap((r) => r.batchLrs) }], "batch")
      )
      for (const layer of ["conv1", "conv2"]) {
        const w = Pipeline.torchWeight(t, layer)
        if (w !== undefined) yield* write(`filters-${layer}`, Charts.filters(layer, w.values, w.shape))
      }
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
    const last = rows[rows.length - 1]
    const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
    const lastCheckpoint = p.join(ckptDir, Checkpoint.fileName(t.totalEpochs))
    yield* out.line(
      `\nstepwise: done in ${seconds.toFixed(1)}s. Validation accuracy ${
        last?.valCorrect ? `${(100 * Metrics.accuracy(last.valCorrect)).toFixed(2)}%` : "-"
      }. Run folder: ${runDir}`
    )
    yield* out.line(`stepwise: evaluate with: stepwise eval --checkpoint ${runDir}`)
    yield* out.json({
      command: "train",
      runDir,
      checkpoint: lastCheckpoint,
      classes: data.classes,
      epochs: rows.length,
      losses: rows.map((r) => r.loss),
      valLosses: rows.map((r) => r.valLoss),
      learningRates: rows.map((r) => r.lr),
      trainCorrect: rows.map((r) => r.trainCorrect),
      valCorrect: rows.map((r) => r.valCorrect),
      trainAccuracy: last === undefined ? null : accuracy(last.trainCorrect),
      valAccuracy: last === undefined ? null : accuracy(last.valCorrect),
      epochSeconds: rows.map((r) => r.seconds),
      seconds,
      plots
    })
    Trainer.dispose(t)
  }).pipe(Effect.scoped)

/** Gradients of one layer per parameter, one host copy per mini-batch. */
type Captured = Record<string, { shape: ReadonlyArray<number>; steps: Array<Float32Array> }>

/** `gradients-LAYER.safetensors`: per parameter, a [steps, ...shape] float32 tensor. */
export const gradientsFile = (layer: string) => `gradients-${layer}.safetensors`

const writeCaptured = (path: string, captured: Captured) =>
  Effect.gen(function* () {
    const tensors: Record<string, Safetensors.HostTensor> = {}
    for (const [param, { shape, steps }] of Object.entries(captured)) {
      const per = shape.reduce((a, b) => a * b, 1)
      const data = new Float32Array(steps.length * per)
      steps.forEach((s, i) => {
        data.set(s, i * per)
      })
      tensors[param] = Safetensors.tensor(data, [steps.length, ...shape])
    }
    yield* Safetensors.write(path, { tensors, metadata: { format: "stepwise-gradients/1" } })
  }).pipe(Effect.mapError(runFolderError(path)))

/** The first `steps` captured gradients of a resumed run (those of its checkpointed epochs). */
const readCaptured = (path: string, steps: number) =>
  Effect.gen(function* () {
    if (!(yield* Run.exists(path))) return {} as Captured
    const file = yield* Safetensors.read(path).pipe(Effect.mapError(runFolderError(path)))
    const out: Captured = {}
    for (const [param, h] of Object.entries(file.tensors)) {
      const shape = h.shape.slice(1)
      const per = shape.reduce((a, b) => a * b, 1)
      const data = Float32Array.from(h.data as ArrayLike<number>)
      out[param] = {
        shape,
        steps: Array.from({ length: Math.min(steps, h.shape[0]) }, (_, i) =>
          data.slice(i * per, (i + 1) * per)
        )
      }
    }
    return out
  })

const correctOn = (t: Pipeline.AnyTrainer, loader: Trainer.Loader) =>
  Effect.map(
    Trainer.loaderApply(loader, (b) => Trainer.correct(t, b).map((r) => [...r])),
    (rows) => rows.map((r) => [r[0], r[1]] as const) as Metrics.PerClass
  )

const tbScalars = (row: EpochMetrics): ReadonlyArray<TB.Scalar> => [
  { tag: "loss/training", value: row.loss },
  ...(row.valLoss === null ? [] : [{ tag: "loss/validation", value: row.valLoss }]),
  { tag: "learning_rate", value: row.lr },
  { tag: "accuracy/training", value: Metrics.accuracy(row.trainCorrect) },
  ...(row.valCorrect === null
    ? []
    : [{ tag: "accuracy/validation", value: Metrics.accuracy(row.valCorrect) }])
]

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const outBytes = new Uint8Array(parts.reduce((n, x) => n + x.length, 0))
  let at = 0
  for (const x of parts) {
    outBytes.set(x, at)
    at += x.length
  }
  return outBytes
}

/** The failures of this command besides the CLI's own (named so the declaration can be emitted). */
export type PackageErrors =
  | DataErrors.ImageFolderError
  | InvalidHyperparameter.InvalidHyperparameter
  | Engine.BackendUnavailable
