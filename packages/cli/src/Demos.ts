/**
 * The numbers behind the chapter's illustration pictures, computed the chapter's way: the
 * simple linear regression (b = 1, w = 2) trained from PyTorch's `Linear(1, 1)` initial values
 * (seed 42: w = 0.7645, b = 0.8300) with mini-batches of 16 for 10 epochs, the temperature
 * series for the moving averages, and 1,000 dropout scenarios per probability. All pure and
 * seeded; the optimizers and schedulers are @stepwise/optim's, run on float64.
 */
import { LrRangeTest, Module } from "@stepwise/core"
import { DataLoader, LinearRegression, Random, TensorDataset } from "@stepwise/data"
import type { Errors as OptimErrors, Optimizer, Scheduler } from "@stepwise/optim"
import { CyclicLR, Ewma, Float64, LrRange, Adam as OptAdam, SGD, StepLR } from "@stepwise/optim"
import { Effect, Either, Stream } from "effect"
import type { LossSurface } from "./Charts.js"

type F = Float64.Tensor
const N = Float64.Float64

/** The chapter's temperatures (Figure 6.16). */
export const TEMPERATURES: ReadonlyArray<number> = [
  5, 11, 15, 6, 5, 3, 3, 0, 0, 3, 4, 2, 1, -1, -2, 2, 2, -2, -1, -1, 3, 4, -1, 2, 6, 4, 9, 11, 9, -2
]

/** A simple moving average that averages what is available while the window fills up. */
export const movingAverage = (values: ReadonlyArray<number>, periods: number): Array<number> =>
  values.map((_, i) => {
    const window = values.slice(Math.max(0, i - periods + 1), i + 1)
    return window.reduce((a, b) => a + b, 0) / window.length
  })

/** Figure 6.16: MA, EWMA and bias-corrected EWMA over the temperatures. */
export const movingAverages = (periods = 19) => ({
  values: TEMPERATURES,
  series: [
    { label: `${periods}-period MA`, values: movingAverage(TEMPERATURES, periods) },
    {
      label: `EWMA (alpha = ${Ewma.alphaFromPeriods(periods).toFixed(2)})`,
      values: Ewma.calcEwma(TEMPERATURES, periods)
    },
    { label: "Bias-corrected EWMA", values: Ewma.calcCorrectedEwma(TEMPERATURES, periods) }
  ]
})

/** Equation 6.9 over a series of gradients: Adam's adapted gradients (Figure 6.17). */
export const adaptedGradients = (gradients: ReadonlyArray<number>, parameter: string, eps = 1e-8) => {
  const correctedEwma = Ewma.calcCorrectedEwma(gradients, 19)
  const correctedSq = Ewma.calcCorrectedEwma(
    gradients.map((g) => g * g),
    1999
  )
  const correctedSqrtEwmaSq = correctedSq.map(Math.sqrt)
  return {
    parameter,
    gradients,
    correctedEwma,
    correctedSqrtEwmaSq,
    adapted: correctedEwma.map((m, i) => m / (correctedSqrtEwmaSq[i] + eps))
  }
}

/** Figure 6.8: sums of the adjusted dropout outputs of `0.1, 0.2, ..., 1.1`, `scenarios` times per p. */
export const dropoutDistributions = (
  ps: ReadonlyArray<number> = [0.1, 0.3, 0.5, 0.9],
  scenarios = 1000,
  seed = 17
) => {
  const points = Array.from({ length: 11 }, (_, i) => (i + 1) / 10)
  return ps.map((p, k) => {
    const outputs: Array<number> = []
    for (let s = 0; s < scenarios; s++) {
      const mask = Module.dropoutMask(
        Random.foldIn(Random.foldIn(Random.unsafeMake(seed), k), s),
        points.length,
        p
      )
      outputs.push(points.reduce((acc, x, i) => acc + x * mask[i], 0))
    }
    return { p, outputs }
  })
}

// ---------------------------------------------------------------- the linear regression

export interface LinRegRun {
  readonly label: string
  /** (b, w) used by the forward pass of every mini-batch. */
  readonly b: ReadonlyArray<number>
  readonly w: ReadonlyArray<number>
  /** d loss / d w of every mini-batch. */
  readonly gradW: ReadonlyArray<number>
  /** The update term of w before the lr: (w_before - w_after) / lr. */
  readonly updateW: ReadonlyArray<number>
  readonly losses: ReadonlyArray<number>
  readonly valLosses: ReadonlyArray<number>
  readonly lrs: ReadonlyArray<number>
}

const W = "linear.weight"
const B = "linear.bias"
/** PyTorch's `nn.Linear(1, 1)` after `torch.manual_seed(42)`. */
export const INITIAL = { w: 0.7645, b: 0.83 } as const

