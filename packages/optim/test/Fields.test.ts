import { Optimizers, Schedulers } from "@stepwise/optim"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"

const decodeError = (
  decode: (u: unknown) => Effect.Effect<unknown, { readonly _tag: string }>,
  input: unknown
) => {
  const r = Effect.runSync(Effect.either(decode(input)))
  if (Either.isRight(r)) throw new Error(`${JSON.stringify(input)} decoded`)
  return r.left as unknown as {
    config: string
    field: string
    value: unknown
    reason: string
    message: string
  }
}

describe("the config schemas are the one definition: rules, descriptions and defaults", () => {
  it("fieldsOf lists SGD's fields with type, default and description, in PyTorch's order", () => {
    const fields = Optimizers.fieldsOf("SGD")
    expect(fields.map((f) => f.name)).toEqual([
      "lr",
      "momentum",
      "dampening",
      "weightDecay",
      "nesterov",
      "maximize"
    ])
    expect(fields[0]).toEqual({ name: "lr", type: "number", required: true, description: "learning rate" })
    expect(fields[1]).toMatchObject({ name: "momentum", type: "number", default: 0, required: false })
    expect(fields[4]).toMatchObject({ name: "nesterov", type: "boolean", default: false })
  })

  it("fieldsOf: tuples, literal choices, integers and optional fields without a default", () => {
    const betas = Optimizers.fieldsOf("AdamW").find((f) => f.name === "betas")
    expect(betas).toMatchObject({ type: "array", element: "number", length: 2, default: [0.9, 0.999] })
    expect(Optimizers.fieldsOf("AdamW").find((f) => f.name === "weightDecay")?.default).toBe(1e-2)
    const oneCycle = Schedulers.fieldsOf("OneCycleLR")
    expect(oneCycle.find((f) => f.name === "annealStrategy")).toMatchObject({
      type: "literal",
      choices: ["cos", "linear"],
      default: "cos"
    })
    const total = oneCycle.find((f) => f.name === "totalSteps")
    expect(total).toMatchObject({ type: "int", required: false })
    expect(total?.default).toBeUndefined()
    expect(Schedulers.fieldsOf("CosineAnnealingWarmRestarts").find((f) => f.name === "t0")?.type).toBe("int")
    expect(Schedulers.fieldsOf("MultiStepLR").find((f) => f.name === "milestones")).toMatchObject({
      type: "array",
      element: "int",
      required: true
    })
    expect(Schedulers.fieldsOf("SequentialLR").map((f) => [f.name, f.type])).toEqual([
      ["schedulers", "array"],
      ["milestones", "array"]
    ])
  })

  it("every field of every config has a description, and the listed defaults are what decoding fills in", () => {
    for (const tag of Optimizers.tags) {
      for (const f of Optimizers.fieldsOf(tag)) expect(f.description.length).toBeGreaterThan(f.name.length)
      if (tag === "SGD") continue // lr is required
      const decoded = Effect.runSync(Optimizers.defaultConfig(tag)) as unknown as Record<string, unknown>
      for (const f of Optimizers.fieldsOf(tag))
        expect([tag, f.name, decoded[f.name]]).toEqual([tag, f.name, f.default])
    }
    for (const tag of Schedulers.tags)
      for (const f of Schedulers.fieldsOf(tag)) expect(f.description.length).toBeGreaterThan(f.name.length)
  })

  it("non-finite numbers fail naming the optimizer and the field (`--lr Infinity`)", () => {
    const e = decodeError(Optimizers.decode, { _tag: "Adam", lr: Number.POSITIVE_INFINITY })
    expect([e.config, e.field, e.value, e.reason]).toEqual([
      "Adam",
      "lr",
      Number.POSITIVE_INFINITY,
      "must be a finite number"
    ])
    expect(e.message).toBe("Adam: invalid lr = Infinity: must be a finite number")
    expect(decodeError(Optimizers.decode, { _tag: "SGD", lr: 0.1, momentum: Number.NaN }).field).toBe(
      "momentum"
    )
    expect(
      decodeError(Schedulers.decode, { _tag: "StepLR", stepSize: 2, gamma: Number.NEGATIVE_INFINITY }).field
    ).toBe("gamma")
  })

  it("an unknown tag names the tag; a nested scheduler's error names that scheduler and its own field", () => {
    const tag = decodeError(Optimizers.decode, { _tag: "Sgd", lr: 0.1 })
    expect([tag.field, tag.value]).toEqual(["_tag", "Sgd"])
    const nested = decodeError(Schedulers.decode, {
      _tag: "SequentialLR",
      schedulers: [
        { _tag: "StepLR", stepSize: 2 },
        { _tag: "OneCycleLR", maxLr: 0.1, totalSteps: 10, pctStart: 1 }
      ],
      milestones: [3]
    })
    expect([nested.config, nested.field, nested.value, nested.reason]).toEqual([
      "OneCycleLR",
      "pctStart",
      1,
      "must be in (0, 1)"
    ])
  })

  it("OneCycleLR: pctStart outside (0, 1) is rejected (1 gave lr NaN); totalSteps or epochs is required", () => {
    for (const pctStart of [0, 1, 1.5, -0.1])
      expect(
        decodeError(Schedulers.decode, { _tag: "OneCycleLR", maxLr: 0.1, totalSteps: 10, pctStart }).field
      ).toBe("pctStart")
    const missing = decodeError(Schedulers.decode, { _tag: "OneCycleLR", maxLr: 0.1 })
    expect([missing.field, missing.reason]).toEqual([
      "totalSteps",
      "You must define either totalSteps OR (epochs AND stepsPerEpoch)"
    ])
    expect(decodeError(Schedulers.decode, { _tag: "OneCycleLR", maxLr: 0.1, totalSteps: 2.5 }).field).toBe(
      "totalSteps"
    )
    expect(
      decodeError(Schedulers.decode, { _tag: "OneCycleLR", maxLr: 0.1, epochs: 2, stepsPerEpoch: 0 }).field
    ).toBe("stepsPerEpoch")
  })

  it("the other schedulers reject what PyTorch's constructors reject, naming the field", () => {
    const cases: ReadonlyArray<[unknown, string]> = [
      [
        { _tag: "SequentialLR", schedulers: [{ _tag: "StepLR", stepSize: 2 }], milestones: [3] },
        "milestones"
      ],
      [{ _tag: "ReduceLROnPlateau", factor: 1.5 }, "factor"],
      [{ _tag: "ReduceLROnPlateau", thresholdMode: "relative" }, "thresholdMode"],
      [{ _tag: "CyclicLR", baseLr: 0.1, maxLr: 1, mode: "cosine" }, "mode"],
      [{ _tag: "CosineAnnealingWarmRestarts", t0: 2, tMult: 1.5 }, "tMult"],
      [{ _tag: "MultiStepLR", milestones: [2, -1] }, "milestones.1"],
      [{ _tag: "ExponentialLR" }, "gamma"]
    ]
    for (const [input, field] of cases)
      expect([input, decodeError(Schedulers.decode, input).field]).toEqual([input, field])
    // CyclicLR step sizes in epochs need the loader's count
    const cyclic = Effect.runSync(
      Schedulers.decode({ _tag: "CyclicLR", baseLr: 0.1, maxLr: 1, unit: "epochs" })
    )
    const r = Effect.runSync(Effect.either(Schedulers.fromConfig(cyclic)))
    expect(Either.isLeft(r) && [r.left.config, r.left.field]).toEqual(["CyclicLR", "stepsPerEpoch"])
  })
})
