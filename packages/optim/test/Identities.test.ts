import {
  Adam,
  CyclicLR,
  Ewma,
  Float64,
  LambdaLR,
  LrRange,
  type Optimizer,
  OptimizerState,
  Optimizers,
  ReduceLROnPlateau,
  SGD,
  StepLR
} from "@stepwise/optim"
import { Effect, Either } from "effect"
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"

const N = Float64.Float64
const RUNS = { numRuns: 300 }
const relClose = (a: number, b: number, tol = 1e-12) => Math.abs(a - b) <= tol * Math.max(Math.abs(b), 1e-300)
const finite = (scale = 10) => fc.double({ min: -scale, max: scale, noNaN: true })
const grads = (max = 40) => fc.array(finite(), { minLength: 1, maxLength: max })

/** Runs an optimizer on one scalar parameter and returns its state and parameter after each step. */
const scalarRun = (
  opt: Optimizer.Optimizer<Float64.Tensor>,
  p0: number,
  gs: ReadonlyArray<number>,
  lr = opt.defaults.lr
) => {
  const out: Array<{ p: number; slots: Record<string, number> }> = []
  let params: Record<string, Float64.Tensor> = { w: Float64.make([p0]) }
  let state = opt.init(params)
  for (const g of gs) {
    const next = opt.update(state, { w: Float64.make([g]) }, params, { ...opt.defaults, lr })
    params = next.params as Record<string, Float64.Tensor>
    state = next.state
    out.push({
      p: params.w.data[0],
      slots: Object.fromEntries(
        Object.entries(OptimizerState.slotsOf(state)).map(([k, v]) => [k, v.w.data[0]])
      )
    })
  }
  return out
}

const sgd = (input: Parameters<typeof SGD.make>[0]) => Effect.runSync(SGD.make(input))(N)
const adam = (input: Parameters<typeof Adam.make>[0]) => Effect.runSync(Adam.make(input))(N)

describe("the chapter's EWMA identities", () => {
  it("bias-corrected EWMA of a constant sequence is that constant at every step (Eq. 6.8)", () => {
    fc.assert(
      fc.property(
        finite(100),
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 2000 }),
        (c, n, period) => Ewma.calcCorrectedEwma(Array(n).fill(c), period).every((v) => relClose(v, c, 1e-9))
      ),
      RUNS
    )
  })

  it("alpha = 2 / (periods + 1) and back; 19 and 1999 periods are Adam's betas 0.9 and 0.999 (Eq. 6.7)", () => {
    fc.assert(
      fc.property(fc.double({ min: 1, max: 1e4, noNaN: true }), (periods) =>
        relClose(Ewma.periodsFromAlpha(Ewma.alphaFromPeriods(periods)), periods, 1e-12)
      ),
      RUNS
    )
    expect(1 - Ewma.alphaFromPeriods(19)).toBe(0.9)
    expect(1 - Ewma.alphaFromPeriods(1999)).toBe(0.999)
    expect(Ewma.periodsFromAlpha(1 / 3)).toBe(5)
  })

  it("average age tends to 1 / alpha (Eq. 6.6); the chapter's 2.9930832408241015 for alpha 1/3, T 20", () => {
    expect(Ewma.averageAge(1 / 3, 20)).toBeCloseTo(2.9930832408241015, 14)
    fc.assert(
      fc.property(fc.double({ min: 0.01, max: 1, noNaN: true }), (alpha) =>
        relClose(Ewma.averageAge(alpha, 20_000), 1 / alpha, 1e-9)
      ),
      RUNS
    )
  })

  it("Adam's expAvg / expAvgSq after t steps are calc_ewma of the gradients (19 periods) and their squares (1999)", () => {
    const opt = adam({})
    fc.assert(
      fc.property(finite(), grads(), (p0, gs) => {
        const m = Ewma.calcEwma(gs, 19)
        const v = Ewma.calcEwma(
          gs.map((g) => g * g),
          1999
        )
        return scalarRun(opt, p0, gs).every(
          (s, t) => relClose(s.slots.expAvg, m[t], 1e-12) && relClose(s.slots.expAvgSq, v[t], 1e-12)
        )
      }),
      RUNS
    )
  })

  it("Adam's first step moves each parameter by lr * g / (|g| + eps)", () => {
    fc.assert(
      fc.property(finite(), finite(), fc.double({ min: 1e-4, max: 1, noNaN: true }), (p0, g, lr) => {
        const [first] = scalarRun(adam({ lr }), p0, [g])
        return (
          relClose(p0 - first.p, (lr * g) / (Math.abs(g) + 1e-8), 1e-9) ||
          Math.abs(p0 - first.p - (lr * g) / (Math.abs(g) + 1e-8)) < 1e-15
        )
      }),
      RUNS
    )
  })
})

