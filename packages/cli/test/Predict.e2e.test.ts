/**
 * Checkpoints alone: a checkpoint saved from library code outside any run folder is evaluated and
 * predicted with (library and CLI); a CLI checkpoint resumes training from the file alone.
 */
import { spawnSync } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeContext } from "@effect/platform-node"
import { Checkpoint, Engine, Loss, ModelSpec, Predict, Trainer } from "@stepwise/core"
import { Image, Random, Rps, Transforms } from "@stepwise/data"
import { Adam, TfNumeric } from "@stepwise/optim"
import { Effect, Either, Layer } from "effect"
import { beforeAll, describe, expect, it, vi } from "vitest"
import * as Process from "./Process.js"
import { lastJson, type Result, root } from "./Process.js"

vi.setConfig({ testTimeout: 300_000 })

const tmp = mkdtempSync(join(tmpdir(), "stepwise-predict-"))

const cli = (args: ReadonlyArray<string>) => Process.cli(args, { cwd: tmp })
const oneLineError = (r: Result, message: RegExp) => {
  expect(r.code).toBe(1)
  expect(r.stderr.trim().split("\n")).toEqual([expect.stringMatching(message)])
  expect(r.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m)
}

const classes = ["paper", "rock", "scissors"]
const normalizer = { mean: [0.75, 0.72, 0.71], std: [0.3, 0.31, 0.32] }
const spec = ModelSpec.cnn2({ nFilters: 3, p: 0.3 })
const run: Checkpoint.Run = { model: spec, inputShape: [3, 28, 28], classes, normalizer, recipe: null }

/** Two bundled test images of each class, in class folders (eval) and flat (predict). */
const folders = () => {
  const evalDir = join(tmp, "eval")
  const flat = join(tmp, "flat")
  mkdirSync(flat, { recursive: true })
  for (const c of classes) {
    const from = join(Rps.bundled().test, c)
    mkdirSync(join(evalDir, c), { recursive: true })
    for (const name of readdirSync(from).sort().slice(0, 2)) {
      copyFileSync(join(from, name), join(evalDir, c, name))
      copyFileSync(join(from, name), join(flat, name))
    }
  }
  return { evalDir, flat }
}

const layer = Layer.mergeAll(NodeContext.layer, Layer.scoped(Engine.Engine, Engine.make("wasm")))
const runEffect = <A, E>(e: Effect.Effect<A, E, Engine.Engine | NodeContext.NodeContext>) =>
  Effect.runPromise(Effect.provide(e, layer))

/** A trainer of the spec: a few SGD-free steps are not needed; any weights tell whether predict matches. */
const makeTrainer = Effect.gen(function* () {
  const built = Either.getOrThrow(ModelSpec.build(spec, [3, 28, 28]))
  const optimizer = (yield* Adam.make({ lr: 3e-3 }))(TfNumeric.TfNumeric)
  return Trainer.unsafeMake(
    { model: built.module, loss: Loss.crossEntropy, optimizer },
    Random.unsafeMake(13)
  )
})

let dirs: { readonly evalDir: string; readonly flat: string }
const standalone = join(tmp, "alone.safetensors")
const noRun = join(tmp, "norun.safetensors")

beforeAll(async () => {
  const build = spawnSync("npx", ["tsc", "-b", "packages/cli"], { cwd: root, encoding: "utf8" })
  if (build.status !== 0) throw new Error(`tsc -b packages/cli failed:\n${build.stdout}${build.stderr}`)
  dirs = folders()
  await runEffect(
    Effect.gen(function* () {
      const t = yield* makeTrainer
      yield* Checkpoint.save(standalone, t, run)
      yield* Checkpoint.save(noRun, t)
      Trainer.dispose(t)
    })
  )
}, 300_000)

/** What the checkpoint's preprocessing means, written out with data's transforms. */
const preprocessed = (file: string) =>
  Effect.map(Image.load(file), (img) =>
    Either.getOrThrow(Transforms.Normalize(normalizer))(
      Transforms.ToTensor()(
        Either.getOrThrow(Transforms.Resize([28, 28]))(img, Transforms.noContext),
        Transforms.noContext
      ),
      Transforms.noContext
    )
  )

