/**
 * `stepwise sweep`: a sweep file's trials as durable workflows on @effect/cluster runners.
 *
 * The sweep folder holds `sweep.json` (the expanded plan), `trials/<id>/` (each trial's run
 * folder and its `recipe.json`), `cluster.db` (the cluster's SQLite storage, unless `--storage`
 * names another), `runners/` (the logs of the runners this process started), `placement.json`
 * (each trial's `spread`: which runner its id sends it to, see `place`), and at the end
 * `sweep.jsonl` (one line a trial), `best-recipe.json` and `plots/metric.png`.
 *
 * This process is a cluster client: it starts one runner per core as child processes, starts
 * every trial's workflow and waits for their results; the runners train. `--resume` re-executes
 * the same workflows (same idempotency keys): finished trials answer from storage at once, the
 * others continue from their last finished epoch.
 */
import type { ChildProcess } from "node:child_process"
import { Console as NodeConsole } from "node:console"
import { randomUUID } from "node:crypto"
import { createWriteStream, type WriteStream } from "node:fs"
import { createServer } from "node:net"
import { availableParallelism } from "node:os"
import { Runner as ClusterRunner, ClusterSchema, EntityId, Sharding } from "@effect/cluster"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { SqlClient } from "@effect/sql"
import {
  Clock,
  Console,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Fiber,
  HashRing,
  Layer,
  Logger,
  Option,
  Ref,
  Schedule,
  Schema
} from "effect"
import * as Charts from "./Charts.js"
import type * as Cli from "./Cli.js"
import {
  COMMAND_LINE,
  ConfigError,
  formatError,
  RunFolderError,
  runFolderError,
  TrialFailed
} from "./Errors.js"
import { Output } from "./Progress.js"
import * as Run from "./RunFolder.js"
import * as Runner from "./Runner.js"
import * as RunnerStart from "./RunnerStart.js"
import * as SweepSpace from "./SweepSpace.js"
import * as SweepStore from "./SweepStore.js"
import * as TrialEpoch from "./TrialEpoch.js"

export type Args = Cli.Values<typeof Cli.sweep>

export const PLAN_FILE = "sweep.json"
export const RESULTS_FILE = "sweep.jsonl"
export const BEST_FILE = "best-recipe.json"
export const STORAGE_FILE = "cluster.db"
export const PLACEMENT_FILE = "placement.json"

/** One trial as the table, `sweep.jsonl` and `--json` show it. */
export interface TrialReport {
  readonly id: string
  readonly params: Readonly<Record<string, unknown>>
  readonly state: "pending" | "running" | "done" | "stopped" | "failed"
  readonly epoch: number
  readonly epochs: number
  readonly metric: number | null
  readonly losses: ReadonlyArray<number>
  readonly valLosses: ReadonlyArray<number | null>
  readonly valAccuracy: ReadonlyArray<number | null>
  readonly runDir: string
  readonly error?: string
}

const decodePlan = Schema.decodeUnknown(Schema.parseJson(SweepSpace.Plan))

/** The sweep folder and its plan: a new one from `--config`, or the one `--resume` names. */
const open = (args: Args) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const resume = Option.getOrUndefined(args.resume)
    if (resume !== undefined) {
      const given = Option.isSome(args.config) ? "--config" : Option.isSome(args.out) ? "--out" : undefined
      if (given !== undefined) {
        return yield* new ConfigError({
          file: COMMAND_LINE,
          field: given,
          reason: "a resumed sweep keeps its plan"
        })
      }
      const file = p.join(resume, PLAN_FILE)
      if (!(yield* Run.exists(file))) {
        return yield* new RunFolderError({ path: resume, reason: `not a sweep folder (no ${PLAN_FILE})` })
      }
      const plan = yield* decodePlan(yield* Run.readText(file)).pipe(
        Effect.mapError(
          (cause) => new RunFolderError({ path: file, reason: "not a valid sweep plan", cause })
        )
      )
      return { dir: p.resolve(resume), plan }
    }
    const config = Option.getOrUndefined(args.config)
    if (config === undefined) {
      return yield* new ConfigError({
        file: COMMAND_LINE,
        field: "--config",
        reason: "a sweep needs a sweep file (or --resume DIR)"
      })
    }
    const { spec, trials } = yield* SweepSpace.load(config)
    const started = yield* Clock.currentTimeMillis
    const dir = p.resolve(
      Option.getOrUndefined(args.out) ??
        (yield* Run.claimNewDir(Run.defaultRunDir(new Date(started), "sweep-")))
    )
    if (yield* Run.exists(p.join(dir, PLAN_FILE))) {
      return yield* new RunFolderError({
        path: dir,
        reason: `already holds a sweep (continue it with --resume ${dir}, or choose another --out)`
      })
    }
    const plan: SweepSpace.Plan = {
      id: randomUUID(),
      source: p.resolve(config),
      metric: spec.metric,
      stopping: spec.stopping ?? null,
      trials
    }
    yield* Run.writeFileAtomic(
      p.join(dir, PLAN_FILE),
      `${JSON.stringify(Schema.encodeSync(SweepSpace.Plan)(plan), null, 2)}\n`
    )
    return { dir, plan }
  })

