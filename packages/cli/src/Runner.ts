/**
 * A sweep trial as a durable workflow (@effect/workflow on @effect/cluster), and `stepwise runner`,
 * the process that executes trials.
 *
 * A trial's steps are its epochs: activity `epoch-N` trains epoch N with `stepwise train` itself
 * (`--epochs N`, `--resume` from the trial's run folder), so a trial's losses are those of the
 * recipe trained alone. `train` runs in the runner's training thread (`SweepWorker`), kept warm
 * from epoch to epoch (engine compiled, data decoded once): training keeps an event loop busy for
 * seconds at a time, and the runner's main loop must stay free to refresh its shard locks and
 * answer health checks, or the cluster moves its shards (and trials) to another runner. The
 * engine records each finished activity in the cluster's SQL storage;
 * when a runner dies, its shards move to another runner, which replays the workflow: finished
 * epochs come back from storage, the interrupted one restarts from the last checkpoint.
 */
import { readFileSync } from "node:fs"
import { availableParallelism } from "node:os"
import { join } from "node:path"
import { Worker } from "node:worker_threads"
import { ClusterWorkflowEngine, RunnerAddress } from "@effect/cluster"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { NodeClusterSocket } from "@effect/platform-node"
import { Activity, Workflow } from "@effect/workflow"
import { Metrics } from "@stepwise/core"
import { Cause, Console, Context, Effect, Layer, Option, Schedule, Schema } from "effect"
import type * as Cli from "./Cli.js"
import { formatError, runFolderError, TrialFailed } from "./Errors.js"
import * as Run from "./RunFolder.js"
import * as SweepSpace from "./SweepSpace.js"
import * as SweepStore from "./SweepStore.js"
import type * as SweepWorker from "./SweepWorker.js"

/** The file in a trial's folder that holds its recipe (what `train --config` is given). */
export const RECIPE_FILE = "recipe.json"

export const EpochRow = Schema.Struct({
  epoch: Schema.Int,
  loss: Schema.Number,
  valLoss: Schema.NullOr(Schema.Number),
  valAccuracy: Schema.NullOr(Schema.Number)
})
export type EpochRow = typeof EpochRow.Type

export const TrialResult = Schema.Struct({
  trial: Schema.String,
  state: Schema.Literal("done", "stopped"),
  rows: Schema.Array(EpochRow)
})
export type TrialResult = typeof TrialResult.Type

export const TrialWorkflow = Workflow.make({
  name: "stepwise/trial",
  payload: {
    /** The sweep's id (a resumed sweep finds its trials' executions by it). */
    sweep: Schema.String,
    trial: Schema.String,
    sweepDir: Schema.String,
    epochs: Schema.Int,
    metric: Schema.Literal(...SweepSpace.Metrics),
    stopping: Schema.NullOr(SweepSpace.Stopping),
    /**
     * Picks the trial's execution id, and with it its shard and runner: the sweep chooses it so
     * that trials spread evenly over the runners (`Sweep.place`). Part of the idempotency key,
     * kept in the sweep folder for `--resume`.
     */
    spread: Schema.Int
  },
  success: TrialResult,
  error: TrialFailed,
  idempotencyKey: (p) => `${p.sweep}/${p.trial}${p.spread === 0 ? "" : `#${p.spread}`}`
})
export type TrialPayload = typeof TrialWorkflow.payloadSchema.Type

/** The folder of a trial inside its sweep folder. */
export const trialDir = (p: Path.Path, sweepDir: string, trial: string) => p.join(sweepDir, "trials", trial)

/** One epoch at a time in a runner: training is CPU-bound, and tfjs's engine is process-global. */
export class EpochSlot extends Context.Tag("@stepwise/cli/Runner/EpochSlot")<EpochSlot, Effect.Semaphore>() {}

/**
 * The runner's training thread (`SweepWorker`), started at the first epoch and kept: it runs
 * `stepwise train` in-process with its engine and data warm, so an epoch costs the epoch, not a
 * process start, a wasm compile and a data decode. A thread that dies (a crash in the engine) is
 * replaced at the next epoch; the runner's own SIGKILL takes it along.
 */
