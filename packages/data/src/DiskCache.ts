/**
 * An optional on-disk cache of decoded (and decode-time resized) images, so that a new process
 * (the next `stepwise train`) does not decode the same files again either.
 *
 * One small file per image, named by a hash of (path, byte size, mtime, resize spec, format
 * version): a changed file or a different size gets a different key, and a stale entry is never
 * read. Entries are written to a temporary name and renamed. The cache is best effort: an entry
 * that cannot be read or written is simply decoded again.
 */
import { createHash } from "node:crypto"
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { RgbImage } from "./Image.js"

const VERSION = "stepwise-rgb-1"
const MAGIC = 0x53575247 // "SWRG"

export interface Key {
  readonly path: string
  readonly size: number
  readonly mtimeMs: number
  readonly resize: number | readonly [number, number] | undefined
}

/** The file an entry lives in. */
export const entryPath = (dir: string, key: Key): string =>
  join(
    dir,
    `${createHash("sha256")
      .update(JSON.stringify([VERSION, key.path, key.size, key.mtimeMs, key.resize ?? null]))
      .digest("hex")
      .slice(0, 40)}.rgb`
  )

/** The cached image, or undefined on a miss (or an unreadable/damaged entry). */
export const read = (dir: string, key: Key): RgbImage | undefined => {
  try {
    const bytes = readFileSync(entryPath(dir, key))
    if (bytes.length < 12 || bytes.readUInt32LE(0) !== MAGIC) return undefined
    const width = bytes.readUInt32LE(4)
    const height = bytes.readUInt32LE(8)
    if (bytes.length !== 12 + width * height * 3) return undefined
    return { width, height, data: new Uint8Array(bytes.buffer, bytes.byteOffset + 12, width * height * 3) }
  } catch {
    return undefined
  }
}

/** Stores an entry (temp file + rename, so readers never see half an entry). */
export const write = (dir: string, key: Key, img: RgbImage): void => {
  try {
    mkdirSync(dir, { recursive: true })
    const out = Buffer.alloc(12 + img.data.length)
    out.writeUInt32LE(MAGIC, 0)
    out.writeUInt32LE(img.width, 4)
    out.writeUInt32LE(img.height, 8)
    out.set(img.data, 12)
    const target = entryPath(dir, key)
    const temp = `${target}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
    writeFileSync(temp, out)
    renameSync(temp, target)
  } catch {
    // Best effort: a read-only or full disk only costs a decode next time.
  }
}
