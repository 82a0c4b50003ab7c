import { Either } from "effect"
import { MismatchedTree } from "./Errors.js"
import { mapParams, type Numeric, type Params } from "./Numeric.js"
import { sameShape } from "./Shape.js"

/**
 * Hyperparameters that a scheduler may drive step by step. `lr` always; `momentum` (SGD,
 * RMSprop) or `beta1` (Adam family) when a cyclic scheduler cycles them.
 */
export interface Hyper {
  readonly lr: number
  readonly momentum?: number
  readonly beta1?: number
}

/**
 * Any optimizer's state, as plain immutable data: the step count and named slot trees shaped
 * like the parameters (`expAvg`, `momentumBuffer`, ...). Each optimizer narrows it to its own
 * type (`SGD.State<T> = { step, momentumBuffer? }`, `Adam.State<T> = { step, expAvg, expAvgSq,
 * maxExpAvgSq? }`); code that handles states of any optimizer (checkpoints, tensor disposal) goes
 * through `OptimizerState.slotsOf` / `OptimizerState.schema` / `TfNumeric.stateTensors`.
 */
export type OptimizerState<T> = {
  readonly step: number
  readonly [slot: string]: Params<T> | number | undefined
}

export interface Update<T, S extends OptimizerState<T> = OptimizerState<T>> {
  readonly state: S
  readonly params: Params<T>
}

/**
 * An optimizer on one numeric backend: optax's `init`/`update` pair, pure. `update` trusts its
 * trees to match (`step` checks them); written as methods so an `Optimizer<T, SGD.State<T>>` is
 * usable where any `Optimizer<T>` is expected (a state only ever goes back to its own optimizer).
 */
export interface Optimizer<T, S extends OptimizerState<T> = OptimizerState<T>> {
  readonly name: string
  /** The configured hyperparameters: a scheduler's base values. */
  readonly defaults: Hyper
  init(params: Params<T>): S
  update(state: S, grads: Params<T>, params: Params<T>, hyper: Hyper): Update<T, S>
}

/** An optimizer written once, instantiated on any numeric backend (its state type erased). */
export type OptimizerDef = <T>(N: Numeric<T>) => Optimizer<T>

/**
 * The gradient tree fits the parameters: the same names, each gradient of its parameter's shape.
 * Shapes only, once per update (cheap): on tfjs a [1, 3] gradient for a [3, 1] parameter would
 * otherwise broadcast the parameter into [3, 3], and a missing gradient throw a TypeError.
 */
export const checkTrees = <T>(
  N: Numeric<T>,
  params: Params<T>,
  grads: Params<T>
): Either.Either<void, MismatchedTree> => {
  for (const name of Object.keys(params)) {
    const expected = N.shape(params[name])
    const g = Object.hasOwn(grads, name) ? grads[name] : undefined
    if (g === undefined) return Either.left(new MismatchedTree({ parameter: name, expected: [...expected] }))
    const actual = N.shape(g)
    if (!sameShape(expected, actual))
      return Either.left(
        new MismatchedTree({ parameter: name, expected: [...expected], actual: [...actual] })
      )
  }
  for (const name of Object.keys(grads)) {
    if (!Object.hasOwn(params, name))
      return Either.left(new MismatchedTree({ parameter: name, actual: [...N.shape(grads[name])] }))
  }
  return Either.void
}

/** One checked update: `MismatchedTree` when the gradients do not fit the parameters. */
export const step = <T, S extends OptimizerState<T>>(
  N: Numeric<T>,
  optimizer: Optimizer<T, S>,
  state: S,
  grads: Params<T>,
  params: Params<T>,
  hyper: Hyper
): Either.Either<Update<T, S>, MismatchedTree> =>
  Either.map(checkTrees(N, params, grads), () => optimizer.update(state, grads, params, hyper))

/**
 * Runs `f` on every parameter and gathers the results: the new parameters, and for each slot
 * name the new tree (an `undefined` slot value is left out, so a slot `f` never returns is
 * absent). Keeps each optimizer's math a per-parameter function on one screen.
 */
export const perParameter = <T, K extends string>(
  params: Params<T>,
  f: (name: string, param: T) => { readonly param: T; readonly slots: { readonly [k in K]?: T | undefined } }
): { readonly params: Params<T>; readonly slots: { readonly [k in K]: Params<T> } } => {
  const nextParams: Record<string, T> = {}
  const slots: Record<string, Record<string, T>> = {}
  for (const name of Object.keys(params)) {
    const out = f(name, params[name])
    nextParams[name] = out.param
    for (const [slot, value] of Object.entries(out.slots) as Array<[string, T | undefined]>) {
      if (value === undefined) continue
      slots[slot] ??= {}
      slots[slot][name] = value
    }
  }
  return { params: nextParams, slots: slots as { readonly [k in K]: Params<T> } }
}

/** A slot tree shaped like `params`, every element `value` (PyTorch's `torch.full_like` state). */
export const filled = <T>(N: Numeric<T>, params: Params<T>, value: number): Params<T> =>
  mapParams(params, (p) => N.fullLike(p, value))

/**
 * The gradient PyTorch's optimizers step on: negated with `maximize`, plus the L2 term
 * `weightDecay * param` when `weightDecay` is not 0.
 */
export const gradient = <T>(
  N: Numeric<T>,
  grad: T,
  param: T,
  c: { readonly maximize: boolean; readonly weightDecay: number }
): T => {
  const g = c.maximize ? N.neg(grad) : grad
  return c.weightDecay === 0 ? g : N.add(g, N.scale(param, c.weightDecay))
}
