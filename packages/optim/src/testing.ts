/**
 * A kit to property-test optimizers and schedulers, ours and yours: fast-check arbitraries for
 * parameter trees, gradient sequences and hyperparameters, and the laws every optimizer must
 * obey. Each law is a fast-check property; a failure is shrunk to a minimal counter-example.
 *
 *   import { Laws, Arb } from "@stepwise/optim/testing"
 *   Laws.checkOptimizer(myOptimizerDef)                       // every generic law
 *   fc.assert(Laws.matchesReference(myOptimizerDef, myEquation))
 */
import { Effect, Schema } from "effect"
import * as fc from "fast-check"
import * as Float64 from "./Float64.js"
import type { Numeric, Params } from "./Numeric.js"
import { filled, type Hyper, type Optimizer, type OptimizerDef, type OptimizerState } from "./Optimizer.js"
import * as OptimizerStateSchema from "./OptimizerState.js"
import type { OptimizerConfig } from "./Optimizers.js"
import * as Optimizers from "./Optimizers.js"
import type { Scheduler, Signal } from "./Scheduler.js"

type T64 = Float64.Tensor

/** One random optimization problem: starting parameters and a sequence of gradients. */
export interface Problem {
  readonly params: Params<T64>
  readonly grads: ReadonlyArray<Params<T64>>
}

export interface ProblemOptions {
  /** Longest gradient sequence (default 6). */
  readonly maxSteps?: number
  /** Values are drawn in [-scale, scale] (default 4). */
  readonly scale?: number
}

const NAMES = ["conv1.weight", "conv1.bias", "conv2.weight", "fc1.weight", "fc1.bias"]

const sizeOf = (shape: ReadonlyArray<number>) => shape.reduce((a, b) => a * b, 1)

/** Arbitraries. */
export const Arb = {
  /** A finite double in [-scale, scale], rounded to float32 so every backend sees the same input. */
  value: (scale = 4): fc.Arbitrary<number> =>
    fc.double({ min: -scale, max: scale, noNaN: true, noDefaultInfinity: true }).map((x) => Math.fround(x)),

  /** A small tensor shape: 1 to 3 dimensions of 1 to 4. */
  shape: (): fc.Arbitrary<ReadonlyArray<number>> =>
    fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }),

  /** The names and shapes of a parameter tree (`conv1.weight`, ...). */
  shapes: (): fc.Arbitrary<Readonly<Record<string, ReadonlyArray<number>>>> =>
    fc
      .uniqueArray(fc.tuple(fc.constantFrom(...NAMES), Arb.shape()), {
        minLength: 1,
        maxLength: 3,
        selector: ([name]) => name
      })
      .map((entries) => Object.fromEntries(entries)),

  /** A tensor of `shape`. */
  tensor: (shape: ReadonlyArray<number>, scale = 4): fc.Arbitrary<T64> =>
    fc
      .array(Arb.value(scale), { minLength: sizeOf(shape), maxLength: sizeOf(shape) })
      .map((values) => Float64.make(values, shape)),

  /** A parameter (or gradient) tree with the given names and shapes. */
  tree: (shapes: Readonly<Record<string, ReadonlyArray<number>>>, scale = 4): fc.Arbitrary<Params<T64>> =>
    fc.record(
      Object.fromEntries(Object.entries(shapes).map(([name, shape]) => [name, Arb.tensor(shape, scale)]))
    ),

  /** A parameter tree and a sequence of gradient trees of the same shapes. */
  problem: (options: ProblemOptions = {}): fc.Arbitrary<Problem> =>
    Arb.shapes().chain((shapes) =>
      fc.record({
        params: Arb.tree(shapes, options.scale),
        grads: fc.array(Arb.tree(shapes, options.scale), { minLength: 1, maxLength: options.maxSteps ?? 6 })
      })
    ),

  /** Per-step hyperparameters around an optimizer's defaults: any lr in (0, 1], and momentum / beta1 in [0, 0.99] when it has them. */
  hyper: (defaults: Hyper): fc.Arbitrary<Hyper> =>
    fc
      .record({
        lr: fc.double({ min: 1e-4, max: 1, noNaN: true }),
        momentum:
          defaults.momentum === undefined
            ? fc.constant(undefined)
            : fc.double({ min: 0, max: 0.99, noNaN: true }),
        beta1:
          defaults.beta1 === undefined
            ? fc.constant(undefined)
            : fc.double({ min: 0, max: 0.99, noNaN: true })
      })
      .map((h) => {
        const out: { lr: number; momentum?: number; beta1?: number } = { lr: h.lr }
        if (h.momentum !== undefined) out.momentum = h.momentum
        if (h.beta1 !== undefined) out.beta1 = h.beta1
        return out
      }),

  /**
   * A valid built-in optimizer configuration (every optimizer, every flag). RMSprop's alpha is
   * drawn in [0.5, 0.999]: a centered RMSprop with alpha near 0 divides by `sqrt(g^2 - g^2) + eps`,
   * which no float32 backend can follow.
   */
  optimizerConfig: (): fc.Arbitrary<OptimizerConfig> => {
    const lr = fc.double({ min: 1e-4, max: 1, noNaN: true })
    const unit = fc.double({ min: 0, max: 0.999, noNaN: true })
    const decay = fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.5, noNaN: true }))
    const eps = fc.constantFrom(1e-8, 1e-6, 1e-3)
    const sgd = fc
      .record({
        lr,
        momentum: fc.oneof(fc.constant(0), unit),
        dampening: fc.oneof(fc.constant(0), unit),
        weightDecay: decay,
        nesterov: fc.boolean(),
        maximize: fc.boolean()
      })
      .map((c) => ({
        _tag: "SGD" as const,
        ...c,
        nesterov: c.nesterov && c.momentum > 0 && c.dampening === 0
      }))
    const adamFields = {
      lr,
      betas: fc.tuple(unit, unit),
      eps,
      weightDecay: decay,
      amsgrad: fc.boolean(),
      maximize: fc.boolean()
    }
    const adam = fc.record(adamFields).map((c) => ({ _tag: "Adam" as const, ...c }))
    const adamW = fc.record(adamFields).map((c) => ({ _tag: "AdamW" as const, ...c }))
    const rmsprop = fc
      .record({
        lr,
        alpha: fc.double({ min: 0.5, max: 0.999, noNaN: true }),
        eps,
        weightDecay: decay,
        momentum: fc.oneof(fc.constant(0), unit),
        centered: fc.boolean(),
        maximize: fc.boolean()
      })
      .map((c) => ({ _tag: "RMSprop" as const, ...c }))
    const adagrad = fc
      .record({
        lr,
        lrDecay: decay,
        weightDecay: decay,
        initialAccumulatorValue: fc.oneof(fc.constant(0), unit),
        eps: fc.constantFrom(1e-10, 1e-6),
        maximize: fc.boolean()
      })
      .map((c) => ({ _tag: "Adagrad" as const, ...c }))
    return fc.oneof(sgd, adam, adamW, rmsprop, adagrad)
  }
}

