import { Float64, Optimizers, TfNumeric } from "@stepwise/optim"
import "@tensorflow/tfjs-backend-cpu" // registers the "cpu" backend
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import { beforeAll, describe, expect, it } from "vitest"

beforeAll(async () => {
  await tf.setBackend("cpu")
})

const configs = [
  { _tag: "SGD", lr: 0.1, momentum: 0.9, nesterov: true },
  { _tag: "Adam", amsgrad: true },
  { _tag: "AdamW" },
  { _tag: "RMSprop", centered: true, momentum: 0.5 },
  { _tag: "Adagrad" }
]

describe("TfNumeric: training-loop tensor hygiene", () => {
  for (const input of configs) {
    it(`${input._tag}: tidyUpdate + disposeReplaced keep the tensor count flat over 50 steps`, () => {
      const opt = Effect.runSync(Effect.flatMap(Optimizers.decode(input), Optimizers.fromConfig))(
        TfNumeric.TfNumeric
      )
      let params = { "fc1.weight": tf.randomNormal([4, 3], 0, 1, "float32", 1), "fc1.bias": tf.zeros([4]) }
      const grads = { "fc1.weight": tf.randomNormal([4, 3], 0, 1, "float32", 2), "fc1.bias": tf.ones([4]) }
      let state = opt.init(params)
      const counts: Array<number> = []
      for (let t = 0; t < 50; t++) {
        const next = Either.getOrThrow(TfNumeric.tidyUpdate(opt, state, grads, params, opt.defaults))
        TfNumeric.disposeReplaced(TfNumeric.stateTensors(state), TfNumeric.stateTensors(next.state))
        TfNumeric.disposeReplaced(params, next.params)
        state = next.state
        params = next.params as typeof params
        counts.push(tf.memory().numTensors)
      }
      // flat from the first step (SGD's buffers appear then)
      expect(new Set(counts).size).toBe(1)
      // the state never aliases the caller's gradients
      for (const t of TfNumeric.stateTensors(state)) expect(Object.values(grads)).not.toContain(t)
      tf.dispose([...Object.values(params), ...Object.values(grads), ...TfNumeric.stateTensors(state)])
    })
  }

  it("round-trips values through toArray / fromArray with float32 rounding only", () => {
    const values = [0.1, -2.5, 1e-8, 3]
    const t = TfNumeric.TfNumeric.fromArray(values, [2, 2])
    expect(TfNumeric.TfNumeric.shape(t)).toEqual([2, 2])
    expect(Array.from(TfNumeric.TfNumeric.toArray(t))).toEqual(values.map(Math.fround))
    t.dispose()
    const f = Float64.Float64.fromArray(values, [4])
    expect(Array.from(Float64.Float64.toArray(f))).toEqual(values)
    expect(() => Float64.make([1, 2, 3], [2, 2])).toThrow(RangeError)
  })
})
