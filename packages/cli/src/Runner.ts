/**
 * A sweep trial as a durable workflow (@effect/workflow on @effect/cluster), and `stepwise runner`,
 * the process that executes trials.
 *
 * A trial's steps are its epochs: activity `epoch-N` trains epoch N with `stepwise train` itself
 * (`--epochs N`, `--resume` from the trial's run folder), so a trial's losses are those of the
 * recipe trained alone, in-process and warm from epoch to epoch (`TrialSteps`: engine compiled,
 * data decoded once). A runner started by hand trains on a training thread (`SweepWorker`), so
 * that its main loop stays free to refresh its shard locks and answer health checks, or the
 * cluster would move its shards (and trials) to another runner, whatever a trial's data cost; the
 * runners a sweep starts on its own machine train on their own thread (`inlineEpochLayer`). The
 * engine records each finished activity in the cluster's SQL storage; when a runner dies, its
 * shards move to another runner, which replays the workflow: finished epochs come back from
 * storage, the interrupted one restarts from the last checkpoint.
 */
import { availableParallelism } from "node:os"
import type { Writable } from "node:stream"
import { Worker } from "node:worker_threads"
import { ClusterWorkflowEngine, RunnerAddress } from "@effect/cluster"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import { Activity, Workflow } from "@effect/workflow"
import { Cause, Console, Context, Effect, Fiber, Layer, Option, Schedule, Schema } from "effect"
import type * as Cli from "./Cli.js"
import { formatError, TrialFailed } from "./Errors.js"
import { OutputStreams } from "./Progress.js"
import * as SweepStore from "./SweepStore.js"
import * as SweepTerms from "./SweepTerms.js"
import type * as SweepWorker from "./SweepWorker.js"
import type * as TrialSteps from "./TrialSteps.js"

export { RECIPE_FILE, trialDir } from "./SweepTerms.js"

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
    metric: Schema.Literal(...SweepTerms.Metrics),
    stopping: Schema.NullOr(SweepTerms.Stopping),
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

/** One epoch at a time in a runner: training is CPU-bound, and tfjs's engine is process-global. */
export class EpochSlot extends Context.Tag("@stepwise/cli/Runner/EpochSlot")<EpochSlot, Effect.Semaphore>() {}

/**
 * The runner's training thread (`SweepWorker`), started with the runner and kept: it executes the
 * trial's steps (`TrialEpoch`), running `stepwise train` in-process with its engine and data
 * warm, so an epoch costs the epoch, not a process start, a wasm compile and a data decode; the
 * runner's main thread stays free for the cluster. A thread that dies (a crash in the engine) is
 * replaced at the next step; the runner's own SIGKILL takes it along.
 */
export class EpochWorker extends Context.Tag("@stepwise/cli/Runner/EpochWorker")<
  EpochWorker,
  {
    /**
     * Epoch `epoch` of a trial (`TrialEpoch.trainEpoch`): its metrics row. Interrupting it stops
     * the training as Ctrl-C does (between two mini-batches, the run folder consistent) and
     * waits for that.
     */
    readonly epoch: (payload: TrialPayload, epoch: number) => Effect.Effect<EpochRow, TrialFailed>
    /** The median stopping rule's decision after `epoch` (`TrialEpoch.medianStop`). */
    readonly medianStop: (
      payload: TrialPayload,
      epoch: number,
      rows: ReadonlyArray<EpochRow>
    ) => Effect.Effect<boolean, TrialFailed>
  }
>() {}

const WORKER = new URL("./SweepWorker.js", import.meta.url)

/** The epoch worker on the runner's training thread (`SweepWorker`). */
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
    const request = <A>(trial: string, task: SweepWorker.Task) =>
      Effect.async<A, TrialFailed>((resume) => {
        const w = current()
        const id = nextId++
        let stopped: (() => void) | undefined
        pending.set(id, (reply) => {
          if (stopped !== undefined) return stopped()
          resume(
            reply.ok
              ? Effect.succeed(reply.value as A)
              : Effect.fail(new TrialFailed({ trial, reason: reply.reason }))
          )
        })
        w.postMessage({ type: "task", id, task } satisfies SweepWorker.Request)
        return Effect.async<void>((done) => {
          if (!pending.has(id)) return done(Effect.void)
          stopped = () => done(Effect.void)
          w.postMessage({ type: "stop", id } satisfies SweepWorker.Request)
        })
      })
    return EpochWorker.of({
      epoch: (payload, epoch) => request(payload.trial, { _tag: "epoch", payload, epoch }),
      medianStop: (payload, epoch, rows) =>
        request(payload.trial, { _tag: "medianStop", payload, epoch, rows })
    })
  })
)

/**
 * The epoch worker of a runner a sweep starts on its own machine (`RunnerMain`): the trial's
 * steps on the runner's own thread, not a training thread. A thread is a second isolate loading
 * effect and compiling its hot code again (a second or two of CPU, on the cores the trials need);
 * here an epoch of the sweep's small trials blocks the cluster's loops for no longer than a
 * mini-batch (train's loader yields between them), well inside the 30 s shard-lock expiry. The
 * steps' modules load, and `warm`'s recipes are prepared, while the runner joins its cluster.
 */
