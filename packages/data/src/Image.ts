/**
 * Decoded images: 8-bit RGB pixels in row-major HWC order, the shape a PIL image has after the
 * ImageFolder loader's `convert('RGB')`.
 *
 * Reading is guarded: only regular files are read (checked on the opened file, so a FIFO or a
 * device never blocks or streams forever), files above `maxFileBytes` are refused before they
 * are read, and images whose header claims more than `maxPixels` pixels are refused before any
 * pixel buffer is allocated.
 */

import * as nodeFs from "node:fs"
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, Either } from "effect"
import type sharp from "sharp"
import {
  ImageDecodeError,
  ImageFileTooLarge,
  type ImageReadError,
  ImageTooLarge,
  NotARegularFile
} from "./Errors.js"
import * as Png from "./Png.js"
import * as Resample from "./Resample.js"

export interface RgbImage {
  readonly width: number
  readonly height: number
  /** `height * width * 3` bytes, HWC, R G B. */
  readonly data: Uint8Array
}

/** What one image may cost before anything is decoded. */
export interface Limits {
  /** Pixels (width x height) an image header may claim (default `DEFAULT_MAX_PIXELS`). */
  readonly maxPixels: number
  /** Bytes an image file may have (default `DEFAULT_MAX_FILE_BYTES`). */
  readonly maxFileBytes: number
}

/**
 * 100 million pixels (e.g. 10000 x 10000; 300 MB as RGB). Pillow warns above 89M and refuses
 * above 179M; sharp refuses above 268M. Dataset images are far smaller: set it higher explicitly.
 */
export const DEFAULT_MAX_PIXELS = 100_000_000

/** 256 MiB: room for an uncompressed image near `DEFAULT_MAX_PIXELS`, not for a runaway file. */
export const DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024

export const defaultLimits: Limits = { maxPixels: DEFAULT_MAX_PIXELS, maxFileBytes: DEFAULT_MAX_FILE_BYTES }

/** 1-4 interleaved channels to RGB as PIL's `convert('RGB')`: grey replicated, alpha dropped. */
export const toRgb: (data: Uint8Array, width: number, height: number, channels: number) => RgbImage =
  Resample.toRgb

/** PNGs up to this many pixels are decoded in JavaScript: for them sharp's per-call cost dominates. */
export const SMALL_PNG_PIXELS = 128 * 128

/**
 * Guarded file reading, built by a self-contained factory (the decode workers run its source).
 * The file is opened non-blocking (opening a FIFO for reading would otherwise wait for a writer),
 * then its type and size are checked on the open descriptor, so nothing is read from anything
 * but a regular file of acceptable size, and a file swapped after a check cannot slip through.
 */
export function makeFileReader(fs: typeof nodeFs) {
  type Read =
    | { readonly ok: true; readonly bytes: Buffer }
    | { readonly ok: false; readonly kind: "notRegular"; readonly fileKind: string }
    | { readonly ok: false; readonly kind: "tooLarge"; readonly size: number }
  const kindOf = (s: nodeFs.Stats): string =>
    s.isDirectory()
      ? "directory"
      : s.isFIFO()
        ? "FIFO (named pipe)"
        : s.isCharacterDevice()
          ? "character device"
          : s.isBlockDevice()
            ? "block device"
            : s.isSocket()
              ? "socket"
              : "special file"
  const flags = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK
  // `keep` reads: one buffer kept from file to file, for files up to this size.
  const KEEP_MAX_BYTES = 4 * 1024 * 1024
  let kept = Buffer.alloc(0)
  /**
   * Reads the whole file. With `keep`, into a buffer kept from call to call (valid until the
   * next `keep` read: for a decode worker, which decodes the bytes at once), not a fresh one.
   */
  const readBlocking = (path: string, maxFileBytes: number, keep = false): Read => {
    const fd = fs.openSync(path, flags)
    try {
      const s = fs.fstatSync(fd)
      if (!s.isFile()) return { ok: false, kind: "notRegular", fileKind: kindOf(s) }
      if (s.size > maxFileBytes) return { ok: false, kind: "tooLarge", size: s.size }
      if (!keep || s.size >= KEEP_MAX_BYTES) return { ok: true, bytes: fs.readFileSync(fd) }
      // One byte more than the size: a file that grew since fstat is read whole by readFileSync.
      if (kept.length < s.size + 1) kept = Buffer.alloc(Math.max(s.size + 1, 2 * kept.length))
      let n = 0
      // Positioned reads leave the descriptor's offset at 0 for the readFileSync fallback.
      for (let r = 1; r > 0 && n < kept.length; n += r) r = fs.readSync(fd, kept, n, kept.length - n, n)
      return n < kept.length
        ? { ok: true, bytes: kept.subarray(0, n) }
        : { ok: true, bytes: fs.readFileSync(fd) }
    } finally {
      fs.closeSync(fd)
    }
  }
  const read = async (path: string, maxFileBytes: number): Promise<Read> => {
    const handle = await fs.promises.open(path, flags)
    try {
      const s = await handle.stat()
      if (!s.isFile()) return { ok: false, kind: "notRegular", fileKind: kindOf(s) }
      if (s.size > maxFileBytes) return { ok: false, kind: "tooLarge", size: s.size }
      return { ok: true, bytes: await handle.readFile() }
    } finally {
      await handle.close()
    }
  }
  return { readBlocking, read }
}

