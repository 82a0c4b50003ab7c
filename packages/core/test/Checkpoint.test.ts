import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { expect, layer } from "@effect/vitest"
import { Random } from "@stepwise/data"
import { ReduceLROnPlateau, StepLR } from "@stepwise/optim"
import { Effect, Either } from "effect"
import * as Checkpoint from "../src/Checkpoint.js"
import * as Engine from "../src/Engine.js"
import * as Loss from "../src/Loss.js"
import * as Safetensors from "../src/Safetensors.js"
import * as Trainer from "../src/Trainer.js"
import * as F from "./fixtures.js"

const tmp = Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeTempDirectoryScoped())

layer(Engine.wasm)("Checkpoint", (it) => {
  it.scoped("resuming from a checkpoint at epoch 2 gives exactly the losses of an uninterrupted run", () =>
    Effect.gen(function* () {
      const dir = yield* tmp
      const path = `${dir}/run.safetensors`
      const scheduler = yield* StepLR.make({ stepSize: 1, gamma: 0.5 })
      const t = Trainer.setScheduler(F.trainer({ p: 0.3 }), scheduler)
      const whole = yield* Trainer.train(t, 4, 42)
      const half = yield* Trainer.train(t, 2, 42, { onEpochEnd: Checkpoint.everyEpoch(path) })
      const resumed = yield* Checkpoint.resume(path, t)
      expect(resumed.totalEpochs).toBe(2)
      expect(resumed.optState.step).toBe(10)
      expect(resumed.schedState).toEqual(half.schedState)
      expect(F.values(resumed.params)).toEqual(F.values(half.params))
      const finished = yield* Trainer.train(resumed, 2, 42)
      F.expectSameRun(finished, whole)
      for (const x of [t, whole, half, resumed, finished]) Trainer.dispose(x)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("after a NonFinite loss the last good checkpoint is on disk", () =>
    Effect.gen(function* () {
      const path = `${yield* tmp}/run.safetensors`
      let poisoned = false
      // Cross-entropy that turns NaN once the second epoch has been saved.
      const loss: Loss.Loss = {
        name: "PoisonedCrossEntropy",
        evaluate: (z, shape, y) =>
          Either.map(Loss.crossEntropy.evaluate(z, shape, y), (r) =>
            poisoned ? { loss: Number.NaN, grad: r.grad } : r
          )
      }
      const t = Trainer.make({ ...F.trainer().config, loss }, Random.unsafeMake(13))
      const err = yield* Effect.flip(
        Trainer.train(t, 4, 42, {
          onEpochEnd: (s) =>
            Effect.zipRight(
              Checkpoint.save(path, s),
              Effect.sync(() => {
                poisoned = s.totalEpochs === 2
              })
            )
        })
      )
      expect(err).toMatchObject({ _tag: "NonFinite", epoch: 2, batch: 0, what: "loss" })
      poisoned = false
      const saved = yield* Checkpoint.resume(path, t)
      expect(saved.totalEpochs).toBe(2)
      const clean = yield* Trainer.train(t, 2, 42)
      expect(saved.losses).toEqual(clean.losses)
      expect(F.values(saved.params)).toEqual(F.values(clean.params))
      for (const x of [t, saved, clean]) Trainer.dispose(x)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("an untrained trainer's checkpoint records the seed it was made with (issue 10.12)", () =>
    Effect.gen(function* () {
      const path = `${yield* tmp}/epoch-0.safetensors`
      const base = F.trainer()
      const t = Trainer.make(base.config, Random.unsafeMake(13), { seed: 7 })
      yield* Checkpoint.save(path, t)
      const s = yield* Checkpoint.load(path)
      expect(s.meta.seed).toBe(7)
      expect(s.meta.totalEpochs).toBe(0)
      Trainer.dispose(base)
      Trainer.dispose(t)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("is a safetensors file with params/ and optimizer/ tensors and JSON metadata", () =>
    Effect.gen(function* () {
      const dir = yield* tmp
      const path = `${dir}/c.safetensors`
      // ReduceLROnPlateau starts with best = Infinity, which JSON cannot hold.
      const plateau = yield* ReduceLROnPlateau.make({ patience: 0 })
      const t = Trainer.setScheduler(F.trainer(), plateau)
      yield* Checkpoint.save(path, t)
      const file = yield* Safetensors.read(path)
      expect(Object.keys(file.tensors).sort()).toEqual(
        [
          ...Object.keys(t.params).map((k) => `params/${k}`),
          ...Object.keys(t.params).flatMap((k) => [`optimizer/expAvg/${k}`, `optimizer/expAvgSq/${k}`])
        ].sort()
      )
      const meta = JSON.parse(file.metadata.stepwise)
      expect(meta).toMatchObject({
        format: "stepwise.checkpoint/1",
        totalEpochs: 0,
        seed: 42,
        optimizer: { name: "Adam", step: 0 }
      })
      expect(meta.scheduler.name).toBe(plateau.name)
      const back = yield* Checkpoint.resume(path, t)
      expect(back.schedState).toEqual(t.schedState)
      expect(JSON.stringify(back.schedState)).toContain("null") // Infinity inside, as JSON shows it
      expect(yield* FileSystem.FileSystem.pipe(Effect.flatMap((fs) => fs.readDirectory(dir)))).toEqual([
        "c.safetensors"
      ])
      Trainer.dispose(t)
      Trainer.dispose(back)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("refuses a checkpoint that does not fit, naming what differs", () =>
    Effect.gen(function* () {
      const dir = yield* tmp
      const path = `${dir}/c.safetensors`
      const t = F.trainer()
      yield* Checkpoint.save(path, t)
      const sgd = Trainer.setOptimizer(t, F.sgd(0.1))
      const wrongOpt = yield* Effect.flip(Checkpoint.resume(path, sgd))
      expect(wrongOpt).toMatchObject({ _tag: "CheckpointError", path })
      expect(wrongOpt.message).toMatch(/optimizer Adam, restoring into SGD/)
      const wrongModel = Trainer.make({ ...t.config, model: F.cnn5() }, F.cnn5Params())
      const e = yield* Effect.flip(Checkpoint.resume(path, wrongModel))
      expect(e.message).toMatch(/parameter conv1.bias has shape \[3\], the model wants \[5\]/)
      const fs = yield* FileSystem.FileSystem
      yield* fs.writeFile(
        `${dir}/plain.safetensors`,
        Either.getOrThrow(Safetensors.encode({ tensors: {}, metadata: {} }))
      )
      const plain = yield* Effect.flip(Checkpoint.resume(`${dir}/plain.safetensors`, t))
      expect(plain).toMatchObject({
        _tag: "CheckpointError",
        reason: "no stepwise metadata: not a stepwise checkpoint"
      })
      yield* fs.writeFile(
        `${dir}/bad.safetensors`,
        Either.getOrThrow(
          Safetensors.encode({
            tensors: {},
            metadata: { stepwise: JSON.stringify({ format: "stepwise.checkpoint/1" }) }
          })
        )
      )
      const bad = yield* Effect.flip(Checkpoint.resume(`${dir}/bad.safetensors`, t))
      expect(bad.message).toMatch(/: metadata: .*totalEpochs/s)
      for (const x of [t, sgd, wrongModel]) Trainer.dispose(x)
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
