import { Random } from "@stepwise/data"
import type { Numeric } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { biasBound, kaimingUniformBound, uniform } from "./Init.js"
import { reluGrad } from "./kernels/Fused.js"

/** Named parameter trees keyed like PyTorch's `state_dict` (`conv1.weight`). */
export type Params = Numeric.Params<tf.Tensor>

/**
 * How a parameter is stored here versus in PyTorch, so weights can be exchanged exactly:
 * - `conv2d`: here [kh, kw, in, out] (tfjs), PyTorch [out, in, kh, kw];
 * - `linear`: here [in, out], PyTorch [out, in];
 * - `linearAfterFlatten`: like `linear`, but the input is a flattened NHWC map [h, w, c]
 *   while PyTorch flattens NCHW [c, h, w], so the input rows are permuted too;
 * - `same`: identical (biases).
 */
export type Layout =
  | { readonly _tag: "conv2d" }
  | { readonly _tag: "linear" }
  | { readonly _tag: "linearAfterFlatten"; readonly chw: readonly [number, number, number] }
  | { readonly _tag: "same" }

export interface ParamSpec {
  /** Full name (`conv1.weight`). */
  readonly name: string
  /** Shape here (tfjs layout). */
  readonly shape: ReadonlyArray<number>
  readonly layout: Layout
  /** U(-bound, bound) at init (PyTorch's default). */
  readonly bound: number
}

/**
 * What a forward pass needs besides parameters: train/eval mode, the random state the dropout
 * masks come from (each layer derives its own with `Random.foldIn`, so a seed reproduces every
 * mask), and an optional tap that sees every named layer's output (the chapter's hooks).
 */
export interface Ctx {
  readonly training: boolean
  readonly rng: Random.State
  readonly tap?: ((layer: string, output: tf.Tensor) => void) | undefined
}

export interface Backward {
  /** Gradient with respect to the input; absent when the caller said it does not need it. */
  readonly dx: tf.Tensor | undefined
  readonly grads: Record<string, tf.Tensor>
}

/** A forward result that remembers what its backward needs (a vector-Jacobian product). */
export interface Forward {
  readonly y: tf.Tensor
  readonly backward: (dy: tf.Tensor) => Backward
}

/**
 * A module: a pure function of (parameters, input) with a hand-written backward. tfjs-core's
 * Node bundle registers no gradient functions (they only ship as extension-less ESM files Node
 * cannot load), so autodiff through tf.grads is not available without the full @tensorflow/tfjs;
 * writing each layer's backward also lets a step skip what it does not need (the first layer's
 * input gradient) and run one tfjs kernel where the tape would run several.
 */
export interface Module {
  readonly kind: string
  /** Parameters with names relative to `prefix` "" (a container prefixes its children's). */
  readonly specs: ReadonlyArray<ParamSpec>
  /**
   * `prefix` is prepended to this module's parameter names when looking them up;
   * `needDx` false lets the first layer skip its input gradient.
   */
  readonly forward: (params: Params, prefix: string, x: tf.Tensor, ctx: Ctx, needDx: boolean) => Forward
}

/** Options of `apply` and of a training step: the seed reproduces every dropout mask. */
export interface ApplyOptions {
  readonly training: boolean
  readonly seed?: number | undefined
  readonly rng?: Random.State | undefined
  readonly tap?: ((layer: string, output: tf.Tensor) => void) | undefined
}

export const ctxOf = (options: ApplyOptions): Ctx => ({
  training: options.training,
  rng: options.rng ?? Random.make(options.seed ?? 0),
  tap: options.tap
})

/** Fresh parameters with PyTorch's default initialisation, drawn from `rng` in spec order. */
export const init = (module: Module, rng: Random.State): Params => {
  const out: Record<string, tf.Tensor> = {}
  let state = rng
  for (const spec of module.specs) {
    const size = spec.shape.reduce((a, b) => a * b, 1)
    const [values, next] = uniform(state, size, spec.bound)
    state = next
    out[spec.name] = tf.tensor(values, [...spec.shape], "float32")
  }
  return out
}

/** The forward pass only (inference, or training mode for dropout demos). */
export const apply = (module: Module, params: Params, x: tf.Tensor, options: ApplyOptions): tf.Tensor =>
  tf.tidy(() => module.forward(params, "", x, ctxOf(options), false).y)

/** Number of trainable scalars (6,823 for CNN2 with 5 filters). */
export const countParameters = (module: Module): number =>
  module.specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0)

const identityBackward = (dy: tf.Tensor): Backward => ({ dx: dy, grads: {} })

