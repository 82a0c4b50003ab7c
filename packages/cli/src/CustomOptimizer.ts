/**
 * Optimizers of the user's own, named by a recipe:
 *
 *   "optimizer": { "module": "./lion.mjs", "export": "lion", "lr": 1e-4, "betas": [0.9, 0.99] }
 *
 * The module (an ES module file; a relative path is relative to the recipe file) exports a
 * `Definition`: the same two pieces every built-in optimizer of @stepwise/optim is made of, a
 * config schema (`SGD.Config`) and a function from a decoded config to optim's `OptimizerDef`
 * (`SGD.optimizer`). That `OptimizerDef` is what `@stepwise/optim/testing`'s laws take, so the
 * optimizer a user property-tested is the one `stepwise train` runs. The recipe's other fields
 * are the hyperparameters, decoded by the module's schema (unknown fields are errors).
 */
import { pathToFileURL } from "node:url"
import type { Optimizer } from "@stepwise/optim"
import { Effect, Schema } from "effect"
import { OptimizerModuleError } from "./Errors.js"

/** What a module exports for `stepwise train`. */
export interface Definition<C = any> {
  /** The optimizer's name, for messages and the run's header. */
  readonly name: string
  /** Its hyperparameters: decodes the recipe's section (without `module`, `export`), filling defaults. */
  readonly schema: Schema.Schema<C, any>
  /** The optimizer for a decoded config, on any numeric backend (optim's `OptimizerDef`). */
  readonly make: (config: C) => Optimizer.OptimizerDef
}

/** The decoded section of a module optimizer (what `Recipe.optimizerOf` returns as `config`). */
export interface Config {
  readonly _tag: "module"
  readonly name: string
  readonly module: string
  readonly export: string
  /** The hyperparameters as the module's schema decoded them. */
  readonly hyperparameters: unknown
}

const describe = (v: unknown): string =>
  v === null ? "null" : Array.isArray(v) ? "an array" : typeof v === "object" ? "an object" : `a ${typeof v}`

/** Checks an export's shape: `{ name: string, schema: Schema, make: function }`. */
export const definitionOf = (value: unknown): Definition | string => {
  if (value === null || typeof value !== "object") return `is ${describe(value)}, not { name, schema, make }`
  const d = value as { name?: unknown; schema?: unknown; make?: unknown }
  if (typeof d.name !== "string" || d.name.length === 0) return "has no `name` (a non-empty string)"
  if (!Schema.isSchema(d.schema)) return "has no `schema` (an effect Schema of its hyperparameters)"
  if (typeof d.make !== "function") return "has no `make` (config => optim's OptimizerDef)"
  return d as Definition
}

/**
 * Imports `file` (absolute) and takes its export `exportName` ("default": the default export).
 * Node caches the module, so `train`, `eval` and `--resume` in one process load it once.
 */
export const load = (file: string, exportName: string): Effect.Effect<Definition, OptimizerModuleError> =>
  Effect.gen(function* () {
    const fail = (reason: string, cause?: unknown) =>
      new OptimizerModuleError({
        module: file,
        export: exportName,
        reason,
        ...(cause === undefined ? {} : { cause })
      })
    const ns = yield* Effect.tryPromise({
      try: () => import(pathToFileURL(file).href) as Promise<Record<string, unknown>>,
      catch: (e) => {
        const code = (e as { code?: unknown } | null)?.code
        const message = String((e as Error | null)?.message ?? e).split("\n")[0]
        // (a package the module imports that is missing is the same code, naming the module as importer)
        return code === "ERR_MODULE_NOT_FOUND" && message.startsWith(`Cannot find module '${file}'`)
          ? fail("no such file", e)
          : fail(`cannot load: ${message}`, e)
      }
    })
    if (!(exportName in ns)) {
      const names = Object.keys(ns)
      return yield* fail(
        `no export "${exportName}" (it exports ${names.length === 0 ? "nothing" : names.join(", ")})`
      )
    }
    const def = definitionOf(ns[exportName])
    if (typeof def === "string") return yield* fail(def)
    return def
  })

/**
 * `make(config)` instantiated on a backend, checked to be an optimizer (a module's mistake
 * should read as one line naming it, not as a TypeError in the middle of training).
 */
export const build = (
  def: Definition,
  config: unknown,
  file: string,
  exportName: string
): Effect.Effect<Optimizer.OptimizerDef, OptimizerModuleError> =>
  Effect.try({
    try: () => def.make(config),
    catch: (cause) =>
      new OptimizerModuleError({
        module: file,
        export: exportName,
        reason: `make threw: ${String((cause as Error | null)?.message ?? cause).split("\n")[0]}`,
        cause
      })
  }).pipe(
    Effect.filterOrFail(
      (made): made is Optimizer.OptimizerDef => typeof made === "function",
      () =>
        new OptimizerModuleError({
          module: file,
          export: exportName,
          reason: "make(config) must return optim's OptimizerDef, a function of a Numeric backend"
        })
    )
  )

/** Whether an instantiated optimizer has optim's `Optimizer` shape. */
export const isOptimizer = (o: unknown): o is Optimizer.Optimizer<unknown> => {
  const x = o as Partial<Optimizer.Optimizer<unknown>> | null
  return (
    x !== null &&
    typeof x === "object" &&
    typeof x.name === "string" &&
    typeof x.init === "function" &&
    typeof x.update === "function" &&
    typeof x.defaults?.lr === "number"
  )
}
