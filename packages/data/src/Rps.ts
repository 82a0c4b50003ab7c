/**
 * Rock Paper Scissors: the bundled 28x28 copy (works offline) and the full-size download.
 */

import { createHash } from "node:crypto"
import * as nodePath from "node:path"
import { fileURLToPath } from "node:url"
import { crc32, inflateRawSync } from "node:zlib"
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import { Duration, Effect, Either, Stream } from "effect"
import { DataFileError, DownloadError } from "./Errors.js"
import { DEFAULT_MAX_FILE_BYTES } from "./Image.js"

/** Where the bundled copy lives; `../assets` resolves the same from `src/` and `dist/`. */
const bundledRoot = fileURLToPath(new URL("../assets/rps-28", import.meta.url))

/** Paths of the bundled 28x28 sets: `train` (rps, 2,520 images) and `test` (rps-test-set, 372). */
export const bundled = (): { readonly root: string; readonly train: string; readonly test: string } => ({
  root: bundledRoot,
  train: `${bundledRoot}/rps`,
  test: `${bundledRoot}/rps-test-set`
})

/** Class names of the dataset, in ImageFolder order. */
export const CLASSES: ReadonlyArray<string> = ["paper", "rock", "scissors"]

/** The URL the chapter downloads from. */
export const DEFAULT_BASE_URL = "https://storage.googleapis.com/download.tensorflow.org/data/"

export interface Archive {
  /** File name under the base URL, e.g. `rps.zip`. */
  readonly name: string
  /** The folder the archive holds at its top level, e.g. `rps`. */
  readonly folder: string
  /** Expected byte size, when known (otherwise the Content-Length header is enforced). */
  readonly size?: number
  /** Expected SHA-256 (hex), when known. */
  readonly sha256?: string
}

/** The two archives of the chapter (training set and the test set it uses for validation). */
export const ARCHIVES: ReadonlyArray<Archive> = [
  { name: "rps.zip", folder: "rps" },
  { name: "rps-test-set.zip", folder: "rps-test-set" }
]

export interface Progress {
  readonly file: string
  readonly received: number
  /** From Content-Length, when the server sends it. */
  readonly total: number | undefined
}

export interface DownloadOptions {
  readonly baseUrl?: string
  readonly archives?: ReadonlyArray<Archive>
  readonly onProgress?: (progress: Progress) => Effect.Effect<void>
  /** Longest wait for the response headers, per request (default 30 s). */
  readonly connectTimeout?: Duration.DurationInput
  /** Longest silence while the body arrives (default 60 s): a stalled server fails, not hangs. */
  readonly idleTimeout?: Duration.DurationInput
  /** Redirects followed per archive (default 5). */
  readonly maxRedirects?: number
  /** Bytes all entries of one archive may extract to (default 4 GiB; the real archives need ~0.3 GB). */
  readonly maxExtractedBytes?: number
  /** Bytes one entry may extract to (default `Image.DEFAULT_MAX_FILE_BYTES`, 256 MiB). */
  readonly maxEntryBytes?: number
}

export interface Downloaded {
  readonly train: string
  readonly test: string
  /** What each archive turned out to be (pin these as `size` / `sha256`). */
  readonly archives: ReadonlyArray<{
    readonly name: string
    readonly size: number
    readonly sha256: string
    readonly skipped: boolean
  }>
}

/**
 * Downloads and unpacks the full-size dataset into `dir/rps` and `dir/rps-test-set`.
 *
 * Each archive is streamed to a temporary file (size and SHA-256 computed on the way), checked,
 * unpacked into a temporary folder inside `dir`, and only then renamed into place, so an
 * interrupted or corrupt download never leaves a half-filled dataset folder behind (the folder
 * is the unit of atomicity here: files inside the temporary folder need no rename of their own).
 * A folder that already exists is kept (the download is skipped).
 *
 * Time-outs bound the wait for headers and every silence in the body; redirects are followed up
 * to `maxRedirects`; extraction is bounded by the sizes the archive declares (checked before
 * anything is inflated) and by the bytes actually inflated (an entry that inflates beyond its
 * declared size is cut off), so a zip bomb fails instead of filling memory or disk.
 */
