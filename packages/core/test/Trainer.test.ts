import { expect, layer } from "@effect/vitest"
import { DataLoader, Random, TensorDataset } from "@stepwise/data"
import { Scheduler } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Chunk, Effect, Either, Option, Schema, Stream } from "effect"
import { expectTypeOf } from "vitest"
import * as Engine from "../src/Engine.js"
import * as Loss from "../src/Loss.js"
import * as Metrics from "../src/Metrics.js"
import * as Module from "../src/Module.js"
import * as Trainer from "../src/Trainer.js"
import * as F from "./fixtures.js"

/** A scheduler that records every signal it gets and halves the lr at each step. */
const recording = (
  cadence: Scheduler.Cadence,
  log: Array<Scheduler.Signal | undefined>,
  overrides: Partial<Omit<Scheduler.Scheduler<number>, "start">> = {}
): Scheduler.Scheduler<number> =>
  Scheduler.make({
    name: `Recording(${cadence})`,
    cadence,
    init: () => 0,
    step: (k, signal) => {
      log.push(signal)
      return Either.right(k + 1)
    },
    current: (k) => ({ lr: 0.01 * 0.5 ** k }),
    stateSchema: Scheduler.jsonState(Schema.Number),
    ...overrides
  })

layer(Engine.wasm)("Trainer", (it) => {
  it.effect("one step is params - lr * grad for plain SGD, and leaves its inputs intact", () =>
    Effect.gen(function* () {
      const model = Module.Sequential([
        ["fc", Either.getOrThrow(Module.Linear({ inFeatures: 4, outFeatures: 3 }))]
      ])
      const params = Module.unsafeInit(model, Random.unsafeMake(3))
      const before = F.values(params)
      const batch = {
        x: Float32Array.from([1, 2, 3, 4, -1, 0, 1, 0]),
        shape: [2, 4],
        y: Int32Array.from([2, 0])
      }
      const config = { model, loss: Loss.crossEntropy, optimizer: F.sgd(0.1) }
      const g = Either.getOrThrow(
        Loss.lossAndGrads(model, Loss.crossEntropy, params, batch, { training: true })
      )
      const expected = Object.fromEntries(
        Object.entries(params).map(([k, p]) => {
          const gv = g.grads[k].dataSync()
          return [k, Array.from(p.dataSync(), (v, i) => Math.fround(v - Math.fround(0.1 * gv[i])))]
        })
      )
      const r = Either.getOrThrow(
        Trainer.trainStep(
          config,
          params,
          config.optimizer.init(params),
          { lr: 0.1 },
          batch,
          Random.unsafeMake(0)
        )
      )
      expect(r.loss).toBeCloseTo(g.loss, 6)
      for (const [k, v] of Object.entries(F.values(r.params))) {
        v.forEach((x, i) => {
          expect(x).toBeCloseTo(expected[k][i], 6)
        })
      }
      expect(F.values(params)).toEqual(before)
      for (const x of Object.values(g.grads)) x.dispose()
      Trainer.dispose({ params: r.params, optState: r.optState })
      for (const x of Object.values(params)) x.dispose()
    })
  )

  it.effect("the same seed gives bit-identical losses; another seed other dropout masks", () =>
    Effect.gen(function* () {
      const t = F.trainer({ p: 0.3, lr: 0.01 })
      const a = yield* Trainer.train(t, 2, 42)
      const b = yield* Trainer.train(t, 2, 42)
      const c = yield* Trainer.train(t, 2, 7)
      F.expectSameRun(a, b)
      expect(c.losses[0]).not.toEqual(a.losses[0])
      expect(a.losses).toHaveLength(2)
      expect(a.valLosses).toHaveLength(2)
      expect(a.totalEpochs).toBe(2)
      // It learns: the synthetic task is easy.
      const longer = yield* Trainer.train(a, 13, 42)
      expect(longer.losses[14]).toBeLessThan(longer.losses[0] * 0.5)
      const rows = yield* Trainer.loaderApply(F.loaders().val, (batch) => Trainer.correct(longer, batch))
      expect(Metrics.accuracy(rows as Metrics.PerClass)).toBeGreaterThan(0.8)
      for (const x of [t, a, b, c, longer]) Trainer.dispose(x)
    })
  )

  it.effect("resuming from epoch k gives exactly the losses of an uninterrupted run", () =>
    Effect.gen(function* () {
      const t = F.trainer({ p: 0.3 })
      const whole = yield* Trainer.train(t, 4, 42)
      const half = yield* Trainer.train(t, 2, 42)
      const resumed = yield* Trainer.train(half, 2, 42)
      F.expectSameRun(resumed, whole)
      for (const x of [t, whole, half, resumed]) Trainer.dispose(x)
    })
  )

  it.effect(
    "tensor counts, tensor bytes and the wasm heap stay flat over 20 epochs; train() leaves its input alive and unshared",
    () =>
      Effect.gen(function* () {
        const t = F.trainer({ p: 0.3 })
        const start = tf.memory().numTensors
        const counts: Array<number> = []
        const bytes: Array<number> = []
        const heap: Array<number> = []
        // The wasm module's linear memory: it only grows, so it must stop growing after warm-up.
        const wasmHeap = () =>
          (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length
        const done = yield* Trainer.train(t, 20, 42, {
          onEpochEnd: () =>
            Effect.sync(() => {
              counts.push(tf.memory().numTensors)
              bytes.push(tf.memory().numBytes)
              heap.push(wasmHeap())
            })
        })
        // During training: the caller's state plus the run's own state, the same every epoch.
        const own = Object.keys(t.params).length * 3 // params + Adam's expAvg and expAvgSq
        expect(counts).toEqual(Array(20).fill(start + own))
        expect(new Set(bytes).size).toBe(1)
        expect(new Set(heap.slice(2)).size).toBe(1)
        expect(tf.memory().numTensors).toBe(start + own)
        Trainer.dispose(t)
        expect(Object.values(done.params).every((x) => !x.isDisposed)).toBe(true)
        Trainer.dispose(done)
        expect(tf.memory().numTensors).toBe(start - own)
      })
  )

  it.effect(
    "epochs emits one result per epoch, the same run as train, each trainer valid until the next pull",
    () =>
      Effect.gen(function* () {
        const t = Trainer.setScheduler(F.trainer({ p: 0.3 }), recording("batch", []))
        const n = t.config.trainLoader!.numBatches
        const whole = yield* Trainer.train(t, 3, 42)
        const start = tf.memory().numTensors
        const seen: Array<Trainer.EpochResult> = []
        const counts: Array<number> = []
        const last = yield* Trainer.epochs(t, { epochs: 3, seed: 42 }).pipe(
          Stream.tap((r) =>
            Effect.sync(() => {
              seen.push(r)
              counts.push(tf.memory().numTensors)
              // The trainer just emitted is alive; the one emitted before was released by this pull.
              expect(Object.values(r.trainer.params).every((p) => !p.isDisposed)).toBe(true)
              const previous = seen.at(-2)
              if (previous !== undefined)
                expect(Object.values(previous.trainer.params).every((p) => p.isDisposed)).toBe(true)
            })
          ),
          Stream.runLast,
          Effect.map((r) => r.pipe(Option.getOrThrow))
        )
        expect(seen.map((r) => r.epoch)).toEqual([0, 1, 2])
        expect(seen.map((r) => r.loss)).toEqual(whole.losses)
        expect(seen.map((r) => r.valLoss)).toEqual(whole.valLosses)
        expect(seen.map((r) => r.lr)).toEqual(whole.learningRates)
        // Per mini-batch: the lr each step used (halved by every batch step), and the mean of the losses.
        expect(seen[1].learningRates).toEqual(Array.from({ length: n }, (_, i) => 0.01 * 0.5 ** (n + i)))
        expect(seen[0].batchLosses).toHaveLength(n)
        expect(seen[0].loss).toBeCloseTo(seen[0].batchLosses.reduce((a, b) => a + b, 0) / n, 12)
        expect(seen.every((r) => r.seconds >= 0)).toBe(true)
        F.expectSameRun(last.trainer, whole)
        expect(last.trainer.seed).toBe(42)
        // The stream holds one trainer at a time: the caller's plus one of its own.
        const own = Object.keys(t.params).length * 3
        expect(counts).toEqual([start + own, start + own, start + own])
        // A prefix is the same run: `take` stops pulling, and the taken trainer is the caller's.
        const two = yield* Trainer.epochs(t, { epochs: 10, seed: 42 }).pipe(Stream.take(2), Stream.runLast)
        const twoTrainer = two.pipe(Option.getOrThrow).trainer
        expect(twoTrainer.losses).toEqual(whole.losses.slice(0, 2))
        for (const x of [t, whole, last.trainer, twoTrainer]) Trainer.dispose(x)
        expect(tf.memory().numTensors).toBe(start - 2 * own)
      })
  )

  it.effect('a NaN validation loss is NonFinite at batch "validation", and the message says so', () =>
    Effect.gen(function* () {
      const ds = F.images(16, 12, 2)
      const x = Float32Array.from(ds.x)
      x[3] = Number.NaN
      const val = yield* DataLoader.fromTensorDataset(yield* TensorDataset.make({ ...ds, x }), {
        batchSize: 8,
        prefetch: 0
      })
      // A linear model, so one NaN input makes a NaN logit (max-pooling could skip it).
      const model = Module.Sequential([
        ["flatten", Module.Flatten()],
        ["fc", Either.getOrThrow(Module.Linear({ inFeatures: 3 * 144, outFeatures: 3 }))]
      ])
      const base = Trainer.unsafeMake(
        { model, loss: Loss.crossEntropy, optimizer: F.adam(), trainLoader: F.loaders().train },
        Random.unsafeMake(1)
      )
      const t = Trainer.setLoaders(base, base.config.trainLoader!, val)
      const start = tf.memory().numTensors
      const err = yield* Effect.flip(Trainer.train(t, 2))
      expect(err).toMatchObject({ _tag: "NonFinite", epoch: 0, batch: "validation", what: "loss" })
      expect(err.message).toBe("training diverged: validation loss NaN at epoch 1")
      expect(tf.memory().numTensors).toBe(start)
      Trainer.dispose(base)
    })
  )

  it.effect("schedulers step by cadence: per batch, per epoch, or with the validation loss", () =>
    Effect.gen(function* () {
      const base = F.trainer()
      const n = base.config.trainLoader!.numBatches
      const batchLog: Array<Scheduler.Signal | undefined> = []
      const b = yield* Trainer.train(Trainer.setScheduler(base, recording("batch", batchLog)), 2)
      expect(batchLog).toHaveLength(2 * n)
      expect(batchLog.every((s) => s === undefined)).toBe(true)
      expect(b.learningRates).toEqual([0.01 * 0.5 ** n, 0.01 * 0.5 ** (2 * n)])

      const epochLog: Array<Scheduler.Signal | undefined> = []
      const e = yield* Trainer.train(Trainer.setScheduler(base, recording("epoch", epochLog)), 3)
      expect(epochLog).toEqual([undefined, undefined, undefined])
      expect(e.learningRates).toEqual([0.005, 0.0025, 0.00125])

      const metricLog: Array<Scheduler.Signal | undefined> = []
      const m = yield* Trainer.train(Trainer.setScheduler(base, recording("metric", metricLog)), 2)
      expect(metricLog).toEqual(m.valLosses.map((metric) => ({ metric })))

      // Schedulers declaring `fractionalEpoch` (warm restarts) take the fractional epoch, 0-based,
      // after each batch (PyTorch's documented use); the name plays no part.
      const warmLog: Array<Scheduler.Signal | undefined> = []
      const w = yield* Trainer.train(
        Trainer.setScheduler(base, recording("batch", warmLog, { fractionalEpoch: true })),
        1
      )
      expect(warmLog).toEqual(Array.from({ length: n }, (_, i) => ({ epoch: i / n })))
      const namedLog: Array<Scheduler.Signal | undefined> = []
      const named = yield* Trainer.train(
        Trainer.setScheduler(base, recording("batch", namedLog, { name: "CosineAnnealingWarmRestarts" })),
        1
      )
      expect(namedLog.every((s) => s === undefined)).toBe(true)

      const noVal = Trainer.setLoaders(
        Trainer.setScheduler(base, recording("metric", [])),
        base.config.trainLoader!
      )
      const err = yield* Effect.flip(Trainer.train(noVal, 1))
      expect(err._tag).toBe("InvalidTrainer")
      for (const x of [base, b, e, m, w, named]) Trainer.dispose(x)
    })
  )

  it.effect("the scheduler's lr is the one each step uses", () =>
    Effect.gen(function* () {
      // lr 0 for every step: parameters must not move; SGD without momentum keeps no state.
      const t = Trainer.setScheduler(
        Trainer.setOptimizer(F.trainer(), F.sgd(0.5)),
        recording("epoch", [], {
          current: () => ({ lr: 0 })
        })
      )
      const after = yield* Trainer.train(t, 1)
      expect(F.values(after.params)).toEqual(F.values(t.params))
      Trainer.dispose(t)
      Trainer.dispose(after)
    })
  )

  it.effect("a NaN loss stops training with NonFinite naming the epoch and batch", () =>
    Effect.gen(function* () {
      const ds = F.images(24, 12, 3)
      const x = Float32Array.from(ds.x)
      x[17 * 3 * 144] = Number.NaN // sample 17: batch 2 of 8-sample batches, unshuffled
      const loader = yield* DataLoader.fromTensorDataset(yield* TensorDataset.make({ ...ds, x }), {
        batchSize: 8,
        prefetch: 0
      })
      // A linear model, so one NaN input makes a NaN logit (max-pooling could skip it).
      const model = Module.Sequential([
        ["flatten", Module.Flatten()],
        ["fc", Either.getOrThrow(Module.Linear({ inFeatures: 3 * 144, outFeatures: 3 }))]
      ])
      const t = Trainer.unsafeMake(
        { model, loss: Loss.crossEntropy, optimizer: F.adam(), trainLoader: loader },
        Random.unsafeMake(1)
      )
      const start = tf.memory().numTensors
      const err = yield* Effect.flip(Trainer.train(t, 3))
      expect(err).toMatchObject({ _tag: "NonFinite", epoch: 0, batch: 2, what: "loss" })
      expect(tf.memory().numTensors).toBe(start)
      expect(Object.values(t.params).every((p) => !p.isDisposed)).toBe(true)
      Trainer.dispose(t)
    })
  )

  it.effect(
    "a BatchNorm mini-batch of one sample fails training with InvalidLayer naming the layer, as PyTorch raises",
    () =>
      Effect.gen(function* () {
        // 9 samples in batches of 8: the last mini-batch has one sample
        const loader = yield* DataLoader.fromTensorDataset(F.images(9, 12, 3), { batchSize: 8, prefetch: 0 })
        const model = Module.Sequential([
          ["flatten", Module.Flatten()],
          ["fc", Either.getOrThrow(Module.Linear({ inFeatures: 3 * 144, outFeatures: 3 }))],
          ["bn", Either.getOrThrow(Module.BatchNorm1d({ numFeatures: 3 }))]
        ])
        const t = Trainer.unsafeMake(
          { model, loss: Loss.crossEntropy, optimizer: F.adam(), trainLoader: loader },
          Random.unsafeMake(1)
        )
        const start = tf.memory().numTensors
        const err = yield* Effect.flip(Trainer.train(t, 2))
        expect(err).toMatchObject({ _tag: "InvalidLayer", layer: "bn (BatchNorm1d)", value: [1, 3] })
        expect(err.message).toBe(
          "bn (BatchNorm1d): input = [1,3] has 1 value per channel: batch statistics need more than 1 when training"
        )
        expect(tf.memory().numTensors).toBe(start)
        Trainer.dispose(t)
      })
  )

  it.effect(
    "a label out of range fails training, validation and the range test with InvalidTargets, not a defect",
    () =>
      Effect.gen(function* () {
        const withLabel = (ds: TensorDataset.TensorDataset, index: number, label: number) => {
          const y = Int32Array.from(ds.y as Int32Array)
          y[index] = label
          return Effect.flatMap(TensorDataset.make({ ...ds, y }), (bad) =>
            DataLoader.fromTensorDataset(bad, { batchSize: 8, prefetch: 0 })
          )
        }
        // sample 13: mini-batch 1 of 8-sample batches, unshuffled; the model has 3 classes.
        const train = yield* withLabel(F.images(24, 12, 3), 13, 3)
        const t = Trainer.unsafeMake(
          { model: F.cnn(), loss: Loss.crossEntropy, optimizer: F.adam(), trainLoader: train },
          Random.unsafeMake(1)
        )
        const start = tf.memory().numTensors
        const err = yield* Effect.flip(Trainer.train(t, 2))
        expect(err).toMatchObject({ _tag: "InvalidTargets", where: "CrossEntropyLoss", index: 5 })
        expect(err.message).toBe("CrossEntropyLoss: target 3 out of bounds for 3 classes (sample 5)")
        expect(tf.memory().numTensors).toBe(start)
        expect(Object.values(t.params).every((p) => !p.isDisposed)).toBe(true)
        const streamed = yield* Effect.flip(Stream.runDrain(Trainer.epochs(t, { epochs: 1, seed: 1 })))
        expect(streamed._tag).toBe("InvalidTargets")
        const ranged = yield* Effect.flip(Trainer.lrRangeTest(t, { endLr: 1, numIter: 5 }))
        expect(ranged).toMatchObject({ _tag: "InvalidTargets", index: 5 })
        expect(tf.memory().numTensors).toBe(start)

        // In validation (and its per-class counts): the epoch's trained tensors are released too.
        const val = yield* withLabel(F.images(16, 12, 2), 2, 7)
        const good = Trainer.setLoaders(t, F.loaders().train, val)
        for (const countCorrect of [false, true]) {
          const v = yield* Effect.flip(
            Stream.runDrain(Trainer.epochs(good, { epochs: 1, seed: 1, countCorrect }))
          )
          expect(v).toMatchObject({ _tag: "InvalidTargets", where: "CrossEntropyLoss", index: 2 })
          expect(tf.memory().numTensors).toBe(start)
        }
        const evaluated = yield* Effect.flip(Trainer.evaluate(t, val))
        expect(evaluated.message).toContain("target 7 out of bounds for 3 classes")
        const [first] = yield* DataLoader.collect(val)
        expect(Either.getLeft(Trainer.correct(t, first)).pipe(Option.map((e) => e._tag))).toEqual(
          Option.some("InvalidTargets")
        )
        expect(Either.isLeft(Trainer.batchLoss(t, first))).toBe(true)
        const applied = yield* Effect.flip(Trainer.loaderApply(val, (b) => Trainer.correct(t, b)))
        expect(applied._tag).toBe("InvalidTargets")
        Trainer.dispose(t)
      })
  )

  it.effect(
    "countCorrect: running train counts from the steps' own outputs, validation counts equal to correct over the val loader; the same run",
    () =>
      Effect.gen(function* () {
        const t = F.trainer({ p: 0.3 })
        const plain = yield* Stream.runCollect(Trainer.epochs(t, { epochs: 2, seed: 42 }))
        const losses = Chunk.toReadonlyArray(plain).map((r) => r.batchLosses)
        expect(Chunk.toReadonlyArray(plain).every((r) => r.trainCorrect === undefined)).toBe(true)
        Trainer.dispose(Chunk.unsafeLast(plain).trainer)
        const counted = yield* Stream.runFoldEffect(
          Trainer.epochs(t, { epochs: 2, seed: 42, countCorrect: true }),
          [] as Array<unknown>,
          (acc, r) =>
            Effect.gen(function* () {
              const { train, val } = F.loaders()
              const total = (rows: Metrics.PerClass | undefined) => Metrics.total(rows ?? [])[1]
              expect(r.batchLosses).toEqual(losses[r.epoch])
              expect(total(r.trainCorrect)).toBe(train.numSamples)
              const exact = yield* Trainer.loaderApply(val, (b) => Trainer.correct(r.trainer, b))
              expect(r.valCorrect).toEqual(exact)
              acc.push(r.trainer)
              return acc
            })
        )
        Trainer.dispose(counted[1] as Trainer.Trainer)
        Trainer.dispose(t)
      })
  )

  it.effect("predict, correct, loaderApply and the parameter count", () =>
    Effect.gen(function* () {
      const t = yield* Trainer.make(
        { model: F.cnn(0.3), loss: Loss.crossEntropy, optimizer: F.adam() },
        Random.unsafeMake(13)
      )
      const { val } = F.loaders()
      const [batch] = yield* DataLoader.collect(val)
      const logits = Trainer.predict(t, batch)
      expect(logits).toHaveLength(8 * 3)
      const rows = Either.getOrThrow(Trainer.correct(t, batch))
      expect(rows.reduce((n, [, total]) => n + total, 0)).toBe(8)
      const whole = yield* Trainer.loaderApply(val, (b) => Trainer.correct(t, b))
      expect(whole.reduce((n, r) => n + r[1], 0)).toBe(16)
      const means = yield* Trainer.loaderApply(val, () => [[1, 3]], "mean")
      expect(means).toEqual([[1, 3]])
      // CNN2(3 filters, 12x12 input): conv1 84 + conv2 84 + fc1 (3*1*1*50+50) 200 + fc2 153.
      expect(Trainer.countParameters(t)).toBe(84 + 84 + 200 + 153)
      const cnn5 = Trainer.unsafeMake(
        { model: yield* Effect.sync(() => F.cnn5()), loss: Loss.crossEntropy, optimizer: F.adam() },
        Random.unsafeMake(1)
      )
      expect(Trainer.countParameters(cnn5)).toBe(6823)
      // make needs the engine in its type, and refuses a seed Random cannot take
      expectTypeOf<Effect.Effect.Context<ReturnType<typeof Trainer.make>>>().toEqualTypeOf<Engine.Engine>()
      const bad = yield* Effect.flip(
        Trainer.make(
          { model: F.cnn(0.3), loss: Loss.crossEntropy, optimizer: F.adam() },
          Random.unsafeMake(1),
          {
            seed: 0.5
          }
        )
      )
      expect(bad).toMatchObject({ _tag: "InvalidArgument", field: "seed", value: 0.5 })
      // given tensors that are not the model's: a typed WeightMismatch naming the tensor, nothing made
      const config = { model: F.cnn(0.3), loss: Loss.crossEntropy, optimizer: F.adam() }
      const before = tf.memory().numTensors
      const other = yield* Effect.flip(Trainer.make(config, cnn5.params))
      expect(other).toMatchObject({
        _tag: "WeightMismatch",
        parameter: "conv1.weight",
        expected: [3, 3, 3, 3]
      })
      expect(other.message).toBe(
        "weights for conv1.weight: parameter of shape [3, 3, 3, 5], the model's is [3, 3, 3, 3] (tfjs layout)"
      )
      const extra = yield* Effect.flip(
        Trainer.make(config, { ...t.params, "fc9.weight": t.params["fc1.weight"] })
      )
      expect(extra).toMatchObject({ _tag: "WeightMismatch", parameter: "fc9.weight" })
      expect(tf.memory().numTensors).toBe(before)
      Trainer.dispose(t)
      Trainer.dispose(cnn5)
    })
  )

  it.effect("setOptimizer starts a fresh optimizer state and restarts the scheduler", () =>
    Effect.gen(function* () {
      const t = yield* Trainer.train(Trainer.setScheduler(F.trainer(), recording("epoch", [])), 1)
      expect(t.optState.step).toBe(5)
      const u = Trainer.setOptimizer(t, F.sgd(0.1, 0.9))
      expect(u.optState.step).toBe(0)
      expect(u.scheduled?.use((_, k) => k)).toBe(0)
      expect(Trainer.hyper(u)).toEqual({ lr: 0.01, momentum: 0.9 })
      expect(t.optState.step).toBe(5)
      Trainer.dispose(t)
    })
  )

  it.effect("the LR range test leaves the trainer exactly as it was and returns the chapter's tracking", () =>
    Effect.gen(function* () {
      const t = F.trainer({ lr: 1e-4 })
      const before = F.values(t.params)
      const start = tf.memory().numTensors
      const r = yield* Trainer.lrRangeTest(t, { endLr: 1, numIter: 12 })
      expect(r.tracking.lr).toHaveLength(12)
      expect(r.tracking.lr[0]).toBe(1e-4)
      expect(r.tracking.lr[6]).toBeCloseTo(1e-4 * 10 ** ((4 * 6) / 12), 12)
      expect(tf.memory().numTensors).toBe(start)
      expect(F.values(t.params)).toEqual(before)
      expect(t.optState.step).toBe(0)
      // The first point is the raw loss of the untrained model on the first batch.
      const [first] = yield* DataLoader.collect(t.config.trainLoader!, 0)
      const g = Either.getOrThrow(
        Loss.lossAndGrads(t.config.model, t.config.loss, t.params, first, {
          training: true,
          rng: Trainer.stepRng(42, -1, 0)
        })
      )
      expect(r.tracking.loss[0]).toBe(g.loss)
      for (const x of Object.values(g.grads)) x.dispose()
      // minimum: a tenth of the lr of the smallest smoothed loss past fastai's trimming (12 / 10 = 1 point
      // in front, 5 at the end).
      const trimmed = r.tracking.loss.slice(1, 12 - 5)
      const at = 1 + trimmed.indexOf(Math.min(...trimmed))
      expect(r.suggestions.minimum).toEqual({ lr: r.tracking.lr[at] * 0.1, index: at })
      // It loops over the loader (5 batches an epoch) as often as needed.
      const long = yield* Trainer.lrRangeTest(t, {
        endLr: 1e-3,
        numIter: 13,
        divergeTh: Number.POSITIVE_INFINITY
      })
      expect(long.tracking.lr).toHaveLength(13)
      expect(yield* Stream.runCount(t.config.trainLoader!.batches(0))).toBe(5)
      Trainer.dispose(t)
    })
  )
})

const poisoned = (t: Trainer.Trainer) => {
  // conv1.weight with one NaN: wasm's max-pool turns NaN windows into -Inf, so the loss alone
  // may stay finite there; the gradients and parameters cannot.
  const w = t.params["conv1.weight"]
  const values = Float32Array.from(w.dataSync())
  values[0] = Number.NaN
  return { ...t, params: { ...t.params, "conv1.weight": tf.tensor(values, w.shape) } }
}

for (const [name, engine] of [
  ["wasm", Engine.wasm],
  ["cpu", Engine.cpu]
] as const) {
  layer(engine)(`non-finite detection (${name})`, (it) => {
    it.effect(
      "a NaN in conv1.weight fails the first step with NonFinite, whatever the engine does with NaN",
      () =>
        Effect.gen(function* () {
          const base = F.trainer()
          const t = poisoned(base)
          const start = tf.memory().numTensors
          const err = yield* Effect.flip(Trainer.train(t, 1))
          expect(err).toMatchObject({ _tag: "NonFinite", epoch: 0, batch: 0 })
          console.log("NONFINITE", name, err.message)
          expect(["loss", "gradient", "parameter"]).toContain(err._tag === "NonFinite" ? err.what : "")
          expect(err.message).toMatch(/^training diverged: .* at epoch 1, mini-batch 1$/)
          expect(tf.memory().numTensors).toBe(start)
          Trainer.dispose(base)
          t.params["conv1.weight"].dispose()
        })
    )

    it("unsafeInputTensor on wasm: NCHW written as NHWC on the heap, one tracked tensor, released by dispose", () => {
      // RGB (its own loop) and 2 channels (the general one)
      for (const [n, c, h, w] of [
        [2, 3, 4, 5],
        [3, 2, 3, 2]
      ]) {
        const x = Float32Array.from({ length: n * c * h * w }, (_, i) => i * 0.5 - 7)
        const before = tf.memory()
        const t = Loss.unsafeInputTensor(x, [n, c, h, w])
        expect(t.shape).toEqual([n, h, w, c])
        expect(tf.memory().numTensors - before.numTensors).toBe(1)
        expect(tf.memory().numBytes - before.numBytes).toBe(x.length * 4)
        const got = t.dataSync()
        for (let b = 0; b < n; b++)
          for (let ch = 0; ch < c; ch++)
            for (let p = 0; p < h * w; p++)
              expect(got[(b * h * w + p) * c + ch]).toBe(x[(b * c + ch) * h * w + p])
        t.dispose()
        expect(tf.memory().numTensors).toBe(before.numTensors)
        expect(tf.memory().numBytes).toBe(before.numBytes)
      }
    })

    it("firstNonFinite: one probe over every tensor, names the first culprit, no overflow on large values", () => {
      const big = { a: tf.tensor([3e38, 3e38, -3e38]), b: tf.tensor([1, 2]) }
      expect(Trainer.firstNonFinite([["parameter", big]])).toBeUndefined()
      const bad = { a: tf.tensor([1, 2]), b: tf.tensor([0, Number.NEGATIVE_INFINITY]) }
      expect(
        Trainer.firstNonFinite([
          ["gradient", big],
          ["parameter", bad]
        ])
      ).toEqual({ what: "parameter", tensor: "b", value: Number.NEGATIVE_INFINITY })
      tf.dispose([...Object.values(big), ...Object.values(bad)])
    })
  })
}