/** The built-in optimizer of a (valid) config. */
export const optimizerOf = (config: OptimizerConfig): OptimizerDef =>
  Effect.runSync(Optimizers.fromConfig(config))

const snapshot = (tree: Params<T64>) =>
  Object.fromEntries(Object.entries(tree).map(([k, t]) => [k, Array.from(t.data)]))
const snapshotState = (state: OptimizerState<T64>) =>
  JSON.stringify({
    step: state.step,
    slots: Object.fromEntries(Object.entries(state.slots).map(([k, v]) => [k, snapshot(v)]))
  })

/** Runs `problem` from `init`, returning every intermediate state and parameter tree. */
export const run = <T>(
  opt: Optimizer<T>,
  params: Params<T>,
  grads: ReadonlyArray<Params<T>>,
  hypers: (step: number) => Hyper = () => opt.defaults
) => {
  let state = opt.init(params)
  let current = params
  const states = [state]
  const trajectory = [current]
  grads.forEach((g, t) => {
    const next = opt.update(state, g, current, hypers(t))
    state = next.state
    current = next.params
    states.push(state)
    trajectory.push(current)
  })
  return { states, trajectory, state, params: current }
}

/**
 * Largest elementwise `|a - b| / max(|b|, floor)` (equal values, 0s included, give 0; a NaN
 * difference or a length mismatch gives Infinity).
 */
export const maxRelErr = (actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 1e-12): number => {
  if (actual.length !== expected.length) return Number.POSITIVE_INFINITY
  let worst = 0
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i])
    if (Number.isNaN(diff)) return Number.POSITIVE_INFINITY
    if (diff !== 0) worst = Math.max(worst, diff / Math.max(Math.abs(expected[i]), floor))
  }
  return worst
}

/** `maxRelErr` over two trees (a leaf missing from `a` gives Infinity). */
export const treeRelErr = (a: Params<T64>, b: Params<T64>, floor = 1e-12): number => {
  let worst = 0
  for (const name of Object.keys(b)) {
    const x = a[name]?.data
    if (x === undefined) return Number.POSITIVE_INFINITY
    worst = Math.max(worst, maxRelErr(x, b[name].data, floor))
  }
  return worst
}

