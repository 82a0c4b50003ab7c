/**
 * A kit to property-test optimizers and schedulers, ours and yours: fast-check arbitraries for
 * parameter trees, gradient sequences and hyperparameters, and the laws every optimizer must
 * obey. Each law is a fast-check property; a failure is shrunk to a minimal counter-example and
 * reported as a `LawViolation` naming the law, the parameter, the element, the step, and the
 * expected and actual values. Values are drawn on a dyadic grid or away from subnormals, and
 * short gradient sequences first, so shrinking ends on a readable case (a buffer updated
 * before use shows in 2 steps), not on subnormal noise.
 *
 *   import { Laws, Arb } from "@stepwise/optim/testing"
 *   Laws.checkOptimizer(myOptimizerDef)                       // every generic law
 *   fc.assert(Laws.matchesReference(myOptimizerDef, myEquation))
 */
import { Effect, Either, Schema } from "effect"
import * as fc from "fast-check"
import { LawViolation } from "./Errors.js"
import * as Float64 from "./Float64.js"
import type { Numeric, Params } from "./Numeric.js"
import { filled, type Hyper, type Optimizer, type OptimizerDef, type OptimizerState } from "./Optimizer.js"
import * as OptimizerStateSchema from "./OptimizerState.js"
import type { OptimizerConfig } from "./Optimizers.js"
import * as Optimizers from "./Optimizers.js"
import type { Any, Scheduled, Signal } from "./Scheduler.js"

type T64 = Float64.Tensor

/** One random optimization problem: starting parameters and a sequence of gradients. */
export interface Problem {
  readonly params: Params<T64>
  readonly grads: ReadonlyArray<Params<T64>>
}

export interface ProblemOptions {
  /** Longest gradient sequence (default 6; sequences of 1 to 3 steps are drawn most often). */
  readonly maxSteps?: number
  /** Values are drawn in [-scale, scale] (default 4). */
  readonly scale?: number
}

const NAMES = ["conv1.weight", "conv1.bias", "conv2.weight", "fc1.weight", "fc1.bias"]

const sizeOf = (shape: ReadonlyArray<number>) => shape.reduce((a, b) => a * b, 1)

/** Arbitraries. */
export const Arb = {
  /**
   * A finite value in [-scale, scale], exact in float32 so every backend sees the same input:
   * mostly multiples of 1/64 (readable, shrinking towards small integers and 0), else any
   * float32 of magnitude >= 1e-3 (never subnormal noise a shrunk case could hide behind).
   */
  value: (scale = 4): fc.Arbitrary<number> =>
    fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: -scale * 64, max: scale * 64 }).map((i) => i / 64) },
      {
        weight: 1,
        arbitrary: fc
          .double({ min: -scale, max: scale, noNaN: true, noDefaultInfinity: true })
          .map((x) => Math.fround(x))
          .filter((x) => x === 0 || Math.abs(x) >= 1e-3)
      }
    ),

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
    fc.tuple(Arb.shapes(), Arb.steps(options.maxSteps ?? 6)).chain(([shapes, steps]) =>
      fc.record({
        params: Arb.tree(shapes, options.scale),
        grads: fc.array(Arb.tree(shapes, options.scale), { minLength: steps, maxLength: steps })
      })
    ),

  /** A number of steps in [1, max], small first: 1 to 3 three times out of four; shrinks towards 1. */
  steps: (max: number): fc.Arbitrary<number> =>
    fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 1, max: Math.min(3, max) }) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max }) }
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

/** A deep copy (update must not mutate its inputs: compare against the copy afterwards). */
const copyTree = (tree: Params<T64>): Params<T64> =>
  Object.fromEntries(
    Object.entries(tree).map(([k, t]) => [k, { shape: [...t.shape], data: Float64Array.from(t.data) }])
  )
const copyState = (state: OptimizerState<T64>) => ({
  step: state.step,
  slots: Object.fromEntries(
    Object.entries(OptimizerStateSchema.slotsOf(state)).map(([slot, tree]) => [slot, copyTree(tree)])
  )
})

