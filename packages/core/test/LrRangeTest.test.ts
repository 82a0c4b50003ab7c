import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import * as LrRangeTest from "../src/LrRangeTest.js"

// The chapter's make_lr_fn, exponential: start * exp(log(end / start) / n) ** i.
const expLr = (start: number, end: number, n: number) => (i: number) =>
  start * Math.exp((Math.log(end) - Math.log(start)) / n) ** i

describe("LrRangeTest", () => {
  it.effect("records the lr used at each step and EWMA-smoothed losses, and steps with that lr", () =>
    Effect.gen(function* () {
      // State: a number; the loss of a batch is the state; a step subtracts lr * batch.
      const steps: Array<[number, number]> = []
      const result = yield* LrRangeTest.run({
        batches: Stream.forever(Stream.make(1, 2)),
        init: 10,
        lrAt: expLr(0.01, 0.1, 10),
        step: (s: number, b: number, lr: number) => {
          steps.push([s, lr])
          return [s, s - lr * b] as const
        },
        options: { endLr: 0.1, numIter: 10, divergeTh: Number.POSITIVE_INFINITY }
      })
      expect(result.stopped).toBeUndefined()
      expect(result.tracking.lr).toHaveLength(10)
      expect(result.tracking.lr[0]).toBe(0.01)
      // The chapter's printed array (10 lrs between 0.01 and 0.1, the last one not reached).
      expect(result.tracking.lr[1]).toBeCloseTo(0.01258925, 8)
      expect(result.tracking.lr[9]).toBeCloseTo(0.07943282, 8)
      // Loss 0 is raw, later ones alpha * loss + (1 - alpha) * previous.
      let s = 10
      let smoothed = 10
      for (let i = 0; i < 10; i++) {
        expect(steps[i][0]).toBeCloseTo(s, 12)
        if (i > 0) smoothed = 0.05 * s + 0.95 * smoothed
        expect(result.tracking.loss[i]).toBeCloseTo(smoothed, 12)
        s -= result.tracking.lr[i] * (i % 2 === 0 ? 1 : 2)
      }
    })
  )

  it.effect("stops when the smoothed loss exceeds divergeTh times the best, or is not finite", () =>
    Effect.gen(function* () {
      const losses = [1, 1, 1, 200, 5000, 1e6]
      const diverged = yield* LrRangeTest.run({
        batches: Stream.fromIterable(losses),
        init: 0,
        lrAt: (i) => i + 1,
        step: (s: number, b: number) => [b, s + 1] as const,
        options: { endLr: 10, numIter: 6, alpha: 0.5, divergeTh: 5 }
      })
      // smoothed: 1, 1, 1, 100.5 > 5 * 1 -> stop after recording it.
      expect(diverged.stopped).toBe("diverged")
      expect(diverged.tracking.loss).toEqual([1, 1, 1, 100.5])
      const nan = yield* LrRangeTest.run({
        batches: Stream.fromIterable([3, 2, Number.NaN, 1]),
        init: 0,
        lrAt: () => 1,
        step: (s: number, b: number) => [b, s] as const,
        options: { endLr: 10, numIter: 4 }
      })
      expect(nan.stopped).toBe("nonFinite")
      expect(nan.tracking.loss).toHaveLength(2)
    })
  )

  it.effect(
    "diverging on the last planned step is not 'stopped early'; the plot keeps what precedes divergence",
    () =>
      Effect.gen(function* () {
        // The chapter's CNN2 command: 100 steps ran, only the last one blew up (smoothed 257.7).
        const last = yield* LrRangeTest.run({
          batches: Stream.fromIterable([1, 1, 1, 200]),
          init: 0,
          lrAt: (i) => i + 1,
          step: (s: number, b: number) => [b, s + 1] as const,
          options: { endLr: 10, numIter: 4, alpha: 0.5, divergeTh: 5 }
        })
        expect(last.tracking.loss).toEqual([1, 1, 1, 100.5])
        expect(last.stopped).toBeUndefined()
        expect(LrRangeTest.beforeDivergence(last.tracking.loss)).toBe(3)
        expect(LrRangeTest.beforeDivergence([2, 1, 4.9, 5.1, 3])).toBe(3)
        expect(LrRangeTest.beforeDivergence([2, 1, 4.9], 10)).toBe(3)
        expect(LrRangeTest.beforeDivergence([2, Number.NaN, 1])).toBe(1)
      })
  )

  it.effect("releases every state it created, never the initial one", () =>
    Effect.gen(function* () {
      const released: Array<number> = []
      yield* LrRangeTest.run({
        batches: Stream.forever(Stream.make(0)),
        init: 0,
        lrAt: () => 1,
        step: (s: number) => [1, s + 1] as const,
        release: (s) => released.push(s),
        options: { endLr: 1, numIter: 5 }
      })
      expect(released).toEqual([1, 2, 3, 4, 5])
    })
  )

  it("suggests the steepest log-slope, fastai's valley and min/10", () => {
    // A U-shaped curve over 30 log-spaced lrs: flat, steep descent, bottom, rise.
    const lr = Array.from({ length: 30 }, (_, i) => 1e-4 * 10 ** (i / 10))
    const loss = lr.map((_, i) =>
      i < 5 ? 2 : i < 15 ? 2 - (i - 4) ** 2 * 0.015 : i < 20 ? 0.5 : 0.5 + (i - 19) * 0.3
    )
    const s = LrRangeTest.suggest({ lr, loss }, 30)
    // Trimmed to indices 3..24; the steepest segment is 13 -> 14 (drop 0.285 over one decade/10).
    expect(s.steepest?.index).toBe(13)
    // The first of the flat bottom (0.5 from index 14 on).
    expect(s.minimum?.index).toBe(14)
    expect(s.minimum?.lr).toBeCloseTo(lr[14] / 10, 15)
    // Longest strictly decreasing run in the trimmed losses: 11 points ending at trimmed index 11
    // (global 14), so maxStart = 0, sections = 11 / 3 -> 0 + 3 + 1 = 4, global index 7.
    expect(s.valley?.index).toBe(7)
  })

  it("valley follows fastai's index arithmetic", () => {
    // Strictly decreasing from the start: fastai's maxStart is -1; len 9 -> -1 + 3 + 1 = 3.
    expect(LrRangeTest.valley([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])).toBe(3)
    // A rise then a 6-point descent from index 2 to 7: lds[7] = 6, maxStart = 1, sections = 2 -> 1 + 2 + 1.
    expect(LrRangeTest.valley([1, 5, 9, 8, 7, 6, 5, 4, 6, 7])).toBe(4)
    expect(LrRangeTest.valley([])).toBeUndefined()
  })
})
