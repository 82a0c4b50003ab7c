import * as tf from "@tensorflow/tfjs-core"
import { maxPoolGradNhwc } from "./Conv2DBackpropFilter.js"
import { type Ours, poolInfoOf, wasmMaxPoolGradInto } from "./Register.js"
import * as Simd from "./Simd.js"

/**
 * Fused optimizer updates as tfjs kernels on the cpu and wasm backends: one kernel call per
 * step updates every parameter tensor (a multi-tensor update), where the element-wise
 * formulation takes ~13 (Adam) or ~5 (SGD) calls per tensor, each with its own dispatch,
 * allocation and pass over memory. The arithmetic is in
 * float64 per element, rounded to float32 once.
 */
export const AdamUpdate = "StepwiseAdamUpdate"
export const SgdUpdate = "StepwiseSgdUpdate"
/** dy * (y > 0): ReLU's backward in one pass instead of Step then Multiply. */
export const ReluGrad = "StepwiseReluGrad"
/** A max pool's input gradient composed with the ReLU before it (MaxPoolGrad, then ReluGrad). */
export const MaxPoolReluGrad = "StepwiseMaxPoolReluGrad"
/** A bias's gradient: dy summed over every axis but the last (the channels), in one pass. */
export const BiasGrad = "StepwiseBiasGrad"

type AnyBackend = any

const sizeOfShape = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)
type KernelFunc = tf.KernelConfig["kernelFunc"]

/** Float32 views of inputs and freshly allocated outputs, the same code on cpu and wasm. */
const ioShapes = (
  backend: AnyBackend,
  inputs: ReadonlyArray<tf.TensorInfo>,
  shapes: ReadonlyArray<ReadonlyArray<number>>
) => {
  if (typeof backend.typedArrayFromHeap === "function") {
    // wasm: allocate first; an allocation may grow (and so move) the heap under older views.
    const outs = shapes.map((shape) => backend.makeOutput([...shape], "float32") as tf.TensorInfo)
    return {
      ins: inputs.map((t) => backend.typedArrayFromHeap(t) as Float32Array),
      outViews: outs.map((t) => backend.typedArrayFromHeap(t) as Float32Array),
      outs
    }
  }
  const outViews = shapes.map((shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)))
  return {
    ins: inputs.map((t) => backend.data.get(t.dataId).values as Float32Array),
    outViews,
    outs: outViews.map((v, i) => backend.makeTensorInfo([...shapes[i]], "float32", v) as tf.TensorInfo)
  }
}

/** `ioShapes` with `outputs` outputs of one `shape`. */
const io = (
  backend: AnyBackend,
  inputs: ReadonlyArray<tf.TensorInfo>,
  outputs: number,
  shape: Array<number>
) =>
  ioShapes(
    backend,
    inputs,
    Array.from({ length: outputs }, () => shape)
  )

/** The hyperparameters every fused update takes. */
export interface UpdateAttrs {
  readonly lr: number
  readonly weightDecay: number
  readonly maximize: boolean
  /** How many parameter tensors the call updates (inputs `param0`, `grad0`, ... `param{count-1}`). */
  readonly count: number
}

/** The input name of tensor `i`'s `field` in a multi-tensor update (`param0`, `expAvg3`, ...). */
export const inputName = (field: string, i: number): string => `${field}${i}`

/**
 * The set-up of a multi-tensor update kernel: its attrs and, per parameter tensor, the Float32
 * views of the `fields` it reads (in order) and of `outputs` fresh outputs shaped like it. All
 * outputs are allocated before any view is taken (a wasm allocation may move the heap).
 */