export const inlineEpochLayer = (warm: ReadonlyArray<string>, output?: Writable) =>
  Layer.scoped(
    EpochWorker,
    Effect.gen(function* () {
      const ready = yield* Effect.forkScoped(
        Effect.gen(function* () {
          const steps = yield* Effect.promise(() => import("./TrialSteps.js"))
          const context = yield* Layer.build(steps.layer)
          yield* steps.warm(warm).pipe(Effect.provide(context))
          return { steps, context }
        })
      )
      const run = <A>(task: TrialSteps.Task) =>
        Effect.flatMap(Fiber.join(ready), ({ steps, context }) =>
          Effect.provide(
            output === undefined
              ? steps.execute(task)
              : Effect.provideService(steps.execute(task), OutputStreams, { stdout: output, stderr: output }),
            context
          )
        ) as Effect.Effect<A, TrialFailed>
      return EpochWorker.of({
        epoch: (payload, epoch) => run<EpochRow>({ _tag: "epoch", payload, epoch }),
        medianStop: (payload, epoch, rows) => run<boolean>({ _tag: "medianStop", payload, epoch, rows })
      })
    })
  )

/** The workflow's body: epochs as activities, with the stopping rule between them. */
export const TrialLive = TrialWorkflow.toLayer(
  Effect.fn(function* (payload) {
    const slot = yield* EpochSlot
    const worker = yield* EpochWorker
    const rows: Array<EpochRow> = []
    for (let epoch = 1; epoch <= payload.epochs; epoch++) {
      const row = yield* Activity.make({
        name: `epoch-${epoch}`,
        success: EpochRow,
        error: TrialFailed,
        execute: slot.withPermits(1)(worker.epoch(payload, epoch))
      })
      rows.push(row)
      if (payload.stopping !== null && epoch < payload.epochs && epoch >= payload.stopping.minEpochs) {
        const stop = yield* Activity.make({
          name: `median-stop-${epoch}`,
          success: Schema.Boolean,
          error: TrialFailed,
          execute: worker.medianStop(payload, epoch, rows)
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
  refreshAssignmentsInterval: "500 millis",
  entityMessagePollInterval: "1 second",
  entityReplyPollInterval: "200 millis",
  // How long a runner shutting down (Ctrl-C, SIGTERM) or giving a shard up waits for a trial's
  // workflow before interrupting it. Its request lasts the whole trial, so it never ends by itself:
  // a longer wait only trains on (2 minutes kept a stopped sweep's runners training until their
  // SIGKILL, leaving their shard locks to expire before --resume could go on). Interrupted, the
  // epoch under way stops between two mini-batches and the trial continues from its last
  // checkpoint wherever its shard goes.
  entityTerminationTimeout: "5 seconds",
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
  address: { readonly host: string; readonly port: number },
  epochs: Layer.Layer<EpochWorker> = EpochWorkerLive
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
    // Ctrl-C stops train) before the epoch worker ends
    Layer.provide(epochs)
  )

export type Args = Cli.Values<typeof Cli.runner>

/**
 * `stepwise runner --storage URL`: executes trials until stopped (Ctrl-C / SIGTERM), training on
 * a thread of its own (`EpochWorkerLive`). The runners a sweep starts on its own machine train
 * `inline` (`inlineEpochLayer`), warming those recipes' data; the one it hosts shares its storage
 * client `sql` and writes its trials' output to `output`.
 */
export const run = (
  args: Args,
  here: {
    readonly output?: Writable
    readonly sql?: Layer.Layer<import("@effect/sql").SqlClient.SqlClient>
    readonly inline?: ReadonlyArray<string>
  } = {}
) =>
  Effect.gen(function* () {
    const storage = yield* SweepStore.parse(args.storage)
    const sql = here.sql ?? SweepStore.layer(storage)
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
    return yield* Layer.launch(
      runnerLayer(
        sql,
        { host, port },
        here.inline !== undefined ? inlineEpochLayer(here.inline, here.output) : EpochWorkerLive
      )
    ).pipe(
      Effect.catchAllDefect((defect) => (ofSql(defect) ? Effect.fail(defect) : Effect.die(defect))),
      Effect.retry({ schedule: Schedule.spaced("1 second"), times: 5, while: ofSql })
    )
  })

/**
 * `run`, its failure (anything but an interrupt) written as one `stepwise: ` line to the console:
 * a runner a sweep started, whose console is its log (a process's stderr, the hosted runner's file).
 */
export const runReported = (args: Args, here: Parameters<typeof run>[1] = {}) =>
  run(args, here).pipe(
    Effect.tapErrorCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.void
        : Console.error(
            `stepwise: ${formatError(Option.getOrElse(Cause.failureOption(cause), () => Cause.squash(cause)))}`
          )
    )
  )

/** An SQL error, or a migration error caused by one (its cause chain, a few levels deep). */
const ofSql = (e: unknown): boolean => {
  let x = e as { readonly _tag?: unknown; readonly cause?: unknown } | null | undefined
  for (let depth = 0; x != null && depth < 5; depth++) {
    if (x._tag === "SqlError" || x._tag === "MigrationError") return true
    x = x.cause as typeof x
  }
  return false
}
