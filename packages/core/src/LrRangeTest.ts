/**
 * Leslie Smith's LR range test, the chapter's `lr_range_test`, as a fold that never touches the
 * state it starts from: each iteration computes the loss of one mini-batch at the current state,
 * records (lr, EWMA-smoothed loss), and only then takes a training step with that lr. The caller
 * keeps its original state value, so "restoring" is simply not using the states produced here.
 *
 * Differences from the chapter, all opt-in through options: the test stops early once the smoothed
 * loss exceeds `divergeTh` times the best smoothed loss so far (torch-lr-finder's rule, default 5)
 * or once a loss is not finite; and it suggests learning rates (`steepest`, `valley`, `minimum`).
 */
import { Ewma, type LrRange } from "@stepwise/optim"
import { Effect, Either, Option, Stream } from "effect"

/** Exponential or linear steps: optim's `LrRange.makeLrFn` (the chapter's `make_lr_fn`). */
export type StepMode = LrRange.StepMode

export interface Options {
  readonly endLr: number
  /** Iterations (mini-batches), default 100. */
  readonly numIter?: number
  readonly stepMode?: StepMode
  /** EWMA weight of the newest loss, default 0.05 (the chapter's `alpha`). */
  readonly alpha?: number
  /** Stop when smoothed loss > divergeTh * best smoothed loss; default 5; `Infinity` never stops. */
  readonly divergeTh?: number
}

export interface Tracking {
  readonly lr: ReadonlyArray<number>
  /** Smoothed losses, as the chapter's `tracking['loss']`. */
  readonly loss: ReadonlyArray<number>
}

export interface Suggestion {
  readonly lr: number
  /** Index into `tracking`. */
  readonly index: number
}

export interface Suggestions {
  /** Steepest descent of the smoothed loss against log(lr) (fastai's `steep`). */
  readonly steepest: Suggestion | undefined
  /** The middle of the longest descending stretch (fastai's default `valley`). */
  readonly valley: Suggestion | undefined
  /** The lr of the smallest smoothed loss, divided by 10 (fastai's `minimum`). */
  readonly minimum: Suggestion | undefined
}

export interface Result {
  readonly tracking: Tracking
  readonly suggestions: Suggestions
  /** Why the test ended before `numIter` iterations, if it did. */
  readonly stopped: "diverged" | "nonFinite" | undefined
}

/** Smoothing: the first loss as it is, then `alpha * loss + (1 - alpha) * previous` (no debiasing). */
export const smooth = (previous: number | undefined, loss: number, alpha: number): number =>
  previous === undefined ? loss : Ewma.ewma(previous, loss, alpha)

/** torch-lr-finder's stop rule: the smoothed loss went above `divergeTh` times the best so far. */
export const isDiverged = (smoothed: number, best: number, divergeTh = 5): boolean =>
  smoothed > divergeTh * best

/**
 * How many leading points of a curve matter: everything before the first diverged point (the
 * diverged point itself is recorded, like torch-lr-finder, but only says "it blew up").
 */
export const beforeDivergence = (loss: ReadonlyArray<number>, divergeTh = 5): number => {
  let best = Number.POSITIVE_INFINITY
  for (let i = 0; i < loss.length; i++) {
    if (!Number.isFinite(loss[i])) return i
    best = Math.min(best, loss[i])
    if (isDiverged(loss[i], best, divergeTh)) return i
  }
  return loss.length
}

/** The lr of iteration `i` (the chapter's `start_lr * lr_fn(i)`). */
export type LrAt = (iteration: number) => number

interface Fold<S, E> {
  readonly state: S
  /** A step that failed: the fold stops and the test fails with it. */
  readonly failure: Option.Option<E>
  readonly iteration: number
  readonly lr: Array<number>
  readonly loss: Array<number>
  readonly best: number
  readonly stopped: Result["stopped"]
  readonly done: boolean
}

/**
 * Runs the test over `batches` (the caller repeats its loader as needed: the test takes at most
 * `numIter`). `step(state, batch, lr)` returns the loss of `batch` at `state` and the state after
 * one update with `lr`, or an `Either` failing with why the step cannot run (targets that do
 * not fit the model): the test then stops and fails with it. `release` is called on every state
 * this fold created and no longer needs (never on `init`, and the final state too, since nobody
 * keeps it).
 */
