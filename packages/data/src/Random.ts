/**
 * A seeded, pure pseudo-random generator with plain-data state.
 *
 * The generator is xoshiro128** (Blackman & Vigna): 128 bits of state held as four uint32
 * numbers, so a state is a JSON-serialisable value that a checkpoint can store and a resumed run
 * can continue from exactly. Seeds are expanded with splitmix32 so that nearby seeds (0, 1, 2...)
 * give unrelated streams. Every function returns `[value, nextState]`; nothing is mutated.
 *
 * The `Random` service at the bottom is the effectful edge: it holds a state in a `Ref` and hands
 * out values or independent states to code that runs inside `Effect`.
 */
import { Context, Effect, Either, Layer, Ref } from "effect"
import { InvalidArgument } from "./Errors.js"

/** Four uint32 words of xoshiro128** state. Never all zero. */
export type State = readonly [number, number, number, number]

// --- seeding ---------------------------------------------------------------------------------

/** One splitmix32 step: returns the mixed output for counter `x` (used for seeding and hashing). */
const mix32 = (x: number): number => {
  let z = (x + 0x9e3779b9) | 0
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  return (z ^ (z >>> 16)) >>> 0
}

const fromWords = (a: number, b: number, c: number, d: number): State => {
  // xoshiro's only forbidden state is all zeros; splitmix makes it practically impossible, but be exact.
  if ((a | b | c | d) === 0) return [0x9e3779b9, 0x243f6a88, 0xb7e15162, 0x85a308d3]
  return [a >>> 0, b >>> 0, c >>> 0, d >>> 0]
}

/** `InvalidArgument` unless `seed` is a safe integer (what `make` accepts; PyTorch's seeds are ints too). */
export const checkSeed = (seed: number): Either.Either<number, InvalidArgument> =>
  Number.isSafeInteger(seed)
    ? Either.right(seed)
    : Either.left(new InvalidArgument({ field: "seed", value: seed, reason: "must be a safe integer" }))

/**
 * A fresh state from an integer seed (any safe integer, negative allowed); `InvalidArgument` for
 * anything else. The high and low 32-bit halves both feed the expansion so that seeds beyond 2^32
 * stay distinct. An `Either` is an `Effect` too: `yield* Random.make(seed)`.
 */
export const make = (seed: number): Either.Either<State, InvalidArgument> =>
  Either.map(checkSeed(seed), expand)

/**
 * `make` for a seed known to be valid: a literal, or one a schema or `checkSeed` has already
 * accepted (the `DateTime.unsafeMake` convention). Throws `InvalidArgument` otherwise, which is
 * then a bug in the caller, not bad input.
 */
export const unsafeMake = (seed: number): State => Either.getOrThrowWith(make(seed), (e) => e)

const expand = (seed: number): State => {
  const lo = seed >>> 0
  const hi = Math.floor(seed / 0x100000000) >>> 0
  let x = mix32(lo ^ mix32(hi))
  const w0 = x
  x = mix32(x)
  const w1 = x
  x = mix32(x ^ hi)
  const w2 = x
  x = mix32(x)
  return fromWords(w0, w1, w2, x)
}

/** True when `u` is a well-formed state (e.g. one read back from a checkpoint file). */
export const isState = (u: unknown): u is State =>
  Array.isArray(u) &&
  u.length === 4 &&
  u.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff) &&
  u.some((w) => w !== 0)

// --- the generator ---------------------------------------------------------------------------

const rotl = (x: number, k: number): number => (x << k) | (x >>> (32 - k))

/** The next uint32 in [0, 2^32) and the advanced state. */
export const nextUint32 = (state: State): readonly [number, State] => {
  let [s0, s1, s2, s3] = state
  const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0
  const t = s1 << 9
  s2 ^= s0
  s3 ^= s1
  s1 ^= s2
  s0 ^= s3
  s2 ^= t
  s3 = rotl(s3, 11)
  return [result, [s0 >>> 0, s1 >>> 0, s2 >>> 0, s3 >>> 0]]
}

/** A double uniform in [0, 1) with 53 random bits (two draws). */
export const nextFloat = (state: State): readonly [number, State] => {
  const [a, s1] = nextUint32(state)
  const [b, s2] = nextUint32(s1)
  return [((a >>> 5) * 67108864 + (b >>> 6)) / 9007199254740992, s2]
}

/** An integer uniform in [0, n) without modulo bias (rejection sampling), for 1 <= n <= 2^32. */
export const nextInt = (state: State, n: number): readonly [number, State] => {
  // n comes from the library's own sizes (crop positions, shuffle), never straight from a user.
  if (!Number.isInteger(n) || n < 1 || n > 0x100000000) {
    throw new InvalidArgument({ field: "n", value: n, reason: "must be an integer in [1, 2^32]" })
  }
  // Largest multiple of n not above 2^32: values at or beyond it are rejected.
  const limit = 0x100000000 - (0x100000000 % n)
  let s = state
  for (;;) {
    const [u, next] = nextUint32(s)
    s = next
    if (u < limit) return [u % n, s]
  }
}

