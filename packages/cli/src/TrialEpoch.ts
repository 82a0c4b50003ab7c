/**
 * A trial's steps as its runner's training thread (`SweepWorker`) executes them: an epoch
 * (`stepwise train` continued from the trial's last checkpoint, its folder reconciled first) and
 * the median stopping rule's decision. Here, not in `Runner`, so that the runner's main thread,
 * which only keeps the cluster going, loads none of the run folder, engine or data modules.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Metrics } from "@stepwise/core"
import { Cause, Console, Effect, Option } from "effect"
import { formatError, runFolderError, TrialFailed } from "./Errors.js"
import * as Run from "./RunFolder.js"
import type { EpochRow, TrialPayload } from "./Runner.js"
import { type Metric, RECIPE_FILE, trialDir } from "./SweepTerms.js"

/** `stepwise train` with these arguments, in-process (the thread's warm CLI). */
export type Train<R> = (argv: ReadonlyArray<string>) => Effect.Effect<void, TrialFailed, R>

/**
 * `stepwise train` for epochs up to `epochs` in `dir`. Fails with train's own one-line error.
 */
const trainEpochs = <R>(train: Train<R>, dir: string, epochs: number, resume: boolean) =>
  train([
    "train",
    ...(resume ? ["--resume", dir] : ["--config", join(dir, RECIPE_FILE), "--out", dir]),
    ...["--epochs", String(epochs), "--no-plots", "--no-tensorboard"]
  ])

export const metricOf = (row: Run.EpochMetrics, metric: Metric): number | null =>
  metric === "valLoss" ? row.valLoss : row.valCorrect === null ? null : Metrics.accuracy(row.valCorrect)

const epochRow = (row: Run.EpochMetrics): EpochRow => ({
  epoch: row.epoch,
  loss: row.loss,
  valLoss: row.valLoss,
  valAccuracy: metricOf(row, "valAccuracy")
})

/**
 * Epoch `epoch` of a trial, idempotent: the engine may run it again after a runner died after the
 * checkpoint but before its result was stored, so a folder that already holds the epoch is read,
 * not retrained. Otherwise the folder is reconciled (a kill can leave a row or a checkpoint ahead
 * of the other) and `train` continues from its last checkpoint.
 */
export const trainEpoch = <R>(payload: TrialPayload, epoch: number, train: Train<R>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    const dir = trialDir(p, payload.sweepDir, payload.trial)
    const config = p.join(dir, Run.CONFIG_FILE)
    yield* untilUnlocked(dir)
    let done = -1
    if (yield* Run.exists(config)) {
      if ((yield* Run.checkpoints(dir)).length === 0) {
        // killed between config.json and the initial checkpoint: nothing trained yet
        yield* fs.remove(config).pipe(Effect.mapError(runFolderError(config)))
      } else {
        done = (yield* Run.reconcile(dir)).epoch
      }
    }
    if (done < epoch) {
      // (the runner's log: which process trained what, for a user following a sweep)
      yield* Console.log(
        `trial ${payload.trial}: epoch ${epoch}${done >= 0 ? ` from the checkpoint of epoch ${done}` : ""}`
      )
      yield* trainEpochs(train, dir, epoch, done >= 0)
    } else {
      yield* Console.log(`trial ${payload.trial}: epoch ${epoch} already in ${dir}`)
    }
    const row = (yield* Run.readMetrics(dir)).find((r) => r.epoch === epoch)
    if (row === undefined) {
      return yield* new TrialFailed({
        trial: payload.trial,
        reason: `${dir} has no metrics row for epoch ${epoch}`
      })
    }
    return epochRow(row)
  }).pipe(
    // lost the race for the folder's lock to another runner between the wait and `train`: wait again
    Effect.retry({
      times: 5,
      while: () => otherHolder(join(payload.sweepDir, "trials", payload.trial)) !== undefined
    })
  )

/** The pid of another live process holding a run folder's lock, if any (this machine's pids). */
const otherHolder = (dir: string): number | undefined => {
  try {
    const pid = (JSON.parse(readFileSync(join(dir, Run.LOCK_FILE), "utf8")) as { pid?: unknown }).pid
    return typeof pid === "number" && pid !== process.pid && Run.alive(pid) ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * Waits while another live process holds the trial's run folder. When shards move between
 * runners (one joins or leaves, or misses its lock refreshes on a loaded machine), the old owner
 * can still be finishing an epoch when the new owner replays the workflow: the replay waits for
 * it, then finds that epoch in the folder instead of training it twice. After 10 minutes
 * `train`'s own lock check decides.
 */
const untilUnlocked = (dir: string) =>
  Effect.gen(function* () {
    for (let waited = 0; waited < 600; waited++) {
      const pid = otherHolder(dir)
      if (pid === undefined) return
      if (waited === 0) yield* Console.log(`trial folder ${dir} is held by pid ${pid}; waiting for it`)
      yield* Effect.sleep("1 second")
    }
  })

/**
 * The median stopping rule (Google Vizier): after `epoch`, a trial stops when its best metric so
 * far is worse than the median, over the other trials that reached this epoch, of their running
 * averages up to it. What the others have reached depends on timing; the decision is an activity,
 * so once taken it is recorded and a replay takes the same one.
 */
export const medianStop = (payload: TrialPayload, epoch: number, own: ReadonlyArray<EpochRow>) =>
  Effect.gen(function* () {
    const stopping = payload.stopping
    if (stopping === null) return false
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    const root = p.join(payload.sweepDir, "trials")
    const names = yield* fs.readDirectory(root).pipe(Effect.mapError(runFolderError(root)))
    const averages: Array<number> = []
    for (const name of names.filter((n) => n !== payload.trial)) {
      const rows = yield* Run.readMetrics(p.join(root, name))
      const values = rows.filter((r) => r.epoch <= epoch).map((r) => metricOf(r, payload.metric))
      if (values.length < epoch || values.some((v) => v === null)) continue
      averages.push((values as Array<number>).reduce((a, b) => a + b, 0) / values.length)
    }
    if (averages.length < stopping.minTrials) return false
    const sorted = averages.sort((a, b) => a - b)
    const mid = sorted.length / 2
    const median = sorted.length % 2 === 1 ? sorted[Math.floor(mid)] : (sorted[mid - 1] + sorted[mid]) / 2
    const mine = own
      .map((r) => (payload.metric === "valLoss" ? r.valLoss : r.valAccuracy))
      .filter((v) => v !== null)
    if (mine.length === 0) return false
    return payload.metric === "valLoss" ? Math.min(...mine) > median : Math.max(...mine) < median
  })

/** A failure of the trial itself, as the workflow's typed error; interrupts pass (a retry follows). */
export const asTrialFailure =
  (trial: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, TrialFailed, R> =>
    Effect.catchAllCause(self, (cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.failCause(cause as Cause.Cause<never>)
        : Option.exists(Cause.failureOption(cause), (e) => e instanceof TrialFailed)
          ? Effect.failCause(cause as Cause.Cause<TrialFailed>)
          : Effect.fail(
              new TrialFailed({
                trial,
                reason: formatError(
                  Cause.failureOption(cause).pipe(Option.getOrElse(() => Cause.squash(cause)))
                )
              })
            )
    )
