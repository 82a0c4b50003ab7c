/**
 * End-to-end: `stepwise sweep` and `stepwise runner` as separate processes on loopback, on a tiny
 * ImageFolder (20 images a class, 10 to validate), trials of 2-3 epochs. Every trial must equal the
 * same recipe trained alone (`stepwise train`, same seed) to the last bit, including a trial whose
 * runner was killed with SIGKILL in the middle of it. The PostgreSQL case runs where
 * STEPWISE_TEST_PG_URL names a server (`.ci/run` starts Debian's PostgreSQL) and skips elsewhere.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync
} from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Rps } from "@stepwise/data"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"

vi.setConfig({ testTimeout: 600_000 })

const root = fileURLToPath(new URL("../../..", import.meta.url))
const bin = join(root, "packages/cli/dist/bin.js")
const tmp = mkdtempSync(join(tmpdir(), "stepwise-sweep-"))
const children: Array<ChildProcess> = []

interface Result {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** A CLI process in the background; resolves with its result when it ends. */
const cliAsync = (args: ReadonlyArray<string>) => {
  const child = spawn(process.execPath, [bin, ...args], { cwd: tmp })
  children.push(child)
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (d) => {
    stdout += d
  })
  child.stderr.on("data", (d) => {
    stderr += d
  })
  const done = new Promise<Result>((resolve) =>
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  )
  return { child, done, log: () => stdout + stderr }
}

/** A CLI run to its end; asynchronous, so that vitest's worker stays responsive meanwhile. */
const cli = (args: ReadonlyArray<string>): Promise<Result> => cliAsync(args).done

const lastJson = (r: Result): any => JSON.parse(r.stdout.trim().split("\n").at(-1)!)

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const waitFor = async <A>(what: string, f: () => A | undefined, ms = 300_000): Promise<A> => {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const v = f()
    if (v !== undefined) return v
    await sleep(200)
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** Two runners of this storage, each its own process on its own loopback port. */
const startRunners = async (storage: string, ports: ReadonlyArray<number>) => {
  const runners = ports.map((port) => cliAsync(["runner", "--storage", storage, "--port", String(port)]))
  for (const r of runners)
    await waitFor(
      "a runner to listen",
      () => (/Listening on/.test(r.log()) ? true : undefined),
      30_000
    ).catch((e) => {
      throw new Error(`${e.message}; its output:\n${r.log()}`)
    })
  return runners
}

/** `stepwise train` of a trial's own recipe file, alone: the losses a sweep's trial must equal. */
const solo = async (recipe: string, out: string) => {
  const r = await cli(["train", "--config", recipe, "--out", out, "--json", "--no-plots", "--no-tensorboard"])
  expect(r.code, r.stderr).toBe(0)
  const j = lastJson(r)
  return { losses: j.losses, valLosses: j.valLosses }
}

const sweepFile = (name: string, epochs: number, lrs: ReadonlyArray<number>) => {
  const file = join(tmp, name)
  writeFileSync(
    file,
    `recipes: [tiny.json]\nepochs: ${epochs}\nmetric: valAccuracy\ngrid:\n  optimizer.lr: [${lrs.join(", ")}]\n`
  )
  return file
}

let port = 41000 + Math.floor(Math.random() * 2000)
const nextPorts = () => {
  port += 2
  return [port, port + 1]
}

beforeAll(() => {
  const build = spawnSync("npx", ["tsc", "-b", "packages/cli"], { cwd: root, encoding: "utf8" })
  if (build.status !== 0) throw new Error(`tsc -b packages/cli failed:\n${build.stdout}${build.stderr}`)
  const { train, test } = Rps.bundled()
  for (const [from, to, n] of [
    [train, "tiny/train", 20],
    [test, "tiny/val", 10]
  ] as const) {
    for (const c of readdirSync(from)) {
      mkdirSync(join(tmp, to, c), { recursive: true })
      for (const f of readdirSync(join(from, c)).sort().slice(0, n))
        copyFileSync(join(from, c, f), join(tmp, to, c, f))
    }
  }
  writeFileSync(
    join(tmp, "tiny.json"),
    JSON.stringify({
      model: { filters: 3, dropout: 0.3 },
      optimizer: { name: "Adam", lr: 0.001 },
      batchSize: 16,
      seed: 13,
      data: { train: "tiny/train", val: "tiny/val" }
    })
  )
}, 300_000)

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
})

