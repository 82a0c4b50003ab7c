/**
 * A run's checkpoints: core's `Checkpoint` format (parameters, optimizer slots, scheduler state
 * and histories in one safetensors file), one file per epoch in the run folder's `checkpoints/`
 * (see `RunFolder`), `epoch-0000` being the initial state. Restoring into a trainer built from
 * the same recipe gives the state the run had after that epoch, so a resumed run continues exactly.
 */
import type { FileSystem } from "@effect/platform"
import { Checkpoint, type Engine, Safetensors, Trainer } from "@stepwise/core"
import { Effect, Either } from "effect"
import { type RunFolderError, runFolderError } from "./Errors.js"
import type { AnyTrainer } from "./Pipeline.js"
import * as Run from "./RunFolder.js"

/**
 * Writes `t` to `path` through data's `AtomicFile` (temp file, fsync, rename), with `run`
 * describing the run (`Pipeline.runInfo`) so the file alone can be evaluated, predicted with,
 * exported or resumed.
 */
export const save = (path: string, t: AnyTrainer, run: Checkpoint.Run) =>
  Effect.flatMap(encode(path, t, run), (bytes) => Run.writeFileAtomic(path, bytes))

/**
 * The bytes `save` writes, read from `t`'s tensors now (so the write may happen after they are
 * released: `train` writes an epoch's files while the next epoch trains).
 */
export const encode = (path: string, t: AnyTrainer, run: Checkpoint.Run) =>
  Effect.suspend(() =>
    Either.flatMap(Checkpoint.snapshot(t, run, path), (s) => Checkpoint.toFile(s, path)).pipe(
      Either.flatMap((file) => Safetensors.encode(file, path)),
      Either.mapLeft(runFolderError(path))
    )
  )

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

/** The latest `epoch-N.safetensors` of a checkpoint folder by epoch number, if any. */
export const latest = (folder: string) => Effect.map(Run.listEpochFiles(folder), (all) => all.at(-1)?.path)
