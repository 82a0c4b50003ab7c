/**
 * A sweep file: base recipes plus a search space, expanded into trials (each a complete recipe).
 *
 * ```yaml
 * recipes:                    # relative to this file; each may have a grid of its own
 *   - chapter6-adam.json
 *   - { file: chapter6-sgd-cyclic.json, grid: { scheduler.maxLr: [0.005, 0.01] } }
 * epochs: 3                    # every trial's epochs (else each recipe's own)
 * metric: valAccuracy          # or valLoss
 * seed: 0                      # seed of the random draws (a trial trains with its recipe's seed)
 * grid: { optimizer.lr: [0.0003, 0.001, 0.003] }
 * random:
 *   trials: 4                  # draws per grid point
 *   space:
 *     optimizer.lr: { logUniform: [1.0e-4, 1.0e-1] }
 *     model.dropout: { choice: [0, 0.3, 0.5] }
 * stopping: { rule: median, minEpochs: 1, minTrials: 3 }
 * ```
 *
 * Keys of `grid` and `random.space` are dotted recipe paths; a whole section (`optimizer`,
 * `scheduler`) can be a value too, and is applied before the fields inside it. Trials are the
 * grid's cartesian product (recipes being one more axis, each with its own grid too), times the
 * random draws. Every trial
 * recipe is decoded and checked here, so a bad value fails the sweep before anything trains.
 */
import * as Path from "@effect/platform/Path"
import { Random } from "@stepwise/data"
import { Effect, Either, ParseResult, Schema } from "effect"
import { ConfigError } from "./Errors.js"
import * as Pipeline from "./Pipeline.js"
import * as Recipe from "./Recipe.js"
import { Metrics, positiveInt, Stopping } from "./SweepTerms.js"

const finite = Schema.Number.pipe(Schema.finite({ message: () => "must be a finite number" }))
const positive = finite.pipe(Schema.positive({ message: () => "must be positive" }))

/** A distribution of `random.space`. */
export const Distribution = Schema.Union(
  Schema.Struct({ logUniform: Schema.Tuple(positive, positive) }),
  Schema.Struct({ uniform: Schema.Tuple(finite, finite) }),
  Schema.Struct({ choice: Schema.Array(Schema.Unknown) })
)
export type Distribution = typeof Distribution.Type

export { type Metric, Metrics, Stopping } from "./SweepTerms.js"

const Grid = Schema.Record({ key: Schema.String, value: Schema.Array(Schema.Unknown) })

export const SweepFile = Schema.Struct({
  recipes: Schema.optional(
    Schema.Array(
      Schema.Union(Schema.String, Schema.Struct({ file: Schema.String, grid: Schema.optional(Grid) }))
    )
  ),
  recipe: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  epochs: Schema.optional(positiveInt),
  metric: Schema.optionalWith(Schema.Literal(...Metrics), { default: () => "valAccuracy" as const }),
  seed: Schema.optionalWith(Schema.Int.pipe(Schema.nonNegative()), { default: () => 0 }),
  grid: Schema.optional(Grid),
  random: Schema.optional(
    Schema.Struct({
      trials: positiveInt,
      space: Schema.Record({ key: Schema.String, value: Distribution })
    })
  ),
  stopping: Schema.optional(Stopping)
})
export type SweepFile = typeof SweepFile.Type

/** One trial: its id, the values it was given for the swept paths, and its full recipe. */
export const Trial = Schema.Struct({
  id: Schema.String,
  params: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  recipe: Schema.encodedSchema(Recipe.Recipe)
})
export type Trial = typeof Trial.Type

/** What a sweep runs: its trials, the metric and the stopping rule (saved as `sweep.json`). */
export const Plan = Schema.Struct({
  /** A fresh id per sweep: the workflows' idempotency keys (a resumed sweep keeps it). */
  id: Schema.String,
  source: Schema.String,
  metric: Schema.Literal(...Metrics),
  stopping: Schema.NullOr(Stopping),
  trials: Schema.Array(Trial)
})
export type Plan = typeof Plan.Type

type Json = { [key: string]: unknown }

const setPath = (target: Json, path: string, value: unknown) => {
  const keys = path.split(".")
  let at = target
  for (const k of keys.slice(0, -1)) {
    const next = at[k]
    at[k] = next !== null && typeof next === "object" && !Array.isArray(next) ? { ...(next as Json) } : {}
    at = at[k] as Json
  }
  at[keys[keys.length - 1]] = value
}

