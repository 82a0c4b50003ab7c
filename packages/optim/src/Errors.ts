import { Schema } from "effect"

/**
 * Every error of `@stepwise/optim`, in one module. Pure functions return them (Effect or
 * Either); nothing here is thrown.
 */

/**
 * A hyperparameter PyTorch's constructor would reject with a ValueError (or one the schema
 * cannot decode): `config` is the optimizer or scheduler (`"SGD"`, `"OneCycleLR"`), `field` the
 * dotted path inside it (`"lr"`, `"betas.0"`), `value` what was given and `reason` the rule.
 */
export class InvalidHyperparameter extends Schema.TaggedError<InvalidHyperparameter>()(
  "InvalidHyperparameter",
  {
    config: Schema.String,
    field: Schema.String,
    value: Schema.Unknown,
    reason: Schema.String
  }
) {
  override get message(): string {
    return `${this.config}: invalid ${this.field} = ${show(this.value)}: ${this.reason}`
  }
}

/**
 * A gradient tree that does not fit the parameters: a parameter without a gradient
 * (`actual` undefined), a gradient without a parameter (`expected` undefined), or a gradient of
 * another shape (tfjs would broadcast a [1, 3] gradient onto a [3, 1] parameter into [3, 3]).
 */
export class MismatchedTree extends Schema.TaggedError<MismatchedTree>()("MismatchedTree", {
  parameter: Schema.String,
  expected: Schema.optional(Schema.Array(Schema.Number)),
  actual: Schema.optional(Schema.Array(Schema.Number))
}) {
  override get message(): string {
    if (this.actual === undefined) return `parameter ${this.parameter} has no gradient`
    if (this.expected === undefined) return `gradient ${this.parameter} matches no parameter`
    return `gradient of ${this.parameter} has shape [${this.actual.join(", ")}], the parameter [${this.expected.join(", ")}]`
  }
}

/**
 * A scheduler stepped where PyTorch raises: OneCycleLR past its total steps ("Tried to step N
 * times. The specified number of total steps is M"), CosineAnnealingWarmRestarts given a
 * negative epoch.
 */
export class SchedulerStepError extends Schema.TaggedError<SchedulerStepError>()("SchedulerStepError", {
  scheduler: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.scheduler}: ${this.reason}`
  }
}

const show = (value: unknown): string =>
  typeof value === "number" ? String(value) : value === undefined ? "(missing)" : JSON.stringify(value)

/**
 * A law of `@stepwise/optim/testing` that does not hold, located: which law, which parameter
 * (and slot), which element (row-major index) after which step (1-based), expected and actual.
 * The kit's fast-check properties throw it, which is how fast-check learns of a failure and
 * shrinks the case; its message is what the test report shows.
 */
export class LawViolation extends Schema.TaggedError<LawViolation>()("LawViolation", {
  law: Schema.String,
  detail: Schema.String,
  parameter: Schema.optional(Schema.String),
  element: Schema.optional(Schema.Number),
  step: Schema.optional(Schema.Number),
  expected: Schema.optional(Schema.Number),
  actual: Schema.optional(Schema.Number)
}) {
  override get message(): string {
    const where = [
      this.parameter === undefined ? undefined : `parameter "${this.parameter}"`,
      this.element === undefined ? undefined : `element ${this.element}`,
      this.step === undefined ? undefined : `step ${this.step}`
    ].filter((s) => s !== undefined)
    const values =
      this.expected === undefined && this.actual === undefined
        ? ""
        : `: expected ${this.expected}, actual ${this.actual}`
    return `law ${this.law} broken${where.length === 0 ? "" : ` at ${where.join(", ")}`}${values} (${this.detail})`
  }
}
