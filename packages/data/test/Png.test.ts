import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import * as zlib from "node:zlib"
import { Image, Png, Rps } from "@stepwise/data"
import { Either, Option } from "effect"
import sharp from "sharp"
import { describe, expect, it } from "vitest"
import { makePngDecoder } from "../src/Png.js"
import { makeKernels, simdModule } from "../src/Resample.js"

const walk = (d: string): Array<string> =>
  readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]
  )

/** sharp's decode, converted to RGB: the reference the JavaScript path must equal. */
const viaSharp = async (bytes: Uint8Array) => {
  const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true })
  return Image.toRgb(new Uint8Array(data), info.width, info.height, info.channels)
}
const viaPng = (bytes: Uint8Array) => {
  const raw = Either.getOrThrow(Png.decodePng(bytes))
  if (raw === undefined) throw new Error("expected the JavaScript path to decode this file")
  return Image.toRgb(raw.data, raw.width, raw.height, raw.channels)
}

// A 40x30 picture with every filter type likely to be chosen by the encoder.
const picture = Buffer.from(
  Uint8Array.from({ length: 40 * 30 * 4 }, (_, i) => (i * 37 + ((i / 160) | 0) * 11) % 256)
)
const encode = (options: Parameters<ReturnType<typeof sharp>["png"]>[0], channels: 3 | 4 = 4) =>
  sharp(channels === 4 ? picture : picture.subarray(0, 40 * 30 * 3), {
    raw: { width: 40, height: 30, channels }
  })
    .png(options)
    .toBuffer()

/**
 * A PNG whose row y is filtered with `filters[y % filters.length]` (the encoders here choose for
 * themselves), from `pixels` (`channels` bytes a pixel, colour type from the count).
 */
const encodeFiltered = (
  pixels: Uint8Array,
  width: number,
  height: number,
  channels: number,
  filters: ReadonlyArray<number>
): Uint8Array => {
  const stride = width * channels
  const raw = new Uint8Array(height * (stride + 1))
  const at = (y: number, i: number) => (y < 0 || i < 0 ? 0 : pixels[y * stride + i])
  for (let y = 0; y < height; y++) {
    const f = filters[y % filters.length]
    raw[y * (stride + 1)] = f
    for (let i = 0; i < stride; i++) {
      const a = at(y, i - channels)
      const b = at(y - 1, i)
      const c = at(y - 1, i - channels)
      const p = a + b - c
      const pa = Math.abs(p - a)
      const pb = Math.abs(p - b)
      const pc = Math.abs(p - c)
      const predictor = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][f]
      raw[y * (stride + 1) + 1 + i] = (pixels[y * stride + i] - predictor) & 255
    }
  }
  const chunk = (type: string, data: Uint8Array) => {
    const body = Buffer.concat([Buffer.from(type, "latin1"), data])
    const out = Buffer.alloc(12 + data.length)
    out.writeUInt32BE(data.length, 0)
    body.copy(out, 4)
    out.writeUInt32BE(zlib.crc32(body), 8 + data.length)
    return out
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8
  ihdr[9] = { 1: 0, 2: 4, 3: 2, 4: 6 }[channels]!
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", zlib.deflateSync(raw)),
    chunk("IEND", new Uint8Array(0))
  ])
}

