import { type Batch, type Errors as DataErrors, Random } from "@stepwise/data"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import { Engine } from "./Engine.js"
import { type InvalidLayer, InvalidTargets, type WeightMismatch } from "./Errors.js"
import { registerGradients } from "./Gradients.js"
import * as Simd from "./kernels/Simd.js"

type InvalidArgument = DataErrors.InvalidArgument

import {
  type ApplyOptions,
  type Buffers,
  catchInvalidLayer,
  checkWeights,
  ctxOf,
  disposeAll,
  type Module,
  type Params
} from "./Module.js"

/** Targets as the data contract delivers them: class indices or float values. */
export type Targets = Int32Array | Float32Array

export { InvalidTargets } from "./Errors.js"

/** A loss value and its gradient with respect to the outputs. */
export interface LossValue {
  readonly loss: number
  readonly grad: Float32Array
}

/**
 * A loss on the model's raw outputs (logits), averaged over the batch like PyTorch's default
 * `reduction='mean'`. `evaluate` is plain arithmetic on the (small) output array in float64:
 * it returns the loss and its gradient with respect to the outputs, which the model's backward
 * takes from there. One download and one upload a step instead of a dozen kernel calls.
 * Targets that do not fit the outputs are an `InvalidTargets` (where PyTorch raises).
 */
export interface Loss {
  readonly name: string
  readonly evaluate: (
    outputs: Float32Array,
    shape: ReadonlyArray<number>,
    targets: Targets
  ) => Either.Either<LossValue, InvalidTargets>
}

const countMismatch = (where: string, targets: number, outputs: number, what: string) =>
  Either.left(new InvalidTargets({ where, reason: `${targets} targets for ${outputs} ${what}` }))

/** nn.CrossEntropyLoss: mean over samples of logsumexp(z) - z[y]. */
export const crossEntropy: Loss = {
  name: "CrossEntropyLoss",
  evaluate: (z, shape, y) => {
    const n = shape[0]
    const k = z.length / n
    if (y.length !== n) return countMismatch("CrossEntropyLoss", y.length, n, "samples")
    const grad = new Float32Array(z.length)
    let total = 0
    for (let i = 0; i < n; i++) {
      const row = i * k
      const label = y[i]
      if (!Number.isInteger(label) || label < 0 || label >= k)
        return Either.left(
          new InvalidTargets({
            where: "CrossEntropyLoss",
            reason: `target ${label} out of bounds for ${k} classes`,
            index: i
          })
        )
      let max = Number.NEGATIVE_INFINITY
      for (let j = 0; j < k; j++) max = Math.max(max, z[row + j])
      let sum = 0
      for (let j = 0; j < k; j++) sum += Math.exp(z[row + j] - max)
      const logSumExp = max + Math.log(sum)
      total += logSumExp - z[row + label]
      for (let j = 0; j < k; j++) {
        grad[row + j] = (Math.exp(z[row + j] - logSumExp) - (j === label ? 1 : 0)) / n
      }
    }
    return Either.right({ loss: total / n, grad })
  }
}

/** nn.MSELoss: mean over all elements of (z - t)^2. */
export const mse: Loss = {
  name: "MSELoss",
  evaluate: (z, _shape, t) => {
    if (t.length !== z.length) return countMismatch("MSELoss", t.length, z.length, "outputs")
    const m = z.length
    const grad = new Float32Array(m)
    let total = 0
    for (let i = 0; i < m; i++) {
      const d = z[i] - t[i]
      total += d * d
      grad[i] = (2 * d) / m
    }
    return Either.right({ loss: total / m, grad })
  }
}

/** nn.BCEWithLogitsLoss: mean of max(z, 0) - z t + log(1 + exp(-|z|)) (the stable form). */
export const bceWithLogits: Loss = {
  name: "BCEWithLogitsLoss",
  evaluate: (z, _shape, t) => {
    if (t.length !== z.length) return countMismatch("BCEWithLogitsLoss", t.length, z.length, "outputs")
    const m = z.length
    const grad = new Float32Array(m)
    let total = 0
    for (let i = 0; i < m; i++) {
      const x = z[i]
      total += Math.max(x, 0) - x * t[i] + Math.log1p(Math.exp(-Math.abs(x)))
      grad[i] = (1 / (1 + Math.exp(-x)) - t[i]) / m
    }
    return Either.right({ loss: total / m, grad })
  }
}

/**
 * A batch's inputs as a tensor: NCHW images become NHWC (tfjs' layout) in one pass. Made on the
 * engine, so it requires it (as `Module.init`).
 */
export const inputTensor = (
  x: Float32Array,
  shape: ReadonlyArray<number>
): Effect.Effect<tf.Tensor, never, Engine> =>
  Effect.zipRight(
    Engine,
    Effect.sync(() => unsafeInputTensor(x, shape))
  )