export const downloadRps = (
  dir: string,
  options: DownloadOptions = {}
): Effect.Effect<Downloaded, DownloadError | DataFileError, FileSystem.FileSystem | HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const baseUrl = options.baseUrl ?? DEFAULT_BASE_URL
    const archives = options.archives ?? ARCHIVES
    yield* fs.makeDirectory(dir, { recursive: true }).pipe(Effect.mapError(fileError(dir)))
    const results = []
    for (const archive of archives) {
      const target = nodePath.join(dir, archive.folder)
      if (yield* fs.exists(target).pipe(Effect.orElseSucceed(() => false))) {
        results.push({ name: archive.name, size: 0, sha256: "", skipped: true })
        continue
      }
      const url = new URL(archive.name, baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`).toString()
      const info = yield* Effect.scoped(
        Effect.gen(function* () {
          const work = yield* fs
            .makeTempDirectoryScoped({ directory: dir, prefix: `.${archive.folder}-` })
            .pipe(Effect.mapError(fileError(dir)))
          const zipPath = nodePath.join(work, archive.name)
          const got = yield* fetchTo(url, zipPath, archive, options)
          const unpacked = nodePath.join(work, "unpacked")
          yield* extract(fs, url, zipPath, unpacked, {
            maxExtractedBytes: options.maxExtractedBytes ?? DEFAULT_MAX_EXTRACTED_BYTES,
            maxEntryBytes: options.maxEntryBytes ?? DEFAULT_MAX_FILE_BYTES
          })
          const source = nodePath.join(unpacked, archive.folder)
          if (!(yield* fs.exists(source).pipe(Effect.orElseSucceed(() => false)))) {
            return yield* new DownloadError({
              url,
              reason: `archive has no top-level folder "${archive.folder}"`
            })
          }
          yield* fs.rename(source, target).pipe(Effect.mapError(fileError(target)))
          return got
        })
      )
      results.push({ name: archive.name, ...info, skipped: false })
    }
    const folderOf = (i: number) => nodePath.join(dir, archives[i]?.folder ?? "")
    return { train: folderOf(0), test: folderOf(1), archives: results }
  })

const fileError = (path: string) => (e: { readonly message: string }) =>
  new DataFileError({ path, reason: e.message, cause: e })

/** See `DownloadOptions.maxExtractedBytes`. */
export const DEFAULT_MAX_EXTRACTED_BYTES = 4 * 1024 ** 3

/**
 * The real cause of an HTTP client failure: `Transport error` alone names nothing, the error
 * under it (undici's, with a code like ECONNREFUSED or UND_ERR_SOCKET) does.
 */
const describe = (e: unknown): string => {
  const parts: Array<string> = []
  let cur: unknown = e
  for (let depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    if (cur instanceof Error || typeof cur === "object") {
      const err = cur as {
        message?: unknown
        code?: unknown
        cause?: unknown
        _tag?: unknown
        reason?: unknown
      }
      const isWrapper = err._tag === "RequestError" || err._tag === "ResponseError"
      const text = isWrapper
        ? err.reason === "Transport"
          ? "connection failed"
          : String(err.reason)
        : typeof err.message === "string" && err.message !== ""
          ? err.message
          : String(cur)
      const code = typeof err.code === "string" && !text.includes(err.code) ? ` (${err.code})` : ""
      if (!parts.some((p) => p.includes(text))) parts.push(text + code)
      cur = err.cause
    } else {
      parts.push(String(cur))
      break
    }
  }
  return parts.join(": ")
}

/** Streams `url` into `path`, reporting progress and checking size and checksum. */
const fetchTo = (
  url: string,
  path: string,
  archive: Archive,
  options: DownloadOptions
): Effect.Effect<
  { size: number; sha256: string },
  DownloadError | DataFileError,
  FileSystem.FileSystem | HttpClient.HttpClient
> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const maxRedirects = options.maxRedirects ?? 5
    const connectTimeout = Duration.decode(options.connectTimeout ?? "30 seconds")
    const idleTimeout = Duration.decode(options.idleTimeout ?? "60 seconds")
    const client = HttpClient.followRedirects(yield* HttpClient.HttpClient, maxRedirects)
    const httpError = (e: unknown) => new DownloadError({ url, reason: describe(e), cause: e })
    const response = yield* client.get(url).pipe(
      Effect.mapError(httpError),
      Effect.timeoutFail({
        duration: connectTimeout,
        onTimeout: () =>
          new DownloadError({
            url,
            reason: `no response within ${Duration.format(connectTimeout)} (server unreachable or stalled)`
          })
      })
    )
    if (response.status >= 300 && response.status < 400 && response.headers.location !== undefined)
      return yield* new DownloadError({
        url,
        reason: `more than ${maxRedirects} redirects (last to ${response.headers.location})`
      })
    if (response.status !== 200)
      return yield* new DownloadError({ url, reason: `HTTP status ${response.status}` })
    const lengthHeader = response.headers["content-length"]
    const total = lengthHeader === undefined ? undefined : Number(lengthHeader)
    const hash = createHash("sha256")
    let received = 0
    const counted = response.stream.pipe(
      Stream.mapError(httpError),
      Stream.timeoutFail(
        () =>
          new DownloadError({
            url,
            reason: `no data for ${Duration.format(idleTimeout)} after ${received} bytes (server stalled)`
          }),
        idleTimeout
      ),
      Stream.tap((chunk) => {
        hash.update(chunk)
        received += chunk.length
        return options.onProgress ? options.onProgress({ file: archive.name, received, total }) : Effect.void
      })
    )
    yield* Stream.run(counted, fs.sink(path)).pipe(
      Effect.mapError((e) =>
        e instanceof DownloadError ? e : new DataFileError({ path, reason: e.message, cause: e })
      )
    )
    const sha256 = hash.digest("hex")
    const expectedSize = archive.size ?? total
    if (expectedSize !== undefined && received !== expectedSize) {
      return yield* new DownloadError({ url, reason: `received ${received} bytes, expected ${expectedSize}` })
    }
    if (archive.sha256 !== undefined && sha256 !== archive.sha256.toLowerCase()) {
      return yield* new DownloadError({
        url,
        reason: `SHA-256 ${sha256} does not match the expected ${archive.sha256}`
      })
    }
    return { size: received, sha256 }
  })

/** One file of a zip archive, as its central directory declares it. */
export interface ZipEntry {
  readonly name: string
  /** 0 stored, 8 deflated. */
  readonly method: number
  readonly compressedSize: number
  readonly size: number
  readonly crc: number
  /** Where the entry's data starts in the archive. */
  readonly dataOffset: number
}

/**
 * The entries of a zip archive from its central directory (no data inflated). Zip64 archives
 * (over 4 GB or 65,535 entries) and encrypted entries are refused.
 */
export const zipEntries = (bytes: Uint8Array): Either.Either<ReadonlyArray<ZipEntry>, string> => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const u16 = (o: number) => view.getUint16(o, true)
  const u32 = (o: number) => view.getUint32(o, true)
  let eocd = -1
  for (let o = bytes.length - 22; o >= Math.max(0, bytes.length - 22 - 65535); o--) {
    if (u32(o) === 0x06054b50) {
      eocd = o
      break
    }
  }
  if (eocd < 0) return Either.left("no end-of-central-directory record")
  const count = u16(eocd + 10)
  const dirOffset = u32(eocd + 16)
  if (count === 0xffff || dirOffset === 0xffffffff) return Either.left("zip64 archives are not supported")
  const entries: Array<ZipEntry> = []
  let o = dirOffset
  for (let k = 0; k < count; k++) {
    if (o + 46 > bytes.length || u32(o) !== 0x02014b50)
      return Either.left(`damaged central directory at entry ${k}`)
    const flags = u16(o + 8)
    const nameLength = u16(o + 28)
    const name = new TextDecoder().decode(bytes.subarray(o + 46, o + 46 + nameLength))
    if ((flags & 1) !== 0) return Either.left(`entry ${name} is encrypted`)
    const local = u32(o + 42)
    if (local + 30 > bytes.length || u32(local) !== 0x04034b50)
      return Either.left(`damaged local header of ${name}`)
    const entry = {
      name,
      method: u16(o + 10),
      crc: u32(o + 16),
      compressedSize: u32(o + 20),
      size: u32(o + 24),
      dataOffset: local + 30 + u16(local + 26) + u16(local + 28)
    }
    if (entry.dataOffset + entry.compressedSize > bytes.length)
      return Either.left(`entry ${name} is truncated`)
    entries.push(entry)
    o += 46 + nameLength + u16(o + 30) + u16(o + 32)
  }
  return Either.right(entries)
}

/**
 * One entry's bytes, inflated into at most its declared size (`inflateRaw` stops there), then
 * checked against the declared size and CRC-32.
 */
export const inflateEntry = (bytes: Uint8Array, entry: ZipEntry): Either.Either<Uint8Array, string> => {
  const data = bytes.subarray(entry.dataOffset, entry.dataOffset + entry.compressedSize)
  let out: Uint8Array
  if (entry.method === 0) out = data
  else if (entry.method === 8) {
    try {
      out = inflateRawSync(data, { maxOutputLength: Math.max(1, entry.size) })
    } catch (e) {
      return Either.left(
        e instanceof RangeError
          ? `entry ${entry.name} inflates beyond the ${entry.size} bytes it declares`
          : `entry ${entry.name}: ${e instanceof Error ? e.message : String(e)}`
      )
    }
  } else return Either.left(`entry ${entry.name} uses unsupported compression method ${entry.method}`)
  if (out.length !== entry.size)
    return Either.left(`entry ${entry.name} holds ${out.length} bytes, declares ${entry.size}`)
  if (crc32(out) !== entry.crc) return Either.left(`entry ${entry.name} fails its CRC-32 check`)
  return Either.right(out)
}

/**
 * Unpacks a zip into `into`, refusing entries that would escape it, and bounding what it
 * extracts: the declared sizes are checked before anything is inflated, and each entry is
 * inflated into at most its declared size, so the bytes written never exceed the limits.
 */
const extract = (
  fs: FileSystem.FileSystem,
  url: string,
  zipPath: string,
  into: string,
  limits: { readonly maxExtractedBytes: number; readonly maxEntryBytes: number }
): Effect.Effect<void, DownloadError | DataFileError> =>
  Effect.gen(function* () {
    const bytes = yield* fs.readFile(zipPath).pipe(Effect.mapError(fileError(zipPath)))
    const invalid = (reason: string) => new DownloadError({ url, reason })
    const entries = yield* Either.mapLeft(zipEntries(bytes), (r) => invalid(`not a valid zip: ${r}`))
    // macOS resource forks ride along in some archives; they are not images.
    const kept = entries.filter((e) => !e.name.startsWith("__MACOSX/"))
    const declared = kept.reduce((n, e) => n + e.size, 0)
    if (declared > limits.maxExtractedBytes)
      return yield* invalid(
        `archive declares ${declared} bytes of files, more than the limit of ${limits.maxExtractedBytes} (maxExtractedBytes)`
      )
    const big = kept.find((e) => e.size > limits.maxEntryBytes)
    if (big !== undefined)
      return yield* invalid(
        `entry ${big.name} declares ${big.size} bytes, more than the limit of ${limits.maxEntryBytes} per file (maxEntryBytes)`
      )
    const root = nodePath.resolve(into)
    for (const entry of kept) {
      const dest = nodePath.resolve(into, entry.name)
      if (!dest.startsWith(root + nodePath.sep)) {
        return yield* invalid(`zip entry ${entry.name} points outside the target folder`)
      }
      if (entry.name.endsWith("/")) {
        yield* fs.makeDirectory(dest, { recursive: true }).pipe(Effect.mapError(fileError(dest)))
        continue
      }
      const data = yield* Either.mapLeft(inflateEntry(bytes, entry), invalid)
      yield* fs
        .makeDirectory(nodePath.dirname(dest), { recursive: true })
        .pipe(Effect.mapError(fileError(dest)))
      yield* fs.writeFile(dest, data).pipe(Effect.mapError(fileError(dest)))
    }
  })
