import { Schema } from "effect"
import { mapParams, type Numeric, type Params } from "./Numeric.js"
import type { OptimizerState } from "./Optimizer.js"

/** One tensor as plain numbers: its shape and its values in row-major order. */
export const EncodedTensor = Schema.Struct({
  shape: Schema.Array(Schema.NonNegativeInt),
  values: Schema.Array(Schema.Number)
}).pipe(
  // checked here so a damaged checkpoint fails decoding, instead of throwing in `N.fromArray`
  Schema.filter(
    (t) =>
      t.values.length === t.shape.reduce((a, b) => a * b, 1) || {
        path: ["values"],
        message: `shape [${t.shape.join(", ")}] needs ${t.shape.reduce((a, b) => a * b, 1)} values, got ${t.values.length}`
      }
  )
)

/** An optimizer state as plain JSON-ready data: `{ step, slots: { expAvg: { "fc1.weight": {...} } } }`. */
export const Encoded = Schema.Struct({
  step: Schema.Number,
  slots: Schema.Record({
    key: Schema.String,
    value: Schema.Record({ key: Schema.String, value: EncodedTensor })
  })
})
export type Encoded = typeof Encoded.Type

/** The slot trees of any optimizer's state (`{ expAvg: {...}, expAvgSq: {...} }`), without `step`. */
export const slotsOf = <T>(state: OptimizerState<T>): { readonly [slot: string]: Params<T> } => {
  const out: Record<string, Params<T>> = {}
  for (const [slot, tree] of Object.entries(state)) {
    if (slot !== "step" && tree !== undefined && typeof tree !== "number") out[slot] = tree
  }
  return out
}

/**
 * A state from its step count and slot trees (a checkpoint's contents). The slot names must be
 * the optimizer's own: `S` is what the caller asserts it restores.
 */
export const make = <T, S extends OptimizerState<T> = OptimizerState<T>>(
  step: number,
  slots: { readonly [slot: string]: Params<T> }
): S => ({ ...slots, step }) as unknown as S

/** Applies `f` to every tensor of a state, keeping step and slot names. */
export const map = <A, B>(state: OptimizerState<A>, f: (a: A) => B): OptimizerState<B> => {
  const slots: Record<string, Params<B>> = {}
  for (const [slot, tree] of Object.entries(slotsOf(state))) slots[slot] = mapParams(tree, f)
  return make(state.step, slots)
}

/** Every tensor held by a state. */
export const tensors = <T>(state: OptimizerState<T>): ReadonlyArray<T> =>
  Object.values(slotsOf(state)).flatMap((tree) => Object.values(tree))

/**
 * The Schema of an optimizer state on backend `N`: decoding builds tensors with `N.fromArray`,
 * encoding reads them with `N.toArray` (only these and `shape` are needed, so host arrays such
 * as a checkpoint file's tensors qualify). A checkpoint stores the encoded side. `S` narrows the
 * decoded type to one optimizer's state (`OptimizerState.schema<tf.Tensor, Adam.State<tf.Tensor>>(N)`).
 */
export const schema = <T, S extends OptimizerState<T> = OptimizerState<T>>(
  N: Pick<Numeric<T>, "fromArray" | "toArray" | "shape">
): Schema.Schema<S, Encoded> =>
  Schema.transform(
    Encoded,
    Schema.declare((u: unknown): u is S => typeof u === "object" && u !== null && "step" in u),
    {
      strict: true,
      decode: (e) =>
        make<T, S>(
          e.step,
          Object.fromEntries(
            Object.entries(e.slots).map(([slot, tree]) => [
              slot,
              mapParams(tree, (t) => N.fromArray(t.values, t.shape))
            ])
          )
        ),
      encode: (s) => ({
        step: s.step,
        slots: Object.fromEntries(
          Object.entries(slotsOf<T>(s)).map(([slot, tree]) => [
            slot,
            mapParams(tree, (t) => ({ shape: [...N.shape(t)], values: Array.from(N.toArray(t)) }))
          ])
        )
      })
    }
  )
