import { Random } from "@stepwise/data"
import * as tf from "@tensorflow/tfjs-core"
import { Either } from "effect"
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Loss from "../src/Loss.js"
import * as ModelSpec from "../src/ModelSpec.js"
import * as Module from "../src/Module.js"
import * as F from "./fixtures.js"

const pairArb = (min: number, max: number) =>
  fc.oneof(fc.integer({ min, max }), fc.tuple(fc.integer({ min, max }), fc.integer({ min, max })))

/** One built-in layer with random arguments, in front of a [C, H, W] map or a vector. */
const layerArb: fc.Arbitrary<ModelSpec.LayerSpec> = fc.oneof(
  fc.record(
    {
      type: fc.constant("Conv2d" as const),
      outChannels: fc.integer({ min: 1, max: 3 }),
      kernelSize: pairArb(1, 3),
      stride: pairArb(1, 2),
      padding: fc.oneof(pairArb(0, 1), fc.constant("valid" as const)),
      dilation: pairArb(1, 2),
      bias: fc.boolean()
    },
    { requiredKeys: ["type", "outChannels", "kernelSize"] }
  ),
  fc.record({
    type: fc.constant("Conv2d" as const),
    outChannels: fc.integer({ min: 1, max: 3 }),
    kernelSize: pairArb(1, 4),
    padding: fc.constant("same" as const)
  }),
  fc.record(
    {
      type: fc.constant("MaxPool2d" as const),
      kernelSize: pairArb(1, 3),
      stride: pairArb(1, 2),
      padding: pairArb(0, 1)
    },
    { requiredKeys: ["type", "kernelSize"] }
  ),
  fc.record(
    {
      type: fc.constant("AvgPool2d" as const),
      kernelSize: pairArb(1, 3),
      stride: pairArb(1, 2),
      padding: pairArb(0, 1),
      countIncludePad: fc.boolean()
    },
    { requiredKeys: ["type", "kernelSize"] }
  ),
  fc.record({ type: fc.constant("AdaptiveAvgPool2d" as const), outputSize: pairArb(1, 4) }),
  fc.record(
    {
      type: fc.constant("BatchNorm2d" as const),
      affine: fc.boolean(),
      momentum: fc.double({ min: 0, max: 1, noNaN: true })
    },
    { requiredKeys: ["type"] }
  ),
  fc.record({ type: fc.constant("Dropout2d" as const), p: fc.double({ min: 0, max: 0.9, noNaN: true }) }),
  fc.constantFrom<ModelSpec.LayerSpec>(
    { type: "ReLU" },
    { type: "LeakyReLU", negativeSlope: 0.1 },
    { type: "ELU", alpha: 0.5 },
    { type: "GELU" },
    { type: "GELU", approximate: "tanh" },
    { type: "SiLU" },
    { type: "Tanh" },
    { type: "Sigmoid" },
    { type: "Dropout", p: 0.3 },
    { type: "Flatten" }
  )
)

/** A small net: a map layer, then optionally a second one, then Flatten, Linear, BatchNorm1d. */
const netArb = fc.record({
  first: layerArb,
  second: fc.option(layerArb, { nil: undefined }),
  head: fc.boolean(),
  shape: fc.tuple(
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 3, max: 7 }),
    fc.integer({ min: 3, max: 7 })
  ),
  n: fc.integer({ min: 2, max: 4 }),
  training: fc.boolean(),
  seed: fc.integer({ min: 0, max: 1_000_000 })
})

const dot = (a: tf.Tensor, b: tf.Tensor): number => tf.tidy(() => tf.sum(tf.mul(a, b)).dataSync()[0])