const mseAndGrads = (
  ds: TensorDataset.TensorDataset<Float32Array>,
  indices: ArrayLike<number>,
  b: number,
  w: number
) => {
  const batch = TensorDataset.gather(ds, indices)
  const n = batch.y.length
  let loss = 0
  let gb = 0
  let gw = 0
  for (let i = 0; i < n; i++) {
    const err = b + w * batch.x[i] - batch.y[i]
    loss += err * err
    gb += 2 * err
    gw += 2 * err * batch.x[i]
  }
  return { loss: loss / n, gb: gb / n, gw: gw / n }
}

/**
 * Trains the linear regression for `epochs` with an optimizer (and scheduler), recording
 * everything. A scheduler that refuses a step (a `OneCycleLR` stepped past its total) is the
 * error.
 */
export const trainLinearRegression = (
  label: string,
  optimizer: Optimizer.Optimizer<F>,
  scheduler?: Scheduler.Any,
  epochs = 10,
  data: LinearRegression.Data = LinearRegression.chapter()
): Either.Either<LinRegRun, OptimErrors.SchedulerStepError> => {
  const options = { batchSize: 16, shuffle: true, seed: 13 }
  let params: { readonly [k: string]: F } = { [W]: Float64.make([INITIAL.w]), [B]: Float64.make([INITIAL.b]) }
  let state = optimizer.init(params)
  let sched = scheduler?.start(optimizer.defaults)
  const run = { b: [] as number[], w: [] as number[], gradW: [] as number[], updateW: [] as number[] }
  const losses: Array<number> = []
  const valLosses: Array<number> = []
  const lrs: Array<number> = []
  for (let epoch = 0; epoch < epochs; epoch++) {
    const batchLosses: Array<number> = []
    for (const idx of DataLoader.batchIndices(data.train.length, options, epoch)) {
      const b = params[B].data[0]
      const w = params[W].data[0]
      const { loss, gb, gw } = mseAndGrads(data.train, idx, b, w)
      const hyper = sched === undefined ? optimizer.defaults : { ...optimizer.defaults, ...sched.hyper }
      const next = optimizer.update(
        state,
        { [W]: Float64.make([gw]), [B]: Float64.make([gb]) },
        params,
        hyper
      )
      run.b.push(b)
      run.w.push(w)
      run.gradW.push(gw)
      run.updateW.push((w - next.params[W].data[0]) / hyper.lr)
      lrs.push(hyper.lr)
      batchLosses.push(loss)
      params = next.params
      state = next.state
      if (sched?.cadence === "batch") {
        const stepped = sched.step()
        if (Either.isLeft(stepped)) return Either.left(stepped.left)
        sched = stepped.right
      }
    }
    losses.push(batchLosses.reduce((a, x) => a + x, 0) / batchLosses.length)
    const valBatches = DataLoader.batchIndices(data.val.length, { batchSize: 16 }, epoch)
    const v = valBatches.map((idx) => mseAndGrads(data.val, idx, params[B].data[0], params[W].data[0]).loss)
    valLosses.push(v.reduce((a, x) => a + x, 0) / v.length)
    if (sched?.cadence === "epoch") {
      const stepped = sched.step()
      if (Either.isLeft(stepped)) return Either.left(stepped.left)
      sched = stepped.right
    }
  }
  return Either.right({ label, ...run, losses, valLosses, lrs })
}

const sync = <A, E>(e: Effect.Effect<A, E>): A => Effect.runSync(e)
const sgd = (lr: number, momentum = 0, nesterov = false) => sync(SGD.make({ lr, momentum, nesterov }))(N)
const adam = (lr: number) => sync(OptAdam.make({ lr }))(N)

/** The optimizers of Figures 6.18, 6.20, 6.22 and 6.28 on the linear regression. */
export const optimizerRuns = (): Either.Either<ReadonlyArray<LinRegRun>, OptimErrors.SchedulerStepError> => {
  const data = LinearRegression.chapter()
  const step = sync(StepLR.make({ stepSize: 4, gamma: 0.5 }))
  const cyclic = sync(CyclicLR.make({ baseLr: 0.025, maxLr: 0.1, stepSizeUp: 10, mode: "triangular2" }))
  return Either.all([
    trainLinearRegression("SGD", sgd(0.1), undefined, 10, data),
    trainLinearRegression("Adam", adam(0.1), undefined, 10, data),
    trainLinearRegression("SGD + Momentum", sgd(0.1, 0.9), undefined, 10, data),
    trainLinearRegression("SGD + Nesterov", sgd(0.1, 0.9, true), undefined, 10, data),
    trainLinearRegression("Momentum + StepLR", sgd(0.1, 0.9), step, 10, data),
    trainLinearRegression("Nesterov + CyclicLR", sgd(0.1, 0.9, true), cyclic, 10, data)
  ])
}