const updateIo = <A extends UpdateAttrs>(
  args: Parameters<KernelFunc>[0],
  plan: (attrs: A) => { readonly fields: ReadonlyArray<string>; readonly outputs: number }
) => {
  const { inputs, backend, attrs } = args as unknown as {
    inputs: Record<string, tf.TensorInfo>
    backend: AnyBackend
    attrs: A
  }
  const { fields, outputs } = plan(attrs)
  const read: Array<tf.TensorInfo> = []
  const shapes: Array<ReadonlyArray<number>> = []
  for (let i = 0; i < attrs.count; i++) {
    for (const f of fields) read.push(inputs[inputName(f, i)])
    const shape = inputs[inputName("param", i)].shape
    for (let k = 0; k < outputs; k++) shapes.push(shape)
  }
  const { ins, outViews, outs } = ioShapes(backend, read, shapes)
  const tensors = Array.from({ length: attrs.count }, (_, i) => ({
    ins: ins.slice(i * fields.length, (i + 1) * fields.length),
    outs: outViews.slice(i * outputs, (i + 1) * outputs)
  }))
  return { attrs, tensors, outs }
}

export interface AdamAttrs extends UpdateAttrs {
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly decoupled: boolean
  readonly amsgrad: boolean
  /** The step being taken (1 on the first update). */
  readonly step: number
}

/**
 * inputs, per tensor i: param{i}, grad{i}, expAvg{i}, expAvgSq{i}[, maxExpAvgSq{i}] ->
 * outputs, per tensor in order: param, expAvg, expAvgSq[, maxExpAvgSq].
 */
const adamKernel: KernelFunc = (args) => {
  const simd = Simd.on(args.backend)
  if (simd !== undefined) return wasmAdam(simd, args)
  const { attrs, tensors, outs } = updateIo<AdamAttrs>(args, ({ amsgrad }) => ({
    fields: ["param", "grad", "expAvg", "expAvgSq", ...(amsgrad ? ["maxExpAvgSq"] : [])],
    outputs: amsgrad ? 4 : 3
  }))
  const { lr, beta1, beta2, eps, weightDecay, decoupled, amsgrad, maximize, step } = attrs
  const stepSize = lr / (1 - beta1 ** step)
  const bc2 = Math.sqrt(1 - beta2 ** step)
  const shrink = 1 - lr * weightDecay
  for (const { ins: v, outs: o } of tensors) {
    const [p, g, m, s] = v
    const vmaxIn = amsgrad ? v[4] : undefined
    const [pOut, mOut, sOut] = o
    const vmaxOut = amsgrad ? o[3] : undefined
    for (let i = 0; i < p.length; i++) {
      let gi = maximize ? -g[i] : g[i]
      let pi = p[i]
      if (weightDecay !== 0) {
        if (decoupled) pi = Math.fround(pi * shrink)
        else gi += weightDecay * pi
      }
      const mi = Math.fround(beta1 * m[i] + (1 - beta1) * gi)
      const si = Math.fround(beta2 * s[i] + (1 - beta2) * gi * gi)
      let vi = si
      if (vmaxIn !== undefined) {
        vi = Math.max(vmaxIn[i], si)
        vmaxOut![i] = vi
      }
      mOut[i] = mi
      sOut[i] = si
      pOut[i] = pi - (stepSize * mi) / (Math.sqrt(vi) / bc2 + eps)
    }
  }
  return outs
}

/** `adamKernel` on the wasm heap: our SIMD module's loop, the same arithmetic (bit for bit). */
const wasmAdam = (simd: Simd.Exports, args: Parameters<KernelFunc>[0]) => {
  const { inputs, backend, attrs } = args as unknown as {
    inputs: Record<string, tf.TensorInfo>
    backend: AnyBackend
    attrs: AdamAttrs
  }
  const { lr, beta1, beta2, eps, weightDecay, decoupled, amsgrad, maximize, step, count } = attrs
  const stepSize = lr / (1 - beta1 ** step)
  const bc2 = Math.sqrt(1 - beta2 ** step)
  const shrink = 1 - lr * weightDecay
  const outputs = amsgrad ? 4 : 3
  const outs: Array<tf.TensorInfo> = []
  for (let i = 0; i < count; i++) {
    const shape = inputs[inputName("param", i)].shape
    for (let k = 0; k < outputs; k++) outs.push(backend.makeOutput([...shape], "float32") as tf.TensorInfo)
  }
  const at = (t: tf.TensorInfo | undefined) => (t === undefined ? 0 : Simd.offset(backend, t))
  for (let i = 0; i < count; i++) {
    const param = inputs[inputName("param", i)]
    const o = i * outputs
    simd.adam(
      at(param),
      at(inputs[inputName("grad", i)]),
      at(inputs[inputName("expAvg", i)]),
      at(inputs[inputName("expAvgSq", i)]),
      amsgrad ? at(inputs[inputName("maxExpAvgSq", i)]) : 0,
      at(outs[o]),
      at(outs[o + 1]),
      at(outs[o + 2]),
      amsgrad ? at(outs[o + 3]) : 0,
      sizeOfShape(param.shape),
      beta1,
      beta2,
      eps,
      weightDecay,
      stepSize,
      bc2,
      shrink,
      decoupled ? 1 : 0,
      amsgrad ? 1 : 0,
      maximize ? 1 : 0
    )
  }
  return outs
}

