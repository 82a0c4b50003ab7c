import {
  CosineAnnealingWarmRestarts,
  type Float64,
  type Optimizer,
  type Scheduler,
  Schedulers,
  SGD,
  TfNumeric
} from "@stepwise/optim"
import { Arb, Laws, optimizerOf } from "@stepwise/optim/testing"
import "@tensorflow/tfjs-backend-cpu" // registers the "cpu" backend
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import * as fc from "fast-check"
import { beforeAll, describe, expect, it } from "vitest"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/** Every built-in optimizer, every flag, through the same laws users run. */
describe("our optimizers pass the kit's laws", () => {
  it("purity and state round trip, for random configs (300 configs x problems)", () => {
    fc.assert(
      fc.property(Arb.optimizerConfig(), fc.integer(), (config, seed) => {
        const def = optimizerOf(config)
        fc.assert(Laws.purity(def), { numRuns: 3, seed })
        fc.assert(Laws.stateRoundTrip(def), { numRuns: 3, seed })
      }),
      { numRuns: 300 }
    )
  })

  it("zero gradients from a fresh state leave parameters unchanged, for every config without weight decay", () => {
    fc.assert(
      fc.property(Arb.optimizerConfig(), fc.integer(), (config, seed) => {
        fc.assert(Laws.zeroGradientFixedPoint(optimizerOf({ ...config, weightDecay: 0 })), {
          numRuns: 3,
          seed
        })
      }),
      { numRuns: 300 }
    )
  })

  it("tfjs float32 tensors follow the float64 reference (norm-wise rel err <= 1e-4), without leaking tensors", () => {
    const before = tf.memory().numTensors
    fc.assert(
      fc.property(Arb.optimizerConfig(), fc.integer(), (config, seed) => {
        // lr <= 0.1 and few steps: float32 rounding is amplified by large steps on tiny denominators
        const def = optimizerOf({ ...config, lr: Math.min(config.lr, 0.1) })
        fc.assert(
          Laws.backendsAgree(def, TfNumeric.TfNumeric, {
            scope: (f) => tf.tidy(f),
            maxSteps: 4,
            randomHyper: false
          }),
          { numRuns: 2, seed }
        )
      }),
      { numRuns: 200 }
    )
    expect(tf.memory().numTensors).toBe(before)
  })

  it("SGD equals its textbook equation written per element, over random sequences and scheduled hyperparameters", () => {
    const config = { lr: 0.1, momentum: 0.9, dampening: 0.3, weightDecay: 0.01 }
    const def = Effect.runSync(SGD.make(config))
    fc.assert(
      Laws.matchesReference(def, {
        initial: undefined as number | undefined,
        step: (buf, p, g, h: Optimizer.Hyper) => {
          const m = h.momentum ?? config.momentum
          const d = g + config.weightDecay * p
          if (m === 0) return { param: p - h.lr * d, memory: buf } // PyTorch keeps the buffer
          const next = buf === undefined ? d : m * buf + (1 - config.dampening) * d
          return { param: p - h.lr * next, memory: next }
        }
      }),
      { numRuns: 300 }
    )
  })

  it("Adam (amsgrad) equals Kingma & Ba's Algorithm 1 with PyTorch's raw-max amsgrad", () => {
    const def = optimizerOf({
      _tag: "Adam",
      lr: 0.01,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weightDecay: 0,
      amsgrad: true,
      maximize: false
    })
    fc.assert(
      Laws.matchesReference(
        def,
        {
          initial: { m: 0, v: 0, vmax: 0 },
          step: (s, p, g, h, t) => {
            const b1 = h.beta1 ?? 0.9
            const m = b1 * s.m + (1 - b1) * g
            const v = 0.999 * s.v + 0.001 * g * g
            const vmax = Math.max(s.vmax, v)
            const update = m / (1 - b1 ** t) / (Math.sqrt(vmax / (1 - 0.999 ** t)) + 1e-8)
            return { param: p - h.lr * update, memory: { m, v, vmax } }
          }
        },
        { tolerance: 1e-9 }
      ),
      { numRuns: 300 }
    )
  })

  it("a law failure is shrunk to a minimal counter-example", () => {
    // a wrong reference (forgets the lr): fast-check must fail and report a small problem
    const def = optimizerOf({
      _tag: "SGD",
      lr: 0.5,
      momentum: 0,
      dampening: 0,
      weightDecay: 0,
      nesterov: false,
      maximize: false
    })
    const details = fc.check(
      Laws.matchesReference(
        def,
        { initial: 0, step: (m, p, g) => ({ param: p - g, memory: m }) },
        { randomHyper: false }
      ),
      { numRuns: 100, seed: 42 }
    )
    expect(details.failed).toBe(true)
    const [problem] = details.counterexample as unknown as [
      { problem: { params: Record<string, Float64.Tensor>; grads: unknown[] } }
    ]
    expect(details.numShrinks).toBeGreaterThan(0)
    expect(problem.problem.grads.length).toBeLessThanOrEqual(2)
    const sizes = Object.values(problem.problem.params).map((t) => t.data.length)
    expect(sizes).toEqual([1])
  })
})

