/**
 * A run folder, and the only module that reads or writes one:
 *
 * - `config.json`: the resolved recipe plus what the data turned out to be (classes, normalizer,
 *   absolute data roots, a fingerprint of the data files);
 * - `metrics.jsonl`: one JSON line per epoch, appended as each epoch ends;
 * - `checkpoints/epoch-NNNN.safetensors`: the state after each epoch (0: the initial state);
 * - `gradients-LAYER/epoch-NNNN.safetensors`: captured gradients, one file per epoch;
 * - `plots/`, `tensorboard/` (the event file is appended, never rewritten);
 * - `.lock`: the pid of the process writing the folder.
 *
 * Whole files go through data's `AtomicFile.write` (temp sibling, fsync, rename), rows and
 * records through `AtomicFile.append`. Commands use this module and never each other.
 *
 * Everything here needs only `FileSystem` and `Path`: `layer` gives Node's, `layerMemory` a fresh
 * in-memory file system (tests run the writers and read back exactly what they left).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import type { Safetensors as SafetensorsFile } from "@stepwise/core"
import { Safetensors } from "@stepwise/core"
import { AtomicFile } from "@stepwise/data"
import { Effect, Layer, Option, Schema, type Scope } from "effect"
import { firstLine, PlotError, RunFolderError, runFolderError } from "./Errors.js"
import * as MemoryFileSystem from "./MemoryFileSystem.js"
import * as Recipe from "./Recipe.js"
import * as Render from "./Render.js"

export const CONFIG_FILE = "config.json"
export const METRICS_FILE = "metrics.jsonl"
export const CHECKPOINT_DIR = "checkpoints"
export const PLOTS_DIR = "plots"
export const TENSORBOARD_DIR = "tensorboard"
export const LOCK_FILE = ".lock"

/** What every function here runs on: the node file system. */
export const layer: Layer.Layer<FileSystem.FileSystem | Path.Path> = Layer.merge(
  NodeFileSystem.layer,
  NodePath.layer
)

/** The same functions on an empty in-memory file system (POSIX paths; one per build). */
export const layerMemory: Layer.Layer<FileSystem.FileSystem | Path.Path> = Layer.merge(
  MemoryFileSystem.layer,
  NodePath.layerPosix
)

// ------------------------------------------------------------------------------- plain files

/** Writes a whole file atomically (data's `AtomicFile.write`); failures name the path. */
export const writeFileAtomic = (path: string, data: Uint8Array | string) =>
  AtomicFile.write(path, data).pipe(Effect.mapError(runFolderError(path)))

/** Appends to a file and fsyncs (data's `AtomicFile.append`); failures name the path. */
export const appendFile = (path: string, data: Uint8Array | string) =>
  AtomicFile.append(path, data).pipe(Effect.mapError(runFolderError(path)))

export const readText = (path: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(path)).pipe(
    Effect.mapError(runFolderError(path))
  )

export const exists = (path: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.exists(path)).pipe(Effect.mapError(runFolderError(path)))

/**
 * Removes the temporary files a hard kill left behind, in the folder and the sub-folders this
 * module writes to.
 */
export const removeStaleTemps = (dir: string) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    for (const sub of ["", CHECKPOINT_DIR, PLOTS_DIR, TENSORBOARD_DIR]) {
      yield* AtomicFile.removeStaleTemps(p.join(dir, sub))
    }
  }).pipe(Effect.mapError(runFolderError(dir)))

// ----------------------------------------------------------------------------------- config

const PerClass = Schema.Array(Schema.Tuple(Schema.Number, Schema.Number))

/** What `config.json` holds: the resolved recipe plus what the data turned out to be. */
export const RunConfig = Schema.Struct({
  recipe: Recipe.Recipe,
  classes: Schema.Array(Schema.String),
  normalizer: Schema.NullOr(
    Schema.Struct({ mean: Schema.Array(Schema.Number), std: Schema.Array(Schema.Number) })
  ),
  /** Absolute paths, so `--resume` and `eval` work from any working directory. */
  trainRoot: Schema.String,
  valRoot: Schema.NullOr(Schema.String),
  /** Hash of the data files' names, sizes and modification times (see `Pipeline.fingerprint`). */
  dataFingerprint: Schema.optional(Schema.String),
  batchesPerEpoch: Schema.Number,
  parameters: Schema.Number
})
export type RunConfig = typeof RunConfig.Type

