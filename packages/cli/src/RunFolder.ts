/**
 * A run folder: `config.json` (the resolved recipe), `metrics.jsonl` (one line per epoch),
 * `checkpoints/`, `plots/` and `tensorboard/`. Every file is written to a temporary sibling and
 * renamed into place, so an interrupted write never leaves a half-written file behind.
 */
import { FileSystem, Path } from "@effect/platform"
import { Effect } from "effect"
import { runFolderError } from "./Errors.js"

export const CONFIG_FILE = "config.json"
export const METRICS_FILE = "metrics.jsonl"
export const CHECKPOINT_DIR = "checkpoints"
export const PLOTS_DIR = "plots"
export const TENSORBOARD_DIR = "tensorboard"

let tmpCounter = 0

/** Writes `data` to `path` through a temporary file in the same folder plus a rename. */
export const writeFileAtomic = (path: string, data: Uint8Array | string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    yield* fs.makeDirectory(p.dirname(path), { recursive: true })
    const tmp = `${path}.tmp-${process.pid}-${tmpCounter++}`
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data
    yield* fs.writeFile(tmp, bytes)
    yield* fs.rename(tmp, path).pipe(Effect.tapError(() => fs.remove(tmp).pipe(Effect.ignore)))
  }).pipe(Effect.mapError(runFolderError(path)))

export const readText = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    return yield* fs.readFileString(path)
  }).pipe(Effect.mapError(runFolderError(path)))

export const exists = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    return yield* fs.exists(path)
  }).pipe(Effect.mapError(runFolderError(path)))

/** `metrics.jsonl`: one JSON object per line; a final line without newline is ignored. */
export const encodeMetrics = (rows: ReadonlyArray<unknown>): string =>
  rows.map((r) => `${JSON.stringify(r)}\n`).join("")

export const decodeMetrics = (text: string): ReadonlyArray<unknown> =>
  text
    .split("\n")
    .filter((line) => line.trim().length > 0)
    .map((line) => JSON.parse(line) as unknown)

/** A default run folder name that sorts by time: `runs/2026-11-25T13-40-05`. */
export const defaultRunDir = (now: Date): string =>
  `runs/${now.toISOString().slice(0, 19).replace(/:/g, "-")}`
