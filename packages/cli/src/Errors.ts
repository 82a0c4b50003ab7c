import { Schema } from "effect"

/** A recipe file that cannot be read, parsed, or validated; `field` is a dotted path when known. */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  file: Schema.String,
  field: Schema.optional(Schema.String),
  reason: Schema.String
}) {
  override get message() {
    return this.field === undefined
      ? `${this.file}: ${this.reason}`
      : `${this.file}: ${this.field}: ${this.reason}`
  }
}

/** A file or folder of a run (config, metrics, checkpoint, plot) that cannot be read or written. */
export class RunFolderError extends Schema.TaggedError<RunFolderError>()("RunFolderError", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.path}: ${this.reason}`
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
 * One line for any failure: tagged errors (ours and the other packages') show their tag and
 * message or fields; anything else its message. Never a stack trace.
 */
export const formatError = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const e = error as { _tag?: unknown; message?: unknown }
    const message = typeof e.message === "string" && e.message.length > 0 ? e.message : undefined
    if (typeof e._tag === "string") {
      if (message !== undefined && message !== e._tag) return `${e._tag}: ${firstLine(message)}`
      const fields = Object.entries(error as Record<string, unknown>)
        .filter(([k]) => k !== "_tag" && k !== "stack" && k !== "cause")
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : safeJson(v)}`)
      return `${e._tag}${fields.length > 0 ? ` (${fields.join(", ")})` : ""}`
    }
    if (message !== undefined) return firstLine(message)
  }
  return firstLine(String(error))
}

/** The first line of an error's message (or of the value itself, when it has none). */
export const firstLine = (e: unknown): string =>
  String((e as { readonly message?: unknown } | null | undefined)?.message ?? e).split("\n")[0]

/** Maps a failure at `path` to a `RunFolderError` with its first line as the reason. */
export const runFolderError =
  (path: string) =>
  (e: unknown): RunFolderError =>
    new RunFolderError({ path, reason: firstLine(e) })

const safeJson = (v: unknown) => {
  try {
    return JSON.stringify(v)
  } catch {
    return String(v)
  }
}