export const writeConfig = (dir: string, config: RunConfig) =>
  Effect.flatMap(Path.Path, (p) =>
    writeFileAtomic(
      p.join(dir, CONFIG_FILE),
      `${JSON.stringify(Schema.encodeSync(RunConfig)(config), null, 2)}\n`
    )
  )

/** The run's config; a folder without one is "not a run folder". */
export const readConfig = (dir: string) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const file = p.join(dir, CONFIG_FILE)
    if (!(yield* exists(file))) {
      return yield* new RunFolderError({ path: dir, reason: `not a run folder (no ${CONFIG_FILE})` })
    }
    const text = yield* readText(file)
    return yield* Schema.decodeUnknown(Schema.parseJson(RunConfig))(text).pipe(
      Effect.mapError((cause) => new RunFolderError({ path: file, reason: "not a valid run config", cause }))
    )
  })

// ---------------------------------------------------------------------------------- metrics

/** One line of `metrics.jsonl`. */
export const EpochMetrics = Schema.Struct({
  epoch: Schema.Int,
  loss: Schema.Number,
  valLoss: Schema.NullOr(Schema.Number),
  /** The lr after this epoch's scheduler steps (the chapter's `learning_rates`). */
  lr: Schema.Number,
  /** The lr each mini-batch of this epoch was trained with. */
  batchLrs: Schema.Array(Schema.Number),
  trainCorrect: PerClass,
  /**
   * What `trainCorrect` counts: "running", the training steps' own predictions as they were
   * made (train mode, dropout on; Keras' accuracy), or "eval", a pass of the trained model
   * over the training set in eval mode (`--exact-train-accuracy`; rows written without it).
   */
  trainCorrectKind: Schema.optional(Schema.Literal("running", "eval")),
  valCorrect: Schema.NullOr(PerClass),
  seconds: Schema.Number
})
export type EpochMetrics = typeof EpochMetrics.Type

const decodeRow = Schema.decodeUnknownEither(Schema.parseJson(EpochMetrics))

/**
 * Parses `metrics.jsonl`. A last line without its newline is a row torn by a crash and is
 * skipped; any other line that is not a metrics row is an error naming the file and line.
 */
export const decodeMetrics = (
  text: string,
  file: string
): Effect.Effect<ReadonlyArray<EpochMetrics>, RunFolderError> => {
  const lines = text.split("\n")
  // After the last "\n" comes "" (complete file) or a torn row.
  const complete = lines.slice(0, -1)
  const rows: Array<EpochMetrics> = []
  for (const [i, line] of complete.entries()) {
    if (line.trim().length === 0) continue
    const row = decodeRow(line)
    if (row._tag === "Left") {
      return Effect.fail(
        new RunFolderError({
          path: `${file}:${i + 1}`,
          reason: "damaged metrics row (not a JSON object with epoch, loss, lr, ...)",
          cause: row.left
        })
      )
    }
    rows.push(row.right)
  }
  return Effect.succeed(rows)
}

export const encodeMetricsRow = (row: EpochMetrics): string => `${JSON.stringify(row)}\n`

/** The rows of a run's `metrics.jsonl` (none when absent). */
export const readMetrics = (dir: string) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const file = p.join(dir, METRICS_FILE)
    if (!(yield* exists(file))) return [] as ReadonlyArray<EpochMetrics>
    return yield* decodeMetrics(yield* readText(file), file)
  })

export const appendMetrics = (dir: string, row: EpochMetrics) =>
  Effect.flatMap(Path.Path, (p) => appendFile(p.join(dir, METRICS_FILE), encodeMetricsRow(row)))

/**
 * Makes `metrics.jsonl` agree with a checkpoint after `epochs` epochs: rows 1..epochs, in order,
 * one each (a crash may have left rows past the checkpoint, or a torn last row). Returns the
 * rows kept; fails naming the file when a row of those epochs is missing.
 */