/** Equal numbers, NaN equal to NaN, 0 equal to -0 (JSON, hence a checkpoint's encoding, has no -0). */
const sameValue = (a: number, e: number): boolean => a === e || (Number.isNaN(a) && Number.isNaN(e))

/** The first element where two trees differ (exactly; NaN equals NaN, 0 equals -0), or a missing / extra name. */
export const treeDifference = (
  actual: Params<T64>,
  expected: Params<T64>,
  same: (a: number, e: number) => boolean = sameValue
):
  | {
      readonly parameter: string
      readonly element?: number
      readonly expected?: number
      readonly actual?: number
    }
  | undefined => {
  for (const name of Object.keys(expected)) {
    const [a, e] = [actual[name], expected[name]]
    if (a === undefined) return { parameter: name }
    if (a.data.length !== e.data.length) return { parameter: name }
    for (let i = 0; i < e.data.length; i++) {
      if (!same(a.data[i], e.data[i]))
        return { parameter: name, element: i, expected: e.data[i], actual: a.data[i] }
    }
  }
  const extra = Object.keys(actual).find((k) => !(k in expected))
  return extra === undefined ? undefined : { parameter: extra }
}

/** The first slot element where two states differ (`parameter` is `slot:name`), or a step mismatch. */
const stateDifference = (actual: OptimizerState<T64>, expected: OptimizerState<T64>) => {
  if (actual.step !== expected.step)
    return { parameter: "step", expected: expected.step, actual: actual.step }
  const [a, e] = [OptimizerStateSchema.slotsOf(actual), OptimizerStateSchema.slotsOf(expected)]
  for (const slot of new Set([...Object.keys(a), ...Object.keys(e)])) {
    if (a[slot] === undefined || e[slot] === undefined)
      return { parameter: `${slot} (slot present in one state only)` }
    const d = treeDifference(a[slot], e[slot])
    if (d !== undefined) return { ...d, parameter: `${slot}:${d.parameter}` }
  }
  return undefined
}

const violation = (
  law: string,
  detail: string,
  at: {
    readonly parameter?: string
    readonly element?: number
    readonly expected?: number
    readonly actual?: number
  },
  step?: number
) => new LawViolation({ law, detail, ...at, ...(step === undefined ? {} : { step }) })

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

const relErr = (a: number, e: number, scale: number) => {
  const diff = Math.abs(a - e)
  return diff === 0 ? 0 : Number.isNaN(diff) ? Number.POSITIVE_INFINITY : diff / scale
}

