import { it } from "@effect/vitest"
import { Optimizers, Schedulers } from "@stepwise/optim"
import { Effect, Either, Layer } from "effect"
import { describe, expect } from "vitest"

const optimizerError = (input: unknown) =>
  Effect.runSync(Effect.either(Effect.flatMap(Optimizers.decode(input), Optimizers.fromConfig)))

const schedulerError = (input: unknown, stepsPerEpoch = 1) =>
  Effect.runSync(
    Effect.either(
      Effect.flatMap(Schedulers.decode(input), (c) => Schedulers.fromConfig(c, { stepsPerEpoch }))
    )
  )

describe("invalid hyperparameters fail with a typed error naming field and value (PyTorch's ValueErrors)", () => {
  const optimizerCases: ReadonlyArray<[unknown, string, unknown]> = [
    [{ _tag: "SGD", lr: -0.1 }, "lr", -0.1],
    [{ _tag: "SGD", lr: Number.NaN }, "lr", Number.NaN],
    [{ _tag: "SGD", lr: 0.1, momentum: -0.5 }, "momentum", -0.5],
    [{ _tag: "SGD", lr: 0.1, nesterov: true }, "nesterov", true],
    [{ _tag: "SGD", lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true }, "nesterov", true],
    [{ _tag: "SGD", lr: 0.1, weightDecay: -1 }, "weightDecay", -1],
    [{ _tag: "Adam", betas: [1, 0.999] }, "betas.0", 1],
    [{ _tag: "Adam", betas: [0.9, -0.1] }, "betas.1", -0.1],
    [{ _tag: "AdamW", eps: -1e-8 }, "eps", -1e-8],
    [{ _tag: "RMSprop", alpha: -0.9 }, "alpha", -0.9],
    [{ _tag: "Adagrad", lrDecay: -1 }, "lrDecay", -1],
    [{ _tag: "Adagrad", initialAccumulatorValue: -1 }, "initialAccumulatorValue", -1],
    // schema-level: wrong type, unknown field, missing required lr
    [{ _tag: "Adam", lr: "fast" }, "lr", "fast"],
    [{ _tag: "Adam", learningRate: 0.1 }, "learningRate", 0.1],
    [{ _tag: "SGD" }, "lr", undefined]
  ]
  for (const [input, field, value] of optimizerCases) {
    it(`optimizer ${JSON.stringify(input)} -> ${field}`, () => {
      const result = optimizerError(input)
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) {
        expect(result.left._tag).toBe("InvalidHyperparameter")
        expect(result.left.field).toBe(field)
        expect(result.left.value).toEqual(value)
      }
    })
  }

  const schedulerCases: ReadonlyArray<[unknown, string, unknown]> = [
    [{ _tag: "ReduceLROnPlateau", factor: 1 }, "factor", 1],
    [{ _tag: "ReduceLROnPlateau", patience: -1 }, "patience", -1],
    [{ _tag: "ReduceLROnPlateau", mode: "lowest" }, "mode", "lowest"],
    [{ _tag: "CosineAnnealingWarmRestarts", t0: 0 }, "t0", 0],
    [{ _tag: "CosineAnnealingWarmRestarts", t0: 2.5 }, "t0", 2.5],
    [{ _tag: "CosineAnnealingWarmRestarts", t0: 2, tMult: 0 }, "tMult", 0],
    [{ _tag: "StepLR", stepSize: 0 }, "stepSize", 0],
    [{ _tag: "CyclicLR", baseLr: 0.001, maxLr: 0.01, stepSizeUp: 0 }, "stepSizeUp", 0],
    [{ _tag: "OneCycleLR", maxLr: 0.1 }, "totalSteps", undefined],
    [{ _tag: "OneCycleLR", maxLr: 0.1, totalSteps: 10, pctStart: 1.5 }, "pctStart", 1.5],
    [{ _tag: "CosineAnnealingLR", tMax: 0 }, "tMax", 0],
    [
      {
        _tag: "SequentialLR",
        schedulers: [
          { _tag: "StepLR", stepSize: 2 },
          { _tag: "ExponentialLR", gamma: 0.9 }
        ],
        milestones: []
      },
      "milestones",
      []
    ],
    [
      {
        _tag: "ChainedScheduler",
        schedulers: [{ _tag: "StepLR", stepSize: 2 }, { _tag: "ReduceLROnPlateau" }]
      },
      "schedulers.1",
      { _tag: "ReduceLROnPlateau" }
    ],
    [
      {
        _tag: "ChainedScheduler",
        schedulers: [
          { _tag: "StepLR", stepSize: 2 },
          { _tag: "StepLR", stepSize: -2 }
        ]
      },
      "stepSize",
      -2
    ]
  ]
  for (const [input, field, value] of schedulerCases) {
    it(`scheduler ${JSON.stringify(input)} -> ${field}`, () => {
      const result = schedulerError(input)
      expect(Either.isLeft(result)).toBe(true)
      if (Either.isLeft(result)) {
        expect(result.left.field).toBe(field)
        expect(result.left.value).toEqual(value)
      }
    })
  }

  it.effect("the Scheduler layer rejects momentum cycling on an optimizer without momentum or beta1", () =>
    Effect.gen(function* () {
      const cyclic = yield* Schedulers.decode({ _tag: "CyclicLR", baseLr: 0.001, maxLr: 0.01 })
      const adagrad = yield* Optimizers.decode({ _tag: "Adagrad" })
      const error = yield* Effect.flip(
        Effect.provide(
          Schedulers.Scheduler,
          Schedulers.layer(cyclic, { stepsPerEpoch: 10 }).pipe(Layer.provide(Optimizers.layer(adagrad)))
        )
      )
      expect(error.field).toBe("cycleMomentum")
      // SGD has momentum, Adam has beta1: both accepted, and the cadence is per batch
      for (const input of [{ _tag: "SGD", lr: 0.1 }, { _tag: "Adam" }]) {
        const config = yield* Optimizers.decode(input)
        const { scheduler } = yield* Effect.provide(
          Schedulers.Scheduler,
          Schedulers.layer(cyclic, { stepsPerEpoch: 10 }).pipe(Layer.provide(Optimizers.layer(config)))
        )
        expect(scheduler.cadence).toBe("batch")
      }
    })
  )

  it.effect("the Optimizer layer validates and exposes defaults for schedulers", () =>
    Effect.gen(function* () {
      const config = yield* Optimizers.decode({ _tag: "SGD", lr: 0.01, momentum: 0.9, nesterov: true })
      const optimizer = yield* Effect.provide(Optimizers.Optimizer, Optimizers.layer(config))
      expect(optimizer.defaults).toEqual({ lr: 0.01, momentum: 0.9 })
      // a config built in code (never decoded) is still checked by the layer
      const bad = { ...config, nesterov: true, momentum: 0 }
      const error = yield* Effect.flip(Effect.provide(Optimizers.Optimizer, Optimizers.layer(bad)))
      expect(error.field).toBe("nesterov")
      expect(error.message).toBe(
        "SGD: invalid nesterov = true: Nesterov momentum requires a momentum and zero dampening (momentum = 0, dampening = 0)"
      )
    })
  )
})
