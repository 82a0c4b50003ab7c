import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import * as Flags from "../src/Flags.js"
import * as Recipe from "../src/Recipe.js"
import * as Resolve from "../src/Resolve.js"

const example = (name: string) => fileURLToPath(new URL(`../../../examples/${name}`, import.meta.url))

const flags = (over: Record<string, unknown> = {}): Resolve.RecipeFlags =>
  ({
    config: Option.none(),
    ...Object.fromEntries(Object.entries(over).map(([k, v]) => [k, Option.some(v)]))
  }) as Resolve.RecipeFlags

const run = { batchesPerEpoch: 158, epochs: 10 }
const resolve = (over: Record<string, unknown>) =>
  Resolve.resolve(flags(over)).pipe(Effect.provide(NodeContext.layer))
const message = <A>(e: Effect.Effect<A, { message: string }>) =>
  Effect.runSync(Effect.either(e)).pipe((x) => (Either.isLeft(x) ? x.left.message : "ok"))

describe("recipes", () => {
  it.effect("the chapter's SGD + CyclicLR recipe decodes into optim's configs, step size one epoch", () =>
    Effect.gen(function* () {
      const { recipe: r, origin } = yield* resolve({ config: example("chapter6-sgd-cyclic.json") })
      expect(r.model).toEqual({ filters: 5, dropout: 0.5 })
      expect([r.epochs, r.batchSize, r.seed, r.backend]).toEqual([10, 16, 13, "wasm"])
      const { config, def } = yield* Recipe.optimizerOf(r.optimizer, origin)
      expect(config).toEqual({
        _tag: "SGD",
        lr: 0.03,
        momentum: 0.9,
        dampening: 0,
        weightDecay: 0,
        nesterov: true,
        maximize: false
      })
      // step_size_up = len(train_loader) = 158 mini-batches of the 2,520 training images
      const s = yield* Recipe.schedulerOf(r.scheduler, origin, run, { lr: 0.03, momentum: 0.9 })
      let st = s!.start({ lr: 0.03, momentum: 0.9 })
      expect(st.hyper.lr).toBeCloseTo(1e-3, 15)
      for (let i = 0; i < 158; i++) st = yield* st.step()
      expect(st.hyper.lr).toBeCloseTo(1e-2, 12) // the top after one epoch
      for (let i = 0; i < 158 * 2; i++) st = yield* st.step()
      expect(st.hyper.lr).toBeCloseTo(1e-3 + (1e-2 - 1e-3) / 2, 12) // triangular2 halves the 2nd cycle
      expect(def).toBeTypeOf("function")
    })
  )

  it("names map to optim's tags by one table: PyTorch's class names in any case", () => {
    expect(Recipe.optimizerTags).toEqual(["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
    for (const [name, tag] of [
      ["sgd", "SGD"],
      ["SGD", "SGD"],
      ["adamw", "AdamW"],
      ["rmsprop", "RMSprop"]
    ])
      expect(Recipe.tagOf(Recipe.optimizerTags, name)).toBe(tag)
    for (const [name, tag] of [
      ["cyclic", "CyclicLR"],
      ["CyclicLR", "CyclicLR"],
      ["one-cycle", "OneCycleLR"],
      ["step", "StepLR"],
      ["ReduceLROnPlateau", "ReduceLROnPlateau"]
    ])
      expect(Recipe.tagOf(Recipe.schedulerTags, name)).toBe(tag)
    expect(Recipe.tagOf(Recipe.optimizerTags, "lbfgs")).toBeUndefined()
  })

  it("the flag table is derived from optim's schemas: one flag a field, PyTorch's defaults", () => {
    const byFlag = new Map(Flags.hyperparameterFlags.map((f) => [f.flag, f]))
    expect(byFlag.get("betas")?.field.kind).toBe("numbers")
    expect(byFlag.get("betas")?.field.tags).toEqual(["Adam", "AdamW"])
    expect(Flags.defaultsText(byFlag.get("weight-decay")!.field)).toBe("[0; AdamW 0.01]")
    expect(Flags.defaultsText(byFlag.get("eps")!.field)).toBe("[1e-8; Adagrad 1e-10]")
    expect(Flags.defaultsText(byFlag.get("lr")!.field)).toBe(`[${Recipe.DEFAULT_LR}]`)
    expect(byFlag.get("nesterov")?.field.kind).toBe("boolean")
    expect(byFlag.get("mode")?.field.choices).toEqual([
      "min",
      "max",
      "triangular",
      "triangular2",
      "exp_range"
    ])
    // a scheduler field named like an optimizer field or a run flag gets a prefix
    expect(byFlag.get("scheduler-eps")?.field.tags).toEqual(["ReduceLROnPlateau"])
    expect(byFlag.get("scheduler-epochs")?.field.tags).toEqual(["OneCycleLR"])
    expect(byFlag.get("step-size-up")?.section).toBe("scheduler")
    // no hand-written copy: every field of every optim config has its flag
    expect(new Set(Flags.hyperparameterFlags.map((f) => f.field.key))).toEqual(
      new Set([...Recipe.optimizerFields, ...Recipe.schedulerFields].map((f) => f.key))
    )
  })

  it.effect("the Adam recipe, and flags override the file field by field", () =>
    Effect.gen(function* () {
      const { recipe: r } = yield* resolve({ config: example("chapter6-adam.json"), epochs: 1, dropout: 0 })
      expect(r.optimizer).toEqual({ name: "Adam", lr: 3e-4 })
      expect(r.model).toEqual({ filters: 5, dropout: 0 })
      expect(r.epochs).toBe(1)
    })
  )

  it("choosing another optimizer by flag starts that section afresh, keeping the lr", () => {
    const base = { optimizer: { name: "adam", lr: 0.01, betas: [0.8, 0.9] } }
    expect(Resolve.mergeRaw(base, { optimizer: { name: "SGD", momentum: 0.9 } }).optimizer).toEqual({
      name: "SGD",
      lr: 0.01,
      momentum: 0.9
    })
    // the same optimizer in another spelling is not another optimizer
    expect(Resolve.mergeRaw(base, { optimizer: { name: "Adam", lr: 0.1 } }).optimizer).toEqual({
      name: "Adam",
      lr: 0.1,
      betas: [0.8, 0.9]
    })
  })

  it.effect("one lr, decoded once, defaulting in one place", () =>
    Effect.gen(function* () {
      const sgd = yield* Recipe.optimizerOf({ name: "sgd" }, Recipe.fromFile("f.json"))
      expect(sgd.config.lr).toBe(Recipe.DEFAULT_LR)
      const { recipe } = yield* resolve({})
      expect(recipe.optimizer).toEqual({ name: "Adam", lr: Recipe.DEFAULT_LR })
    })
  )

  it.effect("YAML recipes decode like JSON ones; aliases are refused with a clear message", () =>
    Effect.gen(function* () {
      const raw = yield* Recipe.parseText(
        "model:\n  dropout: 0.5\noptimizer:\n  name: sgd\n  lr: 0.03\n  nesterov: true\n  momentum: 0.9\nscheduler: { name: step, stepSize: 4, gamma: 0.5 }\n",
        "r.yaml"
      )
      const r = yield* Recipe.decode(raw, "r.yaml")
      expect(r.scheduler).toEqual({ name: "step", stepSize: 4, gamma: 0.5 })
      expect(r.model.filters).toBe(5)
      const e = yield* Effect.flip(Recipe.parseText("a: &x [1]\nb: *x\n", "r.yaml"))
      expect(e.message).toBe("r.yaml: cannot parse: uses the YAML alias *x; write the values out instead")
    })
  )

  const recipeFailure = (input: unknown) => message(Recipe.decode(input, "bad.json"))
  const optimizerFailure = (input: Recipe.Section) =>
    message(Recipe.optimizerOf(input, Recipe.fromFile("bad.json")))
  const schedulerFailure = (input: Recipe.Section) =>
    message(Recipe.schedulerOf(input, Recipe.fromFile("bad.json"), run, { lr: 0.1 }))

  it("bad recipes fail naming the file, the field and the value, by optim's rules", () => {
    expect(optimizerFailure({ name: "adam", lr: -1 })).toBe("bad.json: optimizer.lr: must be >= 0 (got -1)")
    // lr 0 is valid, as in torch.optim and @stepwise/optim
    expect(optimizerFailure({ name: "adam", lr: 0 })).toBe("ok")
    expect(optimizerFailure({ name: "sgd", lr: 0.1, betas: [0.9, 0.99] })).toBe(
      "bad.json: optimizer.betas: does not apply to SGD"
    )
    expect(optimizerFailure({ name: "lbfgs" })).toMatch(
      /^bad\.json: optimizer\.name: expected one of SGD, Adam/
    )
    expect(schedulerFailure({ name: "step", stepSize: 2, maxLr: 1 })).toBe(
      "bad.json: scheduler.maxLr: does not apply to StepLR"
    )
    expect(schedulerFailure({ name: "none", gamma: 0.5 })).toBe(
      "bad.json: scheduler.gamma: given, but no scheduler is chosen"
    )
    expect(schedulerFailure({ name: "bogus" })).toMatch(/^bad\.json: scheduler\.name: expected one of StepLR/)
    expect(recipeFailure({ model: { dropout: 1 } })).toBe(
      "bad.json: model.dropout: must be in [0, 1) (got 1)"
    )
    expect(recipeFailure({ epochz: 3 })).toBe("bad.json: epochz: unknown field (got 3)")
    expect(recipeFailure({ batchSize: 2.5 })).toMatch(/^bad\.json: batchSize: .*2\.5/)
    expect(recipeFailure({ data: { resize: "28y" } })).toMatch(/^bad\.json: data\.resize/)
  })

  it.effect("a value set by a flag is reported by its flag", () =>
    Effect.gen(function* () {
      const { recipe, origin } = yield* resolve({ optimizer: "SGD", lr: -1 })
      const e = yield* Effect.flip(Recipe.optimizerOf(recipe.optimizer, origin))
      expect(e.message).toBe("--lr -1: must be >= 0")
      const both = yield* Effect.flip(resolve({ val: "v", valSplit: 0.2 }))
      expect(both.message).toBe(
        "--val-split 0.2: holds out validation data, but validation data is given (--val): choose one"
      )
    })
  )

  it("the shipped example recipes are valid JSON recipes", () => {
    for (const f of ["chapter6-adam.json", "chapter6-sgd-cyclic.json"]) {
      const raw = JSON.parse(readFileSync(example(f), "utf8"))
      expect(Effect.runSync(Effect.either(Recipe.decode(raw, f)))._tag).toBe("Right")
    }
  })
})

describe("flag values", () => {
  it("numbers are parsed and range-checked with a reason", () => {
    expect(Flags.checkNumber("3e-4", { min: 0, minExclusive: true })).toBe(3e-4)
    expect(Flags.checkNumber("-1", { min: 0, minExclusive: true })).toBe("must be > 0")
    expect(Flags.checkNumber("abc", {})).toBe("not a number")
    expect(Flags.checkNumber("", {})).toBe("not a number")
    expect(Flags.checkNumber("1.5", { integer: true })).toBe("not an integer")
    expect(Flags.checkNumber("1", { min: 0, max: 1, maxExclusive: true })).toBe("must be in [0, 1)")
    expect(Flags.checkNumber("0.999", { min: 0, max: 1, maxExclusive: true })).toBe(0.999)
    expect(Flags.checkNumber("NaN", {})).toBe("must be a finite number")
    expect(Flags.checkNumber("Infinity", {})).toBe("must be a finite number")
    expect(Flags.checkNumber("-inf", {})).toBe("must be a finite number")
  })
})
