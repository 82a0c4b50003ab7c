/**
 * Every error `@stepwise/core` fails with, in one place. Each names what a user can act on (the
 * file, the parameter, the epoch and mini-batch) and keeps the underlying `cause` when there is one.
 * The modules that fail with them re-export them (`Trainer.NonFinite`, `Checkpoint.CheckpointError`...).
 */
import { Schema } from "effect"

/** A requested backend that cannot be used here; `package` is what to install. */
export class BackendUnavailable extends Schema.TaggedError<BackendUnavailable>()("BackendUnavailable", {
  backend: Schema.String,
  package: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `backend '${this.backend}' is unavailable: ${this.reason} (install ${this.package})`
  }
}

/** What went non-finite: the mini-batch loss, a gradient, or a parameter after the update. */
export const NonFiniteWhat = Schema.Literal("loss", "gradient", "parameter")
export type NonFiniteWhat = typeof NonFiniteWhat.Type

/**
 * A loss, gradient or updated parameter that is NaN or infinite stops training; the trainer the
 * run started from is intact. `epoch` and `batch` are 0-based like the events (`batch` is
 * "validation" for the validation loss); the message counts from 1, like the progress display.
 * `value` is the loss, or the sum over the offending tensor.
 */
export class NonFinite extends Schema.TaggedError<NonFinite>()("NonFinite", {
  epoch: Schema.Number,
  batch: Schema.Union(Schema.Number, Schema.Literal("validation")),
  what: NonFiniteWhat,
  /** The gradient's or parameter's name (`conv1.weight`); `name` would clash with `Error.name`. */
  tensor: Schema.optional(Schema.String),
  value: Schema.Number
}) {
  override get message() {
    const subject =
      this.batch === "validation"
        ? `validation ${this.what}`
        : this.tensor === undefined
          ? this.what
          : `${this.what} of ${this.tensor}`
    const where =
      this.batch === "validation"
        ? `at epoch ${this.epoch + 1}`
        : `at epoch ${this.epoch + 1}, mini-batch ${this.batch + 1}`
    return `training diverged: ${subject} ${this.value} ${where}`
  }
}

/** A trainer asked to do something its configuration cannot (no loader, plateau without validation). */
export class InvalidTrainer extends Schema.TaggedError<InvalidTrainer>()("InvalidTrainer", {
  reason: Schema.String
}) {
  override get message() {
    return `trainer: ${this.reason}`
  }
}

/** A checkpoint that cannot be read or does not fit the trainer it is restored into. */
export class CheckpointError extends Schema.TaggedError<CheckpointError>()("CheckpointError", {
  path: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `checkpoint ${this.path}: ${this.reason}`
  }
}

/**
 * An input of `Predict` that is not an image to classify: a path that is neither a file nor a
 * folder, a folder without image files, or a checkpoint whose model does not take RGB images.
 */
export class PredictError extends Schema.TaggedError<PredictError>()("PredictError", {
  path: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `${this.path}: ${this.reason}`
  }
}

/**
 * A malformed safetensors file (or an unwritable value), naming the file, what is wrong and, for
 * a malformed file, the byte offset where it goes wrong.
 */
export class SafetensorsError extends Schema.TaggedError<SafetensorsError>()("SafetensorsError", {
  path: Schema.String,
  reason: Schema.String,
  offset: Schema.optional(Schema.Number),
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `safetensors ${this.path}${this.offset === undefined ? "" : ` at byte ${this.offset}`}: ${this.reason}`
  }
}

/**
 * Weights that do not fit the model: the tensor (a parameter or a buffer, PyTorch's name), and
 * when shapes differ both of them (`expected` in PyTorch's layout); when a whole state_dict's
 * names differ, every `missing` and `unexpected` name (like `load_state_dict(strict=True)`).
 * `path` is the file the weights came from, when they came from one.
 */
export class WeightMismatch extends Schema.TaggedError<WeightMismatch>()("WeightMismatch", {
  parameter: Schema.String,
  reason: Schema.String,
  expected: Schema.optional(Schema.Array(Schema.Number)),
  actual: Schema.optional(Schema.Array(Schema.Number)),
  missing: Schema.optional(Schema.Array(Schema.String)),
  unexpected: Schema.optional(Schema.Array(Schema.String)),
  path: Schema.optional(Schema.String)
}) {
  override get message() {
    const where = this.path === undefined ? "" : `${this.path}: `
    return this.missing === undefined && this.unexpected === undefined
      ? `${where}weights for ${this.parameter}: ${this.reason}`
      : `${where}weights do not match the model: ${this.reason}`
  }
}

/**
 * Targets that do not fit the model's outputs: a count that differs from the samples, or a class
 * index outside the outputs' classes. `where` is the loss or metric (`CrossEntropyLoss`,
 * `Metrics.correct`); `index` the first offending sample when one is to blame.
 */
export class InvalidTargets extends Schema.TaggedError<InvalidTargets>()("InvalidTargets", {
  where: Schema.String,
  reason: Schema.String,
  index: Schema.optional(Schema.Number)
}) {
  override get message() {
    return `${this.where}: ${this.reason}${this.index === undefined ? "" : ` (sample ${this.index})`}`
  }
}

/** A layer constructor's argument it cannot build a layer from (kernel size 0, p = 2...). */
export class InvalidLayer extends Schema.TaggedError<InvalidLayer>()("InvalidLayer", {
  layer: Schema.String,
  field: Schema.String,
  value: Schema.Unknown,
  reason: Schema.String
}) {
  override get message() {
    return `${this.layer}: ${this.field} = ${JSON.stringify(this.value)} ${this.reason}`
  }
}

/**
 * A model spec that does not fit: `path` locates the layer (`layers[3]`,
 * `layers[0].layers[2]`), `layer` is its name and type, `field` the offending field.
 */
export class ModelSpecError extends Schema.TaggedError<ModelSpecError>()("ModelSpecError", {
  path: Schema.String,
  layer: Schema.String,
  field: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    const where = this.path === "" ? "model" : `model.${this.path}`
    return `${where}${this.layer === "" ? "" : ` (${this.layer})`}: ${this.field}: ${this.reason}`
  }
}
