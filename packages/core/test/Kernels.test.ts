import { describe, expect, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import * as fc from "fast-check"
import * as Engine from "../src/Engine.js"
import * as Fused from "../src/kernels/Fused.js"
import * as Kernels from "../src/kernels/Register.js"
import * as Module from "../src/Module.js"
import * as F from "./fixtures.js"

const run = <A>(engine: Promise<A>) => engine
const use = F.useEngine
// The cpu engine, held for the file: its registration kept the stock kernels ours replaced.
const stock = (await F.useEngine("cpu")).kernels.stock

interface Case {
  readonly n: number
  readonly h: number
  readonly w: number
  readonly cin: number
  readonly cout: number
  readonly kh: number
  readonly kw: number
  readonly stride: [number, number]
  readonly pad: "valid" | "same"
  readonly seed: number
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    n: fc.integer({ min: 1, max: 3 }),
    h: fc.integer({ min: 1, max: 9 }),
    w: fc.integer({ min: 1, max: 9 }),
    cin: fc.integer({ min: 1, max: 4 }),
    cout: fc.integer({ min: 1, max: 4 }),
    kh: fc.integer({ min: 1, max: 4 }),
    kw: fc.integer({ min: 1, max: 4 }),
    stride: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
    pad: fc.constantFrom("valid" as const, "same" as const),
    seed: fc.integer()
  })
  .filter((c) => c.pad === "same" || (c.kh <= c.h && c.kw <= c.w))

/** Deterministic values in [-1, 1) with some exact zeros (like post-ReLU activations). */
const values = (size: number, seed: number): Float32Array => {
  let s = seed >>> 0 || 1
  const out = new Float32Array(size)
  for (let i = 0; i < size; i++) {
    s ^= s << 13
    s ^= s >>> 17
    s ^= s << 5
    const u = (s >>> 0) / 2 ** 32
    out[i] = u < 0.2 ? 0 : 2 * u - 1
  }
  return out
}

const dyShape = (c: Case): [number, number, number, number] => {
  const outH = c.pad === "same" ? Math.ceil(c.h / c.stride[0]) : Math.ceil((c.h - c.kh + 1) / c.stride[0])
  const outW = c.pad === "same" ? Math.ceil(c.w / c.stride[1]) : Math.ceil((c.w - c.kw + 1) / c.stride[1])
  return [c.n, outH, outW, c.cout]
}

/** A case's input and output-gradient values (seeds `seed` and `seed + 1`). */
const xOf = (c: Case) => values(c.n * c.h * c.w * c.cin, c.seed)
const dyOf = (c: Case) =>
  values(
    dyShape(c).reduce((a, b) => a * b),
    c.seed + 1
  )

const attrsOf = (c: Case) => ({
  strides: c.stride,
  pad: c.pad,
  dataFormat: "NHWC",
  dimRoundingMode: undefined,
  filterShape: [c.kh, c.kw, c.cin, c.cout]
})

/** Runs a kernel function directly on the current backend and reads its output. */
const runKernelFunc = (name: string, inputs: Record<string, tf.Tensor>, attrs: object): Float32Array => {
  const backend = tf.backend() as any
  const out = stock.get(name.replace(/^cpu\//, ""))!({
    inputs,
    backend,
    attrs: attrs as any
  }) as tf.TensorInfo
  const data = Float32Array.from(backend.readSync(out.dataId) as Float32Array)
  backend.disposeData(out.dataId)
  return data
}

const registered = (
  inputs: Record<string, Float32Array>,
  shapes: Record<string, number[]>,
  kernel: string,
  attrs: object
) =>
  tf.tidy(() => {
    const ts: Record<string, tf.Tensor> = {}
    for (const k of Object.keys(inputs)) ts[k] = tf.tensor(inputs[k], shapes[k])
    return (tf.engine().runKernel(kernel, ts as any, attrs as any) as tf.Tensor).dataSync() as Float32Array
  })

const expectClose = (actual: ArrayLike<number>, expected: ArrayLike<number>) => {
  expect(actual.length).toBe(expected.length)
  let scale = 1
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]))
  for (let i = 0; i < expected.length; i++) {
    if (Math.abs(actual[i] - expected[i]) > 1e-5 * scale) {
      throw new Error(`element ${i}: ${actual[i]} vs ${expected[i]}`)
    }
  }
}

