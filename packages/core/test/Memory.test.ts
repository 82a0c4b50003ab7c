import { describe, expect, it } from "@effect/vitest"
import { Random } from "@stepwise/data"
import { Adam, TfNumeric } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Either } from "effect"
import * as Cnn2 from "../src/Cnn2.js"
import * as Loss from "../src/Loss.js"
import * as Module from "../src/Module.js"
import * as Trainer from "../src/Trainer.js"
import * as F from "./fixtures.js"

describe("tensor lifetime", () => {
  for (const backend of ["wasm", "cpu"] as const) {
    it(`20 epochs of training steps keep the tensor count, bytes and wasm heap flat (${backend})`, async () => {
      await F.useEngine(backend)
      const { model } = Either.getOrThrow(Cnn2.make({ nFilters: 5, p: 0.3 }))
      const optimizer = Adam.optimizer(Adam.Config.make({ lr: 3e-4 }))(TfNumeric.TfNumeric)
      const [x] = Random.normals(Random.unsafeMake(2), 4 * 3 * 28 * 28)
      const batch = { x: Float32Array.from(x), shape: [4, 3, 28, 28], y: Int32Array.from([0, 1, 2, 1]) }
      const before = tf.memory().numTensors
      let params = Module.unsafeInit(model, Random.unsafeMake(1))
      let state = optimizer.init(params)
      // The wasm heap too: memory the module grew and never gave back would show here.
      const heap = () => (backend === "wasm" ? (tf.backend() as any).wasm.HEAPU8.buffer.byteLength : 0)
      const counts: Array<[number, number, number]> = []
      for (let epoch = 0; epoch < 20; epoch++) {
        for (let step = 0; step < 5; step++) {
          const { grads } = Either.getOrThrow(
            Loss.lossAndGrads(model, Loss.crossEntropy, params, batch, {
              training: true,
              seed: epoch * 5 + step
            })
          )
          const next = Either.getOrThrow(
            Trainer.updateAndDispose(optimizer, state, grads, params, optimizer.defaults)
          )
          params = next.params
          state = next.state
        }
        Either.getOrThrow(Loss.lossOf(model, Loss.crossEntropy, params, batch))
        counts.push([tf.memory().numTensors, tf.memory().numBytes, heap()])
      }
      // 8 parameters + 2 Adam slots of 8.
      expect(counts[0][0] - before).toBe(24)
      for (const c of counts) expect(c).toEqual(counts[0])
      tf.dispose([...Object.values(params), ...TfNumeric.stateTensors(state)])
      expect(tf.memory().numTensors).toBe(before)
    })
  }
})
