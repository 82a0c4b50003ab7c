/**
 * torchvision's `ImageFolder`: `root/<class>/.../<image>`, classes are the sorted sub-folder names
 * (index = position), samples are the image files in the same order torchvision lists them.
 *
 * Listing is an Effect (so the length is known before anything is decoded); decoding is a
 * `Stream` with bounded concurrency: sharp decodes on libuv's thread pool, so several images in
 * flight keep both cores busy while JavaScript resizes the ones already decoded.
 */

import * as nodePath from "node:path"
import * as FileSystem from "@effect/platform/FileSystem"
import { Chunk, Effect, Either, Option, Stream } from "effect"
import type { Batch } from "./Batch.js"
import * as DataLoader from "./DataLoader.js"
import * as DecodePool from "./DecodePool.js"
import * as DiskCache from "./DiskCache.js"
import {
  ClassMismatch,
  DataFileError,
  EmptyClassFolder,
  type ImageFolderError,
  ImageFolderNotFound,
  type ImageReadError,
  InvalidArgument,
  NoClassFolders,
  SampleShapeMismatch
} from "./Errors.js"
import * as Image from "./Image.js"
import * as TensorDataset from "./TensorDataset.js"
import { type ImageTensor, noContext, Resize, type Transform, toTensorInto } from "./Transforms.js"

// Shapes as plain arrays (optim has the same one-liner; data does not depend on optim for it).
const sameShape = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i])

/** The extensions torchvision's ImageFolder accepts that sharp can decode (compared lower-case). */
export const IMAGE_EXTENSIONS: ReadonlyArray<string> = [
  ".png",
  ".jpg",
  ".jpeg",
  ".webp",
  ".bmp",
  ".gif",
  ".tif",
  ".tiff"
]

export const hasImageExtension = (path: string): boolean => {
  const lower = path.toLowerCase()
  return IMAGE_EXTENSIONS.some((ext) => lower.endsWith(ext))
}

export type OnError = "fail" | "skip"

export type DecodeOn = "auto" | "workers" | "main"

export interface SampleRef {
  readonly path: string
  readonly label: number
  /** Byte size and modification time when listed (the on-disk cache key uses them). */
  readonly size: number
  readonly mtimeMs: number
}

export interface Sample<A> {
  readonly index: number
  readonly path: string
  readonly value: A
  readonly label: number
}

export interface Options<A> {
  /**
   * `Resize(resize)` applied as part of decoding, before `transform`. With the default decoder it
   * runs on the worker threads next to the decode (use this rather than a `Resize` inside
   * `transform` for full-size images).
   */
  readonly resize?: number | readonly [number, number]
  /**
   * Where the default decoder runs: `"workers"` (one thread per core), `"main"` (blocking reads,
   * small PNGs decoded in JavaScript, others by sharp on libuv's pool) or `"auto"`
   * (default: the main thread when the first image is small, where a worker round trip costs
   * more than the decode, otherwise the workers). Ignored when a custom `loader` is given.
   */
  readonly decodeOn?: DecodeOn
  /**
   * A folder for an on-disk cache of the decoded, `resize`d images (keyed by path, size, mtime
   * and `resize`), so later processes skip decoding too. Off by default.
   */
  readonly diskCache?: string
  /** Applied to each decoded RGB image (default: none, the `RgbImage` itself). */
  readonly transform?: Transform<Image.RgbImage, A>
  readonly targetTransform?: (label: number) => number
  /** Reads and decodes one file (default: `Image.loadBlocking` or the decode workers, see `decodeOn`). */
  readonly loader?: (path: string) => Effect.Effect<Image.RgbImage, ImageReadError, FileSystem.FileSystem>
  /**
   * Largest image, in pixels, the default decoder accepts; checked from the header before any
   * pixel buffer is allocated (default `Image.DEFAULT_MAX_PIXELS`, 100 million).
   */
  readonly maxPixels?: number
  /** Largest image file, in bytes, the default decoder reads (default `Image.DEFAULT_MAX_FILE_BYTES`, 256 MiB). */
  readonly maxFileBytes?: number
  /**
   * Descend into symbolic links to folders below a class folder (default false, so a link loop
   * cannot multiply samples). torchvision walks with `followlinks=True`; with `true` here links
   * are followed too, but a folder already visited (by its real path) is not listed again.
   */
  readonly followLinks?: boolean
  /** Which files are samples (default: an image extension). Receives the full path. */
  readonly isValidFile?: (path: string) => boolean
  /**
   * The folder as `scan` just listed it (with these options), when the caller already has it:
   * the folder is then not listed again (listing stats every file).
   */
  readonly listing?: Listing
  /**
   * Images decoded at once (default 8; on the decode workers `workerConcurrency`: there an
   * image in flight is a path in a message, the workers decode one at a time each).
   */
  readonly concurrency?: number
  /** `"skip"` leaves bad files out with a warning instead of failing (default `"fail"`). */
  readonly onError?: OnError
  /** Epoch passed to the transform's context by `stream` (default 0). */
  readonly epoch?: number
}

