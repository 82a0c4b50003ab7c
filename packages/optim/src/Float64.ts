import type { Numeric } from "./Numeric.js"

/** A float64 array with its shape: the exact reference representation. Never mutated. */
export interface Tensor {
  readonly shape: ReadonlyArray<number>
  readonly data: Float64Array
}

const sizeOf = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)

export const make = (values: ArrayLike<number>, shape: ReadonlyArray<number> = [values.length]): Tensor => {
  // The reference numeric's constructor, called by optimizers and tests with shapes they built.
  if (sizeOf(shape) !== values.length) {
    throw new RangeError(`shape [${shape.join(", ")}] does not hold ${values.length} values`)
  }
  return { shape: [...shape], data: Float64Array.from(values) }
}

// A defect, not an input error: optimizers reach the ops through `Optimizer.step` /
// `checkTrees`, which return `MismatchedTree` first. Shapes must be equal (no broadcasting).
const sameSize = (a: Tensor, b: Tensor): void => {
  if (
    a.data.length !== b.data.length ||
    a.shape.length !== b.shape.length ||
    a.shape.some((d, i) => d !== b.shape[i])
  ) {
    throw new RangeError(`shape mismatch: [${a.shape.join(", ")}] vs [${b.shape.join(", ")}]`)
  }
}

// One plain loop per operation (no callbacks), so V8 compiles each to a tight loop.
const add = (a: Tensor, b: Tensor): Tensor => {
  sameSize(a, b)
  const [x, y, out] = [a.data, b.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = x[i] + y[i]
  return { shape: a.shape, data: out }
}
const sub = (a: Tensor, b: Tensor): Tensor => {
  sameSize(a, b)
  const [x, y, out] = [a.data, b.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = x[i] - y[i]
  return { shape: a.shape, data: out }
}
const mul = (a: Tensor, b: Tensor): Tensor => {
  sameSize(a, b)
  const [x, y, out] = [a.data, b.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = x[i] * y[i]
  return { shape: a.shape, data: out }
}
const div = (a: Tensor, b: Tensor): Tensor => {
  sameSize(a, b)
  const [x, y, out] = [a.data, b.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = x[i] / y[i]
  return { shape: a.shape, data: out }
}
const maximum = (a: Tensor, b: Tensor): Tensor => {
  sameSize(a, b)
  const [x, y, out] = [a.data, b.data, new Float64Array(a.data.length)]
  // Math.max propagates NaN, like torch.maximum.
  for (let i = 0; i < out.length; i++) out[i] = Math.max(x[i], y[i])
  return { shape: a.shape, data: out }
}
const minimum = (a: Tensor, b: Tensor): Tensor => {
  sameSize(a, b)
  const [x, y, out] = [a.data, b.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = Math.min(x[i], y[i])
  return { shape: a.shape, data: out }
}
const sign = (a: Tensor): Tensor => {
  const [x, out] = [a.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = Math.sign(x[i])
  return { shape: a.shape, data: out }
}
const where = (cond: Tensor, a: Tensor, b: Tensor): Tensor => {
  sameSize(cond, a)
  sameSize(a, b)
  const [c, x, y, out] = [cond.data, a.data, b.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = c[i] !== 0 ? x[i] : y[i]
  return { shape: a.shape, data: out }
}
const clamp = (a: Tensor, lo: number, hi: number): Tensor => {
  const [x, out] = [a.data, new Float64Array(a.data.length)]
  // min(max(x, lo), hi) keeps NaN, like torch.clamp
  for (let i = 0; i < out.length; i++) out[i] = Math.min(Math.max(x[i], lo), hi)
  return { shape: a.shape, data: out }
}
const scale = (a: Tensor, s: number): Tensor => {
  const [x, out] = [a.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = x[i] * s
  return { shape: a.shape, data: out }
}
const addScalar = (a: Tensor, s: number): Tensor => {
  const [x, out] = [a.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = x[i] + s
  return { shape: a.shape, data: out }
}
const sqrt = (a: Tensor): Tensor => {
  const [x, out] = [a.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = Math.sqrt(x[i])
  return { shape: a.shape, data: out }
}
const abs = (a: Tensor): Tensor => {
  const [x, out] = [a.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = Math.abs(x[i])
  return { shape: a.shape, data: out }
}
const neg = (a: Tensor): Tensor => {
  const [x, out] = [a.data, new Float64Array(a.data.length)]
  for (let i = 0; i < out.length; i++) out[i] = -x[i]
  return { shape: a.shape, data: out }
}

/** The float64 reference backend: plain loops over `Float64Array`s, every result a new array. */
export const Float64: Numeric<Tensor> = {
  name: "float64",
  add,
  sub,
  mul,
  div,
  scale,
  addScalar,
  sqrt,
  abs,
  maximum,
  minimum,
  sign,
  where,
  clamp,
  neg,
  fullLike: (a, value) => ({ shape: a.shape, data: new Float64Array(a.data.length).fill(value) }),
  shape: (a) => a.shape,
  toArray: (a) => Float64Array.from(a.data),
  fromArray: (values, shape) => make(values, shape)
}
