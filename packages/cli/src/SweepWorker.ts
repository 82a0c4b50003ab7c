/**
 * The training thread of a sweep runner (a `node:worker_threads` Worker, one per runner, started
 * by `Runner.EpochWorker`). It executes the trial's steps (`TrialEpoch`): an epoch runs
 * `stepwise train` itself, the CLI's command line and pipeline, in-process and warm: the engine
 * (its wasm compiled once) and the decoded data (a `Pipeline.DataCache`) stay from one epoch to
 * the next (`TrialSteps`), while the runner's main thread stays free for the cluster (shard-lock
 * refreshes, heartbeats, messages) and loads none of this.
 *
 * Messages in: `{ type: "task", id, task }` (an epoch, or a median-stopping decision) and
 * `{ type: "stop", id }` (interrupts that task as Ctrl-C does: between two mini-batches, its run
 * folder consistent). Out: one `{ id, ok, value? | reason?, interrupted? }` per task. The thread
 * dies with its process: a runner killed by SIGKILL loses only the epoch under way, which the
 * next owner of the trial retrains from the last checkpoint.
 */
import { parentPort } from "node:worker_threads"
import { Cause, Effect, Exit, Fiber, ManagedRuntime, Option } from "effect"
import { formatError, TrialFailed } from "./Errors.js"
import * as TrialSteps from "./TrialSteps.js"

export type { Task } from "./TrialSteps.js"

export type Request =
  | { readonly type: "task"; readonly id: number; readonly task: TrialSteps.Task }
  | { readonly type: "stop"; readonly id: number }

export type Reply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly reason: string; readonly interrupted: boolean }

const port = parentPort
if (port !== null) {
  // Built once: the cache lives as long as the thread.
  const runtime = ManagedRuntime.make(TrialSteps.layer)
  // The wasm engine compiled while the runner joins its cluster (a first run starts warm); tasks
  // wait for it, so that they never set the backend while it initializes.
  const ready = runtime.runPromise(TrialSteps.warm([]))
  const running = new Map<number, Fiber.RuntimeFiber<unknown, unknown>>()
  port.on("message", (m: Request) => {
    if (m.type === "stop") {
      const fiber = running.get(m.id)
      if (fiber !== undefined) Effect.runFork(Fiber.interrupt(fiber))
      return
    }
    const fiber = runtime.runFork(
      Effect.zipRight(
        Effect.promise(() => ready),
        TrialSteps.execute(m.task)
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
