/**
 * The training thread of a sweep runner (a `node:worker_threads` Worker, one per runner, started
 * by `Runner.EpochWorker`). It runs `stepwise train` itself, the CLI's command line and pipeline,
 * in-process and warm: the engine (its wasm compiled once) and the decoded data (a
 * `Pipeline.DataCache`) stay from one epoch to the next, while the runner's main thread stays
 * free for the cluster (shard-lock refreshes, heartbeats, messages).
 *
 * Messages in: `{ type: "train", id, argv }` (train's arguments, as on a command line) and
 * `{ type: "stop", id }` (interrupts that run as Ctrl-C does: between two mini-batches, its run
 * folder consistent). Out: one `{ id, ok, reason?, interrupted? }` per `train`. The thread dies
 * with its process: a runner killed by SIGKILL loses only the epoch under way, which the next
 * owner of the trial retrains from the last checkpoint.
 */
import { parentPort } from "node:worker_threads"
import { NodeContext } from "@effect/platform-node"
import { Engine } from "@stepwise/core"
import { Cause, Effect, Exit, Fiber, Layer, ManagedRuntime, Option } from "effect"
import { formatError } from "./Errors.js"
import { main } from "./Main.js"
import * as Pipeline from "./Pipeline.js"

export type Request =
  | { readonly type: "train"; readonly id: number; readonly argv: ReadonlyArray<string> }
  | { readonly type: "stop"; readonly id: number }

export type Reply =
  | { readonly id: number; readonly ok: true }
  | { readonly id: number; readonly ok: false; readonly reason: string; readonly interrupted: boolean }

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

const port = parentPort
if (port !== null) {
  // Built once: the cache lives as long as the thread.
  const runtime = ManagedRuntime.make(Layer.merge(NodeContext.layer, dataCache))
  // The wasm engine compiled while the runner joins its cluster (a first run starts warm); runs
  // wait for it, so that they never set the backend while it initializes.
  const warm = runtime.runPromise(Effect.scoped(Engine.make("wasm")).pipe(Effect.ignore))
  const running = new Map<number, Fiber.RuntimeFiber<void, unknown>>()
  port.on("message", (m: Request) => {
    if (m.type === "stop") {
      const fiber = running.get(m.id)
      if (fiber !== undefined) Effect.runFork(Fiber.interrupt(fiber))
      return
    }
    const fiber = runtime.runFork(
      Effect.zipRight(
        Effect.promise(() => warm),
        main(["node", "stepwise", ...m.argv])
      )
    )
    running.set(m.id, fiber)
    fiber.addObserver((exit) => {
      running.delete(m.id)
      const reply: Reply = Exit.isSuccess(exit)
        ? { id: m.id, ok: true }
        : {
            id: m.id,
            ok: false,
            interrupted: Cause.isInterruptedOnly(exit.cause),
            reason: formatError(
              Cause.failureOption(exit.cause).pipe(Option.getOrElse(() => Cause.squash(exit.cause)))
            )
          }
      port.postMessage(reply)
    })
  })
}
