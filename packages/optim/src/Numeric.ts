/**
 * The small numeric interface every optimizer is written against, once.
 *
 * Two implementations ship: `Float64` (plain `Float64Array`s, the exact reference used by the
 * golden and property tests) and `TfNumeric` (tfjs tensors, used for training). Every operation
 * returns a new value and never mutates its inputs, which is what makes the optimizers pure.
 */
export interface Numeric<T> {
  readonly name: string
  readonly add: (a: T, b: T) => T
  readonly sub: (a: T, b: T) => T
  readonly mul: (a: T, b: T) => T
  readonly div: (a: T, b: T) => T
  /** `a * s` for a scalar `s`. */
  readonly scale: (a: T, s: number) => T
  /** `a + s` for a scalar `s`. */
  readonly addScalar: (a: T, s: number) => T
  readonly sqrt: (a: T) => T
  readonly abs: (a: T) => T
  /** Elementwise max; NaN propagates (torch.maximum). */
  readonly maximum: (a: T, b: T) => T
  /** Elementwise min; NaN propagates (torch.minimum). */
  readonly minimum: (a: T, b: T) => T
  /** -1, 0 or 1 per element (0 for 0; NaN stays NaN), as torch.sign. */
  readonly sign: (a: T) => T
  /**
   * `a` where `cond` is non-zero, else `b` (torch.where). `cond` is a numeric mask, not a
   * boolean tensor, so masks compose with the arithmetic ops: build one with `sign`, `abs`,
   * `maximum`... (a NaN in `cond` counts as non-zero).
   */
  readonly where: (cond: T, a: T, b: T) => T
  /** Each element limited to [lo, hi] (torch.clamp with scalar bounds). */
  readonly clamp: (a: T, lo: number, hi: number) => T
  readonly neg: (a: T) => T
  readonly fullLike: (a: T, value: number) => T
  readonly shape: (a: T) => ReadonlyArray<number>
  /** Values in row-major order, as float64 numbers (for state encoding and tests). */
  readonly toArray: (a: T) => Float64Array
  readonly fromArray: (values: ArrayLike<number>, shape: ReadonlyArray<number>) => T
  /**
   * Whole-update kernels a backend may offer (the tensor engine on tfjs cpu/wasm). An optimizer
   * whose step has one uses it instead of composing element-wise ops: the same math, one
   * kernel call per step for all tensors. Their equality with the composed ops is a property test.
   */
  readonly fused?: Fused<T>
}

/** The hyperparameters of one fused Adam/AdamW step (`step` is 1 on the first update). */
export interface AdamStep {
  readonly lr: number
  readonly beta1: number
  readonly beta2: number
  readonly eps: number
  readonly weightDecay: number
  /** AdamW's decoupled weight decay instead of Adam's L2 term. */
  readonly decoupled: boolean
  readonly amsgrad: boolean
  readonly maximize: boolean
  readonly step: number
}

/** The hyperparameters of one fused SGD step; `first` when there is no momentum buffer yet. */
export interface SgdStep {
  readonly lr: number
  readonly momentum: number
  readonly dampening: number
  readonly weightDecay: number
  readonly nesterov: boolean
  readonly maximize: boolean
  readonly first: boolean
}

export interface AdamTensors<T> {
  readonly param: T
  readonly expAvg: T
  readonly expAvgSq: T
  /** Present with amsgrad. */
  readonly maxExpAvgSq?: T | undefined
}

export interface SgdTensors<T> {
  readonly param: T
  /** Present when momentum > 0. */
  readonly momentumBuffer?: T | undefined
}

/**
 * Fused optimizer steps over every parameter tensor at once (a multi-tensor update: one kernel
 * call per step, not one per tensor), results in the order of `inputs`. Inputs are never mutated.
 */
export interface Fused<T> {
  readonly adam?: (
    inputs: ReadonlyArray<AdamTensors<T> & { readonly grad: T }>,
    step: AdamStep
  ) => ReadonlyArray<AdamTensors<T>>
  readonly sgd?: (
    inputs: ReadonlyArray<SgdTensors<T> & { readonly grad: T }>,
    step: SgdStep
  ) => ReadonlyArray<SgdTensors<T>>
}

/** Named parameter trees, keyed like PyTorch's `state_dict` (`conv1.weight`, ...). */
export type Params<T> = { readonly [name: string]: T }

/** Applies `f` to every leaf of `tree`, keeping the names. */
export const mapParams = <A, B>(tree: Params<A>, f: (value: A, name: string) => B): Params<B> => {
  const out: Record<string, B> = {}
  for (const name of Object.keys(tree)) out[name] = f(tree[name], name)
  return out
}
