import * as tf from "@tensorflow/tfjs-core"
import {
  col2imNhwc,
  conv2dBackpropFilterNhwc,
  im2colNhwc,
  maxPoolGradNhwc,
  tiles
} from "./Conv2DBackpropFilter.js"
import * as Simd from "./Simd.js"

type KernelFunc = tf.KernelConfig["kernelFunc"]
type AnyBackend = any

/** A kernel we register, built from the stock kernel it replaces (if any) for fallbacks. */
export interface Ours {
  readonly kernelName: string
  readonly backendName: string
  readonly make: (stock: KernelFunc | undefined) => KernelFunc
}

/** What a registration did, and how to undo it. */
export interface Registration {
  /** The stock kernels ours replaced, by kernel name (tests compare ours against them). */
  readonly stock: ReadonlyMap<string, KernelFunc>
  /** Puts the stock kernels back and removes the ones that had none. */
  readonly restore: () => void
}

// Marks our kernel functions, so a registration nested in another leaves the outer one alone.
const OURS = Symbol.for("@stepwise/core/kernel")
const isOurs = (f: KernelFunc): boolean => (f as unknown as Record<symbol, unknown>)[OURS] === true

/** Registers `kernels` in place of the stock ones; `restore` undoes exactly that. */
export const register = (kernels: ReadonlyArray<Ours>): Registration => {
  const stock = new Map<string, KernelFunc>()
  const done: Array<{ readonly kernel: Ours; readonly previous: KernelFunc | undefined }> = []
  for (const kernel of kernels) {
    const { kernelName, backendName } = kernel
    const previous = tf.getKernel(kernelName, backendName)?.kernelFunc
    if (previous !== undefined && isOurs(previous)) continue
    if (previous !== undefined) {
      stock.set(kernelName, previous)
      tf.unregisterKernel(kernelName, backendName)
    }
    const kernelFunc = Object.assign(kernel.make(previous), { [OURS]: true })
    tf.registerKernel({ kernelName, backendName, kernelFunc })
    done.push({ kernel, previous })
  }
  return {
    stock,
    restore: () => {
      // splice: a second call finds nothing to undo (reverse alone would flip the list in place)
      for (const { kernel, previous } of done.splice(0).reverse()) {
        tf.unregisterKernel(kernel.kernelName, kernel.backendName)
        if (previous !== undefined)
          tf.registerKernel({
            kernelName: kernel.kernelName,
            backendName: kernel.backendName,
            kernelFunc: previous
          })
      }
    }
  }
}

const convInfoOf = (xShape: number[], attrs: any, filterShape: number[] = attrs.filterShape) =>
  tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(attrs.dataFormat ?? "NHWC")
  )

export const poolInfoOf = (inputShape: number[], attrs: any) =>
  tf.backend_util.computePool2DInfo(
    inputShape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode
  )

// ---------------------------------------------------------------------------------------- cpu

const cpuConv2DBackpropFilter =
  (stock: KernelFunc | undefined): KernelFunc =>
  (args) => {
    const { inputs, backend, attrs } = args as { inputs: any; backend: AnyBackend; attrs: any }
    const { x, dy } = inputs
    const info = convInfoOf(x.shape, attrs)
    // NCHW is rare in tfjs (its wasm convolutions reject it): the stock kernel handles it.
    if (info.dataFormat !== "channelsLast") {
      // Registration keeps the stock kernel before replacing it; none means a registration bug.
      if (stock === undefined) throw new Error("Conv2DBackpropFilter on cpu: NCHW needs the stock kernel")
      return stock(args)
    }
    const out = conv2dBackpropFilterNhwc(
      backend.data.get(x.dataId).values,
      backend.data.get(dy.dataId).values,
      info
    )
    return backend.makeTensorInfo(info.filterShape, "float32", out)
  }

const cpuMaxPoolGrad: KernelFunc = (args) => {
  const { inputs, backend, attrs } = args as { inputs: any; backend: AnyBackend; attrs: any }
  const { dy, input } = inputs
  const info = poolInfoOf(input.shape, attrs)
  const out = maxPoolGradNhwc(backend.data.get(input.dataId).values, backend.data.get(dy.dataId).values, info)
  return backend.makeTensorInfo(input.shape, "float32", out)
}

/** The cpu backend's accessor-per-element kernels, replaced with flat-array loops. */
export const cpuKernels: ReadonlyArray<Ours> = [
  { kernelName: "Conv2DBackpropFilter", backendName: "cpu", make: cpuConv2DBackpropFilter },
  { kernelName: "MaxPoolGrad", backendName: "cpu", make: () => cpuMaxPoolGrad }
]

// --------------------------------------------------------------------------------------- wasm

const wasmMatMul = (
  backend: AnyBackend,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean
) =>
  tf.getKernel("BatchMatMul", "wasm")!.kernelFunc({
    inputs: { a, b },
    backend,
    attrs: { transposeA, transposeB }
  } as any) as tf.TensorInfo

