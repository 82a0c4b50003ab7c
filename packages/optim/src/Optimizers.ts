import { Context, Effect, Layer, Schema } from "effect"
import * as Adagrad from "./Adagrad.js"
import * as Adam from "./Adam.js"
import * as AdamW from "./AdamW.js"
import { decode as decodeWith, type InvalidHyperparameter } from "./InvalidHyperparameter.js"
import type { Hyper, OptimizerDef } from "./Optimizer.js"
import * as RMSprop from "./RMSprop.js"
import * as SGD from "./SGD.js"

/** Every built-in optimizer's configuration, tagged: what config files and the CLI hold. */
export const OptimizerConfig = Schema.Union(
  SGD.Config,
  Adam.Config,
  AdamW.Config,
  RMSprop.Config,
  Adagrad.Config
)
export type OptimizerConfig = typeof OptimizerConfig.Type

/** Decodes an untrusted config (filling PyTorch's defaults); errors name the field and value. */
export const decode: (input: unknown) => Effect.Effect<OptimizerConfig, InvalidHyperparameter> =
  decodeWith(OptimizerConfig)

/** Validates a config like PyTorch's constructor and builds its optimizer. */
export const fromConfig = (config: OptimizerConfig): Effect.Effect<OptimizerDef, InvalidHyperparameter> => {
  switch (config._tag) {
    case "SGD":
      return Effect.map(SGD.validate(config), SGD.optimizer)
    case "Adam":
      return Effect.map(Adam.validate(config), Adam.optimizer)
    case "AdamW":
      return Effect.map(AdamW.validate(config), AdamW.optimizer)
    case "RMSprop":
      return Effect.map(RMSprop.validate(config), RMSprop.optimizer)
    case "Adagrad":
      return Effect.map(Adagrad.validate(config), Adagrad.optimizer)
  }
}

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
