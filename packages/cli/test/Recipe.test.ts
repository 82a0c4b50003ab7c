import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Module } from "@stepwise/core"
import { Float64 } from "@stepwise/optim"
import { Effect, Either, Option } from "effect"
import * as Flags from "../src/Flags.js"
import * as Pipeline from "../src/Pipeline.js"
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
      expect(sgd.config).toMatchObject({ _tag: "SGD", lr: Recipe.DEFAULT_LR })
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
      expect(r.model).toEqual({ filters: 5, dropout: 0.5 })
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
    for (const f of [
      "chapter6-adam.json",
      "chapter6-sgd-cyclic.json",
      "recipe-batchnorm.json",
      "recipe-custom-optimizer.json"
    ]) {
      const raw = JSON.parse(readFileSync(example(f), "utf8"))
      expect(Effect.runSync(Effect.either(Recipe.decode(raw, f)))._tag).toBe("Right")
    }
  })
})

describe("models as data", () => {
  const layers = [
    { type: "Conv2d", name: "conv1", outChannels: 4, kernelSize: 3 },
    { type: "BatchNorm2d", name: "bn1" },
    { type: "LeakyReLU" },
    { type: "AvgPool2d", kernelSize: 2 },
    { type: "Flatten" },
    { type: "Linear", name: "fc", outFeatures: 3 }
  ]

  it.effect("a recipe's model is CNN2's flags, a list of layers or the CNN2 preset", () =>
    Effect.gen(function* () {
      expect((yield* Recipe.decode({}, "r.json")).model).toEqual({ filters: 5, dropout: 0.3 })
      expect((yield* Recipe.decode({ model: { layers } }, "r.json")).model).toEqual({ layers })
      const preset = { preset: "CNN2", nFilters: 8, p: 0.5 }
      expect((yield* Recipe.decode({ model: preset }, "r.json")).model).toEqual(preset)
      // the run's config.json keeps the spec as written, and reads it back
      const r = yield* Recipe.decode({ model: { layers } }, "r.json")
      expect(Recipe.encode(r).model).toEqual({ layers })
    })
  )

  it("a bad spec is one line naming the layer (index, name, type) and the field", () => {
    const failure = (model: unknown) => message(Recipe.decode({ model }, "r.json"))
    expect(failure({ layers: [{ type: "Conv2d", name: "c1", outChannels: 0, kernelSize: 3 }] })).toBe(
      "r.json: model.layers[0].outChannels: Expected a positive number, actual 0 (layer c1, a Conv2d)"
    )
    expect(failure({ layers: [{ type: "Dense", outFeatures: 3 }] })).toMatch(
      /^r\.json: model\.layers\[0\]\.type: unknown layer type "Dense" \(one of Conv2d, Linear, .*Sequential\)$/
    )
    expect(failure({ layers: [{ type: "Linear", out_features: 3 }] })).toBe(
      "r.json: model.layers[0].out_features: unknown field (it takes type, name, inFeatures, outFeatures, bias) (layer 0, a Linear)"
    )
    expect(failure({ filtres: 5 })).toMatch(
      /^r\.json: model\.filtres: unknown field \(CNN2 takes filters and dropout/
    )
    expect(failure({ preset: "CNN3", nFilters: 5 })).toBe(
      'r.json: model.preset: Expected "CNN2", actual "CNN3"'
    )
  })

  it.effect("shapes are checked against the recipe's image size before any data is read", () =>
    Effect.gen(function* () {
      const recipe = yield* Recipe.decode({ model: { layers }, data: { resize: "28x28" } }, "r.json")
      yield* Pipeline.validateEarly(recipe, Recipe.fromFile("r.json"))
      expect(Pipeline.inputShapeOf(recipe)).toEqual([3, 28, 28])
      const built = Either.getOrThrow(Pipeline.buildModel(recipe, Recipe.fromFile("r.json"), [3, 28, 28], 3))
      // conv1 4*3*9+4, bn1 2*4, fc 4*13*13*3+3
      expect(Module.countParameters(built.built.module)).toBe(112 + 8 + 2031)
      const noFlatten = yield* Recipe.decode(
        {
          model: {
            layers: [
              { type: "Conv2d", outChannels: 4, kernelSize: 3 },
              { type: "Linear", outFeatures: 3 }
            ]
          }
        },
        "r.json"
      )
      expect(message(Pipeline.validateEarly(noFlatten, Recipe.fromFile("r.json")))).toBe(
        "r.json: model.layers[1].type: Linear expects a [features] input, got [4, 26, 26] (add a Flatten before it) (layer 1, a Linear)"
      )
      const tiny = yield* Recipe.decode({ model: { layers }, data: { resize: 3 } }, "r.json")
      expect(message(Pipeline.validateEarly(tiny, Recipe.fromFile("r.json")))).toBe(
        "r.json: model.layers[3].kernelSize: kernel 2 x 2 does not fit the input 1 x 1 (padding 0,0) (layer 3, a AvgPool2d)"
      )
      // the output must be one logit per class, checked once the classes are known
      expect(
        Either.getLeft(Pipeline.buildModel(recipe, Recipe.fromFile("r.json"), [3, 28, 28], 4)).pipe(
          (e) => e._tag === "Some" && e.value.message
        )
      ).toBe(
        "r.json: model.layers[5]: the model outputs [3] per image, but the data has 4 classes (a classifier ends with 4 logits: Linear with outFeatures 4)"
      )
    })
  )

  it.effect("CNN2's flags set the preset's fields, and do not apply to a list of layers", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "stepwise-recipe-"))
      const presetFile = join(dir, "preset.json")
      writeFileSync(presetFile, JSON.stringify({ model: { preset: "CNN2", nFilters: 5 } }))
      const { recipe } = yield* resolve({ config: presetFile, filters: 8, dropout: 0.2 })
      expect(recipe.model).toEqual({ preset: "CNN2", nFilters: 8, p: 0.2 })
      const layersFile = join(dir, "layers.json")
      writeFileSync(layersFile, JSON.stringify({ model: { layers } }))
      const e = yield* Effect.flip(resolve({ config: layersFile, filters: 8 }))
      expect(e.message).toBe(
        "--filters 8: sets CNN2's flags, but the recipe's model is a list of layers (edit its layers instead)"
      )
    })
  )
})

