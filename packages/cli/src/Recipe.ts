/**
 * A training recipe: everything `stepwise train` needs, as one JSON/YAML document validated by
 * Schema. Command-line flags override it field by field. The resolved recipe is what a run
 * folder's `config.json` holds, so `--resume` and `eval` can rebuild the same model and data.
 *
 * The `optimizer` and `scheduler` sections are not declared here: they are a `name` plus the
 * fields of @stepwise/optim's config schema of that name (PyTorch's arguments, camelCase), and
 * `optimizerOf` / `schedulerOf` decode them with optim's schemas and rules, once. The tables
 * the flags and help are built from (`optimizerFields`, `schedulerFields`) are derived from the
 * same schemas.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { ModelSpec } from "@stepwise/core"
import {
  type Fields,
  type InvalidHyperparameter,
  type Optimizer,
  Optimizers,
  type Scheduler,
  Schedulers
} from "@stepwise/optim"
import { Effect, Either, ParseResult, Schema } from "effect"
import * as Yaml from "yaml"
import * as CustomOptimizer from "./CustomOptimizer.js"
import { COMMAND_LINE, ConfigError, type OptimizerModuleError } from "./Errors.js"

/** Karpathy's constant, the chapter's Adam lr: the lr of a recipe or flag that names none. */
export const DEFAULT_LR = 3e-4

const finiteNumber = Schema.Number.pipe(Schema.finite({ message: () => "must be a finite number" }))
const unitOpen = finiteNumber.pipe(Schema.filter((x) => (x >= 0 && x < 1) || "must be in [0, 1)"))
const positiveInt = Schema.Int.pipe(Schema.positive({ message: () => "must be a positive integer" }))
const nonNegativeInt = Schema.Int.pipe(
  Schema.nonNegative({ message: () => "must be a non-negative integer" })
)

export const BackendNames = ["wasm", "cpu", "tensorflow"] as const
export type BackendName = (typeof BackendNames)[number]

/** CNN2 (the chapter's model) by its two flags: `filters` is n_feature, `dropout` is p. */
export const Cnn2Flags = Schema.Struct({
  filters: Schema.optionalWith(positiveInt, { default: () => 5 }),
  dropout: Schema.optionalWith(unitOpen, { default: () => 0.3 })
})
export type Cnn2Flags = typeof Cnn2Flags.Type

/**
 * A recipe's `model`: CNN2 by its flags (`{ "filters": 5, "dropout": 0.3 }`, the default), or
 * core's model spec: `{ "layers": [...] }` or `{ "preset": "CNN2", "nFilters": 5, "p": 0.3 }`.
 * A spec is checked by `ModelSpec.decode` first (see `decode`), so its errors name the layer.
 */
export type Model = Cnn2Flags | ModelSpec.Model
export type ModelEncoded = typeof Cnn2Flags.Encoded | typeof ModelSpec.Model.Encoded
// Annotated, so modules that embed the recipe's schema can name its type. The specs come first:
// they are told apart by a required key, whereas CNN2's flags (all defaulted) would take any
// object when excess keys are allowed (config.json is read that way).
export const Model: Schema.Schema<Model, ModelEncoded> = Schema.Union(
  ModelSpec.Layers,
  ModelSpec.Cnn2Preset,
  Cnn2Flags
)

/** Whether a raw or decoded `model` value is one of core's specs (not the CNN2 flags form). */
export const isSpec = (model: unknown): model is ModelSpec.Model =>
  model !== null && typeof model === "object" && ("layers" in model || "preset" in model)

/**
 * An optimizer or scheduler section: `name` (PyTorch's class name, any case: `SGD`, `sgd`,
 * `CyclicLR`, `cyclic`) and that class's arguments, checked by `optimizerOf` / `schedulerOf`.
 */
