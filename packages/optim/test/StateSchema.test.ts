import { LambdaLR, type ReduceLROnPlateau, Scheduler, Schedulers } from "@stepwise/optim"
import { Laws } from "@stepwise/optim/testing"
import { Effect, Either, Schema } from "effect"
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"

const build = (input: unknown, stepsPerEpoch = 4): Scheduler.Any =>
  Effect.runSync(Effect.flatMap(Schedulers.decode(input), (c) => Schedulers.fromConfig(c, { stepsPerEpoch })))

/** Encode, write as JSON text, read, decode: what a checkpoint does with a scheduler's state. */
const throughJson = (s: Scheduler.Scheduled) => {
  const text = JSON.stringify(Either.getOrThrow(s.encode()))
  return { text, back: Either.getOrThrow(s.decode(JSON.parse(text))) }
}

const every: ReadonlyArray<unknown> = [
  { _tag: "StepLR", stepSize: 3, gamma: 0.5 },
  { _tag: "MultiStepLR", milestones: [2, 5, 5], gamma: 0.3 },
  { _tag: "ExponentialLR", gamma: 0.9 },
  { _tag: "CosineAnnealingLR", tMax: 7, etaMin: 1e-4 },
  { _tag: "CosineAnnealingWarmRestarts", t0: 2, tMult: 2 },
  { _tag: "CyclicLR", baseLr: 1e-3, maxLr: 1e-2, stepSizeUp: 3, mode: "triangular2" },
  { _tag: "OneCycleLR", maxLr: 0.1, totalSteps: 200 },
  { _tag: "ReduceLROnPlateau", patience: 1, mode: "max" },
  {
    _tag: "SequentialLR",
    schedulers: [
      { _tag: "ExponentialLR", gamma: 0.5 },
      { _tag: "CosineAnnealingLR", tMax: 4 }
    ],
    milestones: [3]
  },
  {
    _tag: "ChainedScheduler",
    schedulers: [
      { _tag: "StepLR", stepSize: 2 },
      { _tag: "ExponentialLR", gamma: 0.8 }
    ]
  }
]

const signals = fc.option(
  fc.oneof(
    fc.record({ metric: fc.double({ min: -10, max: 10, noNaN: true }) }),
    fc.record({ epoch: fc.double({ min: 0, max: 30, noNaN: true }) })
  ),
  { nil: undefined }
)

describe("scheduler stateSchema", () => {
  for (const input of every) {
    const tag = (input as { _tag: string })._tag
    it(`${tag}: every state survives its schema and JSON text (property)`, () => {
      fc.assert(Laws.schedulerPureAndJson(build(input), { lr: 0.1, momentum: 0.9 }, signals), {
        numRuns: 100
      })
    })
  }

  it("LambdaLR (code-only) has the closed-form state schema", () => {
    fc.assert(
      Laws.schedulerPureAndJson(
        LambdaLR.make((e) => 0.9 ** e),
        { lr: 0.5 }
      ),
      { numRuns: 50 }
    )
  })

  it("ReduceLROnPlateau starts at PyTorch's best = inf (-inf for max), written as a JSON string", () => {
    const min = build({ _tag: "ReduceLROnPlateau" }).start({ lr: 0.1 })
    const { text, back } = throughJson(min)
    expect(JSON.parse(text).best).toBe("Infinity")
    back.use((_, s) => expect((s as ReduceLROnPlateau.State).best).toBe(Number.POSITIVE_INFINITY))
    const max = build({ _tag: "ReduceLROnPlateau", mode: "max" }).start({ lr: 0.1 })
    expect(JSON.parse(throughJson(max).text).best).toBe("-Infinity")
    // a later metric of inf is no improvement over inf (PyTorch: inf < inf is false)
    const stepped = Either.getOrThrow(min.step({ metric: Number.POSITIVE_INFINITY }))
    expect(JSON.parse(throughJson(stepped).text).numBadEpochs).toBe(1)
  })

  it("property: any number, finite or not, round-trips through JsonNumber and JSON text", () => {
    const codec = Scheduler.JsonNumber
    fc.assert(
      fc.property(fc.oneof(fc.double(), fc.constantFrom(Infinity, -Infinity, Number.NaN, -0)), (x) => {
        const text = JSON.stringify(Schema.encodeSync(codec)(x))
        const back = Schema.decodeUnknownSync(codec)(JSON.parse(text))
        expect(Object.is(back, x) || (x === 0 && back === 0)).toBe(true)
      }),
      { numRuns: 500 }
    )
  })

  it("a format-1 null best reads as the mode's initial best", () => {
    const s = build({ _tag: "ReduceLROnPlateau" }).start({ lr: 0.1 })
    const old = { base: { lr: 0.1 }, lr: 0.1, best: null, numBadEpochs: 0, cooldownCounter: 0, lastEpoch: 0 }
    const back = Either.getOrThrow(s.decode(old))
    expect(JSON.parse(JSON.stringify(Either.getOrThrow(back.encode()))).best).toBe("Infinity")
  })

  it("a damaged state fails decoding, naming the field", () => {
    const s = build({ _tag: "StepLR", stepSize: 2 }).start({ lr: 0.1 })
    const bad = s.decode({ epoch: "three", base: { lr: 0.1 } })
    expect(Either.isLeft(bad) && bad.left.message).toContain("epoch")
    const seq = build(every[8]).start({ lr: 0.1 })
    expect(Either.isLeft(seq.decode({ base: { lr: 0.1 }, epoch: 1, inner: { epoch: null } }))).toBe(true)
  })

  it("SequentialLR composes its children's schemas: the active child's state is inside", () => {
    let s = build(every[8]).start({ lr: 1 })
    for (let i = 0; i < 4; i++) s = Either.getOrThrow(s.step())
    const { text, back } = throughJson(s)
    // step 4: the cosine (restarted at milestone 3) has taken one step
    expect(JSON.parse(text)).toEqual({ base: { lr: 1 }, epoch: 4, inner: { epoch: 1, base: { lr: 1 } } })
    expect(back.hyper).toEqual(s.hyper)
  })
})
