/**
 * The chapter's `StepByStep`, functional: a `Trainer` is a value (configuration plus the state
 * of a run), and every method returns a new value instead of mutating.
 *
 * Training is a fold over mini-batches of one pure step (see `trainStep`):
 *
 *   (params, optState) --batch--> loss, grads --optimizer.update(hyper)--> (params', optState')
 *
 * with `hyper` coming from the scheduler's state, which is stepped by its declared cadence: after
 * every mini-batch ("batch"), after every epoch ("epoch"), or with the validation loss ("metric").
 * Dropout masks come from a random state derived from (seed, epoch, batch), and loaders shuffle
 * as a function of (their seed, epoch), so a run resumed at epoch k is exactly the uninterrupted
 * run. Tensors: `train` never disposes the tensors of the trainer it was given (it is a value the
 * caller may keep, e.g. to restore after an LR range test); every state it creates along the way
 * is disposed as soon as it is replaced, so tensor counts stay flat; the returned trainer shares
 * no tensor with its input (dispose either independently with `dispose`).
 */

import type { Batch, Errors as DataErrors } from "@stepwise/data"
import { type DataLoader, Random } from "@stepwise/data"
import {
  LrRange,
  type Numeric,
  type Errors as OptimErrors,
  type Optimizer,
  OptimizerState,
  Optimizers,
  type Scheduler,
  Schedulers,
  TfNumeric
} from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Chunk, Clock, Effect, Either, Option, PubSub, Ref, Stream } from "effect"
import { Engine } from "./Engine.js"
import {
  type InvalidLayer,
  type InvalidTargets,
  InvalidTrainer,
  NonFinite,
  type NonFiniteWhat,
  type WeightMismatch
} from "./Errors.js"
import * as Events from "./Events.js"
import * as Simd from "./kernels/Simd.js"
import * as Loss from "./Loss.js"
import * as LrRangeTest from "./LrRangeTest.js"
import * as Metrics from "./Metrics.js"
import * as Module from "./Module.js"
import * as TorchWeights from "./TorchWeights.js"

type Tensors = Numeric.Params<tf.Tensor>
type Targets = Loss.Targets

export { InvalidLayer, InvalidTargets, InvalidTrainer, NonFinite, WeightMismatch } from "./Errors.js"

/**
 * Why a training step cannot run: targets that do not fit the model, an input a layer cannot
 * take (a BatchNorm batch of one, a hand-built model whose layers do not fit), or parameters
 * that do not fit their gradients.
 */
export type StepError = InvalidTargets | InvalidLayer | OptimErrors.MismatchedTree

export type Loader<E = never, R = never> = DataLoader.DataLoader<Targets, E, R>

export interface Config<E = never, R = never> {
  readonly model: Module.Module
  readonly loss: Loss.Loss
  readonly optimizer: Optimizer.Optimizer<tf.Tensor>
  /** Any scheduler (its state type stays its own: the trainer holds it as `scheduled`). */
  readonly scheduler?: Scheduler.Any | undefined
  readonly trainLoader?: Loader<E, R> | undefined
  readonly valLoader?: Loader<E, R> | undefined
}

export interface Trainer<E = never, R = never> {
  readonly config: Config<E, R>
  readonly params: Tensors
  /** BatchNorm's running statistics (empty without BatchNorm): updated by training steps, never optimized. */
  readonly buffers: Tensors
  readonly optState: Optimizer.OptimizerState<tf.Tensor>
  /** The scheduler with its current state (undefined without a scheduler). */
  readonly scheduled: Scheduler.Scheduled | undefined
  /** Epochs trained so far (the chapter's `total_epochs`). */
  readonly totalEpochs: number
  readonly losses: ReadonlyArray<number>
  readonly valLosses: ReadonlyArray<number>
  /** The lr in effect after each epoch's scheduler steps (the optimizer's lr without scheduler). */
  readonly learningRates: ReadonlyArray<number>
  /** Seed of the dropout masks of the last `train` (recorded in checkpoints). */
  readonly seed: number
}

/**
 * A trainer for `model` with parameters from `rng` (PyTorch's default initialisation) or given
 * tensors. `seed` is the dropout seed recorded until the first `train`/`epochs` sets its own
 * (so an epoch-0 checkpoint records the run's seed; default 42, the chapter's). `buffers`, when
 * given, replaces the construction values (BatchNorm statistics imported with the weights).
 * Given tensors that are not the model's (a name missing or extra, another shape) are a
 * `WeightMismatch` naming the tensor, here rather than a throw in the first forward pass.
 */
export const make = <E = never, R = never>(
  config: Config<E, R>,
  init: Random.State | Tensors,
  options: MakeOptions = {}
): Effect.Effect<Trainer<E, R>, DataErrors.InvalidArgument | WeightMismatch, Engine> =>
  // The engine in the type: a program without its layer does not compile (instead of dying in
  // tfjs with "backend 'wasm' has not yet been initialized" when the first tensor is made).
  // Suspended: each run makes its own tensors, on the engine (not once, when `make` is called).
  Effect.zipRight(
    Engine,
    Effect.suspend(() =>
      Either.gen(function* () {
        yield* Random.checkSeed(options.seed ?? 42)
        const { specs, buffers } = config.model
        if (!isState(init)) yield* Module.checkWeights({ specs, buffers: [] }, init, {}, true)
        if (options.buffers !== undefined)
          yield* Module.checkWeights({ specs: [], buffers }, {}, options.buffers, true)
        return unsafeMake(config, init, options)
      })
    )
  )