// ------------------------------------------------------------------------------------ layers

export interface Conv2dOptions {
  readonly inChannels: number
  readonly outChannels: number
  readonly kernelSize: number
  readonly stride?: number
  /** PyTorch's integer padding (zeros on every side), or 'same'. */
  readonly padding?: number | "same"
}

/** nn.Conv2d on NHWC activations. */
export const Conv2d = (options: Conv2dOptions): Module => {
  const { inChannels, outChannels, kernelSize: k } = options
  const stride = options.stride ?? 1
  const pad: number | "valid" | "same" =
    options.padding === undefined || options.padding === 0 ? "valid" : options.padding
  const fanIn = inChannels * k * k
  const filterShape: [number, number, number, number] = [k, k, inChannels, outChannels]
  // The backward kernels' attributes, fixed by the layer (only the input gradient adds a shape).
  const attrs = { strides: [stride, stride], pad, dataFormat: "NHWC", dimRoundingMode: undefined }
  const filterAttrs = { ...attrs, filterShape }
  return {
    kind: "Conv2d",
    specs: [
      { name: "weight", shape: filterShape, layout: { _tag: "conv2d" }, bound: kaimingUniformBound(fanIn) },
      { name: "bias", shape: [outChannels], layout: { _tag: "same" }, bound: biasBound(fanIn) }
    ],
    forward: (params, prefix, x, _ctx, needDx) => {
      const weight = params[`${prefix}weight`] as tf.Tensor4D
      const bias = params[`${prefix}bias`]
      const y = tf.fused.conv2d({ x: x as tf.Tensor4D, filter: weight, strides: stride, pad, bias })
      return {
        y,
        backward: (dy) => {
          const dW = tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, filterAttrs as any) as tf.Tensor
          const db = tf.sum(dy, [0, 1, 2])
          const dx = needDx
            ? (tf.engine().runKernel("Conv2DBackpropInput", { dy, filter: weight }, {
                ...attrs,
                inputShape: x.shape
              } as any) as tf.Tensor)
            : undefined
          return { dx, grads: { [`${prefix}weight`]: dW, [`${prefix}bias`]: db } }
        }
      }
    }
  }
}

export interface LinearOptions {
  readonly inFeatures: number
  readonly outFeatures: number
  /** Set when the input is a flattened NHWC map of PyTorch shape [c, h, w] (for weight exchange). */
  readonly flattenedFrom?: readonly [number, number, number]
}

/** nn.Linear: y = x W + b with W stored [in, out]. */
export const Linear = (options: LinearOptions): Module => {
  const { inFeatures, outFeatures } = options
  const layout: Layout =
    options.flattenedFrom === undefined
      ? { _tag: "linear" }
      : { _tag: "linearAfterFlatten", chw: options.flattenedFrom }
  return {
    kind: "Linear",
    specs: [
      { name: "weight", shape: [inFeatures, outFeatures], layout, bound: kaimingUniformBound(inFeatures) },
      { name: "bias", shape: [outFeatures], layout: { _tag: "same" }, bound: biasBound(inFeatures) }
    ],
    forward: (params, prefix, x, _ctx, needDx) => {
      const weight = params[`${prefix}weight`] as tf.Tensor2D
      const bias = params[`${prefix}bias`]
      const y = tf.fused.matMul({ a: x as tf.Tensor2D, b: weight, bias })
      return {
        y,
        backward: (dy) => ({
          // An explicit transpose then a plain product: wasm's matMul with transposeB skips
          // XNNPACK and costs more for these shapes.
          dx: needDx ? tf.matMul(dy, tf.transpose(weight)) : undefined,
          grads: {
            [`${prefix}weight`]: tf.matMul(x as tf.Tensor2D, dy as tf.Tensor2D, true, false),
            [`${prefix}bias`]: tf.sum(dy, 0)
          }
        })
      }
    }
  }
}

/** nn.ReLU; its gradient passes where the output is positive (0 at 0, like PyTorch). */
export const ReLU = (): Module => ({
  kind: "ReLU",
  specs: [],
  forward: (_params, _prefix, x) => {
    const y = tf.relu(x)
    return { y, backward: (dy) => ({ dx: reluGrad(dy, y), grads: {} }) }
  }
})