/** Applies swept values to a raw recipe, whole sections before the fields inside them. */
export const apply = (base: Json, params: Readonly<Record<string, unknown>>): Json => {
  const out: Json = structuredClone(base)
  const paths = Object.keys(params)
    .filter((k) => k !== "recipe")
    .sort((a, b) => a.split(".").length - b.split(".").length)
  for (const path of paths) setPath(out, path, params[path])
  return out
}

/** One draw of a distribution. */
export const draw = (d: Distribution, state: Random.State): readonly [unknown, Random.State] => {
  if ("choice" in d) {
    const [i, next] = Random.nextInt(state, d.choice.length)
    return [d.choice[i], next]
  }
  const [u, next] = Random.nextFloat(state)
  if ("uniform" in d) return [d.uniform[0] + u * (d.uniform[1] - d.uniform[0]), next]
  const [lo, hi] = d.logUniform
  // 6 significant digits: a drawn lr reads as 0.00123457, not 0.0012345678901234567
  return [Number(Math.exp(Math.log(lo) + u * (Math.log(hi) - Math.log(lo))).toPrecision(6)), next]
}

const product = (
  axes: ReadonlyArray<readonly [string, ReadonlyArray<unknown>]>
): ReadonlyArray<Record<string, unknown>> =>
  axes.reduce<ReadonlyArray<Record<string, unknown>>>(
    (points, [key, values]) => points.flatMap((p) => values.map((v) => ({ ...p, [key]: v }))),
    [{}]
  )

const schemaError = (file: string) => (error: ParseResult.ParseError) => {
  const [first] = ParseResult.ArrayFormatter.formatErrorSync(error)
  const field = first?.path.map(String).join(".")
  const reason =
    first?._tag === "Unexpected"
      ? "unknown field"
      : (first?.message ?? String(error)).replace(/\s*\n\s*/g, " ")
  return new ConfigError({ file, ...(field ? { field } : {}), reason, cause: error })
}

/** A trial id that sorts: `t01`, ..., `t12` (as wide as the count needs). */
const trialId = (i: number, n: number) => `t${String(i + 1).padStart(Math.max(2, String(n).length), "0")}`

/**
 * Reads and expands a sweep file into its trials; every failure names the sweep file (or the
 * recipe file) and the field. Data paths become absolute, as `train` makes them.
 */
export const load = (file: string) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const raw = yield* Recipe.readText(file)
    const spec = yield* Schema.decodeUnknown(SweepFile)(raw, {
      onExcessProperty: "error",
      errors: "first"
    }).pipe(Effect.mapError(schemaError(file)))
    if (spec.recipes !== undefined && spec.recipe !== undefined) {
      return yield* new ConfigError({ file, field: "recipe", reason: "give recipes or recipe, not both" })
    }
    const bases: Array<{
      readonly name: string
      readonly file: string
      readonly raw: Json
      /** This recipe's own grid, and where it is in the sweep file. */
      readonly grid: ReadonlyArray<readonly [string, ReadonlyArray<unknown>]>
      readonly at: string
    }> = []
    if (spec.recipes !== undefined) {
      if (spec.recipes.length === 0) {
        return yield* new ConfigError({
          file,
          field: "recipes",
          reason: "is empty: name at least one recipe file"
        })
      }
      for (const [i, r] of spec.recipes.entries()) {
        const name = typeof r === "string" ? r : r.file
        const path = p.resolve(p.dirname(file), name)
        bases.push({
          name: p.basename(name).replace(/\.(json|ya?ml)$/, ""),
          file: path,
          raw: yield* Recipe.readFile(path),
          grid: Object.entries(typeof r === "string" ? {} : (r.grid ?? {})),
          at: `recipes.${i}.grid`
        })
      }
    } else {
      bases.push({ name: "recipe", file, raw: (spec.recipe ?? {}) as Json, grid: [], at: "grid" })
    }
    const grid = Object.entries(spec.grid ?? {})
    for (const [at, entries] of [["grid", grid] as const, ...bases.map((b) => [b.at, b.grid] as const)]) {
      for (const [key, values] of entries) {
        if (values.length === 0) {
          return yield* new ConfigError({
            file,
            field: `${at}.${key}`,
            reason: "is empty: give at least one value"
          })
        }
      }
    }
    const space = Object.entries(spec.random?.space ?? {})
    for (const [key, d] of space) {
      if ("choice" in d && d.choice.length === 0) {
        return yield* new ConfigError({
          file,
          field: `random.space.${key}.choice`,
          reason: "is empty: give at least one value"
        })
      }
      if ("logUniform" in d && d.logUniform[0] > d.logUniform[1]) {
        return yield* new ConfigError({
          file,
          field: `random.space.${key}.logUniform`,
          reason: "must be [low, high]"
        })
      }
    }
    if (spec.random !== undefined && space.length === 0) {
      return yield* new ConfigError({
        file,
        field: "random.space",
        reason: "is empty: give at least one distribution"
      })
    }
    if (grid.length === 0 && space.length === 0 && bases.length < 2 && bases[0].grid.length === 0) {
      return yield* new ConfigError({
        file,
        reason: "the search space is empty: give grid values, random draws, or several recipes"
      })
    }
    const points = bases.flatMap((b) =>
      product([...(bases.length > 1 ? [["recipe", [b.name]] as const] : []), ...b.grid, ...grid])
    )
    const draws = spec.random?.trials ?? 1
    let state = yield* Random.make(spec.seed).pipe(
      Either.mapLeft((e) => new ConfigError({ file, field: "seed", reason: e.reason, cause: e }))
    )
    const params: Array<Record<string, unknown>> = []
    for (const point of points) {
      for (let d = 0; d < draws; d++) {
        const drawn: Record<string, unknown> = { ...point }
        for (const [key, dist] of space) {
          const [v, next] = draw(dist, state)
          drawn[key] = v
          state = next
        }
        params.push(drawn)
      }
    }
    const trials: Array<Trial> = []
    for (const [i, ps] of params.entries()) {
      const base = bases.length > 1 ? bases.find((b) => b.name === ps.recipe)! : bases[0]
      const id = trialId(i, params.length)
      const recipe = yield* trialRecipe(base, ps, spec, file)
      trials.push({ id, params: ps, recipe })
    }
    return { spec, trials: trials as ReadonlyArray<Trial> }
  })