/** The stock cpu kernel's answer for a case (our replacement is registered in its place). */
const stockCpuFilterGrad = (c: Case, x: Float32Array, dy: Float32Array) =>
  tf.tidy(() =>
    runKernelFunc(
      "cpu/Conv2DBackpropFilter",
      { x: tf.tensor(x, [c.n, c.h, c.w, c.cin]), dy: tf.tensor(dy, dyShape(c)) },
      attrsOf(c)
    )
  )

/** The registered Conv2DBackpropFilter's answer for a case on the current backend. */
const filterGrad = (c: Case, x: Float32Array, dy: Float32Array) =>
  registered({ x, dy }, { x: [c.n, c.h, c.w, c.cin], dy: dyShape(c) }, "Conv2DBackpropFilter", attrsOf(c))

describe("Conv2DBackpropFilter", () => {
  it("cpu: the flat-array loop equals the stock kernel", async () => {
    await run(use("cpu"))
    fc.assert(
      fc.property(caseArb, (c) => {
        const x = xOf(c)
        const dy = dyOf(c)
        expectClose(filterGrad(c, x, dy), stockCpuFilterGrad(c, x, dy))
      }),
      { numRuns: 200 }
    )
  })

  it("wasm: the registered kernel equals the stock cpu kernel, incl. stride 2 'same'", async () => {
    const stride2same: Case = {
      n: 2,
      h: 7,
      w: 8,
      cin: 3,
      cout: 2,
      kh: 3,
      kw: 3,
      stride: [2, 2],
      pad: "same",
      seed: 7
    }
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const x = xOf(c)
        const dy = dyOf(c)
        await run(use("cpu"))
        const expected = stockCpuFilterGrad(c, x, dy)
        await run(use("wasm"))
        expectClose(filterGrad(c, x, dy), expected)
      }),
      { numRuns: 200, examples: [[stride2same]] }
    )
  })

  it("wasm: a stride-2 'same' Conv2d's weight gradient equals cpu's", async () => {
    const conv = Either.getOrThrow(
      Module.Conv2d({ inChannels: 3, outChannels: 4, kernelSize: 3, stride: 2, padding: "same" })
    )
    const grad = () =>
      tf.tidy(() => {
        const x = tf.tensor4d(values(2 * 6 * 6 * 3, 3), [2, 6, 6, 3])
        const params = { weight: tf.tensor4d(values(3 * 3 * 3 * 4, 4), [3, 3, 3, 4]), bias: tf.zeros([4]) }
        const fwd = conv.forward(params, "", x, Module.ctxOf({ training: true }), true)
        const { grads, dx } = fwd.backward(tf.onesLike(fwd.y))
        return [...grads.weight.dataSync(), ...dx!.dataSync()]
      })
    await run(use("cpu"))
    const onCpu = grad()
    await run(use("wasm"))
    expectClose(grad(), onCpu)
  })
})

describe("Conv2DBackpropInput on wasm", () => {
  it("equals the stock cpu kernel on random shapes, strides and paddings", async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const w = values(c.kh * c.kw * c.cin * c.cout, c.seed)
        const dy = dyOf(c)
        const shapes = { dy: dyShape(c), filter: [c.kh, c.kw, c.cin, c.cout] }
        const attrs = { ...attrsOf(c), inputShape: [c.n, c.h, c.w, c.cin] }
        await run(use("cpu"))
        const expected = registered({ dy, filter: w }, shapes, "Conv2DBackpropInput", attrs)
        await run(use("wasm"))
        expectClose(registered({ dy, filter: w }, shapes, "Conv2DBackpropInput", attrs), expected)
      }),
      { numRuns: 200 }
    )
  })
})

