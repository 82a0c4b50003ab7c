/**
 * Rock Paper Scissors: the bundled 28x28 copy (works offline) and the full-size download.
 */

import { createHash } from "node:crypto"
import * as nodePath from "node:path"
import { fileURLToPath } from "node:url"
import { FileSystem, HttpClient } from "@effect/platform"
import { Effect, Stream } from "effect"
import * as fflate from "fflate"
import { DataFileError, DownloadError } from "./Errors.js"

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
 * interrupted or corrupt download never leaves a half-filled dataset folder behind. A folder that
 * already exists is kept (the download is skipped).
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
          const got = yield* fetchTo(url, zipPath, archive, options.onProgress)
          const unpacked = nodePath.join(work, "unpacked")
          yield* extract(fs, url, zipPath, unpacked)
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
  new DataFileError({ path, reason: e.message })

/** Streams `url` into `path`, reporting progress and checking size and checksum. */
const fetchTo = (
  url: string,
  path: string,
  archive: Archive,
  onProgress: DownloadOptions["onProgress"]
): Effect.Effect<
  { size: number; sha256: string },
  DownloadError | DataFileError,
  FileSystem.FileSystem | HttpClient.HttpClient
> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const httpError = (e: { readonly message: string }) => new DownloadError({ url, reason: e.message })
    const response = yield* HttpClient.get(url).pipe(Effect.mapError(httpError))
    if (response.status !== 200)
      return yield* new DownloadError({ url, reason: `HTTP status ${response.status}` })
    const lengthHeader = response.headers["content-length"]
    const total = lengthHeader === undefined ? undefined : Number(lengthHeader)
    const hash = createHash("sha256")
    let received = 0
    const counted = response.stream.pipe(
      Stream.mapError(httpError),
      Stream.tap((chunk) => {
        hash.update(chunk)
        received += chunk.length
        return onProgress ? onProgress({ file: archive.name, received, total }) : Effect.void
      })
    )
    yield* Stream.run(counted, fs.sink(path)).pipe(
      Effect.mapError((e) =>
        e instanceof DownloadError ? e : new DataFileError({ path, reason: e.message })
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

/** Unpacks a zip into `into`, refusing entries that would escape it. */
const extract = (
  fs: FileSystem.FileSystem,
  url: string,
  zipPath: string,
  into: string
): Effect.Effect<void, DownloadError | DataFileError> =>
  Effect.gen(function* () {
    const bytes = yield* fs.readFile(zipPath).pipe(Effect.mapError(fileError(zipPath)))
    const entries = yield* Effect.async<fflate.Unzipped, DownloadError>((resume) => {
      fflate.unzip(bytes, (err, data) =>
        resume(
          err
            ? Effect.fail(new DownloadError({ url, reason: `not a valid zip: ${err.message}` }))
            : Effect.succeed(data)
        )
      )
    })
    for (const [name, data] of Object.entries(entries)) {
      // macOS resource forks ride along in some archives; they are not images.
      if (name.startsWith("__MACOSX/")) continue
      const dest = nodePath.resolve(into, name)
      if (!dest.startsWith(nodePath.resolve(into) + nodePath.sep)) {
        return yield* new DownloadError({ url, reason: `zip entry ${name} points outside the target folder` })
      }
      if (name.endsWith("/")) {
        yield* fs.makeDirectory(dest, { recursive: true }).pipe(Effect.mapError(fileError(dest)))
        continue
      }
      yield* fs
        .makeDirectory(nodePath.dirname(dest), { recursive: true })
        .pipe(Effect.mapError(fileError(dest)))
      yield* fs.writeFile(dest, data).pipe(Effect.mapError(fileError(dest)))
    }
  })
