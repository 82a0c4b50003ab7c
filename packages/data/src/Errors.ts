/**
 * Every way data can be bad, as tagged errors that name the offending path or value.
 */
import { Schema } from "effect"

/** The dataset root does not exist or is not a folder. */
export class ImageFolderNotFound extends Schema.TaggedError<ImageFolderNotFound>()("ImageFolderNotFound", {
  root: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `ImageFolder: root ${this.root} ${this.reason}`
  }
}

/** The root holds no class sub-folders. */
export class NoClassFolders extends Schema.TaggedError<NoClassFolders>()("NoClassFolders", {
  root: Schema.String
}) {
  override get message() {
    return `ImageFolder: couldn't find any class folder in ${this.root}`
  }
}

/** A class folder holds no valid image file. */
export class EmptyClassFolder extends Schema.TaggedError<EmptyClassFolder>()("EmptyClassFolder", {
  path: Schema.String,
  className: Schema.String
}) {
  override get message() {
    return `ImageFolder: found no valid image file for class "${this.className}" in ${this.path}`
  }
}

/** A file could not be read or decoded as an image (empty, truncated, not an image at all). */
export class ImageDecodeError extends Schema.TaggedError<ImageDecodeError>()("ImageDecodeError", {
  path: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `cannot decode image ${this.path}: ${this.reason}`
  }
}

/** Samples of different shapes met in one batch (typically: no Resize in the transform). */
export class SampleShapeMismatch extends Schema.TaggedError<SampleShapeMismatch>()("SampleShapeMismatch", {
  path: Schema.String,
  expected: Schema.Array(Schema.Number),
  actual: Schema.Array(Schema.Number)
}) {
  override get message() {
    return `sample ${this.path} has shape [${this.actual.join(", ")}] but the batch expects [${this.expected.join(
      ", "
    )}] (add a Resize to the transform)`
  }
}

/** A bad argument to a transform or loader (size, probability, split lengths...). */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>()("InvalidArgument", {
  field: Schema.String,
  value: Schema.Unknown,
  reason: Schema.String
}) {
  override get message() {
    return `invalid ${this.field} = ${JSON.stringify(this.value)}: ${this.reason}`
  }
}

/** A download failed (HTTP status, connection, size or checksum). */
export class DownloadError extends Schema.TaggedError<DownloadError>()("DownloadError", {
  url: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `download of ${this.url} failed: ${this.reason}`
  }
}

/** A file system operation failed at `path`. */
export class DataFileError extends Schema.TaggedError<DataFileError>()("DataFileError", {
  path: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `${this.path}: ${this.reason}`
  }
}

/**
 * A sample path that is not a regular file (a FIFO would block the read forever, a link to
 * `/dev/zero` would never end), checked on the opened file, so nothing is read from it.
 */
export class NotARegularFile extends Schema.TaggedError<NotARegularFile>()("NotARegularFile", {
  path: Schema.String,
  kind: Schema.String
}) {
  override get message() {
    return `${this.path} is a ${this.kind}, not a regular file: only regular files are read as images`
  }
}

/** An image file larger than the per-file byte limit (`maxFileBytes`). */
export class ImageFileTooLarge extends Schema.TaggedError<ImageFileTooLarge>()("ImageFileTooLarge", {
  path: Schema.String,
  size: Schema.Number,
  limit: Schema.Number
}) {
  override get message() {
    return `${this.path} is ${this.size} bytes, more than the limit of ${this.limit} bytes per image file (maxFileBytes)`
  }
}

/** An image whose header claims more pixels than the limit (`maxPixels`), refused before decoding. */
export class ImageTooLarge extends Schema.TaggedError<ImageTooLarge>()("ImageTooLarge", {
  path: Schema.String,
  width: Schema.Number,
  height: Schema.Number,
  limit: Schema.Number
}) {
  override get message() {
    return `${this.path} is ${this.width}x${this.height} = ${
      this.width * this.height
    } pixels, more than the limit of ${this.limit} pixels per image (maxPixels)`
  }
}

/** Why one image could not be read: the file itself, its size, its dimensions, or its content. */
export type ImageReadError = ImageDecodeError | NotARegularFile | ImageFileTooLarge | ImageTooLarge

/** A dataset whose arrays disagree with its declared shape. */
export class ShapeMismatch extends Schema.TaggedError<ShapeMismatch>()("ShapeMismatch", {
  field: Schema.String,
  expected: Schema.Number,
  actual: Schema.Number
}) {
  override get message() {
    return `TensorDataset: ${this.field} has ${this.actual} elements, expected ${this.expected}`
  }
}

/**
 * Normalize parameters that cannot standardise: a zero std divides by zero (torchvision's
 * `Normalize` raises for it), a non-finite mean or std turns every value into NaN.
 */
export class InvalidNormalizer extends Schema.TaggedError<InvalidNormalizer>()("InvalidNormalizer", {
  channel: Schema.Number,
  mean: Schema.Number,
  std: Schema.Number,
  reason: Schema.String
}) {
  override get message() {
    return `Normalize: channel ${this.channel} (mean ${this.mean}, std ${this.std}) ${this.reason}`
  }
}

/** Two class lists that differ by name (a checkpoint's classes vs a folder's, train vs val...). */
export class ClassMismatch extends Schema.TaggedError<ClassMismatch>()("ClassMismatch", {
  /** Expected classes not found. */
  missing: Schema.Array(Schema.String),
  /** Classes found that were not expected. */
  extra: Schema.Array(Schema.String),
  /** What was compared, in the user's terms (e.g. "validation data /data/val"). */
  where: Schema.String
}) {
  override get message() {
    const parts = [
      this.missing.length > 0 ? `missing ${this.missing.map((c) => `"${c}"`).join(", ")}` : "",
      this.extra.length > 0 ? `unexpected ${this.extra.map((c) => `"${c}"`).join(", ")}` : ""
    ].filter((p) => p !== "")
    return `classes of ${this.where} do not match: ${
      parts.length > 0 ? parts.join("; ") : "same names in a different order"
    }`
  }
}

/** What reading an image folder can fail with. */
export type ImageFolderError =
  | ImageFolderNotFound
  | NoClassFolders
  | EmptyClassFolder
  | ImageReadError
  | SampleShapeMismatch
  | DataFileError
  | InvalidArgument