describe.each(["wasm", "cpu"] as const)(
  "autodiff, hand-written backward and finite differences (%s)",
  (backend) => {
    it("agree on random nets of built-in layers", async () => {
      await F.useEngine(backend)
      let checked = 0
      fc.assert(
        fc.property(netArb, (c) => {
          const layers: Array<ModelSpec.LayerSpec> = [c.first, ...(c.second === undefined ? [] : [c.second])]
          if (c.head)
            layers.push({ type: "Flatten" }, { type: "Linear", outFeatures: 3 }, { type: "BatchNorm1d" })
          const built = ModelSpec.build({ layers }, c.shape)
          fc.pre(Either.isRight(built))
          if (Either.isLeft(built)) return
          const { module } = built.right
          checked++
          const before = tf.memory().numTensors
          const params = Module.unsafeInit(module, Random.unsafeMake(c.seed))
          const buffers = Module.unsafeInitBuffers(module)
          tf.tidy(() => {
            const [xs, s1] = Random.normals(
              Random.unsafeMake(c.seed + 1),
              c.n * c.shape[0] * c.shape[1] * c.shape[2]
            )
            const x = Loss.unsafeInputTensor(Float32Array.from(xs), [c.n, ...c.shape])
            const ctx: Module.Ctx = { training: c.training, rng: Random.unsafeMake(c.seed + 2), buffers }
            const fwd = module.forward(params, "", x, ctx, true)
            const [rs, s2] = Random.normals(s1, fwd.y.size)
            const r = tf.tensor(Float32Array.from(rs), fwd.y.shape)
            const hand = fwd.backward(r)
            const names = module.specs.map((s) => s.name)
            const tree = (ps: Array<tf.Tensor>) => ({
              ...params,
              ...Object.fromEntries(names.map((n, i) => [n, ps[i]]))
            })
            // tfjs' own gradient functions through the same forward ops, and through our custom ops.
            const viaTfjs = tf.grads(
              (xi: tf.Tensor, ...ps: Array<tf.Tensor>) => module.reference!(tree(ps), "", xi, ctx).y
            )([x, ...names.map((n) => params[n])], r)
            const viaCustom = tf.grads((xi: tf.Tensor, ...ps: Array<tf.Tensor>) => {
              const out = module.call(tree(ps), "", xi, ctx)
              Module.disposeAll(out.buffers)
              return out.y
            })([x, ...names.map((n) => params[n])], r)
            const handAll = [hand.dx!, ...names.map((n) => hand.grads[n])]
            // float32 cancellation (a bias before a training-mode BatchNorm has gradient 0 computed
            // from terms as large as the others) scales with the largest gradient of the net.
            const scale = Math.max(1, ...viaTfjs.map((g) => tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0])))
            handAll.forEach((g, i) => {
              const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(g, viaTfjs[i]))).dataSync()[0])
              expect(diff / scale, `hand-written vs tfjs, ${i === 0 ? "input" : names[i - 1]}`).toBeLessThan(
                1e-4
              )
              const same = tf.tidy(() => tf.max(tf.abs(tf.sub(g, viaCustom[i]))).dataSync()[0])
              expect(same, `hand-written vs custom op, ${i === 0 ? "input" : names[i - 1]}`).toBe(0)
            })
            // Finite differences along one random direction of (input, parameters), in float32.
            let s = s2
            const direction = handAll.map((g) => {
              const [v, next] = Random.normals(s, g.size)
              s = next
              return tf.tensor(Float32Array.from(v), g.shape)
            })
            const lossAt = (eps: number) =>
              tf.tidy(() => {
                const shifted = names.map((n, i) => tf.add(params[n], tf.mul(direction[i + 1], eps)))
                const y = module.forward(
                  tree(shifted),
                  "",
                  tf.add(x, tf.mul(direction[0], eps)),
                  ctx,
                  false
                ).y
                return dot(y, r)
              })
            // Central differences at three step sizes: float32 rounding grows as the step shrinks,
            // curvature (BatchNorm over few samples) and max-pool switches as it grows; the best
            // of the three must agree.
            const analytic = handAll.reduce((acc, g, i) => acc + dot(g, direction[i]), 0)
            const errors = [4e-3, 1e-3, 2.5e-4].map((eps) => {
              const fd = (lossAt(eps) - lossAt(-eps)) / (2 * eps)
              return Math.abs(fd - analytic)
            })
            expect(Math.min(...errors), `finite differences vs ${analytic}`).toBeLessThan(
              1e-2 * Math.max(1, Math.abs(analytic))
            )
          })
          Module.disposeAll(params)
          Module.disposeAll(buffers)
          expect(tf.memory().numTensors).toBe(before)
        }),
        { numRuns: 60, seed: 2026 }
      )
      expect(checked).toBeGreaterThan(30)
    }, 120_000)
  }
)

