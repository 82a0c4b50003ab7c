import { readFileSync } from "node:fs"
import { NodeFileSystem } from "@effect/platform-node"
import { it as eit } from "@effect/vitest"
import { type Errors, Image, Transforms } from "@stepwise/data"
import { Effect, Either } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"

const fixtures = JSON.parse(readFileSync(new URL("./fixtures/torchvision.json", import.meta.url), "utf8"))
const imagePath = (file: string) => new URL(`./fixtures/images/${file}`, import.meta.url).pathname
const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, "base64"))
const load = (file: string) => Effect.provide(Image.load(imagePath(file)), NodeFileSystem.layer)

const maxAbsDiff = (a: Uint8Array, b: Uint8Array) => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

describe("decoding matches PIL's open().convert('RGB')", () => {
  for (const c of fixtures.resize.filter((c: any) => c.inputRgb !== null)) {
    eit.effect(`${c.file}`, () =>
      Effect.gen(function* () {
        const img = yield* load(c.file)
        const expected = bytes(c.inputRgb)
        expect(img.data.length).toBe(expected.length)
        // JPEG decoders may differ by a level or so (IDCT rounding); lossless formats are exact.
        if (c.file.endsWith(".jpg")) expect(maxAbsDiff(img.data, expected)).toBeLessThanOrEqual(2)
        else expect(Buffer.from(img.data).equals(Buffer.from(expected))).toBe(true)
      })
    )
  }

  eit.effect("RGBA: alpha is dropped, not composited onto a background", () =>
    Effect.gen(function* () {
      const img = yield* load("rgba300.png")
      // A translucent corner pixel keeps its colour (compositing on white or black would change it).
      const raw = yield* Effect.promise(() =>
        import("sharp").then((m) => m.default(imagePath("rgba300.png")).raw().toBuffer())
      )
      expect(raw[3]).toBeLessThan(255)
      expect([img.data[0], img.data[1], img.data[2]]).toEqual([raw[0], raw[1], raw[2]])
    })
  )
})

describe("Resize is torchvision's (Pillow's antialiased bilinear), pixel for pixel", () => {
  for (const c of fixtures.resize) {
    it(`${c.file.split("/").pop()} Resize(${JSON.stringify(c.size)}) -> ${c.width}x${c.height}`, () => {
      const input = fixtures.resize.find((d: any) => d.file === c.file && d.inputRgb !== null)
      const inputRgb = bytes(input.inputRgb)
      // Input sizes of the fixture images (the file names say them; rock01 is a bundled 28x28).
      const dims = c.file.includes("rock01")
        ? [28, 28]
        : c.file === "rgba300.png"
          ? [300, 300]
          : c.file === "rgb37x53.png"
            ? [37, 53]
            : c.file === "gray64x40.png"
              ? [64, 40]
              : c.file === "la20.png"
                ? [20, 20]
                : [160, 120]
      expect(inputRgb.length).toBe(dims[0] * dims[1] * 3)
      const out = Either.getOrThrow(Transforms.Resize(c.size))(
        { width: dims[0], height: dims[1], data: inputRgb },
        Transforms.noContext
      )
      expect([out.width, out.height]).toEqual([c.width, c.height])
      expect(Buffer.from(out.data).equals(Buffer.from(bytes(c.rgb)))).toBe(true)
    })
  }

  it("Resize(28) of a 28x28 image is the identity", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 28 * 28 * 3, maxLength: 28 * 28 * 3 }), (data) => {
        const out = Either.getOrThrow(Transforms.Resize(28))(
          { width: 28, height: 28, data },
          Transforms.noContext
        )
        expect(Array.from(out.data)).toEqual(Array.from(data))
      }),
      { numRuns: 20 }
    )
  })

  it("keeps the aspect ratio for an int, truncating the long side like torchvision", () => {
    expect(Transforms.resizedSize(300, 300, 28)).toEqual([28, 28])
    expect(Transforms.resizedSize(37, 53, 28)).toEqual([28, 40]) // int(28 * 53 / 37) = 40
    expect(Transforms.resizedSize(64, 40, 28)).toEqual([44, 28]) // int(28 * 64 / 40) = 44
    expect(Transforms.resizedSize(64, 40, [10, 20])).toEqual([20, 10])
  })

  it("refuses sizes, probabilities, ranges and seeds it cannot honour with a typed InvalidArgument", () => {
    const invalid = (e: Either.Either<unknown, Errors.InvalidArgument>) =>
      Either.match(e, {
        onLeft: (err) => ({ tag: err._tag, field: err.field, value: err.value }),
        onRight: () => "accepted"
      })
    expect(invalid(Transforms.Resize(0))).toEqual({ tag: "InvalidArgument", field: "Resize size", value: 0 })
    expect(invalid(Transforms.Resize([28, 2.5]))).toEqual({
      tag: "InvalidArgument",
      field: "Resize size",
      value: 2.5
    })
    expect(invalid(Transforms.CenterCrop([10, -1]))).toEqual({
      tag: "InvalidArgument",
      field: "CenterCrop size",
      value: -1
    })
    expect(invalid(Transforms.RandomHorizontalFlip({ seed: 1, p: 1.5 }))).toEqual({
      tag: "InvalidArgument",
      field: "RandomHorizontalFlip p",
      value: 1.5
    })
    expect(invalid(Transforms.RandomHorizontalFlip({ seed: 0.5 }))).toEqual({
      tag: "InvalidArgument",
      field: "seed",
      value: 0.5
    })
    expect(invalid(Transforms.RandomResizedCrop({ seed: 1, size: 16, scale: [1, 0.08] }))).toEqual({
      tag: "InvalidArgument",
      field: "RandomResizedCrop scale",
      value: [1, 0.08]
    })
    expect(invalid(Transforms.Resize([28, 28]))).toBe("accepted")
  })

  it("a constant image stays constant at any size", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 0, max: 255 }),
        (w, h, size, v) => {
          const out = Either.getOrThrow(Transforms.Resize(size))(
            { width: w, height: h, data: new Uint8Array(w * h * 3).fill(v) },
            Transforms.noContext
          )
          expect(out.data.every((p) => p === v)).toBe(true)
        }
      ),
      { numRuns: 50 }
    )
  })
})

