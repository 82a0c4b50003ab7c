/** Small deterministic data and models for the training tests. */
import { expect } from "@effect/vitest"
import { DataLoader, Random, TensorDataset } from "@stepwise/data"
import { Adam, type Optimizer, SGD, TfNumeric } from "@stepwise/optim"
import type * as tf from "@tensorflow/tfjs-core"
import { Effect, Either, Scope } from "effect"
import * as Cnn2 from "../src/Cnn2.js"
import * as Engine from "../src/Engine.js"
import * as Loss from "../src/Loss.js"
import * as Module from "../src/Module.js"
import * as Trainer from "../src/Trainer.js"

/**
 * Holds the engine on `backend` for the rest of the test file (a scope nobody closes: the
 * worker ends with the file). For `it(...)` tests; `it.effect` tests get `Engine.wasm` as a layer.
 */
export const useEngine = (backend: Engine.BackendName = "wasm") =>
  Effect.runPromise(Effect.flatMap(Scope.make(), (scope) => Scope.extend(Engine.make(backend), scope)))

/** Runs `f` with the engine on `backend`; our kernels are restored to the stock ones afterwards. */
export const withEngine = <A>(backend: Engine.BackendName, f: (engine: Engine.EngineService) => A) =>
  Effect.runPromise(Effect.scoped(Effect.map(Engine.make(backend), f)))

/**
 * `n` images 3 x size x size whose class is the channel with the brightest centre: learnable
 * by CNN2 within a few epochs, noisy enough that losses differ batch to batch.
 */
export const images = (n: number, size: number, seed: number): TensorDataset.TensorDataset => {
  const [noise, s1] = Random.normals(Random.unsafeMake(seed), n * 3 * size * size)
  const y = new Int32Array(n)
  let s = s1
  for (let i = 0; i < n; i++) {
    const [c, next] = Random.nextInt(s, 3)
    s = next
    y[i] = c
    for (let h = size / 4; h < (3 * size) / 4; h++) {
      for (let w = size / 4; w < (3 * size) / 4; w++) noise[((i * 3 + c) * size + h) * size + w] += 1.5
    }
  }
  return Either.getOrThrow(
    TensorDataset.make({ x: Float32Array.from(noise), y, sampleShape: [3, size, size] })
  )
}

export const loaders = (batchSize = 8) => ({
  train: Either.getOrThrow(
    DataLoader.fromTensorDataset(images(40, 12, 1), { batchSize, shuffle: true, seed: 7, prefetch: 0 })
  ),
  val: Either.getOrThrow(DataLoader.fromTensorDataset(images(16, 12, 2), { batchSize, prefetch: 0 }))
})

export const cnn = (p = 0.3) => Either.getOrThrow(Cnn2.make({ nFilters: 3, p, imageSize: 12 })).model

export const adam = (lr = 3e-3): Optimizer.Optimizer<tf.Tensor> =>
  Effect.runSync(Adam.make({ lr }))(TfNumeric.TfNumeric)
export const sgd = (lr: number, momentum = 0, nesterov = false): Optimizer.Optimizer<tf.Tensor> =>
  Effect.runSync(SGD.make({ lr, momentum, nesterov }))(TfNumeric.TfNumeric)

export const trainer = (options: { p?: number; lr?: number; batchSize?: number } = {}): Trainer.Trainer => {
  const l = loaders(options.batchSize)
  return Trainer.unsafeMake(
    {
      model: cnn(options.p),
      loss: Loss.crossEntropy,
      optimizer: adam(options.lr),
      trainLoader: l.train,
      valLoader: l.val
    },
    Random.unsafeMake(13)
  )
}

export const values = (params: Readonly<Record<string, tf.Tensor>>) =>
  Object.fromEntries(Object.entries(params).map(([k, v]) => [k, Array.from(v.dataSync())]))

export const cnn5 = () => Either.getOrThrow(Cnn2.make({ nFilters: 5, p: 0.3 })).model

export const cnn5Params = () => Module.unsafeInit(cnn5(), Random.unsafeMake(5))

/** Two runs that must be the same: losses, validation losses, learning rates and parameters. */
export const expectSameRun = (
  actual: Trainer.Trainer<any, any>,
  expected: Trainer.Trainer<any, any>
): void => {
  expect(actual.losses).toEqual(expected.losses)
  expect(actual.valLosses).toEqual(expected.valLosses)
  expect(actual.learningRates).toEqual(expected.learningRates)
  expect(values(actual.params)).toEqual(values(expected.params))
}
