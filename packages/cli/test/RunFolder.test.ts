import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { ConfigError, describeIoError, formatError, RunFolderError } from "../src/Errors.js"
import * as Run from "../src/RunFolder.js"

const run = <A, E>(effect: Effect.Effect<A, E, any>): Promise<A> =>
  Effect.runPromise(Effect.scoped(effect).pipe(Effect.provide(NodeContext.layer)) as Effect.Effect<A, E>)
const failure = <A, E>(effect: Effect.Effect<A, E, any>): Promise<E> => run(Effect.flip(effect))

const fresh = () => mkdtempSync(join(tmpdir(), "stepwise-run-"))

const row = (epoch: number): Run.EpochMetrics => ({
  epoch,
  loss: 1 / epoch,
  valLoss: null,
  lr: 1e-3,
  batchLrs: [1e-3, 1e-3],
  trainCorrect: [
    [3, 4],
    [1, 2]
  ],
  valCorrect: null,
  seconds: 0.5
})

describe("metrics.jsonl", () => {
  it("rows are appended one a line and read back", async () => {
    const dir = fresh()
    await run(Effect.forEach([1, 2, 3], (e) => Run.appendMetrics(dir, row(e))))
    expect(readFileSync(join(dir, Run.METRICS_FILE), "utf8").split("\n")).toHaveLength(4)
    expect(await run(Run.readMetrics(dir))).toEqual([row(1), row(2), row(3)])
  })

  it("a row torn by a crash (no newline) is skipped; a damaged row names the file and line", async () => {
    const dir = fresh()
    const file = join(dir, Run.METRICS_FILE)
    writeFileSync(file, `${JSON.stringify(row(1))}\n${JSON.stringify(row(2)).slice(0, 20)}`)
    expect(await run(Run.readMetrics(dir))).toEqual([row(1)])
    writeFileSync(file, `${JSON.stringify(row(1))}\n{"epoch": 2, "loss\n${JSON.stringify(row(3))}\n`)
    const e = await failure(Run.readMetrics(dir))
    expect(e).toBeInstanceOf(RunFolderError)
    expect(formatError(e)).toBe(
      `${file}:2: damaged metrics row (not a JSON object with epoch, loss, lr, ...)`
    )
  })

  it("truncating to a checkpoint's epoch drops later and torn rows, keeps one row an epoch", async () => {
    const dir = fresh()
    const file = join(dir, Run.METRICS_FILE)
    // a crash after epoch 3's row, a resume that re-ran epoch 2, then a torn row
    const text = [row(1), row(2), row(3), row(2)].map(Run.encodeMetricsRow).join("")
    writeFileSync(file, `${text}{"epoch": 3, "lo`)
    expect(await run(Run.truncateMetrics(dir, 2))).toEqual([row(1), row(2)])
    expect(readFileSync(file, "utf8")).toBe([row(1), row(2)].map(Run.encodeMetricsRow).join(""))
    const e = await failure(Run.truncateMetrics(dir, 3))
    expect(e.message).toBe(`${file}: has no row for epoch 3, but the checkpoint is after epoch 3`)
  })
})

