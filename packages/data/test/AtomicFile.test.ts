import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { NodeContext } from "@effect/platform-node"
import { it } from "@effect/vitest"
import { AtomicFile } from "@stepwise/data"
import { Effect, Exit, Fiber } from "effect"
import { describe, expect } from "vitest"
import { tempDirs } from "./TempDir.js"

const tempDir = tempDirs("stepwise-atomic-")

describe("AtomicFile", () => {
  it.effect("write replaces the target whole and leaves no temp file", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const target = join(dir, "sub", "config.json")
      yield* AtomicFile.write(target, "first")
      yield* AtomicFile.write(target, new TextEncoder().encode("second"))
      expect(readFileSync(target, "utf8")).toBe("second")
      expect(readdirSync(join(dir, "sub"))).toEqual(["config.json"])
      // nothing to write (metrics truncated to no rows) makes an empty file
      yield* AtomicFile.write(target, "")
      expect(readFileSync(target, "utf8")).toBe("")
      yield* AtomicFile.append(join(dir, "sub", "log"), "")
      expect(readFileSync(join(dir, "sub", "log"), "utf8")).toBe("")
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.effect("a failed rename removes the temp file and keeps the old target", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      // A non-empty directory cannot be replaced by a file: the rename fails after the write.
      const target = join(dir, "occupied")
      mkdirSync(join(target, "inside"), { recursive: true })
      const exit = yield* Effect.exit(AtomicFile.write(target, "data"))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(readdirSync(dir)).toEqual(["occupied"])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.live("an interrupted write leaves no temp file", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const writing = yield* Effect.fork(AtomicFile.write(join(dir, "big.bin"), new Uint8Array(256 << 20)))
      // Interrupt once the temp file exists, i.e. in the middle of the write.
      while (readdirSync(dir).length === 0) yield* Effect.sleep("2 millis")
      expect(AtomicFile.isTempName(readdirSync(dir)[0])).toBe(true)
      const exit = yield* Fiber.interrupt(writing)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(readdirSync(dir)).toEqual([])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.effect("append adds to the end; removeStaleTemps removes only temp names", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const rows = join(dir, "metrics.jsonl")
      yield* AtomicFile.append(rows, '{"epoch":1}\n')
      yield* AtomicFile.append(rows, '{"epoch":2}\n')
      expect(readFileSync(rows, "utf8")).toBe('{"epoch":1}\n{"epoch":2}\n')
      const stale = `metrics.jsonl${AtomicFile.TEMP_MARK}0b0f3a52-6a4e-4a43-9d59-0f1d2e3c4b5a`
      writeFileSync(join(dir, stale), "half")
      writeFileSync(join(dir, "notes.tmp-keep"), "mine")
      expect(yield* AtomicFile.removeStaleTemps(dir)).toEqual([stale])
      expect(readdirSync(dir).sort()).toEqual(["metrics.jsonl", "notes.tmp-keep"])
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
