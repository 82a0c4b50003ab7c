/**
 * Decoding and resizing on worker threads, so that a first pass over full-size images uses
 * every core: sharp decodes on each worker's thread pool while the Pillow-exact resize runs in
 * JavaScript on the worker, and the main thread only gathers results.
 *
 * The pool is a service (`DecodePool`) acquired by a scoped layer: `DecodePool.layer({ workers })`
 * starts its threads on first use and terminates them when the layer's scope closes. Nothing is
 * kept at module level. The workers run the same kernels as the main thread (the self-contained
 * factories' source is handed to them), so results are identical to `Image.load` then `Resize`.
 */

import { createRequire } from "node:module"
import { availableParallelism } from "node:os"
import { Worker } from "node:worker_threads"
import { Context, Effect, Either, Layer, type Scope } from "effect"
import {
  ImageDecodeError,
  ImageFileTooLarge,
  type ImageReadError,
  ImageTooLarge,
  InvalidArgument,
  NotARegularFile
} from "./Errors.js"
import { defaultLimits, type Limits, makeFileReader, makeSharpDecoder, type RgbImage } from "./Image.js"
import { makePngDecoder } from "./Png.js"
import { makeKernels, simdModule } from "./Resample.js"

interface Request {
  readonly id: number
  readonly path: string
  readonly size: number | readonly [number, number] | null
  readonly maxPixels: number
  readonly maxFileBytes: number
}

type Reply =
  | {
      readonly id: number
      readonly ok: true
      readonly width: number
      readonly height: number
      readonly data: Uint8Array
    }
  | { readonly id: number; readonly ok: false; readonly kind: "decode"; readonly reason: string }
  | { readonly id: number; readonly ok: false; readonly kind: "notRegular"; readonly fileKind: string }
  | { readonly id: number; readonly ok: false; readonly kind: "fileTooLarge"; readonly size: number }
  | {
      readonly id: number
      readonly ok: false
      readonly kind: "pixels"
      readonly width: number
      readonly height: number
    }

/** The worker's program; it must be self-contained (it is shipped as source text). */
function workerMain(
  kernelsFactory: typeof makeKernels,
  pngFactory: typeof makePngDecoder,
  readerFactory: typeof makeFileReader,
  sharpFactory: typeof makeSharpDecoder,
  sharpPath: string
) {
  const { parentPort, workerData } = require("node:worker_threads")
  const { resize, toRgb, resizedSize, scratch, unfilter } = kernelsFactory(256, workerData.simd)
  // Kept buffers (file bytes, inflated pixels): each image is done with before the next is read.
  // PNGs are inflated into the kernels' SIMD memory, unfiltered and resized there (no copies).
  const { decodePng, pngSize } = pngFactory(require("node:zlib"), {
    reuse: true,
    simd: { scratch, unfilter }
  })
  const reader = readerFactory(require("node:fs"))
  // sharp (libvips) is loaded on the first file the JavaScript decoder leaves to it, not at start.
  let sharpDecoder: ReturnType<typeof sharpFactory> | undefined
  const withSharp: ReturnType<typeof sharpFactory> = (input, maxPixels) => {
    sharpDecoder ??= sharpFactory(require(sharpPath), toRgb)
    return sharpDecoder(input, maxPixels)
  }
  type Out =
    | { width: number; height: number; data: Uint8Array }
    | { tooLarge: { width: number; height: number } }
  // On a worker, PNGs of any size are decoded in JavaScript: the worker is the parallelism.
  // RGBA that is about to be narrowed is resized straight from its 4-byte pixels (no RGB copy).
  const decodeAndResize = async (bytes: Buffer, req: Request): Promise<Out> => {
    const header = pngSize(bytes)
    if (header !== undefined && header.width * header.height > req.maxPixels) return { tooLarge: header }
    const png = decodePng(bytes)
    const size = req.size
    if (png !== undefined && png.channels === 4 && size !== null) {
      const [w, h] = resizedSize(png.width, png.height, size)
      if (w !== png.width) {
        return { width: w, height: h, data: resize(png.data, png.width, png.height, 3, w, h, undefined, 4) }
      }
    }
    let img: { width: number; height: number; data: Uint8Array }
    if (png === undefined) {
      // sharp gets its own copy of the kept bytes (it works while this thread awaits).
      const r = await withSharp(Buffer.from(bytes), req.maxPixels)
      if (!r.ok) return { tooLarge: { width: r.width, height: r.height } }
      img = r.image
    } else img = toRgb(png.data, png.width, png.height, png.channels)
    if (size === null) return img
    const [w, h] = resizedSize(img.width, img.height, size)
    return w === img.width && h === img.height
      ? img
      : { width: w, height: h, data: resize(img.data, img.width, img.height, 3, w, h) }
  }
  const one = async (req: Request): Promise<{ reply: unknown; transfer?: ArrayBufferLike }> => {
    const id = req.id
    try {
      // A blocking read: this thread has nothing else to do meanwhile, and the synchronous calls
      // cost a fraction of the FileHandle promises (a fifth of a worker's time on 300x300 PNGs).
      const read = reader.readBlocking(req.path, req.maxFileBytes, true)
      if (!read.ok) {
        return {
          reply:
            read.kind === "notRegular"
              ? { id, ok: false, kind: "notRegular", fileKind: read.fileKind }
              : { id, ok: false, kind: "fileTooLarge", size: read.size }
        }
      }
      if (read.bytes.length === 0) throw new Error("empty file (0 bytes)")
      const img = await decodeAndResize(read.bytes, req)
      if ("tooLarge" in img) return { reply: { id, ok: false, kind: "pixels", ...img.tooLarge } }
      // A view (e.g. of the kept inflate buffer, for an image returned at its own size) is
      // copied: only an array of its own is transferred.
      const whole = img.data.byteOffset === 0 && img.data.byteLength === img.data.buffer.byteLength
      const out = whole ? img.data : img.data.slice()
      return {
        reply: { id, ok: true, width: img.width, height: img.height, data: out },
        transfer: out.buffer
      }
    } catch (e) {
      return {
        reply: { id, ok: false, kind: "decode", reason: e instanceof Error ? e.message : String(e) }
      }
    }
  }
  // One message carries a list of requests and its answer the list of replies, each image's
  // pixels transferred (not copied): a message per image cost the main thread more than the
  // transfer itself.
  parentPort.on("message", async (reqs: ReadonlyArray<Request>) => {
    const replies: Array<unknown> = []
    const transfer: Array<ArrayBufferLike> = []
    for (const req of reqs) {
      const r = await one(req)
      replies.push(r.reply)
      if (r.transfer !== undefined) transfer.push(r.transfer)
    }
    parentPort.postMessage(replies, transfer)
  })
}