export const Section = Schema.Struct(
  { name: Schema.String },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type Section = typeof Section.Type

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
  /** ImageFolder root of the validation set; absent: the bundled test set (bundled data only). */
  val: Schema.optional(Schema.String),
  /** Hold out this fraction of the training set instead of a validation folder. */
  valSplit: Schema.optional(finiteNumber.pipe(Schema.filter((x) => (x > 0 && x < 1) || "must be in (0, 1)"))),
  resize: Schema.optionalWith(Resize, { default: () => 28 }),
  /** Standardize with the training set's per-channel mean and std (the chapter's normalizer). */
  normalize: Schema.optionalWith(Schema.Boolean, { default: () => true })
})

/**
 * An optimizer of the user's own: `module` (an ES module file, relative to the recipe file)
 * exports a `CustomOptimizer.Definition` under `export` (absent: the default export); the other
 * fields are its hyperparameters, decoded by its schema (see `CustomOptimizer`).
 */
export const ModuleSection = Schema.Struct(
  { module: Schema.String, export: Schema.optional(Schema.String) },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)
export type ModuleSection = typeof ModuleSection.Type

/** A built-in optimizer by name, or one from a module (tried first: it is told apart by `module`). */
export const OptimizerSection = Schema.Union(ModuleSection, Section)
export type OptimizerSection = typeof OptimizerSection.Type

export const isModuleSection = (s: OptimizerSection): s is ModuleSection =>
  typeof (s as { module?: unknown }).module === "string"