describe("CenterCrop, flips, ToTensor, Normalize", () => {
  for (const c of fixtures.centerCrop) {
    it(`CenterCrop(${JSON.stringify(c.size)}) matches torchvision`, () => {
      const input = bytes(fixtures.resize.find((d: any) => d.file === c.file && d.inputRgb !== null).inputRgb)
      const out = Either.getOrThrow(Transforms.CenterCrop(c.size))(
        { width: 37, height: 53, data: input },
        Transforms.noContext
      )
      expect([out.width, out.height]).toEqual([c.width, c.height])
      expect(Buffer.from(out.data).equals(Buffer.from(bytes(c.rgb)))).toBe(true)
    })
  }

  it("ToTensor gives torchvision's float32 CHW values on the first bundled image", () => {
    const expected = new Float32Array(bytes(fixtures.rps.firstImage).buffer)
    const file = new URL(`../assets/rps-28/${fixtures.rps.trainPaths[0]}`, import.meta.url).pathname
    return Effect.runPromise(
      Effect.gen(function* () {
        const img = yield* Image.load(file)
        const t = Transforms.Compose(Either.getOrThrow(Transforms.Resize(28)), Transforms.ToTensor())(
          img,
          Transforms.noContext
        )
        expect(t.shape).toEqual([3, 28, 28])
        expect(Array.from(t.data)).toEqual(Array.from(expected))
      }).pipe(Effect.provide(NodeFileSystem.layer))
    )
  })

  it("Normalize is (x - mean) / std in float32; bad parameters fail like the dataset path's", () => {
    const t = { shape: [2, 1, 2] as const, data: Float32Array.from([0, 1, 0.5, 0.25]) }
    const n = Either.getOrThrow(Transforms.Normalize({ mean: [0.5, 0.25], std: [0.5, 0.25] }, 2))(
      t,
      Transforms.noContext
    )
    expect(Array.from(n.data)).toEqual([-1, 1, 1, 0])
    // The same check (and so the same errors) as checkNormalize on a dataset.
    for (const [params, channels] of [
      [{ mean: [0], std: [1] }, 2],
      [{ mean: [0, 0], std: [1, 0] }, 2],
      [{ mean: [0, 0, 0], std: [1, -1, Number.NaN] }, 3]
    ] as const) {
      const left = Either.getLeft(Transforms.Normalize(params, channels))
      expect(left._tag).toBe("Some")
      expect(left).toEqual(Either.getLeft(Transforms.checkNormalize(params, channels)))
    }
    const zero = Transforms.Normalize({ mean: [0, 0], std: [1, 0] }, 2)
    expect(Either.isLeft(zero) && zero.left._tag === "InvalidNormalizer" && zero.left.channel).toBe(1)
    // Three channels by default (what ToTensor makes): two parameters are one short.
    const short = Transforms.Normalize({ mean: [0.5, 0.25], std: [0.5, 0.25] })
    expect(Either.isLeft(short) && short.left._tag).toBe("InvalidArgument")
  })

  it("RandomHorizontalFlip: reproducible per (seed, epoch, index), about half flipped, flip twice = identity", () => {
    const img = { width: 3, height: 1, data: Uint8Array.from([1, 1, 1, 2, 2, 2, 3, 3, 3]) }
    const flip = Either.getOrThrow(Transforms.RandomHorizontalFlip<typeof img>({ seed: 9 }))
    let flipped = 0
    for (let index = 0; index < 2000; index++) {
      const out = flip(img, { epoch: 1, index })
      expect(flip(img, { epoch: 1, index })).toEqual(out)
      if (out.data[0] === 3) flipped++
      else expect(out.data).toEqual(img.data)
    }
    expect(Math.abs(flipped / 2000 - 0.5)).toBeLessThan(0.05)
    const always = Either.getOrThrow(
      Transforms.RandomHorizontalFlip<Transforms.ImageTensor>({ seed: 1, p: 1 })
    )
    const t = { shape: [1, 2, 3] as const, data: Float32Array.from([1, 2, 3, 4, 5, 6]) }
    expect(Array.from(always(t, Transforms.noContext).data)).toEqual([3, 2, 1, 6, 5, 4])
    expect(always(always(t, Transforms.noContext), Transforms.noContext).data).toEqual(t.data)
  })

  it("RandomResizedCrop yields the requested size, differs across epochs, repeats within one", () => {
    const data = Uint8Array.from({ length: 40 * 30 * 3 }, (_, i) => (i * 7) % 256)
    const img = { width: 40, height: 30, data }
    const rrc = Either.getOrThrow(Transforms.RandomResizedCrop({ seed: 3, size: 16 }))
    const a = rrc(img, { epoch: 0, index: 5 })
    expect([a.width, a.height]).toEqual([16, 16])
    expect(rrc(img, { epoch: 0, index: 5 }).data).toEqual(a.data)
    expect(Buffer.from(rrc(img, { epoch: 1, index: 5 }).data).equals(Buffer.from(a.data))).toBe(false)
  })
})
