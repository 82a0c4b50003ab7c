import { Effect, ParseResult, Schema } from "effect"

/** A hyperparameter PyTorch would reject with a ValueError, named with its value and the rule. */
export class InvalidHyperparameter extends Schema.TaggedError<InvalidHyperparameter>()(
  "InvalidHyperparameter",
  {
    field: Schema.String,
    value: Schema.Unknown,
    reason: Schema.String
  }
) {
  override get message(): string {
    const shown = typeof this.value === "number" ? String(this.value) : JSON.stringify(this.value)
    return `invalid hyperparameter ${this.field} = ${shown}: ${this.reason}`
  }
}

/** One rule: `ok` must hold for `value`, else the error names `field`. */
export interface Rule {
  readonly field: string
  readonly value: unknown
  readonly ok: boolean
  readonly reason: string
}

/** Fails with the first broken rule, like PyTorch's constructors. */
export const check = (rules: ReadonlyArray<Rule>): Effect.Effect<void, InvalidHyperparameter> => {
  const broken = rules.find((r) => !r.ok)
  return broken === undefined
    ? Effect.void
    : Effect.fail(
        new InvalidHyperparameter({ field: broken.field, value: broken.value, reason: broken.reason })
      )
}

export const nonNegative = (field: string, value: number): Rule => ({
  field,
  value,
  ok: value >= 0, // NaN fails too
  reason: "must be >= 0"
})

/** `nonNegative` for each of `fields` of `c`, in the given order (the first broken one is reported). */
export const nonNegativeFields = <K extends string>(
  c: { readonly [k in K]: number },
  fields: ReadonlyArray<K>
): ReadonlyArray<Rule> => fields.map((field) => nonNegative(field, c[field]))

export const positive = (field: string, value: number): Rule => ({
  field,
  value,
  ok: value > 0,
  reason: "must be > 0"
})

export const unitInterval = (field: string, value: number): Rule => ({
  field,
  value,
  ok: value >= 0 && value < 1,
  reason: "must be in [0, 1)"
})

const valueAt = (input: unknown, path: ReadonlyArray<PropertyKey>): unknown => {
  let v: any = input
  for (const key of path) v = v === null || typeof v !== "object" ? undefined : v[key]
  return v
}

/**
 * Decodes unknown input (a config file) with `schema`; a parse failure becomes an
 * `InvalidHyperparameter` naming the dotted field path and the offending value.
 */
export const decode =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (input: unknown): Effect.Effect<A, InvalidHyperparameter> =>
    Schema.decodeUnknown(schema)(input, { onExcessProperty: "error" }).pipe(
      Effect.mapError((error) => {
        const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
        const path = first?.path ?? []
        return new InvalidHyperparameter({
          field: path.length === 0 ? "<config>" : path.map(String).join("."),
          value: valueAt(input, path),
          reason: first?.message ?? String(error)
        })
      })
    )

export const positiveInt = (field: string, value: number): Rule => ({
  field,
  value,
  ok: Number.isInteger(value) && value > 0,
  reason: "must be a positive integer"
})

export const nonNegativeInt = (field: string, value: number): Rule => ({
  field,
  value,
  ok: Number.isInteger(value) && value >= 0,
  reason: "must be a non-negative integer"
})
