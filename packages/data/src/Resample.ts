/**
 * Antialiased bilinear resampling of 8-bit images, computed the way Pillow's `Image.resize(...,
 * BILINEAR)` does (which is what torchvision's `Resize` calls on PIL images): a separable
 * triangle filter whose support widens with the downscale factor, weights quantised to 22-bit
 * fixed point, a horizontal pass into an 8-bit intermediate, then a vertical pass. Matching the
 * arithmetic, not just the idea, is what makes the pixels (and so the chapter's statistics) equal.
 * Both passes run in WebAssembly SIMD (wasm/resample.c, same integer arithmetic) when available.
 */
import { resampleWasmBase64 } from "./ResampleWasm.js"

/**
 * The pixel kernels, built by a self-contained factory: nothing inside refers to anything outside,
 * so the decode workers can be given this very function's source and run the same code.
 */
export function makeKernels(cacheSize = 256, simdModule?: SimdModule) {
  const PRECISION_BITS = 32 - 8 - 2
  const ONE = 2 ** PRECISION_BITS
  const HALF = 2 ** (PRECISION_BITS - 1)

  const bilinear = (x: number): number => {
    const a = x < 0 ? -x : x
    return a < 1 ? 1 - a : 0
  }

  type Coefficients = {
    readonly ksize: number
    /** Per output index: first input index and number of taps. */
    readonly bounds: Int32Array
    /** Fixed-point weights, `ksize` per output index (|w| < 2^23, so sums of taps stay int32). */
    readonly weights: Int32Array
  }

  const cache = new Map<string, Coefficients>()

  /**
   * Tables are shared across images: a dataset resizes thousands of same-sized images. The cache
   * belongs to this set of kernels (one per `Resize`, one per worker), never to the module.
   */
  const coefficients = (inSize: number, in0: number, in1: number, outSize: number): Coefficients => {
    if (cacheSize === 0) return computeCoefficients(inSize, in0, in1, outSize)
    const key = `${inSize},${in0},${in1},${outSize}`
    let c = cache.get(key)
    if (c === undefined) {
      if (cache.size >= cacheSize) cache.clear()
      c = computeCoefficients(inSize, in0, in1, outSize)
      cache.set(key, c)
    }
    return c
  }

  /** Filter taps mapping input [in0, in1) of an axis of `inSize` onto `outSize` samples. */
  const computeCoefficients = (inSize: number, in0: number, in1: number, outSize: number): Coefficients => {
    const scale = (in1 - in0) / outSize
    const filterScale = Math.max(scale, 1)
    const support = 1 * filterScale
    const ksize = Math.ceil(support) * 2 + 1
    const bounds = new Int32Array(outSize * 2)
    const weights = new Int32Array(outSize * ksize)
    const ss = 1 / filterScale
    const k = new Float64Array(ksize)
    for (let xx = 0; xx < outSize; xx++) {
      const center = in0 + (xx + 0.5) * scale
      let xmin = Math.trunc(center - support + 0.5)
      if (xmin < 0) xmin = 0
      let xmax = Math.trunc(center + support + 0.5)
      if (xmax > inSize) xmax = inSize
      xmax -= xmin
      let ww = 0
      for (let x = 0; x < xmax; x++) {
        const w = bilinear((x + xmin - center + 0.5) * ss)
        k[x] = w
        ww += w
      }
      for (let x = 0; x < xmax; x++) {
        const w = ww !== 0 ? k[x] / ww : k[x]
        // Pillow rounds half away from zero when quantising (C cast of w * ONE +- 0.5).
        weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE)
      }
      bounds[2 * xx] = xmin
      bounds[2 * xx + 1] = xmax
    }
    return { ksize, bounds, weights }
  }

  const clip8 = (v: number): number => {
    const r = v >> PRECISION_BITS
    return r < 0 ? 0 : Math.min(r, 255)
  }

  // The horizontal passes below accumulate exact doubles (|pixel * weight| < 2^31, and a few
  // dozen taps stay far below 2^53) and wrap to int32 once with `| 0`: the same value as
  // Pillow's int32 accumulation (wrapping commutes with addition), about twice as fast in V8 as
  // `Math.imul` and `| 0` at every tap.
  const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

  /** RGB out of RGBA pixels read as little-endian 32-bit words (one load per tap, alpha ignored). */
  const horizontalRgba = (
    words: Uint32Array,
    width: number,
    first: number,
    rows: number,
    outWidth: number,
    { ksize, bounds, weights }: Coefficients,
    tmp: Uint8Array
  ): void => {
    for (let yy = 0; yy < rows; yy++) {
      const rowIn = (yy + first) * width
      const rowOut = yy * outWidth * 3
      for (let xx = 0; xx < outWidth; xx++) {
        const taps = bounds[2 * xx + 1]
        const kOff = xx * ksize
        let s0 = HALF
        let s1 = HALF
        let s2 = HALF
        let p = rowIn + bounds[2 * xx]
        for (let x = 0; x < taps; x++, p++) {
          const k = weights[kOff + x]
          const v = words[p]
          s0 += (v & 255) * k
          s1 += ((v >>> 8) & 255) * k
          s2 += ((v >>> 16) & 255) * k
        }
        const o = rowOut + xx * 3
        tmp[o] = clip8(s0 | 0)
        tmp[o + 1] = clip8(s1 | 0)
        tmp[o + 2] = clip8(s2 | 0)
      }
    }
  }

  /** RGB out of pixels `stride` bytes apart (3, or 4 when RGBA is not word-aligned). */
  const horizontalRgb = (
    data: Uint8Array,
    width: number,
    stride: number,
    first: number,
    rows: number,
    outWidth: number,
    { ksize, bounds, weights }: Coefficients,
    tmp: Uint8Array
  ): void => {
    for (let yy = 0; yy < rows; yy++) {
      const rowIn = (yy + first) * width * stride
      const rowOut = yy * outWidth * 3
      for (let xx = 0; xx < outWidth; xx++) {
        const taps = bounds[2 * xx + 1]
        const kOff = xx * ksize
        let s0 = HALF
        let s1 = HALF
        let s2 = HALF
        let p = rowIn + bounds[2 * xx] * stride
        for (let x = 0; x < taps; x++, p += stride) {
          const k = weights[kOff + x]
          s0 += data[p] * k
          s1 += data[p + 1] * k
          s2 += data[p + 2] * k
        }
        const o = rowOut + xx * 3
        tmp[o] = clip8(s0 | 0)
        tmp[o + 1] = clip8(s1 | 0)
        tmp[o + 2] = clip8(s2 | 0)
      }
    }
  }

  /** Any channel count, channel by channel. */
  const horizontalAny = (
    data: Uint8Array,
    width: number,
    channels: number,
    first: number,
    rows: number,
    outWidth: number,
    { ksize, bounds, weights }: Coefficients,
    tmp: Uint8Array
  ): void => {
    for (let yy = 0; yy < rows; yy++) {
      const rowIn = (yy + first) * width * channels
      const rowOut = yy * outWidth * channels
      for (let xx = 0; xx < outWidth; xx++) {
        const taps = bounds[2 * xx + 1]
        const kOff = xx * ksize
        for (let c = 0; c < channels; c++) {
          let ss = HALF
          let p = rowIn + bounds[2 * xx] * channels + c
          for (let x = 0; x < taps; x++, p += channels) ss += data[p] * weights[kOff + x]
          tmp[rowOut + xx * channels + c] = clip8(ss | 0)
        }
      }
    }
  }

  /**
   * The SIMD kernels (resample.c), instantiated on first use: their own memory, a few pages
   * that grow to the largest image resized so far, up to `SIMD_MAX_BYTES` (larger images take
   * the JavaScript path, so a huge image never pins its size in a worker for good).
   */
  const SIMD_MAX_BYTES = 64 * 1024 * 1024
  type Simd = {
    readonly memory: { readonly buffer: ArrayBuffer; grow(pages: number): number }
    readonly base: number
    readonly horizontal: (...args: Array<number>) => void
    readonly vertical: (...args: Array<number>) => void
    readonly unfilter: (raw: number, width: number, height: number, bpp: number) => number
  }
  let simd: Simd | undefined
  const simdKernels = (): Simd | undefined => {
    if (simd === undefined && simdModule !== undefined) {
      const wasm = (globalThis as unknown as { WebAssembly: SimdRuntime }).WebAssembly
      const { exports } = new wasm.Instance(simdModule, {})
      const memory = exports.memory as Simd["memory"]
      simd = {
        memory,
        base: memory.buffer.byteLength,
        horizontal: exports.horizontal as Simd["horizontal"],
        vertical: exports.vertical as Simd["vertical"],
        unfilter: exports.unfilter as Simd["unfilter"]
      }
    }
    return simd
  }

  const grow = (k: Simd, end: number) => {
    const have = k.memory.buffer.byteLength
    if (end > have) k.memory.grow(Math.ceil((end - have) / 65536))
  }

  /**
   * `bytes` bytes of the SIMD memory (plus 16 of slack) for a PNG decoder to inflate into, so
   * that `unfilter` and `resize` work on the pixels where they are; valid until the next call of
   * a kernel. `undefined` without SIMD or above `SIMD_MAX_BYTES`.
   */
  const scratch = (bytes: number): Uint8Array | undefined => {
    const k = simdKernels()
    if (k === undefined || k.base + bytes + 16 > SIMD_MAX_BYTES) return undefined
    grow(k, k.base + bytes + 16)
    return new Uint8Array(k.memory.buffer, k.base, bytes)
  }

  /**
   * Unfilters PNG rows in place in a `scratch` view (Png's `unfilter`, in SIMD): -1, or the first
   * row with an invalid filter type; `undefined` when `raw` is not a scratch view.
   */
  const unfilter = (raw: Uint8Array, width: number, height: number, bpp: number): number | undefined =>
    simd !== undefined && raw.buffer === simd.memory.buffer
      ? simd.unfilter(raw.byteOffset, width, height, bpp)
      : undefined

  /**
   * Both passes in WebAssembly (3 channels out of 3- or 4-byte pixels); false when the image is
   * too large for the SIMD memory. Rows [first, first + rows) are copied in, then the filter
   * tables, and the result copied out.
   */
  const resizeSimd = (
    k: Simd,
    data: Uint8Array,
    width: number,
    srcStride: number,
    first: number,
    rows: number,
    outWidth: number,
    outHeight: number,
    horiz: Coefficients,
    vert: Coefficients
  ): Uint8Array | undefined => {
    const align = (n: number) => (n + 15) & ~15
    const srcBytes = rows * width * srcStride
    const rowBytes = width * srcStride
    const lineBytes = outWidth * 3
    // Pixels a decoder left in this memory (`scratch`) are read where they are.
    const inPlace = data.buffer === k.memory.buffer
    const srcOff = inPlace ? data.byteOffset + first * rowBytes : k.base
    const hbOff = align((inPlace ? data.byteOffset + data.length : srcOff + srcBytes) + 16)
    const hwOff = align(hbOff + 4 * horiz.bounds.length)
    const vbOff = align(hwOff + 4 * horiz.weights.length)
    const vwOff = align(vbOff + 4 * vert.bounds.length)
    const tmpOff = align(vwOff + 4 * vert.weights.length)
    const outOff = align(tmpOff + rows * lineBytes + 16)
    const end = outOff + outHeight * lineBytes + 16
    if (end > SIMD_MAX_BYTES) return undefined
    // Growing detaches views of the old buffer (`data` too, when in place): offsets from here on.
    grow(k, end)
    const buffer = k.memory.buffer
    if (!inPlace) {
      new Uint8Array(buffer, srcOff, srcBytes).set(
        data.subarray(first * rowBytes, first * rowBytes + srcBytes)
      )
    }
    new Int32Array(buffer, hbOff, horiz.bounds.length).set(horiz.bounds)
    new Int32Array(buffer, hwOff, horiz.weights.length).set(horiz.weights)
    const vb = new Int32Array(buffer, vbOff, vert.bounds.length)
    vb.set(vert.bounds)
    for (let i = 0; i < outHeight; i++) vb[2 * i] -= first
    new Int32Array(buffer, vwOff, vert.weights.length).set(vert.weights)
    k.horizontal(srcOff, width, srcStride, rows, outWidth, hbOff, hwOff, horiz.ksize, tmpOff)
    k.vertical(tmpOff, lineBytes, outHeight, vbOff, vwOff, vert.ksize, outOff)
    return new Uint8Array(buffer.slice(outOff, outOff + outHeight * lineBytes))
  }

  /**
   * Resizes interleaved 8-bit pixels (`channels` per pixel) from `width x height` to
   * `outWidth x outHeight`, optionally from a source box [x0, y0, x1, y1) (for crops).
   */
  const resize = (
    data: Uint8Array,
    width: number,
    height: number,
    channels: number,
    outWidth: number,
    outHeight: number,
    box: readonly [number, number, number, number] = [0, 0, width, height],
    srcStride: number = channels
  ): Uint8Array => {
    const [bx0, by0, bx1, by1] = box
    // Reading RGB out of RGBA pixels (srcStride 4) happens in the horizontal pass, so a
    // strided source always gets one (at the same width its weights are exactly 1: a copy).
    const needH = outWidth !== width || bx0 !== 0 || bx1 !== outWidth || srcStride !== channels
    const needV = outHeight !== height || by0 !== 0 || by1 !== outHeight
    // The callers in this package pass strides they decoded themselves: a bug, not bad input.
    if (srcStride !== channels && channels !== 3) {
      throw new RangeError("resize: srcStride other than channels is read for 3 channels only")
    }
    if (!needH && !needV) return data.slice()
    const horiz = coefficients(width, bx0, bx1, outWidth)
    const vert = coefficients(height, by0, by1, outHeight)
    let src = data
    let srcWidth = width
    let vBounds = vert.bounds
    if (needH) {
      // Only the rows the vertical pass reads are filtered horizontally.
      const first = vert.bounds[0]
      const last = vert.bounds[outHeight * 2 - 2] + vert.bounds[outHeight * 2 - 1]
      const rows = last - first
      const k = needV && channels === 3 ? simdKernels() : undefined
      if (k !== undefined) {
        const out = resizeSimd(k, data, width, srcStride, first, rows, outWidth, outHeight, horiz, vert)
        if (out !== undefined) return out
      }
      const tmp = new Uint8Array(rows * outWidth * channels)
      if (channels === 3 && srcStride === 4 && LITTLE_ENDIAN && data.byteOffset % 4 === 0) {
        const words = new Uint32Array(data.buffer, data.byteOffset, data.length >> 2)
        horizontalRgba(words, width, first, rows, outWidth, horiz, tmp)
      } else if (channels === 3) horizontalRgb(data, width, srcStride, first, rows, outWidth, horiz, tmp)
      else horizontalAny(data, width, channels, first, rows, outWidth, horiz, tmp)
      src = tmp
      srcWidth = outWidth
      vBounds = vert.bounds.slice()
      for (let i = 0; i < outHeight; i++) vBounds[2 * i] -= first
    }
    if (!needV) return src
    const out = new Uint8Array(outHeight * srcWidth * channels)
    const { ksize, weights } = vert
    const stride = srcWidth * channels
    for (let yy = 0; yy < outHeight; yy++) {
      const ymin = vBounds[2 * yy]
      const taps = vBounds[2 * yy + 1]
      const kOff = yy * ksize
      const rowOut = yy * stride
      for (let i = 0; i < stride; i++) {
        let ss = HALF
        let p = ymin * stride + i
        for (let y = 0; y < taps; y++, p += stride) ss += src[p] * weights[kOff + y]
        out[rowOut + i] = clip8(ss | 0)
      }
    }
    return out
  }

  /**
   * Pixels with 1-4 interleaved channels to RGB the way PIL's `convert('RGB')` does: grey is
   * replicated, and alpha is dropped, not composited (a transparent pixel keeps its colour).
   */
  const toRgb = (data: Uint8Array, width: number, height: number, channels: number) => {
    const n = width * height
    if (channels === 3) return { width, height, data }
    const out = new Uint8Array(n * 3)
    if (channels === 4) {
      for (let i = 0; i < n; i++) {
        out[3 * i] = data[4 * i]
        out[3 * i + 1] = data[4 * i + 1]
        out[3 * i + 2] = data[4 * i + 2]
      }
    } else if (channels === 1 || channels === 2) {
      for (let i = 0; i < n; i++) {
        const v = data[channels * i]
        out[3 * i] = v
        out[3 * i + 1] = v
        out[3 * i + 2] = v
      }
    } else {
      // Decoders hand over 1 to 4 channels only; anything else is a bug in the decoder.
      throw new RangeError(`toRgb: unsupported channel count ${channels}`)
    }
    return { width, height, data: out }
  }

  /**
   * torchvision's output size for `Resize(size)`, as [width, height]: an int matches the smaller
   * edge and scales the other keeping the aspect ratio (truncated, as `int(size * long / short)`);
   * a pair is [h, w].
   */
  const resizedSize = (
    width: number,
    height: number,
    size: number | readonly [number, number]
  ): readonly [number, number] => {
    if (typeof size !== "number") return [size[1], size[0]]
    const [short, long] = width <= height ? [width, height] : [height, width]
    const newLong = Math.trunc((size * long) / short)
    return width <= height ? [size, newLong] : [newLong, size]
  }

  return { resize, toRgb, resizedSize, scratch, unfilter }
}