export const Recipe = Schema.Struct({
  model: Schema.optionalWith(Model, { default: () => ({ filters: 5, dropout: 0.3 }) }),
  optimizer: Schema.optionalWith(OptimizerSection, { default: () => ({ name: "Adam", lr: DEFAULT_LR }) }),
  /** Absent (or `name: none`): a constant learning rate. */
  scheduler: Schema.optional(Section),
  epochs: Schema.optionalWith(positiveInt, { default: () => 10 }),
  batchSize: Schema.optionalWith(positiveInt, { default: () => 16 }),
  seed: Schema.optionalWith(nonNegativeInt, { default: () => 13 }),
  backend: Schema.optionalWith(Schema.Literal(...BackendNames), { default: () => "wasm" as const }),
  data: Schema.optionalWith(Data, { default: () => ({ resize: 28, normalize: true }) }),
  /** A PyTorch `state_dict` (safetensors) to start from instead of the seed's initialisation. */
  initFrom: Schema.optional(Schema.String)
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

// ------------------------------------------------------------- optim's schemas, as tables

/** What a flag needs to know about one hyperparameter (derived from optim's schemas). */
export interface Field {
  readonly key: string
  readonly kind: "number" | "boolean" | "choice" | "numbers"
  /** The literal values of a `choice`, over every config that has the field. */
  readonly choices: ReadonlyArray<string>
  /** The configs (tags) that take it, in optim's order. */
  readonly tags: ReadonlyArray<string>
  /** Per tag: its default (absent: required, or no default). */
  readonly defaults: { readonly [tag: string]: unknown }
  readonly description: string | undefined
}

/**
 * optim's `fieldsOf` of every config, merged by field name. Composite schedulers (SequentialLR,
 * ChainedScheduler hold other configs) are left out: the CLI offers the single schedulers.
 */
const tableOf = (
  tags: ReadonlyArray<string>,
  fieldsOf: (tag: string) => ReadonlyArray<Fields.FieldInfo>
): { readonly tags: ReadonlyArray<string>; readonly fields: ReadonlyArray<Field> } => {
  const leaves = tags.filter((tag) =>
    fieldsOf(tag).every((f) => f.type !== "config" && f.element !== "config")
  )
  const byKey = new Map<
    string,
    {
      key: string
      kind: Field["kind"]
      choices: Array<string>
      tags: Array<string>
      defaults: Record<string, unknown>
      description: string | undefined
    }
  >()
  for (const tag of leaves) {
    for (const f of fieldsOf(tag)) {
      const kind: Field["kind"] =
        f.type === "boolean"
          ? "boolean"
          : f.type === "literal"
            ? "choice"
            : f.type === "array"
              ? "numbers"
              : "number"
      const entry = byKey.get(f.name) ?? {
        key: f.name,
        kind,
        choices: [],
        tags: [],
        defaults: {},
        // optim falls back to the field's name when it has no description
        description: f.description === f.name ? undefined : f.description
      }
      entry.tags.push(tag)
      for (const c of f.choices ?? []) if (!entry.choices.includes(String(c))) entry.choices.push(String(c))
      if (f.default !== undefined) entry.defaults[tag] = f.default
      byKey.set(f.name, entry)
    }
  }
  return { tags: leaves, fields: [...byKey.values()] }
}

const optimizerTable = tableOf(Optimizers.tags, (tag) => Optimizers.fieldsOf(tag as Optimizers.Tag))
const schedulerTable = tableOf(Schedulers.tags, (tag) => Schedulers.fieldsOf(tag as Schedulers.Tag))

/** optim's optimizer tags (`SGD`, `Adam`, ...) and scheduler tags (`StepLR`, ...), in its order. */
export const optimizerTags: ReadonlyArray<string> = optimizerTable.tags
export const schedulerTags: ReadonlyArray<string> = schedulerTable.tags

/** The hyperparameters of every optimizer / scheduler, one entry a field name. */
export const optimizerFields: ReadonlyArray<Field> = optimizerTable.fields
export const schedulerFields: ReadonlyArray<Field> = schedulerTable.fields

const normalize = (name: string) => name.toLowerCase().replace(/[^a-z0-9]/g, "")

/**
 * A name as a user writes it -> optim's tag: PyTorch's class name in any case, with or without
 * punctuation, and for schedulers with or without the `LR` ending (`cyclic`, `one-cycle`).
 */
export const tagOf = (tags: ReadonlyArray<string>, name: string): string | undefined => {
  const n = normalize(name)
  return tags.find((t) => normalize(t) === n || normalize(t).replace(/lr$/, "") === n)
}

// -------------------------------------------------------------- decoding the two sections

/**
 * Where a recipe's values came from, so an error names what the user wrote: the recipe file,
 * or (for the dotted paths in `flags`) the flag that set it.
 */
export interface Origin {
  readonly file: string
  /** The paths flags set, with their flag. */
  readonly flags: ReadonlyMap<string, string>
  /** Every path a flag can set (to name a missing value in flag terms). */
  readonly flagNames?: ReadonlyMap<string, string>
}

export const fromFile = (file: string): Origin => ({ file, flags: new Map() })

/** A ConfigError for the recipe path `path` (`optimizer.lr`), naming its flag when one set it. */
export const errorAt = (origin: Origin, path: string, reason: string, value?: unknown, cause?: unknown) => {
  const set = origin.flags.get(path)
  const flag = set ?? (origin.file === COMMAND_LINE ? origin.flagNames?.get(path) : undefined)
  const shown = value === undefined ? undefined : typeof value === "string" ? value : JSON.stringify(value)
  return flag !== undefined
    ? new ConfigError({
        file: COMMAND_LINE,
        field: shown === undefined || set === undefined ? flag : `${flag} ${shown}`,
        reason,
        ...(cause === undefined ? {} : { cause })
      })
    : new ConfigError({
        file: origin.file,
        field: path,
        reason: shown === undefined ? reason : `${reason} (got ${shown})`,
        ...(cause === undefined ? {} : { cause })
      })
}

/** What a run knows once its data is loaded, for the CLI's conveniences. */
export interface RunShape {
  readonly batchesPerEpoch: number
  readonly epochs: number
}

/**
 * The CLI's conveniences, resolved before optim decodes a section (and nowhere else): an
 * optimizer without `lr` gets `DEFAULT_LR`; CyclicLR step sizes may be `"epoch"` (one epoch of
 * mini-batches, the chapter's `len(train_loader)`); OneCycleLR without `totalSteps` or `epochs`
 * spans the run.
 */
export const conveniences = (
  tag: string,
  fields: { readonly [key: string]: unknown },
  run: RunShape
): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...fields }
  if (optimizerTags.includes(tag) && out.lr === undefined) out.lr = DEFAULT_LR
  if (tag === "CyclicLR") {
    for (const k of ["stepSizeUp", "stepSizeDown"]) if (out[k] === "epoch") out[k] = run.batchesPerEpoch
  }
  if (tag === "OneCycleLR" && out.totalSteps === undefined && out.epochs === undefined)
    out.epochs = run.epochs
  return out
}

