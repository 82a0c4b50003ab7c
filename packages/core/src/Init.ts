import { Random } from "@stepwise/data"

/**
 * PyTorch's default initialisation for Conv2d and Linear: weights from
 * `kaiming_uniform_(w, a=sqrt(5))`, i.e. U(-bound, bound) with bound = gain * sqrt(3 / fanIn)
 * and gain = sqrt(2 / (1 + a^2)), which for a = sqrt(5) is exactly 1 / sqrt(fanIn); biases
 * from U(-1/sqrt(fanIn), 1/sqrt(fanIn)).
 */
export const kaimingUniformBound = (fanIn: number, a: number = Math.sqrt(5)): number =>
  Math.sqrt(2 / (1 + a * a)) * Math.sqrt(3 / fanIn)

export const biasBound = (fanIn: number): number => (fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0)

/** `n` samples of U(-bound, bound) as float32, and the advanced state. */
export const uniform = (
  state: Random.State,
  n: number,
  bound: number
): readonly [Float32Array, Random.State] => {
  const [u, next] = Random.uniforms(state, n)
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = (2 * u[i] - 1) * bound
  return [out, next]
}