describe("predict from a checkpoint saved by library code (outside any run folder)", () => {
  it("Predict.files: each image's class and logits equal Trainer.predict on the same preprocessed tensor", () =>
    runEffect(
      Effect.gen(function* () {
        const predictions = yield* Predict.files(standalone, [dirs.flat], { top: 2 })
        const files = readdirSync(dirs.flat).sort()
        expect(predictions.map((p) => p.file)).toEqual(files.map((f) => join(dirs.flat, f)))
        const t = yield* makeTrainer // the same seed: the same weights as the saved trainer
        for (const p of predictions) {
          const x = yield* preprocessed(p.file)
          const logits = Array.from(Trainer.predict(t, { x: x.data, shape: [1, 3, 28, 28] }))
          const best = logits.indexOf(Math.max(...logits))
          expect(p.class).toBe(classes[best])
          p.logits.forEach((z, i) => {
            expect(z).toBeCloseTo(logits[i], 5)
          })
          const sum = Object.values(p.probabilities).reduce((a, b) => a + b, 0)
          expect(sum).toBeCloseTo(1, 12)
          expect(Object.keys(p.probabilities)).toEqual(classes)
          expect(p.top).toHaveLength(2)
          expect(p.top[0]).toEqual({ class: p.class, probability: p.probabilities[p.class] })
          expect(p.top[0].probability).toBeGreaterThanOrEqual(p.top[1].probability)
        }
        Trainer.dispose(t)
      })
    ))

  it("softmax and fromLogits: known values", () => {
    const p = Predict.fromLogits("f.png", ["a", "b", "c"], [0, Math.log(2), Math.log(3)], 2)
    expect(p.class).toBe("c")
    expect(p.probabilities.a).toBeCloseTo(1 / 6, 15)
    expect(p.probabilities.b).toBeCloseTo(2 / 6, 15)
    expect(p.probabilities.c).toBeCloseTo(3 / 6, 15)
    expect(p.top.map((t) => t.class)).toEqual(["c", "b"])
    expect(Predict.softmax([1000, 1000])).toEqual([0.5, 0.5])
  })

  it("the CLI's --json line: file, class, probabilities by class name, logits; the same as the library", async () => {
    const r = await cli(["predict", "--checkpoint", standalone, dirs.flat, "--top", "3", "--json"])
    expect(r.code).toBe(0)
    const out = lastJson(r)
    expect(Object.keys(out)).toEqual(["command", "predictions"])
    expect(out.command).toBe("predict")
    expect(out.predictions).toHaveLength(6)
    const lib = await runEffect(Predict.files(standalone, [dirs.flat]))
    out.predictions.forEach((p: any, i: number) => {
      expect(Object.keys(p)).toEqual(["file", "class", "probabilities", "logits"])
      expect(Object.keys(p.probabilities)).toEqual(["paper", "rock", "scissors"])
      expect(p.logits).toHaveLength(3)
      expect(p.file).toBe(lib[i].file)
      expect(p.class).toBe(lib[i].class)
      expect(p.logits).toEqual(lib[i].logits)
    })
    // human output (stderr under --json): a table, top 3 rows per file
    expect(r.stderr).toMatch(/file\s+class\s+probability/)
  })

  it("the human table lists the top K classes of each file", async () => {
    const file = join(dirs.flat, readdirSync(dirs.flat).sort()[0])
    const r = await cli(["predict", "--checkpoint", standalone, file, "--top", "2"])
    expect(r.code).toBe(0)
    const lines = r.stdout.trim().split("\n")
    expect(lines[0]).toMatch(/^file\s+class\s+probability$/)
    expect(lines).toHaveLength(3)
    expect(lines[1].startsWith(file)).toBe(true)
    expect(lines[1]).toMatch(/(paper|rock|scissors)\s+\d+\.\d\d%$/)
  })

  it("bad input fails with one line naming the file", async () => {
    const missing = join(tmp, "nope.png")
    oneLineError(await cli(["predict", "--checkpoint", standalone, missing]), /nope\.png/)
    const notImage = join(tmp, "notes.png")
    writeFileSync(notImage, "not an image")
    oneLineError(
      await cli(["predict", "--checkpoint", standalone, notImage]),
      /cannot decode image .*notes\.png/
    )
    oneLineError(
      await cli(["predict", "--checkpoint", noRun, dirs.flat]),
      /norun\.safetensors: no run info \(model, classes, normalizer\)/
    )
    oneLineError(
      await cli(["predict", "--checkpoint", join(tmp, "absent.safetensors"), dirs.flat]),
      /absent\.safetensors: no such file/
    )
    const empty = join(tmp, "empty")
    mkdirSync(empty, { recursive: true })
    oneLineError(
      await cli(["predict", "--checkpoint", standalone, empty]),
      /empty: the folder holds no image files/
    )
  })
})

