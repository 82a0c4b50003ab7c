/**
 * `@effect/platform`'s `FileSystem` in memory: what run folders need (folders, whole files,
 * appends, exclusive creation, rename, remove, open + write + sync), so tests can run the
 * run-folder writers without a disk and assert the exact files they leave. Paths are POSIX,
 * relative ones resolve from "/". Each build of `layer` starts empty; the operations it does
 * not implement fail with `NotFound`, like `FileSystem.layerNoop`.
 */
import { posix } from "node:path"
import { type PlatformError, SystemError, type SystemErrorReason } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, Layer, Option } from "effect"

interface Store {
  readonly files: Map<string, Uint8Array>
  readonly dirs: Set<string>
}

const resolve = (path: string) => posix.resolve("/", path)

const failure = (method: string, path: string, reason: SystemErrorReason, description: string) =>
  new SystemError({ module: "FileSystem", method, reason, pathOrDescriptor: path, description })

const concat = (a: Uint8Array, b: Uint8Array) => {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}

const info = (type: FileSystem.File.Type, size: number): FileSystem.File.Info => ({
  type,
  mtime: Option.none(),
  atime: Option.none(),
  birthtime: Option.none(),
  dev: 0,
  ino: Option.none(),
  mode: type === "Directory" ? 0o755 : 0o644,
  nlink: Option.none(),
  uid: Option.none(),
  gid: Option.none(),
  size: FileSystem.Size(size),
  rdev: Option.none(),
  blksize: Option.none(),
  blocks: Option.none()
})

/** The implementation over one store; everything else is `layerNoop`'s `NotFound`. */
const implementation = (store: Store): Partial<FileSystem.FileSystem> => {
  const { files, dirs } = store
  let descriptors = 0
  const isDir = (p: string) => dirs.has(p)
  const parentMissing = (method: string, p: string) =>
    isDir(posix.dirname(p)) ? undefined : failure(method, p, "NotFound", "no such directory")
  /** Creates, replaces or appends to a file, as `open`/`writeFile` with `flag` do; the error if not. */
  const put = (method: string, p: string, flag: string, data: Uint8Array): PlatformError | undefined => {
    if (isDir(p)) return failure(method, p, "BadResource", "is a directory")
    const missing = parentMissing(method, p)
    if (missing !== undefined) return missing
    if (flag.includes("x") && files.has(p)) return failure(method, p, "AlreadyExists", "file exists")
    files.set(p, flag.startsWith("a") ? concat(files.get(p) ?? new Uint8Array(), data) : data)
    return undefined
  }
  const putting = (method: string, p: string, flag: string, data: Uint8Array) =>
    Effect.suspend(() => {
      const error = put(method, p, flag, data)
      return error === undefined ? Effect.void : Effect.fail(error)
    })
  const children = (p: string) => {
    const prefix = p === "/" ? "/" : `${p}/`
    return [...files.keys(), ...dirs].filter((k) => k !== p && k.startsWith(prefix))
  }
  return {
    access: (path) =>
      Effect.suspend(() => {
        const p = resolve(path)
        return files.has(p) || isDir(p)
          ? Effect.void
          : Effect.fail(failure("access", p, "NotFound", "no such file"))
      }),
    exists: (path) => Effect.sync(() => files.has(resolve(path)) || isDir(resolve(path))),
    stat: (path) =>
      Effect.suspend(() => {
        const p = resolve(path)
        if (isDir(p)) return Effect.succeed(info("Directory", 0))
        const bytes = files.get(p)
        return bytes === undefined
          ? Effect.fail(failure("stat", p, "NotFound", "no such file"))
          : Effect.succeed(info("File", bytes.length))
      }),
    makeDirectory: (path, options) =>
      Effect.suspend(() => {
        const p = resolve(path)
        if (files.has(p)) return Effect.fail(failure("makeDirectory", p, "AlreadyExists", "a file is there"))
        if (isDir(p))
          return options?.recursive === true
            ? Effect.void
            : Effect.fail(failure("makeDirectory", p, "AlreadyExists", "directory exists"))
        if (options?.recursive !== true) {
          const missing = parentMissing("makeDirectory", p)
          if (missing !== undefined) return Effect.fail(missing)
        }
        for (let d = p; !isDir(d); d = posix.dirname(d)) dirs.add(d)
        return Effect.void
      }),
    readDirectory: (path) =>
      Effect.suspend(() => {
        const p = resolve(path)
        if (!isDir(p)) return Effect.fail(failure("readDirectory", p, "NotFound", "no such directory"))
        const names = children(p)
          .filter((k) => posix.dirname(k) === p)
          .map((k) => posix.basename(k))
        return Effect.succeed(names.sort())
      }),
    readFile: (path) =>
      Effect.suspend(() => {
        const bytes = files.get(resolve(path))
        return bytes === undefined
          ? Effect.fail(failure("readFile", resolve(path), "NotFound", "no such file"))
          : Effect.succeed(bytes.slice())
      }),
    readFileString: (path) =>
      Effect.suspend(() => {
        const bytes = files.get(resolve(path))
        return bytes === undefined
          ? Effect.fail(failure("readFileString", resolve(path), "NotFound", "no such file"))
          : Effect.succeed(new TextDecoder().decode(bytes))
      }),
    writeFile: (path, data, options) =>
      putting("writeFile", resolve(path), options?.flag ?? "w", data.slice()),
    writeFileString: (path, data, options) =>
      putting("writeFileString", resolve(path), options?.flag ?? "w", new TextEncoder().encode(data)),
    remove: (path, options) =>
      Effect.suspend(() => {
        const p = resolve(path)
        if (files.delete(p)) return Effect.void
        if (!isDir(p))
          return options?.force === true
            ? Effect.void
            : Effect.fail(failure("remove", p, "NotFound", "no such file"))
        const inside = children(p)
        if (inside.length > 0 && options?.recursive !== true)
          return Effect.fail(failure("remove", p, "Busy", "directory not empty"))
        for (const k of inside) {
          files.delete(k)
          dirs.delete(k)
        }
        dirs.delete(p)
        return Effect.void
      }),
    rename: (oldPath, newPath) =>
      Effect.suspend(() => {
        const from = resolve(oldPath)
        const to = resolve(newPath)
        const missing = parentMissing("rename", to)
        if (missing !== undefined) return Effect.fail(missing)
        const bytes = files.get(from)
        if (bytes !== undefined) {
          if (isDir(to)) return Effect.fail(failure("rename", to, "BadResource", "is a directory"))
          files.delete(from)
          files.set(to, bytes)
          return Effect.void
        }
        if (!isDir(from)) return Effect.fail(failure("rename", from, "NotFound", "no such file"))
        for (const k of children(from)) {
          const moved = `${to}${k.slice(from.length)}`
          const file = files.get(k)
          if (file !== undefined) {
            files.delete(k)
            files.set(moved, file)
          } else {
            dirs.delete(k)
            dirs.add(moved)
          }
        }
        dirs.delete(from)
        dirs.add(to)
        return Effect.void
      }),
    open: (path, options) =>
      Effect.suspend(() => {
        const p = resolve(path)
        const flag = options?.flag ?? "r"
        if (flag.startsWith("r")) {
          if (!files.has(p)) return Effect.fail(failure("open", p, "NotFound", "no such file"))
        } else {
          const error = put("open", p, flag, new Uint8Array())
          if (error !== undefined) return Effect.fail(error)
        }
        return Effect.succeed(openFile(store, p, flag, ++descriptors))
      })
  }
}