describe.each(["wasm", "cpu"] as const)("models as functions of tfjs ops (%s)", (backend) => {
  const batch = (seed: number) => {
    const [xs] = Random.normals(Random.unsafeMake(seed), 32 * 2)
    const y = new Int32Array(32)
    // Two Gaussian blobs with a curved boundary: needs the hidden layer.
    for (let i = 0; i < 32; i++) y[i] = xs[2 * i] * xs[2 * i] + xs[2 * i + 1] > 0.5 ? 1 : 0
    return { x: Float32Array.from(xs), y, shape: [32, 2], indices: new Int32Array(32) } as any
  }

  it("tf.variableGrads trains a parameter tree", async () => {
    await F.useEngine(backend)
    const before = tf.memory().numTensors
    const { x, y } = batch(1)
    const [w, b, xt, yt] = tf.tidy(() => [
      tf.variable(tf.tensor2d([0.5, -0.3, 0.2, 0.8], [2, 2])),
      tf.variable(tf.zeros([2])),
      tf.tensor2d(x, [32, 2]),
      tf.oneHot(tf.tensor1d(y, "int32"), 2)
    ])
    const lossOf = () => tf.losses.softmaxCrossEntropy(yt, tf.add(tf.matMul(tf.tanh(xt), w), b)) as tf.Scalar
    const losses: Array<number> = []
    for (let step = 0; step < 30; step++) {
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(lossOf)
        losses.push(value.dataSync()[0])
        w.assign(tf.sub(w, tf.mul(grads[w.name], 0.5)))
        b.assign(tf.sub(b, tf.mul(grads[b.name], 0.5)))
      })
    }
    expect(losses[29]).toBeLessThan(losses[0] * 0.9)
    for (const t of [w, b, xt, yt]) t.dispose()
    expect(tf.memory().numTensors).toBe(before)
  })

  it("a Lambda model trains through Loss.lossAndGrads (tf.valueAndGrads), its gradients equal to tf.grads'", async () => {
    await F.useEngine(backend)
    const before = tf.memory().numTensors
    // An MLP written by hand, with a built-in Linear inside it (its custom gradient in the tape).
    const head = Either.getOrThrow(Module.Linear({ inFeatures: 8, outFeatures: 2 }))
    const mlp = Module.Lambda({
      kind: "MLP",
      specs: [
        { name: "w1", shape: [2, 8], layout: { _tag: "linear" }, bound: 0.7 },
        { name: "b1", shape: [8], layout: { _tag: "same" }, bound: 0.7 },
        ...head.specs.map((s) => ({ ...s, name: `head.${s.name}` }))
      ],
      fn: (p, x, ctx) => head.call(p, "head.", tf.tanh(tf.add(tf.matMul(x, p.w1), p.b1)), ctx).y
    })
    const model = Module.Sequential([["mlp", mlp]])
    expect(model.explicit).toBe(false)
    let params = Module.unsafeInit(model, Random.unsafeMake(3))
    const data = batch(2)
    // One step checked against tf.grads over the same function.
    const step0 = Either.getOrThrow(
      Loss.lossAndGrads(model, Loss.crossEntropy, params, data, { training: true })
    )
    tf.tidy(() => {
      const names = model.specs.map((s) => s.name)
      const x = tf.tensor2d(data.x, [32, 2])
      const labels = tf.oneHot(tf.tensor1d(data.y, "int32"), 2)
      const direct = tf.grads((...ps: Array<tf.Tensor>) => {
        const tree = Object.fromEntries(names.map((n, i) => [n, ps[i]]))
        const z = model.call(tree, "", x, Module.ctxOf({ training: true })).y
        return tf.losses.softmaxCrossEntropy(labels, z) as tf.Scalar
      })(names.map((n) => params[n]))
      names.forEach((n, i) => {
        const diff = tf.max(tf.abs(tf.sub(direct[i], step0.grads[n]))).dataSync()[0]
        expect(diff, n).toBeLessThan(1e-6)
      })
    })
    Module.disposeAll(step0.grads)
    const losses: Array<number> = []
    for (let step = 0; step < 40; step++) {
      const { loss, grads, buffers } = Either.getOrThrow(
        Loss.lossAndGrads(model, Loss.crossEntropy, params, data, {
          training: true
        })
      )
      expect(Object.keys(buffers)).toEqual([])
      losses.push(loss)
      const next = tf.tidy(() =>
        Object.fromEntries(Object.entries(params).map(([k, p]) => [k, tf.sub(p, tf.mul(grads[k], 0.5))]))
      )
      Module.disposeAll(params)
      Module.disposeAll(grads)
      params = next
    }
    expect(losses[39]).toBeLessThan(losses[0] * 0.8)
    Module.disposeAll(params)
    expect(tf.memory().numTensors).toBe(before)
  })

  it("lossAndGrads through autodiff equals the explicit path on a net with BatchNorm (loss, gradients, buffers)", async () => {
    await F.useEngine(backend)
    const built = ModelSpec.build(
      {
        layers: [
          { type: "Conv2d", outChannels: 4, kernelSize: 3, padding: 1 },
          { type: "BatchNorm2d" },
          { type: "LeakyReLU" },
          { type: "AvgPool2d", kernelSize: 2 },
          { type: "Dropout", p: 0.2 },
          { type: "Flatten" },
          { type: "Linear", outFeatures: 3 }
        ]
      },
      [3, 6, 6]
    )
    if (Either.isLeft(built)) throw built.left
    const model = built.right.module
    const before = tf.memory().numTensors
    const params = Module.unsafeInit(model, Random.unsafeMake(4))
    const buffers = Module.unsafeInitBuffers(model)
    const [xs] = Random.normals(Random.unsafeMake(5), 8 * 3 * 36)
    const data = {
      x: Float32Array.from(xs),
      y: Int32Array.from([0, 1, 2, 0, 1, 2, 0, 1]),
      shape: [8, 3, 6, 6]
    } as any
    const options = { training: true, seed: 11, buffers }
    const explicit = Either.getOrThrow(Loss.lossAndGrads(model, Loss.crossEntropy, params, data, options))
    const auto = Either.getOrThrow(
      Loss.lossAndGrads(model, Loss.crossEntropy, params, data, { ...options, autodiff: true })
    )
    expect(Math.abs(explicit.loss - auto.loss)).toBeLessThan(1e-9)
    for (const s of model.specs) {
      const diff = tf.tidy(
        () => tf.max(tf.abs(tf.sub(explicit.grads[s.name], auto.grads[s.name]))).dataSync()[0]
      )
      expect(diff, s.name).toBe(0)
    }
    expect(Object.keys(explicit.buffers).sort()).toEqual([
      "1.num_batches_tracked",
      "1.running_mean",
      "1.running_var"
    ])
    for (const name of Object.keys(explicit.buffers))
      expect(Array.from(auto.buffers[name].dataSync()), name).toEqual(
        Array.from(explicit.buffers[name].dataSync())
      )
    expect(explicit.buffers["1.num_batches_tracked"].dataSync()[0]).toBe(1)
    for (const t of [params, buffers, explicit.grads, explicit.buffers, auto.grads, auto.buffers])
      Module.disposeAll(t)
    expect(tf.memory().numTensors).toBe(before)
  })
})
