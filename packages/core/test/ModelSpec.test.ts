import { readFileSync } from "node:fs"
import { Random } from "@stepwise/data"
import * as tf from "@tensorflow/tfjs-core"
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import * as Cnn2 from "../src/Cnn2.js"
import * as Loss from "../src/Loss.js"
import * as ModelSpec from "../src/ModelSpec.js"
import * as Module from "../src/Module.js"
import * as F from "./fixtures.js"
import { images } from "./fixtures.js"

const errorOf = (u: unknown, shape: ReadonlyArray<number> = [3, 28, 28]) => {
  const r = ModelSpec.make(u, shape)
  if (Either.isRight(r)) throw new Error("expected a ModelSpecError")
  expect(r.left._tag).toBe("ModelSpecError")
  return {
    path: r.left.path,
    layer: r.left.layer,
    field: r.left.field,
    reason: r.left.reason,
    message: r.left.message
  }
}

const builtOf = (u: unknown, shape: ReadonlyArray<number> = [3, 28, 28]) => {
  const r = ModelSpec.make(u, shape)
  if (Either.isLeft(r)) throw new Error(r.left.message)
  return r.right
}

describe("ModelSpec: a bad spec fails before any data, naming the layer and the field", () => {
  it("an unknown layer type", () => {
    const e = errorOf({
      layers: [
        { type: "Conv2d", outChannels: 4, kernelSize: 3 },
        { type: "Conv3d", name: "c3" }
      ]
    })
    expect(e).toMatchObject({ path: "layers[1]", layer: "c3: Conv3d", field: "type" })
    expect(e.reason).toContain('actual "Conv3d"')
    expect(e.message).toMatch(/^model\.layers\[1\] \(c3: Conv3d\): type: Expected "Conv2d" \| "Linear"/)
  })

  it("a misspelt field, a bad value, a missing field (nested layers named by their path)", () => {
    expect(errorOf({ layers: [{ type: "Conv2d", outChannels: 4, kernel_size: 3 }] })).toMatchObject({
      path: "layers[0]",
      layer: "0: Conv2d",
      field: "kernel_size"
    })
    expect(errorOf({ layers: [{ type: "Dropout", p: 1.5 }] })).toMatchObject({
      field: "p",
      path: "layers[0]"
    })
    expect(
      errorOf({
        layers: [
          { type: "Sequential", name: "block", layers: [{ type: "ReLU" }, { type: "Linear", name: "fc" }] }
        ]
      })
    ).toMatchObject({
      path: "layers[0].layers[1]",
      layer: "fc: Linear",
      field: "outFeatures",
      reason: "is missing"
    })
    expect(errorOf({ layers: "conv" })).toMatchObject({ path: "", field: "layers" })
    expect(errorOf({ preset: "CNN3", nFilters: 5 })).toMatchObject({ path: "", field: "preset" })
    expect(errorOf({ preset: "CNN2", nFilters: 0 })).toMatchObject({ path: "", field: "nFilters" })
  })

  it("shapes that do not fit: given sizes checked, kernels larger than the input, a Linear on a map", () => {
    expect(
      errorOf({ layers: [{ type: "Conv2d", inChannels: 1, outChannels: 4, kernelSize: 3 }] })
    ).toMatchObject({
      path: "layers[0]",
      field: "inChannels",
      reason: "1 given, but the input has 3"
    })
    expect(
      errorOf({
        layers: [
          { type: "Conv2d", name: "conv1", outChannels: 4, kernelSize: 3 },
          { type: "MaxPool2d", kernelSize: 2 },
          { type: "Conv2d", name: "conv2", outChannels: 4, kernelSize: 20 }
        ]
      })
    ).toMatchObject({ path: "layers[2]", layer: "conv2: Conv2d", field: "kernelSize" })
    expect(errorOf({ layers: [{ type: "ReLU" }, { type: "Linear", outFeatures: 3 }] })).toMatchObject({
      path: "layers[1]",
      field: "type",
      reason: "Linear expects a [features] input, got [3, 28, 28] (add a Flatten before it)"
    })
    expect(
      errorOf({ layers: [{ type: "Flatten" }, { type: "Linear", inFeatures: 100, outFeatures: 3 }] })
    ).toMatchObject({ field: "inFeatures", reason: "100 given, but the input has 2352" })
    expect(
      errorOf({ layers: [{ type: "Conv2d", outChannels: 2, kernelSize: 3, stride: 2, padding: "same" }] })
    ).toMatchObject({ field: "padding", reason: "padding='same' is not supported for strided convolutions" })
    expect(errorOf({ layers: [{ type: "MaxPool2d", kernelSize: 2, padding: 2 }] })).toMatchObject({
      field: "padding"
    })
    expect(errorOf({ layers: [{ type: "BatchNorm2d", numFeatures: 4 }] })).toMatchObject({
      field: "numFeatures"
    })
    expect(errorOf({ layers: [{ type: "Flatten" }, { type: "BatchNorm2d" }] })).toMatchObject({
      path: "layers[1]",
      field: "type"
    })
    expect(
      errorOf({
        layers: [
          { type: "ReLU", name: "a" },
          { type: "Tanh", name: "a" }
        ]
      })
    ).toMatchObject({
      path: "layers[1]",
      field: "name",
      reason: "'a' is used twice"
    })
  })
})

