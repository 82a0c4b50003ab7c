import type { Numeric } from "./Numeric.js"

/** A float64 array with its shape: the exact reference representation. Never mutated. */
export interface Tensor {
  readonly shape: ReadonlyArray<number>
  readonly data: Float64Array
}

const sizeOf = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)

export const make = (values: ArrayLike<number>, shape: ReadonlyArray<number> = [values.length]): Tensor => {
  if (sizeOf(shape) !== values.length) {
    throw new RangeError(`shape [${shape.join(", ")}] does not hold ${values.length} values`)
  }
  return { shape: [...shape], data: Float64Array.from(values) }
}

const map1 = (a: Tensor, f: (x: number) => number): Tensor => {
  const out = new Float64Array(a.data.length)
  for (let i = 0; i < out.length; i++) out[i] = f(a.data[i])
  return { shape: a.shape, data: out }
}

const map2 = (a: Tensor, b: Tensor, f: (x: number, y: number) => number): Tensor => {
  if (a.data.length !== b.data.length) {
    throw new RangeError(`shape mismatch: [${a.shape.join(", ")}] vs [${b.shape.join(", ")}]`)
  }
  const out = new Float64Array(a.data.length)
  for (let i = 0; i < out.length; i++) out[i] = f(a.data[i], b.data[i])
  return { shape: a.shape, data: out }
}

/** The float64 reference backend: plain loops over `Float64Array`s, every result a new array. */
export const Float64: Numeric<Tensor> = {
  name: "float64",
  add: (a, b) => map2(a, b, (x, y) => x + y),
  sub: (a, b) => map2(a, b, (x, y) => x - y),
  mul: (a, b) => map2(a, b, (x, y) => x * y),
  div: (a, b) => map2(a, b, (x, y) => x / y),
  scale: (a, s) => map1(a, (x) => x * s),
  addScalar: (a, s) => map1(a, (x) => x + s),
  sqrt: (a) => map1(a, Math.sqrt),
  abs: (a) => map1(a, Math.abs),
  // Math.max propagates NaN, like torch.maximum.
  maximum: (a, b) => map2(a, b, Math.max),
  neg: (a) => map1(a, (x) => -x),
  fullLike: (a, value) => ({ shape: a.shape, data: new Float64Array(a.data.length).fill(value) }),
  shape: (a) => a.shape,
  toArray: (a) => Float64Array.from(a.data),
  fromArray: (values, shape) => make(values, shape)
}
