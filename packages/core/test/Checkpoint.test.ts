import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { expect, layer } from "@effect/vitest"
import { Random } from "@stepwise/data"
import { OptimizerState, ReduceLROnPlateau, StepLR } from "@stepwise/optim"
import { Effect, Either } from "effect"
import * as Checkpoint from "../src/Checkpoint.js"
import * as Engine from "../src/Engine.js"
import * as Loss from "../src/Loss.js"
import * as ModelSpec from "../src/ModelSpec.js"
import * as Safetensors from "../src/Safetensors.js"
import * as Trainer from "../src/Trainer.js"
import * as F from "./fixtures.js"

/** A trainer's scheduler state as its schema encodes it. */
const encoded = (t: Trainer.Trainer<any, any>) => Either.getOrThrow(t.scheduled!.encode())

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
      expect(encoded(resumed)).toEqual({ epoch: 2, base: { lr: 0.003, beta1: 0.9 } })
      expect(encoded(resumed)).toEqual(encoded(half))
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
      const t = Trainer.unsafeMake({ ...F.trainer().config, loss }, Random.unsafeMake(13))
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
      const t = Trainer.unsafeMake(base.config, Random.unsafeMake(13), { seed: 7 })
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
        format: "stepwise.checkpoint/2",
        totalEpochs: 0,
        seed: 42,
        optimizer: { name: "Adam", step: 0 },
        run: null
      })
      expect(meta.scheduler).toEqual({
        name: "ReduceLROnPlateau",
        state: {
          base: { lr: 0.003, beta1: 0.9 },
          lr: 0.003,
          best: "Infinity",
          numBadEpochs: 0,
          cooldownCounter: 0,
          lastEpoch: 0
        }
      })
      const back = yield* Checkpoint.resume(path, t)
      expect(encoded(back)).toEqual(encoded(t))
      back.scheduled!.use((_, s) =>
        expect((s as ReduceLROnPlateau.State).best).toBe(Number.POSITIVE_INFINITY)
      )
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
      const wrongModel = Trainer.unsafeMake({ ...t.config, model: F.cnn5() }, F.cnn5Params())
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
            metadata: { stepwise: JSON.stringify({ format: "stepwise.checkpoint/2" }) }
          })
        )
      )
      const bad = yield* Effect.flip(Checkpoint.resume(`${dir}/bad.safetensors`, t))
      expect(bad.message).toMatch(/: metadata: .*totalEpochs/s)
      for (const x of [t, sgd, wrongModel]) Trainer.dispose(x)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped(
    "format 2 carries the run: the model rebuilt from the file alone gives the trainer's outputs",
    () =>
      Effect.gen(function* () {
        const path = `${yield* tmp}/run.safetensors`
        const t = yield* Trainer.train(F.trainer({ p: 0.3 }), 1, 42)
        const run: Checkpoint.Run = {
          model: ModelSpec.cnn2({ nFilters: 3, p: 0.3 }),
          inputShape: [3, 12, 12],
          classes: ["red", "green", "blue"],
          normalizer: { mean: [0.1, 0.2, 0.3], std: [1, 2, 3] },
          recipe: { epochs: 1, optimizer: { name: "Adam" } }
        }
        yield* Checkpoint.save(path, t, run)
        const file = yield* Safetensors.read(path)
        const meta = JSON.parse(file.metadata.stepwise)
        expect(meta.format).toBe("stepwise.checkpoint/2")
        expect(meta.run.inputShape).toEqual([3, 12, 12])
        expect(meta.run.classes).toEqual(["red", "green", "blue"])
        expect(meta.run.normalizer).toEqual({ mean: [0.1, 0.2, 0.3], std: [1, 2, 3] })
        expect(meta.run.recipe).toEqual({ epochs: 1, optimizer: { name: "Adam" } })
        expect(meta.run.model.layers[0].layers[0]).toEqual({
          type: "Conv2d",
          name: "conv1",
          outChannels: 3,
          kernelSize: 3
        })
        const s = yield* Checkpoint.load(path)
        expect(s.meta.run).toEqual(run)
        expect(s.optimizer.step).toBe(5)
        expect(Object.keys(OptimizerState.slotsOf(s.optimizer)).sort()).toEqual(["expAvg", "expAvgSq"])
        const m = yield* Checkpoint.trained(s, path)
        const x = F.images(4, 12, 9)
        const batch = { x: Float32Array.from(x.x), shape: [4, 3, 12, 12] }
        const fromFile = Loss.outputs(m.built.module, m.params, batch, {
          training: false,
          buffers: m.buffers
        })
        expect(Array.from(fromFile.values)).toEqual(Array.from(Trainer.predict(t, batch)))
        Trainer.dispose(t)
        Trainer.dispose({ params: m.params, buffers: m.buffers, optState: { step: 0 } })
      }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("reads a format-1 file: resumes exactly; run info absent fails naming the file", () =>
    Effect.gen(function* () {
      const dir = yield* tmp
      const plateau = yield* ReduceLROnPlateau.make({ patience: 0 })
      const t = Trainer.setScheduler(F.trainer(), plateau)
      const once = yield* Trainer.train(t, 1, 42)
      const v2 = Checkpoint.toFile(Either.getOrThrow(Checkpoint.snapshot(once)))
      const meta2 = JSON.parse(Either.getOrThrow(v2).metadata.stepwise)
      // format 1 as its writer made it: no run, non-finite numbers as {"$number": ...}
      const { run: _, ...rest } = meta2
      const meta1 = {
        ...rest,
        format: "stepwise.checkpoint/1",
        scheduler: {
          name: "ReduceLROnPlateau",
          state: { ...rest.scheduler.state, best: rest.scheduler.state.best }
        },
        valLosses: [{ $number: "Infinity" }]
      }
      const path = `${dir}/v1.safetensors`
      const fs = yield* FileSystem.FileSystem
      yield* fs.writeFile(
        path,
        Either.getOrThrow(
          Safetensors.encode({
            tensors: Either.getOrThrow(v2).tensors,
            metadata: { stepwise: JSON.stringify(meta1) }
          })
        )
      )
      const s = yield* Checkpoint.load(path)
      expect(s.fileFormat).toBe("stepwise.checkpoint/1")
      expect(s.meta.valLosses).toEqual([Number.POSITIVE_INFINITY])
      expect(s.meta.run).toBeNull()
      const back = yield* Checkpoint.restore(t, s, path)
      expect(back.totalEpochs).toBe(1)
      expect(encoded(back)).toEqual(encoded(once))
      expect(F.values(back.params)).toEqual(F.values(once.params))
      const noRun = yield* Effect.flip(Checkpoint.trained(s, path))
      expect(noRun).toMatchObject({ _tag: "CheckpointError", path })
      expect(noRun.message).toBe(
        `checkpoint ${path}: no run info (model, classes, normalizer): a format-1 checkpoint; evaluate it from its run folder`
      )
      // a format-1 ReduceLROnPlateau wrote its initial best as null: read as inf
      const fresh = {
        ...meta1,
        scheduler: { name: "ReduceLROnPlateau", state: { ...meta1.scheduler.state, best: null } }
      }
      yield* fs.writeFile(
        path,
        Either.getOrThrow(
          Safetensors.encode({
            tensors: Either.getOrThrow(v2).tensors,
            metadata: { stepwise: JSON.stringify(fresh) }
          })
        )
      )
      const nullBest = yield* Checkpoint.resume(path, t)
      expect(encoded(nullBest)).toMatchObject({ best: "Infinity" })
      for (const x of [t, once, back, nullBest]) Trainer.dispose(x)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("a damaged optimizer state or scheduler state fails with CheckpointError, cause kept", () =>
    Effect.gen(function* () {
      const dir = yield* tmp
      const t = Trainer.setScheduler(F.trainer(), yield* StepLR.make({ stepSize: 1 }))
      const file = Either.getOrThrow(Checkpoint.toFile(Either.getOrThrow(Checkpoint.snapshot(t))))
      const meta = JSON.parse(file.metadata.stepwise)
      const fs = yield* FileSystem.FileSystem
      const path = `${dir}/bad.safetensors`
      yield* fs.writeFile(
        path,
        Either.getOrThrow(
          Safetensors.encode({
            tensors: file.tensors,
            metadata: {
              stepwise: JSON.stringify({ ...meta, scheduler: { name: "StepLR", state: { epoch: "x" } } })
            }
          })
        )
      )
      const e = yield* Effect.flip(Checkpoint.resume(path, t))
      expect(e).toMatchObject({ _tag: "CheckpointError", path })
      expect(e.message).toMatch(/scheduler state: .*epoch/s)
      expect(e.cause).toBeDefined()
      const stray = {
        ...file.tensors,
        "optimizer/expAvg/fc9.bias": Safetensors.tensor(new Float32Array(3), [3])
      }
      yield* fs.writeFile(
        path,
        Either.getOrThrow(Safetensors.encode({ tensors: stray, metadata: file.metadata }))
      )
      const e2 = yield* Effect.flip(Checkpoint.resume(path, t))
      expect(e2.message).toMatch(
        /optimizer slot expAvg has an entry fc9.bias \[3\] that matches no parameter/
      )
      yield* fs.writeFile(
        path,
        Either.getOrThrow(
          Safetensors.encode({
            tensors: file.tensors,
            metadata: { stepwise: JSON.stringify({ ...meta, optimizer: { name: "Adam", step: -1 } }) }
          })
        )
      )
      const e3 = yield* Effect.flip(Checkpoint.load(path))
      expect(e3.message).toMatch(/metadata: .*step/s)
      Trainer.dispose(t)
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
