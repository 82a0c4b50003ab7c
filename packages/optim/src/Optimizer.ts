import { mapParams, type Numeric, type Params } from "./Numeric.js"

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
 * Optimizer state as plain immutable data: the step count and named slots, each a parameter
 * tree (`expAvg`, `expAvgSq`, `maxExpAvgSq`, `momentumBuffer`, `squareAvg`, `gradAvg`, `sum`).
 * A slot that PyTorch creates lazily (SGD's `momentumBuffer`) is absent until the first step.
 */
export interface OptimizerState<T> {
  readonly step: number
  readonly slots: { readonly [slot: string]: Params<T> }
}

export interface Update<T> {
  readonly state: OptimizerState<T>
  readonly params: Params<T>
}

/** An optimizer on one numeric backend: optax's `init`/`update` pair, pure. */
export interface Optimizer<T> {
  readonly name: string
  /** The configured hyperparameters: a scheduler's base values. */
  readonly defaults: Hyper
  readonly init: (params: Params<T>) => OptimizerState<T>
  readonly update: (state: OptimizerState<T>, grads: Params<T>, params: Params<T>, hyper: Hyper) => Update<T>
}

/** An optimizer written once, instantiated on any numeric backend. */
export type OptimizerDef = <T>(N: Numeric<T>) => Optimizer<T>

/**
 * Runs `f` on every parameter and gathers the results: the new parameters, and for each slot
 * name the new tree (an `undefined` slot value is left out). Keeps each optimizer's math a per-parameter function on one screen.
 */
export const perParameter = <T>(
  params: Params<T>,
  f: (
    name: string,
    param: T
  ) => { readonly param: T; readonly slots: { readonly [slot: string]: T | undefined } }
): { readonly params: Params<T>; readonly slots: { readonly [slot: string]: Params<T> } } => {
  const nextParams: Record<string, T> = {}
  const slots: Record<string, Record<string, T>> = {}
  for (const name of Object.keys(params)) {
    const out = f(name, params[name])
    nextParams[name] = out.param
    for (const [slot, value] of Object.entries(out.slots)) {
      if (value === undefined) continue
      slots[slot] ??= {}
      slots[slot][name] = value
    }
  }
  return { params: nextParams, slots }
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
