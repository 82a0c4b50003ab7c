import { readFileSync } from "node:fs"
import { Random } from "@stepwise/data"
import * as tf from "@tensorflow/tfjs-core"
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import * as Loss from "../src/Loss.js"
import * as ModelSpec from "../src/ModelSpec.js"
import * as Module from "../src/Module.js"
import * as TorchWeights from "../src/TorchWeights.js"
import * as F from "./fixtures.js"

/** Written by scripts/layers_fixture.py with PyTorch 1.13 (data: base64 little-endian float32). */
interface Encoded {
  readonly shape: Array<number>
  readonly data: string
}
interface Case {
  readonly name: string
  readonly spec: ModelSpec.LayerSpec
  readonly training: boolean
  readonly x: Encoded
  readonly state_dict: Record<string, Encoded>
  readonly y: Encoded
  readonly r: Encoded
  readonly dx: Encoded
  readonly grads: Record<string, Encoded>
  readonly buffers_after?: Record<string, Encoded>
}

const fixture: { torch: string; cases: Array<Case> } = JSON.parse(
  readFileSync(new URL("./fixtures/layers-torch.json", import.meta.url), "utf8")
)

const decode = (e: Encoded): TorchWeights.TorchTensor => {
  const bytes = Buffer.from(e.data, "base64")
  const data = new Float32Array(bytes.length / 4)
  for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(i * 4)
  return { shape: e.shape, data }
}

/** PyTorch's layout (NCHW for maps) as an engine tensor. */
const toEngine = (e: Encoded): tf.Tensor => {
  const t = decode(e)
  return Loss.unsafeInputTensor(t.data, t.shape)
}

/** An engine tensor's values in PyTorch's layout. */
const toTorchValues = (t: tf.Tensor): Float32Array =>
  tf.tidy(() => (t.rank === 4 ? tf.transpose(t, [0, 3, 1, 2]) : t).dataSync() as Float32Array).slice()

const expectClose = (actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string) => {
  expect(actual.length, what).toBe(expected.length)
  let worst = 0
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]))
  expect(worst, what).toBeLessThan(tol)
}

const built = (c: Case) => {
  const inputShape = c.x.shape.slice(1)
  const b = ModelSpec.build({ layers: [{ ...c.spec, name: "l" }] }, inputShape)
  if (Either.isLeft(b)) throw new Error(b.left.message)
  return b.right
}

const load = (module: Module.Module, c: Case) => {
  const all = Object.fromEntries(Object.entries(c.state_dict).map(([k, v]) => [`l.${k}`, decode(v)]))
  const params = Either.getOrThrow(TorchWeights.unsafeFromTorch(module, all))
  const buffers = Either.getOrThrow(TorchWeights.unsafeBuffersFromTorch(module, all))
  return { params, buffers }
}

describe.each(["wasm", "cpu"] as const)("layers against PyTorch 1.13 (%s)", (backend) => {
  it.each(fixture.cases.map((c) => [c.name, c] as const))(
    "%s: output, gradients and buffers to 1e-5",
    async (_, c) => {
      await F.useEngine(backend)
      const { module, outputShape } = built(c)
      expect([c.y.shape[0], ...outputShape]).toEqual(c.y.shape)
      const before = tf.memory().numTensors
      const { params, buffers } = load(module, c)
      const ctx: Module.Ctx = { training: c.training, rng: Random.unsafeMake(0), buffers }
      tf.tidy(() => {
        const x = toEngine(c.x)
        const r = toEngine(c.r)
        // The hand-written backward, directly.
        const fwd = module.forward(params, "", x, ctx, true)
        expectClose(toTorchValues(fwd.y), decode(c.y).data, 1e-5, "output")
        const back = fwd.backward(r)
        expectClose(toTorchValues(back.dx!), decode(c.dx).data, 1e-5, "input gradient")
        const grads = TorchWeights.toTorch(module, back.grads)
        for (const [name, g] of Object.entries(c.grads))
          expectClose(grads[`l.${name}`].data, decode(g).data, 1e-5, `gradient of ${name}`)
        if (c.buffers_after !== undefined)
          for (const [name, v] of Object.entries(c.buffers_after)) {
            const after = TorchWeights.buffersToTorch(module, fwd.buffers!)[`l.${name}`]
            expect(after.shape).toEqual(v.shape)
            expectClose(after.data, decode(v).data, 1e-5, `buffer ${name}`)
          }
        else expect(Object.keys(fwd.buffers ?? {})).toEqual([])
        // The same layer under tfjs' autodiff (its custom gradient).
        const names = module.specs.map((s) => s.name)
        const f = (xi: tf.Tensor, ...ps: Array<tf.Tensor>) => {
          const out = module.call(
            { ...params, ...Object.fromEntries(names.map((n, i) => [n, ps[i]])) },
            "",
            xi,
            ctx
          )
          Module.disposeAll(out.buffers)
          return out.y
        }
        const [dx, ...dps] = tf.grads(f)([x, ...names.map((n) => params[n])], r)
        expectClose(toTorchValues(dx), decode(c.dx).data, 1e-5, "input gradient (autodiff)")
        const auto = TorchWeights.toTorch(module, Object.fromEntries(names.map((n, i) => [n, dps[i]])))
        for (const [name, g] of Object.entries(c.grads))
          expectClose(auto[`l.${name}`].data, decode(g).data, 1e-5, `gradient of ${name} (autodiff)`)
      })
      Module.disposeAll(params)
      Module.disposeAll(buffers)
      expect(tf.memory().numTensors).toBe(before)
    }
  )
})