export interface ImageFolder<A> {
  readonly root: string
  readonly classes: ReadonlyArray<string>
  readonly classToIdx: Readonly<Record<string, number>>
  readonly samples: ReadonlyArray<SampleRef>
  readonly length: number
  /** Decodes and transforms sample `index` for `epoch`. */
  readonly get: (
    index: number,
    epoch?: number
  ) => Effect.Effect<Sample<A>, ImageReadError, FileSystem.FileSystem | DecodePool.DecodePool>
  /**
   * Samples `indices` for `epoch`, each one or its error, in order: on the decode workers one
   * message for the lot (what the loaders use: a message per image costs more than it carries).
   */
  readonly getMany: (
    indices: ReadonlyArray<number>,
    epoch?: number
  ) => Effect.Effect<
    ReadonlyArray<Either.Either<Sample<A>, ImageReadError>>,
    never,
    FileSystem.FileSystem | DecodePool.DecodePool
  >
  /** Every sample in order, decoded concurrently (bad files skipped when `onError: "skip"`). */
  readonly stream: Stream.Stream<Sample<A>, ImageReadError, FileSystem.FileSystem | DecodePool.DecodePool>
  readonly onError: OnError
}

type Needs = FileSystem.FileSystem | DecodePool.DecodePool

/**
 * Images in flight on the decode workers by default: two messages of 32 per worker. A message
 * per few images costs the main thread more than it carries (per image, 8 a message took 1.2x
 * the time of 32 a message on 300x300 PNGs), and in-flight requests are only paths.
 */
export const workerConcurrency = (workers: number): number => 64 * workers

/**
 * How `concurrency` images in flight on `workers` decode threads are sent: two messages per
 * worker (one decoding while the other's answer is handled), each of `chunk` images.
 */
export const chunking = (
  concurrency: number,
  workers: number
): { readonly chunk: number; readonly inFlight: number } => {
  const chunk = Math.max(1, Math.floor(concurrency / (2 * workers)))
  return { chunk, inFlight: Math.ceil(concurrency / chunk) }
}

const fsError = (path: string) => (e: { readonly message: string }) =>
  new DataFileError({ path, reason: e.message, cause: e })

/**
 * Lists class folders and samples as torchvision does (sorted walk, sorted names), except that
 * links to folders below a class folder are not descended into unless `followLinks` (see
 * `Options.followLinks`). Links to files are samples, as in torchvision (`os.walk` lists them
 * with the files and PIL opens their target); whether a sample is a regular file is checked when
 * it is read.
 */
/** What `scan` lists: the class folders (sorted) and the samples in `ImageFolder` order. */
export interface Listing {
  readonly classes: ReadonlyArray<string>
  readonly samples: ReadonlyArray<SampleRef>
}

export const scan = (
  root: string,
  options: { readonly isValidFile?: (path: string) => boolean; readonly followLinks?: boolean } = {}
): Effect.Effect<
  Listing,
  ImageFolderNotFound | NoClassFolders | EmptyClassFolder | DataFileError,
  FileSystem.FileSystem
> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const rootInfo = yield* fs
      .stat(root)
      .pipe(Effect.mapError(() => new ImageFolderNotFound({ root, reason: "does not exist" })))
    if (rootInfo.type !== "Directory")
      return yield* new ImageFolderNotFound({ root, reason: "is not a folder" })
    const info = (p: string): Effect.Effect<Entry> =>
      fs.stat(p).pipe(
        Effect.map((i) => ({
          dir: i.type === "Directory",
          size: Number(i.size),
          mtimeMs: Option.match(i.mtime, { onNone: () => 0, onSome: (d) => d.getTime() })
        })),
        // A dangling symlink is neither a class nor a sample.
        Effect.orElseSucceed(() => ({ dir: false, size: 0, mtimeMs: 0 }))
      )
    const isDir = (p: string) => Effect.map(info(p), (e) => e.dir)
    const entries = yield* fs.readDirectory(root).pipe(Effect.mapError(fsError(root)))
    const dirFlags = yield* Effect.forEach(entries, (e) => isDir(nodePath.join(root, e)), { concurrency: 16 })
    const classes = entries.filter((_, i) => dirFlags[i]).sort(compareCodePoints)
    if (classes.length === 0) return yield* new NoClassFolders({ root })
    const valid = options.isValidFile ?? hasImageExtension
    const samples: Array<SampleRef> = []
    for (let label = 0; label < classes.length; label++) {
      const classDir = nodePath.join(root, classes[label])
      const files = yield* walk(fs, classDir, info, options.followLinks ?? false)
      const kept = files.filter((f) => valid(f.path))
      if (kept.length === 0) return yield* new EmptyClassFolder({ path: classDir, className: classes[label] })
      for (const f of kept) samples.push({ path: f.path, label, size: f.size, mtimeMs: f.mtimeMs })
    }
    return { classes, samples }
  })

/** `options.listing`, or the folder listed now. */
const listed = <A>(root: string, options: Options<A>) =>
  options.listing === undefined ? scan(root, options) : Effect.succeed(options.listing)

/** Python's default string order (code points), which `sorted()` uses. */
const compareCodePoints = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/**
 * Files under `dir`, recursively, in the order of `sorted(os.walk(dir))` then `sorted(fnames)`:
 * folders ordered by their full path, files by name within a folder.
 */
interface Entry {
  readonly dir: boolean
  readonly size: number
  readonly mtimeMs: number
}

const walk = (
  fs: FileSystem.FileSystem,
  dir: string,
  info: (p: string) => Effect.Effect<Entry>,
  followLinks: boolean
): Effect.Effect<ReadonlyArray<{ path: string; size: number; mtimeMs: number }>, DataFileError> =>
  Effect.gen(function* () {
    const folders: Array<{ dir: string; files: Array<{ path: string; size: number; mtimeMs: number }> }> = []
    // Real paths of the folders listed so far (only needed when links are followed).
    const seen = new Set<string>()
    const realPath = (d: string) => fs.realPath(d).pipe(Effect.orElseSucceed(() => d))
    if (followLinks) seen.add(yield* realPath(dir))
    // A folder entry is descended into when it is not a link, or links are followed to a folder
    // not seen before. `readLink` fails on anything but a link; only folders pay for the call.
    const descend = (p: string): Effect.Effect<boolean> =>
      Effect.gen(function* () {
        if (!followLinks)
          return !(yield* fs.readLink(p).pipe(
            Effect.as(true),
            Effect.orElseSucceed(() => false)
          ))
        // Following links, any folder (linked or not) may be one already listed through a link.
        const real = yield* realPath(p)
        if (seen.has(real)) return false
        seen.add(real)
        return true
      })
    const visit = (d: string): Effect.Effect<void, DataFileError> =>
      Effect.gen(function* () {
        const names = [...(yield* fs.readDirectory(d).pipe(Effect.mapError(fsError(d))))].sort(
          compareCodePoints
        )
        const infos = yield* Effect.forEach(names, (n) => info(nodePath.join(d, n)), { concurrency: 16 })
        folders.push({
          dir: d,
          files: names.flatMap((n, i) =>
            infos[i].dir
              ? []
              : [{ path: nodePath.join(d, n), size: infos[i].size, mtimeMs: infos[i].mtimeMs }]
          )
        })
        for (const n of names.filter((_, i) => infos[i].dir)) {
          const sub = nodePath.join(d, n)
          if (yield* descend(sub)) yield* visit(sub)
        }
      })
    yield* visit(dir)
    folders.sort((a, b) => compareCodePoints(a.dir, b.dir))
    return folders.flatMap((f) => f.files)
  })

