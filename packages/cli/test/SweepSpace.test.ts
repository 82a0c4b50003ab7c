/**
 * Sweep files -> trials: the grid's product (recipes as one more axis), seeded random draws, and
 * one-line errors naming the sweep file's field.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { NodeContext } from "@effect/platform-node"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"
import { formatError } from "../src/Errors.js"
import * as Sweep from "../src/Sweep.js"
import * as SweepSpace from "../src/SweepSpace.js"

const dir = mkdtempSync(join(tmpdir(), "stepwise-sweepspace-"))
writeFileSync(join(dir, "adam.json"), JSON.stringify({ optimizer: { name: "Adam", lr: 3e-4 }, epochs: 10 }))
writeFileSync(join(dir, "sgd.json"), JSON.stringify({ optimizer: { name: "SGD", lr: 0.03, momentum: 0.9 } }))

const load = (name: string, text: string) => {
  const file = join(dir, name)
  writeFileSync(file, text)
  return Effect.runPromise(Effect.either(SweepSpace.load(file)).pipe(Effect.provide(NodeContext.layer)))
}
const ok = async (name: string, text: string) => {
  const r = await load(name, text)
  if (Either.isLeft(r)) throw new Error(formatError(r.left))
  return r.right.trials
}
const err = async (name: string, text: string) => {
  const r = await load(name, text)
  if (Either.isRight(r)) throw new Error("expected an error")
  return formatError(r.left)
}

describe("SweepSpace.load", () => {
  it("expands recipes x grid into full recipes, epochs overridden", async () => {
    const trials = await ok(
      "grid.yaml",
      "recipes: [adam.json, sgd.json]\nepochs: 3\ngrid:\n  optimizer.lr: [0.001, 0.01]\n  model.dropout: [0, 0.5]\n"
    )
    expect(trials.map((t) => t.id)).toEqual(["t01", "t02", "t03", "t04", "t05", "t06", "t07", "t08"])
    expect(trials[0].params).toEqual({ recipe: "adam", "optimizer.lr": 0.001, "model.dropout": 0 })
    expect(trials[7].params).toEqual({ recipe: "sgd", "optimizer.lr": 0.01, "model.dropout": 0.5 })
    expect(trials[7].recipe.optimizer).toMatchObject({ name: "SGD", lr: 0.01, momentum: 0.9 })
    expect(trials.every((t) => t.recipe.epochs === 3)).toBe(true)
  })

  it("draws log-uniform and choices from the seed, the same every time", async () => {
    const text =
      "recipe: { epochs: 2 }\nseed: 7\nrandom:\n  trials: 5\n  space:\n    optimizer.lr: { logUniform: [0.0001, 0.1] }\n" +
      "    optimizer: { choice: [{ name: Adam }, { name: SGD, momentum: 0.9 }] }\n    batchSize: { choice: [16, 32] }\n"
    const a = await ok("random.yaml", text)
    const b = await ok("random2.yaml", text)
    expect(a).toEqual(b)
    expect(a).toHaveLength(5)
    for (const t of a) {
      const lr = t.params["optimizer.lr"] as number
      expect(lr).toBeGreaterThanOrEqual(1e-4)
      expect(lr).toBeLessThanOrEqual(0.1)
      // the whole section is applied first, the lr inside it after
      expect(t.recipe.optimizer?.lr).toBe(lr)
    }
    expect(new Set(a.map((t) => t.params["optimizer.lr"])).size).toBe(5)
  })

  it("pins OneCycleLR's span to the trial's epochs (a trial trains one epoch at a time)", async () => {
    const trials = await ok(
      "onecycle.yaml",
      "recipe: { epochs: 4, optimizer: { name: SGD, lr: 0.01 }, scheduler: { name: OneCycleLR, maxLr: 0.1 } }\ngrid: { seed: [1, 2] }\n"
    )
    expect(trials[0].recipe.scheduler).toMatchObject({ name: "OneCycleLR", epochs: 4 })
  })

  it("examples/sweep-chapter6.yaml: the chapter's two recipes over their own learning rates, 3 epochs", async () => {
    const file = fileURLToPath(new URL("../../../examples/sweep-chapter6.yaml", import.meta.url))
    const r = await Effect.runPromise(SweepSpace.load(file).pipe(Effect.provide(NodeContext.layer)))
    expect(r.spec.stopping).toEqual({ rule: "median", minEpochs: 1, minTrials: 3 })
    expect(r.trials.map((t) => SweepSpace.label(t.params))).toEqual([
      "recipe=chapter6-adam optimizer.lr=0.0001",
      "recipe=chapter6-adam optimizer.lr=0.0003",
      "recipe=chapter6-adam optimizer.lr=0.001",
      "recipe=chapter6-sgd-cyclic scheduler.maxLr=0.005",
      "recipe=chapter6-sgd-cyclic scheduler.maxLr=0.01",
      "recipe=chapter6-sgd-cyclic scheduler.maxLr=0.02"
    ])
    expect(r.trials.every((t) => t.recipe.epochs === 3 && t.recipe.seed === 13)).toBe(true)
    expect(r.trials[5].recipe.scheduler).toMatchObject({ name: "CyclicLR", baseLr: 0.001, maxLr: 0.02 })
  })

  it("names what is wrong, in one line", async () => {
    expect(await err("ownempty.yaml", "recipes: [{ file: adam.json, grid: { seed: [] } }]\n")).toBe(
      `${join(dir, "ownempty.yaml")}: recipes.0.grid.seed: is empty: give at least one value`
    )
    expect(
      await err(
        "ownbad.yaml",
        "recipes: [adam.json, { file: sgd.json, grid: { optimizer.momentum: [-1] } }]\n"
      )
    ).toMatch(/ownbad\.yaml: recipes\.1\.grid\.optimizer\.momentum: .* with -1$/)
    expect(await err("empty.yaml", "recipes: [adam.json]\ngrid: { optimizer.lr: [] }\n")).toBe(
      `${join(dir, "empty.yaml")}: grid.optimizer.lr: is empty: give at least one value`
    )
    expect(await err("nothing.yaml", "recipes: [adam.json]\n")).toContain("the search space is empty")
    expect(await err("unknown.yaml", "recipes: [adam.json]\ngird: { seed: [1] }\n")).toBe(
      `${join(dir, "unknown.yaml")}: gird: unknown field`
    )
    expect(await err("badpath.yaml", "recipes: [adam.json]\ngrid: { model.dropuot: [0.1] }\n")).toMatch(
      /badpath\.yaml: grid\.model\.dropuot: unknown field/
    )
    expect(await err("badlr.yaml", "recipes: [adam.json]\ngrid: { optimizer.lr: [-1] }\n")).toMatch(
      /badlr\.yaml: grid\.optimizer\.lr: .* with -1$/
    )
    expect(await err("nofile.yaml", "recipes: [missing.json]\ngrid: { seed: [1] }\n")).toBe(
      `${join(dir, "missing.json")}: no such file`
    )
  })
})

describe("Sweep results", () => {
  const report = (id: string, metric: number | null, lr: number): Sweep.TrialReport => ({
    id,
    params: { "optimizer.lr": lr },
    state: metric === null ? "failed" : "done",
    epoch: 1,
    epochs: 1,
    metric,
    losses: [],
    valLosses: [],
    valAccuracy: [],
    runDir: id
  })

  it("ranks by the metric's direction and leaves failed trials out", () => {
    const trials = [report("t01", 0.5, 1e-3), report("t02", 0.7, 1e-2), report("t03", null, 1e-1)]
    expect(Sweep.rank("valAccuracy", trials).map((t) => t.id)).toEqual(["t02", "t01"])
    expect(Sweep.rank("valLoss", trials).map((t) => t.id)).toEqual(["t01", "t02"])
  })

  it("draws the metric against the swept lr on a log axis, and a table with every trial", () => {
    const trials = [report("t01", 0.5, 1e-3), report("t02", 0.7, 1e-2)]
    const spec: any = Sweep.metricChart("valAccuracy", trials)
    expect(spec.data.values.map((v: any) => v.x)).toEqual([1e-3, 1e-2])
    expect(spec.layer[0].encoding.x.scale.type).toBe("log")
    const text = Sweep.table("valAccuracy", trials)
    expect(text).toContain("t02    done   1/1    70.0%        optimizer.lr=0.01")
  })

  it("shows a running trial's folder progress, but never over a result that came in meanwhile", () => {
    const pending: Sweep.TrialReport = { ...report("t01", null, 1e-3), state: "pending", epoch: 0, epochs: 3 }
    const running = Sweep.withProgress(pending, { epoch: 2, metric: 0.6 })
    expect([running.state, running.epoch, running.metric]).toEqual(["running", 2, 0.6])
    expect(Sweep.withProgress(pending, { epoch: 0, metric: null })).toBe(pending)
    // (the table's refresh read the folder at epoch 2; the trial's result, epoch 3, came first)
    const done: Sweep.TrialReport = { ...running, state: "done", epoch: 3, metric: 0.8 }
    expect(Sweep.withProgress(done, { epoch: 2, metric: 0.6 })).toBe(done)
    const failed: Sweep.TrialReport = { ...running, state: "failed" }
    expect(Sweep.withProgress(failed, { epoch: 3, metric: 0.8 })).toBe(failed)
  })
})
