import * as tf from "@tensorflow/tfjs-core"
import { Either } from "effect"
import { WeightMismatch } from "./Errors.js"
import type { Buffers, Layout, Module, Params } from "./Module.js"

/** A tensor in PyTorch's layout: row-major values and a shape (what `state_dict` holds). */
export interface TorchTensor {
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array
}

export { WeightMismatch } from "./Errors.js"

const sizeOf = (shape: ReadonlyArray<number>) => shape.reduce((a, b) => a * b, 1)

/**
 * For each of our flat indices, the matching index in PyTorch's layout (undefined for "same",
 * where they coincide): conv2d [kh, kw, in, out] -> [out, in, kh, kw]; linear [in, out] ->
 * [out, in], with the inputs of a flattened NHWC map moved to their NCHW place.
 */
const torchIndex = (layout: Layout, shape: ReadonlyArray<number>): Int32Array | undefined => {
  switch (layout._tag) {
    case "same":
      return undefined
    case "conv2d": {
      const [kh, kw, cin, cout] = shape
      const idx = new Int32Array(kh * kw * cin * cout)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++)
          for (let i = 0; i < cin; i++)
            for (let o = 0; o < cout; o++)
              idx[((y * kw + x) * cin + i) * cout + o] = ((o * cin + i) * kh + y) * kw + x
      return idx
    }
    case "linear":
    case "linearAfterFlatten": {
      const [nIn, nOut] = shape
      const idx = new Int32Array(nIn * nOut)
      const torchIn = inputPermutation(layout, nIn)
      for (let r = 0; r < nIn; r++) for (let o = 0; o < nOut; o++) idx[r * nOut + o] = o * nIn + torchIn[r]
      return idx
    }
  }
}

/** Our layout -> PyTorch's for one parameter. */
const toTorchValues = (layout: Layout, shape: ReadonlyArray<number>, v: Float32Array): TorchTensor => {
  const idx = torchIndex(layout, shape)
  if (idx === undefined) return { shape, data: v.slice() }
  const out = new Float32Array(v.length)
  for (let j = 0; j < idx.length; j++) out[idx[j]] = v[j]
  return { shape: torchShape(layout, shape), data: out }
}

/**
 * For each of our input rows, the PyTorch input column: identity, or for a flattened NHWC map
 * the NCHW position of (h, w, c).
 */
const inputPermutation = (layout: Layout, nIn: number): Int32Array => {
  const perm = new Int32Array(nIn)
  if (layout._tag !== "linearAfterFlatten") {
    for (let i = 0; i < nIn; i++) perm[i] = i
    return perm
  }
  const [c, h, w] = layout.chw
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let ch = 0; ch < c; ch++) perm[(y * w + x) * c + ch] = (ch * h + y) * w + x
  return perm
}

const torchShape = (layout: Layout, shape: ReadonlyArray<number>): ReadonlyArray<number> =>
  layout._tag === "conv2d"
    ? [shape[3], shape[2], shape[0], shape[1]]
    : layout._tag === "same"
      ? shape
      : [shape[1], shape[0]]

/** PyTorch layout -> ours for one parameter (the inverse of `toTorchValues`). */
const fromTorchValues = (layout: Layout, shape: ReadonlyArray<number>, t: Float32Array): Float32Array => {
  const idx = torchIndex(layout, shape)
  if (idx === undefined) return t.slice()
  const out = new Float32Array(t.length)
  for (let j = 0; j < idx.length; j++) out[j] = t[idx[j]]
  return out
}

/** The parameters as PyTorch's `state_dict` would hold them (same names, PyTorch shapes). */
export const toTorch = (model: Module, params: Params): Record<string, TorchTensor> => {
  const out: Record<string, TorchTensor> = {}
  for (const spec of model.specs) {
    const values = params[spec.name].dataSync() as Float32Array
    out[spec.name] = toTorchValues(spec.layout, spec.shape, values)
  }
  return out
}

/**
 * Parameters from a PyTorch `state_dict` (names and PyTorch shapes); every parameter of the
 * model must be present with the right shape, else `WeightMismatch` names the parameter and
 * both shapes (nothing is allocated then).
 */
export const fromTorch = (
  model: Module,
  weights: { readonly [name: string]: TorchTensor }
): Either.Either<Params, WeightMismatch> => {
  for (const spec of model.specs) {
    const w = weights[spec.name]
    const expected = torchShape(spec.layout, spec.shape)
    if (w === undefined)
      return Either.left(new WeightMismatch({ parameter: spec.name, reason: "missing", expected }))
    if (w.shape.length !== expected.length || w.shape.some((d, i) => d !== expected[i])) {
      return Either.left(
        new WeightMismatch({
          parameter: spec.name,
          reason: `shape [${w.shape.join(", ")}], the model wants [${expected.join(", ")}] (PyTorch's layout)`,
          expected,
          actual: [...w.shape]
        })
      )
    }
    if (w.data.length !== sizeOf(expected)) {
      return Either.left(
        new WeightMismatch({
          parameter: spec.name,
          reason: `${w.data.length} values for shape [${expected.join(", ")}]`,
          expected,
          actual: [...w.shape]
        })
      )
    }
  }
  const out: Record<string, tf.Tensor> = {}
  for (const spec of model.specs) {
    out[spec.name] = tf.tensor(fromTorchValues(spec.layout, spec.shape, weights[spec.name].data), [
      ...spec.shape
    ])
  }
  return Either.right(out)
}

/** PyTorch's shape of each parameter (for documentation and checks). */
export const torchShapes = (model: Module): Record<string, ReadonlyArray<number>> =>
  Object.fromEntries(model.specs.map((s) => [s.name, torchShape(s.layout, s.shape)]))

/**
 * Buffers from a PyTorch `state_dict` (BatchNorm's `running_mean`, `running_var`,
 * `num_batches_tracked`: same names, same layout; the int64 count arrives as a float).
 */
export const buffersFromTorch = (
  model: Module,
  weights: { readonly [name: string]: TorchTensor }
): Buffers => {
  for (const spec of model.buffers) {
    const w = weights[spec.name]
    if (w === undefined) throw new WeightMismatch({ parameter: spec.name, reason: "missing" })
    if (w.shape.length !== spec.shape.length || w.shape.some((d, i) => d !== spec.shape[i]))
      throw new WeightMismatch({
        parameter: spec.name,
        reason: `shape [${w.shape}] where the buffer is [${spec.shape}]`
      })
  }
  return Object.fromEntries(
    model.buffers.map((b) => [b.name, tf.tensor(weights[b.name].data, [...b.shape], "float32")])
  )
}

/** The buffers as PyTorch's `state_dict` holds them. */
export const buffersToTorch = (model: Module, buffers: Buffers): Record<string, TorchTensor> =>
  Object.fromEntries(
    model.buffers.map((b) => [
      b.name,
      { shape: b.shape, data: (buffers[b.name].dataSync() as Float32Array).slice() }
    ])
  )
