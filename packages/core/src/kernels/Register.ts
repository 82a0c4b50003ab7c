import * as tf from "@tensorflow/tfjs-core"
import { conv2dBackpropFilterNhwc, maxPoolGradNhwc } from "./Conv2DBackpropFilter.js"

type KernelFunc = tf.KernelConfig["kernelFunc"]
type AnyBackend = any

/** The kernels we replaced, kept so tests can prove ours equal to them. */
export const stock: { [key: string]: KernelFunc } = {}

const replace = (kernelName: string, backendName: string, kernelFunc: KernelFunc): void => {
  const existing = tf.getKernel(kernelName, backendName)
  if (existing !== undefined) {
    if (existing.kernelFunc === kernelFunc) return
    stock[`${backendName}/${kernelName}`] ??= existing.kernelFunc
    tf.unregisterKernel(kernelName, backendName)
  }
  tf.registerKernel({ kernelName, backendName, kernelFunc })
}

const convInfoOf = (xShape: number[], attrs: any) =>
  tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    tf.backend_util.convertConv2DDataFormat(attrs.dataFormat ?? "NHWC")
  )

// ---------------------------------------------------------------------------------------- cpu

const cpuConv2DBackpropFilter: KernelFunc = (args) => {
  const { inputs, backend, attrs } = args as { inputs: any; backend: AnyBackend; attrs: any }
  const { x, dy } = inputs
  const info = convInfoOf(x.shape, attrs)
  // NCHW is rare in tfjs (its wasm convolutions reject it): the stock kernel handles it.
  if (info.dataFormat !== "channelsLast") return stock["cpu/Conv2DBackpropFilter"](args)
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
  const info = tf.backend_util.computePool2DInfo(
    input.shape,
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode
  )
  const out = maxPoolGradNhwc(backend.data.get(input.dataId).values, backend.data.get(dy.dataId).values, info)
  return backend.makeTensorInfo(input.shape, "float32", out)
}

/** Replaces the cpu backend's accessor-per-element kernels with flat-array loops. */
export const registerCpuKernels = (): void => {
  replace("Conv2DBackpropFilter", "cpu", cpuConv2DBackpropFilter)
  replace("MaxPoolGrad", "cpu", cpuMaxPoolGrad)
}

// --------------------------------------------------------------------------------------- wasm

/**
 * wasm 4.22 ships no Conv2DBackpropFilter. A 2-D filter gradient is the 3-D one with depth 1,
 * and wasm's Conv3DBackpropFilterV2 reads its inputs by data id only, so the same buffers are
 * passed with a 5-D shape. That kernel is wrong for stride > 1 (window offsets mis-rounded with
 * padding, and outputs missed even without: fast-check found h=1, w=3, k=1, stride [1, 2],
 * 'valid'), so strided shapes take the flat JS loop over the wasm heap instead.
 */
const wasmConv2DBackpropFilter: KernelFunc = (args) => {
  const { inputs, backend, attrs } = args as { inputs: any; backend: AnyBackend; attrs: any }
  const { x, dy } = inputs
  const info = convInfoOf(x.shape, attrs)
  if (info.dataFormat !== "channelsLast") {
    throw new Error("Conv2DBackpropFilter on wasm supports NHWC only (tfjs wasm convolutions reject NCHW)")
  }
  const { padInfo } = info
  const unpadded = padInfo.top === 0 && padInfo.left === 0 && padInfo.bottom === 0 && padInfo.right === 0
  const unitStride = info.strideHeight === 1 && info.strideWidth === 1
  const simplePad = attrs.pad === "valid" || attrs.pad === "same" || typeof attrs.pad === "number"
  if (unitStride && simplePad) {
    const conv3d = tf.getKernel("Conv3DBackpropFilterV2", "wasm")!.kernelFunc
    const [n, h, w, c] = x.shape
    const [, oh, ow, oc] = dy.shape
    // The 3-D kernel recomputes the geometry from `pad`: the same spec gives the same top/left.
    const out = conv3d({
      inputs: {
        x: { dataId: x.dataId, shape: [n, 1, h, w, c], dtype: x.dtype },
        dy: { dataId: dy.dataId, shape: [n, 1, oh, ow, oc], dtype: dy.dtype }
      },
      backend,
      attrs: {
        strides: [1, info.strideHeight, info.strideWidth],
        pad: unpadded ? "valid" : attrs.pad,
        filterShape: [1, ...info.filterShape]
      }
    }) as tf.TensorInfo
    return { dataId: out.dataId, shape: info.filterShape, dtype: out.dtype }
  }
  const xs = backend.typedArrayFromHeap(x) as Float32Array
  const dys = backend.typedArrayFromHeap(dy) as Float32Array
  const values = conv2dBackpropFilterNhwc(xs, dys, info)
  const out = backend.makeOutput(info.filterShape, "float32") as tf.TensorInfo
  ;(backend.typedArrayFromHeap(out) as Float32Array).set(values)
  return out
}

/** Registers the missing filter-gradient kernel on wasm. */
export const registerWasmKernels = (): void => {
  replace("Conv2DBackpropFilter", "wasm", wasmConv2DBackpropFilter)
}
