import {
  type Adam,
  type InvalidHyperparameter,
  type Numeric,
  type Optimizer,
  Optimizers,
  type SGD
} from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import * as Fused from "./kernels/Fused.js"

type Tensors = Numeric.Params<tf.Tensor>

const run = (kernel: string, inputs: Record<string, tf.Tensor>, attrs: object): Array<tf.Tensor> =>
  tf.engine().runKernel(kernel, inputs as any, attrs as any) as unknown as Array<tf.Tensor>

/**
 * Adam / AdamW with one fused kernel per parameter tensor. Same state (`expAvg`, `expAvgSq`,
 * `maxExpAvgSq`, step), names, defaults and math as `Adam.adam(c, decoupled)(TfNumeric)`, which
 * the tests hold it to.
 */
export const adam = (c: Adam.Hyperparameters, decoupled: boolean): Optimizer.Optimizer<tf.Tensor> => ({
  name: decoupled ? "AdamW" : "Adam",
  defaults: { lr: c.lr, beta1: c.betas[0] },
  init: (params) => {
    const zeros = (): Tensors =>
      Object.fromEntries(Object.entries(params).map(([k, p]) => [k, tf.zerosLike(p)]))
    const slots = { expAvg: zeros(), expAvgSq: zeros() }
    return { step: 0, slots: c.amsgrad ? { ...slots, maxExpAvgSq: zeros() } : slots }
  },
  update: (state, grads, params, hyper) => {
    const step = state.step + 1
    const attrs: Fused.AdamAttrs = {
      lr: hyper.lr,
      beta1: hyper.beta1 ?? c.betas[0],
      beta2: c.betas[1],
      eps: c.eps,
      weightDecay: c.weightDecay,
      decoupled,
      amsgrad: c.amsgrad,
      maximize: c.maximize,
      step
    }
    const { expAvg, expAvgSq, maxExpAvgSq } = state.slots
    const next: Record<string, Record<string, tf.Tensor>> = { params: {}, expAvg: {}, expAvgSq: {} }
    if (c.amsgrad) next.maxExpAvgSq = {}
    for (const name of Object.keys(params)) {
      const inputs: Record<string, tf.Tensor> = {
        param: params[name],
        grad: grads[name],
        expAvg: expAvg[name],
        expAvgSq: expAvgSq[name]
      }
      if (c.amsgrad) inputs.maxExpAvgSq = maxExpAvgSq[name]
      const [p, m, v, vmax] = run(Fused.AdamUpdate, inputs, attrs)
      next.params[name] = p
      next.expAvg[name] = m
      next.expAvgSq[name] = v
      if (c.amsgrad) next.maxExpAvgSq[name] = vmax
    }
    const { params: newParams, ...slots } = next
    return { state: { step, slots }, params: newParams }
  }
})

/** SGD (momentum, dampening, Nesterov, weight decay) with one fused kernel per parameter tensor. */
export const sgd = (c: SGD.Config): Optimizer.Optimizer<tf.Tensor> => ({
  name: "SGD",
  defaults: { lr: c.lr, momentum: c.momentum },
  init: () => ({ step: 0, slots: {} }),
  update: (state, grads, params, hyper) => {
    const momentum = hyper.momentum ?? c.momentum
    const buffers = state.slots.momentumBuffer
    const newParams: Record<string, tf.Tensor> = {}
    const newBuffers: Record<string, tf.Tensor> = {}
    for (const name of Object.keys(params)) {
      const previous = buffers?.[name]
      const attrs: Fused.SgdAttrs = {
        lr: hyper.lr,
        momentum,
        dampening: c.dampening,
        weightDecay: c.weightDecay,
        nesterov: c.nesterov,
        maximize: c.maximize,
        first: previous === undefined
      }
      const inputs: Record<string, tf.Tensor> = { param: params[name], grad: grads[name] }
      if (momentum !== 0 && previous !== undefined) inputs.momentumBuffer = previous
      const [p, buf] = run(Fused.SgdUpdate, inputs, attrs)
      newParams[name] = p
      if (buf !== undefined) newBuffers[name] = buf
    }
    // With momentum 0 this step, PyTorch leaves any existing buffer untouched.
    const slots = momentum === 0 ? state.slots : { momentumBuffer: newBuffers }
    return { state: { step: state.step + 1, slots }, params: newParams }
  }
})

/**
 * An `OptimizerDef` that is fused on tfjs tensors (cpu and wasm backends) for SGD, Adam and
 * AdamW, and the configured optimizer's own element-wise definition everywhere else (other
 * numerics, other optimizers, the tensorflow backend).
 */
export const def =
  (config: Optimizers.OptimizerConfig, generic: Optimizer.OptimizerDef): Optimizer.OptimizerDef =>
  <T>(N: Numeric.Numeric<T>): Optimizer.Optimizer<T> => {
    if (N.name !== "tfjs" || !Fused.available()) return generic(N)
    switch (config._tag) {
      case "Adam":
        return adam(config, false) as unknown as Optimizer.Optimizer<T>
      case "AdamW":
        return adam(config, true) as unknown as Optimizer.Optimizer<T>
      case "SGD":
        return sgd(config) as unknown as Optimizer.Optimizer<T>
      default:
        return generic(N)
    }
  }

/** optim's `Optimizer` service with the fused definition: a drop-in for `Optimizers.layer`. */
export const layer = (
  config: Optimizers.OptimizerConfig
): Layer.Layer<Optimizers.Optimizer, InvalidHyperparameter.InvalidHyperparameter> =>
  Layer.effect(
    Optimizers.Optimizer,
    Effect.map(Optimizers.fromConfig(config), (generic) => ({
      config,
      def: def(config, generic),
      defaults: Optimizers.defaults(config)
    }))
  )
