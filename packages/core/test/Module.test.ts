import { describe, expect, it } from "@effect/vitest"
import { Random } from "@stepwise/data"
import * as tf from "@tensorflow/tfjs-core"
import * as Cnn2 from "../src/Cnn2.js"
import * as Loss from "../src/Loss.js"
import * as Module from "../src/Module.js"
import * as TorchWeights from "../src/TorchWeights.js"
import * as F from "./fixtures.js"

const useEngine = F.useEngine

const spacedPoints = Float32Array.from({ length: 11 }, (_, i) => Math.fround(0.1 * (i + 1)))

const dropTrain = (p: number, seed: number): Float32Array =>
  tf.tidy(() =>
    Module.apply(Module.Dropout(p), {}, tf.tensor1d(spacedPoints), { training: true, seed }).dataSync()
  ) as Float32Array

describe("the chapter's worked examples", () => {
  it("a three-channel convolution gives 39", async () => {
    await useEngine("wasm")
    const model = Module.Sequential([
      ["conv", Module.Conv2d({ inChannels: 3, outChannels: 1, kernelSize: 3 })]
    ])
    const regions = [5, 0, 8, 1, 9, 5, 6, 0, 2, 0, 5, 4, 8, 1, 9, 4, 8, 1, 4, 2, 0, 6, 3, 0, 5, 2, 8]
    const filter = [0, 3, 0, 1, 0, 1, 2, 1, 0, 2, 1, 0, 0, 3, 1, 1, -1, 0, 0, 1, 3, -1, -2, 0, 2, 0, 1]
    const params = TorchWeights.fromTorch(model, {
      "conv.weight": { shape: [1, 3, 3, 3], data: Float32Array.from(filter) },
      "conv.bias": { shape: [1], data: new Float32Array(1) }
    })
    const out = Loss.predict(model, params, { x: Float32Array.from(regions), shape: [1, 3, 3, 3] })
    expect(Array.from(out)).toEqual([39])
    tf.dispose(Object.values(params))
  })

  it("dropout p = 0.5 keeps survivors scaled by 2 and eval mode passes inputs through", async () => {
    await useEngine("wasm")
    const out = dropTrain(0.5, 44)
    const ratios = Array.from(out, (v, i) => Math.round((v / spacedPoints[i]) * 1e5) / 1e5)
    expect(ratios.every((r) => r === 0 || r === 2)).toBe(true)
    expect(ratios.filter((r) => r === 0).length).toBeGreaterThan(0)
    expect(ratios.filter((r) => r === 2).length).toBeGreaterThan(0)
    const evalOut = tf.tidy(() =>
      Module.apply(Module.Dropout(0.5), {}, tf.tensor1d(spacedPoints), {
        training: false,
        seed: 44
      }).dataSync()
    )
    expect(Array.from(evalOut)).toEqual(Array.from(spacedPoints))
    // The linear layer of ones in eval mode: the chapter's 6.6.
    expect(Array.from(evalOut).reduce((a, b) => a + b, 0)).toBeCloseTo(6.6, 5)
  })

  it("the 1,000-draw distribution of dropout's outputs has mean ~6.6 and lies in [0, 13.2]", async () => {
    await useEngine("wasm")
    const sums = Array.from({ length: 1000 }, (_, seed) => dropTrain(0.5, seed).reduce((a, b) => a + b, 0))
    const mean = sums.reduce((a, b) => a + b, 0) / sums.length
    // One draw has sd sqrt(sum x^2) = 2.25, so the mean of 1,000 has sd 0.071: 0.3 is > 4 sd.
    expect(Math.abs(mean - 6.6)).toBeLessThan(0.3)
    expect(Math.min(...sums)).toBeGreaterThanOrEqual(0)
    expect(Math.max(...sums)).toBeLessThanOrEqual(13.2 + 1e-4)
    // Sums are multiples of 0.2 in [0, 13.2]: most of the 67 possible values occur.
    expect(new Set(sums.map((s) => s.toFixed(4))).size).toBeGreaterThan(40)
  })
})