export const truncateMetrics = (dir: string, epochs: number) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const file = p.join(dir, METRICS_FILE)
    const rows = yield* readMetrics(dir)
    const kept: Array<EpochMetrics> = []
    for (let e = 1; e <= epochs; e++) {
      const row = [...rows].reverse().find((r) => r.epoch === e)
      if (row === undefined) {
        return yield* new RunFolderError({
          path: file,
          reason: `has no row for epoch ${e}, but the checkpoint is after epoch ${epochs}`
        })
      }
      kept.push(row)
    }
    const text = kept.map(encodeMetricsRow).join("")
    const current = (yield* exists(file)) ? yield* readText(file) : ""
    if (current !== text) yield* writeFileAtomic(file, text)
    return kept as ReadonlyArray<EpochMetrics>
  })

// ------------------------------------------------------------------------------ checkpoints

/** The checkpoint file of an epoch: `epoch-0003.safetensors`. */
export const checkpointName = (epoch: number) => `epoch-${String(epoch).padStart(4, "0")}.safetensors`

export const checkpointPath = (dir: string, epoch: number) =>
  Effect.map(Path.Path, (p) => p.join(dir, CHECKPOINT_DIR, checkpointName(epoch)))

const EPOCH_FILE = /^epoch-(\d{4,})\.safetensors$/

/** The `epoch-N.safetensors` files of a folder, by epoch number (not text order). */
export const listEpochFiles = (folder: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    if (!(yield* fs.exists(folder))) return [] as ReadonlyArray<{ epoch: number; path: string }>
    return (yield* fs.readDirectory(folder))
      .flatMap((name) => {
        const m = EPOCH_FILE.exec(name)
        return m === null ? [] : [{ epoch: Number(m[1]), path: p.join(folder, name) }]
      })
      .sort((a, b) => a.epoch - b.epoch)
  }).pipe(Effect.mapError(runFolderError(folder)))

/** The checkpoints of a run folder, oldest first. */
export const checkpoints = (dir: string) =>
  Effect.flatMap(Path.Path, (p) => listEpochFiles(p.join(dir, CHECKPOINT_DIR)))

/** The latest checkpoint of a run folder, if any. */
export const latestCheckpoint = (dir: string) => Effect.map(checkpoints(dir), (all) => all.at(-1))

/** Deletes all but the `keep` latest checkpoints (the latest is always kept). */
export const pruneCheckpoints = (dir: string, keep: number) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const all = yield* checkpoints(dir)
    const doomed = all.slice(0, Math.max(0, all.length - Math.max(1, keep)))
    for (const c of doomed) yield* fs.remove(c.path).pipe(Effect.mapError(runFolderError(c.path)))
    return doomed.map((c) => c.path)
  })

/** Deletes the checkpoints after `epoch` (left by a run that crashed before its metrics row). */
export const removeCheckpointsAfter = (dir: string, epoch: number) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    for (const c of yield* checkpoints(dir)) {
      if (c.epoch > epoch) yield* fs.remove(c.path).pipe(Effect.mapError(runFolderError(c.path)))
    }
  })

/**
 * Makes a run folder consistent after any crash and returns the checkpoint to resume from: the
 * latest one metrics.jsonl has a row for (a crash can leave either one ahead of the other).
 * Later checkpoints, rows and captured gradients are removed.
 */
export const reconcile = (dir: string) =>
  Effect.gen(function* () {
    const rows = yield* readMetrics(dir)
    let complete = 0
    while (rows.some((r) => r.epoch === complete + 1)) complete++
    const usable = (yield* checkpoints(dir)).filter((c) => c.epoch <= complete).at(-1)
    if (usable === undefined) {
      return yield* new RunFolderError({ path: dir, reason: "has no checkpoint to resume from" })
    }
    yield* truncateMetrics(dir, usable.epoch)
    yield* removeCheckpointsAfter(dir, usable.epoch)
    yield* removeGradientsAfter(dir, usable.epoch)
    return usable
  })

// -------------------------------------------------------------------------------- gradients

/** Gradients of one layer per parameter, one host copy per mini-batch. */
export type Captured = Record<string, { shape: ReadonlyArray<number>; steps: Array<Float32Array> }>

