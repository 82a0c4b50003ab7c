import { Schema } from "effect"
import type { Numeric, Params } from "./Numeric.js"
import type { OptimizerState } from "./Optimizer.js"

/** One tensor as plain numbers: its shape and its values in row-major order. */
export const EncodedTensor = Schema.Struct({
  shape: Schema.Array(Schema.Number),
  values: Schema.Array(Schema.Number)
})

/** An optimizer state as plain JSON-ready data: `{ step, slots: { expAvg: { "fc1.weight": {...} } } }`. */
export const Encoded = Schema.Struct({
  step: Schema.Number,
  slots: Schema.Record({
    key: Schema.String,
    value: Schema.Record({ key: Schema.String, value: EncodedTensor })
  })
})
export type Encoded = typeof Encoded.Type

/**
 * The Schema of `OptimizerState<T>` on backend `N`: decoding builds tensors with
 * `N.fromArray`, encoding reads them with `N.toArray`. A checkpoint stores the encoded side.
 */
export const schema = <T>(N: Numeric<T>): Schema.Schema<OptimizerState<T>, Encoded> =>
  Schema.transform(
    Encoded,
    Schema.declare((u: unknown): u is OptimizerState<T> => typeof u === "object" && u !== null),
    {
      strict: true,
      decode: (e) => ({
        step: e.step,
        slots: mapSlots(e.slots, (t) => N.fromArray(t.values, t.shape))
      }),
      encode: (s) => ({
        step: s.step,
        slots: mapSlots(s.slots, (t) => ({ shape: [...N.shape(t)], values: Array.from(N.toArray(t)) }))
      })
    }
  )

const mapSlots = <A, B>(
  slots: { readonly [slot: string]: Params<A> },
  f: (a: A) => B
): { readonly [slot: string]: Params<B> } => {
  const out: Record<string, Record<string, B>> = {}
  for (const [slot, tree] of Object.entries(slots)) {
    out[slot] = {}
    for (const [name, t] of Object.entries(tree)) out[slot][name] = f(t)
  }
  return out
}