describe("dropout", () => {
  it("masks are a pure function of the seed", async () => {
    await useEngine("wasm")
    expect(Array.from(dropTrain(0.3, 7))).toEqual(Array.from(dropTrain(0.3, 7)))
    expect(Array.from(dropTrain(0.3, 7))).not.toEqual(Array.from(dropTrain(0.3, 8)))
  })

  it("keeps a fraction 1 - p of the elements (100,000 draws)", () => {
    const mask = Module.dropoutMask(Random.make(3), 100_000, 0.3)
    const kept = mask.filter((v) => v !== 0)
    expect(Math.abs(kept.length / 100_000 - 0.7)).toBeLessThan(0.006)
    expect(kept.every((v) => Math.abs(v - 1 / 0.7) < 1e-6)).toBe(true)
  })

  it("Dropout2d drops whole channels", async () => {
    await useEngine("wasm")
    const [n, h, w, c] = [4, 3, 3, 16]
    const out = tf.tidy(() =>
      Module.apply(Module.Dropout2d(0.5), {}, tf.ones([n, h, w, c]), { training: true, seed: 1 }).arraySync()
    ) as Array<Array<Array<Array<number>>>>
    let dropped = 0
    for (let b = 0; b < n; b++) {
      for (let ch = 0; ch < c; ch++) {
        const v = out[b][0][0][ch]
        expect(v === 0 || v === 2).toBe(true)
        if (v === 0) dropped++
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) expect(out[b][y][x][ch]).toBe(v)
      }
    }
    expect(dropped).toBeGreaterThan(0)
    expect(dropped).toBeLessThan(n * c)
  })

  it("rejects a probability outside [0, 1]", () => {
    expect(() => Module.Dropout(1.5)).toThrow(/between 0 and 1/)
  })
})

describe("CNN2", () => {
  it("has 6,823 parameters for 5 filters, named and shaped like PyTorch's state_dict", () => {
    const { model, featurizer, classifier } = Cnn2.make({ nFilters: 5, p: 0.3 })
    expect(Module.countParameters(model)).toBe(6823)
    expect(Module.countParameters(featurizer) + Module.countParameters(classifier)).toBe(6823)
    expect(TorchWeights.torchShapes(model)).toEqual({
      "conv1.weight": [5, 3, 3, 3],
      "conv1.bias": [5],
      "conv2.weight": [5, 5, 3, 3],
      "conv2.bias": [5],
      "fc1.weight": [50, 125],
      "fc1.bias": [50],
      "fc2.weight": [3, 50],
      "fc2.bias": [3]
    })
  })

  it("initialises like PyTorch: U(+-1/sqrt(fan_in)) for weights and biases", async () => {
    await useEngine("wasm")
    const { model } = Cnn2.make({ nFilters: 5 })
    const params = Module.init(model, Random.make(42))
    const fanIn: Record<string, number> = { conv1: 27, conv2: 45, fc1: 125, fc2: 50 }
    for (const [name, t] of Object.entries(params)) {
      const bound = 1 / Math.sqrt(fanIn[name.split(".")[0]])
      const v = Array.from(t.dataSync())
      expect(Math.max(...v.map(Math.abs))).toBeLessThanOrEqual(bound)
      if (v.length >= 50) {
        // Uniform on (-b, b): mean ~0, variance b^2 / 3.
        const mean = v.reduce((a, b) => a + b, 0) / v.length
        const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length
        expect(Math.abs(mean)).toBeLessThan((bound / Math.sqrt(3)) * (4 / Math.sqrt(v.length)))
        expect(variance / (bound * bound)).toBeGreaterThan(0.25)
        expect(variance / (bound * bound)).toBeLessThan(0.42)
      }
    }
    // Same rng, same parameters.
    const again = Module.init(model, Random.make(42))
    expect(Array.from(again["fc1.weight"].dataSync())).toEqual(Array.from(params["fc1.weight"].dataSync()))
    tf.dispose([...Object.values(params), ...Object.values(again)])
  })

  it("PyTorch weight layout round-trips exactly", async () => {
    await useEngine("wasm")
    const { model } = Cnn2.make({ nFilters: 4 })
    const params = Module.init(model, Random.make(1))
    const torch = TorchWeights.toTorch(model, params)
    const back = TorchWeights.fromTorch(model, torch)
    for (const name of Object.keys(params)) {
      expect(Array.from(back[name].dataSync())).toEqual(Array.from(params[name].dataSync()))
    }
    expect(() =>
      TorchWeights.fromTorch(model, { ...torch, "fc2.bias": { shape: [4], data: new Float32Array(4) } })
    ).toThrow(/fc2.bias/)
    tf.dispose([...Object.values(params), ...Object.values(back)])
  })
})