/**
 * sharp decoding to RGB, self-contained for the workers. `limitInputPixels` makes libvips refuse
 * an oversized image from its header; the dimensions are then read (header only) for the error.
 */
export function makeSharpDecoder(sharpModule: typeof sharp, rgb: typeof toRgb) {
  type Decoded =
    | { readonly ok: true; readonly image: RgbImage }
    | { readonly ok: false; readonly width: number; readonly height: number }
  return async (input: Buffer, maxPixels: number): Promise<Decoded> => {
    const options = { failOn: "error", limitInputPixels: maxPixels } as const
    try {
      // failOn "error": a truncated file is an error, not a half-grey image. Alpha is removed
      // inside libvips (on its thread pool) by dropping the band, which is what PIL does.
      let { data, info } = await sharpModule(input, options)
        .removeAlpha()
        .raw({ depth: "uchar" })
        .toBuffer({ resolveWithObject: true })
      if (info.channels === 4) {
        // Four bands without alpha is CMYK (some JPEGs): that needs a real colour conversion.
        ;({ data, info } = await sharpModule(input, options)
          .toColourspace("srgb")
          .removeAlpha()
          .raw({ depth: "uchar" })
          .toBuffer({ resolveWithObject: true }))
      }
      return {
        ok: true,
        image: rgb(
          new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
          info.width,
          info.height,
          info.channels
        )
      }
    } catch (e) {
      if (e instanceof Error && /pixel limit/i.test(e.message)) {
        const meta = await sharpModule(input, { limitInputPixels: false }).metadata()
        return { ok: false, width: meta.width ?? 0, height: meta.height ?? 0 }
      }
      throw e
    }
  }
}

const reader = makeFileReader(nodeFs)
/**
 * sharp (libvips) loads on the first image that needs it: small PNGs never do, and loading it
 * costs a noticeable part of every command's start-up.
 */
let sharpDecoder: Promise<ReturnType<typeof makeSharpDecoder>> | undefined
const sharpDecode = (input: Buffer, maxPixels: number) => {
  sharpDecoder ??= import("sharp").then((m) => makeSharpDecoder(m.default, toRgb))
  return sharpDecoder.then((decode) => decode(input, maxPixels))
}

const reasonOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** Reads `path` with the guards above (blocking), as typed errors. */
export const readFileBlocking = (
  path: string,
  maxFileBytes: number = DEFAULT_MAX_FILE_BYTES
): Either.Either<Uint8Array, ImageReadError> => {
  try {
    const r = reader.readBlocking(path, maxFileBytes)
    return r.ok
      ? Either.right(r.bytes)
      : r.kind === "notRegular"
        ? Either.left(new NotARegularFile({ path, kind: r.fileKind }))
        : Either.left(new ImageFileTooLarge({ path, size: r.size, limit: maxFileBytes }))
  } catch (e) {
    return Either.left(new ImageDecodeError({ path, reason: `cannot read file: ${reasonOf(e)}`, cause: e }))
  }
}

