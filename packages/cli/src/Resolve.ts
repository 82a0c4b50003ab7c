/**
 * Flags + recipe file -> a validated `Recipe`. Flags win over the file; choosing a different
 * optimizer or scheduler by flag starts that section afresh (the file's Adam betas mean nothing
 * to SGD), keeping only the learning rate.
 */
import { Effect, Option } from "effect"
import type { ConfigError } from "./Errors.js"
import * as Recipe from "./Recipe.js"

type Json = { [key: string]: unknown }

const o = <A>(x: Option.Option<A>): A | undefined => Option.getOrUndefined(x)

export interface RecipeFlags {
  readonly config: Option.Option<string>
  readonly epochs?: Option.Option<number>
  readonly batchSize?: Option.Option<number>
  readonly seed?: Option.Option<number>
  readonly backend?: Option.Option<string>
  readonly filters?: Option.Option<number>
  readonly dropout?: Option.Option<number>
  readonly optimizer?: Option.Option<string>
  readonly lr?: Option.Option<number>
  readonly momentum?: Option.Option<number>
  readonly dampening?: Option.Option<number>
  readonly nesterov?: Option.Option<boolean>
  readonly weightDecay?: Option.Option<number>
  readonly beta1?: Option.Option<number>
  readonly beta2?: Option.Option<number>
  readonly eps?: Option.Option<number>
  readonly amsgrad?: Option.Option<boolean>
  readonly alpha?: Option.Option<number>
  readonly centered?: Option.Option<boolean>
  readonly lrDecay?: Option.Option<number>
  readonly initialAccumulatorValue?: Option.Option<number>
  readonly scheduler?: Option.Option<string>
  readonly data?: Option.Option<string>
  readonly val?: Option.Option<string>
  readonly valSplit?: Option.Option<number>
  readonly resize?: Option.Option<string>
  readonly normalize?: Option.Option<boolean>
  readonly [schedulerParam: string]: unknown
}

/** Optimizer hyperparameters that flags may set (the Recipe's optimizer fields minus `name` and `lr`). */
export const OPTIMIZER_FIELDS = Object.keys(Recipe.Optimizer.fields).filter((k) => k !== "name" && k !== "lr")

/** Scheduler parameters that flags may set (the Recipe's scheduler fields minus `name`). */
export const SCHEDULER_FIELDS = Object.keys(Recipe.Scheduler.fields).filter((k) => k !== "name")

const pick = (flags: RecipeFlags, keys: ReadonlyArray<string>): Json => {
  const out: Json = {}
  for (const k of keys) {
    const v = flags[k]
    if (v !== undefined && Option.isOption(v)) {
      const x = o(v as Option.Option<unknown>)
      if (x !== undefined) out[k] = x
    }
  }
  return out
}

/** The overrides the flags make, as a partial raw recipe. */
export const overrides = (flags: RecipeFlags): Json => {
  const get = <A>(x: Option.Option<A> | undefined) => (x === undefined ? undefined : o(x))
  const resize = get(flags.resize)
  return Recipe.prune({
    epochs: get(flags.epochs),
    batchSize: get(flags.batchSize),
    seed: get(flags.seed),
    backend: get(flags.backend),
    model: { filters: get(flags.filters), dropout: get(flags.dropout) },
    optimizer: { name: get(flags.optimizer), lr: get(flags.lr), ...pick(flags, OPTIMIZER_FIELDS) },
    scheduler: { name: get(flags.scheduler), ...pick(flags, SCHEDULER_FIELDS) },
    data: {
      train: get(flags.data),
      val: get(flags.val),
      valSplit: get(flags.valSplit),
      resize: resize === undefined ? undefined : /^\d+$/.test(resize) ? Number(resize) : resize,
      normalize: get(flags.normalize)
    }
  })
}

const section = (base: Json, over: Json | undefined, keep: ReadonlyArray<string>): Json | undefined => {
  if (over === undefined || Object.keys(over).length === 0) return undefined
  if (over.name !== undefined && base.name !== undefined && over.name !== base.name) {
    const kept: Json = {}
    for (const k of keep) if (base[k] !== undefined) kept[k] = base[k]
    return { ...kept, ...over }
  }
  return Recipe.merge(base, over)
}

/** Merges flag overrides into a raw recipe (see the module comment for the section rule). */
export const mergeRaw = (base: Json, over: Json): Json => {
  const merged = Recipe.merge(base, { ...over, optimizer: undefined, scheduler: undefined })
  const opt = section((base.optimizer as Json | undefined) ?? {}, over.optimizer as Json | undefined, ["lr"])
  const sch = section((base.scheduler as Json | undefined) ?? {}, over.scheduler as Json | undefined, [])
  if (opt !== undefined) merged.optimizer = opt
  if (sch !== undefined) merged.scheduler = sch
  // An optimizer named only by flag needs an lr; PyTorch's SGD has no default, ours is Karpathy's.
  const optimizer = merged.optimizer as Json | undefined
  if (optimizer !== undefined && optimizer.lr === undefined) merged.optimizer = { ...optimizer, lr: 3e-4 }
  if (optimizer !== undefined && optimizer.name === undefined)
    merged.optimizer = { name: "adam", ...(merged.optimizer as Json) }
  const scheduler = merged.scheduler as Json | undefined
  if (scheduler !== undefined && scheduler.name === undefined)
    merged.scheduler = { name: "none", ...scheduler }
  return merged
}

/** Reads the recipe file (if any), applies the flags, validates. */
export const resolve = (
  flags: RecipeFlags
): Effect.Effect<Recipe.Recipe, ConfigError, import("@effect/platform").FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const file = o(flags.config)
    const base = file === undefined ? {} : yield* Recipe.readFile(file)
    const raw = mergeRaw(base, overrides(flags))
    return yield* Recipe.decode(raw, file ?? "command line")
  })
