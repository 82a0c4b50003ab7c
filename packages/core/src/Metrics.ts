/**
 * Classification metrics on host arrays: the chapter's `correct()` (one `[correct, total]` row
 * per class) and the sums it is reduced with.
 */
import { Either } from "effect"
import { InvalidTargets } from "./Errors.js"

export { InvalidTargets } from "./Errors.js"

/** One row per class: `[correctly predicted, samples of that class]`. */
export type PerClass = ReadonlyArray<readonly [number, number]>

/**
 * Index of the largest of `values[offset .. offset + n)`; the first one on ties, like `torch.max`.
 * NaN never wins (so a NaN logit does not count as a prediction of class 0 by accident).
 */
const argmax = (values: ArrayLike<number>, offset: number, n: number): number => {
  let best = -1
  let bestValue = Number.NEGATIVE_INFINITY
  for (let k = 0; k < n; k++) {
    const v = values[offset + k]
    if (v > bestValue || (best < 0 && v === bestValue)) {
      best = k
      bestValue = v
    }
  }
  return best
}

/** Predicted class of each row of `[n, nClasses]` logits (argmax; `nClasses = 1`: sigmoid > threshold). */
export const predictions = (logits: ArrayLike<number>, nClasses: number, threshold = 0.5): Int32Array => {
  const n = Math.floor(logits.length / nClasses)
  const out = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    out[i] =
      nClasses > 1
        ? argmax(logits, i * nClasses, nClasses)
        : 1 / (1 + Math.exp(-logits[i])) > threshold
          ? 1
          : 0
  }
  return out
}

/**
 * The chapter's `correct(x, y)`: for each class `c`, how many samples of class `c` were predicted
 * as `c`, and how many samples of class `c` there were. Binary models (one logit) count two classes.
 * `InvalidTargets` when the targets do not fit the predictions (count, or a class out of range).
 */
export const correct = (
  logits: ArrayLike<number>,
  nClasses: number,
  y: ArrayLike<number>,
  threshold = 0.5
): Either.Either<PerClass, InvalidTargets> => {
  const predicted = predictions(logits, nClasses, threshold)
  if (predicted.length !== y.length)
    return Either.left(
      new InvalidTargets({
        where: "Metrics.correct",
        reason: `${predicted.length} predictions for ${y.length} targets`
      })
    )
  const classes = Math.max(2, nClasses)
  const rows = Array.from({ length: classes }, () => [0, 0] as [number, number])
  for (let i = 0; i < y.length; i++) {
    const c = y[i]
    if (c < 0 || c >= classes || !Number.isInteger(c))
      return Either.left(
        new InvalidTargets({
          where: "Metrics.correct",
          reason: `target ${c} out of bounds for ${classes} classes`,
          index: i
        })
      )
    rows[c][1] += 1
    if (predicted[i] === c) rows[c][0] += 1
  }
  return Either.right(rows)
}

/** Adds per-class rows (the `reduce='sum'` of `loader_apply`); `InvalidTargets` for different class counts. */
export const add = (a: PerClass, b: PerClass): Either.Either<PerClass, InvalidTargets> =>
  a.length === b.length
    ? Either.right(a.map(([c, t], i) => [c + b[i][0], t + b[i][1]] as const))
    : Either.left(new InvalidTargets({ where: "Metrics.add", reason: `${a.length} classes vs ${b.length}` }))

/** All classes together: `[correct, total]` (the chapter's `.sum(axis=0)`). */
export const total = (rows: PerClass): readonly [number, number] =>
  rows.reduce<readonly [number, number]>(([c, t], [rc, rt]) => [c + rc, t + rt], [0, 0])

/** Accuracy in [0, 1]. */
export const accuracy = (rows: PerClass): number => {
  const [c, t] = total(rows)
  return t === 0 ? 0 : c / t
}