describe("Png: the JavaScript decoder for small 8-bit PNGs", () => {
  it("undoes every filter type (and rows mixing them) for 1-4 bytes a pixel: fresh, kept and SIMD buffers", () => {
    const kept = makePngDecoder(zlib, { reuse: true })
    const kernels = makeKernels(0, simdModule())
    const inSimd = makePngDecoder(zlib, { reuse: true, simd: kernels })
    let seed = 7
    for (const channels of [1, 2, 3, 4]) {
      for (const filters of [[0], [1], [2], [3], [4], [4, 3, 2, 1, 0, 2, 4]]) {
        for (const [width, height] of [
          [1, 1],
          [3, 5],
          [33, 17]
        ]) {
          const pixels = Uint8Array.from({ length: width * height * channels }, () => {
            seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
            return seed >>> 24
          })
          const bytes = encodeFiltered(pixels, width, height, channels, filters)
          const fresh = Either.getOrThrow(Png.decodePng(bytes))
          expect(fresh?.channels).toBe(channels)
          expect(Buffer.from(fresh!.data).equals(Buffer.from(pixels))).toBe(true)
          const again = kept.decodePng(bytes)
          expect(Buffer.from(again!.data).equals(Buffer.from(pixels))).toBe(true)
          const simd = inSimd.decodePng(bytes)
          // Unfiltered where the resize reads it: in the kernels' memory.
          expect(simd!.data.buffer).toBe(kernels.scratch(1)!.buffer)
          expect(Buffer.from(simd!.data).equals(Buffer.from(pixels))).toBe(true)
        }
      }
    }
  })

  it("an invalid filter type is named with its row, by each unfilter", () => {
    const pixels = new Uint8Array(9 * 4 * 4)
    const bytes = encodeFiltered(pixels, 9, 4, 4, [0, 1, 7, 2])
    expect(Png.decodePng(bytes)).toEqual(Either.left("PNG: invalid filter type 7 in row 2"))
    const inSimd = makePngDecoder(zlib, { reuse: true, simd: makeKernels(0, simdModule()) })
    expect(() => inSimd.decodePng(bytes)).toThrow("PNG: invalid filter type 7 in row 2")
  })

  it("kept buffers: a damaged file fails and the next good one still decodes", () => {
    const kept = makePngDecoder(zlib, { reuse: true })
    const pixels = Uint8Array.from({ length: 20 * 10 * 3 }, (_, i) => (i * 29) & 255)
    const good = encodeFiltered(pixels, 20, 10, 3, [4, 1])
    // A cut-off zlib stream with a valid CRC: zlib's own "unexpected end of file".
    const idat = zlib.deflateSync(Buffer.alloc(10 * 61, 1)).subarray(0, 12)
    const body = Buffer.concat([Buffer.from("IDAT", "latin1"), idat])
    const chunk = Buffer.alloc(12 + idat.length)
    chunk.writeUInt32BE(idat.length, 0)
    body.copy(chunk, 4)
    chunk.writeUInt32BE(zlib.crc32(body), 8 + idat.length)
    const ihdrEnd = 8 + 25
    const cut = Buffer.concat([good.subarray(0, ihdrEnd), chunk, good.subarray(good.length - 12)])
    expect(() => kept.decodePng(cut)).toThrow(/unexpected end of file|truncated/)
    expect(Buffer.from(kept.decodePng(good)!.data).equals(Buffer.from(pixels))).toBe(true)
  })

  it("decodes all 2,892 bundled images exactly as sharp/libpng do", async () => {
    const files = walk(Rps.bundled().root).filter((f) => f.endsWith(".png"))
    expect(files.length).toBe(2892)
    for (const f of files) {
      const bytes = readFileSync(f)
      const ours = viaPng(bytes)
      const ref = await viaSharp(bytes)
      expect([ours.width, ours.height]).toEqual([ref.width, ref.height])
      if (!Buffer.from(ours.data).equals(Buffer.from(ref.data))) throw new Error(`pixels differ for ${f}`)
    }
  })

  it("handles RGB, RGBA, grey, grey+alpha and palette images", async () => {
    const fixtures = ["gray64x40.png", "la20.png", "rgb37x53.png"].map((f) =>
      readFileSync(new URL(`./fixtures/images/${f}`, import.meta.url))
    )
    const generated = await Promise.all([
      encode({}),
      encode({}, 3),
      encode({ palette: true, colours: 50, dither: 0 }),
      encode({ compressionLevel: 0 })
    ])
    for (const bytes of [...fixtures, ...generated]) {
      expect(Buffer.from(viaPng(bytes).data).equals(Buffer.from((await viaSharp(bytes)).data))).toBe(true)
    }
  })

  it("leaves interlaced and 16-bit PNGs to sharp, and JPEGs are not PNGs", async () => {
    expect(Png.decodePng(await encode({ progressive: true }))).toEqual(Either.right(undefined))
    const sixteen = await sharp(picture, { raw: { width: 40, height: 30, channels: 4 } })
      .toColourspace("rgb16")
      .png()
      .toBuffer()
    expect(Png.decodePng(sixteen)).toEqual(Either.right(undefined))
    expect(Png.isPng(readFileSync(new URL("./fixtures/images/photo160x120.jpg", import.meta.url)))).toBe(
      false
    )
  })

  it("rejects damaged files: a flipped bit (CRC), a cut-off file, a missing IEND", async () => {
    const good = await encode({})
    const flipped = Buffer.from(good)
    flipped[60] ^= 0x10
    const reason = (b: Uint8Array) => Either.getLeft(Png.decodePng(b)).pipe(Option.getOrElse(() => "decoded"))
    expect(reason(flipped)).toMatch(/CRC error/)
    expect(reason(good.subarray(0, good.length - 30))).toMatch(/truncated/)
    expect(reason(good.subarray(0, good.length - 12))).toMatch(/truncated/)
  })
})