/**
 * `make` with the optimizer and scheduler taken from optim's services: the program names its
 * configuration once, as layers (`Optimizers.layer(config)`, `Schedulers.layer(config)`, the
 * latter checked against the former), and the engine decides how the optimizer runs (its
 * fused kernels on wasm and cpu). Without a `Scheduler` in context the lr stays the optimizer's.
 */
export const fromServices = <E = never, R = never>(
  config: Omit<Config<E, R>, "optimizer" | "scheduler">,
  init: Random.State | Tensors,
  options: MakeOptions = {}
): Effect.Effect<Trainer<E, R>, DataErrors.InvalidArgument | WeightMismatch, Engine | Optimizers.Optimizer> =>
  Effect.gen(function* () {
    const { numeric } = yield* Engine
    const { def } = yield* Optimizers.Optimizer
    const scheduled = yield* Effect.serviceOption(Schedulers.Scheduler)
    const scheduler = Option.getOrUndefined(Option.map(scheduled, (s) => s.scheduler))
    return yield* make({ ...config, optimizer: def(numeric), scheduler }, init, options)
  })

export interface MakeOptions {
  readonly seed?: number
  readonly buffers?: Tensors
}

/**
 * `make` for code that already runs on an engine and holds a checked seed (tests, benches):
 * no engine in the type, no seed check; as `Random.unsafeMake`.
 */
export const unsafeMake = <E = never, R = never>(
  config: Config<E, R>,
  init: Random.State | Tensors,
  options: MakeOptions = {}
): Trainer<E, R> => {
  const params = isState(init) ? Module.unsafeInit(config.model, init) : init
  return {
    config,
    params,
    buffers: options.buffers ?? Module.unsafeInitBuffers(config.model),
    optState: config.optimizer.init(params),
    scheduled: config.scheduler?.start(config.optimizer.defaults),
    totalEpochs: 0,
    losses: [],
    valLosses: [],
    learningRates: [],
    seed: options.seed ?? 42
  }
}

const isState = (u: unknown): u is Random.State => Random.isState(u)

/** The hyperparameters of the next step: the scheduler's, over the optimizer's defaults. */
export const hyper = (t: Pick<Trainer<any, any>, "config" | "scheduled">): Optimizer.Hyper =>
  t.scheduled === undefined
    ? t.config.optimizer.defaults
    : { ...t.config.optimizer.defaults, ...t.scheduled.hyper }

// --------------------------------------------------------------------- "set" methods, as values

/**
 * The chapter's `set_optimizer`: a fresh optimizer state (PyTorch builds a new optimizer), and the
 * scheduler restarted from the new optimizer's defaults. The old state's tensors are not
 * disposed (the old trainer still holds them).
 */
export const setOptimizer = <E, R>(
  t: Trainer<E, R>,
  optimizer: Optimizer.Optimizer<tf.Tensor>
): Trainer<E, R> => {
  const config = { ...t.config, optimizer }
  return {
    ...t,
    config,
    optState: optimizer.init(t.params),
    scheduled: config.scheduler?.start(optimizer.defaults)
  }
}

/** The chapter's `set_lr_scheduler` (`undefined` removes it). */
export const setScheduler = <E, R>(
  t: Trainer<E, R>,
  scheduler: Scheduler.Any | undefined
): Trainer<E, R> => ({
  ...t,
  config: { ...t.config, scheduler },
  scheduled: scheduler?.start(t.config.optimizer.defaults)
})

/** The chapter's `set_loaders`. */
export const setLoaders = <E2, R2>(
  t: Trainer<any, any>,
  trainLoader: Loader<E2, R2>,
  valLoader?: Loader<E2, R2>
): Trainer<E2, R2> => ({ ...t, config: { ...t.config, trainLoader, valLoader } }) as Trainer<E2, R2>

// ---------------------------------------------------------------------------- the training step

/** Layers whose values a subscriber asked for (empty: nothing is copied). */
export interface CaptureRequest {
  readonly gradients: ReadonlyArray<string>
  readonly parameters: ReadonlyArray<string>
  readonly activations: ReadonlyArray<string>
}

const nothing: CaptureRequest = { gradients: [], parameters: [], activations: [] }

/** The first value of a step that is NaN or infinite: in the loss, a gradient, or an updated parameter. */
export interface NonFiniteValue {
  readonly what: NonFiniteWhat
  readonly tensor?: string
  readonly value: number
}

export interface StepResult {
  readonly loss: number
  readonly params: Tensors
  /** The buffers after the step (the inputs' replacements; the caller disposes the old). */
  readonly buffers: Tensors
  readonly optState: Optimizer.OptimizerState<tf.Tensor>
  readonly captured: ReadonlyArray<Events.TrainEvent>
  /** Set when the loss, a gradient or an updated parameter is not finite (the step's tensors are still returned). */
  readonly nonFinite: NonFiniteValue | undefined
  /** The model's outputs the loss was computed from (train mode), a host copy. */
  readonly outputs: Loss.LossAndGrads["outputs"]
}