describe("the chapter's momentum identities", () => {
  it("momentum's recursive buffer equals the compounded sum of Eq. 6.12", () => {
    fc.assert(
      fc.property(finite(), grads(), fc.double({ min: 0.01, max: 0.99, noNaN: true }), (p0, gs, b) => {
        const expected = Ewma.compoundedMomentum(gs, b)
        const runs = scalarRun(sgd({ lr: 0.1, momentum: b }), p0, gs)
        return runs.every(
          (s, t) =>
            relClose(s.slots.momentumBuffer, expected[t], 1e-9) ||
            Math.abs(s.slots.momentumBuffer - expected[t]) < 1e-12
        )
      }),
      RUNS
    )
  })

  it("with dampening = beta the buffer is an EWMA (alpha = 1 - beta) seeded with the first gradient: PyTorch's undampened first step", () => {
    fc.assert(
      fc.property(finite(), grads(), fc.double({ min: 0.01, max: 0.99, noNaN: true }), (p0, gs, b) => {
        const expected = Ewma.series(gs, 1 - b, gs[0])
        const calc = Ewma.calcMomentum(gs, b, b)
        return scalarRun(sgd({ lr: 0.1, momentum: b, dampening: b }), p0, gs).every(
          (s, t) =>
            Math.abs(s.slots.momentumBuffer - expected[t]) <= 1e-12 * Math.max(1, Math.abs(expected[t])) &&
            s.slots.momentumBuffer === calc[t]
        )
      }),
      RUNS
    )
  })

  it("Nesterov's update term equals grad + beta * mo (Eq. 6.16-6.18), the chapter's calc_nesterov", () => {
    fc.assert(
      fc.property(finite(), grads(), fc.double({ min: 0.01, max: 0.99, noNaN: true }), (p0, gs, b) => {
        const lr = 0.1
        const expected = Ewma.calcNesterov(gs, b)
        const runs = scalarRun(sgd({ lr, momentum: b, nesterov: true }), p0, gs)
        return runs.every((s, t) => {
          const before = t === 0 ? p0 : runs[t - 1].p
          const term = (before - s.p) / lr
          return Math.abs(term - expected[t]) <= 1e-9 * Math.max(1, Math.abs(before) / lr)
        })
      }),
      RUNS
    )
  })
})

describe("weight decay", () => {
  it("equals adding wd * param to the gradient (SGD, Adam, RMSprop, Adagrad; bitwise)", () => {
    const configs = [
      { _tag: "SGD", lr: 0.05, momentum: 0.9 },
      { _tag: "Adam", lr: 0.01, amsgrad: true },
      { _tag: "RMSprop", lr: 0.01, centered: true, momentum: 0.5 },
      { _tag: "Adagrad", lr: 0.1, lrDecay: 0.01 }
    ] as const
    fc.assert(
      fc.property(
        fc.constantFrom(...configs),
        fc.double({ min: 0, max: 0.5, noNaN: true }),
        finite(),
        grads(10),
        (c, wd, p0, gs) => {
          const decayed = Effect.runSync(
            Effect.flatMap(Optimizers.decode({ ...c, weightDecay: wd }), Optimizers.fromConfig)
          )(N)
          const plain = Effect.runSync(Effect.flatMap(Optimizers.decode(c), Optimizers.fromConfig))(N)
          let [a, b] = [{ w: Float64.make([p0]) }, { w: Float64.make([p0]) }]
          let [sa, sb] = [decayed.init(a), plain.init(b)]
          for (const g of gs) {
            const na = decayed.update(sa, { w: Float64.make([g]) }, a, decayed.defaults)
            const nb = plain.update(sb, { w: N.add(Float64.make([g]), N.scale(b.w, wd)) }, b, plain.defaults)
            ;[a, b, sa, sb] = [na.params as typeof a, nb.params as typeof b, na.state, nb.state]
            if (a.w.data[0] !== b.w.data[0]) return false
          }
          return true
        }
      ),
      RUNS
    )
  })
})

