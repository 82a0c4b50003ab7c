import { describe, expect, it } from "@effect/vitest"
import { Random } from "@stepwise/data"
import { Adam, AdamW, Float64, type Optimizer, OptimizerState, SGD, TfNumeric } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import * as fc from "fast-check"
import * as F from "./fixtures.js"

const shapes: Record<string, Array<number>> = {
  "conv.weight": [3, 3, 2, 4],
  "conv.bias": [4],
  "fc.weight": [7, 3]
}

/** Gradients of step `t`: deterministic, with some exact zeros and sign changes. */
const gradsAt = (t: number, seed: number): Record<string, Float64Array> =>
  Object.fromEntries(
    Object.entries(shapes).map(([name, shape], k) => {
      const [u] = Random.normals(
        Random.foldIn(Random.unsafeMake(seed), t * 10 + k),
        shape.reduce((a, b) => a * b, 1)
      )
      return [name, Float64Array.from(u, (v, i) => (i % 7 === 0 ? 0 : Math.fround(v)))]
    })
  )

/**
 * `steps` updates by optim's definition on the engine's numeric (fused kernels) on tfjs and by optim's own definition on Float64 (the
 * exact reference); parameters and every slot must agree to float32 precision.
 */
const compare = (
  fused: Optimizer.Optimizer<tf.Tensor>,
  def: Optimizer.OptimizerDef,
  hypers: Array<Optimizer.Hyper>,
  seed: number
) => {
  const ref = def(Float64.Float64)
  const init = gradsAt(-1, seed)
  let pRef: Record<string, Float64.Tensor> = Object.fromEntries(
    Object.entries(shapes).map(([n, s]) => [n, Float64.make(init[n], s)])
  )
  let sRef = ref.init(pRef)
  let pTf: Record<string, tf.Tensor> = Object.fromEntries(
    Object.entries(shapes).map(([n, s]) => [n, tf.tensor(Float32Array.from(init[n]), s)])
  )
  let sTf = fused.init(pTf)
  hypers.forEach((hyper, t) => {
    const g = gradsAt(t, seed)
    const u = ref.update(
      sRef,
      Object.fromEntries(Object.entries(shapes).map(([n, s]) => [n, Float64.make(g[n], s)])),
      pRef,
      hyper
    )
    pRef = u.params as Record<string, Float64.Tensor>
    sRef = u.state
    const gTf = Object.fromEntries(
      Object.entries(shapes).map(([n, s]) => [n, tf.tensor(Float32Array.from(g[n]), s)])
    )
    const v = fused.update(sTf, gTf, pTf, hyper)
    tf.dispose(Object.values(gTf))
    TfNumeric.disposeReplaced(TfNumeric.stateTensors(sTf), TfNumeric.stateTensors(v.state))
    TfNumeric.disposeReplaced(pTf, v.params)
    pTf = v.params as Record<string, tf.Tensor>
    sTf = v.state
  })
  const close = (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => {
    for (let i = 0; i < b.length; i++) {
      if (Math.abs(a[i] - b[i]) > 2e-6 * (1 + Math.abs(b[i])))
        throw new Error(`${what}[${i}]: ${a[i]} vs ${b[i]}`)
    }
  }
  expect(sTf.step).toBe(sRef.step)
  const [slotsTf, slotsRef] = [OptimizerState.slotsOf(sTf), OptimizerState.slotsOf(sRef)]
  expect(Object.keys(slotsTf).sort()).toEqual(Object.keys(slotsRef).sort())
  for (const n of Object.keys(shapes)) {
    close(pTf[n].dataSync(), pRef[n].data, n)
    for (const slot of Object.keys(slotsRef))
      close(slotsTf[slot][n].dataSync(), slotsRef[slot][n].data, `${slot}.${n}`)
  }
  tf.dispose([...Object.values(pTf), ...TfNumeric.stateTensors(sTf)])
}

const lr = fc.double({ min: 1e-4, max: 0.5, noNaN: true })

describe("the engine's numeric (fused kernels) equals optim's definitions on exact Float64", () => {
  for (const backend of ["wasm", "cpu"] as const) {
    it(`Adam and AdamW, any options (${backend})`, async () => {
      const { numeric } = await F.useEngine(backend)
      fc.assert(
        fc.property(
          fc.record({
            lr,
            beta1: fc.double({ min: 0, max: 0.99, noNaN: true }),
            beta2: fc.double({ min: 0.5, max: 0.9999, noNaN: true }),
            eps: fc.constantFrom(1e-8, 1e-3),
            weightDecay: fc.constantFrom(0, 0.01, 0.1),
            amsgrad: fc.boolean(),
            maximize: fc.boolean(),
            decoupled: fc.boolean(),
            cycle: fc.boolean(),
            seed: fc.integer()
          }),
          (o) => {
            const c = {
              lr: o.lr,
              betas: [o.beta1, o.beta2] as const,
              eps: o.eps,
              weightDecay: o.weightDecay,
              amsgrad: o.amsgrad,
              maximize: o.maximize
            }
            const def = o.decoupled
              ? AdamW.optimizer({ _tag: "AdamW", ...c })
              : Adam.optimizer({ _tag: "Adam", ...c })
            // A cyclic scheduler drives lr and beta1 step by step.
            const hypers = Array.from({ length: 12 }, (_, t) =>
              o.cycle ? { lr: o.lr * (1 + (t % 3)), beta1: 0.8 + 0.01 * t } : { lr: o.lr }
            )
            compare(def(numeric), def, hypers, o.seed)
          }
        ),
        { numRuns: 40 }
      )
    })

    it(`SGD: momentum, dampening, Nesterov, weight decay, momentum cycled through 0 (${backend})`, async () => {
      const { numeric } = await F.useEngine(backend)
      fc.assert(
        fc.property(
          fc.record({
            lr,
            momentum: fc.constantFrom(0, 0.5, 0.9),
            dampening: fc.constantFrom(0, 0.3),
            weightDecay: fc.constantFrom(0, 1e-3),
            nesterov: fc.boolean(),
            maximize: fc.boolean(),
            cycle: fc.boolean(),
            seed: fc.integer()
          }),
          (o) => {
            const c = {
              _tag: "SGD" as const,
              ...o,
              nesterov: o.nesterov && o.momentum > 0 && o.dampening === 0
            }
            const hypers = Array.from({ length: 12 }, (_, t) =>
              o.cycle ? { lr: o.lr, momentum: [0, 0.9, 0.8, 0][t % 4] } : { lr: o.lr }
            )
            compare(SGD.optimizer(c)(numeric), SGD.optimizer(c), hypers, o.seed)
          }
        ),
        { numRuns: 40 }
      )
    })
  }

  for (const backend of ["wasm", "cpu"] as const) {
    it(`optim's Adam on the engine's numeric runs one fused kernel per step over all parameters; plain TfNumeric composes ops (${backend})`, async () => {
      const { numeric } = await F.useEngine(backend)
      const def = Adam.optimizer(Adam.Config.make({ lr: 3e-4 }))
      const kernelsOf = async (o: Optimizer.Optimizer<tf.Tensor>) => {
        const params = { w: tf.ones([3]), b: tf.ones([2]) }
        const grads = { w: tf.ones([3]), b: tf.ones([2]) }
        const state = o.init(params)
        const info = await tf.profile(() => {
          const u = o.update(state, grads, params, o.defaults)
          tf.dispose([...Object.values(u.params), ...TfNumeric.stateTensors(u.state)])
        })
        tf.dispose([...Object.values(params), ...Object.values(grads), ...TfNumeric.stateTensors(state)])
        return info.kernels.map((k) => k.name)
      }
      expect(await kernelsOf(def(numeric))).toEqual(["StepwiseAdamUpdate"])
      expect((await kernelsOf(def(TfNumeric.TfNumeric))).length).toBeGreaterThan(10)
    })
  }
})
