import { it as eit } from "@effect/vitest"
import { Errors, Random } from "@stepwise/data"
import { Effect, Either } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"

const seedArb = fc.integer({ min: -(2 ** 40), max: 2 ** 40 })

describe("Random (xoshiro128**)", () => {
  it("matches the reference xoshiro128** output for state [1, 2, 3, 4]", () => {
    // First outputs of the authors' C implementation from s = {1, 2, 3, 4}.
    let s: Random.State = [1, 2, 3, 4]
    const out: number[] = []
    for (let i = 0; i < 6; i++) {
      const [u, next] = Random.nextUint32(s)
      out.push(u)
      s = next
    }
    expect(out).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492])
  })

  it("is a pure function of the seed, and states survive a JSON round trip", () => {
    fc.assert(
      fc.property(seedArb, (seed) => {
        const s = Random.unsafeMake(seed)
        expect(Random.isState(s)).toBe(true)
        const restored = JSON.parse(JSON.stringify(s)) as Random.State
        expect(Random.nextUint32(restored)).toEqual(Random.nextUint32(s))
        expect(Random.unsafeMake(seed)).toEqual(s)
      })
    )
  })

  it("rejects seeds and ranges it cannot honour with a typed error", () => {
    for (const seed of [1.5, 2 ** 60, Number.NaN, Number.POSITIVE_INFINITY]) {
      const made = Random.make(seed)
      expect(Either.isLeft(made) && made.left).toEqual(
        new Errors.InvalidArgument({ field: "seed", value: seed, reason: "must be a safe integer" })
      )
    }
    expect(Random.make(-7)).toEqual(Either.right(Random.unsafeMake(-7)))
    expect(() => Random.unsafeMake(1.5)).toThrow(Errors.InvalidArgument)
    expect(() => Random.nextInt(Random.unsafeMake(1), 0)).toThrow(/invalid n = 0/)
  })

  it("gives different streams for neighbouring seeds and for seeds beyond 2^32", () => {
    const first = (seed: number) => Random.nextUint32(Random.unsafeMake(seed))[0]
    expect(first(0)).not.toBe(first(1))
    expect(first(1)).not.toBe(first(1 + 2 ** 32))
    expect(first(-1)).not.toBe(first(2 ** 32 - 1))
  })

  it("nextFloat lies in [0, 1) and nextInt in [0, n)", () => {
    fc.assert(
      fc.property(seedArb, fc.integer({ min: 1, max: 2 ** 32 }), (seed, n) => {
        const s = Random.unsafeMake(seed)
        const [u] = Random.nextFloat(s)
        const [k] = Random.nextInt(s, n)
        expect(u).toBeGreaterThanOrEqual(0)
        expect(u).toBeLessThan(1)
        expect(Number.isInteger(k) && k >= 0 && k < n).toBe(true)
      })
    )
  })

  it("uniforms and normals have the right first two moments (200k draws)", () => {
    const n = 200_000
    const [u] = Random.uniforms(Random.unsafeMake(7), n)
    const [z] = Random.normals(Random.unsafeMake(7), n)
    const mean = (a: Float64Array) => a.reduce((p, q) => p + q, 0) / a.length
    const variance = (a: Float64Array) => {
      const m = mean(a)
      return a.reduce((p, q) => p + (q - m) ** 2, 0) / (a.length - 1)
    }
    // Standard errors: 0.29/sqrt(n) ~ 6.5e-4 for the uniform mean, 1/sqrt(n) ~ 2.2e-3 for the normal.
    expect(Math.abs(mean(u) - 0.5)).toBeLessThan(0.003)
    expect(Math.abs(variance(u) - 1 / 12)).toBeLessThan(0.002)
    expect(Math.abs(mean(z))).toBeLessThan(0.01)
    expect(Math.abs(variance(z) - 1)).toBeLessThan(0.015)
    const tail = z.filter((v) => Math.abs(v) > 1.96).length / n
    expect(Math.abs(tail - 0.05)).toBeLessThan(0.003)
  })

  it("shuffle returns a permutation, and every position is equally likely", () => {
    fc.assert(
      fc.property(seedArb, fc.integer({ min: 0, max: 300 }), (seed, n) => {
        const [perm] = Random.shuffle(Random.unsafeMake(seed), n)
        expect(Array.from(perm).sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i))
      })
    )
    // Chi-square over where element 0 lands among 5 slots, 50k shuffles: 4 dof, 99.9% critical ~18.5.
    const counts = [0, 0, 0, 0, 0]
    let s = Random.unsafeMake(3)
    for (let t = 0; t < 50_000; t++) {
      const [perm, next] = Random.shuffle(s, 5)
      s = next
      counts[perm.indexOf(0)]++
    }
    const expected = 10_000
    const chi2 = counts.reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0)
    expect(chi2).toBeLessThan(18.5)
  })

  it("foldIn, split and fork give distinct streams and do not depend on draws made elsewhere", () => {
    const base = Random.unsafeMake(42)
    const [a, b] = Random.split(base)
    const forks = Random.fork(base, 4)
    const firsts = [a, b, ...forks, Random.foldIn(base, 1000)].map((s) => Random.nextUint32(s)[0])
    expect(new Set(firsts).size).toBe(firsts.length)
    expect(Random.foldIn(base, 5)).toEqual(Random.foldIn(Random.unsafeMake(42), 5))
    expect(Random.fork(base, 4)).toEqual(forks)
  })
})

describe("Random service", () => {
  eit.effect("draws from the seeded stream and forks independent states", () =>
    Effect.gen(function* () {
      const rng = yield* Random.Random
      const u = yield* rng.nextUint32
      expect(u).toBe(Random.nextUint32(Random.unsafeMake(11))[0])
      const before = yield* rng.state
      const forked = yield* rng.fork
      const after = yield* rng.state
      expect(forked).toEqual(Random.split(before)[1])
      expect(after).toEqual(Random.split(before)[0])
      expect(rng.seed).toBe(11)
    }).pipe(Effect.provide(Random.layer(11)))
  )
})
