/**
 * A PNG decoder for the common case (8-bit, non-interlaced, any colour type), with inflation
 * done by zlib in C. For small images sharp's fixed cost per call (pipeline setup, thread-pool
 * hand-off) is several times the decoding work; this path skips it. Anything else (16-bit,
 * sub-byte depths, interlacing) is left to sharp.
 *
 * The factory is self-contained (it only uses the zlib functions it is given) so the decode
 * workers can run the same source.
 */
import { crc32, inflateSync } from "node:zlib"
import { Either } from "effect"

export interface RawPixels {
  readonly width: number
  readonly height: number
  /** 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA; 8-bit interleaved. */
  readonly channels: number
  readonly data: Uint8Array
}

export function makePngDecoder(
  zlib: {
    readonly inflateSync: (
      data: Uint8Array,
      options?: { readonly maxOutputLength?: number; readonly chunkSize?: number }
    ) => Uint8Array
    readonly crc32: (data: Uint8Array) => number
    /** With `reuse`: a zlib stream whose handle inflates into a buffer of ours. */
    readonly Inflate?: new () => object
    readonly constants?: { readonly Z_FINISH: number }
  },
  options: {
    /**
     * Inflate into one buffer kept from image to image (and join IDAT chunks in another), so the
     * pixels returned are only valid until the next call: for a decode worker, which resizes
     * them at once. Fresh buffers per image cost more than the inflation itself where page
     * faults are dear (a VM: ~15 us per 4 KiB page, 88 pages for a 300x300 RGBA image).
     */
    readonly reuse?: boolean
    /**
     * With `reuse`: where to inflate (the resample kernels' SIMD memory, so that the pixels are
     * unfiltered and resized where they are) and the SIMD unfilter (-1, or the bad row).
     */
    readonly simd?: {
      readonly scratch: (bytes: number) => Uint8Array | undefined
      readonly unfilter: (raw: Uint8Array, width: number, height: number, bpp: number) => number | undefined
    }
  } = {}
) {
  const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10]
  // Images up to this many inflated bytes use the kept buffers; larger ones get fresh ones, so
  // a huge image does not pin its size for the rest of the thread's life.
  const REUSE_MAX_BYTES = 16 * 1024 * 1024

  type Handle = {
    reset(): void
    writeSync(
      flush: number,
      input: Uint8Array,
      inOff: number,
      inLen: number,
      out: Uint8Array,
      outOff: number,
      outLen: number
    ): void
    onerror: (message: string) => void
  }
  type Engine = { readonly _handle: Handle; readonly _writeState: Uint32Array }
  let engine: Engine | undefined
  let inflated = new Uint8Array(0)
  let joined = new Uint8Array(0)
  // Node's zlib handle API (what inflateSync itself calls): used only when present, else the
  // fresh-buffer inflateSync below.
  const handleOf = () => {
    if (!options.reuse || zlib.Inflate === undefined || zlib.constants === undefined) return undefined
    if (engine === undefined) {
      const e = new zlib.Inflate() as Partial<Engine>
      if (typeof e?._handle?.writeSync !== "function" || !(e._writeState instanceof Uint32Array))
        return undefined
      engine = e as Engine
    }
    return engine
  }

  /** The zlib stream inflated into the kept buffer, or `undefined` to use inflateSync. */
  const inflateKept = (compressed: Uint8Array, limit: number): Uint8Array | undefined => {
    if (limit > REUSE_MAX_BYTES) return undefined
    const e = handleOf()
    if (e === undefined) return undefined
    // One byte over the limit: filling the buffer means the stream inflates beyond it.
    const target = options.simd?.scratch(limit + 1)
    if (target === undefined && inflated.length < limit + 1) inflated = new Uint8Array(limit + 1)
    const out = target ?? inflated
    let failure: string | undefined
    e._handle.onerror = (message: string) => {
      failure = message
    }
    e._handle.reset()
    e._handle.writeSync(zlib.constants!.Z_FINISH, compressed, 0, compressed.length, out, 0, limit + 1)
    if (failure !== undefined) throw new Error(failure)
    const produced = limit + 1 - e._writeState[0]
    if (produced > limit) throw new Error("PNG: image data inflates beyond the size its IHDR declares")
    return out.subarray(0, produced)
  }

  const isPng = (bytes: Uint8Array): boolean => bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b)

  const u32 = (b: Uint8Array, o: number) =>
    ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0

  /**
   * Width and height from the IHDR chunk (the first one, at a fixed offset), without decoding:
   * what a pixel limit is checked against before anything is allocated. Undefined when not a PNG.
   */
  const pngSize = (bytes: Uint8Array): { readonly width: number; readonly height: number } | undefined =>
    isPng(bytes) && bytes.length >= 24 ? { width: u32(bytes, 16), height: u32(bytes, 20) } : undefined

  /**
   * Unfilters in place: row y moves from `y * (stride + 1) + 1` down to `y * stride`, so the
   * inflated buffer becomes the pixels without a second full-size array. Each byte is written at
   * or below the filtered byte it comes from, after that byte (and every earlier one) was read,
   * and the previous row, already final, lies below the current one.
   */
  const unfilter = (raw: Uint8Array, width: number, height: number, bpp: number): Uint8Array => {
    const stride = width * bpp
    const bad = options.simd?.unfilter(raw, width, height, bpp)
    if (bad !== undefined) {
      if (bad >= 0) throw new Error(`PNG: invalid filter type ${raw[bad * (stride + 1)]} in row ${bad}`)
      return raw.subarray(0, stride * height)
    }
    const out = raw
    for (let y = 0; y < height; y++) {
      const filter = raw[y * (stride + 1)]
      const src = y * (stride + 1) + 1
      const row = y * stride
      const prev = row - stride
      // One loop per filter and position (first pixel / first row apart), no per-byte tests:
      // on adaptively filtered files (PIL's, mostly Up and Sub) 3-4x faster than one loop
      // testing `i >= bpp` and `y > 0` at every byte.
      const top = y === 0
      switch (filter) {
        case 0:
          out.copyWithin(row, src, src + stride)
          break
        case 1:
          for (let i = 0; i < bpp; i++) out[row + i] = raw[src + i]
          for (let i = bpp; i < stride; i++) out[row + i] = raw[src + i] + out[row + i - bpp]
          break
        case 2:
          if (top) out.copyWithin(row, src, src + stride)
          else for (let i = 0; i < stride; i++) out[row + i] = raw[src + i] + out[prev + i]
          break
        case 3:
          if (top) {
            for (let i = 0; i < bpp; i++) out[row + i] = raw[src + i]
            for (let i = bpp; i < stride; i++) out[row + i] = raw[src + i] + (out[row + i - bpp] >> 1)
          } else {
            for (let i = 0; i < bpp; i++) out[row + i] = raw[src + i] + (out[prev + i] >> 1)
            for (let i = bpp; i < stride; i++)
              out[row + i] = raw[src + i] + ((out[row + i - bpp] + out[prev + i]) >> 1)
          }
          break
        case 4:
          if (top) {
            // Above the first row b = c = 0: Paeth predicts a (Sub).
            for (let i = 0; i < bpp; i++) out[row + i] = raw[src + i]
            for (let i = bpp; i < stride; i++) out[row + i] = raw[src + i] + out[row + i - bpp]
          } else {
            // Left of the first pixel a = c = 0: Paeth predicts b (Up).
            for (let i = 0; i < bpp; i++) out[row + i] = raw[src + i] + out[prev + i]
            for (let i = bpp; i < stride; i++) {
              const a = out[row + i - bpp]
              const b = out[prev + i]
              const c = out[prev + i - bpp]
              const pa = b > c ? b - c : c - b
              const pb = a > c ? a - c : c - a
              const pc = a + b > 2 * c ? a + b - 2 * c : 2 * c - a - b
              out[row + i] = raw[src + i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)
            }
          }
          break
        default:
          throw new Error(`PNG: invalid filter type ${filter} in row ${y}`)
      }
    }
    return out.subarray(0, stride * height)
  }

  /**
   * Decodes `bytes`; `undefined` when the file is a PNG this decoder leaves to sharp. Throws on
   * a damaged file (bad CRC, truncated, inconsistent sizes), like libpng and PIL.
   */
  const decodePng = (bytes: Uint8Array): RawPixels | undefined => {
    if (!isPng(bytes)) return undefined
    let pos = 8
    let width = 0
    let height = 0
    let depth = 0
    let colorType = -1
    let interlace = 0
    let palette: Uint8Array | undefined
    const idat: Array<Uint8Array> = []
    let ended = false
    while (!ended) {
      if (pos + 12 > bytes.length) throw new Error("PNG: file is truncated")
      const length = u32(bytes, pos)
      const type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7])
      const end = pos + 8 + length
      if (end + 4 > bytes.length) throw new Error(`PNG: file is truncated inside chunk ${type}`)
      if (zlib.crc32(bytes.subarray(pos + 4, end)) !== u32(bytes, end))
        throw new Error(`PNG: CRC error in chunk ${type}`)
      const data = bytes.subarray(pos + 8, end)
      if (type === "IHDR") {
        width = u32(data, 0)
        height = u32(data, 4)
        depth = data[8]
        colorType = data[9]
        interlace = data[12]
      } else if (type === "PLTE") palette = data
      else if (type === "IDAT") idat.push(data)
      else if (type === "IEND") ended = true
      pos = end + 4
    }
    if (width === 0 || height === 0) throw new Error("PNG: missing or empty IHDR")
    if (depth !== 8 || interlace !== 0) return undefined
    const channels =
      colorType === 0
        ? 1
        : colorType === 2
          ? 3
          : colorType === 3
            ? 1
            : colorType === 4
              ? 2
              : colorType === 6
                ? 4
                : 0
    if (channels === 0) throw new Error(`PNG: invalid colour type ${colorType}`)
    let compressed = idat[0] ?? new Uint8Array(0)
    if (idat.length > 1) {
      let total = 0
      for (const c of idat) total += c.length
      const keep = options.reuse === true && total <= REUSE_MAX_BYTES
      if (keep && joined.length < total) joined = new Uint8Array(total)
      compressed = keep ? joined.subarray(0, total) : new Uint8Array(total)
      let o = 0
      for (const c of idat) {
        compressed.set(c, o)
        o += c.length
      }
    }
    // The IHDR bounds the inflated size: a stream that inflates far beyond it (a zlib bomb
    // behind a small header) is cut off instead of filling memory. A little slack keeps files
    // with trailing filler (which libpng tolerates) readable.
    const expected = height * (width * channels + 1)
    let raw: Uint8Array
    try {
      // One output chunk of the expected size: no list of 16 KiB chunks concatenated at the end.
      raw =
        inflateKept(compressed, expected + 65536) ??
        zlib.inflateSync(compressed, { maxOutputLength: expected + 65536, chunkSize: expected + 1024 })
    } catch (e) {
      if (e instanceof RangeError)
        throw new Error("PNG: image data inflates beyond the size its IHDR declares")
      throw e
    }
    if (raw.length < expected) throw new Error("PNG: image data is truncated")
    const pixels = unfilter(raw, width, height, channels)
    if (colorType !== 3) return { width, height, channels, data: pixels }
    // Palette images become RGB through the palette; PIL's convert('RGB') ignores tRNS too.
    if (palette === undefined) throw new Error("PNG: palette image without PLTE")
    const rgb = new Uint8Array(width * height * 3)
    for (let i = 0; i < pixels.length; i++) {
      const k = pixels[i] * 3
      if (k + 2 >= palette.length) throw new Error(`PNG: palette index ${pixels[i]} out of range`)
      rgb[3 * i] = palette[k]
      rgb[3 * i + 1] = palette[k + 1]
      rgb[3 * i + 2] = palette[k + 2]
    }
    return { width, height, channels: 3, data: rgb }
  }

  return { isPng, pngSize, decodePng }
}

const decoder = makePngDecoder({ inflateSync, crc32 })

export const isPng = decoder.isPng
export const pngSize = decoder.pngSize
/**
 * Decodes `bytes`: the pixels, `undefined` when the file is a PNG (or not a PNG) this decoder
 * leaves to sharp, or the reason a damaged file cannot be decoded (bad CRC, truncated,
 * inconsistent sizes), as libpng and PIL refuse them. (The factory's decoder throws instead: it
 * runs as plain source on the workers, which report the message.)
 */
export const decodePng = (bytes: Uint8Array): Either.Either<RawPixels | undefined, string> => {
  try {
    return Either.right(decoder.decodePng(bytes))
  } catch (e) {
    return Either.left(e instanceof Error ? e.message : String(e))
  }
}
