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
  reason: Schema.String
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
  reason: Schema.String
}) {
  override get message() {
    return `download of ${this.url} failed: ${this.reason}`
  }
}

/** A file system operation failed at `path`. */
export class DataFileError extends Schema.TaggedError<DataFileError>()("DataFileError", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `${this.path}: ${this.reason}`
  }
}

/** What reading an image folder can fail with. */
export type ImageFolderError =
  | ImageFolderNotFound
  | NoClassFolders
  | EmptyClassFolder
  | ImageDecodeError
  | SampleShapeMismatch
  | DataFileError
