import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Either } from "effect"
import * as Cnn2 from "../src/Cnn2.js"
import * as Loss from "../src/Loss.js"
import * as TorchWeights from "../src/TorchWeights.js"
import * as F from "./fixtures.js"

/** Written by scripts/cnn2_fixture.py with PyTorch 1.13 (data: base64 little-endian float32). */
interface Encoded {
  readonly shape: Array<number>
  readonly data: string
}
interface Fixture {
  readonly nFilters: number
  readonly p: number
  readonly state_dict: Record<string, Encoded>
  readonly x: Encoded
  readonly y: Array<number>
  readonly logits: Encoded
  readonly loss: number
  readonly grads: Record<string, Encoded>
}

const fixture: Fixture = JSON.parse(
  readFileSync(new URL("./fixtures/cnn2-torch.json", import.meta.url), "utf8")
)

const decode = (e: Encoded): TorchWeights.TorchTensor => {
  const bytes = Buffer.from(e.data, "base64")
  const data = new Float32Array(bytes.length / 4)
  for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(i * 4)
  return { shape: e.shape, data }
}

const decodeAll = (r: Record<string, Encoded>) =>
  Object.fromEntries(Object.entries(r).map(([k, v]) => [k, decode(v)]))

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

describe("CNN2 against PyTorch 1.13 (fixture)", () => {
  const { model } = Either.getOrThrow(Cnn2.make({ nFilters: fixture.nFilters, p: fixture.p }))
  const x = decode(fixture.x)
  const batch = { x: x.data, shape: x.shape, y: Int32Array.from(fixture.y) }

  for (const backend of ["wasm", "cpu"] as const) {
    it(`imports PyTorch's weights and gives the same logits to 1e-5 (${backend})`, async () => {
      await F.useEngine(backend)
      const params = Either.getOrThrow(TorchWeights.fromTorch(model, decodeAll(fixture.state_dict)))
      const logits = Loss.predict(model, params, batch)
      expect(maxAbsDiff(logits, decode(fixture.logits).data)).toBeLessThan(1e-5)
      tf.dispose(Object.values(params))
    })

    it(`one step's loss and gradients equal PyTorch's (${backend})`, async () => {
      await F.useEngine(backend)
      const params = Either.getOrThrow(TorchWeights.fromTorch(model, decodeAll(fixture.state_dict)))
      const { loss, grads } = Either.getOrThrow(
        Loss.lossAndGrads(model, Loss.crossEntropy, params, batch, { training: false })
      )
      expect(Math.abs(loss - fixture.loss)).toBeLessThan(1e-6)
      const ours = TorchWeights.toTorch(model, grads)
      for (const [name, expected] of Object.entries(decodeAll(fixture.grads))) {
        expect(ours[name].shape).toEqual(expected.shape)
        const scale = Math.max(...Array.from(expected.data, Math.abs))
        expect(maxAbsDiff(ours[name].data, expected.data) / scale).toBeLessThan(1e-5)
      }
      tf.dispose([...Object.values(params), ...Object.values(grads)])
    })
  }

  it("exports weights back to exactly PyTorch's state_dict", async () => {
    await F.useEngine("wasm")
    const torch = decodeAll(fixture.state_dict)
    const params = Either.getOrThrow(TorchWeights.fromTorch(model, torch))
    const back = TorchWeights.toTorch(model, params)
    for (const [name, t] of Object.entries(torch)) {
      expect(back[name].shape).toEqual(t.shape)
      expect(maxAbsDiff(back[name].data, t.data)).toBe(0)
    }
    tf.dispose(Object.values(params))
  })
})
