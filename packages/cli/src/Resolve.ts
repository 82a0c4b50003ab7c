/**
 * Flags + recipe file -> a validated `Recipe` and where each value came from. Flags win over the
 * file; choosing a different optimizer or scheduler by flag starts that section afresh (the
 * file's Adam betas mean nothing to SGD), keeping only the learning rate. Optimizer and
 * scheduler flags are the `Flags.hyperparameterFlags` table, derived from optim's schemas.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Option } from "effect"
import { COMMAND_LINE, type ConfigError } from "./Errors.js"
import * as Flags from "./Flags.js"
import * as Recipe from "./Recipe.js"

type Json = { [key: string]: unknown }

/** Parsed flag values by option key (absent flags are `Option.none()`). */
export type RecipeFlags = { readonly config: Option.Option<string> } & { readonly [key: string]: unknown }

const get = (flags: RecipeFlags, key: string): unknown => {
  const v = flags[key]
  return v !== undefined && Option.isOption(v)
    ? Option.getOrUndefined(v as Option.Option<unknown>)
    : undefined
}

/** The recipe's own (non-hyperparameter) flags: option key -> dotted recipe path. */
const RECIPE_PATHS: ReadonlyArray<readonly [key: string, path: string]> = [
  ["epochs", "epochs"],
  ["batchSize", "batchSize"],
  ["seed", "seed"],
  ["backend", "backend"],
  ["filters", "model.filters"],
  ["dropout", "model.dropout"],
  ["optimizer", "optimizer.name"],
  ["scheduler", "scheduler.name"],
  ["data", "data.train"],
  ["val", "data.val"],
  ["valSplit", "data.valSplit"],
  ["resize", "data.resize"],
  ["normalize", "data.normalize"],
  ["initFrom", "initFrom"]
]

/** Every flag that sets a recipe path: [option key, dotted path, --flag]. */
const allPaths = (): ReadonlyArray<readonly [string, string, string]> => [
  ...RECIPE_PATHS.map(([k, path]) => [k, path, `--${Flags.kebab(k)}`] as const),
  ...Flags.hyperparameterFlags.map((f) => [f.option, `${f.section}.${f.field.key}`, `--${f.flag}`] as const)
]

const setPath = (target: Json, path: string, value: unknown) => {
  const keys = path.split(".")
  let at = target
  for (const k of keys.slice(0, -1)) {
    if (at[k] === undefined) at[k] = {}
    at = at[k] as Json
  }
  at[keys[keys.length - 1]] = value
}

/** The overrides the flags make, as a partial raw recipe, and which flag set which path. */
export const overrides = (
  flags: RecipeFlags
): { readonly raw: Json; readonly origin: Map<string, string> } => {
  const raw: Json = {}
  const origin = new Map<string, string>()
  for (const [key, path, flag] of allPaths()) {
    let v = get(flags, key)
    if (v === undefined) continue
    if (key === "resize" && typeof v === "string" && /^\d+$/.test(v)) v = Number(v)
    setPath(raw, path, v)
    origin.set(path, flag)
  }
  return { raw, origin }
}

/** The first recipe flag given (as `--flag`), if any: a resumed run keeps its recipe. */
export const givenRecipeFlags = (flags: RecipeFlags): string | undefined => {
  if (Option.isOption(flags.config) && Option.isSome(flags.config)) return "--config"
  if (Option.isOption(flags.out) && Option.isSome(flags.out as Option.Option<unknown>)) return "--out"
  return allPaths().find(([key]) => key !== "epochs" && get(flags, key) !== undefined)?.[2]
}

const sameName = (tags: ReadonlyArray<string>, a: unknown, b: unknown) =>
  typeof a === "string" &&
  typeof b === "string" &&
  (Recipe.tagOf(tags, a) ?? a) === (Recipe.tagOf(tags, b) ?? b)

