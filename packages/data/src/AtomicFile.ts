/**
 * The one way stepwise writes a file a reader may see: whole or not at all.
 *
 * `write` puts the bytes in a temporary sibling (same folder, so the rename stays on one file
 * system), fsyncs it, and renames it over the target. On failure or interruption the temporary
 * file is removed, so an interrupted run leaves neither a half-written target nor a stray
 * `*.tmp-*` file. `append` adds bytes to the end of a file and fsyncs (metrics rows, event
 * records): a crash can at worst leave a torn last line, which readers skip.
 */
import { randomUUID } from "node:crypto"
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Exit } from "effect"

const bytesOf = (data: Uint8Array | string): Uint8Array =>
  typeof data === "string" ? new TextEncoder().encode(data) : data

/** Marks the temporary files of `write`: `<target>.tmp-<uuid>`. */
export const TEMP_MARK = ".tmp-"

/** True for a name `write` uses as a temporary file (left behind only by a hard kill). */
export const isTempName = (name: string): boolean => /\.tmp-[0-9a-f-]{36}$/.test(name)

/** Opens `path` with `flag` (creating its folder), writes all of `data` and fsyncs before closing. */
const writeSynced = (path: string, data: Uint8Array | string, flag: "w" | "a") =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    yield* fs.makeDirectory(p.dirname(path), { recursive: true })
    yield* Effect.scoped(
      Effect.gen(function* () {
        const file = yield* fs.open(path, { flag })
        const bytes = bytesOf(data)
        // (platform's writeAll fails on nothing to write: an empty file is made by the open)
        if (bytes.length > 0) yield* file.writeAll(bytes)
        yield* file.sync
      })
    )
  })

/** Writes `data` to `path` atomically (temp file, fsync, rename); creates the folder. */
export const write = (
  path: string,
  data: Uint8Array | string
): Effect.Effect<void, PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const tmp = `${path}${TEMP_MARK}${randomUUID()}`
    yield* writeSynced(tmp, data, "w").pipe(
      Effect.zipRight(fs.rename(tmp, path)),
      Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Effect.ignore(fs.remove(tmp))))
    )
  })

/** Appends `data` to `path` (created when absent) and fsyncs. */
export const append = (
  path: string,
  data: Uint8Array | string
): Effect.Effect<void, PlatformError, FileSystem.FileSystem | Path.Path> => writeSynced(path, data, "a")

/** Removes the temporary files a hard kill left in `dir` (not recursive); returns their names. */
export const removeStaleTemps = (
  dir: string
): Effect.Effect<ReadonlyArray<string>, PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    if (!(yield* fs.exists(dir))) return []
    const stale = (yield* fs.readDirectory(dir)).filter(isTempName)
    yield* Effect.forEach(stale, (name) => Effect.ignore(fs.remove(p.join(dir, name))), { discard: true })
    return stale
  })