/** A free TCP port on loopback for a runner (the OS picks; the window until the runner binds is short). */
const freePort = Effect.async<number, Error>((resume) => {
  const server = createServer()
  server.once("error", (e) => resume(Effect.fail(e)))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * Starts `n` runners here: the first in this process (`hostRunner`), the others as processes,
 * those `bin` spawned standing by (`RunnerStart`) and new ones for any missing. Each gets the
 * storage URL, a free port and the recipe files to warm (`warm`); its output goes to
 * `runners/runner-i.log`. Stopped with the scope (SIGTERM, then SIGKILL after 10 s), their logs
 * complete. Returns a Deferred that fails once every runner has exited (the trials would wait
 * for no one), and `stopping`: stops every runner at once, for when the trials are over (the
 * runners then shut down while this process writes the results; the scope still waits for them).
 */
const startRunners = (
  n: number,
  storage: string,
  sql: Layer.Layer<SqlClient.SqlClient>,
  dir: string,
  warm: ReadonlyArray<string>
) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    const logs = p.join(dir, "runners")
    yield* fs.makeDirectory(logs, { recursive: true }).pipe(Effect.mapError(runFolderError(logs)))
    const allGone = yield* Deferred.make<never, RunFolderError>()
    const standing = RunnerStart.take(Math.max(0, n - 1))
    let alive = n
    const gone = (log: string) => () => {
      alive -= 1
      if (alive === 0) {
        Deferred.unsafeDone(
          allGone,
          Effect.fail(new RunFolderError({ path: log, reason: "every runner exited; see its log" }))
        )
      }
    }
    const stops: Array<Effect.Effect<void>> = []
    const ports: Array<number> = []
    for (let i = 1; i <= n; i++) {
      const port = yield* freePort.pipe(Effect.orDie)
      ports.push(port)
      const log = p.join(logs, `runner-${i}.log`)
      if (i === 1) {
        const fiber = yield* hostRunner(storage, sql, port, log, warm)
        fiber.addObserver(gone(log))
        stops.push(Fiber.interruptFork(fiber))
        continue
      }
      const child = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const child = standing[i - 2] ?? RunnerStart.spawnStandby()
          const out = createWriteStream(log, { flags: "a" })
          child.stdout?.pipe(out, { end: false })
          child.stderr?.pipe(out, { end: false })
          child.once("close", () => out.end())
          RunnerStart.start(child, { storage, port, warm })
          return { child, out }
        }),
        ({ child, out }) => stop(child, out)
      ).pipe(Effect.map(({ child }) => child))
      whenExited(child, gone(log))
      stops.push(Effect.sync(() => signal(child)))
    }
    const stopping = Effect.all(stops, { discard: true })
    // (the scope's first finalizer: every runner told to stop at once, then each awaited)
    yield* Effect.addFinalizer(() => stopping)
    return { allGone, ports, stopping }
  })

/**
 * Runner 1, in this process: `stepwise runner` (`Runner.run`) on a fiber of its own, training on
 * this thread (`Runner.inlineEpochLayer`), its console, logs and trials' output written to its log
 * file as a runner process's would be. A process of its own would load the cluster's modules once
 * more (a second or two of CPU, on the cores the trials need); this process has them, and its
 * thread idles while the trials train. Interrupted with the scope (its shutdown stops the epoch
 * under way, as SIGTERM stops a runner process), its log then complete.
 */
