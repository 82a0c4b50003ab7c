/**
 * A training recipe: everything `stepwise train` needs, as one JSON/YAML document validated by
 * Schema. Command-line flags override it field by field. The resolved recipe is what a run
 * folder's `config.json` holds, so `--resume` and `eval` can rebuild the same model and data.
 */
import { FileSystem } from "@effect/platform"
import { Effect, ParseResult, Schema } from "effect"
import * as Yaml from "yaml"
import { ConfigError } from "./Errors.js"

const finiteNumber = Schema.Number.pipe(Schema.finite())
const positive = finiteNumber.pipe(Schema.positive({ message: () => "must be > 0" }))
const nonNegative = finiteNumber.pipe(Schema.nonNegative({ message: () => "must be >= 0" }))
const unit = finiteNumber.pipe(Schema.between(0, 1, { message: () => "must be in [0, 1]" }))
const unitOpen = finiteNumber.pipe(Schema.filter((x) => (x >= 0 && x < 1) || "must be in [0, 1)"))
const positiveInt = Schema.Int.pipe(Schema.positive({ message: () => "must be a positive integer" }))
const nonNegativeInt = Schema.Int.pipe(
  Schema.nonNegative({ message: () => "must be a non-negative integer" })
)

export const OptimizerNames = ["sgd", "adam", "adamw", "rmsprop", "adagrad"] as const
export type OptimizerName = (typeof OptimizerNames)[number]

export const SchedulerNames = [
  "none",
  "step",
  "multistep",
  "exponential",
  "cosine",
  "plateau",
  "cyclic",
  "onecycle",
  "cosine-warm-restarts"
] as const
export type SchedulerName = (typeof SchedulerNames)[number]

export const BackendNames = ["wasm", "cpu", "tensorflow"] as const
export type BackendName = (typeof BackendNames)[number]

/** CNN2 (the chapter's model): `filters` is n_feature, `dropout` is p. */
export const Model = Schema.Struct({
  filters: Schema.optionalWith(positiveInt, { default: () => 5 }),
  dropout: Schema.optionalWith(unitOpen, { default: () => 0.3 })
})

/** An optimizer and its PyTorch hyperparameters (camelCase). Which apply depends on `name`. */
export const Optimizer = Schema.Struct({
  name: Schema.Literal(...OptimizerNames),
  lr: nonNegative,
  momentum: Schema.optional(nonNegative),
  dampening: Schema.optional(unit),
  nesterov: Schema.optional(Schema.Boolean),
  weightDecay: Schema.optional(nonNegative),
  beta1: Schema.optional(unitOpen),
  beta2: Schema.optional(unitOpen),
  eps: Schema.optional(positive),
  amsgrad: Schema.optional(Schema.Boolean),
  alpha: Schema.optional(unit),
  centered: Schema.optional(Schema.Boolean),
  lrDecay: Schema.optional(nonNegative),
  initialAccumulatorValue: Schema.optional(nonNegative)
})
export type Optimizer = typeof Optimizer.Type

/**
 * A learning-rate scheduler and its PyTorch parameters (camelCase). `stepSizeUp` and
 * `stepSizeDown` (CyclicLR) count mini-batches and may also be
 * `"epoch"`: the number of mini-batches in one epoch, the chapter's `len(train_loader)`.
 * OneCycleLR's `totalSteps` defaults to the whole run (epochs x mini-batches per epoch).
 */
const stepsOrEpoch = Schema.Union(positiveInt, Schema.Literal("epoch"))
export const Scheduler = Schema.Struct({
  name: Schema.Literal(...SchedulerNames),
  stepSize: Schema.optional(positiveInt),
  gamma: Schema.optional(positive),
  milestones: Schema.optional(Schema.Array(nonNegativeInt)),
  factor: Schema.optional(positive),
  tMax: Schema.optional(positiveInt),
  etaMin: Schema.optional(nonNegative),
  mode: Schema.optional(Schema.Literal("min", "max", "triangular", "triangular2", "exp_range")),
  patience: Schema.optional(nonNegativeInt),
  threshold: Schema.optional(nonNegative),
  thresholdMode: Schema.optional(Schema.Literal("rel", "abs")),
  cooldown: Schema.optional(nonNegativeInt),
  minLr: Schema.optional(nonNegative),
  baseLr: Schema.optional(positive),
  maxLr: Schema.optional(positive),
  stepSizeUp: Schema.optional(stepsOrEpoch),
  stepSizeDown: Schema.optional(stepsOrEpoch),
  cycleMomentum: Schema.optional(Schema.Boolean),
  baseMomentum: Schema.optional(unit),
  maxMomentum: Schema.optional(unit),
  totalSteps: Schema.optional(positiveInt),
  pctStart: Schema.optional(unit),
  annealStrategy: Schema.optional(Schema.Literal("cos", "linear")),
  divFactor: Schema.optional(positive),
  finalDivFactor: Schema.optional(positive),
  threePhase: Schema.optional(Schema.Boolean),
  t0: Schema.optional(positiveInt),
  tMult: Schema.optional(positiveInt)
})
export type Scheduler = typeof Scheduler.Type

