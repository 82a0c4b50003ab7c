import { Adam, Float64, Optimizer, OptimizerState, Optimizers, Shape, TfNumeric } from "@stepwise/optim"
import { sameShape } from "@stepwise/optim/Shape"
import "@tensorflow/tfjs-backend-cpu" // registers the "cpu" backend
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either, Schema } from "effect"
import { beforeAll, describe, expect, it } from "vitest"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const adam = Effect.runSync(Effect.flatMap(Optimizers.decode({ _tag: "Adam" }), Optimizers.fromConfig))

describe("a gradient tree that does not fit the parameters is a typed MismatchedTree (issue 10 item 10)", () => {
  const F = Float64.Float64
  const params = { w: Float64.make([1, 2, 3], [3, 1]), b: Float64.make([0], [1]) }
  const cases: ReadonlyArray<[string, Record<string, Float64.Tensor>, object, string]> = [
    [
      "a [1, 3] gradient for a [3, 1] parameter",
      { w: Float64.make([1, 1, 1], [1, 3]), b: Float64.make([1], [1]) },
      { parameter: "w", expected: [3, 1], actual: [1, 3] },
      "gradient of w has shape [1, 3], the parameter [3, 1]"
    ],
    [
      "a missing gradient",
      { w: Float64.make([1, 1, 1], [3, 1]) },
      { parameter: "b", expected: [1] },
      "parameter b has no gradient"
    ],
    [
      "an extra gradient",
      { w: Float64.make([1, 1, 1], [3, 1]), b: Float64.make([1], [1]), c: Float64.make([1], [1]) },
      { parameter: "c", actual: [1] },
      "gradient c matches no parameter"
    ]
  ]
  for (const [what, grads, fields, message] of cases) {
    it(`Float64: ${what}`, () => {
      const opt = adam(F)
      const r = Optimizer.step(F, opt, opt.init(params), grads, params, opt.defaults)
      expect(Either.isLeft(r)).toBe(true)
      if (Either.isLeft(r)) {
        expect(r.left._tag).toBe("MismatchedTree")
        expect(r.left).toMatchObject(fields)
        expect(r.left.message).toBe(message)
      }
    })
  }

  it("Float64: matching trees update", () => {
    const opt = adam(F)
    const grads = { w: Float64.make([1, 1, 1], [3, 1]), b: Float64.make([1], [1]) }
    const r = Optimizer.step(F, opt, opt.init(params), grads, params, opt.defaults)
    // Adam's first step: p - lr * g / (|g| + eps)
    const got = Either.isRight(r) ? Array.from(r.right.params.w.data) : []
    expect(got.length).toBe(3)
    for (const [i, x] of got.entries()) expect(x).toBeCloseTo(i + 1 - 1e-3 / (1 + 1e-8), 15)
  })

  it("tfjs: tidyUpdate refuses the [1, 3] gradient that tfjs would broadcast into a [3, 3] parameter, leaking nothing", () => {
    const opt = adam(TfNumeric.TfNumeric)
    const p = { w: tf.tensor([1, 2, 3], [3, 1]) }
    const state = opt.init(p)
    const g = { w: tf.tensor([1, 1, 1], [1, 3]) }
    // what the unchecked update does: the parameter silently becomes [3, 3]
    const unchecked = tf.tidy(() => opt.update(state, g, p, opt.defaults).params.w.shape)
    expect(unchecked).toEqual([3, 3])
    const before = tf.memory().numTensors
    const r = TfNumeric.tidyUpdate(opt, state, g, p, opt.defaults)
    expect(Either.isLeft(r) && r.left).toMatchObject({ parameter: "w", expected: [3, 1], actual: [1, 3] })
    // a missing key is the same typed error, not a TypeError
    const missing = TfNumeric.tidyUpdate(opt, state, {}, p, opt.defaults)
    expect(Either.isLeft(missing) && missing.left.message).toBe("parameter w has no gradient")
    expect(tf.memory().numTensors).toBe(before)
    tf.dispose([...Object.values(p), ...Object.values(g), ...TfNumeric.stateTensors(state)])
  })
})

describe("Shape.sameShape (the one copy optim and data share)", () => {
  it("is equal dimensions in order, with no broadcasting", () => {
    expect(sameShape).toBe(Shape.sameShape)
    expect(sameShape([3, 1], [3, 1])).toBe(true)
    expect(sameShape([], [])).toBe(true)
    expect(sameShape([3, 1], [1, 3])).toBe(false)
    expect(sameShape([1, 3], [3])).toBe(false)
    expect(sameShape([3], [3, 1])).toBe(false)
  })
})

describe("OptimizerState: typed states through one Schema (checkpoints)", () => {
  it("an Adam state encodes to plain numbers and decodes to an Adam.State; a damaged one fails decoding", () => {
    const F = Float64.Float64
    const opt = Effect.runSync(Adam.make({}))(F) // Optimizer<Float64.Tensor, Adam.State<Float64.Tensor>>
    const params = { w: Float64.make([1, -2], [2]) }
    const s1 = Either.getOrThrow(
      Optimizer.step(F, opt, opt.init(params), { w: Float64.make([0.5, 0.25], [2]) }, params, opt.defaults)
    ).state
    const schema = OptimizerState.schema<Float64.Tensor, Adam.State<Float64.Tensor>>(F)
    const encoded = Schema.encodeSync(schema)(s1)
    expect(encoded).toEqual({
      step: 1,
      slots: {
        expAvg: { w: { shape: [2], values: Array.from(s1.expAvg.w.data) } },
        expAvgSq: { w: { shape: [2], values: Array.from(s1.expAvgSq.w.data) } }
      }
    })
    const decoded = Schema.decodeUnknownSync(schema)(JSON.parse(JSON.stringify(encoded)))
    // typed: expAvg is a field of the decoded state, no `slots` indirection
    expect(Array.from(decoded.expAvg.w.data)).toEqual(Array.from(s1.expAvg.w.data))
    expect(OptimizerState.tensors(decoded)).toHaveLength(2)
    const damaged = { step: 1, slots: { expAvg: { w: { shape: [2], values: [1] } } } }
    const r = Schema.decodeUnknownEither(schema)(damaged)
    expect(Either.isLeft(r) && r.left.message).toContain("shape [2] needs 2 values, got 1")
  })
})