describe("losses", () => {
  it("cross-entropy from logits (mean) and its gradient softmax - onehot", () => {
    const { loss, grad } = Loss.crossEntropy.evaluate(
      Float32Array.from([1, 2, 3, 0, 0, 0]),
      [2, 3],
      Int32Array.from([2, 0])
    )
    const l1 = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3)) - 3
    expect(loss).toBeCloseTo((l1 + Math.log(3)) / 2, 12)
    const s = Math.exp(1) + Math.exp(2) + Math.exp(3)
    expect(grad[2]).toBeCloseTo((Math.exp(3) / s - 1) / 2, 7)
    expect(grad[3]).toBeCloseTo((1 / 3 - 1) / 2, 7)
    expect(() => Loss.crossEntropy.evaluate(new Float32Array(3), [1, 3], Int32Array.from([3]))).toThrow(
      /out of bounds/
    )
  })

  it("MSE and BCE-with-logits match their definitions", () => {
    const mse = Loss.mse.evaluate(Float32Array.from([1, 2]), [2, 1], Float32Array.from([0, 4]))
    expect(mse.loss).toBe(2.5)
    expect(Array.from(mse.grad)).toEqual([1, -2])
    const bce = Loss.bceWithLogits.evaluate(Float32Array.from([0, 100]), [2, 1], Float32Array.from([1, 0]))
    expect(bce.loss).toBeCloseTo((Math.log(2) + 100) / 2, 10)
    expect(bce.grad[0]).toBeCloseTo(-0.25, 7)
    expect(bce.grad[1]).toBeCloseTo(0.5, 7)
  })
})

describe("lossAndGrads", () => {
  const batchOf = (n: number, seed: number) => {
    const [x] = Random.normals(Random.make(seed), n * 3 * 28 * 28)
    return {
      x: Float32Array.from(x),
      shape: [n, 3, 28, 28],
      y: Int32Array.from({ length: n }, (_, i) => i % 3)
    }
  }

  for (const backend of ["cpu", "wasm"] as const) {
    it(`gradients match central finite differences (${backend})`, async () => {
      await useEngine(backend)
      const { model } = Cnn2.make({ nFilters: 3 })
      const params = Module.init(model, Random.make(5))
      const batch = batchOf(2, 9)
      const { loss, grads } = Loss.lossAndGrads(model, Loss.crossEntropy, params, batch, { training: false })
      expect(loss).toBeCloseTo(Loss.lossOf(model, Loss.crossEntropy, params, batch), 6)
      // Small enough not to cross a ReLU / max-pool switch, large enough for float32.
      const eps = 1e-3
      let checked = 0
      for (const name of Object.keys(params)) {
        const base = params[name].dataSync().slice()
        const g = grads[name].dataSync()
        // The largest gradient entries: well above float32 noise, so a wrong layout shows.
        const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a]))
        for (const i of order.slice(0, 3)) {
          const at = (delta: number) => {
            const v = base.slice()
            v[i] += delta
            const shifted = { ...params, [name]: tf.tensor(v, params[name].shape) }
            const l = Loss.lossOf(model, Loss.crossEntropy, shifted, batch)
            shifted[name].dispose()
            return l
          }
          const numeric = (at(eps) - at(-eps)) / (2 * eps)
          expect(Math.abs(numeric - g[i])).toBeLessThan(2e-3 + 0.03 * Math.abs(g[i]))
          checked++
        }
      }
      expect(checked).toBe(24)
      tf.dispose([...Object.values(params), ...Object.values(grads)])
    })
  }

  it("same seed, same loss and gradients; dropout changes them", async () => {
    await useEngine("wasm")
    const { model } = Cnn2.make({ nFilters: 5, p: 0.5 })
    const params = Module.init(model, Random.make(5))
    const batch = batchOf(4, 1)
    const run = (seed: number) =>
      Loss.lossAndGrads(model, Loss.crossEntropy, params, batch, { training: true, seed })
    const [a, b, c] = [run(1), run(1), run(2)]
    expect(a.loss).toBe(b.loss)
    expect(Array.from(a.grads["fc1.weight"].dataSync())).toEqual(Array.from(b.grads["fc1.weight"].dataSync()))
    expect(a.loss).not.toBe(c.loss)
    tf.dispose([...Object.values(params), ...[a, b, c].flatMap((r) => Object.values(r.grads))])
  })
})
