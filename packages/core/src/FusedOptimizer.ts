import {
  Adam,
  type InvalidHyperparameter,
  type Numeric,
  type Optimizer,
  Optimizers,
  SGD,
  TfNumeric
} from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer } from "effect"
import * as Fused from "./kernels/Fused.js"

const run = (kernel: string, inputs: Record<string, tf.Tensor>, attrs: object): Array<tf.Tensor> =>
  tf.engine().runKernel(kernel, inputs as any, attrs as any) as unknown as Array<tf.Tensor>

/**
 * The tfjs numeric whose `fused` hook runs the engine's kernels: optim's Adam/AdamW/SGD call
 * them per parameter instead of composing element-wise ops (one definition per algorithm).
 */
export const numeric: Numeric.Numeric<tf.Tensor> = {
  ...TfNumeric.TfNumeric,
  fused: {
    adam: (inputs, step) => {
      const ins: Record<string, tf.Tensor> = {
        param: inputs.param,
        grad: inputs.grad,
        expAvg: inputs.expAvg,
        expAvgSq: inputs.expAvgSq
      }
      if (step.amsgrad && inputs.maxExpAvgSq !== undefined) ins.maxExpAvgSq = inputs.maxExpAvgSq
      const [param, expAvg, expAvgSq, maxExpAvgSq] = run(Fused.AdamUpdate, ins, step)
      return { param, expAvg, expAvgSq, maxExpAvgSq }
    },
    sgd: (inputs, step) => {
      const ins: Record<string, tf.Tensor> = { param: inputs.param, grad: inputs.grad }
      if (step.momentum !== 0 && !step.first && inputs.momentumBuffer !== undefined)
        ins.momentumBuffer = inputs.momentumBuffer
      const [param, momentumBuffer] = run(Fused.SgdUpdate, ins, step)
      return { param, momentumBuffer }
    }
  }
}

/** Adam / AdamW on the fused numeric. */
export const adam = (c: Adam.Hyperparameters, decoupled: boolean): Optimizer.Optimizer<tf.Tensor> =>
  Adam.adam(c, decoupled)(numeric)

/** SGD on the fused numeric. */
export const sgd = (c: SGD.Config): Optimizer.Optimizer<tf.Tensor> => SGD.optimizer(c)(numeric)

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