const hostRunner = (
  storage: string,
  sql: Layer.Layer<SqlClient.SqlClient>,
  port: number,
  log: string,
  warm: ReadonlyArray<string>
) =>
  Effect.gen(function* () {
    const out = createWriteStream(log, { flags: "a" })
    const file = new NodeConsole(out, out)
    const pretty = Logger.prettyLogger({ colors: false })
    const runner = Runner.runReported(
      { storage, host: Option.none(), port: Option.some(port) },
      { sql, inline: warm, output: out }
    ).pipe(
      (self) =>
        Console.consoleWith((base) =>
          Effect.withConsole(self, {
            ...base,
            log: (...args) => Effect.sync(() => file.log(...args)),
            info: (...args) => Effect.sync(() => file.info(...args)),
            warn: (...args) => Effect.sync(() => file.warn(...args)),
            error: (...args) => Effect.sync(() => file.error(...args)),
            unsafe: file
          })
        ),
      Effect.provide(
        Layer.merge(
          Logger.replace(Logger.prettyLoggerDefault, pretty),
          Logger.replace(Logger.defaultLogger, pretty)
        )
      )
    )
    // (interruptible: a fiber forked in `acquire` would inherit its uninterruptible region, and
    // the cluster's races and timeouts inside it would wait for their losers for ever)
    // Its shutdown waits, as a runner process's does, for the cluster to let its trial go: given
    // 10 s, as a process gets between SIGTERM and SIGKILL (a trial cut short is a killed runner's).
    return yield* Effect.acquireRelease(Effect.forkDaemon(Effect.interruptible(runner)), (fiber) =>
      Effect.gen(function* () {
        yield* Fiber.interruptFork(fiber)
        // (interruptible: a finalizer's timeout could not end the wait otherwise)
        yield* Effect.ignore(Effect.timeout(Effect.interruptible(Fiber.await(fiber)), "10 seconds"))
        yield* Effect.async<void>((resume) => {
          out.end(() => resume(Effect.void))
        })
      })
    )
  })

const exited = (c: ChildProcess) => c.exitCode !== null || c.signalCode !== null

/** Calls `f` once the child has exited (now, if it already has). */
const whenExited = (c: ChildProcess, f: () => void) => (exited(c) ? f() : c.once("exit", f))

/** SIGTERM, once (a second one would not stop a runner sooner). */
const signal = (c: ChildProcess) => {
  if (!exited(c) && !c.killed) c.kill("SIGTERM")
}

/** Stops a runner and waits for its log to be written out. */
const stop = (c: ChildProcess, log: WriteStream) =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => c.kill("SIGKILL"), 10_000)
    whenExited(c, () => {
      clearTimeout(timer)
      if (log.closed) resume(Effect.void)
      else log.once("close", () => resume(Effect.void))
    })
    signal(c)
  })

/**
 * Waits until this sweep's runners are registered in the storage (up to 5 minutes) and hold their
 * shares of the shards, so that trials start on their final shard owners: a runner joining later
 * moves shards, and with them trials in the middle of an epoch. (Polled every 200 ms: a query of
 * a few rows, and the trials start as soon as the runners are ready.)
 */
const POLL = Duration.millis(200)

const untilRegistered = (ports: ReadonlyArray<number>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    // The table first: sql-sqlite-node caches a failed prepare, so querying a table the runners
    // have not created yet would keep failing after they do.
    const table = sql.onDialectOrElse({
      sqlite: () => sql`SELECT 1 AS ok FROM sqlite_master WHERE type = 'table' AND name = 'cluster_runners'`,
      pg: () => sql`SELECT 1 AS ok WHERE to_regclass('cluster_runners') IS NOT NULL`,
      orElse: () => sql`SELECT 1 AS ok`
    })
    const registered = Effect.gen(function* () {
      if ((yield* table).length === 0) return false
      const rows = yield* sql<{ address: string }>`SELECT address FROM cluster_runners`
      return ports.every((port) => rows.some((r) => r.address.endsWith(`:${port}`)))
    }).pipe(Effect.orElseSucceed(() => false))
    for (let i = 0; i < 1500; i++) {
      if (yield* registered) break
      yield* Effect.sleep(POLL)
    }
    // On SQLite the shard locks are rows: wait (up to a minute) until every runner holds some, or
    // the first runner up keeps all shards, and every trial, while its epochs keep it busy.
    // (PostgreSQL's locks are advisory locks, not rows; there the runners settle as they go.)
    const holding = sql.onDialectOrElse({
      sqlite: () =>
        sql<{ address: string }>`SELECT DISTINCT address FROM cluster_locks`.pipe(
          Effect.map((rows) => ports.every((port) => rows.some((r) => r.address.endsWith(`:${port}`)))),
          Effect.orElseSucceed(() => false)
        ),
      orElse: () => Effect.succeed(true)
    })
    for (let i = 0; i < 300; i++) {
      if (yield* holding) return
      yield* Effect.sleep(POLL)
    }
  })