/**
 * `inputTensor` for code already on an engine: the steps here (`lossAndGrads`, `outputs`), which
 * take parameters only an engine gives, and tests.
 */
export const unsafeInputTensor = (x: Float32Array, shape: ReadonlyArray<number>): tf.Tensor => {
  if (shape.length !== 4) return tf.tensor(x, [...shape], "float32")
  const [n, c, h, w] = shape
  if (tf.getBackend() === "wasm") {
    const direct = x.length === n * c * h * w ? wasmNhwc(x, n, c, h, w) : undefined
    if (direct !== undefined) return direct
    return tf.tidy(() => tf.transpose(tf.tensor4d(x, [n, c, h, w], "float32"), [0, 2, 3, 1]))
  }
  const hw = h * w
  const out = new Float32Array(x.length)
  for (let b = 0; b < n; b++) {
    const base = b * c * hw
    for (let ch = 0; ch < c; ch++) {
      const src = base + ch * hw
      for (let p = 0; p < hw; p++) out[base + p * c + ch] = x[src + p]
    }
  }
  return tf.tensor4d(out, [n, h, w, c], "float32")
}

/**
 * NCHW `x` written as NHWC straight into a new tensor on the wasm heap: one pass, where the
 * upload then a Transpose kernel takes a copy, a second tensor and a kernel call (~28 us
 * instead of ~69 us a batch of 16 28x28 images). Undefined when the heap is not reachable.
 */
const wasmNhwc = (x: Float32Array, n: number, c: number, h: number, w: number): tf.Tensor | undefined => {
  const backend = tf.backend() as unknown as {
    readonly typedArrayFromHeap?: unknown
    write(values: null, shape: ReadonlyArray<number>, dtype: "float32"): object
  }
  if (typeof backend.typedArrayFromHeap !== "function") return undefined
  const shape = [n, h, w, c]
  // As `tf.tensor` makes one (write, then the engine tracks it), without values: only allocated.
  const dataId = backend.write(null, shape, "float32")
  const t = tf.engine().makeTensorFromTensorInfo({ dataId, shape, dtype: "float32" }, backend as never)
  // (the view taken after the allocation, which may have grown the heap and replaced its buffer)
  const heap = Simd.heapView(backend, t)!
  const hw = h * w
  if (c === 3) {
    // RGB, the usual case: each pixel's three values written in a row (~30% faster).
    for (let b = 0, o = 0; b < n; b++) {
      const r = b * 3 * hw
      const g = r + hw
      const bl = g + hw
      for (let p = 0; p < hw; p++, o += 3) {
        heap[o] = x[r + p]
        heap[o + 1] = x[g + p]
        heap[o + 2] = x[bl + p]
      }
    }
    return t
  }
  for (let b = 0; b < n; b++) {
    const base = b * c * hw
    for (let ch = 0; ch < c; ch++) {
      const src = base + ch * hw
      let o = base + ch
      for (let p = 0; p < hw; p++, o += c) heap[o] = x[src + p]
    }
  }
  return t
}

export interface LossAndGrads {
  readonly loss: number
  /** Same names as `params`; owned by the caller (dispose them after the optimizer update). */
  readonly grads: Params
  /**
   * The buffers after this step (BatchNorm's running statistics in training mode; empty for a
   * model without buffers). Owned by the caller; they replace `options.buffers`.
   */
  readonly buffers: Buffers
  /**
   * The model's outputs (logits) the loss was computed from, a host copy: the step already
   * downloads them, so a running training accuracy costs no second forward pass.
   */
  readonly outputs: { readonly values: Float32Array; readonly shape: ReadonlyArray<number> }
}

export interface GradOptions extends ApplyOptions {
  /**
   * Differentiate with tfjs' autodiff (`tf.valueAndGrads`) even when every layer has a
   * hand-written backward (always the case for a model with a `Module.Lambda`).
   */
  readonly autodiff?: boolean | undefined
}

/**
 * The loss as a tfjs op: forward is `loss.evaluate` on the downloaded outputs (float64), its
 * gradient the one `evaluate` computed, so autodiff and the explicit path share one definition.
 * Targets that do not fit go to `onValue` as the error, and the op yields NaN (the caller drops
 * the result).
 */