const poolFields = {
  n: fc.integer({ min: 1, max: 3 }),
  h: fc.integer({ min: 1, max: 9 }),
  w: fc.integer({ min: 1, max: 9 }),
  // Up to 7: the wasm 2x2 kernel takes channels in fours (5 to 7 overlap the last four).
  c: fc.integer({ min: 1, max: 7 }),
  k: fc.integer({ min: 1, max: 3 }),
  s: fc.integer({ min: 1, max: 3 }),
  pad: fc.constantFrom("valid" as const, "same" as const),
  seed: fc.integer()
}

type PoolCase = {
  readonly [K in keyof typeof poolFields]: (typeof poolFields)[K] extends fc.Arbitrary<infer T> ? T : never
}

const poolAttrs = (p: PoolCase) => ({
  filterSize: [p.k, p.k],
  strides: [p.s, p.s],
  pad: p.pad,
  dimRoundingMode: undefined
})

/**
 * MaxPoolGrad of input `x` (shape from the case) on the current backend, with `dy` from the
 * case's seed: the registered kernel's, or with `stockName` the stock kernel we replaced.
 */
const poolGrad = (p: PoolCase, x: Float32Array, stockName?: string): Float32Array =>
  tf.tidy(() => {
    const xt = tf.tensor4d(x, [p.n, p.h, p.w, p.c])
    const y = tf.maxPool(xt, p.k, p.s, p.pad)
    const dy = tf.tensor(values(y.size, p.seed + 9), y.shape)
    const inputs = { dy, input: xt, output: y }
    if (stockName !== undefined) return runKernelFunc(stockName, inputs, poolAttrs(p))
    return (
      tf.engine().runKernel("MaxPoolGrad", inputs as any, poolAttrs(p) as any) as tf.Tensor
    ).dataSync() as Float32Array
  })

describe("MaxPoolGrad on wasm", () => {
  it("equals the stock cpu kernel, ties included", async () => {
    await fc.assert(
      fc.asyncProperty(fc.record(poolFields), async (p) => {
        fc.pre(p.pad === "same" || p.k <= Math.min(p.h, p.w))
        const x = values(p.n * p.h * p.w * p.c, p.seed).map((v) => Math.round(v * 2) / 2)
        await run(use("cpu"))
        const ours = poolGrad(p, x)
        const stockGrad = poolGrad(p, x, "cpu/MaxPoolGrad")
        expectClose(ours, stockGrad)
        await run(use("wasm"))
        expectClose(poolGrad(p, x), stockGrad)
      }),
      { numRuns: 200 }
    )
  })
})

describe("MaxPoolGrad on cpu", () => {
  it("the flat-array loop equals the stock kernel", async () => {
    await run(use("cpu"))
    fc.assert(
      fc.property(fc.record({ ...poolFields, ties: fc.boolean() }), (p) => {
        fc.pre(p.pad === "same" || p.k <= Math.min(p.h, p.w))
        let x = values(p.n * p.h * p.w * p.c, p.seed)
        // Rounded values make ties common: the first maximum must win, as in tfjs.
        if (p.ties) x = x.map((v) => Math.round(v * 2) / 2)
        expectClose(poolGrad(p, x), poolGrad(p, x, "cpu/MaxPoolGrad"))
      }),
      { numRuns: 200 }
    )
  })
})

