import { SchemaAST as AST, Effect, Option, ParseResult, Schema } from "effect"
import { InvalidHyperparameter } from "./Errors.js"

/**
 * The building blocks of every optimizer and scheduler config schema: numbers carrying
 * PyTorch's constructor rules as schema filters, fields carrying their description and default
 * as annotations (so `fieldsOf` can list them for a CLI), and the decoder that turns a parse
 * failure into one `InvalidHyperparameter`.
 */

const rule = (message: string) => ({ message: () => message })

/** Any finite number: Infinity and NaN are rejected (`--lr Infinity` names `lr`). */
export const finite = Schema.Number.pipe(Schema.finite(rule("must be a finite number")))
export const nonNegative = finite.pipe(Schema.greaterThanOrEqualTo(0, rule("must be >= 0")))
export const positive = finite.pipe(Schema.greaterThan(0, rule("must be > 0")))
/** [0, 1): betas, momentum-like averages. */
export const unitInterval = nonNegative.pipe(Schema.lessThan(1, rule("must be in [0, 1)")))
/** (0, 1): OneCycleLR's pctStart (0 or 1 leave a phase of length 0: lr NaN). */
export const openUnitInterval = finite.pipe(
  Schema.greaterThan(0, rule("must be in (0, 1)")),
  Schema.lessThan(1, rule("must be in (0, 1)"))
)
export const int = finite.pipe(Schema.int(rule("must be an integer")))
export const positiveInt = int.pipe(Schema.greaterThan(0, rule("must be a positive integer")))
export const nonNegativeInt = int.pipe(Schema.greaterThanOrEqualTo(0, rule("must be a non-negative integer")))

/** A field with PyTorch's default: decoding fills it; `fieldsOf` reads description and default. */
export const withDefault = <A, I>(schema: Schema.Schema<A, I>, value: A, description: string) =>
  Schema.optionalWith(schema.annotations({ description, default: value }), { default: () => value })

/** A field without a default (required unless `optional`). */
export const required = <A, I>(schema: Schema.Schema<A, I>, description: string) =>
  schema.annotations({ description })

/** A field that may be absent, with no default (OneCycleLR's `totalSteps`). */
export const optional = <A, I>(schema: Schema.Schema<A, I>, description: string) =>
  Schema.optional(schema.annotations({ description }))

/** What a CLI needs to offer a field as a flag. */
export interface FieldInfo {
  readonly name: string
  readonly type: "number" | "int" | "boolean" | "literal" | "array" | "config"
  /** The allowed values of a `literal` field. */
  readonly choices?: ReadonlyArray<string | number | boolean>
  /** The element type of an `array` field (tuples: betas). */
  readonly element?: FieldInfo["type"]
  /** The length of a fixed-size array (betas: 2). */
  readonly length?: number
  /** PyTorch's default; undefined when the field is required or has none. */
  readonly default?: unknown
  readonly required: boolean
  readonly description: string
}

const isInt = (ast: AST.AST): boolean =>
  Option.getOrUndefined(AST.getSchemaIdAnnotation(ast)) === Schema.IntSchemaId ||
  (AST.isRefinement(ast) && isInt(ast.from))

const typeOf = (ast: AST.AST): Pick<FieldInfo, "type" | "choices" | "element" | "length"> => {
  if (AST.isRefinement(ast)) return isInt(ast) ? { type: "int" } : typeOf(ast.from)
  if (AST.isTransformation(ast)) return typeOf(ast.to)
  if (AST.isSuspend(ast)) return { type: "config" }
  if (AST.isNumberKeyword(ast)) return { type: "number" }
  if (AST.isBooleanKeyword(ast)) return { type: "boolean" }
  if (AST.isLiteral(ast)) return { type: "literal", choices: [ast.literal as string] }
  if (AST.isUnion(ast) && ast.types.every(AST.isLiteral))
    return { type: "literal", choices: ast.types.map((t) => (t as AST.Literal).literal as string) }
  if (AST.isTupleType(ast)) {
    const element = ast.elements[0]?.type ?? ast.rest[0]?.type
    const inner = element === undefined ? "number" : typeOf(element).type
    return ast.rest.length === 0
      ? { type: "array", element: inner, length: ast.elements.length }
      : { type: "array", element: inner }
  }
  return { type: "config" }
}

/** The annotated schema of a struct field, whatever wraps it (optional, default). */
const fieldAst = (field: unknown): { readonly ast: AST.AST; readonly required: boolean } => {
  if (Schema.isSchema(field)) return { ast: field.ast, required: true }
  const ps = (field as Schema.PropertySignature.All).ast
  const type = ps._tag === "PropertySignatureDeclaration" ? ps.type : ps.from.type
  const ast = AST.isUnion(type) ? (type.types.find((t) => !AST.isUndefinedKeyword(t)) ?? type) : type
  return { ast, required: false }
}

/** The fields of a tagged config struct, in declaration order (`_tag` left out). */
export const fieldsOf = (fields: Schema.Struct.Fields): ReadonlyArray<FieldInfo> =>
  Object.entries(fields)
    .filter(([name]) => name !== "_tag")
    .map(([name, field]) => {
      const { ast, required } = fieldAst(field)
      const def = AST.getDefaultAnnotation(ast)
      return {
        name,
        ...typeOf(ast),
        ...(Option.isSome(def) ? { default: def.value } : {}),
        required,
        description: Option.getOrElse(AST.getDescriptionAnnotation(ast), () => name)
      }
    })

const valueAt = (input: unknown, path: ReadonlyArray<PropertyKey>): unknown => {
  let v: any = input
  for (const key of path) v = v === null || typeof v !== "object" ? undefined : v[key]
  return v
}

/**
 * The innermost tagged config along `path` in `input` and the path inside it:
 * `{ _tag: "SequentialLR", schedulers: [{ _tag: "StepLR", stepSize: 0 }] }` at
 * `schedulers.0.stepSize` is `StepLR` / `stepSize`.
 */
const owner = (input: unknown, path: ReadonlyArray<PropertyKey>) => {
  let config = "config"
  let start = 0
  let v: any = input
  for (let i = 0; i <= path.length; i++) {
    if (v !== null && typeof v === "object" && typeof v._tag === "string" && i < path.length) {
      config = v._tag
      start = i
    }
    if (i < path.length) v = v === null || typeof v !== "object" ? undefined : v[path[i]]
  }
  return { config, field: path.slice(start).map(String).join(".") || "_tag" }
}

/** A parse failure as one `InvalidHyperparameter` (the first issue, like PyTorch's first ValueError). */
export const toInvalid = (input: unknown, error: ParseResult.ParseError): InvalidHyperparameter => {
  const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
  const path = first?.path ?? []
  return new InvalidHyperparameter({
    ...owner(input, path),
    value: valueAt(input, path),
    reason: first?.message ?? error.message
  })
}

/** Decodes untrusted input (a config file, flags); unknown fields are errors. */
export const decode =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (input: unknown): Effect.Effect<A, InvalidHyperparameter> =>
    Schema.decodeUnknown(schema)(input, { onExcessProperty: "error" }).pipe(
      Effect.mapError((error) => toInvalid(input, error))
    )

/** Checks a config built in code (`Schema.validate`: its rules, without filling defaults). */
export const validate =
  <A, I>(schema: Schema.Schema<A, I>) =>
  (config: A): Effect.Effect<A, InvalidHyperparameter> =>
    Schema.validate(schema)(config).pipe(Effect.mapError((error) => toInvalid(config, error)))