/** An ImageFolder: lists the files now, decodes lazily. */
export const make = <A = Image.RgbImage>(
  root: string,
  options: Options<A> = {}
): Effect.Effect<
  ImageFolder<A>,
  ImageFolderNotFound | NoClassFolders | EmptyClassFolder | DataFileError | InvalidArgument,
  FileSystem.FileSystem
> =>
  Effect.flatMap(
    Effect.zipLeft(
      Effect.zipRight(
        checkOptions(options),
        options.resize === undefined ? Effect.succeed(undefined) : Resize(options.resize)
      ),
      sweepCache(options.diskCache)
    ),
    (resizeOnMain) =>
      Effect.map(listed(root, options), ({ classes, samples }) => {
        const limits: Image.Limits = {
          maxPixels: options.maxPixels ?? Image.DEFAULT_MAX_PIXELS,
          maxFileBytes: options.maxFileBytes ?? Image.DEFAULT_MAX_FILE_BYTES
        }
        const transform = options.transform ?? ((img: Image.RgbImage) => img as unknown as A)
        const target = options.targetTransform ?? ((l: number) => l)
        const size = options.resize
        let where: "main" | "workers" | undefined =
          options.loader !== undefined
            ? "main"
            : options.decodeOn === "auto"
              ? undefined
              : (options.decodeOn ?? undefined)
        const onMain = (path: string) =>
          (options.loader ?? ((p: string) => Image.loadBlocking(p, limits)))(path).pipe(
            Effect.tap((img) => {
              where ??= img.width * img.height <= Image.SMALL_PNG_PIXELS ? "main" : "workers"
            }),
            Effect.map((img) => (resizeOnMain === undefined ? img : resizeOnMain(img, noContext)))
          )
        const decode = (
          path: string
        ): Effect.Effect<Image.RgbImage, ImageReadError, FileSystem.FileSystem | DecodePool.DecodePool> =>
          where === "workers" ? DecodePool.decode(path, size, limits) : onMain(path)
        const cacheDir = options.diskCache
        const keyOf = (ref: SampleRef): DiskCache.Key => ({
          path: ref.path,
          size: ref.size,
          mtimeMs: ref.mtimeMs,
          resize: size
        })
        const load = (
          ref: SampleRef
        ): Effect.Effect<Image.RgbImage, ImageReadError, FileSystem.FileSystem | DecodePool.DecodePool> => {
          if (cacheDir === undefined) return decode(ref.path)
          const key = keyOf(ref)
          return Effect.suspend(() => {
            const hit = DiskCache.read(cacheDir, key)
            return hit !== undefined
              ? Effect.succeed(hit)
              : Effect.tap(decode(ref.path), (img) => Effect.sync(() => DiskCache.write(cacheDir, key, img)))
          })
        }
        const onError = options.onError ?? "fail"
        const concurrency = options.concurrency ?? 8
        const get = (index: number, epoch = options.epoch ?? 0) => {
          const ref = samples[index]
          return Effect.map(load(ref), (img) => ({
            index,
            path: ref.path,
            value: transform(img, { epoch, index }),
            label: target(ref.label)
          }))
        }
        const sampleOf = (index: number, img: Image.RgbImage, epoch: number): Sample<A> => {
          const ref = samples[index]
          return { index, path: ref.path, value: transform(img, { epoch, index }), label: target(ref.label) }
        }
        /**
         * Several samples at once: on the workers one message for all of them (disk-cache hits
         * are read here and only the misses sent), elsewhere one after the other.
         */
        const getMany = (
          indices: ReadonlyArray<number>,
          epoch = options.epoch ?? 0
        ): Effect.Effect<ReadonlyArray<Either.Either<Sample<A>, ImageReadError>>, never, Needs> =>
          Effect.suspend(() => {
            if (where !== "workers") return Effect.forEach(indices, (i) => Effect.either(get(i, epoch)))
            const results = indices.map((i) => {
              const hit = cacheDir === undefined ? undefined : DiskCache.read(cacheDir, keyOf(samples[i]))
              return hit === undefined ? undefined : Either.right(sampleOf(i, hit, epoch))
            })
            const missing = indices.filter((_, k) => results[k] === undefined)
            return Effect.map(
              DecodePool.decodeMany(
                missing.map((i) => samples[i].path),
                size,
                limits
              ),
              (decoded) => {
                let m = 0
                return results.map((r, k) => {
                  if (r !== undefined) return r
                  const i = indices[k]
                  return Either.map(decoded[m++], (img) => {
                    if (cacheDir !== undefined) DiskCache.write(cacheDir, keyOf(samples[i]), img)
                    return sampleOf(i, img, epoch)
                  })
                })
              }
            )
          })
        const settle = (r: Either.Either<Sample<A>, ImageReadError>) =>
          Either.isRight(r)
            ? Effect.succeed(Option.some(r.right))
            : onError === "fail"
              ? Effect.fail(r.left)
              : Effect.as(Effect.logWarning(`skipping ${r.left.message}`), Option.none<Sample<A>>())
        const one = (i: number): Effect.Effect<Option.Option<Sample<A>>, ImageReadError, Needs> =>
          Effect.flatMap(Effect.either(get(i)), settle)
        // Decoding on the main thread blocks, so more than one image in flight there only adds
        // fibers (and garbage: twice the time and +140 MB of heap at 20,000 images). A custom
        // (possibly asynchronous) loader gets `concurrency`. The workers get `concurrency`
        // images in flight, a few per message (`chunking`).
        const range = (from: number, to: number): Stream.Stream<Sample<A>, ImageReadError, Needs> =>
          where === "workers"
            ? Stream.unwrap(
                Effect.map(DecodePool.DecodePool, (pool) => {
                  const { chunk, inFlight } = chunking(
                    options.concurrency ?? workerConcurrency(pool.workers),
                    pool.workers
                  )
                  return Stream.range(from, to - 1).pipe(
                    Stream.grouped(chunk),
                    Stream.mapEffect((c) => getMany(Chunk.toReadonlyArray(c)), { concurrency: inFlight }),
                    Stream.flattenIterables,
                    Stream.mapEffect(settle),
                    Stream.filterMap((o) => o)
                  )
                })
              )
            : Stream.filterMap(
                Stream.mapEffect(Stream.range(from, to - 1), one, {
                  concurrency: where === "main" && options.loader === undefined ? 1 : concurrency
                }),
                (o) => o
              )
        // Under "auto" the first image decides where the rest is decoded, so it goes on its own.
        const stream: Stream.Stream<Sample<A>, ImageReadError, Needs> = samples.length === 0
          ? Stream.empty
          : Stream.suspend(() =>
              where !== undefined
                ? range(0, samples.length)
                : Stream.concat(
                    range(0, 1),
                    Stream.suspend(() => range(1, samples.length))
                  )
            )
        return {
          root,
          classes,
          classToIdx: Object.fromEntries(classes.map((c, i) => [c, i])),
          samples,
          length: samples.length,
          get,
          getMany,
          stream,
          onError
        }
      })
  )