const decodeSection = (
  section: "optimizer" | "scheduler",
  value: Section,
  tags: ReadonlyArray<string>,
  union: Schema.Schema<any, any>,
  origin: Origin,
  run: RunShape
) =>
  Effect.gen(function* () {
    const { name, ...fields } = value
    const tag = tagOf(tags, name)
    if (tag === undefined) {
      return yield* errorAt(origin, `${section}.name`, `expected one of ${tags.join(", ")} (any case)`, name)
    }
    const input = { _tag: tag, ...conveniences(tag, fields, run) }
    return yield* Schema.decodeUnknown(union)(input, { onExcessProperty: "error", errors: "first" }).pipe(
      Effect.mapError((error) => {
        const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
        const key = first?.path[0] === undefined ? undefined : String(first.path[0])
        const path = key === undefined ? section : `${section}.${key}`
        if (first?._tag === "Unexpected")
          return errorAt(origin, path, `does not apply to ${tag}`, undefined, error)
        return errorAt(
          origin,
          path,
          oneLine(first?.message ?? String(error)),
          key === undefined ? undefined : input[key as keyof typeof input],
          error
        )
      })
    )
  })

/** optim's rule violations (PyTorch's constructor checks), named where the user wrote the value. */
const ruleError =
  (section: "optimizer" | "scheduler", config: { readonly [k: string]: unknown }, origin: Origin) =>
  (e: InvalidHyperparameter.InvalidHyperparameter) => {
    const key = e.field.split(".")[0]
    return errorAt(origin, `${section}.${key}`, e.reason, key in config ? config[key] : e.value, e)
  }

/** What `optimizerOf` decoded: a built-in's config (optim's), or a module's. */
export type OptimizerSectionConfig = Optimizers.OptimizerConfig | CustomOptimizer.Config

/**
 * The recipe's optimizer: a built-in decoded by optim's `OptimizerConfig` (PyTorch's defaults
 * filled in), checked by its rules, and built; or a module's, decoded by its own schema.
 */
export const optimizerOf = (
  section: OptimizerSection,
  origin: Origin
): Effect.Effect<
  { readonly config: OptimizerSectionConfig; readonly def: Optimizer.OptimizerDef },
  ConfigError | OptimizerModuleError
> =>
  isModuleSection(section)
    ? moduleOptimizerOf(section, origin)
    : Effect.gen(function* () {
        const config: Optimizers.OptimizerConfig = yield* decodeSection(
          "optimizer",
          section as Section,
          optimizerTags,
          Optimizers.OptimizerConfig,
          origin,
          { batchesPerEpoch: 1, epochs: 1 }
        )
        const def = yield* Optimizers.fromConfig(config).pipe(
          Effect.mapError(ruleError("optimizer", config, origin))
        )
        return { config, def }
      })

/**
 * A module's optimizer: loaded, its hyperparameters (the section less `module` and `export`)
 * decoded by its schema, and built. A bad value is named where the user wrote it, with the
 * module whose schema refused it.
 */