/** `gradients-LAYER`: one safetensors file per epoch; per parameter a [steps, ...shape] tensor. */
export const gradientsDir = (layer: string) => `gradients-${layer}`

/** The layers a run captured gradients of. */
export const capturedLayers = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(dir))) return [] as ReadonlyArray<string>
    return (yield* fs.readDirectory(dir))
      .flatMap((n) => (/^gradients-[^.]+$/.test(n) ? [n.slice("gradients-".length)] : []))
      .sort()
  }).pipe(Effect.mapError(runFolderError(dir)))

/** Writes one epoch's captured gradients (a new file; earlier epochs are not touched). */
export const writeGradients = (dir: string, layer: string, epoch: number, captured: Captured) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const path = p.join(dir, gradientsDir(layer), checkpointName(epoch))
    const tensors: Record<string, SafetensorsFile.HostTensor> = {}
    for (const [param, { shape, steps }] of Object.entries(captured)) {
      const per = shape.reduce((a, b) => a * b, 1)
      const data = new Float32Array(steps.length * per)
      steps.forEach((s, i) => {
        data.set(s, i * per)
      })
      tensors[param] = Safetensors.tensor(data, [steps.length, ...shape])
    }
    const bytes = yield* Safetensors.encode(
      { tensors, metadata: { format: "stepwise-gradients/2" } },
      path
    ).pipe(Effect.mapError(runFolderError(path)))
    yield* writeFileAtomic(path, bytes)
  })

/** Every captured mini-batch of a layer, epochs in order. */
export const readGradients = (dir: string, layer: string) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const out: Captured = {}
    for (const { path } of yield* listEpochFiles(p.join(dir, gradientsDir(layer)))) {
      const file = yield* Safetensors.read(path).pipe(Effect.mapError(runFolderError(path)))
      for (const [param, h] of Object.entries(file.tensors)) {
        const shape = h.shape.slice(1)
        const per = shape.reduce((a, b) => a * b, 1)
        const data = Float32Array.from(h.data as ArrayLike<number>)
        if (out[param] === undefined) out[param] = { shape, steps: [] }
        for (let i = 0; i < h.shape[0]; i++) out[param].steps.push(data.slice(i * per, (i + 1) * per))
      }
    }
    return out
  })

/** Deletes captured gradients of the epochs after `epoch` (a resumed run redoes them). */
export const removeGradientsAfter = (dir: string, epoch: number) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    for (const layer of yield* capturedLayers(dir)) {
      for (const f of yield* listEpochFiles(p.join(dir, gradientsDir(layer)))) {
        if (f.epoch > epoch) yield* fs.remove(f.path).pipe(Effect.mapError(runFolderError(f.path)))
      }
    }
  })

// ---------------------------------------------------------------------------------- pictures

export type Format = "png" | "svg" | "both"

/** Writes one picture in the chosen format(s) into `dir`; returns the paths written. */
export const writePicture = (dir: string, name: string, spec: Render.Spec, format: Format) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const written: Array<string> = []
    const svg = yield* Effect.tryPromise({
      try: () => Render.toSvg(spec),
      catch: (cause) => new PlotError({ plot: name, reason: firstLine(cause) })
    })
    if (format !== "png") {
      const path = p.join(dir, `${name}.svg`)
      yield* writeFileAtomic(path, svg)
      written.push(path)
    }
    if (format !== "svg") {
      const png = yield* Effect.tryPromise({
        try: () => Render.svgToPng(svg),
        catch: (cause) => new PlotError({ plot: name, reason: firstLine(cause) })
      })
      const path = p.join(dir, `${name}.png`)
      yield* writeFileAtomic(path, png)
      written.push(path)
    }
    return written as ReadonlyArray<string>
  })

/** What `stepwise lr-find` leaves in its folder, and `plot lr-finder --run` reads. */
export const LR_FINDER_FILE = "lr-finder.json"
export const LrFinderResult = Schema.Struct({
  lr: Schema.Array(Schema.Number),
  loss: Schema.Array(Schema.Number),
  suggestions: Schema.Record({ key: Schema.String, value: Schema.NullOr(Schema.Number) })
})

