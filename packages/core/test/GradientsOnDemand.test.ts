import { Random } from "@stepwise/data"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import { expect, it } from "vitest"
import * as Engine from "../src/Engine.js"
import { gradientsRegistered } from "../src/Gradients.js"
import * as Loss from "../src/Loss.js"
import * as ModelSpec from "../src/ModelSpec.js"
import * as Module from "../src/Module.js"

// Its own file (vitest runs each file in a fresh worker): no other test registered the configs.
it("an onDemand engine leaves tfjs' gradient configs to the first autodiff, which then matches the explicit backward", async () => {
  expect(gradientsRegistered()).toBe(false)
  await Effect.runPromise(
    Effect.scoped(
      Effect.map(Engine.make("wasm", { gradients: "onDemand" }), () => {
        expect(gradientsRegistered()).toBe(false)
        const built = ModelSpec.build(
          {
            layers: [
              { type: "Conv2d", outChannels: 2, kernelSize: 3 },
              { type: "ReLU" },
              { type: "Flatten" },
              { type: "Linear", outFeatures: 3 }
            ]
          },
          [3, 6, 6]
        )
        if (Either.isLeft(built)) throw built.left
        const model = built.right.module
        const params = Module.unsafeInit(model, Random.unsafeMake(4))
        const [xs] = Random.normals(Random.unsafeMake(5), 4 * 3 * 36)
        const data = {
          x: Float32Array.from(xs),
          y: Int32Array.from([0, 1, 2, 0]),
          shape: [4, 3, 6, 6]
        } as any
        const options = { training: true, seed: 11 }
        const explicit = Either.getOrThrow(Loss.lossAndGrads(model, Loss.crossEntropy, params, data, options))
        expect(gradientsRegistered()).toBe(false)
        const auto = Either.getOrThrow(
          Loss.lossAndGrads(model, Loss.crossEntropy, params, data, { ...options, autodiff: true })
        )
        expect(gradientsRegistered()).toBe(true)
        expect(Math.abs(explicit.loss - auto.loss)).toBeLessThan(1e-6)
        for (const s of model.specs) {
          const diff = tf.tidy(
            () => tf.max(tf.abs(tf.sub(explicit.grads[s.name], auto.grads[s.name]))).dataSync()[0]
          )
          expect(diff, s.name).toBeLessThan(1e-5)
        }
      })
    )
  )
})
