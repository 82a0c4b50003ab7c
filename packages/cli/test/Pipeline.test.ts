import { mkdirSync, mkdtempSync, utimesSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeContext } from "@effect/platform-node"
import { TensorDataset } from "@stepwise/data"
import { Effect, Either } from "effect"
import sharp from "sharp"
import { describe, expect, it } from "vitest"
import { repeatedFlag } from "../src/Main.js"
import * as Pipeline from "../src/Pipeline.js"
import * as Recipe from "../src/Recipe.js"

const run = <A, E>(effect: Effect.Effect<A, E, any>): Promise<Either.Either<A, E>> =>
  Effect.runPromise(
    Effect.either(effect).pipe(Effect.provide(NodeContext.layer)) as Effect.Effect<Either.Either<A, E>>
  )

const messageOf = <A, E>(e: Either.Either<A, E>) =>
  Either.isLeft(e) ? (e.left as { message: string }).message : "ok"

/** An ImageFolder of solid PNGs: { class: [width, height][] }. */
const folder = async (classes: Record<string, ReadonlyArray<readonly [number, number]>>) => {
  const root = mkdtempSync(join(tmpdir(), "stepwise-folder-"))
  for (const [name, sizes] of Object.entries(classes)) {
    mkdirSync(join(root, name))
    for (const [i, [width, height]] of sizes.entries()) {
      await sharp({ create: { width, height, channels: 3, background: { r: 200, g: 10 * i, b: 30 } } })
        .png()
        .toFile(join(root, name, `${i}.png`))
    }
  }
  return root
}

describe("classes are matched by name", () => {
  it("train and validation classes must agree; the error names what differs", async () => {
    expect(
      messageOf(await run(Pipeline.sameClasses("train", ["paper", "rock"], "val", ["paper", "rock"])))
    ).toBe("ok")
    expect(
      messageOf(
        await run(
          Pipeline.sameClasses("the training data t", ["paper", "rock", "scissors"], "v", ["paper", "rock"])
        )
      )
    ).toBe(
      "v: classes [paper, rock] do not match the training data t [paper, rock, scissors] (lacks scissors)"
    )
  })

  it("eval data with some of the model's classes is relabelled by name; an unknown class is an error", async () => {
    // a folder with only rock and scissors: its labels 0, 1 are the model's 1, 2
    const ds = Either.getOrThrow(
      TensorDataset.make({
        x: new Float32Array(3),
        y: Int32Array.from([0, 1, 1]),
        sampleShape: [1],
        classes: ["rock", "scissors"]
      })
    )
    const aligned = await run(Pipeline.alignClasses(ds, "d", ["paper", "rock", "scissors"], "the run"))
    expect(Either.isRight(aligned) && [...aligned.right.y]).toEqual([1, 2, 2])
    const four = { ...ds, classes: ["rock", "scissors", "lizard"] }
    expect(
      messageOf(await run(Pipeline.alignClasses(four, "d", ["paper", "rock", "scissors"], "the run")))
    ).toBe(
      "d: classes [rock, scissors, lizard] do not match the run [paper, rock, scissors] (lacks paper; has lizard that the run does not)"
    )
  })

  it("own training data without validation data is an error, never the bundled test set", async () => {
    const recipe = Effect.runSync(Recipe.decode({ data: { train: "/some/where" } }, "r.json"))
    expect(Pipeline.valRootOf(recipe)).toBeUndefined()
    expect(messageOf(await run(Pipeline.prepareData(recipe)))).toBe(
      "--data: own training data needs validation data of the same classes: pass --val DIR, or --val-split 0.2 to hold out a part of it"
    )
    const bundled = Effect.runSync(Recipe.decode({}, "r.json"))
    expect(Pipeline.valRootOf(bundled)).toMatch(/test/)
  })
})