describe("checkpoints", () => {
  it("the latest is chosen by epoch number, not text order", async () => {
    const dir = fresh()
    mkdirSync(join(dir, Run.CHECKPOINT_DIR))
    for (const e of [0, 2, 9999, 10000])
      writeFileSync(join(dir, Run.CHECKPOINT_DIR, Run.checkpointName(e)), "")
    writeFileSync(join(dir, Run.CHECKPOINT_DIR, "notes.txt"), "")
    const latest = await run(Run.latestCheckpoint(dir))
    expect(latest?.epoch).toBe(10000)
    expect(latest?.path).toBe(join(dir, Run.CHECKPOINT_DIR, "epoch-10000.safetensors"))
  })

  it("--keep-checkpoints N keeps the N latest; later ones can be removed for a resume", async () => {
    const dir = fresh()
    mkdirSync(join(dir, Run.CHECKPOINT_DIR))
    for (const e of [0, 1, 2, 3, 4]) writeFileSync(join(dir, Run.CHECKPOINT_DIR, Run.checkpointName(e)), "")
    await run(Run.pruneCheckpoints(dir, 2))
    expect(readdirSync(join(dir, Run.CHECKPOINT_DIR)).sort()).toEqual([
      "epoch-0003.safetensors",
      "epoch-0004.safetensors"
    ])
    await run(Run.removeCheckpointsAfter(dir, 3))
    expect(readdirSync(join(dir, Run.CHECKPOINT_DIR))).toEqual(["epoch-0003.safetensors"])
  })

  it("temporary files a hard kill left behind are removed", async () => {
    const dir = fresh()
    mkdirSync(join(dir, Run.CHECKPOINT_DIR))
    const stale = join(
      dir,
      Run.CHECKPOINT_DIR,
      "epoch-0001.safetensors.tmp-0b6e8c62-4c1a-4a43-9d5b-2f7f1c1e9a10"
    )
    writeFileSync(stale, "half")
    writeFileSync(join(dir, "config.json.tmp-0b6e8c62-4c1a-4a43-9d5b-2f7f1c1e9a11"), "half")
    writeFileSync(join(dir, Run.CHECKPOINT_DIR, "epoch-0001.safetensors"), "whole")
    await run(Run.removeStaleTemps(dir))
    expect(readdirSync(dir).sort()).toEqual([Run.CHECKPOINT_DIR])
    expect(readdirSync(join(dir, Run.CHECKPOINT_DIR))).toEqual(["epoch-0001.safetensors"])
  })
})

describe("after a crash", () => {
  const setUp = (checkpointEpochs: ReadonlyArray<number>, rowEpochs: ReadonlyArray<number>) => {
    const dir = fresh()
    mkdirSync(join(dir, Run.CHECKPOINT_DIR))
    for (const e of checkpointEpochs) writeFileSync(join(dir, Run.CHECKPOINT_DIR, Run.checkpointName(e)), "")
    writeFileSync(join(dir, Run.METRICS_FILE), rowEpochs.map((e) => Run.encodeMetricsRow(row(e))).join(""))
    return dir
  }

  it("killed after a checkpoint, before its row: resume from the epoch both have", async () => {
    // the issue's case: the old order (checkpoint, then row) lost epoch 2's row for good
    const dir = setUp([0, 1, 2], [1])
    const from = await run(Run.reconcile(dir))
    expect(from.epoch).toBe(1)
    expect(readdirSync(join(dir, Run.CHECKPOINT_DIR)).sort()).toEqual([
      "epoch-0000.safetensors",
      "epoch-0001.safetensors"
    ])
    expect((await run(Run.readMetrics(dir))).map((r) => r.epoch)).toEqual([1])
  })

  it("killed after a row, before its checkpoint: the row is dropped", async () => {
    const dir = setUp([0, 1], [1, 2])
    expect((await run(Run.reconcile(dir))).epoch).toBe(1)
    expect((await run(Run.readMetrics(dir))).map((r) => r.epoch)).toEqual([1])
  })

  it("nothing to resume from is an error naming the folder", async () => {
    const dir = setUp([], [])
    expect((await failure(Run.reconcile(dir))).message).toBe(`${dir}: has no checkpoint to resume from`)
  })
})