/**
 * The runner that owns each shard, computed as @effect/cluster's Sharding does: a hash ring
 * (effect's HashRing) of the healthy runners in storage, by address and weight. Empty if the
 * storage cannot tell (trials then keep their first execution ids).
 */
const shardOwners = (group: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ runner: string; healthy: unknown }>`SELECT runner, healthy FROM cluster_runners`
    const ring = HashRing.make<ClusterRunner.Runner["address"]>()
    for (const row of rows) {
      // (SQLite answers 0/1, PostgreSQL a boolean)
      if (row.healthy === false || row.healthy === 0) continue
      const runner = ClusterRunner.Runner.decodeSync(row.runner)
      if (runner.groups.includes(group)) HashRing.add(ring, runner.address, { weight: runner.weight })
    }
    return (HashRing.getShards(ring, Runner.shardingConfig.shardsPerGroup) ?? []).map(
      (a) => `${a.host}:${a.port}`
    )
  }).pipe(Effect.orElseSucceed((): ReadonlyArray<string> => []))

const Placement = Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Int }))

/**
 * Spreads the trials evenly over the runners. A trial's runner is the owner of its shard, and
 * its shard a hash of its execution id, so with ids as they come one runner can get 4 of 6
 * trials and finish long after the other. Here each trial, in plan order, takes the first
 * `spread` (a number in its idempotency key) whose shard belongs to a runner with the fewest
 * trials so far. Kept in `placement.json`: a resumed sweep must execute the same ids (its
 * runners may differ, and trials then stay where the ids put them). Returns each trial's
 * spread and the planned trials per runner address.
 */
const place = (
  dir: string,
  trials: ReadonlyArray<SweepSpace.Trial>,
  payloadOf: (t: SweepSpace.Trial, spread: number) => Runner.TrialPayload
) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const file = p.join(dir, PLACEMENT_FILE)
    if (yield* Run.exists(file)) {
      const kept = yield* Run.readText(file).pipe(
        Effect.flatMap(Schema.decodeUnknown(Placement)),
        Effect.mapError((cause) => new RunFolderError({ path: file, reason: "not a valid placement", cause }))
      )
      return { spread: kept, perRunner: new Map<string, number>() }
    }
    const sharding = yield* Sharding.Sharding
    const groupOf = Context.get(Runner.TrialWorkflow.annotations, ClusterSchema.ShardGroup)
    const ownerOf = (id: string, owners: ReadonlyArray<string>) => {
      const entity = EntityId.make(id)
      return owners[sharding.getShardId(entity, groupOf(entity)).id - 1]
    }
    const owners = yield* shardOwners(groupOf(EntityId.make("")))
    const perRunner = new Map<string, number>([...new Set(owners)].map((a) => [a, 0]))
    const spread: Record<string, number> = {}
    for (const t of trials) {
      let chosen = { spread: 0, owner: undefined as string | undefined }
      if (perRunner.size > 0) {
        const fewest = Math.min(...perRunner.values())
        for (let k = 0; k < 64; k++) {
          const owner = ownerOf(yield* Runner.TrialWorkflow.executionId(payloadOf(t, k)), owners)
          if (chosen.owner === undefined || perRunner.get(owner)! < perRunner.get(chosen.owner)!)
            chosen = { spread: k, owner }
          if (perRunner.get(owner) === fewest) break
        }
      }
      spread[t.id] = chosen.spread
      if (chosen.owner !== undefined) perRunner.set(chosen.owner, perRunner.get(chosen.owner)! + 1)
    }
    yield* Run.writeFileAtomic(file, `${JSON.stringify(spread, null, 2)}\n`)
    return { spread, perRunner }
  })