describe("the chapter's scheduler identities", () => {
  const lrs = (
    s: {
      init: (b: Optimizer.Hyper) => any
      step: (s: any, sig?: any) => any
      current: (s: any) => Optimizer.Hyper
    },
    n: number,
    base = 0.01,
    signal?: (t: number) => any
  ) => {
    let state = s.init({ lr: base })
    const out = [s.current(state).lr]
    for (let t = 0; t < n; t++) {
      state = Either.getOrThrow(s.step(state, signal?.(t)))
      out.push(s.current(state).lr)
    }
    return out
  }

  it("LambdaLR(e -> gamma ** floor(e / s)) equals StepLR(s, gamma)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.double({ min: 1e-5, max: 1, noNaN: true }),
        (s, gamma, base) => {
          const a = lrs(
            LambdaLR.make((e) => gamma ** Math.floor(e / s)),
            50,
            base
          )
          const b = lrs(StepLR.scheduler({ _tag: "StepLR", stepSize: s, gamma }), 50, base)
          return a.every((x, i) => x === b[i])
        }
      ),
      RUNS
    )
    // the chapter's dummy example: lr 0.01 for two epochs, then 0.001
    expect(lrs(StepLR.scheduler({ _tag: "StepLR", stepSize: 2, gamma: 0.1 }), 3)).toEqual([
      0.01, 0.01, 0.001, 0.001
    ])
  })

  const cyclic = (
    mode: "triangular" | "triangular2" | "exp_range",
    baseLr: number,
    maxLr: number,
    up: number,
    down: number,
    gamma = 1
  ) =>
    CyclicLR.scheduler({
      _tag: "CyclicLR",
      baseLr,
      maxLr,
      stepSizeUp: up,
      stepSizeDown: down,
      unit: "batches",
      mode,
      gamma,
      cycleMomentum: true,
      baseMomentum: 0.8,
      maxMomentum: 0.9
    })

  it("CyclicLR stays within [baseLr, maxLr] (and momentum within [base, max] momentum)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("triangular" as const, "triangular2" as const, "exp_range" as const),
        fc.double({ min: 1e-5, max: 0.1, noNaN: true }),
        fc.double({ min: 1, max: 100, noNaN: true }),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 20 }),
        fc.double({ min: 0.9, max: 1, noNaN: true }),
        (mode, baseLr, ratio, up, down, gamma) => {
          const maxLr = baseLr * ratio
          const s = cyclic(mode, baseLr, maxLr, up, down, gamma)
          let state = s.init({ lr: 1, momentum: 0.9 })
          for (let t = 0; t < 200; t++) {
            const h = s.current(state)
            if (h.lr < baseLr * (1 - 1e-12) || h.lr > maxLr * (1 + 1e-12)) return false
            if (h.momentum! < 0.8 - 1e-12 || h.momentum! > 0.9 + 1e-12) return false
            state = Either.getOrThrow(s.step(state))
          }
          return true
        }
      ),
      RUNS
    )
  })

  it("triangular2 halves its amplitude each cycle", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 1e-5, max: 0.1, noNaN: true }),
        fc.double({ min: 1.5, max: 100, noNaN: true }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 10 }),
        (baseLr, ratio, up, down) => {
          const s = cyclic("triangular2", baseLr, baseLr * ratio, up, down)
          const all = lrs(s, 6 * (up + down), baseLr)
          const peaks = [0, 1, 2, 3, 4].map((c) => all[c * (up + down) + up] - baseLr)
          return peaks.every((p, c) => relClose(p, (baseLr * ratio - baseLr) / 2 ** c, 1e-9))
        }
      ),
      RUNS
    )
  })

  it("ReduceLROnPlateau(patience 4, factor 0.1) on a flat loss: the lrs of Figure 6.25", () => {
    const s = Effect.runSync(ReduceLROnPlateau.make({ patience: 4, factor: 0.1 }))
    // lr used in each of 12 epochs (0-based x axis): the first cut after the 5th epoch without change
    const used = lrs(s, 11, 0.01, () => ({ metric: 0.5 }))
    expect(used.map((x) => Number(x.toPrecision(12)))).toEqual([
      0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001, 0.001, 0.0001
    ])
    // any constant positive loss gives the same schedule (a negative one "improves" every epoch
    // under the relative threshold: best * (1 - threshold) lies above best, as in PyTorch)
    fc.assert(
      fc.property(fc.double({ min: 1e-6, max: 1e3, noNaN: true }), (loss) => {
        const other = lrs(s, 11, 0.01, () => ({ metric: loss }))
        return other.every((x, i) => x === used[i])
      }),
      RUNS
    )
  })
})

describe("the LR range test's schedule (make_lr_fn)", () => {
  it("start * lrFn(numIter) == end (to 1e-12), monotone in between, for exp and linear", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 1e-8, max: 1, noNaN: true }),
        fc.double({ min: 1.01, max: 1e6, noNaN: true }),
        fc.integer({ min: 1, max: 1000 }),
        fc.constantFrom("exp" as const, "linear" as const),
        (start, ratio, numIter, mode) => {
          const end = start * ratio
          const f = LrRange.makeLrFn(start, end, numIter, mode)
          if (f(0) !== 1 || !relClose(start * f(numIter), end, 1e-12)) return false
          for (let i = 1; i <= numIter; i++) if (!(f(i) > f(i - 1))) return false
          return true
        }
      ),
      RUNS
    )
    // the chapter: ten learning rates between 0.01 and 0.1
    const f = LrRange.makeLrFn(0.01, 0.1, 10)
    expect(Array.from({ length: 11 }, (_, i) => 0.01 * f(i))[10]).toBeCloseTo(0.1, 15)
  })
})