/** `28` (shorter side, like torchvision's Resize(28)), `[28, 28]`, or `"28x28"`. */
export const Resize = Schema.Union(
  positiveInt,
  Schema.Tuple(positiveInt, positiveInt),
  Schema.String.pipe(Schema.pattern(/^\d+(x\d+)?$/, { message: () => 'must look like "28" or "28x28"' }))
)
export type Resize = typeof Resize.Type

export const Data = Schema.Struct({
  /** ImageFolder root of the training set; absent: the bundled 28x28 Rock Paper Scissors. */
  train: Schema.optional(Schema.String),
  /** ImageFolder root of the validation set; absent: the bundled test set (unless valSplit). */
  val: Schema.optional(Schema.String),
  /** Hold out this fraction of the training set instead of a validation folder. */
  valSplit: Schema.optional(finiteNumber.pipe(Schema.filter((x) => (x > 0 && x < 1) || "must be in (0, 1)"))),
  resize: Schema.optionalWith(Resize, { default: () => 28 }),
  /** Standardize with the training set's per-channel mean and std (the chapter's normalizer). */
  normalize: Schema.optionalWith(Schema.Boolean, { default: () => true })
})

export const Recipe = Schema.Struct({
  model: Schema.optionalWith(Model, { default: () => ({ filters: 5, dropout: 0.3 }) }),
  optimizer: Schema.optionalWith(Optimizer, { default: () => ({ name: "adam" as const, lr: 3e-4 }) }),
  scheduler: Schema.optionalWith(Scheduler, { default: () => ({ name: "none" as const }) }),
  epochs: Schema.optionalWith(positiveInt, { default: () => 10 }),
  batchSize: Schema.optionalWith(positiveInt, { default: () => 16 }),
  seed: Schema.optionalWith(nonNegativeInt, { default: () => 13 }),
  backend: Schema.optionalWith(Schema.Literal(...BackendNames), { default: () => "wasm" as const }),
  data: Schema.optionalWith(Data, { default: () => ({ resize: 28, normalize: true }) })
})
export type Recipe = typeof Recipe.Type
export type RecipeInput = typeof Recipe.Encoded

/** The numbers of a resize spec: a single number keeps the aspect ratio (shorter side). */
export const resizeOf = (r: Resize): number | readonly [number, number] => {
  if (typeof r === "number") return r
  if (typeof r !== "string") return r
  const [h, w] = r.split("x").map(Number)
  return w === undefined ? h : [h, w]
}

const valueAt = (input: unknown, path: ReadonlyArray<PropertyKey>): unknown => {
  let v: any = input
  for (const key of path) v = v === null || typeof v !== "object" ? undefined : v[key]
  return v
}

/** Decodes a recipe; a failure names the dotted field, the value and the rule. */
export const decode = (input: unknown, file: string): Effect.Effect<Recipe, ConfigError> =>
  Schema.decodeUnknown(Recipe)(input, { onExcessProperty: "error", errors: "first" }).pipe(
    Effect.mapError((error) => {
      const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
      const path = first?.path ?? []
      const value = valueAt(input, path)
      const shown = value === undefined ? "" : ` (got ${JSON.stringify(value)})`
      const reason = first?._tag === "Unexpected" ? "unknown field" : (first?.message ?? String(error))
      return new ConfigError({
        file,
        ...(path.length > 0 ? { field: path.map(String).join(".") } : {}),
        reason: `${oneLine(reason)}${shown}`
      })
    })
  )

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ")

/** Parses JSON or YAML text (by extension; YAML is a superset of JSON for anything else). */
export const parseText = (text: string, file: string): Effect.Effect<unknown, ConfigError> =>
  Effect.try({
    try: () => (file.endsWith(".json") ? (JSON.parse(text) as unknown) : (Yaml.parse(text) as unknown)),
    catch: (e) =>
      new ConfigError({ file, reason: `cannot parse: ${oneLine(String((e as Error).message ?? e))}` })
  })

/** Reads a recipe file (raw, not yet decoded: flags are merged first). */
export const readFile = (file: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(file).pipe(
      Effect.mapError(
        (e) =>
          new ConfigError({
            file,
            reason: e._tag === "SystemError" && e.reason === "NotFound" ? "no such file" : "cannot read"
          })
      )
    )
    const raw = yield* parseText(text, file)
    if (raw === null || typeof raw !== "object" || Array.isArray(raw))
      return yield* new ConfigError({ file, reason: "must be an object of recipe fields" })
    return raw as Record<string, unknown>
  })

type Json = { [key: string]: unknown }

/** Deep-merges flag overrides into a raw recipe; `undefined` leaves a field alone. */
export const merge = (base: Json, overrides: Json): Json => {
  const out: Json = { ...base }
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue
    const current = out[k]
    out[k] =
      v !== null &&
      typeof v === "object" &&
      !Array.isArray(v) &&
      current !== null &&
      typeof current === "object" &&
      !Array.isArray(current)
        ? merge(current as Json, v as Json)
        : v
  }
  return out
}

/** Drops the fields an override would leave `undefined`, recursively (for clean config.json). */
export const prune = (value: Json): Json => {
  const out: Json = {}
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue
    out[k] = v !== null && typeof v === "object" && !Array.isArray(v) ? prune(v as Json) : v
  }
  return out
}

/** Encodes a resolved recipe back to JSON (config.json). */
export const encode = (recipe: Recipe): RecipeInput => Schema.encodeSync(Recipe)(recipe)