/** A compiled WebAssembly module (immutable; each set of kernels instantiates its own). */
export type SimdModule = object

/** The few WebAssembly calls the kernels make (the project's type libraries do not declare it). */
interface SimdRuntime {
  readonly Module: new (bytes: Uint8Array) => SimdModule
  readonly Instance: new (
    module: SimdModule,
    imports: object
  ) => { readonly exports: Record<string, unknown> }
}

let compiled: SimdModule | null | undefined

/**
 * The SIMD kernels compiled once per thread (`undefined` where WebAssembly SIMD is missing: the
 * JavaScript kernels then do the work, with the same bytes).
 */
export const simdModule = (): SimdModule | undefined => {
  if (compiled === undefined) {
    try {
      const wasm = (globalThis as unknown as { WebAssembly: SimdRuntime }).WebAssembly
      compiled = new wasm.Module(Buffer.from(resampleWasmBase64, "base64"))
    } catch {
      compiled = null
    }
  }
  return compiled ?? undefined
}

/**
 * Module-level kernels without a coefficient cache; `Resize` owns one. Their SIMD memory is a
 * scratch area that no call leaves anything in.
 */
const kernels = makeKernels(0, simdModule())

/**
 * Resizes interleaved 8-bit pixels (`channels` per pixel) from `width x height` to
 * `outWidth x outHeight`, optionally from a source box [x0, y0, x1, y1) (for crops).
 */
export const resize = kernels.resize
export const toRgb = kernels.toRgb
export const resizedSize = kernels.resizedSize
