/**
 * A run's checkpoints: core's `Checkpoint` format (parameters, optimizer slots, scheduler state
 * and histories in one safetensors file, written atomically), one file per epoch in
 * `checkpoints/`, `epoch-0000` being the initial state. Restoring into a trainer built from the
 * same recipe gives the state the run had after that epoch, so a resumed run continues exactly.
 */
import { FileSystem, Path } from "@effect/platform"
import { Checkpoint, type Engine, Trainer } from "@stepwise/core"
import { Effect } from "effect"
import { type RunFolderError, runFolderError } from "./Errors.js"
import type { AnyTrainer } from "./Pipeline.js"

/** The checkpoint file of an epoch: `checkpoints/epoch-0003.safetensors`. */
export const fileName = (epoch: number) => `epoch-${String(epoch).padStart(4, "0")}.safetensors`

export const save = (
  path: string,
  t: AnyTrainer
): Effect.Effect<void, RunFolderError, FileSystem.FileSystem | Path.Path | Engine.Engine> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    yield* fs.makeDirectory(p.dirname(path), { recursive: true })
    yield* Checkpoint.save(path, t)
  }).pipe(Effect.mapError(runFolderError(path)))

/**
 * Restores a checkpoint into `fresh` (a trainer built from the run's recipe), checking parameter
 * names and shapes, optimizer and scheduler; `fresh`'s own tensors are released.
 */
export const restore = (
  path: string,
  fresh: AnyTrainer
): Effect.Effect<AnyTrainer, RunFolderError, FileSystem.FileSystem | Engine.Engine> =>
  Checkpoint.resume(path, fresh).pipe(
    Effect.mapError(runFolderError(path)),
    Effect.tap(() => Effect.sync(() => Trainer.dispose(fresh)))
  )

/** Reads a checkpoint onto the host (parameters, optimizer slots, metadata; no engine needed). */
export const load = (path: string) => Checkpoint.load(path).pipe(Effect.mapError(runFolderError(path)))

/** The latest `epoch-NNNN.safetensors` of a checkpoint folder, if any. */
export const latest = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    if (!(yield* fs.exists(dir))) return undefined
    const names = (yield* fs.readDirectory(dir)).filter((n) => /^epoch-\d{4,}\.safetensors$/.test(n)).sort()
    const last = names.at(-1)
    return last === undefined ? undefined : p.join(dir, last)
  }).pipe(Effect.mapError(runFolderError(dir)))
