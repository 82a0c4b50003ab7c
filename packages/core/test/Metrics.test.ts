import { describe, expect, it } from "@effect/vitest"
import { Either, Option } from "effect"
import * as fc from "fast-check"
import * as Metrics from "../src/Metrics.js"

describe("Metrics", () => {
  it("counts [correct, total] per class like the chapter's correct()", () => {
    // 3 classes, 5 samples: predictions 0, 2, 1, 1, 2 against targets 0, 2, 2, 1, 0.
    const logits = [5, 1, 0, 0, 1, 3, 0, 2, 1, -1, 4, 0, 0, 0, 1]
    expect(Either.getOrThrow(Metrics.correct(logits, 3, [0, 2, 2, 1, 0]))).toEqual([
      [1, 2],
      [1, 1],
      [1, 2]
    ])
  })

  it("breaks ties toward the first class, as torch.max does, and never predicts a NaN", () => {
    expect(Array.from(Metrics.predictions([1, 1, 0, Number.NaN, 2, 2], 3))).toEqual([0, 1])
  })

  it("treats one logit as binary: sigmoid(logit) > threshold", () => {
    expect(Either.getOrThrow(Metrics.correct([2, -1, 0.1, -3], 1, [1, 0, 0, 1]))).toEqual([
      [1, 2],
      [1, 2]
    ])
    expect(Array.from(Metrics.predictions([0.1], 1, 0.6))).toEqual([0])
  })

  it("totals equal the number of samples and never exceed them", () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 2, max: 5 })
          .chain((k) =>
            fc.tuple(
              fc.constant(k),
              fc.array(
                fc.tuple(
                  fc.integer({ min: 0, max: k - 1 }),
                  fc.array(fc.float({ noNaN: true }), { minLength: k, maxLength: k })
                ),
                { maxLength: 30 }
              )
            )
          ),
        ([k, rows]) => {
          const per = Either.getOrThrow(
            Metrics.correct(
              rows.flatMap(([, l]) => l),
              k,
              rows.map(([y]) => y)
            )
          )
          const [c, t] = Metrics.total(per)
          expect(t).toBe(rows.length)
          expect(c).toBeLessThanOrEqual(t)
          expect(Either.getOrThrow(Metrics.add(per, per)).map(([a]) => a)).toEqual(per.map(([a]) => 2 * a))
        }
      )
    )
  })

  it("names the offending target", () => {
    expect(Either.getLeft(Metrics.correct([1, 0, 0, 1], 2, [1, 3]))).toEqual(
      Option.some(
        new Metrics.InvalidTargets({
          where: "Metrics.correct",
          reason: "target 3 out of bounds for 2 classes",
          index: 1
        })
      )
    )
    expect(Either.getLeft(Metrics.correct([1, 0], 2, [0, 1])).pipe(Option.map((e) => e.message))).toEqual(
      Option.some("Metrics.correct: 1 predictions for 2 targets")
    )
    expect(
      Either.getLeft(
        Metrics.add(
          [[1, 2]],
          [
            [1, 2],
            [0, 0]
          ]
        )
      ).pipe(Option.map((e) => e.reason))
    ).toEqual(Option.some("1 classes vs 2"))
  })
})
