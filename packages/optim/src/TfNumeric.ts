import * as tf from "@tensorflow/tfjs-core"
import type { Numeric, Params } from "./Numeric.js"
import type { Hyper, Optimizer, OptimizerState, Update } from "./Optimizer.js"

/**
 * The tfjs backend (tfjs-core only; whichever backend is registered runs it). Tensors keep
 * tfjs' float32 dtype. Every operation allocates a new tensor: wrap updates in `tidyUpdate` so
 * intermediates are released, and dispose replaced states with `disposeReplaced`.
 */
export const TfNumeric: Numeric<tf.Tensor> = {
  name: "tfjs",
  add: (a, b) => tf.add(a, b),
  sub: (a, b) => tf.sub(a, b),
  mul: (a, b) => tf.mul(a, b),
  div: (a, b) => tf.div(a, b),
  scale: (a, s) => tf.mul(a, tf.scalar(s)),
  addScalar: (a, s) => tf.add(a, tf.scalar(s)),
  sqrt: (a) => tf.sqrt(a),
  abs: (a) => tf.abs(a),
  maximum: (a, b) => tf.maximum(a, b),
  neg: (a) => tf.neg(a),
  fullLike: (a, value) => tf.fill(a.shape, value, a.dtype),
  shape: (a) => a.shape,
  toArray: (a) => Float64Array.from(a.dataSync()),
  fromArray: (values, shape) => tf.tensor(Float32Array.from(values), [...shape], "float32")
}

/** Every tensor held by a state. */
export const stateTensors = (state: OptimizerState<tf.Tensor>): ReadonlyArray<tf.Tensor> =>
  Object.values(state.slots).flatMap((slot) => Object.values(slot))

/**
 * One update inside `tf.tidy`: the intermediates are disposed, the new state and parameters are
 * kept. The inputs stay alive (the caller owns them; see `disposeReplaced`).
 */
export const tidyUpdate = (
  optimizer: Optimizer<tf.Tensor>,
  state: OptimizerState<tf.Tensor>,
  grads: Params<tf.Tensor>,
  params: Params<tf.Tensor>,
  hyper: Hyper
): Update<tf.Tensor> =>
  tf.tidy(() => {
    const next = optimizer.update(state, grads, params, hyper)
    return { state: next.state, params: next.params } as unknown as tf.TensorContainer
  }) as unknown as Update<tf.Tensor>

/** Disposes the tensors of `previous` that `next` no longer holds (an old state or parameter tree). */
export const disposeReplaced = (
  previous: ReadonlyArray<tf.Tensor> | Params<tf.Tensor>,
  next: ReadonlyArray<tf.Tensor> | Params<tf.Tensor>
): void => {
  const kept = new Set(Array.isArray(next) ? next : Object.values(next))
  for (const t of Array.isArray(previous) ? previous : Object.values(previous)) {
    if (!kept.has(t)) t.dispose()
  }
}
