import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Random } from "@stepwise/data"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import * as Cnn2 from "../src/Cnn2.js"
import * as Engine from "../src/Engine.js"
import * as Loss from "../src/Loss.js"
import * as ModelSpec from "../src/ModelSpec.js"
import * as Module from "../src/Module.js"
import * as Safetensors from "../src/Safetensors.js"
import * as TorchWeights from "../src/TorchWeights.js"
import * as Trainer from "../src/Trainer.js"
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
      const params = Either.getOrThrow(TorchWeights.unsafeFromTorch(model, decodeAll(fixture.state_dict)))
      const logits = Loss.predict(model, params, batch)
      expect(maxAbsDiff(logits, decode(fixture.logits).data)).toBeLessThan(1e-5)
      tf.dispose(Object.values(params))
    })

    it(`one step's loss and gradients equal PyTorch's (${backend})`, async () => {
      await F.useEngine(backend)
      const params = Either.getOrThrow(TorchWeights.unsafeFromTorch(model, decodeAll(fixture.state_dict)))
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
    const params = Either.getOrThrow(TorchWeights.unsafeFromTorch(model, torch))
    const back = TorchWeights.toTorch(model, params)
    for (const [name, t] of Object.entries(torch)) {
      expect(back[name].shape).toEqual(t.shape)
      expect(maxAbsDiff(back[name].data, t.data)).toBe(0)
    }
    tf.dispose(Object.values(params))
  })
})

// ---------------------------------------------------------- state_dict files (safetensors)

const fixtureFile = (name: string) =>
  Either.getOrThrow(
    Safetensors.decode(
      new Uint8Array(readFileSync(new URL(`./fixtures/${name}.safetensors`, import.meta.url))),
      name
    )
  )

/** Is Debian's torch there to load our files into PyTorch itself? */
const python = "/usr/bin/python3"
const hasTorch = spawnSync(python, ["-c", "import torch"], { encoding: "utf8" }).status === 0
const checkScript = fileURLToPath(new URL("../scripts/torch_load_check.py", import.meta.url))

const tmp = mkdtempSync(join(tmpdir(), "stepwise-torch-"))

const run = <A, E>(effect: Effect.Effect<A, E, FileSystem.FileSystem | Path.Path>) =>
  Effect.runPromise(Effect.provide(effect, NodeContext.layer))

const hostValues = (t: tf.Tensor) => Array.from(t.dataSync())