/**
 * Which of `trees` first holds a NaN or an infinity, checked on the values themselves so no
 * kernel's handling of NaN (wasm's max-pool turns a NaN window into -Inf) can hide one. Read on
 * the host: a step's parameters and gradients are a few thousand numbers, and a plain read of
 * each costs less than the reshape/concat/mul/sum kernels and the extra tensors of a device
 * reduction. x * 0 is 0 for every finite x and NaN otherwise, so each sum is exactly 0 when
 * everything is finite (no overflow, unlike summing x).
 */
export const firstNonFinite = (
  trees: ReadonlyArray<readonly [NonFiniteWhat, Tensors]>
): NonFiniteValue | undefined => {
  for (const [what, tree] of trees) {
    for (const name in tree) {
      const values = hostValues(tree[name])
      let probe = 0
      for (let i = 0; i < values.length; i++) probe += values[i] * 0
      if (probe !== 0) return { what, tensor: name, value: values.find((v) => !Number.isFinite(v))! }
    }
  }
  return undefined
}

/**
 * A float32 tensor's values for a read right now: on the wasm backend a view of its heap where
 * the tensor lives (a step's parameters and gradients, read every step, would otherwise be
 * copied into fresh memory each time), elsewhere `dataSync`. Valid until the next kernel runs.
 */
const hostValues = (t: tf.Tensor): Float32Array =>
  Simd.heapView(tf.backend(), t) ?? (t.dataSync() as Float32Array)

/**
 * One training step, the whole of it: loss and gradients at `params` (training mode, dropout from
 * `rng`), then the optimizer's update with `hyper`. Intermediates and gradients are disposed;
 * the inputs are left alone (the caller decides when the old state dies). Targets that do not
 * fit the model (a class index >= the number of outputs) are `InvalidTargets`, and `params`
 * that are not the model's (a gradient without its parameter) `MismatchedTree`: nothing of the
 * step survives then.
 */
export const trainStep = (
  config: Pick<Config<any, any>, "model" | "loss" | "optimizer">,
  params: Tensors,
  optState: Optimizer.OptimizerState<tf.Tensor>,
  hyper: Optimizer.Hyper,
  batch: Batch.Batch<Targets>,
  rng: Random.State,
  capture: CaptureRequest = nothing,
  where: { readonly epoch: number; readonly batch: number } = { epoch: 0, batch: 0 },
  buffers: Tensors = {}
): Either.Either<StepResult, StepError> => {
  const captured: Array<Events.TrainEvent> = []
  const tap =
    capture.activations.length === 0 ? undefined : activationTap(capture.activations, where, captured)
  const step = Loss.lossAndGradsAt(config.model, config.loss, params, batch, {
    training: true,
    buffers,
    rng,
    tap
  })
  if (Either.isLeft(step)) return Either.left(step.left)
  const { loss, grads, outputs, ...out } = step.right
  if (capture.parameters.length > 0)
    captured.push(...layerEvents("Parameters", config.model, capture.parameters, params, where))
  if (capture.gradients.length > 0)
    captured.push(...layerEvents("Gradients", config.model, capture.gradients, grads, where))
  const updated = TfNumeric.tidyUpdate(config.optimizer, optState, grads, params, hyper)
  if (Either.isLeft(updated)) {
    tf.dispose(Object.values(grads))
    TfNumeric.disposeReplaced(out.buffers, buffers)
    return Either.left(updated.left)
  }
  const next = updated.right
  const nonFinite = Number.isFinite(loss)
    ? firstNonFinite([
        ["gradient", grads],
        ["parameter", next.params]
      ])
    : { what: "loss" as const, value: loss }
  TfNumeric.disposeReplaced(grads, [...Object.values(next.params), ...stateTensors(next.state)])
  return Either.right({
    loss,
    params: next.params,
    buffers: out.buffers,
    optState: next.state,
    captured,
    nonFinite,
    outputs
  })
}

/** The dropout state of a mini-batch: a pure function of (seed, epoch, batch). */
export const stepRng = (seed: number, epoch: number, batch: number): Random.State =>
  Random.foldIn(Random.foldIn(Random.unsafeMake(seed), epoch), batch)

// ------------------------------------------------------------------------------------ training

/** One epoch of a run, as `epochs` emits it. */
export interface EpochResult<E = never, R = never> {
  /**
   * The trainer after this epoch. Its tensors stay valid until the next element is pulled (the
   * stream then disposes what the next step replaces); the last one emitted is the caller's.
   */
  readonly trainer: Trainer<E, R>
  /** 0-based. */
  readonly epoch: number
  /** Mean mini-batch training loss. */
  readonly loss: number
  readonly valLoss: number | undefined
  readonly batchLosses: ReadonlyArray<number>
  /** The lr each mini-batch was trained with. */
  readonly learningRates: ReadonlyArray<number>
  /** The lr after this epoch's scheduler steps (what the next epoch starts with). */
  readonly lr: number
  readonly seconds: number
  /**
   * With `countCorrect`: per class `[correct, total]` of the training steps' own predictions,
   * counted as they were made (train mode: dropout on, parameters changing during the epoch),
   * the running accuracy Keras reports; free, as the step downloads its outputs anyway. Not the
   * chapter's `correct` on the trained model (that is a second pass: `correct` per batch).
   */
  readonly trainCorrect: Metrics.PerClass | undefined
  /** With `countCorrect` and a validation loader: the chapter's `correct` (eval mode) over it, from the validation pass. */
  readonly valCorrect: Metrics.PerClass | undefined
}

