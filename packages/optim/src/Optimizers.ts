import { Context, Effect, Layer, Schema } from "effect"
import * as Adagrad from "./Adagrad.js"
import * as Adam from "./Adam.js"
import * as AdamW from "./AdamW.js"
import type { InvalidHyperparameter } from "./Errors.js"
import * as F from "./Fields.js"
import type { Hyper, OptimizerDef } from "./Optimizer.js"
import * as RMSprop from "./RMSprop.js"
import * as SGD from "./SGD.js"

/**
 * Every built-in optimizer's configuration, tagged with PyTorch's class name: what config files
 * and the CLI hold. The schemas are the only definition of the hyperparameters, their defaults
 * and PyTorch's constructor rules.
 */
export const OptimizerConfig = Schema.Union(
  SGD.Config,
  Adam.Config,
  AdamW.Config,
  RMSprop.Config,
  Adagrad.Config
)
export type OptimizerConfig = typeof OptimizerConfig.Type
export type Tag = OptimizerConfig["_tag"]

const fieldsByTag: { readonly [K in Tag]: Schema.Struct.Fields } = {
  SGD: SGD.fields,
  Adam: Adam.fields,
  AdamW: AdamW.fields,
  RMSprop: RMSprop.fields,
  Adagrad: Adagrad.fields
}

/** The tags, in the order a CLI lists them (`fieldsByTag`'s keys: its type makes it exhaustive). */
export const tags = Object.keys(fieldsByTag) as ReadonlyArray<Tag>

/**
 * The fields of an optimizer's config with type, default and description, read from its
 * schema: what a CLI derives its flags from (`fieldsOf("SGD")` -> lr, momentum, ...).
 */
export const fieldsOf = (tag: Tag): ReadonlyArray<F.FieldInfo> => F.fieldsOf(fieldsByTag[tag])

/**
 * Decodes an untrusted config, filling PyTorch's defaults and checking its rules; the first
 * broken rule fails as `InvalidHyperparameter { config, field, value, reason }`.
 */
export const decode: (input: unknown) => Effect.Effect<OptimizerConfig, InvalidHyperparameter> =
  F.decode(OptimizerConfig)

/** The config of `tag` with every default (fails when a field is required, e.g. SGD's lr). */
export const defaultConfig = (tag: Tag): Effect.Effect<OptimizerConfig, InvalidHyperparameter> =>
  decode({ _tag: tag })

/** Builds a config's optimizer, checking it first (a config built in code skipped decoding). */
export const fromConfig = (config: OptimizerConfig): Effect.Effect<OptimizerDef, InvalidHyperparameter> =>
  Effect.map(F.validate(OptimizerConfig)(config), (c): OptimizerDef => {
    switch (c._tag) {
      case "SGD":
        return SGD.optimizer(c)
      case "Adam":
        return Adam.optimizer(c)
      case "AdamW":
        return AdamW.optimizer(c)
      case "RMSprop":
        return RMSprop.optimizer(c)
      case "Adagrad":
        return Adagrad.optimizer(c)
    }
  })

/** The hyperparameters a scheduler starts from (`Optimizer.defaults`), without a backend. */
export const defaults = (config: OptimizerConfig): Hyper => {
  switch (config._tag) {
    case "SGD":
    case "RMSprop":
      return { lr: config.lr, momentum: config.momentum }
    case "Adam":
    case "AdamW":
      return { lr: config.lr, beta1: config.betas[0] }
    case "Adagrad":
      return { lr: config.lr }
  }
}

/** The configured optimizer of a program, written once and instantiated on any backend. */
export class Optimizer extends Context.Tag("@stepwise/optim/Optimizer")<
  Optimizer,
  { readonly config: OptimizerConfig; readonly def: OptimizerDef; readonly defaults: Hyper }
>() {}

/** The `Optimizer` service from a config (validated; fails with `InvalidHyperparameter`). */
export const layer = (config: OptimizerConfig): Layer.Layer<Optimizer, InvalidHyperparameter> =>
  Layer.effect(
    Optimizer,
    Effect.map(fromConfig(config), (def) => ({ config, def, defaults: defaults(config) }))
  )
