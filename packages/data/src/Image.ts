/**
 * Decoded images: 8-bit RGB pixels in row-major HWC order, the shape a PIL image has after the
 * ImageFolder loader's `convert('RGB')`.
 */

import { readFileSync } from "node:fs"
import { FileSystem } from "@effect/platform"
import { Effect } from "effect"
import sharp from "sharp"
import { ImageDecodeError } from "./Errors.js"
import * as Png from "./Png.js"
import * as Resample from "./Resample.js"

export interface RgbImage {
  readonly width: number
  readonly height: number
  /** `height * width * 3` bytes, HWC, R G B. */
  readonly data: Uint8Array
}

/** 1-4 interleaved channels to RGB as PIL's `convert('RGB')`: grey replicated, alpha dropped. */
export const toRgb: (data: Uint8Array, width: number, height: number, channels: number) => RgbImage =
  Resample.toRgb

/** PNGs up to this many pixels are decoded in JavaScript: for them sharp's per-call cost dominates. */
export const SMALL_PNG_PIXELS = 128 * 128

/** Width x height from a PNG's IHDR, without decoding (0 when not a PNG). */
const pngPixels = (bytes: Uint8Array): number =>
  Png.isPng(bytes) && bytes.length >= 24
    ? (((bytes[16] << 24) | (bytes[17] << 16) | (bytes[18] << 8) | bytes[19]) >>> 0) *
      (((bytes[20] << 24) | (bytes[21] << 16) | (bytes[22] << 8) | bytes[23]) >>> 0)
    : 0

/**
 * Decodes encoded bytes (PNG, JPEG, WebP, GIF, TIFF...) and converts to RGB: small 8-bit PNGs in
 * JavaScript (`Png`), everything else with sharp.
 */
export const decode = (path: string, bytes: Uint8Array): Effect.Effect<RgbImage, ImageDecodeError> => {
  if (bytes.length === 0) return Effect.fail(new ImageDecodeError({ path, reason: "empty file (0 bytes)" }))
  const pixels = pngPixels(bytes)
  if (pixels > 0 && pixels <= SMALL_PNG_PIXELS) {
    const fast = Effect.try({
      try: () => Png.decodePng(bytes),
      catch: (e) => new ImageDecodeError({ path, reason: e instanceof Error ? e.message : String(e) })
    })
    return Effect.flatMap(fast, (raw) =>
      raw === undefined
        ? decodeWithSharp(path, bytes)
        : Effect.succeed(toRgb(raw.data, raw.width, raw.height, raw.channels))
    )
  }
  return decodeWithSharp(path, bytes)
}

/** Decodes with sharp (libvips, on libuv's thread pool) and converts to RGB. */
export const decodeWithSharp = (
  path: string,
  bytes: Uint8Array
): Effect.Effect<RgbImage, ImageDecodeError> => {
  if (bytes.length === 0) return Effect.fail(new ImageDecodeError({ path, reason: "empty file (0 bytes)" }))
  return Effect.tryPromise({
    try: async () => {
      const input = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      // failOn "error": a truncated file is an error, not a half-grey image. Alpha is removed
      // inside libvips (on its thread pool) by dropping the band, which is what PIL does.
      let { data, info } = await sharp(input, { failOn: "error" })
        .removeAlpha()
        .raw({ depth: "uchar" })
        .toBuffer({ resolveWithObject: true })
      if (info.channels === 4) {
        // Four bands without alpha is CMYK (some JPEGs): that needs a real colour conversion.
        ;({ data, info } = await sharp(input, { failOn: "error" })
          .toColourspace("srgb")
          .removeAlpha()
          .raw({ depth: "uchar" })
          .toBuffer({ resolveWithObject: true }))
      }
      return toRgb(
        new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
        info.width,
        info.height,
        info.channels
      )
    },
    catch: (e) => new ImageDecodeError({ path, reason: e instanceof Error ? e.message : String(e) })
  })
}

/** The default loader: read the file through `FileSystem`, decode, convert to RGB. */
export const load = (path: string): Effect.Effect<RgbImage, ImageDecodeError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    fs.readFile(path).pipe(
      Effect.mapError((e) => new ImageDecodeError({ path, reason: `cannot read file: ${e.message}` })),
      Effect.flatMap((bytes) => decode(path, bytes))
    )
  )

/**
 * Reads with a blocking `readFileSync`, then decodes. For dataset images (small, usually in the
 * page cache) a blocking read costs a fraction of the thread-pool round trip of an async read,
 * which dominates a 28x28 decode; this is the default loader of `ImageFolder` on the main thread.
 */
export const loadBlocking = (path: string): Effect.Effect<RgbImage, ImageDecodeError> =>
  Effect.flatMap(
    Effect.try({
      try: () => readFileSync(path),
      catch: (e) =>
        new ImageDecodeError({
          path,
          reason: `cannot read file: ${e instanceof Error ? e.message : String(e)}`
        })
    }),
    (bytes) => decode(path, bytes)
  )