export class EpochWorker extends Context.Tag("@stepwise/cli/Runner/EpochWorker")<
  EpochWorker,
  {
    /**
     * `stepwise train` with these arguments in the thread. Interrupting it stops the training as
     * Ctrl-C does (between two mini-batches, the run folder consistent) and waits for that.
     */
    readonly train: (trial: string, argv: ReadonlyArray<string>) => Effect.Effect<void, TrialFailed>
  }
>() {}

const WORKER = new URL("./SweepWorker.js", import.meta.url)

export const EpochWorkerLive = Layer.scoped(
  EpochWorker,
  Effect.gen(function* () {
    let worker: Worker | undefined
    let nextId = 0
    const pending = new Map<number, (reply: SweepWorker.Reply) => void>()
    const ended = (reason: string) => {
      worker = undefined
      for (const [id, done] of pending) done({ id, ok: false, interrupted: false, reason })
      pending.clear()
    }
    const current = () => {
      if (worker !== undefined) return worker
      const w = new Worker(WORKER)
      w.on("message", (reply: SweepWorker.Reply) => {
        const done = pending.get(reply.id)
        pending.delete(reply.id)
        done?.(reply)
      })
      w.on("error", (e) => {
        if (worker === w) ended(`the training thread failed: ${e.message}`)
      })
      w.on("exit", (code) => {
        if (worker === w) ended(`the training thread ended (${code})`)
      })
      worker = w
      return w
    }
    yield* Effect.addFinalizer(() => Effect.promise(async () => void (await worker?.terminate())))
    // started now: it loads and compiles its engine while the runner joins the cluster
    current()
    return EpochWorker.of({
      train: (trial, argv) =>
        Effect.async<void, TrialFailed>((resume) => {
          const w = current()
          const id = nextId++
          let stopped: (() => void) | undefined
          pending.set(id, (reply) => {
            if (stopped !== undefined) return stopped()
            resume(reply.ok ? Effect.void : Effect.fail(new TrialFailed({ trial, reason: reply.reason })))
          })
          w.postMessage({ type: "train", id, argv } satisfies SweepWorker.Request)
          return Effect.async<void>((done) => {
            if (!pending.has(id)) return done(Effect.void)
            stopped = () => done(Effect.void)
            w.postMessage({ type: "stop", id } satisfies SweepWorker.Request)
          })
        })
    })
  })
)

/**
 * `stepwise train` for epochs up to `epochs` in `dir`, in the runner's training thread. Fails
 * with train's own one-line error.
 */
const trainEpochs = (trial: string, dir: string, epochs: number, resume: boolean) =>
  Effect.flatMap(EpochWorker, (w) =>
    w.train(trial, [
      "train",
      ...(resume ? ["--resume", dir] : ["--config", join(dir, RECIPE_FILE), "--out", dir]),
      ...["--epochs", String(epochs), "--no-plots", "--no-tensorboard"]
    ])
  )

export const metricOf = (row: Run.EpochMetrics, metric: SweepSpace.Metric): number | null =>
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
const trainEpoch = (payload: TrialPayload, epoch: number) =>
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
      yield* trainEpochs(payload.trial, dir, epoch, done >= 0)
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
const medianStop = (payload: TrialPayload, epoch: number, own: ReadonlyArray<EpochRow>) =>
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
const asTrialFailure =
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

/** The workflow's body: epochs as activities, with the stopping rule between them. */
export const TrialLive = TrialWorkflow.toLayer(
  Effect.fn(function* (payload) {
    const slot = yield* EpochSlot
    const rows: Array<EpochRow> = []
    for (let epoch = 1; epoch <= payload.epochs; epoch++) {
      const row = yield* Activity.make({
        name: `epoch-${epoch}`,
        success: EpochRow,
        error: TrialFailed,
        execute: slot.withPermits(1)(trainEpoch(payload, epoch)).pipe(asTrialFailure(payload.trial))
      })
      rows.push(row)
      if (payload.stopping !== null && epoch < payload.epochs && epoch >= payload.stopping.minEpochs) {
        const stop = yield* Activity.make({
          name: `median-stop-${epoch}`,
          success: Schema.Boolean,
          error: TrialFailed,
          execute: medianStop(payload, epoch, rows).pipe(asTrialFailure(payload.trial))
        })
        if (stop) return { trial: payload.trial, state: "stopped" as const, rows }
      }
    }
    return { trial: payload.trial, state: "done" as const, rows }
  })
)