/** The laws, each a fast-check property over random problems; a failure throws a `LawViolation`. */
export const Laws = {
  /** Same inputs give bitwise-same outputs, and `update` never mutates its inputs. */
  purity: (def: OptimizerDef, options: LawOptions = {}) => {
    const opt = def(Float64.Float64)
    return fc.property(withHypers(opt, options), ({ problem, hypers }) => {
      let state = opt.init(problem.params)
      let params = problem.params
      for (let t = 0; t < problem.grads.length; t++) {
        const grads = problem.grads[t]
        const before = { state: copyState(state), params: copyTree(params), grads: copyTree(grads) }
        const a = opt.update(state, grads, params, hypers[t])
        const b = opt.update(state, grads, params, hypers[t])
        const mutated =
          treeDifference(params, before.params) ??
          treeDifference(grads, before.grads) ??
          stateDifference(state, OptimizerStateSchema.make(before.state.step, before.state.slots))
        if (mutated !== undefined)
          throw violation(
            "purity",
            "update mutated its inputs (expected: the value before the update)",
            mutated,
            t + 1
          )
        const differs = treeDifference(b.params, a.params) ?? stateDifference(b.state, a.state)
        if (differs !== undefined)
          throw violation(
            "purity",
            "two identical updates differ (expected: the first one's value)",
            differs,
            t + 1
          )
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
      const { trajectory } = run(opt, problem.params, zeros, (t) => hypers[t])
      trajectory.forEach((params, t) => {
        const moved = treeDifference(params, problem.params)
        if (moved !== undefined)
          throw violation("zeroGradientFixedPoint", "zero gradients moved the parameter", moved, t)
      })
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
      const changed = stateDifference(decoded, head.state)
      if (changed !== undefined)
        throw violation(
          "stateRoundTrip",
          `the state changed through its Schema (saved after step ${k})`,
          changed,
          k
        )
      let [a, b] = [
        { state: head.state, params: head.params },
        { state: decoded, params: head.params }
      ]
      for (let t = k; t < problem.grads.length; t++) {
        a = opt.update(a.state, problem.grads[t], a.params, hypers[t])
        b = opt.update(b.state, problem.grads[t], b.params, hypers[t])
        const diverged = treeDifference(b.params, a.params)
        if (diverged !== undefined)
          throw violation(
            "stateRoundTrip",
            `resuming from the state decoded after step ${k} diverged`,
            diverged,
            t + 1
          )
      }
    })
  },

  /**
   * Another backend (e.g. tfjs float32 tensors) follows the float64 reference after every step:
   * the difference, relative to the largest magnitude the parameter reaches along the
   * trajectory, is at most `tolerance` (default 1e-4). Sign-based optimizers (Lion) are
   * discontinuous: where float64 and float32 round a near-zero value to different signs the
   * update jumps by 2 lr, so `mismatchFraction` lets that fraction of the elements (default 0)
   * exceed the tolerance. `scope` wraps each run (pass `tf.tidy`).
   */
  backendsAgree: <T>(
    def: OptimizerDef,
    N: Numeric<T>,
    options: LawOptions & {
      readonly tolerance?: number
      readonly mismatchFraction?: number
      readonly scope?: (f: () => void) => void
    } = {}
  ) => {
    const ref = def(Float64.Float64)
    const other = def(N)
    const scope = options.scope ?? ((f) => f())
    const tolerance = options.tolerance ?? 1e-4
    const allowed = options.mismatchFraction ?? 0
    return fc.property(withHypers(ref, options), ({ problem, hypers }) => {
      const reference = run(ref, problem.params, problem.grads, (t) => hypers[t])
      // error relative to the largest magnitude each tensor reaches along the way: updates that
      // cancel (a parameter back near 0) leave float32 rounding of the path, not of the endpoint
      const scaleOf = (name: string) =>
        Math.max(1e-6, ...reference.trajectory.flatMap((tree) => Array.from(tree[name].data, Math.abs)))
      let failure: LawViolation | undefined
      scope(() => {
        failure = compare()
      })
      if (failure !== undefined) throw failure
      function compare(): LawViolation | undefined {
        const toN = (tree: Params<T64>) =>
          Object.fromEntries(Object.entries(tree).map(([k, t]) => [k, N.fromArray(t.data, t.shape)]))
        const actual = run(other, toN(problem.params), problem.grads.map(toN), (t) => hypers[t]).trajectory
        for (let t = 1; t < actual.length; t++) {
          const expected = reference.trajectory[t]
          let [bad, total] = [0, 0]
          let first: LawViolation | undefined
          for (const name of Object.keys(expected)) {
            const [a, e, scale] = [N.toArray(actual[t][name]), expected[name].data, scaleOf(name)]
            total += e.length
            for (let i = 0; i < e.length; i++) {
              const err = Math.abs(a[i] - e[i]) / scale
              if (err <= tolerance) continue
              bad++
              first ??= violation(
                "backendsAgree",
                `${N.name} differs from float64 by ${err} of the parameter's scale ${scale} (tolerance ${tolerance}${allowed > 0 ? `, mismatchFraction ${allowed}` : ""})`,
                { parameter: name, element: i, expected: e[i], actual: a[i] },
                t
              )
            }
          }
          if (first !== undefined && bad > allowed * total) return first
        }
        return undefined
      }
    })
  },

  /**
   * The optimizer equals a reference equation written per element: `step(memory, param, grad,
   * hyper, t)` with `t = 1, 2, ...`, starting from `initial`, after every step. Relative
   * tolerance 1e-12 by default.
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
    const tolerance = options.tolerance ?? 1e-12
    return fc.property(withHypers(opt, options), ({ problem, hypers }) => {
      const actual = run(opt, problem.params, problem.grads, (t) => hypers[t]).trajectory
      const memories = Object.fromEntries(
        Object.entries(problem.params).map(([name, p]) => [name, Array.from(p.data, () => reference.initial)])
      )
      let expected = problem.params
      // errors relative to the largest magnitude the parameter has reached: an update that
      // cancels the parameter to ~0 keeps the rounding of the path, not of the endpoint
      const scales = Object.fromEntries(
        Object.entries(problem.params).map(([name, p]) => [
          name,
          Math.max(1e-12, ...Array.from(p.data, Math.abs))
        ])
      )
      for (let t = 0; t < problem.grads.length; t++) {
        const next: Record<string, T64> = {}
        for (const [name, p] of Object.entries(expected)) {
          const out = new Float64Array(p.data.length)
          for (let i = 0; i < out.length; i++) {
            const r = reference.step(
              memories[name][i],
              p.data[i],
              problem.grads[t][name].data[i],
              hypers[t],
              t + 1
            )
            out[i] = r.param
            memories[name][i] = r.memory
          }
          next[name] = { shape: p.shape, data: out }
        }
        expected = next
        for (const [name, tree] of Object.entries(expected)) {
          scales[name] = Math.max(scales[name], ...Array.from(tree.data, Math.abs))
          const [a, e] = [actual[t + 1][name]?.data, tree.data]
          if (a === undefined)
            throw violation("matchesReference", "the parameter is missing", { parameter: name }, t + 1)
          for (let i = 0; i < e.length; i++) {
            const err = relErr(a[i], e[i], scales[name])
            if (err > tolerance)
              throw violation(
                "matchesReference",
                `error ${err} relative to the parameter's scale ${scales[name]} > ${tolerance}`,
                { parameter: name, element: i, expected: e[i], actual: a[i] },
                t + 1
              )
          }
        }
      }
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

  /**
   * A scheduler is pure, and its states survive JSON at every step: encoded by its
   * `stateSchema`, written and read as JSON text, decoded again, a state gives the same
   * hyperparameters and the same encoding. A step that fails (OneCycleLR past its end) must fail
   * the same way twice; the run ends there.
   */
  schedulerPureAndJson: (
    scheduler: Any,
    base: Hyper,
    signals: fc.Arbitrary<Signal | undefined> = fc.constant(undefined)
  ) =>
    fc.property(fc.array(signals, { minLength: 1, maxLength: 60 }), (steps) => {
      let state = scheduler.start(base)
      const json = (s: Scheduled, t: number) =>
        Either.match(s.encode(), {
          onLeft: (e) => {
            throw violation(
              "schedulerPureAndJson",
              `a state does not encode: ${e.message}`,
              { parameter: scheduler.name },
              t
            )
          },
          onRight: (j) => JSON.stringify(j)
        })
      for (let t = 0; t < steps.length; t++) {
        const fail = (detail: string) =>
          violation("schedulerPureAndJson", detail, { parameter: scheduler.name }, t + 1)
        const before = json(state, t)
        const a = state.step(steps[t])
        const b = state.step(steps[t])
        if (json(state, t) !== before) throw fail("step mutated its state")
        if (Either.isLeft(a) || Either.isLeft(b)) {
          if (!Either.isLeft(a) || !Either.isLeft(b) || a.left.message !== b.left.message)
            throw fail("two identical steps differ (one failed)")
          return
        }
        const text = json(a.right, t + 1)
        if (text !== json(b.right, t + 1)) throw fail("two identical steps differ")
        const revived = a.right.decode(JSON.parse(text))
        if (Either.isLeft(revived)) throw fail(`an encoded state does not decode: ${revived.left.message}`)
        if (
          JSON.stringify(revived.right.hyper) !== JSON.stringify(a.right.hyper) ||
          json(revived.right, t + 1) !== text
        ) {
          throw fail("a state changed through JSON")
        }
        state = a.right
      }
    })
}
