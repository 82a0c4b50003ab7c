/**
 * End-to-end: `stepwise export --format torch` and `stepwise train --init-from`, the built CLI
 * spawned as a user would run it, against the PyTorch 1.13 fixtures of core
 * (packages/core/scripts/torch_weights_fixture.py) and a small subset of the bundled data.
 */
import { spawnSync } from "node:child_process"
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Checkpoint, ModelSpec, Safetensors } from "@stepwise/core"
import { Rps } from "@stepwise/data"
import { Either } from "effect"
import { beforeAll, describe, expect, it, vi } from "vitest"
import * as Process from "./Process.js"
import { lastJson, root } from "./Process.js"
import { fixture, fixtures, hostWeights, readFile, snapshotOf } from "./torchFixtures.js"

vi.setConfig({ testTimeout: 300_000 })

const tmp = mkdtempSync(join(tmpdir(), "stepwise-export-"))

const cli = (args: ReadonlyArray<string>) => Process.cli(args, { timeout: 300_000 })
const same = (a: Safetensors.HostTensor, b: Safetensors.HostTensor) =>
  a.dtype === b.dtype &&
  a.shape.join() === b.shape.join() &&
  Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(
    Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength)
  )

/** The first `n` images of each class of the bundled training set: a one-epoch run in seconds. */
const subset = join(tmp, "rps-small")
const makeSubset = (n: number) => {
  for (const c of Rps.CLASSES) {
    mkdirSync(join(subset, c), { recursive: true })
    const files = readdirSync(join(Rps.bundled().train, c)).sort().slice(0, n)
    for (const f of files) copyFileSync(join(Rps.bundled().train, c, f), join(subset, c, f))
  }
}
const smallRun = ["--data", subset, "--val-split", "0.25", "--epochs", "1", "--no-plots", "--no-tensorboard"]

/** A self-describing checkpoint file (`meta.run`) of a fixture's weights. */
const checkpointOf = (name: "cnn2" | "bn", run: boolean) => {
  const path = join(tmp, `${name}${run ? "" : "-norun"}.safetensors`)
  writeFileSync(
    path,
    Either.getOrThrow(
      Safetensors.encode(Either.getOrThrow(Checkpoint.toFile(snapshotOf(name, run), path)), path)
    )
  )
  return path
}

beforeAll(() => {
  const build = spawnSync("npx", ["tsc", "-b", "packages/cli"], { cwd: root, encoding: "utf8" })
  if (build.status !== 0) throw new Error(`tsc -b packages/cli failed:\n${build.stdout}${build.stderr}`)
  makeSubset(24)
}, 300_000)