describe("optimizers from a module", () => {
  it.effect("the module path is relative to the recipe; its schema decodes the hyperparameters", () =>
    Effect.gen(function* () {
      const { recipe, origin } = yield* resolve({ config: example("recipe-custom-optimizer.json") })
      expect(recipe.optimizer).toMatchObject({ module: example("lion.mjs"), export: "lion" })
      const { config, def } = yield* Recipe.optimizerOf(recipe.optimizer, origin)
      expect(config).toEqual({
        _tag: "module",
        name: "Lion",
        module: example("lion.mjs"),
        export: "lion",
        hyperparameters: { lr: 1e-4, betas: [0.9, 0.99], weightDecay: 0.01, clip: 0 }
      })
      // optim's OptimizerDef: the same value the testing kit's laws take
      const lion = def(Float64.Float64)
      expect(lion.defaults).toEqual({ lr: 1e-4, beta1: 0.9 })
      const p = { w: Float64.make([1, -1, 0.5], [3]) }
      const g = { w: Float64.make([0.3, -2, 0], [3]) }
      const next = lion.update(lion.init(p), g, p, { lr: 0.1 })
      // sign-based: every non-zero gradient moves its weight by lr (after decay 1 - lr * wd)
      expect(Array.from(next.params.w.data)).toEqual([
        1 * (1 - 0.1 * 0.01) - 0.1,
        -1 * (1 - 0.1 * 0.01) + 0.1,
        0.5 * (1 - 0.1 * 0.01)
      ])
      // a scheduler drives its lr and beta1 like a built-in's
      const s = yield* Recipe.schedulerOf(recipe.scheduler, origin, run, lion.defaults)
      expect(s).toBeDefined()
    })
  )

  it.effect("an unusable module or hyperparameter is one line naming the file (and the field)", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "stepwise-module-"))
      writeFileSync(join(dir, "shapeless.mjs"), 'export const opt = { name: "x", make: () => 1 }\n')
      writeFileSync(join(dir, "broken.mjs"), "export const opt = {\n")
      const lion = example("lion.mjs")
      // (a module loads asynchronously)
      const failure = (section: Recipe.ModuleSection) =>
        Effect.map(Effect.flip(Recipe.optimizerOf(section, Recipe.fromFile("r.json"))), (e) => e.message)
      expect(yield* failure({ module: join(dir, "missing.mjs") })).toBe(
        `${join(dir, "missing.mjs")}: export default: no such file`
      )
      expect(yield* failure({ module: join(dir, "broken.mjs"), export: "opt" })).toMatch(
        new RegExp(`^${join(dir, "broken.mjs")}: export opt: cannot load: `)
      )
      expect(yield* failure({ module: lion, export: "lino" })).toBe(
        `${lion}: export lino: no export "lino" (it exports lion)`
      )
      expect(yield* failure({ module: lion })).toBe(
        `${lion}: export default: no export "default" (it exports lion)`
      )
      expect(yield* failure({ module: join(dir, "shapeless.mjs"), export: "opt" })).toBe(
        `${join(dir, "shapeless.mjs")}: export opt: has no \`schema\` (an effect Schema of its hyperparameters)`
      )
      expect(yield* failure({ module: lion, export: "lion", lr: -1 })).toBe(
        `r.json: optimizer.lr: must be > 0 (Lion's schema in ${lion}) (got -1)`
      )
      expect(yield* failure({ module: lion, export: "lion", momentum: 0.9 })).toBe(
        `r.json: optimizer.momentum: does not apply to Lion (${lion})`
      )
    })
  )

  it("a named optimizer given by flag replaces the module, keeping only the lr", () => {
    const merged = Resolve.mergeRaw(
      { optimizer: { module: "./lion.mjs", export: "lion", lr: 1e-4, betas: [0.9, 0.99] } },
      { optimizer: { name: "SGD" } }
    )
    expect(merged.optimizer).toEqual({ lr: 1e-4, name: "SGD" })
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
