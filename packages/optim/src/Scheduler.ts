import { Either, type ParseResult, Schema } from "effect"
import type { SchedulerStepError } from "./Errors.js"
import type { Hyper } from "./Optimizer.js"

/** A JSON value: what a checkpoint's metadata can hold (numbers finite). */
export type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }

const isJson = (u: unknown): u is Json => {
  if (u === null || typeof u === "boolean" || typeof u === "string") return true
  if (typeof u === "number") return Number.isFinite(u)
  if (Array.isArray(u)) return u.every(isJson)
  if (typeof u === "object") return Object.values(u as object).every(isJson)
  return false
}

/** Checks a value is JSON (finite numbers, no undefined): both sides of a state schema end here. */
export const JsonValue: Schema.Schema<Json> = Schema.declare(isJson, {
  identifier: "Json",
  description: "a JSON value (finite numbers only)"
})

/**
 * Any number, JSON-safe: finite numbers as themselves, the non-finite ones (ReduceLROnPlateau's
 * initial best, PyTorch's `inf`) as the strings "Infinity", "-Infinity" and "NaN".
 */
export const JsonNumber: Schema.Schema<number, number | "Infinity" | "-Infinity" | "NaN"> = Schema.Union(
  Schema.Number.pipe(Schema.finite()),
  Schema.Literal("Infinity", "-Infinity", "NaN")
).pipe(
  Schema.transform(Schema.Number, {
    strict: true,
    decode: (e) => (typeof e === "number" ? e : Number(e)),
    encode: (n) => (Number.isFinite(n) ? n : Number.isNaN(n) ? "NaN" : n > 0 ? "Infinity" : "-Infinity")
  })
)

/** The hyperparameters a scheduler starts from (its base values). */
export const HyperSchema = Schema.Struct({
  lr: JsonNumber,
  momentum: Schema.optional(JsonNumber),
  beta1: Schema.optional(JsonNumber)
})

/**
 * A state schema whose encoded side is checked to be JSON: what `Scheduler.stateSchema` holds.
 * Encoding a state that is not JSON-safe fails instead of writing a lossy checkpoint.
 */
export const jsonState = <S, I>(schema: Schema.Schema<S, I>): Schema.Schema<S, Json> =>
  Schema.compose(JsonValue, schema, { strict: false })

/**
 * When a training loop steps a scheduler: after every mini-batch, after every epoch, or after
 * every validation with the validation metric (ReduceLROnPlateau).
 */
export type Cadence = "batch" | "epoch" | "metric"

/**
 * What a step receives. `epoch` may be fractional (`epoch + batch / batches`) for the schedulers
 * that declare `fractionalEpoch` (CosineAnnealingWarmRestarts); `metric` is the validation loss
 * for "metric".
 * An empty signal is PyTorch's argument-less `scheduler.step()`.
 */
export interface Signal {
  readonly epoch?: number
  readonly metric?: number
}

/**
 * A scheduler as a pure state machine. `init(base)` gives the state whose `current` is the lr
 * used for the first step (PyTorch's "lr at step 0"); each `step` is one `scheduler.step()`.
 * `stateSchema` encodes a state as JSON (checkpoints hold it) and decodes it back; composite
 * schedulers compose their children's. `step` returns an Either: it fails
 * with `SchedulerStepError` where PyTorch's `step()` raises (OneCycleLR past its total steps,
 * CosineAnnealingWarmRestarts given a negative epoch); in `Effect.gen` write
 * `state = yield* scheduler.step(state)`.
 */
export interface Scheduler<S> extends Any {
  readonly init: (base: Hyper) => S
  readonly step: (state: S, signal?: Signal) => Either.Either<S, SchedulerStepError>
  readonly current: (state: S) => Hyper
  readonly stateSchema: Schema.Schema<S, Json>
}

/**
 * A scheduler whose state type is hidden (an existential): what a config builds and what a
 * trainer or a composite scheduler holds. `start(base)` pairs it with its initial state, so a
 * state only ever goes back to the scheduler that made it. Every `Scheduler<S>` is one.
 */
