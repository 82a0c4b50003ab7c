import { Float64, Numeric, type Optimizer, OptimizerState, Optimizers, TfNumeric } from "@stepwise/optim"
import "@tensorflow/tfjs-backend-cpu" // registers the "cpu" backend
import { maxRelErr } from "@stepwise/optim/testing"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { fixture, normRelErr } from "./golden.js"

interface Case {
  readonly name: string
  readonly config: unknown
  readonly dtype: "float64" | "float32"
  readonly params: Record<string, { shape: number[]; values: number[] }>
  readonly grads: ReadonlyArray<Record<string, number[]>>
  readonly hypers: ReadonlyArray<Optimizer.Hyper> | null
  readonly trajectory: ReadonlyArray<{
    params: Record<string, number[]>
    step: number | null
    slots: Record<string, Record<string, number[]>>
  }>
}

const { cases } = fixture<{ cases: ReadonlyArray<Case> }>("optimizers.json")

/** Runs a fixture's gradient sequence and returns the worst relative error over params and state. */
const replay = <T>(
  N: Numeric.Numeric<T>,
  c: Case,
  err: (a: ArrayLike<number>, e: ArrayLike<number>) => number
): number => {
  const config = Effect.runSync(Optimizers.decode(c.config))
  const opt = Effect.runSync(Optimizers.fromConfig(config))(N)
  const shapes = Object.fromEntries(Object.entries(c.params).map(([k, v]) => [k, v.shape]))
  let params: Numeric.Params<T> = Numeric.mapParams(c.params, (p) => N.fromArray(p.values, p.shape))
  let state = opt.init(params)
  let worst = 0
  c.grads.forEach((g, t) => {
    const grads = Numeric.mapParams(g, (values, name) => N.fromArray(values, shapes[name]))
    const next = opt.update(state, grads, params, c.hypers?.[t] ?? opt.defaults)
    params = next.params
    state = next.state
    const expected = c.trajectory[t]
    // torch's SGD keeps no step count
    if (expected.step !== null) expect(state.step).toBe(expected.step)
    expect(Object.keys(OptimizerState.slotsOf(state)).sort()).toEqual(Object.keys(expected.slots).sort())
    for (const name of Object.keys(shapes)) {
      const e = err(N.toArray(params[name]), expected.params[name])
      worst = Math.max(worst, e)
      for (const slot of Object.keys(expected.slots)) {
        const e = err(N.toArray(OptimizerState.slotsOf(state)[slot][name]), expected.slots[slot][name])
        worst = Math.max(worst, e)
      }
    }
  })
  return worst
}

describe("optimizers against torch.optim 1.13 trajectories", () => {
  beforeAll(async () => {
    await tf.setBackend("cpu")
  })

  it("has the fixture cases", () => {
    expect(cases.length).toBe(60)
  })

  for (const c of cases.filter((c) => c.dtype === "float64")) {
    it(`float64: ${c.name} (elementwise rel err <= 1e-9)`, () => {
      expect(replay(Float64.Float64, c, (a, e) => maxRelErr(a, e))).toBeLessThanOrEqual(1e-9)
    })
  }

  for (const c of cases.filter((c) => c.dtype === "float32")) {
    it(`tfjs float32: ${c.name} (norm-wise rel err <= 1e-5)`, () => {
      const before = tf.memory().numTensors
      const worst = tf.tidy(() => replay(TfNumeric.TfNumeric, c, normRelErr))
      expect(tf.memory().numTensors).toBe(before)
      expect(worst).toBeLessThanOrEqual(1e-5)
    })
  }
})