const heap = (backend: AnyBackend, t: tf.TensorInfo): Float32Array => Simd.heapView(backend, t)!

const nhwcOnly = (info: tf.backend_util.Conv2DInfo, kernel: string) => {
  if (info.dataFormat !== "channelsLast") {
    // The layers only build NHWC convolutions; NCHW here is a direct tfjs call, a caller's bug.
    throw new Error(`${kernel} on wasm supports NHWC only (tfjs wasm convolutions reject NCHW)`)
  }
}

const wasmRun = (backend: AnyBackend, kernelName: string, inputs: object, attrs: object): tf.TensorInfo =>
  tf.getKernel(kernelName, "wasm")!.kernelFunc({ inputs, backend, attrs } as any) as tf.TensorInfo

/** XNNPACK's NHWC convolution with unit strides and explicit padding [top, bottom, left, right]. */
const wasmUnitConv = (
  backend: AnyBackend,
  x: tf.TensorInfo,
  filter: tf.TensorInfo,
  [top, bottom, left, right]: ReadonlyArray<number>
): tf.TensorInfo =>
  wasmRun(
    backend,
    "Conv2D",
    { x, filter },
    {
      strides: [1, 1],
      pad: [
        [0, 0],
        [top, bottom],
        [left, right],
        [0, 0]
      ],
      dataFormat: "NHWC",
      dilations: [1, 1],
      dimRoundingMode: undefined
    }
  )

const unitStride = (info: tf.backend_util.Conv2DInfo) =>
  info.strideHeight === 1 && info.strideWidth === 1 && info.dilationHeight === 1 && info.dilationWidth === 1

/**
 * wasm 4.22 ships no Conv2DBackpropFilter (its Conv3DBackpropFilterV2 is wrong for stride > 1,
 * and slow). With unit stride: our SIMD kernel (simd/kernels.c), one pass over planar copies of
 * x and dy on the heap, no layout transposes. Other strides: im2col in JS on the wasm heap, then
 * one wasm matrix product cols^T x dy = [kh*kw*in, out], already the filter's layout. Heap views
 * are taken after every allocation (allocations may grow the heap).
 */
const wasmConv2DBackpropFilter: KernelFunc = (args) => {
  const { inputs, backend, attrs } = args as { inputs: any; backend: AnyBackend; attrs: any }
  const { x, dy } = inputs
  const info = convInfoOf(x.shape, attrs)
  nhwcOnly(info, "Conv2DBackpropFilter")
  const simd = Simd.on(backend)
  if (unitStride(info) && simd !== undefined) {
    const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci } = info
    const { outHeight: oh, outWidth: ow, outChannels: co, filterHeight: kh, filterWidth: kw } = info
    const owp = (ow + 3) & ~3
    const xFloats = kw * n * ci * (oh + kh - 1) * owp
    const dw = backend.makeOutput([...info.filterShape], "float32") as tf.TensorInfo
    Simd.withScratch(backend, 4 * (xFloats + n * co * oh * owp), (xp) =>
      simd.conv_filter_grad(
        Simd.offset(backend, x),
        Simd.offset(backend, dy),
        Simd.offset(backend, dw),
        xp,
        xp + 4 * xFloats,
        n,
        h,
        w,
        ci,
        oh,
        ow,
        co,
        kh,
        kw,
        info.padInfo.top,
        info.padInfo.left
      )
    )
    return dw
  }
  const rows = info.batchSize * info.outHeight * info.outWidth
  const k = info.filterHeight * info.filterWidth * info.inChannels
  const cols = backend.makeOutput([rows, k], "float32") as tf.TensorInfo
  im2colNhwc(heap(backend, x), heap(backend, cols), info)
  const dy2 = { dataId: dy.dataId, shape: [rows, info.outChannels], dtype: "float32" as const }
  const out = wasmMatMul(backend, cols, dy2, true, false)
  backend.disposeData(cols.dataId)
  return { dataId: out.dataId, shape: info.filterShape, dtype: "float32" }
}

/**
 * The stock wasm Conv2DBackpropInput is a direct loop, slower than XNNPACK's convolution.
 * With unit stride the input gradient is the "full" convolution of dy with the filter rotated
 * 180 degrees and in/out swapped (padding k - 1 - pad); otherwise dy x W^T on wasm and col2im
 * in JS.
 */
