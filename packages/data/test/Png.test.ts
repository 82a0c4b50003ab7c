import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { Image, Png, Rps } from "@stepwise/data"
import { Either, Option } from "effect"
import sharp from "sharp"
import { describe, expect, it } from "vitest"

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

describe("Png: the JavaScript decoder for small 8-bit PNGs", () => {
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
