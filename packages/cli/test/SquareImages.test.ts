import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeContext } from "@effect/platform-node"
import { Effect, Either } from "effect"
import sharp from "sharp"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { formatError } from "../src/Errors.js"
import * as SquareImages from "../src/SquareImages.js"

const root = mkdtempSync(join(tmpdir(), "stepwise-square-"))

beforeAll(async () => {
  // 300x200 photos, like a phone's, in two class folders
  for (const cls of ["paper", "rock"]) {
    mkdirSync(join(root, cls), { recursive: true })
    await sharp({ create: { width: 300, height: 200, channels: 3, background: "#808080" } })
      .png()
      .toFile(join(root, cls, "a.png"))
  }
})
afterAll(() => rmSync(root, { recursive: true, force: true }))

const check = (resize: SquareImages.Resize) =>
  Effect.runPromise(
    Effect.either(SquareImages.requireSquare(root, resize)).pipe(Effect.provide(NodeContext.layer))
  )

describe("square images for CNN2, judged before decoding", () => {
  it("the default resize 28 on 300x200 photos names the image, the sizes and --resize 28x28", async () => {
    const r = await check(28)
    expect(Either.isLeft(r)).toBe(true)
    if (Either.isLeft(r)) {
      expect(formatError(r.left)).toBe(
        `${join(root, "paper", "a.png")}: data.resize: this image is 300x200, so resize 28 makes it 42x28, ` +
          'but CNN2 needs square images: use --resize 28x28 (or data.resize: "28x28")'
      )
    }
  })

  it("a square resize passes, and so does a single number on square images", async () => {
    expect(Either.isRight(await check("28x28"))).toBe(true)
    expect(Either.isRight(await check([32, 32]))).toBe(true)
    expect(SquareImages.nonSquare("x.png", 300, 300, 28)).toBeUndefined()
    expect(SquareImages.nonSquare("x.png", 200, 300, "28")?.reason).toContain("makes it 28x42")
  })

  it("a JPEG's size is read too (by sharp, not the PNG header reader)", async () => {
    const jpegs = mkdtempSync(join(tmpdir(), "stepwise-square-jpeg-"))
    try {
      mkdirSync(join(jpegs, "rock"))
      await sharp({ create: { width: 200, height: 300, channels: 3, background: "#808080" } })
        .jpeg()
        .toFile(join(jpegs, "rock", "a.jpg"))
      const r = await Effect.runPromise(
        Effect.either(SquareImages.requireSquare(jpegs, 28)).pipe(Effect.provide(NodeContext.layer))
      )
      expect(Either.isLeft(r) && r.left._tag === "ConfigError" ? r.left.reason : "passed").toContain(
        "this image is 200x300, so resize 28 makes it 28x42"
      )
    } finally {
      rmSync(jpegs, { recursive: true, force: true })
    }
  })
})