/** Temporary entries a killed process left in the disk cache (see `DiskCache.removeStaleTemps`). */
const sweepCache = (dir: string | undefined): Effect.Effect<void> =>
  dir === undefined ? Effect.void : Effect.sync(() => DiskCache.removeStaleTemps(dir))

/** Limits and counts must be positive (a NaN limit would silently disable the check). */
const checkOptions = (options: {
  readonly maxPixels?: number
  readonly maxFileBytes?: number
  readonly concurrency?: number
}): Effect.Effect<void, InvalidArgument> => {
  const bad = (field: string, value: unknown, reason: string) =>
    Effect.fail(new InvalidArgument({ field, value, reason }))
  for (const field of ["maxPixels", "maxFileBytes"] as const) {
    const v = options[field]
    if (v !== undefined && !(v > 0)) return bad(field, v, "must be a positive number (Infinity for no limit)")
  }
  const c = options.concurrency
  if (c !== undefined && !(Number.isInteger(c) && c >= 1))
    return bad("concurrency", c, "must be a positive integer")
  return Effect.void
}

/** Checks that a sample has the shape the batch expects. */
export const checkShape = (
  path: string,
  expected: ReadonlyArray<number>,
  actual: ReadonlyArray<number>
): Effect.Effect<void, SampleShapeMismatch> =>
  sameShape(expected, actual)
    ? Effect.void
    : Effect.fail(new SampleShapeMismatch({ path, expected: [...expected], actual: [...actual] }))