describe("data checks before decoding", () => {
  it("the fingerprint changes when a file is added, resized or touched", async () => {
    const root = await folder({ a: [[4, 4]], b: [[4, 4]] })
    const fp = async () => {
      const r = await run(Pipeline.fingerprint({ trainRoot: root, valRoot: undefined }))
      return Either.getOrThrow(r)
    }
    const first = await fp()
    expect(await fp()).toBe(first)
    utimesSync(join(root, "a", "0.png"), new Date(2020, 1, 1), new Date(2020, 1, 1))
    const touched = await fp()
    expect(touched).not.toBe(first)
    writeFileSync(join(root, "b", "1.png"), "x")
    expect(await fp()).not.toBe(touched)
  })

  it("prepared data carries the fingerprint of the listings it decoded, the same as a fresh scan's", async () => {
    const train = await folder({
      a: [
        [4, 4],
        [4, 4]
      ],
      b: [[4, 4]]
    })
    const val = await folder({ a: [[4, 4]], b: [[4, 4]] })
    const recipe = Effect.runSync(
      Recipe.decode({ data: { train, val, resize: 4, normalize: false }, batchSize: 2 }, "r.json")
    )
    const data = Either.getOrThrow(await run(Pipeline.prepareData(recipe)))
    expect(data.train.length).toBe(3)
    const scanned = Either.getOrThrow(await run(Pipeline.fingerprint({ trainRoot: train, valRoot: val })))
    expect(Either.getOrThrow(await run(Pipeline.fingerprint(data)))).toBe(scanned)
    const trainOnly = Either.getOrThrow(
      await run(Pipeline.fingerprint({ trainRoot: train, valRoot: undefined }))
    )
    expect(scanned).not.toBe(trainOnly)
  })

  it("warmData fills a DataCache under the key a run then finds, its fingerprint a fresh scan's", async () => {
    const train = await folder({ a: [[4, 4]], b: [[4, 4]] })
    const val = await folder({ a: [[4, 4]], b: [[4, 4]] })
    const recipe = Effect.runSync(
      Recipe.decode({ data: { train, val, resize: 4, normalize: false }, batchSize: 2 }, "r.json")
    )
    const kept = new Map<string, Pipeline.Datasets>()
    let prepared = 0
    const cache = <E, R>(key: string, prepare: Effect.Effect<Pipeline.Datasets, E, R>) =>
      Effect.suspend(() => {
        const hit = kept.get(key)
        if (hit !== undefined) return Effect.succeed(hit)
        prepared += 1
        return Effect.tap(prepare, (d) => Effect.sync(() => kept.set(key, d)))
      })
    const warm = () => run(Effect.provideService(Pipeline.warmData(recipe), Pipeline.DataCache, cache))
    const first = Either.getOrThrow(await warm())
    const again = Either.getOrThrow(await warm())
    expect([prepared, kept.size]).toEqual([1, 1])
    expect(again).toBe(first)
    const scanned = Either.getOrThrow(await run(Pipeline.fingerprint({ trainRoot: train, valRoot: val })))
    expect(Either.getOrThrow(await run(Pipeline.fingerprint(first)))).toBe(scanned)
    expect(JSON.parse([...kept.keys()][0]).files).toBe(scanned)
  })

  it("images that resize to different sizes name --resize HxW, not a transform", async () => {
    const root = await folder({ a: [[20, 20]], b: [[30, 20]] })
    const m = messageOf(await run(Pipeline.loadFolder(root, 10)))
    expect(m).toMatch(/^--resize 10: .* comes out 10x15, other images 10x10 .*: pass --resize 10x10$/)
    expect(m).not.toMatch(/Resize to the transform/)
  })
})

describe("flags", () => {
  it("a flag given twice is named", () => {
    expect(repeatedFlag(["train", "--lr", "0.1", "--epochs", "2", "--lr=0.2"])).toBe("--lr")
    expect(repeatedFlag(["train", "--nesterov", "--no-nesterov"])).toBeUndefined()
  })
})

describe("model size limit", () => {
  it("CNN2's parameter count is the chapter's 6,823 for 5 filters on 28x28 images", () => {
    expect(Pipeline.cnn2Parameters(5, 28)).toBe(6823)
    // 100,000 filters: the 3x3 conv2 alone holds 9e10 weights, far past the limit.
    expect(Pipeline.cnn2Parameters(100_000, 28)).toBeGreaterThan(Pipeline.MAX_PARAMETERS)
    expect(Pipeline.cnn2Parameters(128, 28)).toBeLessThan(Pipeline.MAX_PARAMETERS)
  })
})
