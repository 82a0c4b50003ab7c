/**
 * An optional on-disk cache of decoded (and decode-time resized) images, so that a new process
 * (the next `stepwise train`) does not decode the same files again either.
 *
 * One small file per image, named by a hash of (path, byte size, mtime, resize spec, format
 * version): a changed file or a different size gets a different key, and a stale entry is never
 * read. The cache is best effort: an entry that cannot be read or written is decoded again.
 *
 * Writes follow `AtomicFile`'s discipline (temporary sibling named like its temps, renamed into
 * place, removed on failure) but stay synchronous and skip the fsync: they run inside the decode
 * path, once per image, where an async FileSystem round trip and an fsync would each cost more
 * than a 28x28 decode. Skipping fsync is safe because every entry carries a CRC-32 of its pixels:
 * an entry torn or zeroed by a crash fails the check and is decoded again, never read as pixels.
 */
import { createHash, randomUUID } from "node:crypto"
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { crc32 } from "node:zlib"
import { isTempName, TEMP_MARK } from "./AtomicFile.js"
import type { RgbImage } from "./Image.js"

const VERSION = "stepwise-rgb-2"
const HEADER = 16
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
    if (bytes.length < HEADER || bytes.readUInt32LE(0) !== MAGIC) return undefined
    const width = bytes.readUInt32LE(4)
    const height = bytes.readUInt32LE(8)
    if (bytes.length !== HEADER + width * height * 3) return undefined
    const data = new Uint8Array(bytes.buffer, bytes.byteOffset + HEADER, width * height * 3)
    return crc32(data) === bytes.readUInt32LE(12) ? { width, height, data } : undefined
  } catch {
    return undefined
  }
}

/** Stores an entry (temp file + rename, so readers never see half an entry). */
export const write = (dir: string, key: Key, img: RgbImage): void => {
  const target = entryPath(dir, key)
  const temp = `${target}${TEMP_MARK}${randomUUID()}`
  try {
    mkdirSync(dir, { recursive: true })
    const out = Buffer.alloc(HEADER + img.data.length)
    out.writeUInt32LE(MAGIC, 0)
    out.writeUInt32LE(img.width, 4)
    out.writeUInt32LE(img.height, 8)
    out.writeUInt32LE(crc32(img.data), 12)
    out.set(img.data, HEADER)
    writeFileSync(temp, out)
    renameSync(temp, target)
  } catch {
    // Best effort: a read-only or full disk only costs a decode next time.
    try {
      rmSync(temp, { force: true })
    } catch {
      // Nothing more to do: a stray temp is swept by `AtomicFile.removeStaleTemps`.
    }
  }
}

/**
 * Removes the temporary entries a hard kill left behind (a clean failure removes its own), and
 * returns how many. A temp of a process writing into the same cache right now may go too: its
 * rename then fails and it simply decodes that image again next time (best effort, as above).
 */
export const removeStaleTemps = (dir: string): number => {
  let removed = 0
  try {
    for (const name of readdirSync(dir)) {
      if (!isTempName(name)) continue
      rmSync(join(dir, name), { force: true })
      removed++
    }
  } catch {
    // No cache folder yet, or unreadable: nothing to sweep.
  }
  return removed
}