describe("stepwise export --format torch", () => {
  it.each(["cnn2", "bn"] as const)(
    "writes exactly PyTorch's state_dict of the %s fixture, with classes, mean, std and the model",
    async (name) => {
      const ckpt = checkpointOf(name, true)
      const out = join(tmp, `${name}-export.safetensors`)
      const r = await cli(["export", "--checkpoint", ckpt, "--format", "torch", "--out", out, "--json"])
      expect(r.stderr).not.toMatch(/stepwise: .*(error|Error)/)
      expect(r.code, r.stderr).toBe(0)
      const written = readFile(out)
      const expected = fixture(`torch-${name}`).tensors
      expect(Object.keys(written.tensors).sort()).toEqual(Object.keys(expected).sort())
      for (const [k, t] of Object.entries(expected)) expect(same(written.tensors[k], t), k).toBe(true)
      expect(written.metadata).toMatchObject({
        format: "pt",
        classes: '["paper","rock","scissors"]',
        mean: "[0.85,0.82,0.81]",
        std: "[0.21,0.25,0.27]",
        "stepwise.inputShape": "[3,28,28]"
      })
      expect(JSON.parse(written.metadata["stepwise.model"])).toEqual(
        JSON.parse(fixture(`torch-${name}-io`).metadata["stepwise.model"])
      )
      const json = lastJson(r)
      expect(json).toMatchObject({
        command: "export",
        format: "torch",
        out,
        classes: ["paper", "rock", "scissors"]
      })
      expect(Object.keys(json.tensors).sort()).toEqual(Object.keys(expected).sort())
    }
  )

  it("a checkpoint that does not describe its run fails naming the file", async () => {
    const ckpt = checkpointOf("bn", false)
    const out = join(tmp, "never.safetensors")
    const r = await cli(["export", "--checkpoint", ckpt, "--out", out])
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toMatch(
      new RegExp(`^stepwise: ${ckpt}: no run info \\(model, classes, normalizer\\)`)
    )
  })

  // Also needs `stepwise train` to write `meta.run` (issue 13, item 4).
  it("exports a checkpoint made by stepwise train: the chapter's CNN2 names and shapes", async () => {
    const runDir = join(tmp, "trained")
    const t = await cli(["train", ...smallRun, "--out", runDir])
    expect(t.code, t.stderr).toBe(0)
    const out = join(tmp, "trained.safetensors")
    const r = await cli(["export", "--checkpoint", runDir, "--format", "torch", "--out", out])
    expect(r.code, r.stderr).toBe(0)
    const written = readFile(out)
    const expected = fixture("torch-cnn2").tensors
    expect(Object.keys(written.tensors).sort()).toEqual(Object.keys(expected).sort())
    for (const [k, t] of Object.entries(expected)) {
      expect(written.tensors[k].shape, k).toEqual(t.shape)
      expect(written.tensors[k].dtype, k).toBe("F32")
    }
    expect(JSON.parse(written.metadata.classes)).toEqual(["paper", "rock", "scissors"])
    expect(JSON.parse(written.metadata.mean)).toHaveLength(3)
    expect(JSON.parse(written.metadata.std)).toHaveLength(3)
  })
})

describe("stepwise train --init-from", () => {
  it("starts from PyTorch's weights: the epoch-0 checkpoint holds the CNN2 fixture, in our layout", async () => {
    const runDir = join(tmp, "from-torch")
    // A copy, removed before resuming: a resumed run restores its checkpoint, not the file.
    const weights = join(tmp, "cnn2-weights.safetensors")
    copyFileSync(join(fixtures, "torch-cnn2.safetensors"), weights)
    const r = await cli(["train", ...smallRun, "--init-from", weights, "--out", runDir, "--json"])
    expect(r.code, r.stderr).toBe(0)
    const epoch0 = readFile(join(runDir, "checkpoints", "epoch-0000.safetensors"))
    const model = Either.getOrThrow(
      ModelSpec.make({ preset: "CNN2", nFilters: 5, p: 0.3 }, [3, 28, 28])
    ).module
    const ours = Either.getOrThrow(hostWeights(model, fixture("torch-cnn2").tensors))
    const params = Object.keys(epoch0.tensors).filter((k) => k.startsWith("params/"))
    expect(params.sort()).toEqual(
      Object.keys(ours.params)
        .map((k) => `params/${k}`)
        .sort()
    )
    for (const [k, t] of Object.entries(ours.params))
      expect(same(epoch0.tensors[`params/${k}`], t), k).toBe(true)
    // ... and the run's recipe records where they came from.
    const config = JSON.parse(readFileSync(join(runDir, "config.json"), "utf8"))
    expect(config.recipe.initFrom).toBe(weights)
    rmSync(weights)
    const resumed = await cli(["train", "--resume", runDir, "--epochs", "2"])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(existsSync(join(runDir, "checkpoints", "epoch-0002.safetensors"))).toBe(true)
  })

  it("weights that do not fit the model fail before training, naming the tensors and the file", async () => {
    const weights = join(fixtures, "torch-bn.safetensors")
    const r = await cli(["train", ...smallRun, "--init-from", weights, "--out", join(tmp, "never")])
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toMatch(
      new RegExp(
        `^stepwise: ${weights}: weights do not match the model: missing conv1\\.weight, .*; unexpected 0\\.bias, 0\\.weight`
      )
    )
  })

  it("a file that is not there names the flag", async () => {
    const r = await cli([
      "train",
      ...smallRun,
      "--init-from",
      join(tmp, "nope.safetensors"),
      "--out",
      join(tmp, "never2")
    ])
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toMatch(/^stepwise: --init-from .*nope\.safetensors: no such file or folder$/)
  })
})