/**
 * The cluster's timings for trials that take seconds to minutes: a dead runner's shards are taken
 * over within ~30 s and new work is seen within a second.
 */
export const shardingConfig = {
  // (the cluster's default, stated: `Sweep.place` computes shard owners with it)
  shardsPerGroup: 300,
  // Generous: training blocks the event loop for seconds at a time (data loading, validation), so
  // a tight expiry lets a busy runner's shards pass to another while it still works on them.
  shardLockRefreshInterval: "5 seconds",
  shardLockExpiration: "30 seconds",
  refreshAssignmentsInterval: "1 second",
  entityMessagePollInterval: "1 second",
  entityReplyPollInterval: "200 millis",
  // a shard moves only once its entities stopped: an epoch stops between two mini-batches, which
  // on a loaded machine can take longer than the default 15 s
  entityTerminationTimeout: "2 minutes",
  // a trial's epoch can outlast the default minute of idleness between messages
  entityMaxIdleTime: "1 hour"
} as const

/** The engine a sweep uses to start trials and wait for them (a cluster client, no shards). */
export const clientLayer = (sql: Layer.Layer<import("@effect/sql").SqlClient.SqlClient, unknown>) =>
  ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(NodeClusterSocket.layer({ clientOnly: true, storage: "sql", shardingConfig })),
    Layer.provide(sql)
  )

/** A runner: the trial workflow registered with a cluster node listening on `host:port`. */
export const runnerLayer = (
  sql: Layer.Layer<import("@effect/sql").SqlClient.SqlClient, unknown>,
  address: { readonly host: string; readonly port: number }
) =>
  TrialLive.pipe(
    Layer.provide(Layer.effect(EpochSlot, Effect.makeSemaphore(1))),
    Layer.provide(
      ClusterWorkflowEngine.layer.pipe(
        Layer.provideMerge(
          NodeClusterSocket.layer({
            storage: "sql",
            shardingConfig: {
              ...shardingConfig,
              runnerAddress: Option.some(RunnerAddress.make(address.host, address.port))
            }
          })
        )
      )
    ),
    Layer.provide(sql),
    // provided last, so released after the cluster: its shutdown stops the epochs under way (as
    // Ctrl-C stops train) before the thread ends
    Layer.provide(EpochWorkerLive)
  )

export type Args = Cli.Values<typeof Cli.runner>

/** `stepwise runner --storage URL`: executes trials until stopped (Ctrl-C / SIGTERM). */
export const run = (args: Args) =>
  Effect.gen(function* () {
    const storage = yield* SweepStore.parse(args.storage)
    const sql = SweepStore.layer(storage)
    const host = Option.getOrElse(args.host, () => "127.0.0.1")
    const port = Option.getOrElse(args.port, () => 34431)
    yield* SweepStore.stamp(args.storage, { create: true }).pipe(Effect.provide(sql))
    yield* Console.log(
      `stepwise: runner ${host}:${port} (pid ${process.pid}, stepwise ${SweepStore.VERSION}, ` +
        `${availableParallelism()} cores) on ${SweepStore.shown(args.storage)}`
    )
    // Runners meeting a fresh database race on the cluster's first-time migrations (PostgreSQL's
    // CREATE ... IF NOT EXISTS is not safe against a concurrent one): the loser's retry finds
    // the tables made. The message storage's migrations end as a defect (the cluster dies on
    // them), so defects of SQL are retried too. Anything else, or a sixth failure, ends the
    // runner as before.
    return yield* Layer.launch(runnerLayer(sql, { host, port })).pipe(
      Effect.catchAllDefect((defect) => (ofSql(defect) ? Effect.fail(defect) : Effect.die(defect))),
      Effect.retry({ schedule: Schedule.spaced("1 second"), times: 5, while: ofSql })
    )
  })

/** An SQL error, or a migration error caused by one (its cause chain, a few levels deep). */
const ofSql = (e: unknown): boolean => {
  let x = e as { readonly _tag?: unknown; readonly cause?: unknown } | null | undefined
  for (let depth = 0; x != null && depth < 5; depth++) {
    if (x._tag === "SqlError" || x._tag === "MigrationError") return true
    x = x.cause as typeof x
  }
  return false
}
