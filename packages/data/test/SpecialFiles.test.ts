/**
 * Issue 10, items 6 and 7: what an adversarial folder holds. Special files (a FIFO, a link to
 * /dev/zero), link loops, oversized files and images whose header claims huge dimensions each
 * end in a typed error naming the file (or are skipped with `onError: "skip"`), never a hang or
 * an allocation the size of the claim.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { crc32, deflateSync } from "node:zlib"
import { NodeFileSystem } from "@effect/platform-node"
import { it } from "@effect/vitest"
import { DecodePool, Errors, Image, ImageFolder } from "@stepwise/data"
import { Effect, Either, Layer } from "effect"
import { describe, expect, it as vit } from "vitest"
import { tempDirs } from "./TempDir.js"

const tempRoot = tempDirs("stepwise-special-")
const live = Layer.merge(NodeFileSystem.layer, DecodePool.layer({ workers: 2 }))
const run = <A, E>(eff: Effect.Effect<A, E, any>) => Effect.provide(eff, live) as Effect.Effect<A, E>
const fixture = (file: string) => new URL(`./fixtures/images/${file}`, import.meta.url).pathname
const small = readFileSync(fixture("la20.png")) // 20x20 grey + alpha
const rgb = readFileSync(fixture("rgb37x53.png"))

/** A PNG whose IHDR claims `width` x `height` RGB pixels, with a few bytes of image data. */
const craftedPng = (width: number, height: number): Buffer => {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "latin1"), data])
    const out = Buffer.alloc(12 + data.length)
    out.writeUInt32BE(data.length, 0)
    body.copy(out, 4)
    out.writeUInt32BE(crc32(body), 8 + data.length)
    return out
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // RGB
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.alloc(1000))),
    chunk("IEND", Buffer.alloc(0))
  ])
}

/** Two classes with one good image each, plus whatever `extra` adds to class `a`. */
const folder = (extra: (classDir: string, root: string) => void) => {
  const root = tempRoot()
  mkdirSync(join(root, "a"))
  mkdirSync(join(root, "b"))
  writeFileSync(join(root, "a", "good.png"), small)
  writeFileSync(join(root, "b", "good.png"), small)
  extra(join(root, "a"), root)
  return root
}

const decodeOns: ReadonlyArray<ImageFolder.DecodeOn> = ["main", "workers"]