export interface EpochsOptions {
  /** How many more epochs. */
  readonly epochs: number
  /** Seed of the dropout masks (recorded in the trainer, hence in checkpoints). */
  readonly seed: number
  /**
   * Count per-class correct predictions (`EpochResult.trainCorrect`, `valCorrect`) from the
   * outputs the training steps and the validation pass compute anyway. Needs class targets.
   */
  readonly countCorrect?: boolean | undefined
}

/** What the fold carries between mini-batches and epochs (never mutated). */
interface Run<E, R> {
  readonly trainer: Trainer<E, R>
  /** False while `trainer` still holds the caller's tensors, which the stream never disposes. */
  readonly owned: boolean
  /** The lr last announced on the event bus (NaN: none yet). */
  readonly announced: number
}

interface EpochFold<E, R> extends Run<E, R> {
  readonly batchLosses: Chunk.Chunk<number>
  readonly learningRates: Chunk.Chunk<number>
  /** The running per-class counts (undefined when not counting, or before the first batch). */
  readonly correct: Metrics.PerClass | undefined
  /** Set when the fold must stop: a loader failure or a non-finite value. */
  readonly failure: E | NonFinite | StepError | OptimErrors.SchedulerStepError | undefined
}

/** The run's surroundings: where events go and what subscribers want copied. */
interface Bus {
  readonly publish: (e: Events.TrainEvent) => Effect.Effect<void>
  readonly interest: Effect.Effect<CaptureRequest>
}

const tensorsOf = (
  t: Pick<Trainer<any, any>, "params" | "buffers" | "optState">
): ReadonlyArray<tf.Tensor> => [
  ...Object.values(t.params),
  ...Object.values(t.buffers),
  ...stateTensors(t.optState)
]

/** Disposes the tensors of `from` that `to` no longer holds, when the stream owns them. */
const release = <E, R>(from: Run<E, R>, to?: Trainer<E, R>): void => {
  if (from.owned) TfNumeric.disposeReplaced(tensorsOf(from.trainer), to === undefined ? [] : tensorsOf(to))
}

/** Announces the lr when it differs from the one announced last; returns the one now announced. */
const announce = (bus: Bus, t: Trainer<any, any>, announced: number, epoch: number, batch: number) => {
  const h = hyper(t)
  if (h.lr === announced) return Effect.succeed(announced)
  return Effect.as(
    bus.publish(Events.TrainEvent.LearningRate({ epoch, batch, lr: h.lr, momentum: h.momentum ?? h.beta1 })),
    h.lr
  )
}

/**
 * The fold's step over mini-batch `i`: `trainStep` at the current trainer, then the batch
 * scheduler's step. Targets that do not fit and non-finite values end the fold with `failure`
 * set (nothing is thrown; the stream fails once, after the fold).
 */
const batchStep = <E, R>(
  bus: Bus,
  s: EpochFold<E, R>,
  batch: Batch.Batch<Targets>,
  i: number,
  countCorrect: boolean
): Effect.Effect<EpochFold<E, R>> =>
  // No generator: the step is synchronous, and only the events need the runtime (this runs
  // once a mini-batch, where the Effect machinery is a measurable share of an epoch).
  Effect.flatMap(bus.interest, (interest) => {
    const t = s.trainer
    const epoch = t.totalEpochs
    const n = t.config.trainLoader?.numBatches ?? 1
    const h = hyper(t)
    const step = trainStep(
      t.config,
      t.params,
      t.optState,
      h,
      batch,
      stepRng(t.seed, epoch, i),
      interest,
      { epoch, batch: i },
      t.buffers
    )
    if (Either.isLeft(step)) return Effect.succeed({ ...s, failure: step.left })
    const r = step.right
    const correct = countCorrect ? addCorrect(s.correct, r.outputs, batch.y) : Either.right(undefined)
    const scheduled =
      t.scheduled?.cadence === "batch"
        ? t.scheduled.step(batchSignal(t.scheduled, epoch + i / n))
        : Either.right(t.scheduled)
    const next: Trainer<E, R> = {
      ...t,
      params: r.params,
      buffers: r.buffers,
      optState: r.optState,
      scheduled: Either.getOrElse(scheduled, () => t.scheduled)
    }
    release(s, next)
    const moved: EpochFold<E, R> = { ...s, trainer: next, owned: true }
    if (r.nonFinite !== undefined)
      return Effect.succeed({ ...moved, failure: new NonFinite({ epoch, batch: i, ...r.nonFinite }) })
    if (Either.isLeft(scheduled)) return Effect.succeed({ ...moved, failure: scheduled.left })
    if (Either.isLeft(correct)) return Effect.succeed({ ...moved, failure: correct.left })
    const ended = bus.publish(Events.TrainEvent.BatchEnd({ epoch, batch: i, loss: r.loss, lr: h.lr }))
    const published =
      r.captured.length === 0
        ? ended
        : Effect.zipRight(ended, Effect.forEach(r.captured, bus.publish, { discard: true }))
    return Effect.zipRight(
      published,
      Effect.map(
        announce(bus, next, s.announced, epoch, i + 1),
        (announced): EpochFold<E, R> => ({
          ...moved,
          announced,
          batchLosses: Chunk.append(s.batchLosses, r.loss),
          learningRates: Chunk.append(s.learningRates, h.lr),
          correct: correct.right
        })
      )
    )
  })

/** The fold and validation keep nothing of a batch once its step is done: loaders may reuse their buffers. */
const reuse = { reuse: true } as const

