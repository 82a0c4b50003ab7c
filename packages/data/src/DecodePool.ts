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
function workerMain(kernelsFactory: typeof makeKernels, sharpPath: string) {
  const { parentPort } = require("node:worker_threads")
  const { readFile } = require("node:fs/promises")
  const sharp = require(sharpPath)
  const { resize, toRgb, resizedSize } = kernelsFactory()
  parentPort.on("message", async (req: Request) => {
    try {
      const bytes: Buffer = await readFile(req.path)
      if (bytes.length === 0) throw new Error("empty file (0 bytes)")
      let { data, info } = await sharp(bytes, { failOn: "error" })
        .removeAlpha()
        .raw({ depth: "uchar" })
        .toBuffer({ resolveWithObject: true })
      if (info.channels === 4) {
        ;({ data, info } = await sharp(bytes, { failOn: "error" })
          .toColourspace("srgb")
          .removeAlpha()
          .raw({ depth: "uchar" })
          .toBuffer({ resolveWithObject: true }))
      }
      let img = toRgb(
        new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
        info.width,
        info.height,
        info.channels
      )
      if (req.size !== null) {
        const [w, h] = resizedSize(img.width, img.height, req.size)
        if (w !== img.width || h !== img.height)
          img = { width: w, height: h, data: resize(img.data, img.width, img.height, 3, w, h) }
      }
      const out =
        img.data.byteOffset === 0 && img.data.byteLength === img.data.buffer.byteLength
          ? img.data
          : img.data.slice()
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

const makePool = (threads: number): Pool => {
  const source = `(${workerMain.toString()})(${makeKernels.toString()}, ${JSON.stringify(
    createRequire(import.meta.url).resolve("sharp")
  )})`
  const pending = new Map<number, (r: Reply) => void>()
  const workers = Array.from({ length: threads }, () => {
    const w = new Worker(source, { eval: true })
    w.unref()
    w.on("message", (r: Reply) => {
      const resolve = pending.get(r.id)
      pending.delete(r.id)
      resolve?.(r)
    })
    return w
  })
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
      shared ??= makePool(defaultThreads())
      return shared.run(path, size ?? null)
    }),
    (r) =>
      r.ok
        ? Effect.succeed({ width: r.width, height: r.height, data: r.data })
        : Effect.fail(new ImageDecodeError({ path, reason: r.reason }))
  )