const lossOp = (
  loss: Loss,
  targets: Targets,
  onValue: (
    value: Either.Either<number, InvalidTargets>,
    outputs: Float32Array,
    shape: ReadonlyArray<number>
  ) => void
) =>
  tf.customGrad((...args: Array<any>) => {
    const [z, save] = args as [tf.Tensor, tf.GradSaveFunc]
    const values = (z.dataSync() as Float32Array).slice()
    const evaluated = loss.evaluate(values, z.shape, targets)
    onValue(
      Either.map(evaluated, (r) => r.loss),
      values,
      z.shape
    )
    const { loss: value, grad } = Either.getOrElse(evaluated, () => ({
      loss: Number.NaN,
      grad: new Float32Array(z.size)
    }))
    save([tf.tensor(grad, z.shape, "float32")])
    return {
      value: tf.scalar(value),
      gradFunc: (dy: tf.Tensor | Array<tf.Tensor>, [g]: Array<tf.Tensor>) => tf.mul(dy as tf.Tensor, g)
    }
  })

/**
 * One forward and backward pass: the mean loss of `batch` and the gradient of every parameter.
 * Pure in the sense that matters: same (params, buffers, batch, seed) -> same numbers; nothing
 * mutated, every intermediate tensor disposed (only `grads` and `buffers` survive, and nothing
 * does when the targets do not fit: `InvalidTargets`). Parameters or buffers that are not the
 * model's (a BatchNorm's statistics not passed) are a `WeightMismatch`, before any tensor work.
 * `options.training` switches dropout and batch statistics on; `options.seed` (or `rng`) fixes
 * the masks; `options.buffers` are the running statistics going in.
 *
 * A net of built-in layers runs their hand-written backward directly; a net with a
 * `Module.Lambda` (or `autodiff: true`) goes through `tf.valueAndGrads`, where the built-in
 * layers are custom-gradient ops with the same backward.
 *
 * For the trainer: `const { loss, grads, buffers } = yield* lossAndGrads(model, loss, params,
 * batch, { training: true, seed, buffers })`, then the optimizer update, then dispose `grads`
 * (and the replaced params and buffers).
 */
export const lossAndGrads = (
  model: Module,
  loss: Loss,
  params: Params,
  batch: Batch.Batch<Targets>,
  options: GradOptions
): Either.Either<LossAndGrads, InvalidTargets | InvalidLayer | InvalidArgument | WeightMismatch> =>
  Either.flatMap(checkInputs(model, params, options), () =>
    model.explicit && options.autodiff !== true
      ? explicitLossAndGrads(model, loss, params, batch, options)
      : autodiffLossAndGrads(model, loss, params, batch, options)
  )

/**
 * `lossAndGrads` without its entry checks, for the training step (`Trainer.trainStep`): the
 * random state is given (no seed to check) and the parameters and buffers are a trainer's
 * (`Trainer.make` checked them), so per step the only failure left is targets that do not fit.
 */
export const lossAndGradsAt = (
  model: Module,
  loss: Loss,
  params: Params,
  batch: Batch.Batch<Targets>,
  options: GradOptions & { readonly rng: Random.State }
): Either.Either<LossAndGrads, InvalidTargets | InvalidLayer> =>
  model.explicit && options.autodiff !== true
    ? explicitLossAndGrads(model, loss, params, batch, options)
    : autodiffLossAndGrads(model, loss, params, batch, options)

/**
 * What `lossAndGrads` and `lossOf` check before any tensor is made: the seed, and the parameters
 * and buffers being the model's (a few names: no cost next to a forward pass).
 */
const checkInputs = (
  model: Module,
  params: Params,
  options: ApplyOptions
): Either.Either<unknown, InvalidArgument | WeightMismatch> =>
  Either.flatMap(checkSeed(options), () => checkWeights(model, params, options.buffers ?? {}))

/** `InvalidArgument` for a seed `Random.make` refuses (only read when no `rng` is given). */
const checkSeed = (options: ApplyOptions): Either.Either<unknown, InvalidArgument> =>
  options.rng === undefined ? Random.checkSeed(options.seed ?? 0) : Either.void

const explicitLossAndGrads = (
  model: Module,
  loss: Loss,
  params: Params,
  batch: Batch.Batch<Targets>,
  options: GradOptions
): Either.Either<LossAndGrads, InvalidTargets | InvalidLayer> => {
  let failure: InvalidTargets | undefined
  // A copy of the outputs (the cpu backend hands out its own buffer, which dispose releases).
  let outputs: LossAndGrads["outputs"] = { values: new Float32Array(0), shape: [] }
  // A layer that cannot take its input throws InvalidLayer; tidy disposes the pass.
  const ran = catchInvalidLayer(
    () =>
      tf.tidy(() => {
        const x = unsafeInputTensor(batch.x, batch.shape)
        const fwd = model.forward(params, "", x, ctxOf(options), false)
        outputs = { values: (fwd.y.dataSync() as Float32Array).slice(), shape: fwd.y.shape }
        const evaluated = loss.evaluate(outputs.values, fwd.y.shape, batch.y)
        if (Either.isLeft(evaluated)) {
          failure = evaluated.left
          return {} // tidy disposes the forward pass
        }
        const { loss: value, grad } = evaluated.right
        const { grads } = fwd.backward(tf.tensor(grad, fwd.y.shape, "float32"))
        return { loss: value, grads, buffers: fwd.buffers ?? {} } as unknown as tf.TensorContainer
      }) as unknown as Omit<LossAndGrads, "outputs">
  )
  if (Either.isLeft(ran)) return Either.left(ran.left)
  return failure === undefined ? Either.right({ ...ran.right, outputs }) : Either.left(failure)
}