/**
 * One epoch: the fold of `batchStep` over the training loader, then validation and the epoch's
 * scheduler step. On failure every tensor the stream owns is released (the caller's never).
 */
const runEpoch = <E, R>(bus: Bus, run: Run<E, R>, countCorrect: boolean) =>
  Effect.gen(function* () {
    const started = yield* Clock.currentTimeMillis
    const t0 = run.trainer
    const epoch = t0.totalEpochs
    const { trainLoader, valLoader } = t0.config
    const start: EpochFold<E, R> = {
      ...run,
      announced: yield* announce(bus, t0, run.announced, epoch, 0),
      batchLosses: Chunk.empty(),
      learningRates: Chunk.empty(),
      correct: undefined,
      failure: undefined
    }
    // (A batch's index is the number of steps before it: the fold stops at the first failure.)
    const f = yield* Stream.runFoldWhileEffect(
      Stream.either(trainLoader!.batches(epoch, reuse)),
      start,
      (s) => s.failure === undefined,
      (s, batch) =>
        Either.isLeft(batch)
          ? Effect.succeed({ ...s, failure: batch.left })
          : batchStep(bus, s, batch.right, Chunk.size(s.batchLosses), countCorrect)
    )
    if (f.failure !== undefined) {
      release(f)
      return yield* Effect.fail(f.failure)
    }
    // An epoch without batches would hand out the caller's tensors: the result owns a copy.
    const trained = f.owned ? f.trainer : cloneTensors(f.trainer)
    const validation =
      valLoader === undefined
        ? undefined
        : yield* Effect.onError(validate(trained, valLoader, epoch, countCorrect), () =>
            Effect.sync(() => dispose(trained))
          )
    const valLoss = validation?.loss
    if (valLoss !== undefined && !Number.isFinite(valLoss)) {
      dispose(trained)
      return yield* new NonFinite({ epoch, batch: "validation", what: "loss", value: valLoss })
    }
    const current = trained.scheduled
    const scheduled =
      current?.cadence === "epoch"
        ? current.step()
        : current?.cadence === "metric"
          ? current.step({ metric: valLoss })
          : Either.right(current)
    if (Either.isLeft(scheduled)) {
      dispose(trained)
      return yield* scheduled.left
    }
    const loss = mean(Chunk.toReadonlyArray(f.batchLosses))
    const lr = hyper({ config: t0.config, scheduled: scheduled.right }).lr
    const trainer: Trainer<E, R> = {
      ...trained,
      scheduled: scheduled.right,
      totalEpochs: epoch + 1,
      losses: [...trained.losses, loss],
      valLosses: valLoss === undefined ? trained.valLosses : [...trained.valLosses, valLoss],
      learningRates: [...trained.learningRates, lr]
    }
    yield* bus.publish(Events.TrainEvent.EpochEnd({ epoch, loss, valLoss, lr }))
    const result: EpochResult<E, R> = {
      trainer,
      epoch,
      loss,
      valLoss,
      batchLosses: Chunk.toReadonlyArray(f.batchLosses),
      learningRates: Chunk.toReadonlyArray(f.learningRates),
      lr,
      seconds: ((yield* Clock.currentTimeMillis) - started) / 1000,
      trainCorrect: countCorrect ? (f.correct ?? []) : undefined,
      valCorrect: validation?.correct
    }
    return [result, { trainer, owned: true, announced: f.announced }] as const
  })

const checkConfig = (t: Trainer<any, any>): Effect.Effect<void, InvalidTrainer> => {
  const { trainLoader, valLoader, scheduler } = t.config
  if (trainLoader === undefined) return new InvalidTrainer({ reason: "no training loader (setLoaders)" })
  if (scheduler?.cadence === "metric" && valLoader === undefined) {
    return new InvalidTrainer({
      reason: `${scheduler.name} steps on the validation loss: set a validation loader`
    })
  }
  return Effect.void
}

const busOf = Effect.map(
  Effect.serviceOption(Events.TrainEvents),
  (bus): Bus => ({
    publish: (e) => (Option.isNone(bus) ? Effect.void : Effect.asVoid(PubSub.publish(bus.value.pubsub, e))),
    interest: Option.isNone(bus)
      ? Effect.succeed(nothing)
      : Effect.map(Ref.get(bus.value.interest), toRequest)
  })
)

/**
 * Training as a stream: `epochs` more epochs of `t`, one `EpochResult` each, a fold of
 * `trainStep` over every epoch's mini-batches. Publishes `TrainEvent`s when a `TrainEvents` bus
 * is provided (`TrainEnd` once all epochs are done). Tensors: the input trainer is never
 * disposed; an emitted trainer is valid until the next element is pulled; the last emitted one
 * belongs to the caller; on failure (`NonFinite`, `InvalidTargets` from a training or validation
 * batch, a loader error) the stream releases what it owns.
 */
export const epochs = <E, R>(
  t: Trainer<E, R>,
  options: EpochsOptions
): Stream.Stream<
  EpochResult<E, R>,
  E | NonFinite | StepError | InvalidTrainer | OptimErrors.SchedulerStepError,
  R | Engine