/** nn.MaxPool2d(kernelSize, stride = kernelSize), no padding, floor mode (as PyTorch). */
export const MaxPool2d = (kernelSize: number, stride: number = kernelSize): Module => ({
  kind: "MaxPool2d",
  specs: [],
  forward: (_params, _prefix, x) => {
    const y = tf.maxPool(x as tf.Tensor4D, kernelSize, stride, "valid")
    return {
      y,
      backward: (dy) => ({
        dx: tf.engine().runKernel("MaxPoolGrad", { dy, input: x, output: y }, {
          filterSize: [kernelSize, kernelSize],
          strides: [stride, stride],
          pad: "valid",
          dimRoundingMode: undefined
        } as any) as tf.Tensor,
        grads: {}
      })
    }
  }
})

/** nn.Flatten: [n, ...] -> [n, prod(...)], in this engine's NHWC order. */
export const Flatten = (): Module => ({
  kind: "Flatten",
  specs: [],
  forward: (_params, _prefix, x) => {
    const y = tf.reshape(x, [x.shape[0], -1])
    return { y, backward: (dy) => ({ dx: tf.reshape(dy, x.shape), grads: {} }) }
  }
})

/**
 * The inverted-dropout mask: each element kept with probability 1 - p (PyTorch's
 * `bernoulli_(1 - p)`) and survivors scaled by 1 / (1 - p) so the expected output is the input.
 */
export const dropoutMask = (rng: Random.State, size: number, p: number): Float32Array => {
  const mask = new Float32Array(size)
  const scale = p < 1 ? 1 / (1 - p) : 0
  // One 32-bit draw per element (PyTorch's bernoulli also draws float32 uniforms): u < p drops.
  const threshold = p * 0x100000000
  let state = rng
  for (let i = 0; i < size; i++) {
    const [u, next] = Random.nextUint32(state)
    state = next
    mask[i] = u >= threshold ? scale : 0
  }
  return mask
}

const checkP = (p: number): void => {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout probability has to be between 0 and 1, but got ${p}`)
}

/**
 * A dropout module: in training mode (p > 0) multiplies by an inverted-dropout mask of
 * `maskShape(x)` (broadcast over x), the same mask in the backward pass.
 */
const dropoutModule = (kind: string, p: number, maskShape: (x: tf.Tensor) => Array<number>): Module => {
  checkP(p)
  return {
    kind,
    specs: [],
    forward: (_params, _prefix, x, ctx) => {
      if (!ctx.training || p === 0) return { y: x, backward: identityBackward }
      const shape = maskShape(x)
      const mask = tf.tensor(
        dropoutMask(
          ctx.rng,
          shape.reduce((a, b) => a * b, 1),
          p
        ),
        shape,
        "float32"
      )
      return { y: tf.mul(x, mask), backward: (dy) => ({ dx: tf.mul(dy, mask), grads: {} }) }
    }
  }
}

/** nn.Dropout(p): drops elements in training mode only. */
export const Dropout = (p: number): Module => dropoutModule("Dropout", p, (x) => x.shape)

/** nn.Dropout2d(p): drops whole channels of an NHWC map (one draw per sample and channel). */
export const Dropout2d = (p: number): Module =>
  dropoutModule("Dropout2d", p, (x) => {
    if (x.rank !== 4) throw new RangeError(`Dropout2d expects an NHWC map, got shape [${x.shape}]`)
    const [n, , , c] = x.shape
    return [n, 1, 1, c]
  })

/**
 * nn.Sequential over named children. A child named "" adds no prefix (so a model made of a
 * featurizer and a classifier keeps PyTorch's flat names like `conv1.weight`).
 */
export const Sequential = (children: ReadonlyArray<readonly [string, Module]>): Module => {
  const join = (prefix: string, name: string) => (name === "" ? prefix : `${prefix}${name}.`)
  return {
    kind: "Sequential",
    specs: children.flatMap(([name, child]) =>
      child.specs.map((s) => ({ ...s, name: `${join("", name)}${s.name}` }))
    ),
    forward: (params, prefix, x, ctx, needDx) => {
      const backs: Array<Forward["backward"]> = []
      let h = x
      children.forEach(([name, child], i) => {
        const childCtx: Ctx = { ...ctx, rng: Random.foldIn(ctx.rng, i) }
        const out = child.forward(params, join(prefix, name), h, childCtx, needDx || i > 0)
        if (ctx.tap !== undefined && name !== "") ctx.tap(`${prefix}${name}`, out.y)
        backs.push(out.backward)
        h = out.y
      })
      return {
        y: h,
        backward: (dy) => {
          const grads: Record<string, tf.Tensor> = {}
          let g: tf.Tensor | undefined = dy
          for (let i = backs.length - 1; i >= 0; i--) {
            const b = backs[i](g!)
            Object.assign(grads, b.grads)
            g = b.dx
          }
          return { dx: g, grads }
        }
      }
    }
  }
}