/** A handle on one stored file: writes land in the store at once (`sync` has nothing to flush). */
const openFile = (store: Store, path: string, flag: string, fd: number): FileSystem.File => {
  let position = 0
  const bytes = () => store.files.get(path) ?? new Uint8Array()
  const write = (buffer: Uint8Array) =>
    Effect.sync(() => {
      const current = bytes()
      const at = flag.startsWith("a") ? current.length : position
      const next = new Uint8Array(Math.max(current.length, at + buffer.length))
      next.set(current)
      next.set(buffer, at)
      store.files.set(path, next)
      position = at + buffer.length
      return FileSystem.Size(buffer.length)
    })
  const read = (buffer: Uint8Array) =>
    Effect.sync(() => {
      const chunk = bytes().subarray(position, position + buffer.length)
      buffer.set(chunk)
      position += chunk.length
      return FileSystem.Size(chunk.length)
    })
  return {
    [FileSystem.FileTypeId]: FileSystem.FileTypeId,
    fd: FileSystem.FileDescriptor(fd),
    stat: Effect.sync(() => info("File", bytes().length)),
    seek: (offset, from) =>
      Effect.sync(() => {
        position = (from === "start" ? 0 : position) + Number(offset)
      }),
    sync: Effect.void,
    read,
    readAlloc: (size) =>
      Effect.flatMap(
        Effect.sync(() => new Uint8Array(Number(size))),
        (buffer) =>
          Effect.map(read(buffer), (n) =>
            Number(n) === 0 ? Option.none() : Option.some(buffer.subarray(0, Number(n)))
          )
      ),
    truncate: (length) =>
      Effect.sync(() => {
        store.files.set(path, bytes().slice(0, length === undefined ? 0 : Number(length)))
      }),
    write,
    writeAll: (buffer) => Effect.asVoid(write(buffer))
  }
}

/** A fresh, empty in-memory `FileSystem` (with "/" as its only folder) per build. */
export const layer: Layer.Layer<FileSystem.FileSystem> = Layer.unwrapEffect(
  Effect.sync(() => FileSystem.layerNoop(implementation({ files: new Map(), dirs: new Set(["/"]) })))
)
