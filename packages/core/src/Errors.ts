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

/** A malformed safetensors file (or an unwritable value), naming the file and what is wrong. */
export class SafetensorsError extends Schema.TaggedError<SafetensorsError>()("SafetensorsError", {
  path: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `safetensors ${this.path}: ${this.reason}`
  }
}

/**
 * Weights that do not fit the model: the parameter, and when shapes differ both of them
 * (`expected` in PyTorch's layout).
 */
export class WeightMismatch extends Schema.TaggedError<WeightMismatch>()("WeightMismatch", {
  parameter: Schema.String,
  reason: Schema.String,
  expected: Schema.optional(Schema.Array(Schema.Number)),
  actual: Schema.optional(Schema.Array(Schema.Number))
}) {
  override get message() {
    return `weights for ${this.parameter}: ${this.reason}`
  }
}