describe("eval of a checkpoint saved by library code", () => {
  it("rebuilds model, classes and normalizer from the file: the counts match the library's predictions", async () => {
    const r = await cli(["eval", "--checkpoint", standalone, "--data", dirs.evalDir, "--json"])
    expect(r.stderr).not.toMatch(/not a run folder/)
    expect(r.code).toBe(0)
    const e = lastJson(r)
    expect(e.classes).toEqual(classes)
    expect(e.total.total).toBe(6)
    const lib = await runEffect(
      Predict.files(
        standalone,
        classes.map((c) => join(dirs.evalDir, c))
      )
    )
    const correct = classes.map(
      (c, k) => lib.filter((p, i) => Math.floor(i / 2) === k && p.class === c).length
    )
    expect(e.correct.map((row: [number, number]) => row[0])).toEqual(correct)
  })

  it("without --data and without a recipe it says to pass --data; without run info it names the file", async () => {
    oneLineError(
      await cli(["eval", "--checkpoint", standalone]),
      /alone\.safetensors: the run has no validation set; pass --data DIR/
    )
    oneLineError(
      await cli(["eval", "--checkpoint", noRun, "--data", dirs.evalDir]),
      /norun\.safetensors: has no run info/
    )
  })
})

describe("train --resume from a checkpoint alone", () => {
  it("a CLI checkpoint copied anywhere evaluates and resumes exactly (epoch 2 equals the straight run's)", async () => {
    const data = join(tmp, "small")
    for (const c of classes) {
      const from = join(Rps.bundled().train, c)
      mkdirSync(join(data, c), { recursive: true })
      for (const name of readdirSync(from).sort().slice(0, 12))
        copyFileSync(join(from, name), join(data, c, name))
    }
    const args = ["train", "--data", data, "--val-split", "0.25", "--batch-size", "8", "--filters", "2"]
    const straight = await cli([...args, "--epochs", "2", "--json", "--out", join(tmp, "straight")])
    expect(straight.code).toBe(0)
    const full = lastJson(straight)
    const first = await cli([...args, "--epochs", "1", "--out", join(tmp, "first")])
    expect(first.code).toBe(0)
    const alone = join(tmp, "epoch1.safetensors")
    copyFileSync(join(tmp, "first", "checkpoints", "epoch-0001.safetensors"), alone)
    const ev = await cli(["eval", "--checkpoint", alone, "--json"])
    expect(ev.code).toBe(0)
    expect(lastJson(ev).correct).toEqual(
      lastJson(await cli(["eval", "--checkpoint", join(tmp, "first"), "--json"])).correct
    )
    const resumed = await cli([
      "train",
      "--resume",
      alone,
      "--epochs",
      "2",
      "--json",
      "--out",
      join(tmp, "second")
    ])
    expect(resumed.code).toBe(0)
    const rest = lastJson(resumed)
    expect(rest.losses).toEqual([full.losses[1]])
    expect(rest.valLosses).toEqual([full.valLosses[1]])
  })
})