interface Threads {
  readonly run: (requests: ReadonlyArray<Omit<Request, "id">>) => Promise<ReadonlyArray<Reply>>
  readonly terminate: () => Promise<void>
}

const spawn = (threads: number, onBroken: () => void): Threads => {
  const source = `(${workerMain.toString()})(${makeKernels.toString()}, ${makePngDecoder.toString()}, ${makeFileReader.toString()}, ${makeSharpDecoder.toString()}, ${JSON.stringify(
    createRequire(import.meta.url).resolve("sharp")
  )})`
  // Per message id: the worker it went to, its size, and who waits for the replies.
  const pending = new Map<
    number,
    {
      readonly worker: number
      readonly ids: ReadonlyArray<number>
      readonly resolve: (r: ReadonlyArray<Reply>) => void
    }
  >()
  // Referenced only while requests are in flight: a pending decode keeps the process alive, an
  // idle pool does not (listeners must be attached before `unref`, or they re-reference).
  const setRef = (on: boolean) => {
    for (const w of workers) on ? w.ref() : w.unref()
  }
  const load = new Array<number>(threads).fill(0)
  const workers = Array.from({ length: threads }, () => {
    // The compiled SIMD module is shared with the threads, not compiled again by each.
    const w = new Worker(source, { eval: true, workerData: { simd: simdModule() } })
    w.on("message", (replies: ReadonlyArray<Reply>) => {
      // Messages are answered in order by each worker; the first reply's id names the message.
      const key = replies[0].id
      const entry = pending.get(key)
      pending.delete(key)
      if (pending.size === 0) setRef(false)
      if (entry !== undefined) load[entry.worker] -= entry.ids.length
      entry?.resolve(replies)
    })
    w.on("error", (e) => {
      // A crashed worker fails whatever it held rather than leaving it waiting forever.
      for (const [, entry] of pending)
        entry.resolve(
          entry.ids.map((id) => ({
            id,
            ok: false,
            kind: "decode",
            reason: `decode worker crashed: ${e.message}`
          }))
        )
      pending.clear()
      setRef(false)
      // Start afresh on the next request rather than queueing work on a dead thread.
      onBroken()
      for (const other of workers) void other.terminate()
    })
    return w
  })
  setRef(false)
  let nextId = 0
  return {
    run: (requests) =>
      requests.length === 0
        ? Promise.resolve([])
        : new Promise<ReadonlyArray<Reply>>((resolve) => {
            // Least-loaded worker (in images): images differ in cost, round robin would queue
            // behind slow ones.
            let k = 0
            for (let i = 1; i < threads; i++) if (load[i] < load[k]) k = i
            load[k] += requests.length
            const message = requests.map((r) => ({ id: nextId++, ...r }) satisfies Request)
            if (pending.size === 0) setRef(true)
            pending.set(message[0].id, { worker: k, ids: message.map((m) => m.id), resolve })
            workers[k].postMessage(message)
          }),
    terminate: async () => {
      await Promise.all(workers.map((w) => w.terminate()))
    }
  }
}