const autodiffLossAndGrads = (
  model: Module,
  loss: Loss,
  params: Params,
  batch: Batch.Batch<Targets>,
  options: GradOptions
): Either.Either<LossAndGrads, InvalidTargets | InvalidLayer> => {
  let value: Either.Either<number, InvalidTargets | InvalidLayer> = Either.right(Number.NaN)
  let outputs: LossAndGrads["outputs"] = { values: new Float32Array(0), shape: [] }
  let buffers: Buffers = {}
  const names = model.specs.map((s) => s.name)
  const kept: Array<tf.Tensor> = []
  const ctx = { ...ctxOf(options), kept }
  const ran = catchInvalidLayer(() =>
    tf.tidy(() => {
      const x = unsafeInputTensor(batch.x, batch.shape)
      const op = lossOp(loss, batch.y, (v, values, shape) => {
        value = v
        outputs = { values, shape }
      })
      const f = (...ps: Array<tf.Tensor>) => {
        const tree: Record<string, tf.Tensor> = { ...params }
        names.forEach((n, i) => {
          tree[n] = ps[i]
        })
        const out = model.call(tree, "", x, ctx)
        buffers = out.buffers
        return op(out.y) as tf.Scalar
      }
      registerGradients() // (tfjs' configs, when the engine left them for the first autodiff)
      const r = tf.valueAndGrads(f)(names.map((n) => params[n]))
      return Object.fromEntries(names.map((n, i) => [n, r.grads[i]]))
    })
  )
  if (Either.isLeft(ran)) {
    // The layers before the one that threw kept tensors for a backward that will not run.
    const theirs = new Set([...Object.values(params), ...Object.values(options.buffers ?? {})])
    tf.dispose(kept.filter((t) => !t.isDisposed && !theirs.has(t)))
    value = Either.left(ran.left)
  }
  const grads = Either.getOrElse(ran, () => ({}))
  return Either.match(value, {
    onLeft: (e) => {
      disposeAll(grads)
      disposeAll(buffers)
      return Either.left(e)
    },
    onRight: (v) => Either.right({ loss: v, grads, buffers, outputs })
  })
}

/** The loss of a batch without gradients (validation: eval mode, no dropout). */
export const lossOf = (
  model: Module,
  loss: Loss,
  params: Params,
  batch: Batch.Batch<Targets>,
  options: ApplyOptions = { training: false }
): Either.Either<number, InvalidTargets | InvalidLayer | InvalidArgument | WeightMismatch> =>
  Either.flatMap(checkInputs(model, params, options), () =>
    Either.flatMap(
      catchInvalidLayer(() => outputs(model, params, batch, options)),
      (out) => Either.map(loss.evaluate(out.values, out.shape, batch.y), (r) => r.loss)
    )
  )

/**
 * The model's outputs (logits) for a batch and their shape, row-major, eval mode by default.
 * Plain code: `params` come from an engine (`Module.init`, a checkpoint, a trainer), so no
 * `Engine` in the type and no fiber per batch (validation and `Predict.images` call it per batch).
 * An input a layer cannot take throws `InvalidLayer` (`Module.catchInvalidLayer` returns it).
 */
export const outputs = (
  model: Module,
  params: Params,
  batch: { readonly x: Float32Array; readonly shape: ReadonlyArray<number> },
  options: ApplyOptions = { training: false }
): { readonly values: Float32Array; readonly shape: ReadonlyArray<number> } => {
  const y = tf.tidy(() => {
    const out = model.call(params, "", unsafeInputTensor(batch.x, batch.shape), ctxOf(options))
    disposeAll(out.buffers)
    return out.y
  })
  // A copy: the cpu backend hands out its own buffer, which dispose releases.
  const values = (y.dataSync() as Float32Array).slice()
  const shape = y.shape
  y.dispose()
  return { values, shape }
}

/** The model's outputs (logits) for a batch, row-major [n, outputs], eval mode by default. */
export const predict = (
  model: Module,
  params: Params,
  batch: { readonly x: Float32Array; readonly shape: ReadonlyArray<number> },
  options: ApplyOptions = { training: false }
): Float32Array => outputs(model, params, batch, options).values