describe("stepwise sweep on SQLite", () => {
  it("starts two runners, finishes a grid and matches solo runs of the same recipes", async () => {
    const out = join(tmp, "grid")
    const r = await cliAsync([
      "sweep",
      "--config",
      sweepFile("grid.yaml", 2, [0.001, 0.003]),
      "--out",
      out,
      "--runners",
      "2",
      "--json"
    ]).done
    expect(r.code, r.stderr).toBe(0)
    const j = lastJson(r)
    expect(j.command).toBe("sweep")
    expect(j.trials.map((t: any) => [t.id, t.state, t.epoch])).toEqual([
      ["t01", "done", 2],
      ["t02", "done", 2]
    ])
    expect(readdirSync(join(out, "runners")).sort()).toEqual(["runner-1.log", "runner-2.log"])
    // placed one a runner (ids chosen by shard owner), and each trained where it was placed
    expect(r.stderr).toMatch(/trials per runner: 127\.0\.0\.1:\d+ 1, 127\.0\.0\.1:\d+ 1/)
    for (const f of ["runner-1.log", "runner-2.log"]) {
      const trained = readFileSync(join(out, "runners", f), "utf8").match(/^trial t0\d/gm) ?? []
      expect(new Set(trained).size, f).toBe(1)
    }
    const lines = readFileSync(join(out, "sweep.jsonl"), "utf8").trim().split("\n")
    expect(lines).toHaveLength(2)
    expect(existsSync(join(out, "plots", "metric.png"))).toBe(true)
    const best = j.trials.reduce((a: any, b: any) => (b.metric > a.metric ? b : a))
    expect(j.best.id).toBe(best.id)
    expect(JSON.parse(readFileSync(j.best.recipe, "utf8")).optimizer.lr).toBe(best.params["optimizer.lr"])
    for (const t of j.trials) {
      const alone = await solo(join(out, "trials", t.id, "recipe.json"), join(tmp, `solo-grid-${t.id}`))
      expect(t.losses).toEqual(alone.losses)
      expect(t.valLosses).toEqual(alone.valLosses)
    }
    // --resume of a finished sweep answers from storage: nothing trains again
    const again = await cli(["sweep", "--resume", out, "--runners", "1", "--json"])
    expect(again.code, again.stderr).toBe(0)
    expect(lastJson(again).trials.map((t: any) => t.losses)).toEqual(j.trials.map((t: any) => t.losses))
    const logs = readdirSync(join(out, "runners")).map((f) => readFileSync(join(out, "runners", f), "utf8"))
    expect(logs.join("").match(/trial t0\d: epoch \d/g)).toHaveLength(4)
  })

  it("a sweep stopped with Ctrl-C stops its runners and resumes to the solo runs' losses", async () => {
    const out = join(tmp, "stopped")
    const sweep = cliAsync([
      ...["sweep", "--config", sweepFile("stopped.yaml", 3, [0.001, 0.003]), "--out", out],
      ...["--runners", "2", "--json"]
    ])
    const metrics = ["t01", "t02"].map((t) => join(out, "trials", t, "metrics.jsonl"))
    await waitFor("a first epoch", () => (metrics.some((m) => existsSync(m)) ? true : undefined))
    const stopped = Date.now()
    sweep.child.kill("SIGINT")
    const r = await sweep.done
    expect(r.code, r.stderr).toBe(130)
    // (a runner interrupts its trial after 5 s: Runner.shardingConfig's entityTerminationTimeout)
    expect(Date.now() - stopped).toBeLessThan(15_000)
    const pids = readdirSync(join(out, "runners")).map((f) =>
      Number(/\(pid (\d+),/.exec(readFileSync(join(out, "runners", f), "utf8"))?.[1])
    )
    expect(pids).toHaveLength(2)
    for (const pid of pids) expect(() => process.kill(pid, 0), `pid ${pid} still runs`).toThrow()

    const resumed = await cli(["sweep", "--resume", out, "--runners", "2", "--json"])
    expect(resumed.code, resumed.stderr).toBe(0)
    const j = lastJson(resumed)
    expect(j.trials.map((t: any) => [t.id, t.state, t.epoch])).toEqual([
      ["t01", "done", 3],
      ["t02", "done", 3]
    ])
    for (const t of j.trials) {
      const rows = readFileSync(join(out, "trials", t.id, "metrics.jsonl"), "utf8")
        .trim()
        .split("\n")
      expect(rows.map((row) => JSON.parse(row).epoch)).toEqual([1, 2, 3])
      const alone = await solo(join(out, "trials", t.id, "recipe.json"), join(tmp, `solo-stopped-${t.id}`))
      expect(t.losses).toEqual(alone.losses)
      expect(t.valLosses).toEqual(alone.valLosses)
    }
  })

  it("loses nothing when a runner is killed with SIGKILL mid-trial", async () => {
    const db = join(tmp, "kill.db")
    const runners = await startRunners(`sqlite:${db}`, nextPorts())
    const out = join(tmp, "kill")
    const sweep = cliAsync([
      "sweep",
      ...["--config", sweepFile("kill.yaml", 3, [0.001, 0.003]), "--out", out],
      ...["--runners", "0", "--storage", `sqlite:${db}`, "--json"]
    ])
    // A trial past its first epoch, training: its run folder's lock names the runner's pid.
    const victim = await waitFor("a trial in its second epoch", () => {
      for (const t of ["t01", "t02"]) {
        const dir = join(out, "trials", t)
        const metrics = join(dir, "metrics.jsonl")
        // epoch 1 complete (its row and its checkpoint): a SIGKILL now lands in epoch 2
        const complete = existsSync(join(dir, "checkpoints", "epoch-0001.safetensors"))
        if (!existsSync(metrics) || !complete || !existsSync(join(dir, ".lock"))) continue
        const rows = readFileSync(metrics, "utf8").trim().split("\n")
        if (rows.length !== 1) continue
        try {
          // the lock's pid is the runner's (its training thread runs train in-process)
          const pid = JSON.parse(readFileSync(join(dir, ".lock"), "utf8")).pid
          return { trial: t, dir, row1: rows[0], pid }
        } catch {
          // the lock is being written
        }
      }
      return undefined
    })
    const killed = runners.find((r) => r.child.pid === victim.pid)
    expect(killed, `pid ${victim.pid} is one of the runners`).toBeDefined()
    killed!.child.kill("SIGKILL")
    const r = await sweep.done
    expect(r.code, r.stderr).toBe(0)
    const j = lastJson(r)
    const errors = j.trials.map((t: any) => t.error).join("; ")
    expect(
      j.trials.map((t: any) => [t.state, t.epoch]),
      errors
    ).toEqual([
      ["done", 3],
      ["done", 3]
    ])
    // epoch 1's row was not rewritten: that epoch did not run again
    expect(readFileSync(join(victim.dir, "metrics.jsonl"), "utf8").split("\n")[0]).toBe(victim.row1)
    const survivor = runners.find((x) => x !== killed)!
    expect(survivor.log()).toMatch(new RegExp(`trial ${victim.trial}: epoch [23] from the checkpoint`))
    // the survivor never trained epoch 1 (a replay may look, and find it in the folder)
    expect(survivor.log()).not.toMatch(new RegExp(`^trial ${victim.trial}: epoch 1$`, "m"))
    for (const t of j.trials) {
      const alone = await solo(join(out, "trials", t.id, "recipe.json"), join(tmp, `solo-kill-${t.id}`))
      expect(t.losses).toEqual(alone.losses)
      expect(t.valLosses).toEqual(alone.valLosses)
    }
    survivor.child.kill("SIGTERM")
  })

  it("refuses bad input with one line naming it", async () => {
    const empty = join(tmp, "empty.yaml")
    writeFileSync(empty, "recipes: [tiny.json]\ngrid: { optimizer.lr: [] }\n")
    let r = await cli(["sweep", "--config", empty])
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toBe(`stepwise: ${empty}: grid.optimizer.lr: is empty: give at least one value`)

    const unknown = join(tmp, "unknown.yaml")
    writeFileSync(unknown, "recipes: [tiny.json]\ngrid: { optimizer.lr: [0.1] }\nstoping: { rule: median }\n")
    r = await cli(["sweep", "--config", unknown])
    expect(r.stderr.trim()).toBe(`stepwise: ${unknown}: stoping: unknown field`)

    r = await cli([
      "sweep",
      "--config",
      sweepFile("pg.yaml", 1, [0.1]),
      "--storage",
      "postgres://nobody@127.0.0.1:1/none",
      "--out",
      join(tmp, "unreachable")
    ])
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(
      /^stepwise: storage postgres:\/\/nobody@127\.0\.0\.1:1\/none: cannot connect \(ECONNREFUSED\)/
    )

    // storage stamped by another stepwise version
    const db = join(tmp, "other-version.db")
    const Database = createRequire(import.meta.url)("better-sqlite3")
    const conn = new Database(db)
    conn.exec("CREATE TABLE stepwise_meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)")
    conn.exec("INSERT INTO stepwise_meta (key, value) VALUES ('version', '9.9.9')")
    conn.close()
    r = await cli(["runner", "--storage", `sqlite:${db}`, "--port", String(nextPorts()[0])])
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toMatch(
      /^stepwise: storage sqlite:.*other-version\.db belongs to stepwise 9\.9\.9; this is stepwise 0\.1\.0/
    )

    r = await cli(["runner", "--storage", "mysql://x"])
    expect(r.stderr.trim()).toMatch(/^stepwise: --storage mysql:\/\/x: expected sqlite:PATH/)
  })
})

const pgUrl = process.env.STEPWISE_TEST_PG_URL

describe.skipIf(pgUrl === undefined)("stepwise sweep on PostgreSQL", () => {
  it("runners as separate processes finish a grid that matches solo runs", async () => {
    const url = pgUrl!
    // a fresh database per run: the storage is stamped and holds the cluster's tables
    const db = `stepwise_${Date.now()}`
    const admin = spawnSync("psql", [url, "-c", `CREATE DATABASE ${db}`], { encoding: "utf8" })
    expect(admin.status, admin.stderr).toBe(0)
    const storage = url.replace(/\/[^/]*$/, `/${db}`)
    const runners = await startRunners(storage, nextPorts())
    const out = join(tmp, "pg")
    const r = await cliAsync([
      "sweep",
      ...["--config", sweepFile("pg-grid.yaml", 2, [0.001, 0.003]), "--out", out],
      ...["--runners", "0", "--storage", storage, "--json"]
    ]).done
    expect(r.code, r.stderr).toBe(0)
    const j = lastJson(r)
    expect(j.trials.map((t: any) => t.state)).toEqual(["done", "done"])
    for (const t of j.trials) {
      const alone = await solo(join(out, "trials", t.id, "recipe.json"), join(tmp, `solo-pg-${t.id}`))
      expect(t.losses).toEqual(alone.losses)
    }
    for (const x of runners) {
      x.child.kill("SIGTERM")
      await new Promise((resolve) =>
        x.child.exitCode !== null ? resolve(null) : x.child.once("exit", resolve)
      )
    }
    spawnSync("psql", [url, "-c", `DROP DATABASE IF EXISTS ${db}`], { encoding: "utf8" })
  })
})