/**
 * Decodes a whole folder of tensors into one `TensorDataset` (decode once; every later use is a
 * memory read). Samples must all have one shape, otherwise `SampleShapeMismatch` names the first
 * file that differs. With `onError: "skip"`, bad files are left out and listed in one warning.
 */
export const toTensorDataset = (
  folder: ImageFolder<ImageTensor>
): Effect.Effect<
  TensorDataset.TensorDataset,
  ImageReadError | SampleShapeMismatch,
  FileSystem.FileSystem | DecodePool.DecodePool
> =>
  collect(
    folder,
    (t) => t.shape,
    (t, out, offset) => out.set(t.data, offset)
  )

/**
 * Every sample of `folder`, in order, written by `write` straight into one float32 buffer sized
 * for the whole folder when the first sample arrives: no per-sample arrays are kept and nothing
 * is concatenated at the end, so the dataset costs its pixels once (not two or three times).
 */
const collect = <A>(
  folder: ImageFolder<A>,
  shapeOf: (value: A) => ReadonlyArray<number>,
  write: (value: A, out: Float32Array, offset: number) => void
): Effect.Effect<
  TensorDataset.TensorDataset,
  ImageReadError | SampleShapeMismatch,
  FileSystem.FileSystem | DecodePool.DecodePool
> =>
  Effect.gen(function* () {
    const skipped: Array<string> = []
    const tagged =
      folder.onError === "skip"
        ? Stream.mapEffect(
            Stream.fromIterable(folder.samples.map((_, i) => i)),
            (i) =>
              folder.get(i).pipe(
                Effect.map((s): Sample<A> | string => s),
                Effect.catchAll((e) => Effect.succeed(e.message))
              ),
            { concurrency: 8 }
          )
        : Stream.map(folder.stream, (s): Sample<A> | string => s)
    let sampleShape: ReadonlyArray<number> | undefined
    let per = 0
    let x = new Float32Array(0)
    const y = new Int32Array(folder.length)
    let kept = 0
    yield* Stream.runForEach(tagged, (s) => {
      if (typeof s === "string") {
        skipped.push(s)
        return Effect.void
      }
      const shape = shapeOf(s.value)
      if (sampleShape === undefined) {
        sampleShape = [...shape]
        per = shape.reduce((a, b) => a * b, 1)
        x = new Float32Array(folder.length * per)
      } else if (!sameShape(sampleShape, shape)) return checkShape(s.path, sampleShape, shape)
      write(s.value, x, kept * per)
      y[kept++] = s.label
      return Effect.void
    })
    if (skipped.length > 0) {
      yield* Effect.logWarning(`skipped ${skipped.length} unreadable image(s):\n  ${skipped.join("\n  ")}`)
    }
    // Only when files were skipped is the buffer longer than the samples (then it is trimmed).
    return {
      x: kept === folder.length ? x : x.slice(0, kept * per),
      y: kept === folder.length ? y : y.slice(0, kept),
      sampleShape: sampleShape === undefined ? [3, 0, 0] : [...sampleShape],
      length: kept,
      classes: folder.classes
    }
  })

/**
 * The one-call loader: `root` decoded once, resized, as CHW float32 in [0, 1] (the chapter's
 * `Compose([Resize(28), ToTensor()])` on an `ImageFolder`). Each decoded image is converted
 * straight into the dataset's buffer (`Transforms.toTensorInto`).
 */
export const loadImageFolder = (
  root: string,
  options: {
    readonly resize?: number | readonly [number, number]
    readonly onError?: OnError
    readonly concurrency?: number
    readonly decodeOn?: DecodeOn
    readonly diskCache?: string
    readonly maxPixels?: number
    readonly maxFileBytes?: number
    readonly followLinks?: boolean
    readonly listing?: Listing
  } = {}
): Effect.Effect<
  TensorDataset.TensorDataset,
  ImageFolderError,
  FileSystem.FileSystem | DecodePool.DecodePool
