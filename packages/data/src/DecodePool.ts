/**
 * Decoding and resizing on worker threads, so that a first pass over full-size images uses
 * every core: sharp decodes on each worker's thread pool while the Pillow-exact resize runs in
 * JavaScript on the worker, and the main thread only gathers results.
 *
 * The workers run the same kernels as the main thread (`makeKernels`' own source is handed to
 * them), so results are identical to `Image.load` followed by `Resize`. Workers are unref'd:
 * like libuv's pool they never keep the process alive, and they are created on first use.
 */

import { createRequire } from "node:module"
import { availableParallelism } from "node:os"
import { Worker } from "node:worker_threads"
import { Effect } from "effect"
import { ImageDecodeError } from "./Errors.js"
import type { RgbImage } from "./Image.js"
import { makePngDecoder } from "./Png.js"
import { makeKernels } from "./Resample.js"

interface Request {
  readonly id: number
  readonly path: string
  readonly size: number | readonly [number, number] | null
}

type Reply =
  | {
      readonly id: number
      readonly ok: true
      readonly width: number
      readonly height: number
      readonly data: Uint8Array
    }
  | { readonly id: number; readonly ok: false; readonly reason: string }

/** The worker's program; it must be self-contained (it is shipped as source text). */
function workerMain(
  kernelsFactory: typeof makeKernels,
  pngFactory: typeof makePngDecoder,
  sharpPath: string
) {
  const { parentPort } = require("node:worker_threads")
  const { readFile } = require("node:fs/promises")
  const sharp = require(sharpPath)
  const { resize, toRgb, resizedSize } = kernelsFactory()
  const { decodePng } = pngFactory(require("node:zlib"))
  const withSharp = async (bytes: Buffer) => {
    let { data, info } = await sharp(bytes, { failOn: "error" })
      .removeAlpha()
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true })
    if (info.channels === 4) {
      // Four bands without alpha is CMYK: convert.
      const converted = await sharp(bytes, { failOn: "error" })
        .toColourspace("srgb")
        .removeAlpha()
        .raw({ depth: "uchar" })
        .toBuffer({ resolveWithObject: true })
      data = converted.data
      info = converted.info
    }
    return toRgb(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      info.width,
      info.height,
      info.channels
    )
  }
  // On a worker, PNGs of any size are decoded in JavaScript: the worker is the parallelism.
  // RGBA that is about to be narrowed is resized straight from its 4-byte pixels (no RGB copy).
  const decodeAndResize = async (bytes: Buffer, size: Request["size"]) => {
    const png = decodePng(bytes)
    if (png !== undefined && png.channels === 4 && size !== null) {
      const [w, h] = resizedSize(png.width, png.height, size)
      if (w !== png.width) {
        return { width: w, height: h, data: resize(png.data, png.width, png.height, 3, w, h, undefined, 4) }
      }
    }
    const img =
      png === undefined ? await withSharp(bytes) : toRgb(png.data, png.width, png.height, png.channels)
    if (size === null) return img
    const [w, h] = resizedSize(img.width, img.height, size)
    return w === img.width && h === img.height
      ? img
      : { width: w, height: h, data: resize(img.data, img.width, img.height, 3, w, h) }
  }
  parentPort.on("message", async (req: Request) => {
    try {
      const bytes: Buffer = await readFile(req.path)
      if (bytes.length === 0) throw new Error("empty file (0 bytes)")
      const img = await decodeAndResize(bytes, req.size)
      const whole = img.data.byteOffset === 0 && img.data.byteLength === img.data.buffer.byteLength
      const out = whole ? img.data : img.data.slice()
      parentPort.postMessage({ id: req.id, ok: true, width: img.width, height: img.height, data: out }, [
        out.buffer
      ])
    } catch (e) {
      parentPort.postMessage({ id: req.id, ok: false, reason: e instanceof Error ? e.message : String(e) })
    }
  })
}

interface Pool {
  readonly run: (path: string, size: Request["size"]) => Promise<Reply>
}

const makePool = (threads: number, onBroken: () => void): Pool => {
  const source = `(${workerMain.toString()})(${makeKernels.toString()}, ${makePngDecoder.toString()}, ${JSON.stringify(
    createRequire(import.meta.url).resolve("sharp")
  )})`
  const pending = new Map<number, (r: Reply) => void>()
  // Referenced only while requests are in flight: a pending decode keeps the process alive, an
  // idle pool does not (listeners must be attached before `unref`, or they re-reference).
  const setRef = (on: boolean) => {
    for (const w of workers) on ? w.ref() : w.unref()
  }
  const workers = Array.from({ length: threads }, () => {
    const w = new Worker(source, { eval: true })
    w.on("message", (r: Reply) => {
      const resolve = pending.get(r.id)
      pending.delete(r.id)
      if (pending.size === 0) setRef(false)
      resolve?.(r)
    })
    w.on("error", (e) => {
      // A crashed worker fails whatever it held rather than leaving it waiting forever.
      for (const [id, resolve] of pending)
        resolve({ id, ok: false, reason: `decode worker crashed: ${e.message}` })
      pending.clear()
      setRef(false)
      // Start afresh on the next request rather than queueing work on a dead thread.
      onBroken()
      for (const other of workers) void other.terminate()
    })
    return w
  })
  setRef(false)
  const load = new Array<number>(threads).fill(0)
  let nextId = 0
  return {
    run: (path, size) =>
      new Promise<Reply>((resolve) => {
        // Least-loaded worker: images differ in cost, round robin would queue behind slow ones.
        let k = 0
        for (let i = 1; i < threads; i++) if (load[i] < load[k]) k = i
        load[k]++
        const id = nextId++
        if (pending.size === 0) setRef(true)
        pending.set(id, (r) => {
          load[k]--
          resolve(r)
        })
        workers[k].postMessage({ id, path, size } satisfies Request)
      })
  }
}

let shared: Pool | undefined

/** Threads the shared pool uses: one per core. */
export const defaultThreads = (): number => Math.max(1, availableParallelism())

/**
 * Decodes `path` to RGB and, when `size` is given, applies `Resize(size)`, on a worker thread.
 * Equal, byte for byte, to `Image.load` followed by `Transforms.Resize(size)`.
 */
export const decode = (
  path: string,
  size: number | readonly [number, number] | undefined
): Effect.Effect<RgbImage, ImageDecodeError> =>
  Effect.flatMap(
    Effect.promise(() => {
      shared ??= makePool(defaultThreads(), () => {
        shared = undefined
      })
      return shared.run(path, size ?? null)
    }),
    (r) =>
      r.ok
        ? Effect.succeed({ width: r.width, height: r.height, data: r.data })
        : Effect.fail(new ImageDecodeError({ path, reason: r.reason }))
  )