/** The training-set MSE over a grid of (b, w) that holds every path with a margin. */
export const lossSurface = (runs: ReadonlyArray<LinRegRun>, cells = 40): LossSurface => {
  const data = LinearRegression.chapter()
  const bs = runs.flatMap((r) => r.b).concat([1])
  const ws = runs.flatMap((r) => r.w).concat([2])
  const pad = (lo: number, hi: number) => [lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)] as const
  const [b0, b1] = pad(Math.min(...bs), Math.max(...bs))
  const [w0, w1] = pad(Math.min(...ws), Math.max(...ws))
  const grid = (lo: number, hi: number) =>
    Array.from({ length: cells }, (_, i) => lo + ((hi - lo) * i) / cells)
  const gb = grid(b0, b1)
  const gw = grid(w0, w1)
  const all = Array.from({ length: data.train.length }, (_, i) => i)
  return {
    bs: gb,
    ws: gw,
    losses: gw.map((w) =>
      gb.map((b) => mseAndGrads(data.train, all, b + (b1 - b0) / cells / 2, w + (w1 - w0) / cells / 2).loss)
    )
  }
}

/** The least-squares optimum of the training set (the red dot). */
export const optimum = (): { readonly b: number; readonly w: number } => {
  const { train } = LinearRegression.chapter()
  const n = train.length
  let sx = 0
  let sy = 0
  let sxx = 0
  let sxy = 0
  for (let i = 0; i < n; i++) {
    sx += train.x[i]
    sy += train.y[i]
    sxx += train.x[i] * train.x[i]
    sxy += train.x[i] * train.y[i]
  }
  const w = (n * sxy - sx * sy) / (n * sxx - sx * sx)
  return { b: (sy - w * sx) / n, w }
}

/** Figure 6.17's gradients: Adam (lr 0.1) on the linear regression, the weight's gradients. */
export const adamWeightGradients = (): Either.Either<ReadonlyArray<number>, OptimErrors.SchedulerStepError> =>
  Either.map(trainLinearRegression("Adam", adam(0.1)), (r) => r.gradW)

/** Figure 6.26: CyclicLR in its three modes (1e-4..1e-3, two steps up), over 20 mini-batches. */
export const cyclicSchedules = (
  steps = 20
): Either.Either<
  ReadonlyArray<{ readonly label: string; readonly lrs: ReadonlyArray<number> }>,
  OptimErrors.SchedulerStepError
> => {
  const modes = [
    { label: "triangular", input: { mode: "triangular" as const } },
    { label: "triangular2", input: { mode: "triangular2" as const } },
    { label: "exp_range (gamma = sqrt(0.5))", input: { mode: "exp_range" as const, gamma: Math.sqrt(0.5) } }
  ]
  return Either.all(
    modes.map(({ label, input }) =>
      Either.gen(function* () {
        const s = sync(
          CyclicLR.make({ baseLr: 1e-4, maxLr: 1e-3, stepSizeUp: 2, cycleMomentum: false, ...input })
        )
        let st = s.init({ lr: 0.01 })
        const lrs: Array<number> = []
        for (let i = 0; i < steps; i++) {
          lrs.push(s.current(st).lr)
          st = yield* s.step(st)
        }
        return { label, lrs }
      })
    )
  )
}

/**
 * Figure 6.27: the LR range test on the linear regression (SGD, lr 1e-3, momentum 0.9, up to 1
 * over 100 exponentially growing steps), smoothed with alpha 0.05 like the chapter, through
 * core's `LrRangeTest.run`: the same fold, stop rule (divergence) and suggestions as `lr-find`.
 */
export const linearRegressionRangeTest = (numIter = 100, endLr = 1, alpha = 0.05): LrRangeTest.Result => {
  const data = LinearRegression.chapter()
  const start = 1e-3
  const factor = LrRange.makeLrFn(start, endLr, numIter, "exp")
  const opt = sgd(start, 0.9)
  type S = { readonly params: { readonly [k: string]: F }; readonly state: Optimizer.OptimizerState<F> }
  const params = { [W]: Float64.make([INITIAL.w]), [B]: Float64.make([INITIAL.b]) }
  const batches = Stream.flatMap(
    Stream.iterate(0, (e) => e + 1),
    (epoch) =>
      Stream.fromIterable(
        DataLoader.batchIndices(data.train.length, { batchSize: 16, shuffle: true, seed: 13 }, epoch)
      )
  )
  return Effect.runSync(
    LrRangeTest.run({
      batches,
      init: { params, state: opt.init(params) } as S,
      lrAt: (i) => start * factor(i),
      step: (s: S, idx, lr) => {
        const { loss, gb, gw } = mseAndGrads(data.train, idx, s.params[B].data[0], s.params[W].data[0])
        const next = opt.update(s.state, { [W]: Float64.make([gw]), [B]: Float64.make([gb]) }, s.params, {
          lr,
          momentum: 0.9
        })
        return [loss, { params: next.params, state: next.state }] as const
      },
      options: { endLr, numIter, alpha }
    })
  )
}
