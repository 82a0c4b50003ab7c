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
  readonly maximum: (a: T, b: T) => T
  readonly neg: (a: T) => T
  readonly fullLike: (a: T, value: number) => T
  readonly shape: (a: T) => ReadonlyArray<number>
  /** Values in row-major order, as float64 numbers (for state encoding and tests). */
  readonly toArray: (a: T) => Float64Array
  readonly fromArray: (values: ArrayLike<number>, shape: ReadonlyArray<number>) => T
}

/** Named parameter trees, keyed like PyTorch's `state_dict` (`conv1.weight`, ...). */
export type Params<T> = { readonly [name: string]: T }

/** Applies `f` to every leaf of `tree`, keeping the names. */
export const mapParams = <A, B>(tree: Params<A>, f: (value: A, name: string) => B): Params<B> => {
  const out: Record<string, B> = {}
  for (const name of Object.keys(tree)) out[name] = f(tree[name], name)
  return out
}