export interface SgdAttrs extends UpdateAttrs {
  readonly momentum: number
  readonly dampening: number
  readonly nesterov: boolean
  /** True when there is no momentum buffer yet (PyTorch's first step: buffer = gradient). */
  readonly first: boolean
}

/**
 * inputs, per tensor i: param{i}, grad{i}[, momentumBuffer{i}] -> outputs, per tensor in order:
 * param[, momentumBuffer] (momentum > 0).
 */
const sgdKernel: KernelFunc = (args) => {
  const { attrs, tensors, outs } = updateIo<SgdAttrs>(args, ({ momentum, first }) => ({
    fields: ["param", "grad", ...(momentum !== 0 && !first ? ["momentumBuffer"] : [])],
    outputs: momentum !== 0 ? 2 : 1
  }))
  const { lr, momentum, dampening, weightDecay, nesterov, maximize, first } = attrs
  const withBuffer = momentum !== 0
  for (const { ins: v, outs: o } of tensors) {
    const [p, g, b] = v
    const [pOut, bOut] = o
    for (let i = 0; i < p.length; i++) {
      let gi = maximize ? -g[i] : g[i]
      if (weightDecay !== 0) gi = Math.fround(gi + weightDecay * p[i])
      if (!withBuffer) {
        pOut[i] = p[i] - lr * gi
        continue
      }
      const bi = first ? gi : Math.fround(momentum * b[i] + (1 - dampening) * gi)
      bOut[i] = bi
      pOut[i] = p[i] - lr * (nesterov ? gi + momentum * bi : bi)
    }
  }
  return outs
}

const reluGradKernel: KernelFunc = (args) => {
  const { inputs, backend } = args as unknown as { inputs: any; backend: AnyBackend }
  const { dy, y } = inputs
  const {
    ins: [g, v],
    outViews: [out],
    outs
  } = io(backend, [dy, y], 1, [...dy.shape])
  // Branch-free (a multiply by 0 or 1): with random signs a branch mispredicts half the time,
  // which made the ternary form slower. Same result as tfjs' dy * step(y), NaN included.
  for (let i = 0; i < g.length; i++) out[i] = g[i] * +(v[i] > 0)
  return outs[0]
}

/**
 * inputs: dy [..., c] -> [c], the sum over every other axis. One pass in storage order with a
 * float64 accumulator per channel, rounded to float32 once (tfjs' wasm Sum over leading axes
 * transposes first, then sums in float32).
 */
const biasGradKernel: KernelFunc = (args) => {
  const { inputs, backend } = args as unknown as { inputs: any; backend: AnyBackend }
  const { dy } = inputs
  const c = dy.shape[dy.shape.length - 1] as number
  const simd = Simd.on(backend)
  if (simd !== undefined) {
    // The same sums in the same order in our SIMD module (float64, four channels at a time).
    const out = backend.makeOutput([c], "float32") as tf.TensorInfo
    simd.bias_grad(Simd.offset(backend, dy), Simd.offset(backend, out), sizeOfShape(dy.shape) / c, c)
    return out
  }
  const {
    ins: [g],
    outViews: [out],
    outs
  } = io(backend, [dy], 1, [c])
  const acc = new Float64Array(c)
  let d = 0
  for (let i = 0; i < g.length; i++) {
    acc[d] += g[i]
    if (++d === c) d = 0
  }
  out.set(acc)
  return outs[0]
}