> =>
  Effect.flatMap(
    make<Image.RgbImage>(root, {
      onError: options.onError ?? "fail",
      ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
      ...(options.maxPixels === undefined ? {} : { maxPixels: options.maxPixels }),
      ...(options.maxFileBytes === undefined ? {} : { maxFileBytes: options.maxFileBytes }),
      ...(options.followLinks === undefined ? {} : { followLinks: options.followLinks }),
      ...(options.listing === undefined ? {} : { listing: options.listing }),
      ...(options.resize === undefined ? {} : { resize: options.resize }),
      ...(options.decodeOn === undefined ? {} : { decodeOn: options.decodeOn }),
      ...(options.diskCache === undefined ? {} : { diskCache: options.diskCache })
    }),
    (folder) => collect(folder, (img) => [3, img.height, img.width], toTensorInto)
  )

/** `Normalize(mean, std)` applied to every sample of an image dataset (see `TensorDataset.normalize`). */
export const normalizeDataset = TensorDataset.normalize

export interface LoaderOptions<C> extends DataLoader.Options {
  /**
   * Per-epoch transform run on the cached value of each sample (random augmentations go here;
   * the folder's own `transform` runs once, at first decode). Required unless the folder already
   * yields tensors.
   */
  readonly augment?: Transform<C, ImageTensor>
  /**
   * Images decoded at once while filling the cache (default `workerConcurrency`): the first
   * epoch decodes ahead of the batches, in the epoch's order.
   */
  readonly concurrency?: number
}

/**
 * A loader that decodes each image once: the first epoch decodes (concurrently, batches prepared
 * ahead of the consumer), later epochs read the cache and only run `augment`. With the folder's
 * `onError: "skip"`, a bad file is left out of its batch, warned about once, and never retried.
 */
export const loader = <C>(
  folder: ImageFolder<C>,
  options: LoaderOptions<C>
): Either.Either<
  DataLoader.DataLoader<
    Int32Array,
    ImageReadError | SampleShapeMismatch,
    FileSystem.FileSystem | DecodePool.DecodePool
  >,
  InvalidArgument
> => Either.map(DataLoader.checkOptions(options), () => cachedLoader(folder, options))

const cachedLoader = <C>(
  folder: ImageFolder<C>,
  options: LoaderOptions<C>
): DataLoader.DataLoader<
  Int32Array,
  ImageReadError | SampleShapeMismatch,
  FileSystem.FileSystem | DecodePool.DecodePool