const section = (
  base: Json,
  over: Json | undefined,
  keep: ReadonlyArray<string>,
  tags: ReadonlyArray<string>
): Json | undefined => {
  if (over === undefined || Object.keys(over).length === 0) return undefined
  // A named optimizer replaces a module's (whose hyperparameters mean nothing to it) too.
  const other =
    base.module !== undefined || (base.name !== undefined && !sameName(tags, over.name, base.name))
  if (over.name !== undefined && other) {
    const kept: Json = {}
    for (const k of keep) if (base[k] !== undefined) kept[k] = base[k]
    return { ...kept, ...over }
  }
  return Recipe.merge(base, over)
}

const isPreset = (model: unknown): boolean => model !== null && typeof model === "object" && "preset" in model

/** CNN2's flags in the preset's words: `--filters` is `nFilters`, `--dropout` is `p`. */
const PRESET_FIELDS: Readonly<Record<string, string>> = { filters: "nFilters", dropout: "p" }

const presetFields = (model: Json): Json =>
  Object.fromEntries(Object.entries(model).map(([k, v]) => [PRESET_FIELDS[k] ?? k, v]))

/** Merges flag overrides into a raw recipe (see the module comment for the section rule). */
export const mergeRaw = (base: Json, over: Json): Json => {
  const merged = Recipe.merge(base, { ...over, optimizer: undefined, scheduler: undefined })
  const model = over.model as Json | undefined
  if (model !== undefined && isPreset(base.model))
    merged.model = Recipe.merge(base.model as Json, presetFields(model))
  const opt = section(
    (base.optimizer as Json | undefined) ?? {},
    over.optimizer as Json | undefined,
    ["lr"],
    Recipe.optimizerTags
  )
  const sch = section(
    (base.scheduler as Json | undefined) ?? {},
    over.scheduler as Json | undefined,
    [],
    Recipe.schedulerTags
  )
  if (opt !== undefined) merged.optimizer = opt.name === undefined ? { name: "Adam", ...opt } : opt
  if (sch !== undefined) merged.scheduler = sch.name === undefined ? { name: "none", ...sch } : sch
  return merged
}

/**
 * Reads the recipe file (if any), applies the flags, validates; data paths become absolute
 * (a run folder's config must work from any directory). The origin names, for each value a
 * flag set, that flag.
 */
export const resolve = (
  flags: RecipeFlags
): Effect.Effect<
  { readonly recipe: Recipe.Recipe; readonly origin: Recipe.Origin },
  ConfigError,
  FileSystem.FileSystem | Path.Path
> =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const file = Option.getOrUndefined(flags.config)
    const base = file === undefined ? {} : yield* Recipe.readFile(file)
    const over = overrides(flags)
    if (isPreset(base.model)) {
      for (const [flagKey, field] of Object.entries(PRESET_FIELDS)) {
        const flag = over.origin.get(`model.${flagKey}`)
        if (flag !== undefined) over.origin.set(`model.${field}`, flag)
      }
    }
    const origin: Recipe.Origin = {
      file: file ?? COMMAND_LINE,
      flags: over.origin,
      flagNames: new Map(allPaths().map(([, path, flag]) => [path, flag]))
    }
    const decoded = yield* Recipe.decode(mergeRaw(base, over.raw), origin)
    if (decoded.data.val !== undefined && decoded.data.valSplit !== undefined) {
      return yield* Recipe.errorAt(
        origin,
        "data.valSplit",
        `holds out validation data, but validation data is given (${origin.flags.get("data.val") ?? "data.val"}): choose one`,
        decoded.data.valSplit
      )
    }
    const abs = (x: string | undefined) => (x === undefined ? undefined : p.resolve(x))
    // A module optimizer's file is relative to the recipe file (or, without one, to here).
    const optimizer = Recipe.isModuleSection(decoded.optimizer)
      ? {
          ...decoded.optimizer,
          module: p.resolve(file === undefined ? "." : p.dirname(file), decoded.optimizer.module)
        }
      : decoded.optimizer
    const recipe: Recipe.Recipe = {
      ...decoded,
      ...(decoded.initFrom === undefined ? {} : { initFrom: abs(decoded.initFrom) }),
      optimizer,
      data: Recipe.prune({
        ...decoded.data,
        train: abs(decoded.data.train),
        val: abs(decoded.data.val)
      }) as Recipe.Recipe["data"]
    }
    return { recipe, origin }
  })