> =>
  Stream.unwrap(
    Effect.gen(function* () {
      yield* Engine
      yield* checkConfig(t)
      const bus = yield* busOf
      const last = t.totalEpochs + options.epochs
      const start: Run<E, R> = { trainer: { ...t, seed: options.seed }, owned: false, announced: Number.NaN }
      return Stream.unfoldEffect(start, (run) =>
        run.trainer.totalEpochs >= last
          ? Effect.as(
              bus.publish(Events.TrainEvent.TrainEnd({ epochs: run.trainer.totalEpochs })),
              Option.none()
            )
          : Effect.map(runEpoch(bus, run, options.countCorrect === true), Option.some)
      )
    })
  )

export interface TrainOptions<E2, R2> {
  /**
   * Runs after every epoch with the trainer as it stands (e.g. to write a checkpoint, so a later
   * `NonFinite` leaves the last good one on disk). Its tensors are only valid during the call.
   */
  readonly onEpochEnd?: (t: Trainer<any, any>) => Effect.Effect<void, E2, R2>
}

/**
 * The chapter's `train(n_epochs, seed)`: the last element of `epochs` (a copy of `t` for 0
 * epochs, so the result never shares tensors with `t`). Fails with `NonFinite`, or with
 * `InvalidTargets` for a batch whose targets do not fit the model (`t` stays valid either way).
 */
export const train = <E, R, E2 = never, R2 = never>(
  t: Trainer<E, R>,
  nEpochs: number,
  seed = 42,
  options: TrainOptions<E2, R2> = {}
): Effect.Effect<
  Trainer<E, R>,
  E | E2 | NonFinite | StepError | InvalidTrainer | OptimErrors.SchedulerStepError,
  R | R2 | Engine
> =>
  epochs(t, { epochs: nEpochs, seed }).pipe(
    Stream.tap(({ trainer }) =>
      options.onEpochEnd === undefined
        ? Effect.void
        : Effect.onError(options.onEpochEnd(trainer), () => Effect.sync(() => dispose(trainer)))
    ),
    Stream.runLast,
    Effect.map(Option.match({ onNone: () => cloneTensors({ ...t, seed }), onSome: ({ trainer }) => trainer }))
  )

/**
 * Signal for a mini-batch scheduler after batch i of epoch e (0-based): schedulers that declare
 * `fractionalEpoch` (warm restarts) take `e + i / n` (PyTorch's documented use; the chapter
 * passes its 1-based `total_epochs + i / n`); the others a plain step, as the chapter's
 * `scheduler.step()`.
 */
const batchSignal = (scheduler: Scheduler.Any, fracEpoch: number): Scheduler.Signal | undefined =>
  scheduler.fractionalEpoch === true ? { epoch: fracEpoch } : undefined

const mean = (xs: ReadonlyArray<number>) =>
  xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length

/** Mean mini-batch loss over a loader in eval mode, without gradients (the chapter's validation). */
export const evaluate = <E, R>(
  t: Trainer<any, any>,
  loader: Loader<E, R>,
  epoch = 0
): Effect.Effect<number, E | InvalidTargets | InvalidLayer, R | Engine> =>
  Effect.zipRight(
    Engine,
    Effect.map(validate(t, loader, epoch, false), (v) => v.loss)
  )

/**
 * The validation pass: mean mini-batch loss in eval mode and, when asked, the per-class counts
 * of the same outputs (so the chapter's `correct` on the validation set needs no second pass).
 * Targets that do not fit the model (or an input a layer cannot take) stop the fold, which then
 * fails once with `InvalidTargets` (`InvalidLayer`).
 */
const validate = <E, R>(
  t: Trainer<any, any>,
  loader: Loader<E, R>,
  epoch: number,
  countCorrect: boolean
): Effect.Effect<
  { readonly loss: number; readonly correct: Metrics.PerClass | undefined },
  E | InvalidTargets | InvalidLayer,
  R
> => {
  interface Acc {
    readonly losses: Array<number>
    readonly correct: Metrics.PerClass | undefined
    readonly failure: InvalidTargets | InvalidLayer | undefined
  }
  const start: Acc = { losses: [], correct: undefined, failure: undefined }
  return Effect.flatMap(
    Stream.runFoldWhile(
      loader.batches(epoch, reuse),
      start,
      (acc) => acc.failure === undefined,
      (acc, batch): Acc => {
        const ran = Module.catchInvalidLayer(() => outputs(t, batch))
        if (Either.isLeft(ran)) return { ...acc, failure: ran.left }
        const out = ran.right
        const evaluated = t.config.loss.evaluate(out.values, out.shape, batch.y)
        if (Either.isLeft(evaluated)) return { ...acc, failure: evaluated.left }
        acc.losses.push(evaluated.right.loss)
        if (!countCorrect) return acc
        const correct = addCorrect(acc.correct, out, batch.y)
        return Either.isLeft(correct) ? { ...acc, failure: correct.left } : { ...acc, correct: correct.right }
      }
    ),
    (acc) =>
      acc.failure !== undefined
        ? Effect.fail(acc.failure)
        : Effect.succeed({ loss: mean(acc.losses), correct: countCorrect ? (acc.correct ?? []) : undefined })
  )
}

/** The running per-class counts with a batch's outputs added. */
const addCorrect = (
  acc: Metrics.PerClass | undefined,
  out: Loss.LossAndGrads["outputs"],
  y: Targets
): Either.Either<Metrics.PerClass, InvalidTargets> =>
  Either.flatMap(Metrics.correct(out.values, out.shape[1] ?? 1, y), (rows) =>
    acc === undefined ? Either.right(rows) : Metrics.add(acc, rows)
  )

