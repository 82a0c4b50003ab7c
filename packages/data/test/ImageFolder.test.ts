import { mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { it } from "@effect/vitest"
import { DataLoader, DecodePool, Errors, Image, ImageFolder, Transforms } from "@stepwise/data"
import { Chunk, Effect, Either, Layer, Logger, Stream } from "effect"
import sharp from "sharp"
import { describe, expect } from "vitest"
import { tempDirs } from "./TempDir.js"

const tempRoot = tempDirs("stepwise-data-")

/** A real PNG whose every pixel is (v, 255 - v, 7), optionally RGBA with alpha 100. */
const png = async (path: string, w: number, h: number, v: number, alpha = false) => {
  const channels = alpha ? 4 : 3
  const raw = Buffer.alloc(w * h * channels)
  for (let i = 0; i < w * h; i++) {
    raw[i * channels] = v
    raw[i * channels + 1] = 255 - v
    raw[i * channels + 2] = 7
    if (alpha) raw[i * channels + 3] = 100
  }
  mkdirSync(join(path, ".."), { recursive: true })
  writeFileSync(
    path,
    await sharp(raw, { raw: { width: w, height: h, channels } })
      .png()
      .toBuffer()
  )
}

const live = Layer.merge(NodeFileSystem.layer, DecodePool.layer({ workers: 2 }))
const run = <A, E>(eff: Effect.Effect<A, E, any>) => Effect.provide(eff, live) as Effect.Effect<A, E>
const errorOf = <A, E>(eff: Effect.Effect<A, E, any>) => Effect.flip(run(eff))

describe("ImageFolder listing (torchvision's rules)", () => {
  it.effect("sorted classes, recursive sorted walk, case-insensitive extensions, isValidFile", () =>
    Effect.gen(function* () {
      const root = tempRoot()
      yield* Effect.promise(async () => {
        await png(join(root, "b", "z.PNG"), 4, 4, 10)
        await png(join(root, "b", "a.png"), 4, 4, 20)
        await png(join(root, "b", "sub", "m.jpeg.png"), 4, 4, 30)
        await png(join(root, "a", "x.png"), 4, 4, 40)
        writeFileSync(join(root, "a", "notes.txt"), "not a sample")
        writeFileSync(join(root, "stray.png"), "files at the root are not samples")
      })
      const folder = yield* run(ImageFolder.make(root))
      expect(folder.classes).toEqual(["a", "b"])
      expect(folder.samples.map((s) => [s.path.slice(root.length + 1), s.label])).toEqual([
        ["a/x.png", 0],
        ["b/a.png", 1],
        ["b/z.PNG", 1],
        ["b/sub/m.jpeg.png", 1]
      ])
      const onlyA = yield* run(
        ImageFolder.make(root, { isValidFile: (p) => p.endsWith(".png") || p.endsWith(".txt") })
      )
      expect(onlyA.samples.map((s) => s.path.slice(root.length + 1))).toEqual([
        "a/notes.txt",
        "a/x.png",
        "b/a.png",
        "b/sub/m.jpeg.png"
      ])
    })
  )

  it.effect("stream decodes concurrently but keeps order; targetTransform and transform apply", () =>
    Effect.gen(function* () {
      const root = tempRoot()
      yield* Effect.promise(async () => {
        for (let i = 0; i < 12; i++)
          await png(
            join(root, i % 2 ? "odd" : "even", `${String(i).padStart(2, "0")}.png`),
            3,
            2,
            i * 10,
            i % 3 === 0
          )
      })
      const folder = yield* run(
        ImageFolder.make(root, {
          transform: Transforms.ToTensor(),
          targetTransform: (l) => 10 + l,
          concurrency: 5
        })
      )
      const samples = Chunk.toArray(yield* run(Stream.runCollect(folder.stream)))
      expect(samples.map((s) => s.index)).toEqual(Array.from({ length: 12 }, (_, i) => i))
      expect(samples.map((s) => s.label)).toEqual([...Array(6).fill(10), ...Array(6).fill(11)])
      // even/00.png: R = 0, G = 255, B = 7 over a 3x2 image, CHW in [0, 1].
      expect(samples[0].value.shape).toEqual([3, 2, 3])
      expect(Array.from(samples[0].value.data.slice(0, 6))).toEqual(Array(6).fill(0))
      expect(samples[0].value.data[6]).toBe(1)
      expect(samples[0].value.data[12]).toBe(Math.fround(7 / 255))
      // RGBA files (i % 3 == 0) keep their colour: alpha dropped, not composited.
      const six = samples.find((s) => s.path.endsWith("06.png"))!
      expect(six.value.data[0]).toBe(Math.fround(60 / 255))
    })
  )
})

describe("bad input: typed errors naming the path", () => {
  it.effect("a missing root, and a root that is a file", () =>
    Effect.gen(function* () {
      const root = join(tempRoot(), "nope")
      const e = yield* errorOf(ImageFolder.make(root))
      expect(e).toBeInstanceOf(Errors.ImageFolderNotFound)
      expect(e.message).toContain(root)
      const file = join(tempRoot(), "file.png")
      writeFileSync(file, "x")
      const e2 = yield* errorOf(ImageFolder.make(file))
      expect(e2._tag).toBe("ImageFolderNotFound")
      expect(e2.message).toBe(`ImageFolder: root ${file} is not a folder`)
    })
  )

  it.effect("a root with no class folders", () =>
    Effect.gen(function* () {
      const root = tempRoot()
      yield* Effect.promise(() => png(join(root, "loose.png"), 2, 2, 1))
      const e = yield* errorOf(ImageFolder.make(root))
      expect(e).toBeInstanceOf(Errors.NoClassFolders)
      expect((e as Errors.NoClassFolders).root).toBe(root)
    })
  )

  it.effect("an empty class folder (or one with no image files)", () =>
    Effect.gen(function* () {
      const root = tempRoot()
      yield* Effect.promise(() => png(join(root, "cat", "1.png"), 2, 2, 1))
      mkdirSync(join(root, "dog"))
      writeFileSync(join(root, "dog", "readme.md"), "no images here")
      const e = yield* errorOf(ImageFolder.make(root))
      expect(e).toBeInstanceOf(Errors.EmptyClassFolder)
      expect((e as Errors.EmptyClassFolder).path).toBe(join(root, "dog"))
      expect(e.message).toContain('class "dog"')
    })
  )

  const badFiles: ReadonlyArray<[string, string, (p: string) => void, RegExp]> = [
    ["a zero-byte image", "empty.png", (p) => writeFileSync(p, ""), /empty file \(0 bytes\)/],
    [
      "a truncated image",
      "cut.png",
      (p) =>
        writeFileSync(
          p,
          readFileSync(new URL("./fixtures/images/rgba300.png", import.meta.url)).subarray(0, 300)
        ),
      /./
    ],
    [
      "a text file with an image extension",
      "fake.jpg",
      (p) => writeFileSync(p, "hello, I am not a JPEG"),
      /unsupported image format/
    ]
  ]
  for (const [what, name, write, reason] of badFiles) {
    it.effect(`${what}: fails naming the file, or is skipped with a warning listing it`, () =>
      Effect.gen(function* () {
        const root = tempRoot()
        yield* Effect.promise(async () => {
          await png(join(root, "a", "good1.png"), 5, 5, 50)
          await png(join(root, "b", "good2.png"), 5, 5, 60)
        })
        write(join(root, "a", name))
        const e = yield* errorOf(ImageFolder.loadImageFolder(root, { resize: 4 }))
        expect(e).toBeInstanceOf(Errors.ImageDecodeError)
        const de = e as Errors.ImageDecodeError
        expect(de.path).toBe(join(root, "a", name))
        expect(de.reason).toMatch(reason)
        expect(de.message).toContain(join(root, "a", name))

        const logs: Array<string> = []
        const logger = Logger.make(({ message }) => {
          logs.push(String(message))
        })
        const ds = yield* run(ImageFolder.loadImageFolder(root, { resize: 4, onError: "skip" })).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger))
        )
        expect(ds.length).toBe(2)
        expect(Array.from(ds.y)).toEqual([0, 1])
        expect(ds.sampleShape).toEqual([3, 4, 4])
        expect(logs.length).toBe(1)
        expect(logs[0]).toContain("skipped 1 unreadable image")
        expect(logs[0]).toContain(join(root, "a", name))
      })
    )
  }

  it.effect("images of different sizes reaching a batch without a Resize", () =>
    Effect.gen(function* () {
      const root = tempRoot()
      yield* Effect.promise(async () => {
        await png(join(root, "a", "1.png"), 6, 6, 1)
        await png(join(root, "a", "2.png"), 6, 6, 2)
        await png(join(root, "b", "3.png"), 8, 6, 3)
      })
      const e = yield* errorOf(ImageFolder.loadImageFolder(root))
      expect(e).toBeInstanceOf(Errors.SampleShapeMismatch)
      expect((e as Errors.SampleShapeMismatch).path).toBe(join(root, "b", "3.png"))
      expect(e.message).toContain("[3, 6, 8]")
      // Through a loader too, and fine once resized to a pair.
      const folder = yield* run(ImageFolder.make(root, { transform: Transforms.ToTensor() }))
      const loader = yield* ImageFolder.loader(folder, { batchSize: 3 })
      const e2 = yield* errorOf(DataLoader.collect(loader))
      expect(e2._tag).toBe("SampleShapeMismatch")
      const ok = yield* run(ImageFolder.loadImageFolder(root, { resize: [4, 4] }))
      expect(ok.sampleShape).toEqual([3, 4, 4])
    })
  )
})

