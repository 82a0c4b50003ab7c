import { CyclicLR, OneCycleLR, Schedulers } from "@stepwise/optim"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"

const build = (input: unknown, stepsPerEpoch = 1) =>
  Effect.runSync(Effect.flatMap(Schedulers.decode(input), (c) => Schedulers.fromConfig(c, { stepsPerEpoch })))

const run = (
  input: unknown,
  base: { lr: number; momentum?: number; beta1?: number },
  n: number,
  stepsPerEpoch = 1
) => {
  const s = build(input, stepsPerEpoch)
  let state = s.start(base)
  const out = [state.hyper]
  for (let t = 0; t < n; t++) {
    state = Either.getOrThrow(state.step())
    out.push(state.hyper)
  }
  return out
}

describe("schedulers beyond the PyTorch 1.13 fixtures", () => {
  it("CyclicLR on an Adam-like optimizer cycles beta1 with the values it gives SGD's momentum (PyTorch >= 2.2)", () => {
    const config = { _tag: "CyclicLR", baseLr: 0.001, maxLr: 0.01, stepSizeUp: 3, mode: "triangular2" }
    const sgd = run(config, { lr: 0.1, momentum: 0.9 }, 20)
    const adam = run(config, { lr: 0.1, beta1: 0.9 }, 20)
    expect(adam.map((h) => h.lr)).toEqual(sgd.map((h) => h.lr))
    expect(adam.map((h) => h.beta1)).toEqual(sgd.map((h) => h.momentum))
    expect(adam.every((h) => h.momentum === undefined)).toBe(true)
    expect(adam[0].beta1).toBe(0.9) // max momentum at the start of a cycle
    expect(adam[3].beta1).toBeCloseTo(0.8, 15) // base momentum at the peak
  })

  it("CyclicLR step sizes in epochs are step sizes in batches times stepsPerEpoch", () => {
    const epochs = run(
      { _tag: "CyclicLR", baseLr: 0.001, maxLr: 0.01, stepSizeUp: 2, unit: "epochs" },
      { lr: 1, momentum: 0.9 },
      40,
      5
    )
    const batches = run(
      { _tag: "CyclicLR", baseLr: 0.001, maxLr: 0.01, stepSizeUp: 10 },
      { lr: 1, momentum: 0.9 },
      40,
      5
    )
    expect(epochs).toEqual(batches)
    expect(build({ _tag: "CyclicLR", baseLr: 0.001, maxLr: 0.01 }).cadence).toBe("batch")
  })

  it("a custom CyclicLR scale function replaces the mode", () => {
    const s = CyclicLR.scheduler(
      Effect.runSync(
        Schedulers.decode({ _tag: "CyclicLR", baseLr: 0, maxLr: 1, stepSizeUp: 2, cycleMomentum: false })
      ) as CyclicLR.Config,
      1,
      { scaleFn: (cycle) => 1 / cycle, scaleMode: "cycle" }
    )
    let state = s.init({ lr: 1 })
    const lrs = [s.current(state).lr]
    for (let t = 0; t < 8; t++) {
      state = Either.getOrThrow(s.step(state))
      lrs.push(s.current(state).lr)
    }
    expect(lrs).toEqual([0, 0.5, 1, 0.5, 0, 0.25, 0.5, 0.25, 0])
  })

  it("OneCycleLR steps up to totalSteps, then fails like PyTorch's ValueError (no silent hold)", () => {
    const s = Effect.runSync(OneCycleLR.make({ maxLr: 0.1, totalSteps: 10 }))
    let state = s.init({ lr: 1, momentum: 0.9 })
    for (let t = 0; t < 10; t++) state = Either.getOrThrow(s.step(state))
    expect(state.epoch).toBe(10)
    // PyTorch's value at totalSteps: the cosine extrapolated to pct = 8/7, past its minimum
    const min = 0.1 / 25 / 1e4
    const last = s.current(state)
    expect(last.lr).toBeCloseTo(min + ((0.1 - min) / 2) * (Math.cos((Math.PI * 8) / 7) + 1), 15)
    const past = s.step(state)
    expect(Either.isLeft(past)).toBe(true)
    if (Either.isLeft(past)) {
      expect(past.left._tag).toBe("SchedulerStepError")
      expect(past.left.message).toBe(
        "OneCycleLR: Tried to step 11 times. The specified number of total steps is 10"
      )
    }
    // an explicit epoch past the end fails the same way
    expect(Either.isLeft(s.step(s.init({ lr: 1 }), { epoch: 11 }))).toBe(true)
  })

  it("OneCycleLR with epochs needs stepsPerEpoch (its own or the loader's): never a silent 1 step per epoch", () => {
    const config = Effect.runSync(Schedulers.decode({ _tag: "OneCycleLR", maxLr: 0.1, epochs: 3 }))
    const missing = Effect.runSync(Effect.either(Schedulers.fromConfig(config)))
    expect(Either.isLeft(missing) && missing.left.field).toBe("stepsPerEpoch")
    expect(Either.isLeft(missing) && missing.left.config).toBe("OneCycleLR")
    // the loader's count, or the config's own field: 3 epochs x 7 = 21 steps, the 22nd fails
    for (const s of [
      Effect.runSync(Schedulers.fromConfig(config, { stepsPerEpoch: 7 })),
      Effect.runSync(
        Effect.flatMap(
          Schedulers.decode({ _tag: "OneCycleLR", maxLr: 0.1, epochs: 3, stepsPerEpoch: 7 }),
          (c) => Schedulers.fromConfig(c)
        )
      )
    ]) {
      let state = s.start({ lr: 1, momentum: 0.9 })
      for (let t = 0; t < 21; t++) state = Either.getOrThrow(state.step())
      expect(Either.isLeft(state.step())).toBe(true)
    }
  })

  it("CosineAnnealingWarmRestarts given a negative epoch fails like PyTorch", () => {
    const s = Effect.runSync(
      Effect.flatMap(Schedulers.decode({ _tag: "CosineAnnealingWarmRestarts", t0: 2 }), (c) =>
        Schedulers.fromConfig(c)
      )
    )
    const r = s.start({ lr: 0.1 }).step({ epoch: -1 })
    expect(Either.isLeft(r) && r.left.message).toBe(
      "CosineAnnealingWarmRestarts: Expected non-negative epoch, but got -1"
    )
  })

  it("cadences: the chapter's grouping (CyclicLR, OneCycleLR, WarmRestarts per mini-batch)", () => {
    expect(build({ _tag: "StepLR", stepSize: 2 }).cadence).toBe("epoch")
    expect(build({ _tag: "CosineAnnealingLR", tMax: 2 }).cadence).toBe("epoch")
    expect(build({ _tag: "CosineAnnealingWarmRestarts", t0: 2 }).cadence).toBe("batch")
    expect(build({ _tag: "CosineAnnealingWarmRestarts", t0: 2, cadence: "epoch" }).cadence).toBe("epoch")
    expect(build({ _tag: "ReduceLROnPlateau" }).cadence).toBe("metric")
    expect(build({ _tag: "OneCycleLR", maxLr: 0.1, epochs: 2 }, 7).cadence).toBe("batch")
  })
})
