import { resolve as resolvePath } from "node:path"
import { NodeContext } from "@effect/platform-node"
import { Effect, Either, Option } from "effect"
import { describe, expect, it } from "vitest"
import * as Export from "../src/Export.js"
import * as Resolve from "../src/Resolve.js"
import { fixture, snapshotOf } from "./torchFixtures.js"

const same = (a: { data: ArrayBufferView }, b: { data: ArrayBufferView }) =>
  Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(
    Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength)
  )

describe("Export (in process, no engine)", () => {
  it.each(["cnn2", "bn"] as const)(
    "a self-describing %s checkpoint gives exactly PyTorch's state_dict and the run's metadata",
    async (name) => {
      const snapshot = snapshotOf(name, true)
      const run = await Effect.runPromise(Export.runOf(snapshot, "ckpt"))
      const file = Either.getOrThrow(Export.torchFile(snapshot, run, "ckpt"))
      const expected = fixture(`torch-${name}`).tensors
      expect(Object.keys(file.tensors).sort()).toEqual(Object.keys(expected).sort())
      for (const [k, t] of Object.entries(expected)) {
        expect(file.tensors[k].dtype, k).toBe(t.dtype)
        expect(file.tensors[k].shape, k).toEqual(t.shape)
        expect(same(file.tensors[k], t), k).toBe(true)
      }
      expect(file.metadata).toEqual({
        format: "pt",
        classes: '["paper","rock","scissors"]',
        mean: "[0.85,0.82,0.81]",
        std: "[0.21,0.25,0.27]",
        "stepwise.model": JSON.stringify(run.model),
        "stepwise.inputShape": "[3,28,28]"
      })
    }
  )

  it("a checkpoint without run metadata is an error naming the file", async () => {
    const r = await Effect.runPromise(
      Effect.either(Export.runOf(snapshotOf("cnn2", false), "old.safetensors"))
    )
    if (Either.isRight(r)) throw new Error("expected a RunFolderError")
    expect(r.left._tag).toBe("RunFolderError")
    expect(r.left.message).toMatch(
      /^old\.safetensors: no run info \(model, classes, normalizer\): saved without it/
    )
  })

  it("weights that do not fit the recorded model name the tensors", async () => {
    const snapshot = snapshotOf("cnn2", true)
    const bn = await Effect.runPromise(Export.runOf(snapshotOf("bn", true), "bn"))
    const r = Export.torchFile(snapshot, bn, "ckpt")
    if (Either.isRight(r)) throw new Error("expected a WeightMismatch")
    expect(r.left.message).toMatch(
      /^ckpt: weights do not match the model: missing 0\.weight, .*; unexpected conv1\.weight/
    )
  })
})

describe("initFrom in recipes", () => {
  const resolve = (initFrom: string) =>
    Effect.runPromise(
      Resolve.resolve({ config: Option.none(), initFrom: Option.some(initFrom) } as Resolve.RecipeFlags).pipe(
        Effect.provide(NodeContext.layer)
      )
    )

  it("--init-from sets the recipe's initFrom, as an absolute path (a run's config works from anywhere)", async () => {
    const { recipe, origin } = await resolve("weights/model.safetensors")
    expect(recipe.initFrom).toBe(resolvePath("weights/model.safetensors"))
    expect(origin.flags.get("initFrom")).toBe("--init-from")
  })

  it("a recipe without it has none", async () => {
    const r = await Effect.runPromise(
      Resolve.resolve({ config: Option.none() } as Resolve.RecipeFlags).pipe(
        Effect.provide(NodeContext.layer)
      )
    )
    expect(r.recipe.initFrom).toBeUndefined()
    expect(Object.keys(r.recipe)).not.toContain("initFrom")
  })
})
