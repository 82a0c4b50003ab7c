import * as tf from "@tensorflow/tfjs-core"
import { Either } from "effect"
import type { MismatchedTree } from "./Errors.js"
import type { Numeric, Params } from "./Numeric.js"
import { type Hyper, type Optimizer, type OptimizerState, step, type Update } from "./Optimizer.js"
import { tensors } from "./OptimizerState.js"

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
  minimum: (a, b) => tf.minimum(a, b),
  sign: (a) => tf.sign(a),
  where: (cond, a, b) => tf.tidy(() => tf.where(tf.notEqual(cond, 0), a, b)),
  clamp: (a, lo, hi) => tf.clipByValue(a, lo, hi),
  neg: (a) => tf.neg(a),
  fullLike: (a, value) => tf.fill(a.shape, value, a.dtype),
  shape: (a) => a.shape,
  toArray: (a) => Float64Array.from(a.dataSync()),
  fromArray: (values, shape) => tf.tensor(Float32Array.from(values), [...shape], "float32")
}

/** Every tensor held by a state (any optimizer's). */
export const stateTensors = (state: OptimizerState<tf.Tensor>): ReadonlyArray<tf.Tensor> => tensors(state)

/**
 * One checked update inside `tf.tidy`: `Optimizer.step` (the check, then the update), its
 * intermediates disposed, the new state and parameters kept. The inputs stay alive (the caller
 * owns them; see `disposeReplaced`). Fails with `MismatchedTree`, before any tensor is made,
 * when the gradients do not fit.
 */
export const tidyUpdate = <S extends OptimizerState<tf.Tensor>>(
  optimizer: Optimizer<tf.Tensor, S>,
  state: S,
  grads: Params<tf.Tensor>,
  params: Params<tf.Tensor>,
  hyper: Hyper,
  N: Numeric<tf.Tensor> = TfNumeric
): Either.Either<Update<tf.Tensor, S>, MismatchedTree> => {
  let result: Either.Either<Update<tf.Tensor, S>, MismatchedTree> | undefined
  // tidy keeps the tensors of what it returns: the update's, or none when the check refused.
  tf.tidy(() => {
    result = step(N, optimizer, state, grads, params, hyper)
    return Either.getOrUndefined(result) as unknown as tf.TensorContainer
  })
  return result!
}

/**
 * Disposes the tensors of `previous` that `next` no longer holds: states (of any optimizer),
 * parameter trees, or plain lists of tensors.
 */
export const disposeReplaced = (
  previous: ReadonlyArray<tf.Tensor> | Params<tf.Tensor> | OptimizerState<tf.Tensor>,
  next: ReadonlyArray<tf.Tensor> | Params<tf.Tensor> | OptimizerState<tf.Tensor>
): void => {
  const kept = new Set(tensorsOf(next))
  for (const t of tensorsOf(previous)) {
    if (!kept.has(t)) t.dispose()
  }
}

const tensorsOf = (
  x: ReadonlyArray<tf.Tensor> | Params<tf.Tensor> | OptimizerState<tf.Tensor>
): ReadonlyArray<tf.Tensor> =>
  Array.isArray(x)
    ? x
    : typeof (x as { step?: unknown }).step === "number"
      ? tensors(x as OptimizerState<tf.Tensor>)
      : Object.values(x as Params<tf.Tensor>)