/** inputs: dy, input (the ReLU's output, the pool's input) -> the ReLU input's gradient. */
const maxPoolReluGradKernel: KernelFunc = (args) => {
  const { inputs, backend, attrs } = args as unknown as { inputs: any; backend: AnyBackend; attrs: any }
  const { dy, input } = inputs
  if (Simd.on(backend) !== undefined) return wasmMaxPoolGradInto(backend, input, dy, attrs, true)
  const info = poolInfoOf(input.shape, attrs)
  const {
    ins: [x, g],
    outViews: [dx],
    outs
  } = io(backend, [input, dy], 1, [...input.shape])
  maxPoolGradNhwc(x, g, info, dx.fill(0), true)
  return outs[0]
}

/** The fused kernels of one backend (cpu or wasm: the same code reads both kinds of memory). */
export const kernels = (backendName: "cpu" | "wasm"): ReadonlyArray<Ours> =>
  (
    [
      [AdamUpdate, adamKernel],
      [SgdUpdate, sgdKernel],
      [ReluGrad, reluGradKernel],
      [MaxPoolReluGrad, maxPoolReluGradKernel],
      [BiasGrad, biasGradKernel]
    ] as const
  ).map(([kernelName, kernelFunc]) => ({ kernelName, backendName, make: () => kernelFunc }))

/** True when the current backend has the fused kernels (cpu and wasm, not tensorflow). */
export const available = (): boolean => tf.getKernel(AdamUpdate, tf.getBackend()) !== undefined

/**
 * The input gradient of ReLU then a max pool with `attrs` (MaxPoolGrad's), where the fused
 * kernel is registered; undefined elsewhere (the two backwards run one after the other).
 */
export const maxPoolReluGrad = (
  dy: tf.Tensor,
  reluOutput: tf.Tensor,
  attrs: object
): tf.Tensor | undefined =>
  tf.getKernel(MaxPoolReluGrad, tf.getBackend()) === undefined
    ? undefined
    : (tf.engine().runKernel(MaxPoolReluGrad, { dy, input: reluOutput }, attrs as any) as tf.Tensor)

/** ReLU's input gradient: the fused kernel where registered, Step and Multiply elsewhere. */
export const reluGrad = (dy: tf.Tensor, y: tf.Tensor): tf.Tensor =>
  available() ? (tf.engine().runKernel(ReluGrad, { dy, y }) as tf.Tensor) : tf.mul(dy, tf.step(y))

/** A bias's gradient (dy summed over all axes but the last): the fused kernel where registered. */
export const biasGrad = (dy: tf.Tensor): tf.Tensor =>
  tf.getKernel(BiasGrad, tf.getBackend()) === undefined
    ? tf.sum(
        dy,
        dy.shape.slice(0, -1).map((_, i) => i)
      )
    : (tf.engine().runKernel(BiasGrad, { dy }) as tf.Tensor)

/**
 * A linear layer's gradients (x [m, in], dy [m, out], weight [in, out]) in one kernel call: dW =
 * x^T dy, db (as `BiasGrad`) when `withBias`, dx = dy W^T when `needDx`; outputs in that order.
 * Registered on wasm only (Register.ts, our SIMD module): tfjs' wasm matrix product with a
 * transposed operand takes a slow path, and a call each costs four engine round-trips.
 */
export const LinearGrad = "StepwiseLinearGrad"

/** `LinearGrad` where registered; undefined elsewhere (the caller runs the separate ops). */
export const linearGrad = (
  x: tf.Tensor,
  dy: tf.Tensor,
  weight: tf.Tensor,
  withBias: boolean,
  needDx: boolean
):
  | { readonly dW: tf.Tensor; readonly db: tf.Tensor | undefined; readonly dx: tf.Tensor | undefined }
  | undefined => {
  if (tf.getKernel(LinearGrad, tf.getBackend()) === undefined) return undefined
  const out = tf
    .engine()
    .runKernel(LinearGrad, { x, dy, weight }, { withBias, needDx } as any) as Array<tf.Tensor>
  return { dW: out[0], db: withBias ? out[1] : undefined, dx: needDx ? out[withBias ? 2 : 1] : undefined }
}
