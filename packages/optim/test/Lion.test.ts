import { type Errors, Float64, type Numeric, Optimizer, TfNumeric } from "@stepwise/optim"
import { Arb, Laws, type Problem } from "@stepwise/optim/testing"
import "@tensorflow/tfjs-backend-cpu" // registers the "cpu" backend
import * as tf from "@tensorflow/tfjs-core"
import * as fc from "fast-check"
import { beforeAll, describe, expect, it } from "vitest"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

/**
 * Lion (Chen et al. 2023) as a user writes it against `Numeric`, with the ops round 2 added:
 *   c = b1 m + (1 - b1) g;  p = p (1 - lr wd) - lr sign(c);  m = b2 m + (1 - b2) g
 */
interface LionOptions {
  readonly lr: number
  readonly betas: readonly [number, number]
  readonly weightDecay: number
}
type LionState<T> = { readonly step: number; readonly expAvg: Numeric.Params<T> }

const lion =
  (o: LionOptions) =>
  <T>(N: Numeric.Numeric<T>): Optimizer.Optimizer<T, LionState<T>> => ({
    name: "Lion",
    defaults: { lr: o.lr },
    init: (params) => ({ step: 0, expAvg: Optimizer.filled(N, params, 0) }),
    update: (state, grads, params, hyper) => {
      const [b1, b2] = o.betas
      const next = Optimizer.perParameter(params, (name, p) => {
        const [g, m] = [grads[name], state.expAvg[name]]
        const c = N.add(N.scale(m, b1), N.scale(g, 1 - b1))
        const decayed = o.weightDecay === 0 ? p : N.scale(p, 1 - hyper.lr * o.weightDecay)
        return {
          param: N.sub(decayed, N.scale(N.sign(c), hyper.lr)),
          slots: { expAvg: N.add(N.scale(m, b2), N.scale(g, 1 - b2)) }
        }
      })
      return { state: { step: state.step + 1, expAvg: next.slots.expAvg }, params: next.params }
    }
  })

const options: LionOptions = { lr: 0.1, betas: [0.9, 0.99], weightDecay: 0 }

describe("a user's Lion, written against Numeric, passes the kit", () => {
  it("purity, state round trip, zero-gradient fixed point", () => {
    Laws.checkOptimizer(lion(options), { numRuns: 150 })
  })

  it("equals its per-element equation, with weight decay", () => {
    const o = { ...options, weightDecay: 0.1 }
    fc.assert(
      Laws.matchesReference(lion(o), {
        initial: 0,
        step: (m, p, g, h) => {
          const c = o.betas[0] * m + (1 - o.betas[0]) * g
          return {
            param: p * (1 - h.lr * o.weightDecay) - h.lr * Math.sign(c),
            memory: o.betas[1] * m + (1 - o.betas[1]) * g
          }
        }
      }),
      { numRuns: 300 }
    )
  })

  it("tfjs follows float64, allowing the sign flips float32 rounding causes near 0 (mismatchFraction)", () => {
    const before = tf.memory().numTensors
    fc.assert(
      Laws.backendsAgree(lion(options), TfNumeric.TfNumeric, {
        scope: (f) => tf.tidy(f),
        mismatchFraction: 0.05
      }),
      { numRuns: 150 }
    )
    expect(tf.memory().numTensors).toBe(before)
  })

  it("mismatchFraction is what lets a discontinuous update through, and no more", () => {
    // a backend that flips the sign of element 0 of every tensor of >= 20 elements: at most
    // 1 element in 20 differs (by 2 lr), the discontinuity a float32 rounding can cause
    const flipping: Numeric.Numeric<Float64.Tensor> = {
      ...Float64.Float64,
      name: "flipping",
      sign: (a) => {
        const s = Float64.Float64.sign(a)
        if (s.data.length >= 20) (s.data as Float64Array)[0] = -s.data[0]
        return s
      }
    }
    const strict = fc.check(
      Laws.backendsAgree(lion(options), flipping, { tolerance: 1e-9, randomHyper: false }),
      {
        numRuns: 200
      }
    )
    expect(strict.failed).toBe(true)
    expect(String(strict.errorInstance)).toMatch(
      /law backendsAgree broken at parameter "[^"]+", element 0, step \d+/
    )
    fc.assert(
      Laws.backendsAgree(lion(options), flipping, {
        tolerance: 1e-9,
        randomHyper: false,
        mismatchFraction: 0.05
      }),
      { numRuns: 200 }
    )
  })
})

