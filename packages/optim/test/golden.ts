import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

/** Reads a fixture written by scripts/golden.py. */
export const fixture = <A>(name: string): A =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url)), "utf8")) as A

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
