/**
 * The Mersenne Twister as NumPy's legacy `np.random.seed` and PyTorch's CPU generator use it,
 * so the chapter's exact data (NumPy seed 42, `torch.manual_seed(13)` for `random_split`) can be
 * regenerated without Python. Not for new randomness: use `Random` for that.
 */

const N = 624
const M = 397

/** A generator state: 624 words and the position of the next one. Copied on every draw batch. */
export interface State {
  readonly mt: Uint32Array
  readonly index: number
}

/** `init_genrand(seed)`, the seeding of both `np.random.seed(int)` and `torch.manual_seed`. */
export const make = (seed: number): State => {
  const mt = new Uint32Array(N)
  mt[0] = seed >>> 0
  for (let i = 1; i < N; i++) {
    const prev = mt[i - 1] ^ (mt[i - 1] >>> 30)
    mt[i] = (Math.imul(1812433253, prev) + i) >>> 0
  }
  return { mt, index: N }
}

const twist = (mt: Uint32Array) => {
  for (let i = 0; i < N; i++) {
    const y = (mt[i] & 0x80000000) | (mt[(i + 1) % N] & 0x7fffffff)
    mt[i] = mt[(i + M) % N] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)
  }
}

/** `n` raw 32-bit outputs. */
export const uint32s = (state: State, n: number): readonly [Uint32Array, State] => {
  const mt = state.mt.slice()
  let index = state.index
  const out = new Uint32Array(n)
  for (let k = 0; k < n; k++) {
    if (index >= N) {
      twist(mt)
      index = 0
    }
    let y = mt[index++]
    y ^= y >>> 11
    y ^= (y << 7) & 0x9d2c5680
    y ^= (y << 15) & 0xefc60000
    y ^= y >>> 18
    out[k] = y >>> 0
  }
  return [out, { mt, index }]
}

/** NumPy's `random_sample` / `rand`: 53-bit doubles in [0, 1). */
export const rand = (state: State, n: number): readonly [Float64Array, State] => {
  const [u, next] = uint32s(state, 2 * n)
  return [
    Float64Array.from(
      { length: n },
      (_, k) => ((u[2 * k] >>> 5) * 67108864 + (u[2 * k + 1] >>> 6)) / 9007199254740992
    ),
    next
  ]
}

/**
 * NumPy's legacy `randn`: the polar Box-Muller method, returning the second value of each pair
 * first and caching the other (a fresh state has no cached value).
 */
export const randn = (state: State, n: number): readonly [Float64Array, State] => {
  const out = new Float64Array(n)
  let s = state
  let cached: number | undefined
  for (let k = 0; k < n; k++) {
    if (cached !== undefined) {
      out[k] = cached
      cached = undefined
      continue
    }
    for (;;) {
      const [u, next] = rand(s, 2)
      s = next
      const x1 = 2 * u[0] - 1
      const x2 = 2 * u[1] - 1
      const r2 = x1 * x1 + x2 * x2
      if (r2 >= 1 || r2 === 0) continue
      const f = Math.sqrt((-2 * Math.log(r2)) / r2)
      cached = f * x1
      out[k] = f * x2
      break
    }
  }
  return [out, s]
}

/** `torch.randperm(n)` on the CPU after `torch.manual_seed(seed)` (torch 1.13, small n). */
export const torchRandperm = (seed: number, n: number): Uint32Array => {
  const r = Uint32Array.from({ length: n }, (_, i) => i)
  let s = make(seed)
  for (let i = 0; i < n - 1; i++) {
    const [u, next] = uint32s(s, 1)
    s = next
    const z = u[0] % (n - i)
    const t = r[i]
    r[i] = r[z + i]
    r[z + i] = t
  }
  return r
}