/** The loss of one batch in eval mode (`InvalidTargets` for targets that do not fit the model). */
export const batchLoss = (
  t: Trainer<any, any>,
  batch: Batch.Batch<Targets>
): Either.Either<number, InvalidTargets | InvalidLayer> =>
  Either.flatMap(
    Module.catchInvalidLayer(() => outputs(t, batch)),
    (out) => Either.map(t.config.loss.evaluate(out.values, out.shape, batch.y), (r) => r.loss)
  )

/** Model outputs for a batch, eval mode by default: `[n, k]` values, row-major. */
export const outputs = (
  t: Pick<Trainer<any, any>, "config" | "params"> & { readonly buffers?: Tensors | undefined },
  batch: { readonly x: Float32Array; readonly shape: ReadonlyArray<number> },
  options: Module.ApplyOptions = { training: false }
): { readonly values: Float32Array; readonly shape: ReadonlyArray<number> } =>
  Loss.outputs(t.config.model, t.params, batch, { buffers: t.buffers, ...options })

/** The chapter's `predict(x)`: outputs in eval mode. */
export const predict = (
  t: Trainer<any, any>,
  batch: { readonly x: Float32Array; readonly shape: ReadonlyArray<number> }
) => outputs(t, batch).values

/**
 * The chapter's `correct(x, y)`: per class `[correct, total]`, eval mode (`InvalidTargets` for
 * targets that do not fit the outputs).
 */
export const correct = (
  t: Trainer<any, any>,
  batch: Batch.Batch<Targets>,
  threshold = 0.5
): Either.Either<Metrics.PerClass, InvalidTargets | InvalidLayer> => {
  const ran = Module.catchInvalidLayer(() => outputs(t, batch))
  if (Either.isLeft(ran)) return Either.left(ran.left)
  const out = ran.right
  return Metrics.correct(out.values, out.shape[1] ?? 1, batch.y, threshold)
}

type Rows = ReadonlyArray<ReadonlyArray<number>>

/**
 * The chapter's `loader_apply(loader, func, reduce)`: `f` on every batch, rows added up
 * element-wise ("sum") or averaged over batches ("mean"). `f` may fail (return an `Either`, as
 * `correct` does): the first failure ends the pass and is its error.
 */
export const loaderApply = <E, R, E2 = never>(
  loader: Loader<E, R>,
  f: (batch: Batch.Batch<Targets>) => Rows | Either.Either<Rows, E2>,
  reduce: "sum" | "mean" = "sum",
  epoch = 0
): Effect.Effect<Rows, E | E2, R> => {
  interface Acc {
    readonly sum: Array<Array<number>> | undefined
    readonly n: number
    readonly failure: Option.Option<E2>
  }
  const start: Acc = { sum: undefined, n: 0, failure: Option.none() }
  return Effect.flatMap(
    Stream.runFoldWhile(
      loader.batches(epoch),
      start,
      (acc) => Option.isNone(acc.failure),
      (acc, batch): Acc => {
        const result = f(batch)
        if (Either.isEither(result) && Either.isLeft(result))
          return { ...acc, failure: Option.some(result.left) }
        const rows = Either.isEither(result) ? (result as Either.Right<E2, Rows>).right : result
        const sum = acc.sum ?? rows.map((r) => r.map(() => 0))
        rows.forEach((r, i) => {
          r.forEach((v, j) => {
            sum[i][j] += v
          })
        })
        return { sum, n: acc.n + 1, failure: acc.failure }
      }
    ),
    ({ sum, n, failure }) =>
      Option.isSome(failure)
        ? Effect.fail(failure.value)
        : Effect.succeed(
            sum === undefined ? [] : reduce === "sum" ? sum : sum.map((r) => r.map((v) => v / n))
          )
  )
}

/** Number of trainable scalars (6,823 for CNN2 with 5 filters). */
export const countParameters = (t: Trainer<any, any>): number => Module.countParameters(t.config.model)

// ---------------------------------------------------------------------------- LR range test

export interface RangeTestOptions extends LrRangeTest.Options {
  /** Defaults to the training loader. */
  readonly loader?: Loader<any, any>
  /** Seed of the dropout masks during the test (default 42). */
  readonly seed?: number
}

/**
 * The chapter's `lr_range_test` on this trainer: from the current lr to `endLr`, one training
 * step a mini-batch, looping over the loader's epochs as needed. The trainer is a value: it is
 * not changed, and nothing needs restoring.
 */