describe("special files (issue 10 item 6)", () => {
  for (const decodeOn of decodeOns) {
    it.effect(`a FIFO named x.png is refused without blocking (decodeOn ${decodeOn})`, () =>
      Effect.gen(function* () {
        const root = folder((a) => execFileSync("mkfifo", [join(a, "x.png")]))
        expect(statSync(join(root, "a", "x.png")).isFIFO()).toBe(true)
        const e = yield* Effect.flip(run(ImageFolder.loadImageFolder(root, { resize: 8, decodeOn })))
        expect(e).toBeInstanceOf(Errors.NotARegularFile)
        expect(e).toMatchObject({ path: join(root, "a", "x.png"), kind: "FIFO (named pipe)" })
        expect(e.message).toContain(join(root, "a", "x.png"))
        const skipped = yield* run(
          ImageFolder.loadImageFolder(root, { resize: 8, decodeOn, onError: "skip" })
        )
        expect(skipped.length).toBe(2)
      })
    )

    it.effect(`a link to /dev/zero named z.png is refused, nothing read (decodeOn ${decodeOn})`, () =>
      Effect.gen(function* () {
        const root = folder((a) => symlinkSync("/dev/zero", join(a, "z.png")))
        const e = yield* Effect.flip(run(ImageFolder.loadImageFolder(root, { resize: 8, decodeOn })))
        expect(e).toBeInstanceOf(Errors.NotARegularFile)
        expect(e).toMatchObject({ path: join(root, "a", "z.png"), kind: "character device" })
      })
    )

    it.effect(`a file above maxFileBytes is refused before it is read (decodeOn ${decodeOn})`, () =>
      Effect.gen(function* () {
        const root = folder((a) => writeFileSync(join(a, "big.png"), rgb))
        const limit = small.length + 1 // the good images pass, rgb37x53.png does not
        const e = yield* Effect.flip(
          run(ImageFolder.loadImageFolder(root, { resize: [8, 8], decodeOn, maxFileBytes: limit }))
        )
        expect(e).toBeInstanceOf(Errors.ImageFileTooLarge)
        expect(e).toMatchObject({ path: join(root, "a", "big.png"), size: rgb.length, limit })
        expect(e.message).toContain(`${rgb.length} bytes`)
        const ok = yield* run(ImageFolder.loadImageFolder(root, { resize: [8, 8], decodeOn }))
        expect(ok.length).toBe(3)
      })
    )
  }

  it.effect("Image.load (through FileSystem) refuses a FIFO and an oversized file too", () =>
    Effect.gen(function* () {
      const root = folder((a) => {
        execFileSync("mkfifo", [join(a, "x.png")])
        writeFileSync(join(a, "big.png"), rgb)
      })
      const fifo = yield* Effect.flip(run(Image.load(join(root, "a", "x.png"))))
      expect(fifo).toMatchObject({ _tag: "NotARegularFile", kind: "FIFO (named pipe)" })
      const big = yield* Effect.flip(
        run(
          Image.load(join(root, "a", "big.png"), { maxPixels: Image.DEFAULT_MAX_PIXELS, maxFileBytes: 100 })
        )
      )
      expect(big).toMatchObject({ _tag: "ImageFileTooLarge", size: rgb.length, limit: 100 })
      const blocking = Image.readFileBlocking(join(root, "a", "x.png"))
      expect(Either.isLeft(blocking) && blocking.left._tag).toBe("NotARegularFile")
    })
  )

  it.effect(
    "a directory link loop does not multiply images (not followed by default, nor twice when followed)",
    () =>
      Effect.gen(function* () {
        const root = folder((a, r) => {
          mkdirSync(join(a, "sub"))
          writeFileSync(join(a, "sub", "deep.png"), small)
          symlinkSync(a, join(a, "sub", "loop")) // a/sub/loop -> a
          symlinkSync(r, join(a, "up")) // a/up -> root
        })
        const listed = yield* run(ImageFolder.make(root))
        expect(listed.samples.map((s) => s.path.slice(root.length + 1))).toEqual([
          "a/good.png",
          "a/sub/deep.png",
          "b/good.png"
        ])
        const followed = yield* run(ImageFolder.make(root, { followLinks: true }))
        // Following links, a/up reaches root/b once (a new folder); every folder is listed once.
        expect(followed.samples.map((s) => s.path.slice(root.length + 1))).toEqual([
          "a/good.png",
          "a/sub/deep.png",
          "a/up/b/good.png",
          "b/good.png"
        ])
      })
  )

  // The README's figure for torchvision: make_dataset walks with os.walk(followlinks=True), which
  // lists a folder, descends into every entry that stats as a folder (through links), and ignores
  // a folder it cannot list. Python's os.walk gives 41 on Linux; this is the same walk in Node.
  vit.runIf(process.platform === "linux")(
    "os.walk(followlinks=True) lists an image 41 times through a link back to its folder (Linux: 40 links a path)",
    () => {
      const root = folder((a) => symlinkSync(a, join(a, "loop"))) // a/loop -> a
      const walk = (dir: string): number => {
        let names: Array<string>
        try {
          names = readdirSync(dir)
        } catch (e) {
          expect((e as { code?: string }).code).toBe("ELOOP")
          return 0
        }
        let found = 0
        for (const name of names) {
          const path = join(dir, name)
          let isDir = false
          try {
            isDir = statSync(path).isDirectory()
          } catch (e) {
            expect((e as { code?: string }).code).toBe("ELOOP")
          }
          if (isDir) found += walk(path)
          else if (name === "good.png") found++
        }
        return found
      }
      expect(walk(join(root, "a"))).toBe(41)
    }
  )

  it.effect("a link to a folder of images is skipped by default and listed with followLinks", () =>
    Effect.gen(function* () {
      const elsewhere = tempRoot()
      writeFileSync(join(elsewhere, "far.png"), small)
      const root = folder((a) => symlinkSync(elsewhere, join(a, "linked")))
      const plain = yield* run(ImageFolder.make(root))
      expect(plain.length).toBe(2)
      const followed = yield* run(ImageFolder.make(root, { followLinks: true }))
      expect(followed.samples.map((s) => s.path.slice(root.length + 1))).toEqual([
        "a/good.png",
        "a/linked/far.png",
        "b/good.png"
      ])
    })
  )

  it.effect("a link to a regular image file is a sample and is read, as in torchvision", () =>
    Effect.gen(function* () {
      const elsewhere = tempRoot()
      writeFileSync(join(elsewhere, "target.png"), rgb)
      const root = folder((a) => symlinkSync(join(elsewhere, "target.png"), join(a, "link.png")))
      const ds = yield* run(ImageFolder.loadImageFolder(root, { resize: [4, 4] }))
      expect(ds.length).toBe(3)
      const direct = yield* run(Image.load(fixture("rgb37x53.png")))
      const viaLink = yield* run(Image.load(join(root, "a", "link.png")))
      expect(Buffer.from(viaLink.data).equals(Buffer.from(direct.data))).toBe(true)
    })
  )
})