describe("captured gradients", () => {
  it("each epoch adds a file; reading concatenates the epochs in order", async () => {
    const dir = fresh()
    const step = (x: number) => Float32Array.from([x, x + 1])
    await run(Run.writeGradients(dir, "conv1", 1, { weight: { shape: [2], steps: [step(0), step(2)] } }))
    const first = readFileSync(join(dir, "gradients-conv1", "epoch-0001.safetensors"))
    await run(Run.writeGradients(dir, "conv1", 2, { weight: { shape: [2], steps: [step(4)] } }))
    expect(readFileSync(join(dir, "gradients-conv1", "epoch-0001.safetensors"))).toEqual(first)
    expect(await run(Run.capturedLayers(dir))).toEqual(["conv1"])
    const all = await run(Run.readGradients(dir, "conv1"))
    expect(all.weight.shape).toEqual([2])
    expect(all.weight.steps.map((s) => [...s])).toEqual([
      [0, 1],
      [2, 3],
      [4, 5]
    ])
    await run(Run.removeGradientsAfter(dir, 1))
    expect((await run(Run.readGradients(dir, "conv1"))).weight.steps).toHaveLength(2)
  })
})

describe("the run folder lock", () => {
  it("a second writer fails at once naming the folder; the lock goes with the first", async () => {
    const dir = join(fresh(), "run")
    const second = await run(
      Effect.gen(function* () {
        yield* Run.lock(dir)
        return yield* Effect.flip(Effect.scoped(Run.lock(dir)))
      })
    )
    expect(second.message).toBe(
      `${dir}: is being written by another stepwise process (pid ${process.pid}); wait for it or choose another --out`
    )
    // released with its scope; the folder it created held nothing else, so it is gone too
    expect(existsSync(dir)).toBe(false)
    await run(Run.lock(dir))
  })

  it("the stale lock of a process that no longer runs is taken over", async () => {
    const dir = fresh()
    const dead = spawnSync(process.execPath, ["-e", ""]).pid
    writeFileSync(join(dir, Run.LOCK_FILE), JSON.stringify({ pid: dead }))
    await run(
      Effect.gen(function* () {
        yield* Run.lock(dir)
        expect(JSON.parse(readFileSync(join(dir, Run.LOCK_FILE), "utf8"))).toEqual({ pid: process.pid })
      })
    )
    expect(existsSync(join(dir, Run.LOCK_FILE))).toBe(false)
  })

  it("default run folders are unique even when started in the same second", async () => {
    const root = fresh()
    const base = join(root, "runs", "2026-11-25T13-40-05")
    const dirs = await run(Effect.all([Run.claimNewDir(base), Run.claimNewDir(base), Run.claimNewDir(base)]))
    expect(dirs).toEqual([base, `${base}-2`, `${base}-3`])
    expect(Run.defaultRunDir(new Date("2026-11-25T13:40:05.123Z"))).toBe("runs/2026-11-25T13-40-05")
  })
})

describe("one-line errors", () => {
  it("name the file, flag or field, without internal tags", () => {
    expect(
      formatError(new ConfigError({ file: "r.yaml", field: "optimizer.lr", reason: "must be >= 0 (got -3)" }))
    ).toBe("r.yaml: optimizer.lr: must be >= 0 (got -3)")
    expect(
      formatError(new ConfigError({ file: "command line", field: "--lr", reason: "must be >= 0" }))
    ).toBe("--lr: must be >= 0")
    expect(formatError(new RunFolderError({ path: "runs/x", reason: "has no checkpoint" }))).toBe(
      "runs/x: has no checkpoint"
    )
    expect(formatError({ _tag: "EmptyDataset", root: "/data" })).toBe("EmptyDataset (root=/data)")
    expect(formatError(new Error("first\n    at stack (x.js:1:1)"))).toBe("first")
  })

  it("a read-only file system is reported as such, not as a missing file", async () => {
    const erofs = Object.assign(new Error("EROFS: read-only file system, open '/ro/x'"), { code: "EROFS" })
    expect(describeIoError({ _tag: "SystemError", reason: "Unknown", cause: erofs })).toBe(
      "read-only file system"
    )
    const dir = fresh()
    const e = await failure(Run.readText(join(dir, "config.json")))
    expect(e.message).toBe(`${join(dir, "config.json")}: no such file or folder`)
    expect(e.cause).toBeDefined()
  })
})