describe("Engine", () => {
  it.effect("the tensorflow backend fails with BackendUnavailable naming the package when absent", () =>
    Effect.gen(function* () {
      const error = yield* Engine.make("tensorflow").pipe(Effect.scoped, Effect.flip)
      expect(error._tag).toBe("BackendUnavailable")
      expect(error.backend).toBe("tensorflow")
      expect(error.package).toContain("@tensorflow/tfjs-node")
    })
  )

  it("a registration replaces stock kernels and adds missing ones; restore undoes exactly that", () => {
    const abs = tf.getKernel("Abs", "cpu")!.kernelFunc
    const mine: tf.KernelConfig["kernelFunc"] = (args) => abs(args)
    const r = Kernels.register([
      { kernelName: "Abs", backendName: "cpu", make: (previous) => (previous === abs ? mine : abs) },
      { kernelName: "StepwiseTestKernel", backendName: "cpu", make: () => mine }
    ])
    expect(r.stock.get("Abs")).toBe(abs)
    expect(r.stock.has("StepwiseTestKernel")).toBe(false)
    expect(tf.getKernel("Abs", "cpu")!.kernelFunc).not.toBe(abs)
    expect(tf.getKernel("StepwiseTestKernel", "cpu")).toBeDefined()
    // A registration nested inside leaves ours alone (and so restores nothing).
    const inner = Kernels.register([{ kernelName: "Abs", backendName: "cpu", make: () => abs }])
    expect(inner.stock.size).toBe(0)
    inner.restore()
    expect(tf.getKernel("Abs", "cpu")!.kernelFunc).not.toBe(abs)
    r.restore()
    expect(tf.getKernel("Abs", "cpu")!.kernelFunc).toBe(abs)
    expect(tf.getKernel("StepwiseTestKernel", "cpu")).toBeUndefined()
  })

  it.effect("the wasm layer provides the wasm backend", () =>
    Effect.gen(function* () {
      const engine = yield* Engine.Engine
      expect(engine.backend).toBe("wasm")
      expect(engine.tf.getBackend()).toBe("wasm")
    }).pipe(Effect.provide(Engine.wasm))
  )
})

describe("fused ReLU gradient", () => {
  for (const backend of ["wasm", "cpu"] as const) {
    it(`equals dy * Step(y) (${backend})`, async () => {
      await run(use(backend))
      fc.assert(
        fc.property(
          fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
          fc.integer(),
          (shape, seed) => {
            const size = shape.reduce((a, b) => a * b, 1)
            tf.tidy(() => {
              const dy = tf.tensor(values(size, seed), shape)
              const y = tf.relu(tf.tensor(values(size, seed + 1), shape))
              expectClose(Fused.reluGrad(dy, y).dataSync(), tf.mul(dy, tf.step(y)).dataSync())
            })
          }
        ),
        { numRuns: 100 }
      )
    })
  }
})

describe("fused bias gradient", () => {
  for (const backend of ["wasm", "cpu"] as const) {
    it(`equals the sum over every axis but the last, exactly summed then rounded once (${backend})`, async () => {
      await run(use(backend))
      fc.assert(
        fc.property(
          fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 4 }),
          fc.integer(),
          (shape, seed) => {
            const size = shape.reduce((a, b) => a * b, 1)
            const c = shape[shape.length - 1]
            const v = values(size, seed)
            // float64 sums of the float32 inputs, rounded once: what the kernel promises.
            const expected = new Float64Array(c)
            const f32 = Float32Array.from(v)
            for (let i = 0; i < size; i++) expected[i % c] += f32[i]
            tf.tidy(() => {
              const dy = tf.tensor(v, shape)
              const got = Fused.biasGrad(dy)
              expect(got.shape).toEqual([c])
              expect(Array.from(got.dataSync())).toEqual(Array.from(Float32Array.from(expected)))
              expectClose(
                got.dataSync(),
                tf
                  .sum(
                    dy,
                    shape.slice(0, -1).map((_, i) => i)
                  )
                  .dataSync()
              )
            })
          }
        ),
        { numRuns: 100 }
      )
    })
  }
})

describe("fused ReLU then max-pool gradient", () => {
  for (const backend of ["wasm", "cpu"] as const) {
    it(`equals ReluGrad(MaxPoolGrad(dy)) bit for bit, ties and zeros included (${backend})`, async () => {
      await run(use(backend))
      fc.assert(
        fc.property(fc.record(poolFields), (p) => {
          fc.pre(p.pad === "same" || p.k <= Math.min(p.h, p.w))
          // Rounded values: ties and exact zeros after the ReLU are common.
          const x = values(p.n * p.h * p.w * p.c, p.seed).map((v) => Math.round(v * 2) / 2)
          tf.tidy(() => {
            const r = tf.relu(tf.tensor4d(x, [p.n, p.h, p.w, p.c]))
            const y = tf.maxPool(r, p.k, p.s, p.pad)
            const dy = tf.tensor(values(y.size, p.seed + 9), y.shape)
            const attrs = poolAttrs(p) as any
            const apart = Fused.reluGrad(
              tf.engine().runKernel("MaxPoolGrad", { dy, input: r, output: y }, attrs) as tf.Tensor,
              r
            )
            const fused = Fused.maxPoolReluGrad(dy, r, attrs)!
            // Equal up to the sign of zero (+ 0): the two-kernel form writes dy * 0 = -0 where the
            // fused one leaves the +0 it started from; both add and compare as 0.
            expect(Array.from(fused.dataSync()).map((v) => v + 0)).toEqual(
              Array.from(apart.dataSync()).map((v) => v + 0)
            )
          })
        }),
        { numRuns: 200 }
      )
    })
  }
})