export const run = <S, B, E, R, E2 = never>(args: {
  readonly batches: Stream.Stream<B, E, R>
  readonly init: S
  readonly lrAt: LrAt
  readonly step: (
    state: S,
    batch: B,
    lr: number
  ) => readonly [number, S] | Either.Either<readonly [number, S], E2>
  readonly release?: (state: S) => void
  readonly options: Options
}): Effect.Effect<Result, E | E2, R> => {
  const numIter = args.options.numIter ?? 100
  const alpha = args.options.alpha ?? 0.05
  const divergeTh = args.options.divergeTh ?? 5
  const release = (s: S) => {
    if (s !== args.init) args.release?.(s)
  }
  const start: Fold<S, E2> = {
    state: args.init,
    failure: Option.none(),
    iteration: 0,
    lr: [],
    loss: [],
    best: Number.POSITIVE_INFINITY,
    stopped: undefined,
    done: numIter <= 0
  }
  return Stream.runFoldWhile(
    Stream.take(args.batches, numIter),
    start,
    (f) => !f.done,
    (f, batch): Fold<S, E2> => {
      const lr = args.lrAt(f.iteration)
      const stepped = args.step(f.state, batch, lr)
      if (Either.isEither(stepped) && Either.isLeft(stepped))
        return { ...f, failure: Option.some(stepped.left), done: true }
      const [raw, next] = Either.isEither(stepped)
        ? (stepped as Either.Right<E2, readonly [number, S]>).right
        : stepped
      release(f.state)
      if (!Number.isFinite(raw)) return { ...f, state: next, done: true, stopped: "nonFinite" as const }
      const s = smooth(f.loss.at(-1), raw, alpha)
      f.lr.push(lr)
      f.loss.push(s)
      const best = Math.min(f.best, s)
      const iteration = f.iteration + 1
      const diverged = isDiverged(s, best, divergeTh)
      // Diverging on the last planned iteration is not stopping early: all numIter steps ran.
      return {
        state: next,
        failure: f.failure,
        iteration,
        lr: f.lr,
        loss: f.loss,
        best,
        stopped: diverged && iteration < numIter ? ("diverged" as const) : undefined,
        done: diverged || iteration >= numIter
      }
    }
  ).pipe(
    Effect.flatMap((f) => {
      release(f.state)
      if (Option.isSome(f.failure)) return Effect.fail(f.failure.value)
      const tracking = { lr: f.lr, loss: f.loss }
      return Effect.succeed({ tracking, suggestions: suggest(tracking, numIter), stopped: f.stopped })
    })
  )
}

/**
 * Suggestions over the tracking with fastai's trimming (drop the first `numIter / 10` points and the
 * last 5, which are dominated by warm-up noise and divergence), or over everything when the
 * trimmed stretch would have fewer than 3 points.
 */
export const suggest = (tracking: Tracking, numIter = tracking.lr.length): Suggestions => {
  const n = tracking.lr.length
  let from = Math.floor(numIter / 10)
  let to = n - 5
  if (to - from < 3) {
    from = 0
    to = n
  }
  const lrs = tracking.lr.slice(from, to)
  const losses = tracking.loss.slice(from, to)
  const at = (i: number | undefined, scale = 1): Suggestion | undefined =>
    i === undefined ? undefined : { lr: lrs[i] * scale, index: from + i }
  return { steepest: at(steepest(lrs, losses)), valley: at(valley(losses)), minimum: at(argmin(losses), 0.1) }
}

const argmin = (xs: ReadonlyArray<number>): number | undefined => {
  let best: number | undefined
  for (let i = 0; i < xs.length; i++) if (best === undefined || xs[i] < xs[best]) best = i
  return best
}

/** Index of the most negative d(loss)/d(log lr) between consecutive points (the left point). */
export const steepest = (lrs: ReadonlyArray<number>, losses: ReadonlyArray<number>): number | undefined => {
  let best: number | undefined
  let bestSlope = Number.POSITIVE_INFINITY
  for (let i = 0; i + 1 < lrs.length; i++) {
    const dx = Math.log(lrs[i + 1]) - Math.log(lrs[i])
    if (dx === 0) continue
    const slope = (losses[i + 1] - losses[i]) / dx
    if (slope < bestSlope) {
      bestSlope = slope
      best = i
    }
  }
  return best
}

/**
 * fastai's valley: the longest strictly decreasing subsequence of the losses (O(n^2) dynamic
 * programme), then a point halfway through its middle third: `start + len/3 + len/6`.
 */
export const valley = (losses: ReadonlyArray<number>): number | undefined => {
  const n = losses.length
  if (n === 0) return undefined
  const lds = new Array<number>(n).fill(1)
  let maxStart = 0
  let maxEnd = 0
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      if (losses[i] < losses[j] && lds[i] < lds[j] + 1) lds[i] = lds[j] + 1
      if (lds[maxEnd] < lds[i]) {
        maxEnd = i
        maxStart = maxEnd - lds[maxEnd]
      }
    }
  }
  const sections = (maxEnd - maxStart) / 3
  // fastai can produce maxStart = -1 (a run decreasing from index 0); clamp into range.
  return Math.min(n - 1, Math.max(0, maxStart + Math.trunc(sections) + Math.trunc(sections / 2)))
}
