/**
 * Tensor shapes as plain arrays. Its own module, and the `@stepwise/optim/Shape` entry point, so
 * `@stepwise/data` can share it without loading tfjs (the package index does).
 */

/** The same dimensions in the same order (no broadcasting: [1, 3] is not [3]). */
export const sameShape = (a: ReadonlyArray<number>, b: ReadonlyArray<number>): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i])
