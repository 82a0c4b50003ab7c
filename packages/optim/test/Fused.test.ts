import { Float64, type Numeric, Optimizers } from "@stepwise/optim"
import { Arb, optimizerOf, run } from "@stepwise/optim/testing"
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"

type T = Float64.Tensor

/**
 * A reference for the `fused` hook: PyTorch's update rules written per element (the shape of an
 * engine kernel), independent of optim's composed definitions. It counts its calls, so the test
 * can tell that the hook was taken.
 */
const referenceFused = () => {
  const calls = { adam: 0, sgd: 0 }
  const adam = (
    { param, grad, expAvg, expAvgSq, maxExpAvgSq }: Numeric.AdamTensors<T> & { readonly grad: T },
    s: Numeric.AdamStep
  ): Numeric.AdamTensors<T> => {
    const n = param.data.length
    const [p, m, v, vmax] = [
      new Float64Array(n),
      new Float64Array(n),
      new Float64Array(n),
      new Float64Array(n)
    ]
    for (let i = 0; i < n; i++) {
      let g = s.maximize ? -grad.data[i] : grad.data[i]
      let pi = param.data[i]
      if (s.weightDecay !== 0) {
        if (s.decoupled) pi *= 1 - s.lr * s.weightDecay
        else g += s.weightDecay * pi
      }
      m[i] = expAvg.data[i] * s.beta1 + g * (1 - s.beta1)
      v[i] = expAvgSq.data[i] * s.beta2 + g * g * (1 - s.beta2)
      vmax[i] = maxExpAvgSq === undefined ? v[i] : Math.max(maxExpAvgSq.data[i], v[i])
      const denom = Math.sqrt(vmax[i]) * (1 / Math.sqrt(1 - s.beta2 ** s.step)) + s.eps
      p[i] = pi - (m[i] / denom) * (s.lr / (1 - s.beta1 ** s.step))
    }
    const t = (data: Float64Array) => ({ shape: param.shape, data })
    return { param: t(p), expAvg: t(m), expAvgSq: t(v), maxExpAvgSq: s.amsgrad ? t(vmax) : undefined }
  }
  const sgd = (
    { param, grad, momentumBuffer }: Numeric.SgdTensors<T> & { readonly grad: T },
    s: Numeric.SgdStep
  ): Numeric.SgdTensors<T> => {
    const n = param.data.length
    const [p, buf] = [new Float64Array(n), new Float64Array(n)]
    for (let i = 0; i < n; i++) {
      let g = s.maximize ? -grad.data[i] : grad.data[i]
      if (s.weightDecay !== 0) g += param.data[i] * s.weightDecay
      if (s.momentum === 0) {
        p[i] = param.data[i] - g * s.lr
        continue
      }
      buf[i] =
        s.first || momentumBuffer === undefined
          ? g
          : momentumBuffer.data[i] * s.momentum + (s.dampening === 0 ? g : g * (1 - s.dampening))
      p[i] = param.data[i] - (s.nesterov ? g + buf[i] * s.momentum : buf[i]) * s.lr
    }
    const t = (data: Float64Array) => ({ shape: param.shape, data })
    return { param: t(p), momentumBuffer: s.momentum === 0 ? undefined : t(buf) }
  }
  // One call per step over every parameter (the multi-tensor hook), per element inside.
  const fused: Numeric.Fused<T> = {
    adam: (inputs, s) => {
      calls.adam++
      return inputs.map((i) => adam(i, s))
    },
    sgd: (inputs, s) => {
      calls.sgd++
      return inputs.map((i) => sgd(i, s))
    }
  }
  return { fused, calls }
}

describe("Adam, AdamW and SGD take the numeric's fused hook when it has one, with the same result", () => {
  it("the fused path equals the composed path: parameters and every slot after every step (rel err <= 1e-12)", () => {
    const { fused, calls } = referenceFused()
    const withFused: Numeric.Numeric<T> = { ...Float64.Float64, name: "float64+fused", fused }
    const configs = Arb.optimizerConfig().filter(
      (c) => c._tag === "SGD" || c._tag === "Adam" || c._tag === "AdamW"
    )
    fc.assert(
      fc.property(configs, Arb.problem({ maxSteps: 5 }), (config, problem) => {
        const def = optimizerOf(config)
        const hyper = Optimizers.defaults(config)
        const composed = run(def(Float64.Float64), problem.params, problem.grads, () => hyper)
        const viaHook = run(def(withFused), problem.params, problem.grads, () => hyper)
        for (let t = 0; t < composed.states.length; t++) {
          const [a, b] = [composed.trajectory[t], viaHook.trajectory[t]]
          for (const name of Object.keys(a)) close(b[name].data, a[name].data, `step ${t} ${name}`)
          const [sa, sb] = [composed.states[t], viaHook.states[t]]
          expect(Object.keys(sb).sort()).toEqual(Object.keys(sa).sort())
          for (const slot of Object.keys(sa)) {
            if (slot === "step") continue
            const [ta, tb] = [sa[slot] as Numeric.Params<T>, sb[slot] as Numeric.Params<T>]
            for (const name of Object.keys(ta))
              close(tb[name].data, ta[name].data, `step ${t} ${slot}:${name}`)
          }
        }
      }),
      { numRuns: 300 }
    )
    expect(calls.adam).toBeGreaterThan(100)
    expect(calls.sgd).toBeGreaterThan(100)
  })
})

const close = (actual: Float64Array, expected: Float64Array, what: string) => {
  const scale = Math.max(1e-12, ...Array.from(expected, Math.abs))
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= 1e-12 * scale))
      throw new Error(`${what}[${i}]: fused ${actual[i]} vs composed ${expected[i]}`)
  }
}