describe("fused Adam on wasm (our SIMD module)", () => {
  it("equals the JavaScript kernel on cpu bit for bit: AMSGrad, L2 and decoupled decay, maximize", async () => {
    const updateOn = async (
      backend: "cpu" | "wasm",
      shapes: ReadonlyArray<ReadonlyArray<number>>,
      seed: number,
      attrs: Fused.AdamAttrs
    ) => {
      await run(use(backend))
      return tf.tidy(() => {
        const inputs: Record<string, tf.Tensor> = {}
        shapes.forEach((shape, i) => {
          const size = shape.reduce((a, b) => a * b, 1)
          const field = (name: string, k: number, f: (v: number) => number = (v) => v) => {
            inputs[Fused.inputName(name, i)] = tf.tensor(values(size, seed + 10 * i + k).map(f), [...shape])
          }
          field("param", 0)
          field("grad", 1)
          field("expAvg", 2, (v) => v / 10)
          field("expAvgSq", 3, (v) => (v * v) / 100)
          if (attrs.amsgrad) field("maxExpAvgSq", 4, (v) => (v * v) / 50)
        })
        const outs = tf.engine().runKernel(Fused.AdamUpdate, inputs as any, attrs as any) as Array<tf.Tensor>
        return outs.map((t) => Array.from(t.dataSync()))
      })
    }
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 3 }), {
          minLength: 1,
          maxLength: 4
        }),
        fc.integer(),
        fc.record({
          lr: fc.constantFrom(1e-3, 3e-4, 0.1),
          beta1: fc.constantFrom(0.9, 0.5),
          beta2: fc.constantFrom(0.999, 0.9),
          eps: fc.constantFrom(1e-8, 1e-3),
          weightDecay: fc.constantFrom(0, 0.01),
          decoupled: fc.boolean(),
          amsgrad: fc.boolean(),
          maximize: fc.boolean(),
          step: fc.integer({ min: 1, max: 1000 })
        }),
        async (shapes, seed, hyper) => {
          const attrs: Fused.AdamAttrs = { ...hyper, count: shapes.length }
          const onCpu = await updateOn("cpu", shapes, seed, attrs)
          const onWasm = await updateOn("wasm", shapes, seed, attrs)
          expect(onWasm).toEqual(onCpu)
        }
      ),
      { numRuns: 100 }
    )
  })
})

describe("fused linear gradient on wasm (our SIMD module)", () => {
  it("dW = x^T dy, db, dx = dy W^T as tfjs' ops compute them", async () => {
    await run(use("wasm"))
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 13 }),
        fc.integer({ min: 1, max: 11 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer(),
        (m, k, n, withBias, needDx, seed) => {
          tf.tidy(() => {
            const x = tf.tensor2d(values(m * k, seed), [m, k])
            const dy = tf.tensor2d(values(m * n, seed + 1), [m, n])
            const w = tf.tensor2d(values(k * n, seed + 2), [k, n])
            const got = Fused.linearGrad(x, dy, w, withBias, needDx)!
            expectClose(got.dW.dataSync(), tf.matMul(x, dy, true, false).dataSync())
            expect(got.dW.shape).toEqual([k, n])
            if (withBias)
              expect(Array.from(got.db!.dataSync())).toEqual(Array.from(Fused.biasGrad(dy).dataSync()))
            else expect(got.db).toBeUndefined()
            if (needDx) expectClose(got.dx!.dataSync(), tf.matMul(dy, tf.transpose(w)).dataSync())
            else expect(got.dx).toBeUndefined()
          })
        }
      ),
      { numRuns: 100 }
    )
  })
})