const wasmConv2DBackpropInput: KernelFunc = (args) => {
  const { inputs, backend, attrs } = args as { inputs: any; backend: AnyBackend; attrs: any }
  const { dy, filter } = inputs
  const info = convInfoOf(attrs.inputShape, attrs, filter.shape)
  nhwcOnly(info, "Conv2DBackpropInput")
  const { filterHeight: kh, filterWidth: kw, inChannels: cin, outChannels: cout } = info
  const { top, bottom, left, right } = info.padInfo
  const fullPad = [kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right]
  if (unitStride(info) && fullPad.every((p) => p >= 0)) {
    const rotated = backend.makeOutput([kh, kw, cout, cin], "float32") as tf.TensorInfo
    const w = heap(backend, filter)
    const r = heap(backend, rotated)
    for (let y = 0; y < kh; y++)
      for (let x = 0; x < kw; x++)
        for (let i = 0; i < cin; i++)
          for (let o = 0; o < cout; o++)
            r[((y * kw + x) * cout + o) * cin + i] =
              w[(((kh - 1 - y) * kw + (kw - 1 - x)) * cin + i) * cout + o]
    const dx = wasmUnitConv(backend, dy, rotated, fullPad)
    backend.disposeData(rotated.dataId)
    return dx
  }
  const rows = info.batchSize * info.outHeight * info.outWidth
  const k = kh * kw * cin
  const dy2 = { dataId: dy.dataId, shape: [rows, cout], dtype: "float32" as const }
  const w2 = { dataId: filter.dataId, shape: [k, cout], dtype: "float32" as const }
  const dcols = wasmMatMul(backend, dy2, w2, false, true)
  const dx = backend.makeOutput([...attrs.inputShape], "float32") as tf.TensorInfo
  col2imNhwc(heap(backend, dcols), heap(backend, dx), info)
  backend.disposeData(dcols.dataId)
  return dx
}

/**
 * A max pool's input gradient on the wasm heap (`afterRelu`: composed with the ReLU before it):
 * our SIMD module's loop when the windows tile the input, the JavaScript one otherwise.
 */
export const wasmMaxPoolGradInto = (
  backend: AnyBackend,
  input: tf.TensorInfo,
  dy: tf.TensorInfo,
  attrs: any,
  afterRelu: boolean
): tf.TensorInfo => {
  const info = poolInfoOf(input.shape, attrs)
  const dx = backend.makeOutput([...input.shape], "float32") as tf.TensorInfo
  const simd = Simd.on(backend)
  if (simd !== undefined && tiles(info)) {
    simd.max_pool_grad_tiled(
      Simd.offset(backend, input),
      Simd.offset(backend, dy),
      Simd.offset(backend, dx),
      info.batchSize,
      info.inHeight,
      info.inWidth,
      info.inChannels,
      info.outHeight,
      info.outWidth,
      info.strideHeight,
      info.strideWidth,
      afterRelu ? 1 : 0
    )
    return dx
  }
  // Written in place on the heap (views taken after the allocation): no JS array and copy.
  maxPoolGradNhwc(heap(backend, input), heap(backend, dy), info, heap(backend, dx).fill(0), afterRelu)
  return dx
}

/** The stock wasm MaxPoolGrad is slow for small maps such as CNN2's. */
const wasmMaxPoolGrad: KernelFunc = (args) => {
  const { inputs, backend, attrs } = args as { inputs: any; backend: AnyBackend; attrs: any }
  return wasmMaxPoolGradInto(backend, inputs.input, inputs.dy, attrs, false)
}

/** A linear layer's gradients in one call: see `Fused.LinearGrad`. */
const wasmLinearGrad: KernelFunc = (args) => {
  const { inputs, backend, attrs } = args as { inputs: any; backend: AnyBackend; attrs: any }
  const { x, dy, weight } = inputs
  const [m, k] = x.shape as [number, number]
  const n = weight.shape[1] as number
  const simd = Simd.on(backend)!
  const dw = backend.makeOutput([k, n], "float32") as tf.TensorInfo
  const db = attrs.withBias ? (backend.makeOutput([n], "float32") as tf.TensorInfo) : undefined
  const dx = attrs.needDx ? (backend.makeOutput([m, k], "float32") as tf.TensorInfo) : undefined
  const [xAt, dyAt] = [Simd.offset(backend, x), Simd.offset(backend, dy)]
  simd.matmul_ta(xAt, dyAt, Simd.offset(backend, dw), m, k, n)
  if (db !== undefined) simd.bias_grad(dyAt, Simd.offset(backend, db), m, n)
  if (dx !== undefined) simd.matmul_tb(dyAt, Simd.offset(backend, weight), Simd.offset(backend, dx), m, k, n)
  return [dw, ...(db === undefined ? [] : [db]), ...(dx === undefined ? [] : [dx])]
}

/** The missing filter-gradient kernel on wasm, and faster input/pool gradients. */
export const wasmKernels: ReadonlyArray<Ours> = [
  { kernelName: "Conv2DBackpropFilter", backendName: "wasm", make: () => wasmConv2DBackpropFilter },
  { kernelName: "Conv2DBackpropInput", backendName: "wasm", make: () => wasmConv2DBackpropInput },
  { kernelName: "MaxPoolGrad", backendName: "wasm", make: () => wasmMaxPoolGrad },
  { kernelName: "StepwiseLinearGrad", backendName: "wasm", make: () => wasmLinearGrad }
]
