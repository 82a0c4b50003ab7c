/**
 * The training thread of a sweep runner (a `node:worker_threads` Worker, one per runner, started
 * by `Runner.EpochWorker`). It executes the trial's steps (`TrialEpoch`): an epoch runs
 * `stepwise train` itself, the CLI's command line and pipeline, in-process and warm: the engine
 * (its wasm compiled once) and the decoded data (a `Pipeline.DataCache`) stay from one epoch to
 * the next, while the runner's main thread stays free for the cluster (shard-lock refreshes,
 * heartbeats, messages) and loads none of this.
 *
 * Messages in: `{ type: "task", id, task }` (an epoch, or a median-stopping decision) and
 * `{ type: "stop", id }` (interrupts that task as Ctrl-C does: between two mini-batches, its run
 * folder consistent). Out: one `{ id, ok, value? | reason?, interrupted? }` per task. The thread
 * dies with its process: a runner killed by SIGKILL loses only the epoch under way, which the
 * next owner of the trial retrains from the last checkpoint.
 */
import { type Stats, statSync } from "node:fs"
import { parentPort } from "node:worker_threads"
import type { CliApp } from "@effect/cli"
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Engine } from "@stepwise/core"
import { Cause, Effect, Exit, Fiber, Layer, ManagedRuntime, Option } from "effect"
import { formatError, TrialFailed } from "./Errors.js"
import { main } from "./Main.js"
import * as Pipeline from "./Pipeline.js"
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

export type Request =
  | { readonly type: "task"; readonly id: number; readonly task: Task }
  | { readonly type: "stop"; readonly id: number }

export type Reply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly reason: string; readonly interrupted: boolean }

/** `stepwise train` in this thread; a failure is train's own one-line error. */
const train = (trial: string) => (argv: ReadonlyArray<string>) =>
  main(["node", "stepwise", ...argv]).pipe(TrialEpoch.asTrialFailure(trial))

const execute = (task: Task) => {
  const step: Effect.Effect<unknown, unknown, CliApp.CliApp.Environment> =
    task._tag === "epoch"
      ? TrialEpoch.trainEpoch(task.payload, task.epoch, train(task.payload.trial))
      : TrialEpoch.medianStop(task.payload, task.epoch, task.rows)
  return step.pipe(TrialEpoch.asTrialFailure(task.payload.trial))
}

/** How many prepared datasets the thread keeps (a sweep over data settings has a few). */
const KEPT = 4

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

const port = parentPort
if (port !== null) {
  // Built once: the cache lives as long as the thread.
  const runtime = ManagedRuntime.make(
    Layer.mergeAll(NodeContext.layer, Layer.provide(fileSystem, NodeContext.layer), dataCache)
  )
  // The wasm engine compiled while the runner joins its cluster (a first run starts warm); runs
  // wait for it, so that they never set the backend while it initializes.
  const warm = runtime.runPromise(Effect.scoped(Engine.make("wasm")).pipe(Effect.ignore))
  const running = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()
  port.on("message", (m: Request) => {
    if (m.type === "stop") {
      const fiber = running.get(m.id)
      if (fiber !== undefined) Effect.runFork(Fiber.interrupt(fiber))
      return
    }
    const fiber = runtime.runFork(
      Effect.zipRight(
        Effect.promise(() => warm),
        execute(m.task)
      )
    )
    running.set(m.id, fiber)
    fiber.addObserver((exit) => {
      running.delete(m.id)
      const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      const reply: Reply = Exit.isSuccess(exit)
        ? { id: m.id, ok: true, value: exit.value }
        : {
            id: m.id,
            ok: false,
            interrupted: Cause.isInterruptedOnly(exit.cause),
            // (a TrialFailed's own reason: the runner wraps it again)
            reason: Option.isSome(failure)
              ? failure.value instanceof TrialFailed
                ? failure.value.reason
                : formatError(failure.value)
              : formatError(Cause.squash(exit.cause))
          }
      port.postMessage(reply)
    })
  })
}