describe("ModelSpec: shapes inferred from the input", () => {
  it("the CNN2 preset: inFeatures 125 inferred, 6,823 parameters, the summary", () => {
    const built = builtOf({ preset: "CNN2", nFilters: 5, p: 0.3 })
    expect(built.outputShape).toEqual([3])
    const fc1 = built.layers.find((l) => l.name === "fc1")!
    expect(fc1.parameters).toBe(125 * 50 + 50)
    expect(ModelSpec.summary(built, 16)).toBe(
      [
        "==================================================",
        "Layer (type)             Output Shape      Param #",
        "==================================================",
        "(unnamed) (Sequential)   [16, 125]              --",
        "  conv1 (Conv2d)         [16, 5, 26, 26]       140",
        "  relu1 (ReLU)           [16, 5, 26, 26]         0",
        "  pool1 (MaxPool2d)      [16, 5, 13, 13]         0",
        "  conv2 (Conv2d)         [16, 5, 11, 11]       230",
        "  relu2 (ReLU)           [16, 5, 11, 11]         0",
        "  pool2 (MaxPool2d)      [16, 5, 5, 5]           0",
        "  flatten (Flatten)      [16, 125]               0",
        "(unnamed) (Sequential)   [16, 3]                --",
        "  drop1 (Dropout)        [16, 125]               0",
        "  fc1 (Linear)           [16, 50]            6,300",
        "  relu3 (ReLU)           [16, 50]                0",
        "  drop2 (Dropout)        [16, 50]                0",
        "  fc2 (Linear)           [16, 3]               153",
        "==================================================",
        "Input shape: [16, 3, 28, 28]",
        "Total params: 6,823",
        "Trainable params: 6,823",
        "Non-trainable params: 0",
        "Buffers: 0",
        "=================================================="
      ].join("\n")
    )
    // Same names, shapes, layouts and order as the hand-built CNN2 (so the same draws).
    expect(built.module.specs).toEqual(Either.getOrThrow(Cnn2.make({ nFilters: 5, p: 0.3 })).model.specs)
  })

  it("a net with BatchNorm, LeakyReLU and average pooling: shapes, parameters and buffers", () => {
    const built = builtOf({
      layers: [
        { type: "Conv2d", name: "conv", outChannels: 8, kernelSize: 3, padding: "same", bias: false },
        { type: "BatchNorm2d", name: "bn" },
        { type: "LeakyReLU" },
        { type: "AvgPool2d", kernelSize: 2 },
        { type: "Conv2d", outChannels: 8, kernelSize: 3, stride: 2, padding: 1, dilation: 2 },
        { type: "AdaptiveAvgPool2d", outputSize: [2, 3] },
        { type: "Flatten" },
        { type: "Dropout" },
        { type: "Linear", outFeatures: 16 },
        { type: "BatchNorm1d" },
        { type: "GELU" },
        { type: "Linear", name: "out", outFeatures: 3 }
      ]
    })
    expect(built.layers.map((l) => [l.name, l.outputShape, l.parameters, l.buffers])).toEqual([
      ["conv", [8, 28, 28], 8 * 3 * 9, 0],
      ["bn", [8, 28, 28], 16, 17],
      ["2", [8, 28, 28], 0, 0],
      ["3", [8, 14, 14], 0, 0],
      ["4", [8, 6, 6], 8 * 8 * 9 + 8, 0],
      ["5", [8, 2, 3], 0, 0],
      ["6", [48], 0, 0],
      ["7", [48], 0, 0],
      ["8", [16], 48 * 16 + 16, 0],
      ["9", [16], 32, 33],
      ["10", [16], 0, 0],
      ["out", [3], 51, 0]
    ])
    expect(built.module.buffers.map((b) => b.name)).toEqual([
      "bn.running_mean",
      "bn.running_var",
      "bn.num_batches_tracked",
      "9.running_mean",
      "9.running_var",
      "9.num_batches_tracked"
    ])
    // The Linear after Flatten knows the map it came from (for PyTorch weight exchange).
    expect(built.module.specs.find((s) => s.name === "8.weight")!.layout).toEqual({
      _tag: "linearAfterFlatten",
      chw: [8, 2, 3]
    })
    expect(ModelSpec.summary(built)).toContain("Buffers: 50")
  })

  it("the schema round-trips a recipe's JSON", () => {
    const json = JSON.parse(JSON.stringify(ModelSpec.cnn2({ nFilters: 5, p: 0.3 })))
    const decoded = ModelSpec.decode(json)
    expect(Either.getOrThrow(decoded)).toEqual(ModelSpec.cnn2({ nFilters: 5, p: 0.3 }))
  })
})