describe("a failing law names the law, parameter, element and step, with expected and actual", () => {
  /** SGD with momentum whose buffer is stored before its update: wrong from step 3 on. */
  const buggy =
    (lr: number, momentum: number) =>
    <T>(
      N: Numeric.Numeric<T>
    ): Optimizer.Optimizer<T, { step: number; momentumBuffer?: Numeric.Params<T> }> => ({
      name: "BuggySGD",
      defaults: { lr, momentum },
      init: () => ({ step: 0 }),
      update: (state, grads, params, hyper) => {
        const next = Optimizer.perParameter(params, (name, p) => {
          const previous = state.momentumBuffer?.[name]
          const g = grads[name]
          const buf = previous === undefined ? g : N.add(N.scale(previous, momentum), g)
          return { param: N.sub(p, N.scale(buf, hyper.lr)), slots: { momentumBuffer: previous ?? g } }
        })
        return {
          state: { step: state.step + 1, momentumBuffer: next.slots.momentumBuffer },
          params: next.params
        }
      }
    })

  it("the shrunk counter-example is 3 steps of readable values, and the message locates the difference", () => {
    const details = fc.check(
      Laws.matchesReference(
        buggy(0.5, 0.5),
        {
          initial: undefined as number | undefined,
          step: (buf, p, g, h) => {
            const next = buf === undefined ? g : 0.5 * buf + g
            return { param: p - h.lr * next, memory: next }
          }
        },
        { randomHyper: false }
      ),
      { numRuns: 200 }
    )
    expect(details.failed).toBe(true)
    const error = details.errorInstance as Errors.LawViolation
    expect(error._tag).toBe("LawViolation")
    expect([error.law, error.step]).toEqual(["matchesReference", 3])
    expect(error.message).toMatch(
      /^law matchesReference broken at parameter "[^"]+", element \d+, step 3: expected -?[\d.e-]+, actual -?[\d.e-]+ \(/
    )
    const [{ problem }] = details.counterexample as unknown as [{ problem: Problem }]
    expect(problem.grads.length).toBe(3)
    // no subnormal noise: every value is 0 or of a readable magnitude
    const values = [problem.params, ...problem.grads].flatMap((tree) =>
      Object.values(tree).flatMap((t) => Array.from(t.data))
    )
    for (const x of values) expect(x === 0 || Math.abs(x) >= 1e-3).toBe(true)
  })
})

describe("purity names the input an update mutated", () => {
  it("an optimizer that writes into its parameter array fails at step 1 on that parameter", () => {
    const inPlace =
      (lr: number) =>
      <T>(N: Numeric.Numeric<T>): Optimizer.Optimizer<T, { step: number }> => ({
        name: "InPlace",
        defaults: { lr },
        init: () => ({ step: 0 }),
        update: (state, grads, params, hyper) => {
          const next = Optimizer.perParameter(params, (name, p) => {
            const out = N.sub(p, N.scale(grads[name], hyper.lr))
            // the bug: also overwrite the caller's tensor (Float64's data is a plain array)
            ;(p as unknown as Float64.Tensor).data.set((out as unknown as Float64.Tensor).data)
            return { param: out, slots: {} }
          })
          return { state: { step: state.step + 1 }, params: next.params }
        }
      })
    const details = fc.check(Laws.purity(inPlace(0.5), { randomHyper: false }), { numRuns: 100 })
    expect(details.failed).toBe(true)
    expect(String((details.errorInstance as Errors.LawViolation).message)).toMatch(
      /^law purity broken at parameter "[^"]+", element \d+, step 1: expected -?[\d.e-]+, actual -?[\d.e-]+ \(update mutated its inputs/
    )
  })
})

describe("Numeric's sign, where, clamp and minimum agree on Float64 and tfjs", () => {
  it("elementwise, on random tensors (tfjs float32 inputs are exact: the arbitraries draw float32 values)", () => {
    const F = Float64.Float64
    const N = TfNumeric.TfNumeric
    fc.assert(
      fc.property(
        Arb.shape().chain((shape) => fc.tuple(Arb.tensor(shape), Arb.tensor(shape), Arb.tensor(shape))),
        Arb.value(),
        Arb.value(),
        ([a, b, c], x, y) => {
          const [lo, hi] = [Math.min(x, y), Math.max(x, y)]
          const expected = {
            sign: Array.from(a.data, Math.sign),
            where: Array.from(c.data, (ci, i) => (ci !== 0 ? a.data[i] : b.data[i])),
            clamp: Array.from(a.data, (v) => Math.min(Math.max(v, lo), hi)),
            minimum: Array.from(a.data, (v, i) => Math.min(v, b.data[i]))
          }
          const f64 = {
            sign: F.sign(a),
            where: F.where(c, a, b),
            clamp: F.clamp(a, lo, hi),
            minimum: F.minimum(a, b)
          }
          const tfjs = tf.tidy(() => {
            const [ta, tb, tc] = [a, b, c].map((t) => N.fromArray(t.data, t.shape))
            return {
              sign: Array.from(N.toArray(N.sign(ta))),
              where: Array.from(N.toArray(N.where(tc, ta, tb))),
              clamp: Array.from(N.toArray(N.clamp(ta, lo, hi))),
              minimum: Array.from(N.toArray(N.minimum(ta, tb)))
            }
          })
          for (const op of ["sign", "where", "clamp", "minimum"] as const) {
            expect(Array.from(f64[op].data).map((v) => v + 0)).toEqual(expected[op].map((v) => v + 0))
            expect(tfjs[op].map((v) => v + 0)).toEqual(expected[op].map((v) => v + 0))
          }
        }
      ),
      { numRuns: 200 }
    )
  })
})