describe("pixel limits before allocation (issue 10 item 7)", () => {
  for (const decodeOn of decodeOns) {
    it.effect(
      `a PNG header claiming 20000x20000 fails at once naming file and size (decodeOn ${decodeOn})`,
      () =>
        Effect.gen(function* () {
          const root = folder((a) => writeFileSync(join(a, "huge.png"), craftedPng(20000, 20000)))
          const before = process.memoryUsage().rss
          const e = yield* Effect.flip(run(ImageFolder.loadImageFolder(root, { resize: 8, decodeOn })))
          expect(e).toBeInstanceOf(Errors.ImageTooLarge)
          expect(e).toMatchObject({
            path: join(root, "a", "huge.png"),
            width: 20000,
            height: 20000,
            limit: Image.DEFAULT_MAX_PIXELS
          })
          expect(e.message).toContain("20000x20000")
          // 20000 x 20000 x 3 bytes would be 1.2 GB; nothing near that was allocated.
          expect(process.memoryUsage().rss - before).toBeLessThan(200e6)
        })
    )

    it.effect(`maxPixels is configurable, for JS-decoded PNGs and for sharp (decodeOn ${decodeOn})`, () =>
      Effect.gen(function* () {
        // good.png is 20x20 = 400 pixels, under every limit below.
        const pngRoot = folder((a) => writeFileSync(join(a, "rgb.png"), rgb))
        const jpgRoot = folder((a) =>
          writeFileSync(join(a, "photo.jpg"), readFileSync(fixture("photo160x120.jpg")))
        )
        const load = (root: string, maxPixels: number) =>
          run(ImageFolder.loadImageFolder(root, { resize: [8, 8], decodeOn, maxPixels }))
        const png = yield* Effect.flip(load(pngRoot, 1000))
        expect(png).toMatchObject({
          _tag: "ImageTooLarge",
          path: join(pngRoot, "a", "rgb.png"),
          width: 37,
          height: 53,
          limit: 1000
        })
        const jpg = yield* Effect.flip(load(jpgRoot, 19199))
        expect(jpg).toMatchObject({
          _tag: "ImageTooLarge",
          path: join(jpgRoot, "a", "photo.jpg"),
          width: 160,
          height: 120,
          limit: 19199
        })
        expect((yield* load(pngRoot, 37 * 53)).length).toBe(3)
        expect((yield* load(jpgRoot, 160 * 120)).length).toBe(3)
      })
    )
  }

  it.effect("a PNG whose image data inflates far beyond its IHDR is refused, not inflated", () =>
    Effect.gen(function* () {
      // Claims 4x4 but carries 50 MB of zeros behind a ~50 KB deflate stream.
      const png = craftedPng(4, 4)
      const bomb = Buffer.concat([
        png.subarray(0, 33),
        idat(deflateSync(Buffer.alloc(50e6))),
        png.subarray(png.length - 12)
      ])
      const e = yield* Effect.flip(Image.decode("bomb.png", bomb))
      expect(e).toMatchObject({ _tag: "ImageDecodeError", path: "bomb.png" })
      expect(e.message).toMatch(/inflates beyond/)
    })
  )
})

const idat = (data: Buffer) => {
  const body = Buffer.concat([Buffer.from("IDAT", "latin1"), data])
  const out = Buffer.alloc(12 + data.length)
  out.writeUInt32BE(data.length, 0)
  body.copy(out, 4)
  out.writeUInt32BE(crc32(body), 8 + data.length)
  return out
}

describe("limits and pool sizes are checked, not silently disabled", () => {
  it.effect("a NaN or non-positive limit is InvalidArgument naming the option", () =>
    Effect.gen(function* () {
      const root = folder(() => {})
      for (const [options, field] of [
        [{ maxPixels: Number.NaN }, "maxPixels"],
        [{ maxFileBytes: 0 }, "maxFileBytes"],
        [{ concurrency: 1.5 }, "concurrency"]
      ] as const) {
        const e = yield* Effect.flip(run(ImageFolder.make(root, options)))
        expect(e).toMatchObject({ _tag: "InvalidArgument", field })
      }
      expect((yield* run(ImageFolder.make(root, { maxPixels: Number.POSITIVE_INFINITY }))).length).toBe(2)
    })
  )

  it.effect("a pool of 0, 1.5 or NaN workers is InvalidArgument", () =>
    Effect.gen(function* () {
      for (const workers of [0, 1.5, Number.NaN]) {
        const e = yield* Effect.flip(Effect.scoped(DecodePool.make({ workers })))
        expect(e).toMatchObject({ _tag: "InvalidArgument", field: "workers" })
      }
    })
  )
})