const equalTrees = (a: Params<T64>, b: Params<T64>) =>
  Object.keys(a).length === Object.keys(b).length &&
  Object.keys(b).every((k) =>
    Object.is(JSON.stringify(Array.from(a[k].data)), JSON.stringify(Array.from(b[k].data)))
  )

export interface LawOptions extends ProblemOptions {
  /** Draw per-step hyperparameters around the defaults (default true); false uses `defaults` every step. */
  readonly randomHyper?: boolean
}

const withHypers = (opt: Optimizer<T64>, options: LawOptions) =>
  Arb.problem(options).chain((problem) =>
    fc.record({
      problem: fc.constant(problem),
      hypers:
        options.randomHyper === false
          ? fc.constant(problem.grads.map(() => opt.defaults))
          : fc.array(Arb.hyper(opt.defaults), {
              minLength: problem.grads.length,
              maxLength: problem.grads.length
            })
    })
  )

/** The laws, each a fast-check property over random problems. */
export const Laws = {
  /** Same inputs give bitwise-same outputs, and `update` never mutates its inputs. */
  purity: (def: OptimizerDef, options: LawOptions = {}) => {
    const opt = def(Float64.Float64)
    return fc.property(withHypers(opt, options), ({ problem, hypers }) => {
      let state = opt.init(problem.params)
      let params = problem.params
      for (let t = 0; t < problem.grads.length; t++) {
        const grads = problem.grads[t]
        const before = [
          snapshotState(state),
          JSON.stringify(snapshot(params)),
          JSON.stringify(snapshot(grads)),
          JSON.stringify(hypers[t])
        ]
        const a = opt.update(state, grads, params, hypers[t])
        const b = opt.update(state, grads, params, hypers[t])
        const after = [
          snapshotState(state),
          JSON.stringify(snapshot(params)),
          JSON.stringify(snapshot(grads)),
          JSON.stringify(hypers[t])
        ]
        if (before.some((s, i) => s !== after[i]))
          throw new Error(`update mutated its inputs at step ${t + 1}`)
        if (!equalTrees(a.params, b.params) || snapshotState(a.state) !== snapshotState(b.state)) {
          throw new Error(`two identical updates differ at step ${t + 1}`)
        }
        state = a.state
        params = a.params
      }
    })
  },

  /**
   * From a fresh state, zero gradients leave the parameters exactly unchanged. Only for
   * optimizers without weight decay (decay moves parameters on its own).
   */
  zeroGradientFixedPoint: (def: OptimizerDef, options: LawOptions = {}) => {
    const opt = def(Float64.Float64)
    return fc.property(withHypers(opt, options), ({ problem, hypers }) => {
      const zeros = problem.grads.map((g) => filled(Float64.Float64, g, 0))
      const { params } = run(opt, problem.params, zeros, (t) => hypers[t])
      if (!equalTrees(params, problem.params)) throw new Error("zero gradients moved the parameters")
    })
  },

  /**
   * The state survives its Schema (plain numbers, as a checkpoint holds it) and the run
   * continues bitwise identically from the decoded state.
   */
  stateRoundTrip: (def: OptimizerDef, options: LawOptions = {}) => {
    const opt = def(Float64.Float64)
    const schema = OptimizerStateSchema.schema(Float64.Float64)
    return fc.property(withHypers(opt, options), fc.nat(), ({ problem, hypers }, cut) => {
      const k = cut % (problem.grads.length + 1)
      const head = run(opt, problem.params, problem.grads.slice(0, k), (t) => hypers[t])
      const json = JSON.parse(JSON.stringify(Schema.encodeSync(schema)(head.state)))
      const decoded = Schema.decodeUnknownSync(schema)(json)
      if (snapshotState(decoded) !== snapshotState(head.state))
        throw new Error(`the state changed through its Schema after ${k} steps`)
      let [a, b] = [
        { state: head.state, params: head.params },
        { state: decoded, params: head.params }
      ]
      for (let t = k; t < problem.grads.length; t++) {
        a = opt.update(a.state, problem.grads[t], a.params, hypers[t])
        b = opt.update(b.state, problem.grads[t], b.params, hypers[t])
      }
      if (!equalTrees(a.params, b.params))
        throw new Error(`resuming from the decoded state after ${k} steps diverged`)
    })
  },

  /**
   * Another backend (e.g. tfjs float32 tensors) follows the float64 reference: the largest
   * difference, relative to the largest magnitude the tensor takes along the trajectory, is at
   * most `tolerance` (default 1e-4). `scope` wraps each run (pass `tf.tidy`).
   */
  backendsAgree: <T>(
    def: OptimizerDef,
    N: Numeric<T>,
    options: LawOptions & { readonly tolerance?: number; readonly scope?: (f: () => number) => number } = {}
  ) => {
    const ref = def(Float64.Float64)
    const other = def(N)
    const scope = options.scope ?? ((f) => f())
    const tolerance = options.tolerance ?? 1e-4
    return fc.property(withHypers(ref, options), ({ problem, hypers }) => {
      const reference = run(ref, problem.params, problem.grads, (t) => hypers[t])
      const expected = reference.params
      // error relative to the largest magnitude each tensor reaches along the way: updates that
      // cancel (a parameter back near 0) leave float32 rounding of the path, not of the endpoint
      const scaleOf = (name: string) =>
        Math.max(1e-6, ...reference.trajectory.flatMap((tree) => Array.from(tree[name].data, Math.abs)))
      const err = scope(() => {
        const toN = (tree: Params<T64>) =>
          Object.fromEntries(Object.entries(tree).map(([k, t]) => [k, N.fromArray(t.data, t.shape)]))
        const actual = run(other, toN(problem.params), problem.grads.map(toN), (t) => hypers[t]).params
        let worst = 0
        for (const name of Object.keys(expected)) {
          const [a, e] = [N.toArray(actual[name]), expected[name].data]
          let diff = 0
          for (let i = 0; i < e.length; i++) diff = Math.max(diff, Math.abs(a[i] - e[i]))
          worst = Math.max(worst, Number.isNaN(diff) ? Number.POSITIVE_INFINITY : diff / scaleOf(name))
        }
        return worst
      })
      if (!(err <= tolerance))
        throw new Error(`${N.name} differs from float64 by ${err} (tolerance ${tolerance})`)
    })
  },

  /**
   * The optimizer equals a reference equation written per element: `step(memory, param, grad,
   * hyper, t)` with `t = 1, 2, ...`, starting from `initial`. Relative tolerance 1e-12 by default.
   */
  matchesReference: <M>(
    def: OptimizerDef,
    reference: {
      readonly initial: M
      readonly step: (
        memory: M,
        param: number,
        grad: number,
        hyper: Hyper,
        t: number
      ) => { readonly param: number; readonly memory: M }
    },
    options: LawOptions & { readonly tolerance?: number } = {}
  ) => {
    const opt = def(Float64.Float64)
    return fc.property(withHypers(opt, options), ({ problem, hypers }) => {
      const actual = run(opt, problem.params, problem.grads, (t) => hypers[t]).params
      const expected: Record<string, T64> = {}
      for (const [name, p0] of Object.entries(problem.params)) {
        const out = new Float64Array(p0.data.length)
        for (let i = 0; i < out.length; i++) {
          let memory = reference.initial
          let p = p0.data[i]
          problem.grads.forEach((g, t) => {
            const next = reference.step(memory, p, g[name].data[i], hypers[t], t + 1)
            p = next.param
            memory = next.memory
          })
          out[i] = p
        }
        expected[name] = { shape: p0.shape, data: out }
      }
      const err = treeRelErr(actual, expected)
      if (!(err <= (options.tolerance ?? 1e-12)))
        throw new Error(`differs from the reference equation by ${err}`)
    })
  },

  /** Runs every generic law (zero-gradient only when `decays` is false) with `fc.assert`. */
  checkOptimizer: (
    def: OptimizerDef,
    options: LawOptions & {
      readonly decays?: boolean
      readonly numRuns?: number
      readonly seed?: number
    } = {}
  ) => {
    const params = {
      numRuns: options.numRuns ?? 200,
      ...(options.seed === undefined ? {} : { seed: options.seed })
    }
    fc.assert(Laws.purity(def, options), params)
    fc.assert(Laws.stateRoundTrip(def, options), params)
    if (options.decays !== true) fc.assert(Laws.zeroGradientFixedPoint(def, options), params)
  },

  /** A scheduler is pure, and its states survive JSON at every step. */
  schedulerPureAndJson: <S>(
    scheduler: Scheduler<S>,
    base: Hyper,
    signals: fc.Arbitrary<Signal | undefined> = fc.constant(undefined)
  ) =>
    fc.property(fc.array(signals, { minLength: 1, maxLength: 60 }), (steps) => {
      let state = scheduler.init(base)
      for (const signal of steps) {
        const before = JSON.stringify(state)
        const a = scheduler.step(state, signal)
        const b = scheduler.step(state, signal)
        if (JSON.stringify(state) !== before) throw new Error("step mutated its state")
        if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error("two identical steps differ")
        const revived = JSON.parse(JSON.stringify(a)) as S
        if (JSON.stringify(scheduler.current(revived)) !== JSON.stringify(scheduler.current(a))) {
          throw new Error("a state changed through JSON")
        }
        state = a
      }
    })
}
