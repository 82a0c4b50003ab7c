/**
 * The chapter's exponentially weighted moving averages, as plain functions on numbers
 * (Equations 6.3-6.8 and 6.11-6.18). Adam's `expAvg` / `expAvgSq` and SGD's `momentumBuffer`
 * are these, elementwise.
 */

/** Alpha form (Eq. 6.3): `alpha * current + (1 - alpha) * past`; the chapter's `EWMA`. */
export const ewma = (past: number, current: number, alpha: number): number =>
  (1 - alpha) * past + alpha * current

/** Beta form (Eq. 6.3), Adam's: `(1 - beta) * current + beta * past`. */
export const ewmaBeta = (past: number, current: number, beta: number): number =>
  (1 - beta) * current + beta * past

/** Eq. 6.7: the alpha of the EWMA whose average age matches a `periods`-long moving average. */
export const alphaFromPeriods = (periods: number): number => 2 / (periods + 1)

/** Eq. 6.7 inverted: `2 / alpha - 1`. */
export const periodsFromAlpha = (alpha: number): number => 2 / alpha - 1

/** The EWMA of a whole series with weight `alpha`, starting from `initial` (0 in the chapter). */
export const series = (values: ReadonlyArray<number>, alpha: number, initial = 0): Array<number> => {
  const out: Array<number> = []
  let previous = initial
  for (const v of values) {
    previous = ewma(previous, v, alpha)
    out.push(previous)
  }
  return out
}

/** The chapter's `calc_ewma(values, period)`. */
export const calcEwma = (values: ReadonlyArray<number>, period: number): Array<number> =>
  series(values, alphaFromPeriods(period))

/** Eq. 6.8, the chapter's `correction`: `averaged / (1 - beta ** steps)`. */
export const correction = (averaged: number, beta: number, steps: number): number =>
  averaged / (1 - beta ** steps)

/** The chapter's `calc_corrected_ewma(values, period)`: each step bias-corrected. */
export const calcCorrectedEwma = (values: ReadonlyArray<number>, period: number): Array<number> => {
  const beta = 1 - alphaFromPeriods(period)
  return calcEwma(values, period).map((v, step) => correction(v, beta, step + 1))
}

/** The weight of each lag (Eq. 6.5): `alpha * (1 - alpha) ** lag`, lags 0 .. T-1. */
export const lagWeights = (alpha: number, T: number): Array<number> =>
  Array.from({ length: T }, (_, lag) => alpha * (1 - alpha) ** lag)

/** Eq. 6.6: the average age of an EWMA's values over `T` observations; tends to `1 / alpha`. */
export const averageAge = (alpha: number, T: number): number =>
  lagWeights(alpha, T).reduce((sum, w, lag) => sum + w * (lag + 1), 0)

/**
 * The chapter's `calc_momentum`: `mo_t = (1 - dampening) grad_t + beta mo_{t-1}` (Eq. 6.11,
 * 6.13). First step: `mo_1 = grad_1`, undampened, which is PyTorch's rule (the chapter's formula
 * with `mo_0 = 0` agrees whenever dampening is 0).
 */
export const calcMomentum = (grads: ReadonlyArray<number>, beta: number, dampening = 0): Array<number> => {
  const out: Array<number> = []
  for (const [t, g] of grads.entries()) out.push(t === 0 ? g : (1 - dampening) * g + beta * out[t - 1])
  return out
}

/** The chapter's `calc_nesterov` (Eq. 6.16): `nesterov_t = grad_t + beta mo_t`. */
export const calcNesterov = (grads: ReadonlyArray<number>, beta: number, dampening = 0): Array<number> => {
  const mo = calcMomentum(grads, beta, dampening)
  return grads.map((g, t) => g + beta * mo[t])
}

/** Eq. 6.12: momentum as the compounded sum `sum_k beta^k grad_{t-k}` (needs the whole history). */
export const compoundedMomentum = (grads: ReadonlyArray<number>, beta: number): Array<number> =>
  grads.map((_, t) => {
    let sum = 0
    for (let lag = 0; lag <= t; lag++) sum += beta ** lag * grads[t - lag]
    return sum
  })