/** A standard normal sample N(0, 1) via Box-Muller (one of the pair; stays pure, no cache). */
export const nextNormal = (state: State): readonly [number, State] => {
  const [u1, s1] = nextFloat(state)
  const [u2, s2] = nextFloat(s1)
  // 1 - u1 lies in (0, 1], so the log is finite.
  return [Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2), s2]
}

/** `n` uniforms in [0, 1). */
export const uniforms = (state: State, n: number): readonly [Float64Array, State] => {
  const out = new Float64Array(n)
  let s = state
  for (let i = 0; i < n; i++) {
    const [u, next] = nextFloat(s)
    out[i] = u
    s = next
  }
  return [out, s]
}

/** `n` standard normal samples, both halves of each Box-Muller pair used. */
export const normals = (state: State, n: number): readonly [Float64Array, State] => {
  const out = new Float64Array(n)
  let s = state
  for (let i = 0; i < n; i += 2) {
    const [u1, s1] = nextFloat(s)
    const [u2, s2] = nextFloat(s1)
    s = s2
    const r = Math.sqrt(-2 * Math.log(1 - u1))
    out[i] = r * Math.cos(2 * Math.PI * u2)
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2)
  }
  return [out, s]
}

// --- independent streams ---------------------------------------------------------------------

/**
 * A state derived from `state` and an integer key without advancing `state` (like JAX's
 * `fold_in`). `foldIn(base, epoch)` gives each epoch its own stream, a pure function of
 * (seed, epoch), which is what makes resumed runs shuffle exactly as uninterrupted ones.
 */
export const foldIn = (state: State, key: number): State => {
  const lo = key >>> 0
  const hi = Math.floor(key / 0x100000000) >>> 0
  const k = mix32(lo ^ mix32(hi ^ 0x5bd1e995))
  return fromWords(
    mix32(state[0] ^ k),
    mix32(state[1] ^ mix32(k ^ 0x1b873593)),
    mix32(state[2] ^ mix32(k ^ 0xcc9e2d51)),
    mix32(state[3] ^ mix32(k ^ 0xe6546b64))
  )
}

/** Two independent states: one to keep going with, one to hand to somebody else. */
export const split = (state: State): readonly [State, State] => [foldIn(state, 0), foldIn(state, 1)]

/** `n` independent states derived from `state` (e.g. one per worker, one per layer). */
export const fork = (state: State, n: number): ReadonlyArray<State> =>
  Array.from({ length: n }, (_, i) => foldIn(state, i + 2))

// --- permutations ----------------------------------------------------------------------------

/** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
export const shuffle = (state: State, n: number): readonly [Uint32Array, State] => {
  const perm = new Uint32Array(n)
  for (let i = 0; i < n; i++) perm[i] = i
  let s = state
  for (let i = n - 1; i > 0; i--) {
    const [j, next] = nextInt(s, i + 1)
    s = next
    const t = perm[i]
    perm[i] = perm[j]
    perm[j] = t
  }
  return [perm, s]
}

/** A shuffled copy of `items`. */
export const shuffleArray = <A>(state: State, items: ReadonlyArray<A>): readonly [Array<A>, State] => {
  const [perm, s] = shuffle(state, items.length)
  return [Array.from(perm, (i) => items[i]), s]
}

// --- the service -----------------------------------------------------------------------------

/**
 * Randomness as an Effect service. Effectful code asks the service for values or, better, for an
 * independent `State` (`fork`) that it then threads through pure code.
 */
export class Random extends Context.Tag("@stepwise/data/Random")<
  Random,
  {
    /** The seed the layer was built from (recorded in run folders). */
    readonly seed: number
    readonly nextUint32: Effect.Effect<number>
    readonly nextFloat: Effect.Effect<number>
    readonly nextNormal: Effect.Effect<number>
    /** Splits off an independent state for pure use; the service's own stream moves on. */
    readonly fork: Effect.Effect<State>
    /** The current state (for checkpoints). */
    readonly state: Effect.Effect<State>
  }
>() {}

const draw = <A>(ref: Ref.Ref<State>, f: (s: State) => readonly [A, State]): Effect.Effect<A> =>
  Ref.modify(ref, f)

/** The service over an explicit state (e.g. restored from a checkpoint). */
export const fromState = (seed: number, initial: State): Effect.Effect<Random["Type"]> =>
  Effect.map(Ref.make(initial), (ref) => ({
    seed,
    nextUint32: draw(ref, nextUint32),
    nextFloat: draw(ref, nextFloat),
    nextNormal: draw(ref, nextNormal),
    fork: draw(ref, (s) => {
      const [keep, give] = split(s)
      return [give, keep] as const
    }),
    state: Ref.get(ref)
  }))

/** The `Random` layer for a seed; `InvalidArgument` when building it with a bad seed. */
export const layer = (seed: number): Layer.Layer<Random, InvalidArgument> =>
  Layer.effect(
    Random,
    Effect.flatMap(make(seed), (state) => fromState(seed, state))
  )