const moduleOptimizerOf = (section: ModuleSection, origin: Origin) =>
  Effect.gen(function* () {
    const { module: file, export: exportName = "default", ...fields } = section
    const def = yield* CustomOptimizer.load(file, exportName)
    const by = `${def.name}'s schema in ${file}`
    const hyperparameters: unknown = yield* Schema.decodeUnknown(def.schema)(fields, {
      onExcessProperty: "error",
      errors: "first"
    }).pipe(
      Effect.mapError((error) => {
        const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
        const key = first?.path[0] === undefined ? undefined : String(first.path[0])
        const path = key === undefined ? "optimizer" : `optimizer.${key}`
        if (first?._tag === "Unexpected")
          return errorAt(origin, path, `does not apply to ${def.name} (${file})`, undefined, error)
        return errorAt(
          origin,
          path,
          `${oneLine(first?.message ?? String(error))} (${by})`,
          key === undefined ? undefined : fields[key],
          error
        )
      })
    )
    const made = yield* CustomOptimizer.build(def, hyperparameters, file, exportName)
    const config: CustomOptimizer.Config = {
      _tag: "module",
      name: def.name,
      module: file,
      export: exportName,
      hyperparameters
    }
    return { config, def: made }
  })

/**
 * The recipe's scheduler (undefined for none): decoded by optim's `SchedulerConfig` after the
 * CLI's conveniences, checked by its rules and against the optimizer, and built.
 */
export const schedulerOf = (
  section: Section | undefined,
  origin: Origin,
  run: RunShape,
  optimizerDefaults: Optimizer.Hyper
): Effect.Effect<Scheduler.Any | undefined, ConfigError> =>
  Effect.gen(function* () {
    if (section === undefined || normalize(section.name) === "none") {
      const given = section === undefined ? undefined : Object.keys(section).find((k) => k !== "name")
      if (given !== undefined) {
        return yield* errorAt(origin, `scheduler.${given}`, "given, but no scheduler is chosen")
      }
      return undefined
    }
    const config: Schedulers.SchedulerConfig = yield* decodeSection(
      "scheduler",
      section,
      schedulerTags,
      Schedulers.SchedulerConfig,
      origin,
      run
    )
    const onRule = ruleError("scheduler", config as unknown as Record<string, unknown>, origin)
    yield* Schedulers.checkCompatible(config, optimizerDefaults).pipe(Effect.mapError(onRule))
    return yield* Schedulers.fromConfig(config, { stepsPerEpoch: run.batchesPerEpoch }).pipe(
      Effect.mapError(onRule)
    )
  })

// ----------------------------------------------------------------------------- the recipe

const valueAt = (input: unknown, path: ReadonlyArray<PropertyKey>): unknown => {
  let v: any = input
  for (const key of path) v = v === null || typeof v !== "object" ? undefined : v[key]
  return v
}

/**
 * core's `ModelSpecError` in the recipe's terms: the dotted path of the offending field
 * (`model.layers[3].kernelSize`) and, in the reason, the layer's name and type.
 */
export const modelSpecError = (origin: Origin, e: ModelSpec.ModelSpecError): ConfigError => {
  const field =
    e.path === "" && e.field === "model" ? "model" : `model.${e.path === "" ? "" : `${e.path}.`}${e.field}`
  // An unknown type makes the union list every alternative; say it in words.
  const unknownType = e.field === "type" ? /^Expected "Conv2d" \|.*, actual (.+)$/.exec(e.reason) : null
  const unexpected = /^is unexpected, expected: (.*)$/.exec(e.reason)
  const reason =
    unknownType !== null
      ? `unknown layer type ${unknownType[1]} (one of ${ModelSpec.layerTypes.join(", ")})`
      : unexpected !== null
        ? `unknown field (it takes ${unexpected[1].replace(/"/g, "").replace(/ \| /g, ", ")})`
        : oneLine(e.reason)
  const sep = e.layer.indexOf(": ")
  const layer =
    sep < 0 || unknownType !== null ? "" : ` (layer ${e.layer.slice(0, sep)}, a ${e.layer.slice(sep + 2)})`
  return errorAt(origin, field, `${reason}${layer}`, undefined, e)
}

/**
 * A model spec is checked by core's own decoder before the recipe's schema sees it, so a bad
 * layer is named by its index, name and field rather than by the union's first alternative.
 * CNN2's flags (`--filters`, `--dropout`) do not apply to a list of layers.
 */
