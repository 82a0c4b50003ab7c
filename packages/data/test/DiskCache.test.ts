import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { DiskCache } from "@stepwise/data"
import { describe, expect, it } from "vitest"
import { tempDirs } from "./TempDir.js"

const tempDir = tempDirs("stepwise-cache-")
const key: DiskCache.Key = { path: "/data/a/1.png", size: 123, mtimeMs: 456, resize: 28 }
const img = { width: 2, height: 1, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) }

describe("DiskCache entries", () => {
  it("round-trip, and leave no temporary file behind", () => {
    const dir = tempDir()
    DiskCache.write(dir, key, img)
    expect(DiskCache.read(dir, key)).toEqual(img)
    expect(readdirSync(dir)).toEqual([DiskCache.entryPath(dir, key).slice(dir.length + 1)])
    expect(DiskCache.read(dir, { ...key, mtimeMs: 457 })).toBeUndefined()
  })

  it("an entry damaged on disk (same length, one pixel changed) is a miss, never wrong pixels", () => {
    const dir = tempDir()
    DiskCache.write(dir, key, img)
    const file = DiskCache.entryPath(dir, key)
    const bytes = readFileSync(file)
    bytes[bytes.length - 1] ^= 0xff
    writeFileSync(file, bytes)
    expect(DiskCache.read(dir, key)).toBeUndefined()
    writeFileSync(file, Buffer.alloc(bytes.length)) // zeroed by a crash before the data reached disk
    expect(DiskCache.read(dir, key)).toBeUndefined()
  })

  it("removeStaleTemps sweeps what a killed writer left, and only that", () => {
    const dir = tempDir()
    DiskCache.write(dir, key, img)
    const entry = DiskCache.entryPath(dir, key)
    const stale = `${entry}.tmp-0b7e1a9c-3f5d-4c8e-9a2b-1d2e3f4a5b6c`
    writeFileSync(stale, "half an entry")
    writeFileSync(join(dir, "notes.txt"), "not ours")
    expect(DiskCache.removeStaleTemps(dir)).toBe(1)
    expect(readdirSync(dir).sort()).toEqual([entry.slice(dir.length + 1), "notes.txt"].sort())
    expect(DiskCache.read(dir, key)).toEqual(img)
    expect(DiskCache.removeStaleTemps(join(dir, "missing"))).toBe(0)
  })

  it("a write that fails leaves nothing behind and throws nothing", () => {
    const dir = tempDir()
    writeFileSync(join(dir, "blocker"), "a file where the cache folder should be")
    expect(() => DiskCache.write(join(dir, "blocker"), key, img)).not.toThrow()
    expect(readdirSync(dir)).toEqual(["blocker"])
  })
})