describe("decode once: the cached loader", () => {
  it.effect("epochs after the first decode nothing; augmentation still changes per epoch", () =>
    Effect.gen(function* () {
      const root = tempRoot()
      yield* Effect.promise(async () => {
        for (let i = 0; i < 10; i++) await png(join(root, i < 5 ? "l" : "r", `${i}.png`), 6, 4, i * 20)
      })
      let decodes = 0
      const counting = (path: string) =>
        Effect.tap(Image.load(path), () =>
          Effect.sync(() => {
            decodes++
          })
        )
      const folder = yield* run(
        ImageFolder.make(root, {
          loader: counting,
          transform: Transforms.Compose(Either.getOrThrow(Transforms.Resize([4, 4])), Transforms.ToTensor())
        })
      )
      const loader = yield* ImageFolder.loader(folder, {
        batchSize: 4,
        shuffle: true,
        seed: 3,
        augment: Either.getOrThrow(Transforms.RandomHorizontalFlip<Transforms.ImageTensor>({ seed: 8 }))
      })
      expect(loader.numBatches).toBe(3)
      const e0 = yield* run(DataLoader.collect(loader, 0))
      expect(decodes).toBe(10)
      const e1 = yield* run(DataLoader.collect(loader, 1))
      const e0again = yield* run(DataLoader.collect(loader, 0))
      expect(decodes).toBe(10)
      expect(e0.map((b) => b.shape)).toEqual([
        [4, 3, 4, 4],
        [4, 3, 4, 4],
        [2, 3, 4, 4]
      ])
      expect(e0again).toEqual(e0)
      expect(e1).not.toEqual(e0)
      // The same samples each epoch: labels are a permutation of five 0s and five 1s.
      expect(e1.flatMap((b) => Array.from(b.y)).sort()).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
      const dropLast = yield* ImageFolder.loader(folder, { batchSize: 4, dropLast: true })
      expect((yield* run(DataLoader.collect(dropLast))).length).toBe(2)
      // The images are one colour each, so a flip changes nothing and e1 differs by the shuffle
      // alone: here, unshuffled, an augment that adds the epoch shows it runs per epoch on the
      // cached values (which it does not alter) while nothing is decoded again.
      const shifted = yield* ImageFolder.loader(folder, {
        batchSize: 4,
        augment: (t: Transforms.ImageTensor, { epoch }) => ({
          shape: t.shape,
          data: t.data.map((v) => v + epoch)
        })
      })
      const before = decodes
      const s0 = yield* run(DataLoader.collect(shifted, 0))
      expect(decodes).toBe(before + 10)
      const s2 = yield* run(DataLoader.collect(shifted, 2))
      expect(decodes).toBe(before + 10)
      expect(s2.map((b) => Array.from(b.x))).toEqual(
        s0.map((b) => Array.from(b.x, (v) => Math.fround(v + 2)))
      )
      expect(yield* run(DataLoader.collect(shifted, 0))).toEqual(s0)
    })
  )

  it.effect(
    "onError skip: the loader drops a bad file from its batch and warns once; the stream skips it",
    () =>
      Effect.gen(function* () {
        const root = tempRoot()
        yield* Effect.promise(async () => {
          for (let i = 0; i < 6; i++) await png(join(root, i < 3 ? "l" : "r", `${i}.png`), 4, 4, i * 30)
        })
        writeFileSync(join(root, "r", "broken.png"), "garbage")
        const logs: Array<string> = []
        const logger = Logger.make(({ message }) => {
          logs.push(String(message))
        })
        const folder = yield* run(
          ImageFolder.make(root, { transform: Transforms.ToTensor(), onError: "skip" })
        )
        expect(folder.length).toBe(7)
        const loader = yield* ImageFolder.loader(folder, { batchSize: 4 })
        const e0 = yield* run(DataLoader.collect(loader, 0)).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger))
        )
        const e1 = yield* run(DataLoader.collect(loader, 1)).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger))
        )
        expect(e0.map((b) => b.shape[0])).toEqual([4, 2])
        expect(e1).toEqual(e0)
        expect(logs.filter((l) => l.includes("broken.png")).length).toBe(1)
        const streamed = Chunk.toArray(
          yield* run(Stream.runCollect(folder.stream)).pipe(
            Effect.provide(Logger.replace(Logger.defaultLogger, logger))
          )
        )
        expect(streamed.map((s) => s.path.slice(root.length + 1))).toEqual([
          "l/0.png",
          "l/1.png",
          "l/2.png",
          "r/3.png",
          "r/4.png",
          "r/5.png"
        ])
      })
  )

  it.effect(
    "the on-disk cache: a new process reads entries instead of decoding; a changed file is decoded again",
    () =>
      Effect.gen(function* () {
        const root = tempRoot()
        const cache = join(tempRoot(), "cache")
        yield* Effect.promise(async () => {
          for (let i = 0; i < 6; i++)
            await png(join(root, i < 3 ? "l" : "r", `${i}.png`), 30, 20, i * 30, i === 0)
        })
        const fresh = yield* run(ImageFolder.loadImageFolder(root, { resize: 8 }))
        const first = yield* run(ImageFolder.loadImageFolder(root, { resize: 8, diskCache: cache }))
        expect(readdirSync(cache).filter((f) => f.endsWith(".rgb")).length).toBe(6)
        expect(readdirSync(cache).some((f) => f.includes(".tmp"))).toBe(false)
        expect(first.x).toEqual(fresh.x)
        // All hits: a loader that would fail is never called.
        const decoded: Array<string> = []
        const refusing = (path: string) =>
          Effect.suspend(() => {
            decoded.push(path)
            return Image.load(path)
          })
        const options = {
          resize: 8,
          diskCache: cache,
          transform: Transforms.ToTensor(),
          loader: refusing
        } as const
        const again = yield* run(Effect.flatMap(ImageFolder.make(root, options), ImageFolder.toTensorDataset))
        expect(decoded).toEqual([])
        expect(again.x).toEqual(fresh.x)
        // Another resize is another key; a touched file is another key.
        utimesSync(join(root, "r", "4.png"), new Date(), new Date(Date.now() + 5000))
        const touched = yield* run(
          Effect.flatMap(ImageFolder.make(root, options), ImageFolder.toTensorDataset)
        )
        expect(decoded).toEqual([join(root, "r", "4.png")])
        expect(touched.x).toEqual(fresh.x)
        yield* run(
          Effect.flatMap(ImageFolder.make(root, { ...options, resize: 4 }), ImageFolder.toTensorDataset)
        )
        expect(decoded.length).toBe(7)
      })
  )
})