/**
 * A trial's recipe, decoded and checked before any data is read. A failure in a swept field names
 * the sweep file's field (`grid.optimizer.lr`), otherwise the base recipe's own.
 */
const trialRecipe = (
  base: {
    readonly file: string
    readonly raw: Json
    readonly grid: ReadonlyArray<readonly [string, unknown]>
    readonly at: string
  },
  params: Record<string, unknown>,
  spec: SweepFile,
  file: string
) =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const raw = apply(spec.epochs === undefined ? base.raw : { ...base.raw, epochs: spec.epochs }, params)
    const swept = Object.keys(params).filter((k) => k !== "recipe")
    const where = (e: ConfigError): ConfigError => {
      const path = swept.find(
        (k) =>
          e.field !== undefined &&
          (e.field === k || e.field.startsWith(`${k}.`) || k.startsWith(`${e.field}.`))
      )
      if (path === undefined) return e
      const section = base.grid.some(([k]) => k === path)
        ? base.at
        : spec.grid?.[path] !== undefined
          ? "grid"
          : "random.space"
      return new ConfigError({
        file,
        field: `${section}.${path}`,
        reason: `${e.reason}${e.field !== path ? ` (at ${e.field})` : ""} with ${JSON.stringify(params[path])}`,
        cause: e
      })
    }
    const origin = Recipe.fromFile(base.file)
    const decoded = yield* Recipe.decode(raw, origin).pipe(Effect.mapError(where))
    yield* Pipeline.validateEarly(decoded, origin).pipe(
      Effect.mapError((e) => (e._tag === "ConfigError" ? where(e) : e))
    )
    const abs = (x: string | undefined) => (x === undefined ? undefined : p.resolve(x))
    const recipe: Recipe.Recipe = {
      ...decoded,
      data: Recipe.prune({
        ...decoded.data,
        train: abs(decoded.data.train),
        val: abs(decoded.data.val)
      }) as Recipe.Recipe["data"],
      scheduler: pinnedScheduler(decoded)
    }
    return Recipe.encode(recipe)
  })

/**
 * A trial trains one epoch at a time (each a durable step), so its run folder's recipe says 1,
 * 2, ... epochs as it goes. OneCycleLR without `totalSteps`/`epochs` would span each of those
 * instead of the whole trial; pinning `epochs` keeps it the schedule of an uninterrupted run.
 */
const pinnedScheduler = (recipe: Recipe.Recipe): Recipe.Section | undefined => {
  const s = recipe.scheduler
  if (s === undefined || Recipe.tagOf(Recipe.schedulerTags, s.name) !== "OneCycleLR") return s
  return s.totalSteps === undefined && s.epochs === undefined ? { ...s, epochs: recipe.epochs } : s
}

/** A trial's swept values as one short label: `recipe=adam optimizer.lr=0.001`. */
export const label = (params: Readonly<Record<string, unknown>>): string =>
  Object.entries(params)
    .map(([k, v]) => `${k}=${typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)}`)
    .join(" ")