/**
 * Decodes encoded bytes (PNG, JPEG, WebP, GIF, TIFF...) and converts to RGB: small 8-bit PNGs in
 * JavaScript (`Png`), everything else with sharp. An image claiming more than `maxPixels` pixels
 * fails with `ImageTooLarge` before any pixel buffer exists.
 */
export const decode = (
  path: string,
  bytes: Uint8Array,
  maxPixels: number = DEFAULT_MAX_PIXELS
): Effect.Effect<RgbImage, ImageDecodeError | ImageTooLarge> => {
  if (bytes.length === 0) return Effect.fail(new ImageDecodeError({ path, reason: "empty file (0 bytes)" }))
  const size = Png.pngSize(bytes)
  if (size !== undefined && size.width * size.height > maxPixels)
    return Effect.fail(new ImageTooLarge({ path, ...size, limit: maxPixels }))
  if (size !== undefined && size.width * size.height > 0 && size.width * size.height <= SMALL_PNG_PIXELS) {
    const fast = Either.mapLeft(Png.decodePng(bytes), (reason) => new ImageDecodeError({ path, reason }))
    return Effect.flatMap(fast, (raw) =>
      raw === undefined
        ? decodeWithSharp(path, bytes, maxPixels)
        : Effect.succeed(toRgb(raw.data, raw.width, raw.height, raw.channels))
    )
  }
  return decodeWithSharp(path, bytes, maxPixels)
}

/** Decodes with sharp (libvips, on libuv's thread pool) and converts to RGB. */
export const decodeWithSharp = (
  path: string,
  bytes: Uint8Array,
  maxPixels: number = DEFAULT_MAX_PIXELS
): Effect.Effect<RgbImage, ImageDecodeError | ImageTooLarge> => {
  if (bytes.length === 0) return Effect.fail(new ImageDecodeError({ path, reason: "empty file (0 bytes)" }))
  return Effect.flatMap(
    Effect.tryPromise({
      try: () => sharpDecode(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), maxPixels),
      catch: (e) => new ImageDecodeError({ path, reason: reasonOf(e), cause: e })
    }),
    (r) =>
      r.ok
        ? Effect.succeed(r.image)
        : Effect.fail(new ImageTooLarge({ path, width: r.width, height: r.height, limit: maxPixels }))
  )
}

/**
 * Reads the file through `FileSystem` (regular files only, at most `maxFileBytes`), decodes,
 * converts to RGB. `FileSystem` cannot open non-blocking, so the type is checked with `stat`
 * first (a file swapped between the two calls is the caller's race).
 */
export const load = (
  path: string,
  limits: Limits = defaultLimits
): Effect.Effect<RgbImage, ImageReadError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const cannotRead = (e: { readonly message: string }) =>
      new ImageDecodeError({ path, reason: `cannot read file: ${e.message}`, cause: e })
    const info = yield* fs.stat(path).pipe(Effect.mapError(cannotRead))
    if (info.type !== "File") {
      const kind =
        info.type === "FIFO"
          ? "FIFO (named pipe)"
          : info.type.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase()
      return yield* new NotARegularFile({ path, kind })
    }
    if (Number(info.size) > limits.maxFileBytes)
      return yield* new ImageFileTooLarge({ path, size: Number(info.size), limit: limits.maxFileBytes })
    const bytes = yield* fs.readFile(path).pipe(Effect.mapError(cannotRead))
    return yield* decode(path, bytes, limits.maxPixels)
  })

/**
 * Reads with a blocking read, then decodes. For dataset images (small, usually in the page
 * cache) a blocking read costs a fraction of the thread-pool round trip of an async read, which
 * dominates a 28x28 decode; this is the default loader of `ImageFolder` on the main thread.
 */
export const loadBlocking = (
  path: string,
  limits: Limits = defaultLimits
): Effect.Effect<RgbImage, ImageReadError> =>
  Effect.flatMap(readFileBlocking(path, limits.maxFileBytes), (bytes) =>
    decode(path, bytes, limits.maxPixels)
  )