/** What a trial's folder shows while it runs: epochs finished and the latest metric. */
const progressOf = (dir: string, metric: SweepSpace.Metric) =>
  Run.readMetrics(dir).pipe(
    Effect.map((rows) => {
      const last = rows.at(-1)
      return {
        epoch: last?.epoch ?? 0,
        metric: last === undefined ? null : TrialEpoch.metricOf(last, metric)
      }
    }),
    Effect.orElseSucceed(() => ({ epoch: 0, metric: null }))
  )

/**
 * A trial's row with what its folder shows, while it still runs: its result may have come in
 * while the folder was read, and a finished trial stays finished.
 */
export const withProgress = (
  t: TrialReport,
  progress: { readonly epoch: number; readonly metric: number | null }
): TrialReport =>
  (t.state === "pending" || t.state === "running") && progress.epoch > 0
    ? { ...t, state: "running", epoch: progress.epoch, metric: progress.metric }
    : t

const fmtMetric = (metric: SweepSpace.Metric, v: number | null) =>
  v === null ? "-" : metric === "valAccuracy" ? `${(100 * v).toFixed(1)}%` : v.toFixed(4)

/** The table of trials: id, state, epoch, metric, swept values. */
export const table = (metric: SweepSpace.Metric, trials: ReadonlyArray<TrialReport>): string => {
  const head = ["trial", "state", "epoch", metric, "params"]
  const rows = trials.map((t) => [
    t.id,
    t.state,
    `${t.epoch}/${t.epochs}`,
    fmtMetric(metric, t.metric),
    SweepSpace.label(t.params)
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (r: ReadonlyArray<string>) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ")
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n")
}

/** Best first: highest accuracy, or lowest loss; trials without a metric last. */
export const rank = (metric: SweepSpace.Metric, trials: ReadonlyArray<TrialReport>) =>
  trials
    .filter((t) => t.metric !== null && (t.state === "done" || t.state === "stopped"))
    .sort((a, b) => (metric === "valLoss" ? a.metric! - b.metric! : b.metric! - a.metric!))

/**
 * The picture: the metric of each finished trial against the most telling swept number (an lr
 * if one is swept, on a log axis), one colour per combination of the other swept values.
 */
export const metricChart = (metric: SweepSpace.Metric, trials: ReadonlyArray<TrialReport>) => {
  const done = trials.filter((t) => t.metric !== null)
  const keys = [...new Set(done.flatMap((t) => Object.keys(t.params)))]
  const numeric = keys.filter((k) => done.some((t) => typeof t.params[k] === "number"))
  const varied = numeric.filter((k) => new Set(done.map((t) => t.params[k])).size > 1)
  // An lr-like value per trial (recipes may sweep different ones: Adam's lr, CyclicLR's maxLr).
  const lrKeys = varied.filter((k) => /lr/i.test(k))
  const xKeys = lrKeys.length > 0 ? lrKeys : varied.slice(0, 1)
  const xOf = (t: TrialReport) => xKeys.find((k) => typeof t.params[k] === "number")
  const title = xKeys.length === 0 ? "trial" : xKeys.join(" / ")
  const values = done.map((t) => {
    const x = xOf(t)
    const others = Object.keys(t.params).filter((k) => k !== x)
    return {
      x: x === undefined ? t.id : t.params[x],
      metric: t.metric,
      trial: t.id,
      series:
        others.length === 0
          ? (x ?? "trials")
          : SweepSpace.label(Object.fromEntries(others.map((k) => [k, t.params[k]])))
    }
  })
  const xs = values.map((v) => v.x).filter((v): v is number => typeof v === "number")
  const quantitative = xKeys.length > 0 && xs.length === values.length
  const log = quantitative && lrKeys.length > 0 && xs.every((v) => v > 0)
  // (a horizontal axis: ticks 56 px apart so that their labels do not run into each other)
  const xEncoding = quantitative
    ? {
        field: "x",
        type: "quantitative",
        title,
        ...(log ? Charts.logAxis(xs, 420, 56) : { scale: { zero: false } })
      }
    : { field: "x", type: "nominal", title: "trial" }
  const y = { field: "metric", type: "quantitative", title: metric, scale: { zero: false } }
  const color = { field: "series", type: "nominal", title: null }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: `Sweep: ${metric === "valAccuracy" ? "validation accuracy" : "validation loss"} against ${title}`,
    width: 420,
    height: 260,
    data: { values },
    layer: [
      { mark: { type: "line", opacity: 0.5 }, encoding: { x: xEncoding, y, color } },
      {
        mark: { type: "point", filled: true, size: 60 },
        encoding: { x: xEncoding, y, color, tooltip: [{ field: "trial" }] }
      }
    ],
    config: { legend: { orient: "bottom", labelLimit: 400 } }
  }
}

export const run = (args: Args) =>
  Effect.gen(function* () {
    const out = yield* Output
    const p = yield* Path.Path
    const started = yield* Clock.currentTimeMillis
    // Storage named on the command line is checked before any folder is made for the sweep.
    const given = Option.getOrUndefined(args.storage)
    if (given !== undefined) {
      const storage = yield* SweepStore.parse(given)
      yield* SweepStore.stamp(given, { create: true }).pipe(Effect.provide(SweepStore.layer(storage)))
    }
    const { dir, plan } = yield* open(args)
    yield* Run.lock(dir)

    // Each trial's run folder and recipe (train reads the recipe from there).
    for (const t of plan.trials) {
      const file = p.join(Runner.trialDir(p, dir, t.id), Runner.RECIPE_FILE)
      if (!(yield* Run.exists(file)))
        yield* Run.writeFileAtomic(file, `${JSON.stringify(t.recipe, null, 2)}\n`)
    }

    const url = Option.getOrElse(args.storage, () => `sqlite:${p.join(dir, STORAGE_FILE)}`)
    const storage = yield* SweepStore.parse(url)
    // One client for the whole sweep, shared with the runner it hosts: SQLite connections of one
    // thread would wait on each other's locks, blocking the thread that must release them.
    const sql = Layer.succeedContext(yield* Layer.build(SweepStore.layer(storage)))
    yield* SweepStore.stamp(url, { create: true }).pipe(Effect.provide(sql))
    const n = Option.getOrElse(args.runners, () => availableParallelism())
    if (n === 0 && Option.isNone(args.storage)) {
      return yield* new ConfigError({
        file: COMMAND_LINE,
        field: "--runners 0",
        reason: "no runner could reach this sweep's own storage: give --storage shared with runners elsewhere"
      })
    }
    // (each runner prepares the first trial's data while it joins the cluster)
    const runners = yield* startRunners(
      n,
      url,
      sql,
      dir,
      plan.trials.slice(0, 1).map((t) => p.join(Runner.trialDir(p, dir, t.id), Runner.RECIPE_FILE))
    )
    yield* untilRegistered(runners.ports).pipe(Effect.provide(sql))
    yield* out.line(
      `stepwise: sweep of ${plan.trials.length} trials (${plan.metric}) in ${dir}, ${n} runner${n === 1 ? "" : "s"} here` +
        `, storage ${SweepStore.shown(url)}`
    )

    // The table's state: the sweep knows start and end; the trial folders tell the epochs.
    const reports = yield* Ref.make(
      new Map<string, TrialReport>(
        plan.trials.map((t) => [
          t.id,
          {
            id: t.id,
            params: t.params,
            state: "pending" as const,
            epoch: 0,
            epochs: (t.recipe.epochs ?? 10) as number,
            metric: null,
            losses: [],
            valLosses: [],
            valAccuracy: [],
            runDir: Runner.trialDir(p, dir, t.id)
          }
        ])
      )
    )
    const update = (id: string, f: (t: TrialReport) => TrialReport) =>
      Ref.update(reports, (m) => new Map(m).set(id, f(m.get(id)!)))
    const redraw = Effect.gen(function* () {
      const all = [...(yield* Ref.get(reports)).values()]
      for (const t of all) {
        if (t.state === "pending" || t.state === "running") {
          const prog = yield* progressOf(t.runDir, plan.metric)
          yield* update(t.id, (r) => withProgress(r, prog))
        }
      }
      const text = table(plan.metric, [...(yield* Ref.get(reports)).values()])
      yield* out.block(text)
    })
    // Without a terminal, one line per trial event instead of a redrawn table.
    const event = (text: string) => (out.live ? Effect.void : out.line(`stepwise: ${text}`))
    const ticker = yield* Effect.fork(Effect.repeat(redraw, Schedule.spaced(Duration.seconds(1))))

    const payloadOf = (t: SweepSpace.Trial, spread: number): Runner.TrialPayload => ({
      sweep: plan.id,
      trial: t.id,
      sweepDir: dir,
      epochs: (t.recipe.epochs ?? 10) as number,
      metric: plan.metric,
      stopping: plan.stopping,
      spread
    })
    const execute = (t: SweepSpace.Trial, spread: number) =>
      Runner.TrialWorkflow.execute(payloadOf(t, spread)).pipe(
        Effect.either,
        Effect.flatMap((result) =>
          Either.match(result, {
            onLeft: (e) => {
              const reason = e._tag === "TrialFailed" ? e.reason : formatError(e)
              return update(t.id, (r) => ({ ...r, state: "failed", error: reason })).pipe(
                Effect.zipRight(event(`${t.id} failed: ${reason}`))
              )
            },
            onRight: (r) => {
              const metric = r.rows.at(-1)
              const value =
                metric === undefined ? null : plan.metric === "valLoss" ? metric.valLoss : metric.valAccuracy
              return update(t.id, (x) => ({
                ...x,
                state: r.state,
                epoch: r.rows.length,
                metric: value,
                losses: r.rows.map((row) => row.loss),
                valLosses: r.rows.map((row) => row.valLoss),
                valAccuracy: r.rows.map((row) => row.valAccuracy)
              })).pipe(
                Effect.zipRight(
                  event(
                    `${t.id} ${r.state} after ${r.rows.length} epochs: ${plan.metric} ${fmtMetric(plan.metric, value)} (${SweepSpace.label(t.params)})`
                  )
                )
              )
            }
          })
        )
      )

    yield* Effect.gen(function* () {
      const placed = yield* place(dir, plan.trials, payloadOf).pipe(Effect.provide(sql))
      if (placed.perRunner.size > 0) {
        yield* event(`trials per runner: ${[...placed.perRunner].map(([a, n]) => `${a} ${n}`).join(", ")}`)
      }
      yield* Effect.forEach(plan.trials, (t) => execute(t, placed.spread[t.id] ?? 0), {
        concurrency: "unbounded",
        discard: true
      })
    }).pipe(Effect.raceFirst(Deferred.await(runners.allGone)), Effect.provide(Runner.clientLayer(sql)))
    yield* runners.stopping
    yield* Fiber.interrupt(ticker)
    yield* redraw

    // The results.
    const all = [...(yield* Ref.get(reports)).values()]
    const finished = all.filter((t) => t.state !== "pending" && t.state !== "running")
    yield* Run.writeFileAtomic(
      p.join(dir, RESULTS_FILE),
      finished.map((t) => `${JSON.stringify(t)}\n`).join("")
    )
    const best = rank(plan.metric, all)[0]
    let bestFile: string | undefined
    if (best !== undefined) {
      bestFile = p.join(dir, BEST_FILE)
      const recipe = plan.trials.find((t) => t.id === best.id)!.recipe
      yield* Run.writeFileAtomic(bestFile, `${JSON.stringify(recipe, null, 2)}\n`)
    }
    const plots = yield* Run.writePicture(
      p.join(dir, Run.PLOTS_DIR),
      "metric",
      metricChart(plan.metric, all),
      "png"
    ).pipe(
      Effect.catchAll((e) =>
        Effect.as(out.line(`stepwise: could not draw metric.png (${formatError(e)})`), [])
      )
    )
    if (!out.live) yield* out.line(`\n${table(plan.metric, all)}`)
    const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
    yield* out.line(
      best === undefined
        ? `\nstepwise: no trial finished (${seconds.toFixed(1)}s). Sweep folder: ${dir}`
        : `\nstepwise: best ${best.id} with ${plan.metric} ${fmtMetric(plan.metric, best.metric)} ` +
            `(${SweepSpace.label(best.params)}) in ${seconds.toFixed(1)}s; its recipe: ${bestFile}`
    )
    yield* out.json({
      command: "sweep",
      sweepDir: dir,
      metric: plan.metric,
      seconds,
      runners: n,
      plots,
      trials: all,
      best: best === undefined ? null : { ...best, recipe: bestFile }
    })
    const failed = all.filter((t) => t.state === "failed")
    if (best === undefined && failed.length > 0) {
      return yield* new TrialFailed({ trial: failed[0].id, reason: failed[0].error ?? "failed" })
    }
  }).pipe(Effect.scoped)
