import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

/** Reads a fixture written by scripts/golden.py. */
export const fixture = <A>(name: string): A =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url)), "utf8")) as A

/**
 * Largest elementwise relative error `|a - b| / |b|`, with `floor` standing in for `|b|` when
 * `|b|` is smaller (values that are exactly 0 in both give 0).
 */
export const maxRelErr = (actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 1e-12): number => {
  if (actual.length !== expected.length) return Number.POSITIVE_INFINITY
  let worst = 0
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i])
    if (diff === 0) continue
    worst = Math.max(worst, diff / Math.max(Math.abs(expected[i]), floor))
  }
  return worst
}

/**
 * Norm-wise relative error `max|a - b| / max|b|`: the float32 criterion, since a running average
 * that passes near 0 loses its relative digits to cancellation in any float32 implementation.
 */
export const normRelErr = (actual: ArrayLike<number>, expected: ArrayLike<number>): number => {
  if (actual.length !== expected.length) return Number.POSITIVE_INFINITY
  let diff = 0
  let scale = 0
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]))
    scale = Math.max(scale, Math.abs(expected[i]))
  }
  return diff === 0 ? 0 : diff / scale
}
