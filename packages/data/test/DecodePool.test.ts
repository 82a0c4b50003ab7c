import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { it } from "@effect/vitest"
import { DecodePool, Errors, Image, ImageFolder, Rps, Transforms } from "@stepwise/data"
import { Effect, Either, Exit, Layer, Scope } from "effect"
import { describe, expect } from "vitest"

const fixture = (file: string) => new URL(`./fixtures/images/${file}`, import.meta.url).pathname

const live = Layer.merge(NodeFileSystem.layer, DecodePool.layer({ workers: 2 }))

describe("DecodePool: decoding + Resize on worker threads", () => {
  it.effect("a scoped resource: threads start on first use and are terminated when the scope closes", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const pool = yield* Scope.extend(DecodePool.make({ workers: 2 }), scope)
      expect(pool.workers).toBe(2)
      expect(yield* pool.running).toBe(0)
      const img = yield* pool.decode(fixture("rgb37x53.png"), 28)
      expect([img.width, img.height]).toEqual([28, 40])
      expect(yield* pool.running).toBe(2)
      yield* Scope.close(scope, Exit.void)
      expect(yield* pool.running).toBe(0)
      const e = yield* Effect.flip(pool.decode(fixture("rgb37x53.png"), 28))
      expect(e._tag).toBe("ImageDecodeError")
      expect(e.message).toMatch(/scope is closed/)
    })
  )

  const cases: ReadonlyArray<[string, number | readonly [number, number] | undefined]> = [
    ["rgba300.png", 28],
    ["rgba300.png", [20, 33]],
    ["rgb37x53.png", 90],
    ["gray64x40.png", 28],
    ["la20.png", undefined],
    ["photo160x120.jpg", 28]
  ]
  for (const [file, size] of cases) {
    it.effect(`${file} Resize(${JSON.stringify(size)}) equals Image.load + Resize on the main thread`, () =>
      Effect.gen(function* () {
        const onWorker = yield* DecodePool.decode(fixture(file), size).pipe(Effect.provide(live))
        const decoded = yield* Image.load(fixture(file))
        const onMain =
          size === undefined
            ? decoded
            : Either.getOrThrow(Transforms.Resize(size))(decoded, Transforms.noContext)
        expect([onWorker.width, onWorker.height]).toEqual([onMain.width, onMain.height])
        expect(Buffer.from(onWorker.data).equals(Buffer.from(onMain.data))).toBe(true)
      }).pipe(Effect.provide(NodeFileSystem.layer))
    )
  }

  it.effect("bad files become ImageDecodeError naming the path", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "stepwise-pool-"))
      const empty = join(dir, "empty.png")
      const fake = join(dir, "fake.png")
      writeFileSync(empty, "")
      writeFileSync(fake, "not a png")
      const flip = (p: string) =>
        Effect.flip(DecodePool.decode(p, 28)).pipe(
          Effect.map((e) => (e instanceof Errors.ImageDecodeError ? e : undefined)),
          Effect.provide(live)
        )
      const e1 = yield* flip(empty)
      const e2 = yield* flip(fake)
      const e3 = yield* flip(join(dir, "missing.png"))
      rmSync(dir, { recursive: true, force: true })
      expect(e1).toBeInstanceOf(Errors.ImageDecodeError)
      expect([e1?.path, e1?.reason]).toEqual([empty, "empty file (0 bytes)"])
      expect(e2?.path).toBe(fake)
      expect(e2?.reason).toMatch(/unsupported image format/)
      expect(e3?.path).toBe(join(dir, "missing.png"))
    })
  )

  it.effect("the bundled test set decodes to the same dataset on workers and on the main thread", () =>
    Effect.gen(function* () {
      const a = yield* ImageFolder.loadImageFolder(Rps.bundled().test, { resize: 28, decodeOn: "workers" })
      const b = yield* ImageFolder.loadImageFolder(Rps.bundled().test, { resize: 28, decodeOn: "main" })
      expect(a.length).toBe(372)
      expect(a.y).toEqual(b.y)
      expect(Buffer.from(a.x.buffer).equals(Buffer.from(b.x.buffer))).toBe(true)
    }).pipe(Effect.provide(live))
  )
})
