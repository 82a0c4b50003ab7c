/**
 * CNN2's classifier is sized for square images (and a recipe's model is built, before any image
 * is decoded, for the square a single number gives), and a single-number resize (the default `28`,
 * torchvision's `Resize(28)`) keeps the aspect ratio. So before decoding a whole folder, peek at
 * the first image's size (its header only) and say which `--resize` makes it square, instead of
 * failing after the decode with the shape it happened to get.
 */
import { open } from "node:fs/promises"
import type { FileSystem } from "@effect/platform"
import { type Errors as DataErrors, ImageFolder, Png, Transforms } from "@stepwise/data"
import { Effect } from "effect"
import { ConfigError } from "./Errors.js"
import * as Recipe from "./Recipe.js"

export type Resize = Recipe.Resize

/** A PNG's size from its IHDR chunk (the file's first 33 bytes), without loading an image library. */
const pngHeaderSize = async (path: string): Promise<readonly [number, number] | undefined> => {
  const file = await open(path, "r")
  try {
    const head = new Uint8Array(33)
    const { bytesRead } = await file.read(head, 0, head.length, 0)
    const size = Png.pngSize(head.subarray(0, bytesRead))
    return size === undefined ? undefined : [size.width, size.height]
  } finally {
    await file.close()
  }
}

/**
 * Width and height from an image's header, or undefined when it cannot be read (the decode will
 * say why). PNG headers are read here; other formats by sharp, loaded only for them.
 */
const headerSize = (path: string): Effect.Effect<readonly [number, number] | undefined> =>
  Effect.tryPromise(async () => {
    const png = await pngHeaderSize(path)
    if (png !== undefined) return png
    const { default: sharp } = await import("sharp")
    const m = await sharp(path).metadata()
    return m.width !== undefined && m.height !== undefined ? ([m.width, m.height] as const) : undefined
  }).pipe(Effect.orElseSucceed(() => undefined))

/** The error for a `resize` that keeps a non-square image's aspect ratio, or undefined when it is square. */
export const nonSquare = (
  path: string,
  width: number,
  height: number,
  resize: Recipe.Resize,
  model = "CNN2"
): ConfigError | undefined => {
  const size = Recipe.resizeOf(resize)
  const [w, h] = Transforms.resizedSize(width, height, size)
  if (w === h) return undefined
  const n = typeof size === "number" ? size : Math.min(...size)
  return new ConfigError({
    file: path,
    field: "data.resize",
    reason:
      `this image is ${width}x${height}, so resize ${JSON.stringify(resize)} makes it ${w}x${h}, ` +
      `but ${model} needs square images: use --resize ${n}x${n} (or data.resize: "${n}x${n}")`
  })
}

/** Fails with `nonSquare`'s error, judged on the first image of the training folder, before any decoding. */
export const requireSquare = (
  root: string,
  resize: Recipe.Resize,
  model = "CNN2"
): Effect.Effect<void, ConfigError | DataErrors.ImageFolderError, FileSystem.FileSystem> =>
  Effect.flatMap(ImageFolder.scan(root, { isValidFile: ImageFolder.hasImageExtension }), (listing) =>
    requireSquareListed(listing, resize, model)
  )

/** `requireSquare` on a folder already listed (`ImageFolder.scan`): only its first image is read. */
export const requireSquareListed = (
  listing: ImageFolder.Listing,
  resize: Recipe.Resize,
  model = "CNN2"
): Effect.Effect<void, ConfigError> =>
  Effect.gen(function* () {
    const first = listing.samples[0]
    if (first === undefined) return
    const size = yield* headerSize(first.path)
    if (size === undefined) return
    const error = nonSquare(first.path, size[0], size[1], resize, model)
    if (error !== undefined) return yield* error
  })