describe.each(["cnn2", "bn"] as const)("the %s state_dict of PyTorch 1.13 (safetensors fixture)", (name) => {
  const state = fixtureFile(`torch-${name}`)
  const io = fixtureFile(`torch-${name}-io`)
  const built = Either.getOrThrow(
    ModelSpec.make(JSON.parse(io.metadata["stepwise.model"]), JSON.parse(io.metadata["stepwise.inputShape"]))
  )
  const model = built.module
  const x = io.tensors.x
  const batch = { x: x.data as Float32Array, shape: x.shape }
  const logitsOf = (w: TorchWeights.Weights) =>
    Loss.outputs(model, w.params, batch, { training: false, buffers: w.buffers }).values
  const dispose = (w: TorchWeights.Weights) =>
    tf.dispose([...Object.values(w.params), ...Object.values(w.buffers)])

  it("imports it and gives PyTorch's eval-mode logits to 1e-4", async () => {
    await F.useEngine("wasm")
    const w = Either.getOrThrow(TorchWeights.unsafeFromStateDict(model, state.tensors, "fixture"))
    expect(maxAbsDiff(logitsOf(w), io.tensors.logits.data as Float32Array)).toBeLessThan(1e-4)
    // A trainer started from them (what `train --init-from` makes) predicts the same.
    const t = Trainer.unsafeMake({ model, loss: Loss.crossEntropy, optimizer: F.adam() }, w.params, {
      buffers: w.buffers
    })
    expect(t.buffers).toBe(w.buffers)
    expect(maxAbsDiff(Trainer.outputs(t, batch).values, io.tensors.logits.data as Float32Array)).toBeLessThan(
      1e-4
    )
    Trainer.dispose(t)
  })

  it("exports exactly PyTorch's names, shapes, dtypes and values", async () => {
    await F.useEngine("wasm")
    const w = Either.getOrThrow(TorchWeights.unsafeFromStateDict(model, state.tensors))
    const ours = TorchWeights.stateDict(model, w)
    expect(Object.keys(ours).sort()).toEqual(Object.keys(state.tensors).sort())
    for (const [k, t] of Object.entries(state.tensors)) {
      expect(ours[k].shape, k).toEqual(t.shape)
      expect(ours[k].dtype, k).toBe(t.dtype)
      expect(Buffer.from(ours[k].data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true)
    }
    if (name === "bn") expect(ours["1.num_batches_tracked"]).toMatchObject({ dtype: "I64", shape: [] })
    // The same from host copies in this engine's layout (a checkpoint's tensors), without an engine.
    const host = (tree: Record<string, tf.Tensor>) =>
      Object.fromEntries(
        Object.entries(tree).map(([k, t]) => [
          k,
          Safetensors.tensor((t.dataSync() as Float32Array).slice(), t.shape)
        ])
      )
    const hostWeights = { params: host(w.params), buffers: host(w.buffers) }
    expect(Either.getOrThrow(TorchWeights.stateDictOfHost(model, hostWeights))).toEqual(ours)
    const firstParam = model.specs[0]
    const bad = TorchWeights.stateDictOfHost(
      model,
      {
        ...hostWeights,
        params: { ...hostWeights.params, [firstParam.name]: Safetensors.tensor(new Float32Array(1), [1]) }
      },
      "ckpt"
    )
    if (Either.isRight(bad)) throw new Error("expected a WeightMismatch")
    expect(bad.left).toMatchObject({ parameter: firstParam.name, expected: firstParam.shape, actual: [1] })
    expect(bad.left.message).toMatch(/^ckpt: weights for .*weight: shape \[1\], the model wants/)
    dispose(w)
  })

  it("export -> file -> import is bit-identical, metadata included", async () => {
    const engine = await F.useEngine("wasm")
    const w = Either.getOrThrow(TorchWeights.unsafeFromStateDict(model, state.tensors))
    const path = join(tmp, `${name}-roundtrip.safetensors`)
    const metadata = {
      classes: ["paper", "rock", "scissors"],
      normalizer: { mean: [0.1, 0.2, 0.3], std: [0.5, 0.25, 0.125] },
      model: Either.getOrThrow(ModelSpec.decode(JSON.parse(io.metadata["stepwise.model"]))),
      inputShape: [3, 28, 28]
    }
    await run(TorchWeights.write(path, model, w, metadata))
    // load makes tensors: it requires the engine (the one this file holds).
    const back = await run(Effect.provideService(TorchWeights.load(path), Engine.Engine, engine))
    expect(back.metadata).toEqual(metadata)
    expect(back.built.layers).toEqual(built.layers)
    for (const part of ["params", "buffers"] as const) {
      expect(Object.keys(back.weights[part]).sort()).toEqual(Object.keys(w[part]).sort())
      for (const [k, t] of Object.entries(w[part])) {
        const a = Buffer.from((t.dataSync() as Float32Array).buffer)
        expect(Buffer.from((back.weights[part][k].dataSync() as Float32Array).buffer).equals(a), k).toBe(true)
      }
    }
    const file = fixtureFile(`torch-${name}`)
    const ours = Either.getOrThrow(Safetensors.decode(new Uint8Array(readFileSync(path)), path))
    expect(ours.metadata).toMatchObject({ format: "pt", classes: '["paper","rock","scissors"]' })
    expect(Object.keys(ours.tensors).sort()).toEqual(Object.keys(file.tensors).sort())
    dispose(w)
    dispose(back.weights)
  })

  it.skipIf(!hasTorch)("PyTorch loads our export (strict) and computes our logits to 1e-4", async () => {
    await F.useEngine("wasm")
    // Weights of our own (fresh initialisation), so PyTorch's logits are not its fixture's.
    const fixtureWeights = Either.getOrThrow(TorchWeights.unsafeFromStateDict(model, state.tensors))
    const w = { params: Module.unsafeInit(model, Random.unsafeMake(3)), buffers: fixtureWeights.buffers }
    tf.dispose(Object.values(fixtureWeights.params))
    const weightsPath = join(tmp, `${name}-ours.safetensors`)
    const ioPath = join(tmp, `${name}-ours-io.safetensors`)
    await run(TorchWeights.write(weightsPath, model, w, { classes: ["paper", "rock", "scissors"] }))
    const logits = logitsOf(w)
    await run(
      Safetensors.write(ioPath, {
        tensors: { x, logits: Safetensors.tensor(logits, io.tensors.logits.shape) },
        metadata: {}
      })
    )
    const r = spawnSync(python, [checkScript, name, weightsPath, ioPath], { encoding: "utf8" })
    expect(r.stderr).toBe("")
    const result = JSON.parse(r.stdout.trim())
    expect(result.names.sort()).toEqual(Object.keys(state.tensors).sort())
    expect(result.metadata.classes).toBe('["paper","rock","scissors"]')
    if (name === "bn") expect(result.dtypes["1.num_batches_tracked"]).toBe("torch.int64")
    expect(result.maxAbsDiff).toBeLessThan(1e-4)
    dispose(w)
  })
})

describe("a state_dict that does not fit", () => {
  const state = fixtureFile("torch-bn")
  const io = fixtureFile("torch-bn-io")
  const model = Either.getOrThrow(
    ModelSpec.make(JSON.parse(io.metadata["stepwise.model"]), [3, 28, 28])
  ).module

  it("names every missing and unexpected tensor, and the file", async () => {
    await F.useEngine("wasm")
    const { "12.bias": _, "1.running_var": __, ...rest } = state.tensors
    const r = TorchWeights.unsafeFromStateDict(
      model,
      { ...rest, "13.weight": state.tensors["12.weight"] },
      "w.safetensors"
    )
    if (Either.isRight(r)) throw new Error("expected a WeightMismatch")
    expect(r.left).toMatchObject({
      _tag: "WeightMismatch",
      // parameters first, then buffers
      parameter: "12.bias",
      missing: ["12.bias", "1.running_var"],
      unexpected: ["13.weight"],
      path: "w.safetensors"
    })
    expect(r.left.message).toBe(
      "w.safetensors: weights do not match the model: missing 12.bias, 1.running_var; unexpected 13.weight"
    )
  })

  it("names the tensor and both shapes (PyTorch's layout), parameter or buffer", async () => {
    await F.useEngine("wasm")
    const before = tf.memory().numTensors
    const wrongParam = TorchWeights.unsafeFromStateDict(model, {
      ...state.tensors,
      "0.weight": Safetensors.tensor(new Float32Array(4 * 3 * 9), [4, 9, 3])
    })
    if (Either.isRight(wrongParam)) throw new Error("expected a WeightMismatch")
    expect(wrongParam.left).toMatchObject({
      parameter: "0.weight",
      expected: [4, 3, 3, 3],
      actual: [4, 9, 3]
    })
    const wrongBuffer = TorchWeights.unsafeFromStateDict(model, {
      ...state.tensors,
      "5.running_mean": Safetensors.tensor(new Float32Array(5), [5])
    })
    if (Either.isRight(wrongBuffer)) throw new Error("expected a WeightMismatch")
    expect(wrongBuffer.left.message).toBe("weights for 5.running_mean: shape [5], the model's buffer is [6]")
    expect(tf.memory().numTensors).toBe(before)
  })

  it("wants float32 values, and accepts the batch count as int64 or float32", async () => {
    await F.useEngine("wasm")
    const f64 = TorchWeights.unsafeFromStateDict(model, {
      ...state.tensors,
      "0.bias": Safetensors.tensor(new Float64Array(4), [4])
    })
    if (Either.isRight(f64)) throw new Error("expected a WeightMismatch")
    expect(f64.left.message).toMatch(/^weights for 0.bias: is F64, expected F32/)
    const count = TorchWeights.unsafeFromStateDict(model, {
      ...state.tensors,
      "1.num_batches_tracked": Safetensors.tensor(new Float32Array([3]), [])
    })
    if (Either.isLeft(count)) throw count.left
    expect(hostValues(count.right.buffers["1.num_batches_tracked"])).toEqual([3])
    tf.dispose([...Object.values(count.right.params), ...Object.values(count.right.buffers)])
  })
})