/** The decode pool service. */
export class DecodePool extends Context.Tag("@stepwise/data/DecodePool")<
  DecodePool,
  {
    /** Worker threads the pool runs (started on first use). */
    readonly workers: number
    /** Threads running now: 0 before the first decode and after the scope closed. */
    readonly running: Effect.Effect<number>
    /**
     * Decodes `path` to RGB and, when `size` is given, applies `Resize(size)`, on a worker
     * thread. Equal, byte for byte, to `Image.load` followed by `Transforms.Resize(size)`.
     */
    readonly decode: (
      path: string,
      size: number | readonly [number, number] | undefined,
      limits?: Limits
    ) => Effect.Effect<RgbImage, ImageReadError>
    /**
     * `decode` for several files in one message to one worker: each file's image or its error,
     * in order (one round trip for the lot, where a message per image costs the main thread
     * more than the decode costs a worker on small images).
     */
    readonly decodeMany: (
      paths: ReadonlyArray<string>,
      size: number | readonly [number, number] | undefined,
      limits?: Limits
    ) => Effect.Effect<ReadonlyArray<Either.Either<RgbImage, ImageReadError>>>
  }
>() {}

/** Threads the default pool uses: one per core. */
export const defaultThreads = (): number => Math.max(1, availableParallelism())

const toResult = (path: string, limits: Limits, r: Reply): Either.Either<RgbImage, ImageReadError> => {
  if (r.ok) return Either.right({ width: r.width, height: r.height, data: r.data })
  switch (r.kind) {
    case "notRegular":
      return Either.left(new NotARegularFile({ path, kind: r.fileKind }))
    case "fileTooLarge":
      return Either.left(new ImageFileTooLarge({ path, size: r.size, limit: limits.maxFileBytes }))
    case "pixels":
      return Either.left(
        new ImageTooLarge({ path, width: r.width, height: r.height, limit: limits.maxPixels })
      )
    case "decode":
      return Either.left(new ImageDecodeError({ path, reason: r.reason }))
  }
}

/**
 * A pool of `workers` threads (default: one per core) for the current scope. Threads start on the
 * first decode (a program that decodes on the main thread never pays for them) and are terminated
 * when the scope closes.
 */
export const make = (
  options: { readonly workers?: number } = {}
): Effect.Effect<DecodePool["Type"], InvalidArgument, Scope.Scope> => {
  const workers = options.workers ?? defaultThreads()
  return Number.isInteger(workers) && workers >= 1
    ? start(workers)
    : Effect.fail(
        new InvalidArgument({ field: "workers", value: workers, reason: "must be a positive integer" })
      )
}

const start = (workers: number): Effect.Effect<DecodePool["Type"], never, Scope.Scope> =>
  Effect.gen(function* () {
    // The pool's own state, owned by this scope: the running threads, if started.
    let threads: Threads | undefined
    let closed = false
    const current = (): Threads => {
      if (threads === undefined) {
        const started: Threads = spawn(workers, () => {
          if (threads === started) threads = undefined
        })
        threads = started
      }
      return threads
    }
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        const t = threads
        threads = undefined
        closed = true
        await t?.terminate()
      })
    )
    const decodeMany = (
      paths: ReadonlyArray<string>,
      size: number | readonly [number, number] | undefined,
      limits: Limits = defaultLimits
    ): Effect.Effect<ReadonlyArray<Either.Either<RgbImage, ImageReadError>>> =>
      Effect.suspend(() =>
        closed
          ? Effect.succeed(
              paths.map((path) =>
                Either.left(new ImageDecodeError({ path, reason: "the decode pool's scope is closed" }))
              )
            )
          : Effect.map(
              Effect.promise(() =>
                current().run(
                  paths.map((path) => ({
                    path,
                    size: size ?? null,
                    maxPixels: limits.maxPixels,
                    maxFileBytes: limits.maxFileBytes
                  }))
                )
              ),
              (replies) => replies.map((r, i) => toResult(paths[i], limits, r))
            )
      )
    return {
      workers,
      running: Effect.sync(() => (threads === undefined ? 0 : workers)),
      decodeMany,
      decode: (path, size, limits) => Effect.flatMap(decodeMany([path], size, limits), ([r]) => r)
    }
  })

/** The pool as a scoped layer: `DecodePool.layer({ workers: 2 })`. */
export const layer = (
  options: { readonly workers?: number } = {}
): Layer.Layer<DecodePool, InvalidArgument> => Layer.scoped(DecodePool, make(options))

/** One worker per core, threads started on first use: the convenient default (cannot fail). */
export const layerDefault: Layer.Layer<DecodePool> = Layer.scoped(
  DecodePool,
  Effect.suspend(() => start(defaultThreads()))
)

/** `decode` through the service in context. */
export const decode = (
  path: string,
  size: number | readonly [number, number] | undefined,
  limits?: Limits
): Effect.Effect<RgbImage, ImageReadError, DecodePool> =>
  Effect.flatMap(DecodePool, (pool) => pool.decode(path, size, limits))

/** `decodeMany` through the service in context. */
export const decodeMany = (
  paths: ReadonlyArray<string>,
  size: number | readonly [number, number] | undefined,
  limits?: Limits
): Effect.Effect<ReadonlyArray<Either.Either<RgbImage, ImageReadError>>, never, DecodePool> =>
  Effect.flatMap(DecodePool, (pool) => pool.decodeMany(paths, size, limits))
