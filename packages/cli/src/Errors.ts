/**
 * Every failure of the cli package, in one place. Each names what the user typed or owns (a
 * flag, a file, a field, a folder) and keeps the underlying failure as `cause` for debugging;
 * `formatError` turns any failure into the one line a user sees (never an internal tag).
 */
import { Schema } from "effect"

/**
 * A recipe that cannot be read, parsed or validated. `file` is the recipe file or
 * "command line"; `field` is a dotted recipe path or, for the command line, a flag (`--lr`).
 */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  file: Schema.String,
  field: Schema.optional(Schema.String),
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    if (this.file === COMMAND_LINE) {
      return this.field === undefined ? this.reason : `${this.field}: ${this.reason}`
    }
    return this.field === undefined
      ? `${this.file}: ${this.reason}`
      : `${this.file}: ${this.field}: ${this.reason}`
  }
}

/** What `ConfigError.file` says when the value came from flags (or a default), not a file. */
export const COMMAND_LINE = "command line"

/** A file or folder of a run (config, metrics, checkpoint, lock, plot) that cannot be used. */
export class RunFolderError extends Schema.TaggedError<RunFolderError>()("RunFolderError", {
  path: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `${this.path}: ${this.reason}`
  }
}

/**
 * Data that does not fit what it is used with: class lists that differ between training data,
 * validation data, a checkpoint and evaluation data, or data changed under a resumed run.
 */
export class DataMismatch extends Schema.TaggedError<DataMismatch>()("DataMismatch", {
  what: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.what}: ${this.reason}`
  }
}

/**
 * A recipe's optimizer module that cannot be used: the file is missing or does not load, the
 * export is missing, or it is not a `{ name, schema, make }` definition (see `CustomOptimizer`).
 */
export class OptimizerModuleError extends Schema.TaggedError<OptimizerModuleError>()("OptimizerModuleError", {
  module: Schema.String,
  export: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `${this.module}: export ${this.export}: ${this.reason}`
  }
}

/** A plot that cannot be drawn from what a run folder holds. */
export class PlotError extends Schema.TaggedError<PlotError>()("PlotError", {
  plot: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `plot ${this.plot}: ${this.reason}`
  }
}

/**
 * One line for any failure: its message when it has one (every error here and in the other
 * packages names its subject); otherwise the fields of a tagged value. Never a stack trace and
 * never an internal tag in front of a message.
 */
export const formatError = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const e = error as { _tag?: unknown; message?: unknown }
    const message = typeof e.message === "string" && e.message.length > 0 ? e.message : undefined
    if (message !== undefined && message !== e._tag) return firstLine(message)
    if (typeof e._tag === "string") {
      const fields = Object.entries(error as Record<string, unknown>)
        .filter(([k]) => k !== "_tag" && k !== "stack" && k !== "cause")
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : safeJson(v)}`)
      return `${e._tag}${fields.length > 0 ? ` (${fields.join(", ")})` : ""}`
    }
  }
  return firstLine(String(error))
}

/** The first line of an error's message (or of the value itself, when it has none). */
export const firstLine = (e: unknown): string =>
  String((e as { readonly message?: unknown } | null | undefined)?.message ?? e).split("\n")[0]

const ERRNO_REASONS: Record<string, string> = {
  ENOENT: "no such file or folder",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EISDIR: "is a folder, not a file",
  ENOTDIR: "a part of the path is not a folder",
  EEXIST: "already exists",
  EMFILE: "too many open files",
  EIO: "input/output error"
}

/**
 * A file-system failure in the user's terms ("read-only file system", "no space left on the
 * device"), from the errno code @effect/platform keeps in its cause.
 */
export const describeIoError = (e: unknown): string => {
  const code = errnoOf(e)
  if (code !== undefined && ERRNO_REASONS[code] !== undefined) return ERRNO_REASONS[code]
  const reason = (e as { reason?: unknown } | null)?.reason
  if (reason === "NotFound") return ERRNO_REASONS.ENOENT
  if (reason === "PermissionDenied") return ERRNO_REASONS.EACCES
  if (reason === "AlreadyExists") return ERRNO_REASONS.EEXIST
  const description = (e as { description?: unknown } | null)?.description
  return firstLine(typeof description === "string" ? description : e)
}

const errnoOf = (e: unknown): string | undefined => {
  for (let x: any = e, depth = 0; x !== null && typeof x === "object" && depth < 4; depth++) {
    if (typeof x.code === "string" && /^E[A-Z]+$/.test(x.code)) return x.code
    x = x.cause
  }
  return undefined
}

/** Maps a failure at `path` to a `RunFolderError` saying what went wrong, cause kept. */
export const runFolderError =
  (path: string) =>
  (e: unknown): RunFolderError =>
    e instanceof RunFolderError ? e : new RunFolderError({ path, reason: describeIoError(e), cause: e })

const safeJson = (v: unknown) => {
  try {
    return JSON.stringify(v)
  } catch {
    return String(v)
  }
}

/** A TensorBoard event file that does not parse: the byte offset and what is wrong there. */
export class CorruptEventFile extends Schema.TaggedError<CorruptEventFile>()("CorruptEventFile", {
  offset: Schema.Number,
  reason: Schema.String
}) {
  override get message() {
    return `corrupt event file at byte ${this.offset}: ${this.reason}`
  }
}

/** A sweep's cluster storage (`--storage URL`) that cannot be opened or reached. */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  url: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `storage ${this.url}: ${this.reason}`
  }
}

/**
 * A runner (or sweep) of one stepwise version meeting storage written by another: their
 * workflows and checkpoints need not agree, so they must not share trials.
 */
export class VersionMismatch extends Schema.TaggedError<VersionMismatch>()("VersionMismatch", {
  url: Schema.String,
  ours: Schema.String,
  theirs: Schema.String
}) {
  override get message() {
    return `storage ${this.url} belongs to stepwise ${this.theirs}; this is stepwise ${this.ours} (use a runner of the same version, or a new sweep)`
  }
}

/** A sweep trial that failed for a reason of its own (its recipe, its data, its run folder). */
export class TrialFailed extends Schema.TaggedError<TrialFailed>()("TrialFailed", {
  trial: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `trial ${this.trial}: ${this.reason}`
  }
}
