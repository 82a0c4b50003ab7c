import { base64 } from "./SimdModule.js"

/**
 * Our SIMD wasm kernels (simd/kernels.c), instantiated on the tfjs wasm backend's own memory:
 * they read and write tensors where they live on its heap, no copy in or out. Pointers are byte
 * offsets into that heap (`backend.dataIdMap.get(t.dataId).memoryOffset`).
 */
export interface Exports {
  readonly conv_filter_grad: (
    x: number,
    dy: number,
    dw: number,
    xp: number,
    dyp: number,
    n: number,
    h: number,
    w: number,
    ci: number,
    oh: number,
    ow: number,
    co: number,
    kh: number,
    kw: number,
    top: number,
    left: number
  ) => void
  readonly bias_grad: (dy: number, out: number, m: number, c: number) => void
  /** out [k, n] = a^T b, a [m, k], b [m, n]. */
  readonly matmul_ta: (a: number, b: number, out: number, m: number, k: number, n: number) => void
  readonly adam: (
    p: number,
    g: number,
    m: number,
    s: number,
    vmaxIn: number,
    pOut: number,
    mOut: number,
    sOut: number,
    vmaxOut: number,
    len: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    stepSize: number,
    bc2: number,
    shrink: number,
    decoupled: number,
    amsgrad: number,
    maximize: number
  ) => void
  /** out [m, k] = a w^T, a [m, n], w [k, n]. */
  readonly matmul_tb: (a: number, w: number, out: number, m: number, k: number, n: number) => void
  readonly max_pool_grad_tiled: (
    x: number,
    dy: number,
    dx: number,
    n: number,
    h: number,
    w: number,
    c: number,
    oh: number,
    ow: number,
    sh: number,
    sw: number,
    afterRelu: number
  ) => void
}

type AnyBackend = any

// The WebAssembly global, typed here: the package compiles without the DOM's lib.
interface Wasm {
  readonly Memory: new (...args: Array<never>) => object
  readonly Module: new (bytes: Uint8Array) => object
  readonly Instance: new (module: object, imports: object) => { readonly exports: unknown }
}
const WebAssembly = (globalThis as unknown as { readonly WebAssembly: Wasm }).WebAssembly

let compiled: object | undefined
const instances = new WeakMap<object, Exports>()

/**
 * The kernels on `backend`'s heap, or undefined when it is not the wasm backend (or its memory
 * is not reachable: tfjs' threaded build shares a memory we do not instantiate on).
 */
export const on = (backend: AnyBackend): Exports | undefined => {
  const memory: unknown = backend?.wasm?.asm?.memory
  if (!(memory instanceof WebAssembly.Memory)) return undefined
  let exports = instances.get(memory)
  if (exports === undefined) {
    compiled ??= new WebAssembly.Module(Buffer.from(base64, "base64"))
    exports = new WebAssembly.Instance(compiled, { env: { memory } }).exports as unknown as Exports
    instances.set(memory, exports)
  }
  return exports
}

/**
 * A float32 tensor's values as a view of the wasm heap where it lives (tfjs' own
 * `typedArrayFromHeap`), or undefined off the wasm backend. Valid until the next allocation or
 * kernel (either may grow the heap and replace its buffer).
 */
export const heapView = (
  backend: AnyBackend,
  t: { readonly dataId: object; readonly shape: ReadonlyArray<number>; readonly dtype: string }
): Float32Array | undefined =>
  t.dtype === "float32" && typeof backend?.typedArrayFromHeap === "function"
    ? (backend.typedArrayFromHeap(t) as Float32Array)
    : undefined

/** A tensor's byte offset on the wasm heap. */
export const offset = (backend: AnyBackend, t: { readonly dataId: object }): number =>
  backend.dataIdMap.get(t.dataId).memoryOffset as number

/** `bytes` of scratch on the wasm heap for one call: `use` gets its offset; freed after. */
export const withScratch = <A>(backend: AnyBackend, bytes: number, use: (at: number) => A): A => {
  const at = backend.wasm._malloc(bytes) as number
  try {
    return use(at)
  } finally {
    backend.wasm._free(at)
  }
}