const checkModel = (input: unknown, o: Origin): Effect.Effect<void, ConfigError> => {
  const model = valueAt(input, ["model"])
  if (model === undefined) return Effect.void
  if (!isSpec(model))
    // CNN2's flags on their own, so a typo is named as such and not as a missing `layers`.
    return Schema.decodeUnknown(Cnn2Flags)(model, { onExcessProperty: "error", errors: "first" }).pipe(
      Effect.mapError((error) => {
        const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
        const key = first?.path[0]
        const reason =
          first?._tag === "Unexpected"
            ? `unknown field (CNN2 takes filters and dropout; a model of your own is { "layers": [...] })`
            : oneLine(first?.message ?? String(error))
        return key === undefined
          ? errorAt(
              o,
              "model",
              'must be an object: { "filters", "dropout" } (CNN2) or { "layers": [...] }',
              model,
              error
            )
          : errorAt(o, `model.${String(key)}`, reason, valueAt(model, [key]), error)
      }),
      Effect.asVoid
    )
  const m = model as unknown as Record<string, unknown>
  const cnn2Only = ["filters", "dropout"].find((k) => k in m)
  if (cnn2Only !== undefined)
    return Effect.fail(
      errorAt(
        o,
        `model.${cnn2Only}`,
        "sets CNN2's flags, but the recipe's model is a list of layers (edit its layers instead)",
        m[cnn2Only]
      )
    )
  const decoded = ModelSpec.decode(model)
  return Either.isLeft(decoded) ? Effect.fail(modelSpecError(o, decoded.left)) : Effect.void
}

/** Decodes a recipe; a failure names the dotted field (or its flag), the value and the rule. */
export const decode = (input: unknown, origin: Origin | string): Effect.Effect<Recipe, ConfigError> => {
  const o = typeof origin === "string" ? fromFile(origin) : origin
  return checkModel(input, o).pipe(
    Effect.zipRight(Schema.decodeUnknown(Recipe)(input, { onExcessProperty: "error", errors: "first" })),
    Effect.mapError((error) => (error instanceof ConfigError ? error : recipeError(input, o, error)))
  )
}

const recipeError = (input: unknown, o: Origin, error: ParseResult.ParseError): ConfigError => {
  {
    const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
    const path = first?.path ?? []
    const reason = first?._tag === "Unexpected" ? "unknown field" : oneLine(first?.message ?? String(error))
    if (path.length === 0) return new ConfigError({ file: o.file, reason, cause: error })
    return errorAt(o, path.map(String).join("."), reason, valueAt(input, path), error)
  }
}

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ")

/**
 * Parses JSON or YAML text (by extension; YAML is a superset of JSON for anything else). YAML
 * aliases are refused: a recipe is plain data, and an alias can make it circular.
 */
export const parseText = (text: string, file: string): Effect.Effect<unknown, ConfigError> =>
  Effect.try({
    try: () => {
      if (file.endsWith(".json")) return JSON.parse(text) as unknown
      const doc = Yaml.parseDocument(text)
      let alias: string | undefined
      Yaml.visit(doc, {
        Alias: (_, node) => {
          alias ??= node.source
          return Yaml.visit.BREAK
        }
      })
      if (alias !== undefined) throw new Error(`uses the YAML alias *${alias}; write the values out instead`)
      if (doc.errors.length > 0) throw doc.errors[0]
      return doc.toJS() as unknown
    },
    catch: (e) =>
      new ConfigError({
        file,
        reason: `cannot parse: ${oneLine(String((e as Error).message ?? e))}`,
        cause: e
      })
  })

/** A JSON or YAML file's parsed text; a missing or unreadable file is a `ConfigError` naming it. */
export const readText = (file: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(file).pipe(
      Effect.mapError(
        (e) =>
          new ConfigError({
            file,
            reason: e._tag === "SystemError" && e.reason === "NotFound" ? "no such file" : "cannot read",
            cause: e
          })
      )
    )
    return yield* parseText(text, file)
  })

/** Reads a recipe file (raw, not yet decoded: flags are merged first). */
export const readFile = (file: string) =>
  Effect.gen(function* () {
    const raw = yield* readText(file)
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