> => {
  const cache: Array<C | undefined> = new Array(folder.length)
  const bad = new Set<number>()
  // Samples decoded or known bad; when it reaches the length, no epoch decodes anything.
  let settled = 0
  const labels = folder.samples.map((s) => s.label)
  const augment = options.augment ?? ((v: C) => v as unknown as ImageTensor)
  const prefetch = options.prefetch ?? 2
  let sampleShape: ReadonlyArray<number> | undefined

  /** Stores a decoded sample, or marks it bad (`onError: "skip"`) or fails (`"fail"`). */
  const store = (
    i: number,
    r: Either.Either<Sample<C>, ImageReadError>
  ): Effect.Effect<void, ImageReadError> => {
    if (Either.isRight(r)) {
      if (cache[i] === undefined) settled++
      cache[i] = r.right.value
      return Effect.void
    }
    if (folder.onError === "fail") return Effect.fail(r.left)
    if (!bad.has(i)) settled++
    bad.add(i)
    return Effect.logWarning(`skipping ${r.left.message}`)
  }

  /**
   * An epoch's batches while some samples are not decoded yet (the first epoch): the missing
   * samples go to the decoder in the epoch's order, `concurrency` in flight, a few per worker
   * message (`chunking`), ahead of the batches (no pause at each batch's last image), and each
   * batch is gathered as soon as all of its samples are settled.
   */
  const decodingBatches = (epoch: number, indices: ReadonlyArray<Uint32Array>) =>
    Stream.unwrap(
      Effect.map(DecodePool.DecodePool, (pool) => {
        const { chunk, inFlight } = chunking(
          options.concurrency ?? workerConcurrency(pool.workers),
          pool.workers
        )
        const missing: Array<number> = []
        // Batch b is complete once the first ready[b] missing samples are settled.
        const ready = new Array<number>(indices.length)
        for (let b = 0; b < indices.length; b++) {
          for (const i of indices[b]) if (cache[i] === undefined && !bad.has(i)) missing.push(i)
          ready[b] = missing.length
        }
        const chunks: Array<{ readonly items: ReadonlyArray<number>; readonly end: number }> = []
        for (let k = 0; k < missing.length; k += chunk) {
          chunks.push({ items: missing.slice(k, k + chunk), end: Math.min(missing.length, k + chunk) })
        }
        let next = 0
        const completeUpTo = (settledCount: number): Array<number> => {
          const from = next
          while (next < indices.length && ready[next] <= settledCount) next++
          return Array.from({ length: next - from }, (_, k) => from + k)
        }
        // Chunks come out in order, so when one is out every earlier one is settled too.
        const progress = Stream.mapEffect(
          Stream.fromIterable(chunks),
          ({ items, end }) =>
            Effect.as(
              Effect.flatMap(folder.getMany(items, 0), (results) =>
                Effect.forEach(results, (r, k) => store(items[k], r), { discard: true })
              ),
              end
            ),
          { concurrency: inFlight }
        )
        return Stream.concat(Stream.succeed(0), progress).pipe(
          Stream.mapConcat(completeUpTo),
          Stream.mapEffect((b) => gather(epoch, indices[b]))
        )
      })
    )

  /** Gathers a batch from the cache (pure memory work, no effects per sample). */
  const gather = (epoch: number, indices: Uint32Array) =>
    Effect.suspend(() => {
      const tensors: Array<{ index: number; t: ImageTensor }> = []
      for (const index of indices) {
        const v = cache[index]
        if (v !== undefined) tensors.push({ index, t: augment(v, { epoch, index }) })
      }
      const per = tensors.length > 0 ? tensors[0].t.data.length : 0
      sampleShape ??= tensors[0]?.t.shape
      const x = new Float32Array(tensors.length * per)
      const y = new Int32Array(tensors.length)
      for (let k = 0; k < tensors.length; k++) {
        const { index, t } = tensors[k]
        if (!sameShape(t.shape, sampleShape!)) {
          return checkShape(folder.samples[index].path, sampleShape!, t.shape).pipe(Effect.as(undefined))
        }
        x.set(t.data, k * per)
        y[k] = labels[index]
      }
      const batch: Batch = { x, y, shape: [tensors.length, ...(sampleShape ?? [3, 0, 0])] }
      return Effect.succeed(batch)
    })

  return {
    numSamples: folder.length,
    numBatches: DataLoader.countBatches(folder.length, options.batchSize, options.dropLast ?? false),
    batchSize: options.batchSize,
    batches: (epoch) =>
      Stream.suspend(() => {
        const indices = DataLoader.batchIndices(folder.length, options, epoch)
        const complete = settled === folder.length
        // Once everything is decoded, batches are memory copies: pull them one by one, no buffer.
        const stream = (
          complete
            ? Stream.unfoldEffect(0, (b) =>
                b < indices.length
                  ? Effect.map(gather(epoch, indices[b]), (batch) => Option.some([batch, b + 1] as const))
                  : Effect.succeed(Option.none())
              )
            : decodingBatches(epoch, indices)
        ).pipe(Stream.filter((b): b is Batch => b !== undefined && b.y.length > 0))
        return prefetch > 0 && !complete ? Stream.buffer(stream, { capacity: prefetch }) : stream
      })
  }
}

/**
 * Compares two class lists by name: `found` (e.g. an evaluation folder's classes) against
 * `expected` (e.g. a checkpoint's). On a match, the index in `expected` of each class of `found`
 * (the label map to apply when the orders differ); otherwise `ClassMismatch` naming the classes
 * missing from `found` and the extra ones, and `where` (what was compared, in the user's terms).
 */
export const matchClasses = (
  expected: ReadonlyArray<string>,
  found: ReadonlyArray<string>,
  where: string
): Either.Either<ReadonlyArray<number>, ClassMismatch> => {
  const missing = expected.filter((c) => !found.includes(c))
  const extra = found.filter((c) => !expected.includes(c))
  return missing.length === 0 && extra.length === 0 && expected.length === found.length
    ? Either.right(found.map((c) => expected.indexOf(c)))
    : Either.left(new ClassMismatch({ missing, extra, where }))
}
