import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import * as Flags from "../src/Flags.js"
import * as Recipe from "../src/Recipe.js"
import * as Resolve from "../src/Resolve.js"
import * as SchedulerConfig from "../src/SchedulerConfig.js"

const example = (name: string) => fileURLToPath(new URL(`../../../examples/${name}`, import.meta.url))

const none = Option.none()
const flags = (over: Record<string, unknown> = {}): Resolve.RecipeFlags =>
  ({
    config: none,
    ...Object.fromEntries(Object.entries(over).map(([k, v]) => [k, Option.some(v)]))
  }) as Resolve.RecipeFlags

describe("recipes", () => {
  it.effect("the chapter's SGD + CyclicLR recipe decodes to the chapter's hyperparameters", () =>
    Effect.gen(function* () {
      const r = yield* Resolve.resolve(flags({ config: example("chapter6-sgd-cyclic.json") }))
      expect(r.model).toEqual({ filters: 5, dropout: 0.5 })
      expect(r.optimizer).toEqual({ name: "sgd", lr: 0.03, momentum: 0.9, nesterov: true })
      expect(r.scheduler).toEqual({
        name: "cyclic",
        baseLr: 1e-3,
        maxLr: 1e-2,
        stepSizeUp: "epoch",
        mode: "triangular2"
      })
      expect([r.epochs, r.batchSize, r.seed, r.backend]).toEqual([10, 16, 13, "wasm"])
      // step_size_up = len(train_loader) = 158 mini-batches of the 2,520 training images
      const input = yield* SchedulerConfig.schedulerInput(r, "x", 158)
      expect(input).toEqual({
        _tag: "CyclicLR",
        baseLr: 1e-3,
        maxLr: 1e-2,
        stepSizeUp: 158,
        mode: "triangular2"
      })
      const s = yield* SchedulerConfig.build(r, "x", 158, { lr: 0.03, momentum: 0.9 }) // SGD's defaults
      let st = s!.init({ lr: 0.03, momentum: 0.9 })
      expect(s!.current(st).lr).toBeCloseTo(1e-3, 15)
      for (let i = 0; i < 158; i++) st = yield* s!.step(st)
      expect(s!.current(st).lr).toBeCloseTo(1e-2, 12) // the top after one epoch
      for (let i = 0; i < 158 * 2; i++) st = yield* s!.step(st)
      expect(s!.current(st).lr).toBeCloseTo(1e-3 + (1e-2 - 1e-3) / 2, 12) // triangular2 halves the 2nd cycle
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.effect("the Adam recipe, and flags override the file field by field", () =>
    Effect.gen(function* () {
      const r = yield* Resolve.resolve(
        flags({ config: example("chapter6-adam.json"), epochs: 1, dropout: 0 })
      )
      expect(r.optimizer).toEqual({ name: "adam", lr: 3e-4 })
      expect(r.model).toEqual({ filters: 5, dropout: 0 })
      expect(r.epochs).toBe(1)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it("choosing another optimizer by flag starts that section afresh, keeping the lr", () => {
    const base = { optimizer: { name: "adam", lr: 0.01, beta1: 0.8 } }
    expect(Resolve.mergeRaw(base, { optimizer: { name: "sgd", momentum: 0.9 } }).optimizer).toEqual({
      name: "sgd",
      lr: 0.01,
      momentum: 0.9
    })
    expect(Resolve.mergeRaw(base, { optimizer: { lr: 0.1 } }).optimizer).toEqual({
      name: "adam",
      lr: 0.1,
      beta1: 0.8
    })
  })

  it.effect("YAML recipes decode like JSON ones", () =>
    Effect.gen(function* () {
      const raw = yield* Recipe.parseText(
        "model:\n  dropout: 0.5\noptimizer:\n  name: sgd\n  lr: 0.03\n  nesterov: true\n  momentum: 0.9\nscheduler: { name: step, stepSize: 4, gamma: 0.5 }\n",
        "r.yaml"
      )
      const r = yield* Recipe.decode(raw, "r.yaml")
      expect(r.scheduler).toEqual({ name: "step", stepSize: 4, gamma: 0.5 })
      expect(r.model.filters).toBe(5)
    })
  )

  const failure = (input: unknown) =>
    Effect.runSync(Effect.either(Recipe.decode(input, "bad.json"))).pipe((e) =>
      Either.isLeft(e) ? e.left.message : "decoded"
    )

  it("bad recipes fail naming the file, the field and the value", () => {
    expect(failure({ optimizer: { name: "adam", lr: -1 } })).toBe(
      "bad.json: optimizer.lr: must be >= 0 (got -1)"
    )
    // lr 0 is valid, as in torch.optim and @stepwise/optim
    expect(failure({ optimizer: { name: "adam", lr: 0 } })).toBe("decoded")
    expect(failure({ model: { dropout: 1 } })).toBe("bad.json: model.dropout: must be in [0, 1) (got 1)")
    expect(failure({ scheduler: { name: "bogus" } })).toMatch(/^bad\.json: scheduler\.name: .*"bogus"/)
    expect(failure({ epochz: 3 })).toBe("bad.json: epochz: unknown field (got 3)")
    expect(failure({ batchSize: 2.5 })).toMatch(/^bad\.json: batchSize: .*2\.5/)
    expect(failure({ data: { resize: "28y" } })).toMatch(/^bad\.json: data\.resize/)
  })

  it.effect("a hyperparameter that does not belong to the optimizer or scheduler is named", () =>
    Effect.gen(function* () {
      const r = yield* Recipe.decode({ optimizer: { name: "sgd", lr: 0.1, beta1: 0.9 } }, "f.json")
      const e = yield* Effect.flip(
        SchedulerConfig.build(r, "f.json", 10, { lr: 0.1, momentum: 0 }).pipe(
          Effect.zipRight(Effect.fail("none"))
        )
      )
      expect(e).toBe("none")
      const { optimizerInput } = yield* Effect.promise(() => import("../src/Pipeline.js"))
      const err = yield* Effect.flip(optimizerInput(r.optimizer, "f.json"))
      expect(err.message).toBe("f.json: optimizer.beta1: does not apply to sgd")
      const r2 = yield* Recipe.decode({ scheduler: { name: "step", stepSize: 2, maxLr: 1 } }, "f.json")
      const err2 = yield* Effect.flip(SchedulerConfig.schedulerInput(r2, "f.json", 10))
      expect(err2.message).toBe("f.json: scheduler.maxLr: does not apply to step")
      const r3 = yield* Recipe.decode({ scheduler: { name: "none", gamma: 0.5 } }, "f.json")
      const err3 = yield* Effect.flip(SchedulerConfig.schedulerInput(r3, "f.json", 10))
      expect(err3.message).toBe("f.json: scheduler.gamma: given, but no scheduler is chosen")
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
    expect(Flags.checkNumber("NaN", {})).toBe("not a number")
  })
})