/**
 * Written by the CNN2 code as it was before models became data (commit 780e468's parent):
 * four plain-SGD steps of CNN2(5, p=0.3) from seed 42 with dropout, then eval logits. The wasm
 * entry was rewritten twice since, deliberately: when the bias gradient became one kernel that
 * sums in float64 and rounds once (tf.sum summed in float32): losses moved in the 9th digit; and
 * when the filter and linear-layer gradients became our SIMD kernels (kernels/simd/kernels.c:
 * float32 sums in another order than XNNPACK's): losses moved in the 8th digit.
 */
const legacy: Record<
  string,
  { losses: Array<number>; logits: Array<number>; params: Record<string, Array<number>> }
> = JSON.parse(readFileSync(new URL("./fixtures/cnn2-legacy.json", import.meta.url), "utf8"))

describe.each(["wasm", "cpu"] as const)(
  "the CNN2 preset reproduces today's runs bit for bit (%s)",
  (backend) => {
    const run = (model: Module.Module) => {
      let params = Module.unsafeInit(model, Random.unsafeMake(42))
      const data = images(32, 28, 3)
      const losses: Array<number> = []
      const size = 3 * 28 * 28
      for (let step = 0; step < 4; step++) {
        const batch = {
          x: data.x.slice(step * 8 * size, (step + 1) * 8 * size),
          y: (data.y as Int32Array).slice(step * 8, (step + 1) * 8),
          shape: [8, 3, 28, 28]
        } as any
        const { loss, grads } = Either.getOrThrow(
          Loss.lossAndGrads(model, Loss.crossEntropy, params, batch, {
            training: true,
            rng: Random.foldIn(Random.unsafeMake(9), step)
          })
        )
        losses.push(loss)
        const next = tf.tidy(() =>
          Object.fromEntries(Object.entries(params).map(([k, p]) => [k, tf.sub(p, tf.mul(grads[k], 0.05))]))
        )
        Module.disposeAll(params)
        Module.disposeAll(grads)
        params = next
      }
      const logits = Array.from(
        Loss.predict(model, params, { x: data.x.slice(0, 4 * size), shape: [4, 3, 28, 28] })
      )
      const values = Object.fromEntries(Object.entries(params).map(([k, p]) => [k, Array.from(p.dataSync())]))
      Module.disposeAll(params)
      return { losses, logits, params: values }
    }

    it("the preset built from data and Cnn2.make: same losses, logits and parameters", async () => {
      await F.useEngine(backend)
      const preset = builtOf({ preset: "CNN2", nFilters: 5, p: 0.3 })
      expect(run(preset.module)).toEqual(legacy[backend])
      expect(run(Either.getOrThrow(Cnn2.make({ nFilters: 5, p: 0.3 })).model)).toEqual(legacy[backend])
    })
  }
)