// ------------------------------------------------------------------------------ names, lock

/** A default run folder name that sorts by time: `runs/2026-11-25T13-40-05`. */
export const defaultRunDir = (now: Date, prefix = ""): string =>
  `runs/${prefix}${now.toISOString().slice(0, 19).replace(/:/g, "-")}`

/**
 * Creates a new run folder named after `now` and returns its name: `base`, or `base-2`, `base-3`,
 * ... when another run already took that second (creating a folder is atomic, so two runs
 * started together get different folders).
 */
export const claimNewDir = (base: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    yield* fs.makeDirectory(p.dirname(base), { recursive: true }).pipe(Effect.mapError(runFolderError(base)))
    for (let n = 1; ; n++) {
      const dir = n === 1 ? base : `${base}-${n}`
      const made = yield* fs.makeDirectory(dir).pipe(
        Effect.as(true),
        Effect.catchIf(
          (e) => e._tag === "SystemError" && e.reason === "AlreadyExists",
          () => Effect.succeed(false)
        ),
        Effect.mapError(runFolderError(dir))
      )
      if (made) return dir
    }
  })

/** Whether a process with this pid runs on this machine (EPERM: it runs, as another user). */
export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as { code?: string }).code === "EPERM"
  }
}

const LockFile = Schema.parseJson(Schema.Struct({ pid: Schema.Int }))

/**
 * Locks a run folder for this process for the scope: a second writer fails at once naming the
 * folder and the pid holding it. A lock left by a process that no longer runs is taken over.
 * The folder is created if needed; on release the lock is removed, and the folder too when
 * nothing else was written to it and this call created it (or `removeIfEmpty`).
 */
export const lock = (
  dir: string,
  options: { readonly removeIfEmpty?: boolean } = {}
): Effect.Effect<void, RunFolderError, FileSystem.FileSystem | Path.Path | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    const file = p.join(dir, LOCK_FILE)
    const wrap = runFolderError(dir)
    const existed = yield* fs.exists(dir).pipe(Effect.mapError(wrap))
    yield* fs.makeDirectory(dir, { recursive: true }).pipe(Effect.mapError(wrap))
    const me = JSON.stringify({ pid: process.pid })
    const tryCreate = fs.writeFileString(file, me, { flag: "wx" }).pipe(
      Effect.as(true),
      Effect.catchIf(
        (e) => e._tag === "SystemError" && e.reason === "AlreadyExists",
        () => Effect.succeed(false)
      ),
      Effect.mapError(wrap)
    )
    const acquire = Effect.gen(function* () {
      for (let attempt = 0; attempt < 3; attempt++) {
        if (yield* tryCreate) return
        const holder = yield* fs
          .readFileString(file)
          .pipe(Effect.flatMap(Schema.decodeUnknown(LockFile)), Effect.option)
        const pid = Option.getOrUndefined(holder)?.pid
        if (pid !== undefined && alive(pid)) {
          return yield* new RunFolderError({
            path: dir,
            reason: `is being written by another stepwise process (pid ${pid}); wait for it or choose another --out`
          })
        }
        // Stale (its writer is gone) or unreadable: move it aside so that only one taker wins.
        const aside = `${file}.stale-${process.pid}`
        const moved = yield* fs.rename(file, aside).pipe(
          Effect.as(true),
          Effect.orElseSucceed(() => false)
        )
        if (moved) yield* fs.remove(aside).pipe(Effect.ignore)
      }
      return yield* new RunFolderError({ path: dir, reason: `cannot take over the stale ${LOCK_FILE}` })
    })
    yield* Effect.acquireRelease(acquire, () =>
      Effect.gen(function* () {
        const text = yield* fs.readFileString(file).pipe(Effect.orElseSucceed(() => ""))
        if (text === me) yield* fs.remove(file).pipe(Effect.ignore)
        if (!existed || options.removeIfEmpty === true) {
          const left = yield* fs.readDirectory(dir).pipe(Effect.orElseSucceed(() => ["?"]))
          if (left.length === 0) yield* fs.remove(dir, { recursive: true }).pipe(Effect.ignore)
        }
      })
    )
  })