export const lrRangeTest = <E, R>(
  t: Trainer<E, R>,
  options: RangeTestOptions
): Effect.Effect<LrRangeTest.Result, E | StepError | InvalidTrainer, R | Engine> =>
  Effect.gen(function* () {
    yield* Engine
    const loader = (options.loader ?? t.config.trainLoader) as Loader<E, R> | undefined
    if (loader === undefined) return yield* new InvalidTrainer({ reason: "no loader for the LR range test" })
    const base = hyper(t)
    const numIter = options.numIter ?? 100
    const factor = LrRange.makeLrFn(base.lr, options.endLr, numIter, options.stepMode ?? "exp")
    const seed = options.seed ?? 42
    type S = {
      readonly params: Tensors
      readonly buffers: Tensors
      readonly optState: Optimizer.OptimizerState<tf.Tensor>
      readonly i: number
    }
    const batches = Stream.flatMap(
      Stream.iterate(0, (e) => e + 1),
      (e) => loader.batches(e),
      { concurrency: 1 }
    )
    const init: S = { params: t.params, buffers: t.buffers, optState: t.optState, i: 0 }
    return yield* LrRangeTest.run({
      batches,
      init,
      lrAt: (i) => base.lr * factor(i),
      step: (s: S, batch, lr) =>
        Either.map(
          trainStep(
            t.config,
            s.params,
            s.optState,
            { ...base, lr },
            batch,
            stepRng(seed, -1, s.i),
            undefined,
            undefined,
            s.buffers
          ),
          (r) => {
            // A NaN gradient or parameter ends the test like a NaN loss does.
            const loss = r.nonFinite === undefined ? r.loss : Number.NaN
            return [loss, { params: r.params, buffers: r.buffers, optState: r.optState, i: s.i + 1 }] as const
          }
        ),
      release: (s) =>
        TfNumeric.disposeReplaced(
          [...Object.values(s.params), ...Object.values(s.buffers), ...stateTensors(s.optState)],
          [...Object.values(t.params), ...Object.values(t.buffers), ...stateTensors(t.optState)]
        ),
      options: { ...options, numIter }
    })
  })

// ------------------------------------------------------------------------------------ tensors

const stateTensors = TfNumeric.stateTensors

/**
 * One optimizer update for a hand-written loop (test/Memory.test.ts; the benchmarks run
 * `trainStep`): the new parameters and state. Unlike `trainStep` it consumes its inputs: the
 * gradients and every parameter or state tensor the update replaced are disposed. Gradients
 * that do not match the parameters are `MismatchedTree` (then nothing is disposed).
 */
export const updateAndDispose = <S extends Optimizer.OptimizerState<tf.Tensor>>(
  optimizer: Optimizer.Optimizer<tf.Tensor, S>,
  state: S,
  grads: Tensors,
  params: Tensors,
  hyper: Optimizer.Hyper
): Either.Either<{ readonly params: Tensors; readonly state: S }, OptimErrors.MismatchedTree> =>
  Either.map(TfNumeric.tidyUpdate(optimizer, state, grads, params, hyper), (next) => {
    tf.dispose(Object.values(grads))
    TfNumeric.disposeReplaced(stateTensors(state), stateTensors(next.state))
    TfNumeric.disposeReplaced(params, next.params)
    return next
  })

/** Disposes a trainer's parameters and optimizer state. */
export const dispose = (
  t: Pick<Trainer<any, any>, "params" | "optState"> & { readonly buffers?: Tensors | undefined }
): void => {
  tf.dispose([...Object.values(t.params), ...Object.values(t.buffers ?? {}), ...stateTensors(t.optState)])
}

const cloneTree = (tree: Tensors): Tensors =>
  Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, tf.clone(v)]))

/** A copy holding its own tensors (tfjs clones share storage until one is written; disposal is independent). */
export const cloneTensors = <T extends Pick<Trainer<any, any>, "params" | "optState">>(t: T): T => ({
  ...t,
  params: cloneTree(t.params),
  ...("buffers" in t ? { buffers: cloneTree((t as { buffers: Tensors }).buffers) } : {}),
  optState: OptimizerState.map(t.optState, (x) => tf.clone(x))
})

// ----------------------------------------------------------------------------------- capture

const toRequest = (interest: Events.Interest): CaptureRequest => ({
  gradients: Events.wanted(interest, "Gradients"),
  parameters: Events.wanted(interest, "Parameters"),
  activations: Events.wanted(interest, "Activations")
})

/**
 * Host copies of the tensors of `layers` in PyTorch's layout (conv weights [out, in, kh, kw],
 * linear [out, in]), so captured values read like the chapter's `register_hook` output.
 */
const layerEvents = (
  kind: "Gradients" | "Parameters",
  model: Module.Module,
  layers: ReadonlyArray<string>,
  tree: Tensors,
  where: { readonly epoch: number; readonly batch: number }
): ReadonlyArray<Events.TrainEvent> =>
  layers.map((layer) => {
    const specs = model.specs.filter((s) => Events.layerOf(s.name) === layer)
    const torch = TorchWeights.toTorch({ ...model, specs }, tree)
    const values: Record<string, { shape: ReadonlyArray<number>; values: Float32Array }> = {}
    for (const [name, t] of Object.entries(torch))
      values[Events.leafOf(name)] = { shape: t.shape, values: t.data }
    return kind === "Gradients"
      ? Events.TrainEvent.Gradients({ ...where, layer, values })
      : Events.TrainEvent.Parameters({ ...where, layer, values })
  })

/** A forward tap that copies the requested layers' outputs (NHWC maps as NCHW, PyTorch's layout). */
const activationTap =
  (
    layers: ReadonlyArray<string>,
    where: { readonly epoch: number; readonly batch: number },
    out: Array<Events.TrainEvent>
  ) =>
  (layer: string, y: tf.Tensor) => {
    if (!layers.includes(layer)) return
    const nchw = y.rank === 4 ? tf.tidy(() => tf.transpose(y, [0, 3, 1, 2])) : y
    const values = Float32Array.from(nchw.dataSync() as Float32Array)
    const shape = nchw.shape
    if (nchw !== y) nchw.dispose()
    out.push(Events.TrainEvent.Activations({ ...where, layer, shape, values }))
  }
