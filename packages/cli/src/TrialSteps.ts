/**
 * A sweep trial's steps as a runner executes them, warm: an epoch runs `stepwise train` itself,
 * the CLI's command line and pipeline, in-process (`TrialEpoch`), with the engine (its wasm
 * compiled once) and the decoded data (a `Pipeline.DataCache`) kept from one epoch to the next;
 * and the median stopping rule's decision. Run on a runner's training thread (`SweepWorker`) or
 * on a sweep-started runner's own thread (`Runner.inlineEpochLayer`).
 */
import { type Stats, statSync } from "node:fs"
import type { CliApp } from "@effect/cli"
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Engine } from "@stepwise/core"
import { Effect, Layer, Option } from "effect"
import { main } from "./Main.js"
import * as Pipeline from "./Pipeline.js"
import * as Resolve from "./Resolve.js"
import type { EpochRow, TrialPayload } from "./Runner.js"
import * as TrialEpoch from "./TrialEpoch.js"

export type Task =
  | { readonly _tag: "epoch"; readonly payload: TrialPayload; readonly epoch: number }
  | {
      readonly _tag: "medianStop"
      readonly payload: TrialPayload
      readonly epoch: number
      readonly rows: ReadonlyArray<EpochRow>
    }

/** `stepwise train` in this thread; a failure is train's own one-line error. */
const train = (trial: string) => (argv: ReadonlyArray<string>) =>
  main(["node", "stepwise", ...argv]).pipe(TrialEpoch.asTrialFailure(trial))

export const execute = (task: Task) => {
  const step: Effect.Effect<unknown, unknown, CliApp.CliApp.Environment> =
    task._tag === "epoch"
      ? TrialEpoch.trainEpoch(task.payload, task.epoch, train(task.payload.trial))
      : TrialEpoch.medianStop(task.payload, task.epoch, task.rows)
  return step.pipe(TrialEpoch.asTrialFailure(task.payload.trial))
}

/** How many prepared datasets a runner keeps (a sweep over data settings has a few). */
const KEPT = 4

/**
 * Prepares the data of the first of these recipe files (`Pipeline.warmData`; a sweep names its
 * runners the recipe of its first trial, whose data settings a sweep over optimizers, schedulers or
 * learning rates shares with every other trial). A failure is left to the trial that meets it
 * (its epoch reports it as train does).
 */
export const warmData = (recipes: ReadonlyArray<string>) =>
  recipes.length === 0
    ? Effect.void
    : Resolve.resolve({ config: Option.some(recipes[0]) }).pipe(
        Effect.flatMap(({ recipe }) => Pipeline.warmData(recipe)),
        Effect.ignore
      )

/** A small most-recently-used map of prepared data, for `Pipeline.setup`. */
const dataCache = Layer.sync(Pipeline.DataCache, () => {
  const kept = new Map<string, Pipeline.Datasets>()
  return <E, R>(key: string, prepare: Effect.Effect<Pipeline.Datasets, E, R>) =>
    Effect.suspend(() => {
      const hit = kept.get(key)
      if (hit !== undefined) {
        kept.delete(key)
        kept.set(key, hit)
        return Effect.succeed(hit)
      }
      return Effect.tap(prepare, (data) =>
        Effect.sync(() => {
          kept.set(key, data)
          for (const old of kept.keys()) if (kept.size > KEPT) kept.delete(old)
        })
      )
    })
})

/** `File.Info` as @effect/platform-node's `stat` builds it from node's `Stats`. */
const fileInfo = (s: Stats): FileSystem.File.Info => ({
  type: s.isFile()
    ? "File"
    : s.isDirectory()
      ? "Directory"
      : s.isSymbolicLink()
        ? "SymbolicLink"
        : s.isBlockDevice()
          ? "BlockDevice"
          : s.isCharacterDevice()
            ? "CharacterDevice"
            : s.isFIFO()
              ? "FIFO"
              : s.isSocket()
                ? "Socket"
                : "Unknown",
  mtime: Option.fromNullable(s.mtime),
  atime: Option.fromNullable(s.atime),
  birthtime: Option.fromNullable(s.birthtime),
  dev: s.dev,
  rdev: Option.fromNullable(s.rdev),
  ino: Option.fromNullable(s.ino),
  mode: s.mode,
  nlink: Option.fromNullable(s.nlink),
  uid: Option.fromNullable(s.uid),
  gid: Option.fromNullable(s.gid),
  size: FileSystem.Size(s.size),
  blksize: Option.map(Option.fromNullable(s.blksize), FileSystem.Size),
  blocks: Option.fromNullable(s.blocks)
})

/**
 * The thread's file system: node's, with `stat` synchronous. Each epoch call scans the data
 * folders (every image's size and mtime: the data cache's key and the run's data fingerprint), a
 * few thousand stats; one at a time on this thread, which has nothing else to do meanwhile, they
 * cost a fraction of the CPU of as many thread-pool round trips. A failing stat is retried
 * through node's own, for its error.
 */
const fileSystem = Layer.effect(
  FileSystem.FileSystem,
  Effect.map(FileSystem.FileSystem, (fs) =>
    FileSystem.FileSystem.of({
      ...fs,
      stat: (path) =>
        Effect.suspend(() => {
          let s: Stats
          try {
            s = statSync(path)
          } catch {
            return fs.stat(path)
          }
          return Effect.succeed(fileInfo(s))
        })
    })
  )
)

/** What the steps run in (`execute`, `warm`): node's services, the stat above, the data cache. */
export const layer = Layer.mergeAll(
  NodeContext.layer,
  Layer.provide(fileSystem, NodeContext.layer),
  dataCache
)

/**
 * Compiles the wasm engine (tfjs' gradient configs left to the first autodiff, as `train` leaves
 * them: CNN2 and our layers need none), then prepares the data of `recipes` (`warmData`).
 */
export const warm = (recipes: ReadonlyArray<string>) =>
  Effect.zipRight(
    Effect.scoped(Engine.make("wasm", { gradients: "onDemand" })).pipe(Effect.ignore),
    warmData(recipes)
  )