export interface Any {
  readonly name: string
  readonly cadence: Cadence
  /**
   * True when a "batch" step should receive the fractional epoch, `signal.epoch = epoch +
   * batch / batches` (0-based; PyTorch's documented use of CosineAnnealingWarmRestarts). Others
   * get a plain step, as the chapter's argument-less `scheduler.step()`.
   */
  readonly fractionalEpoch?: boolean
  /** PyTorch's construction: the scheduler at its first state, from the optimizer's values. */
  readonly start: (base: Hyper) => Scheduled
}

/**
 * A scheduler together with its state (the state's type hidden, its scheduler's own): the
 * value a training loop carries and steps. Immutable: `step` returns the next one.
 */
export interface Scheduled extends Any {
  /** The hyperparameters at this state (`scheduler.current(state)`). */
  readonly hyper: Hyper
  /** One `scheduler.step()`. */
  readonly step: (signal?: Signal) => Either.Either<Scheduled, SchedulerStepError>
  /** The state through `stateSchema`: JSON, what a checkpoint holds. */
  readonly encode: () => Either.Either<Json, ParseResult.ParseError>
  /** The same scheduler at an encoded state (a checkpoint's), checked by `stateSchema`. */
  readonly decode: (encoded: unknown) => Either.Either<Scheduled, ParseResult.ParseError>
  /** Opens the pair: `f` sees the scheduler and its state with their one type. */
  readonly use: <R>(f: <S>(scheduler: Scheduler<S>, state: S) => R) => R
}

/** The pair of `scheduler` and one of its states. */
export const scheduled = <S>(scheduler: Scheduler<S>, state: S): Scheduled => ({
  name: scheduler.name,
  cadence: scheduler.cadence,
  fractionalEpoch: scheduler.fractionalEpoch,
  start: scheduler.start,
  hyper: scheduler.current(state),
  step: (signal) => Either.map(scheduler.step(state, signal), (next) => scheduled(scheduler, next)),
  encode: () => Schema.encodeEither(scheduler.stateSchema)(state),
  decode: (encoded) =>
    Either.map(Schema.decodeUnknownEither(scheduler.stateSchema)(encoded), (s) => scheduled(scheduler, s)),
  use: (f) => f(scheduler, state)
})

/** A scheduler from its parts (adds `start`, which pairs it with `init(base)`). */
export const make = <S>(parts: Omit<Scheduler<S>, "start">): Scheduler<S> => {
  const self: Scheduler<S> = { ...parts, start: (base) => scheduled(self, parts.init(base)) }
  return self
}

/** The state of every scheduler that is a closed form of the step count. */
export interface EpochState {
  /** PyTorch's `last_epoch`: 0 after construction, +1 each `step()`. */
  readonly epoch: number
  readonly base: Hyper
}

export const EpochState: Schema.Schema<EpochState, Json> = jsonState(
  Schema.Struct({ epoch: JsonNumber, base: HyperSchema })
)

/**
 * A scheduler given by its closed form `at(base, epoch)`. A signal's `epoch` sets the count
 * explicitly (PyTorch's deprecated `step(epoch)`); a plain step adds one.
 */
export const closedForm = (
  name: string,
  cadence: Cadence,
  at: (base: Hyper, epoch: number) => Hyper
): Scheduler<EpochState> =>
  make({
    name,
    cadence,
    init: (base) => ({ epoch: 0, base }),
    step: (state, signal) => Either.right({ epoch: signal?.epoch ?? state.epoch + 1, base: state.base }),
    current: (state) => at(state.base, state.epoch),
    stateSchema: EpochState
  })

/** `bisect.bisect_right(sorted, x)`: how many entries are <= x. */
export const bisectRight = (sorted: ReadonlyArray<number>, x: number): number => {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (x < sorted[mid]) hi = mid
    else lo = mid + 1
  }
  return lo
}

/** Which hyperparameter a momentum-cycling scheduler drives: `beta1` on Adam-like, else `momentum`. */
export const withMomentum = (base: Hyper, lr: number, momentum: number | undefined): Hyper =>
  momentum === undefined
    ? { ...base, lr }
    : base.beta1 !== undefined
      ? { ...base, lr, beta1: momentum }
      : { ...base, lr, momentum }

/** The cosine annealing of CosineAnnealingLR and SGDR: `etaMin + (base - etaMin) (1 + cos(pi t / period)) / 2`. */
export const cosineAnnealing = (base: number, etaMin: number, t: number, period: number): number =>
  etaMin + ((base - etaMin) * (1 + Math.cos((Math.PI * t) / period))) / 2