describe("our schedulers pass the kit's scheduler law (pure, JSON states)", () => {
  const configs: ReadonlyArray<unknown> = [
    { _tag: "StepLR", stepSize: 3 },
    { _tag: "MultiStepLR", milestones: [2, 2, 7] },
    { _tag: "ExponentialLR", gamma: 0.9 },
    { _tag: "CosineAnnealingLR", tMax: 7, etaMin: 0.001 },
    { _tag: "CyclicLR", baseLr: 0.001, maxLr: 0.01, stepSizeUp: 4, mode: "triangular2" },
    { _tag: "OneCycleLR", maxLr: 0.1, totalSteps: 30, threePhase: true },
    { _tag: "CosineAnnealingWarmRestarts", t0: 2, tMult: 2 },
    {
      _tag: "SequentialLR",
      schedulers: [
        { _tag: "StepLR", stepSize: 2 },
        { _tag: "ExponentialLR", gamma: 0.5 }
      ],
      milestones: [5]
    },
    {
      _tag: "ChainedScheduler",
      schedulers: [
        { _tag: "StepLR", stepSize: 2 },
        { _tag: "ExponentialLR", gamma: 0.5 }
      ]
    }
  ]
  for (const input of configs) {
    it((input as { _tag: string })._tag, () => {
      const s: Scheduler.Any = Effect.runSync(
        Effect.flatMap(Schedulers.decode(input), (c) => Schedulers.fromConfig(c, { stepsPerEpoch: 3 }))
      )
      fc.assert(Laws.schedulerPureAndJson(s, { lr: 0.1, momentum: 0.9 }), { numRuns: 100 })
    })
  }
  it("ReduceLROnPlateau with random metrics; warm restarts with random fractional epochs", () => {
    const plateau = Effect.runSync(
      Effect.flatMap(Schedulers.decode({ _tag: "ReduceLROnPlateau", patience: 1 }), (c) =>
        Schedulers.fromConfig(c)
      )
    )
    fc.assert(
      Laws.schedulerPureAndJson(
        plateau,
        { lr: 0.1 },
        fc.record({ metric: fc.double({ min: 0, max: 10, noNaN: true }) })
      ),
      { numRuns: 200 }
    )
    const warm = CosineAnnealingWarmRestarts.scheduler({
      _tag: "CosineAnnealingWarmRestarts",
      t0: 2,
      tMult: 3,
      etaMin: 0,
      cadence: "batch"
    })
    fc.assert(
      Laws.schedulerPureAndJson(
        warm,
        { lr: 0.1 },
        fc.option(fc.record({ epoch: fc.double({ min: 0, max: 50, noNaN: true }) }), { nil: undefined })
      ),
      { numRuns: 200 }
    )
  })
})
