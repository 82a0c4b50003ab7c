/**
 * Classifying image files with a checkpoint alone: its `run` info rebuilds the model and gives
 * the preprocessing the model was trained with (resize to the input's H x W as data's `Resize`,
 * `ToTensor`, `Normalize` with the saved mean and std); the model runs in eval mode and a
 * softmax turns its logits into class probabilities.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { type Errors as DataErrors, Image, ImageFolder, Transforms } from "@stepwise/data"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import * as Checkpoint from "./Checkpoint.js"
import type { Engine } from "./Engine.js"
import { PredictError, type SafetensorsError } from "./Errors.js"
import * as Loss from "./Loss.js"

export { PredictError } from "./Errors.js"

/** One file's classification. */
export interface Prediction {
  readonly file: string
  /** The most probable class. */
  readonly class: string
  /** Every class's softmax probability, by class name. */
  readonly probabilities: { readonly [className: string]: number }
  /** The model's outputs, in class order. */
  readonly logits: ReadonlyArray<number>
  /** The `top` most probable classes, most probable first. */
  readonly top: ReadonlyArray<{ readonly class: string; readonly probability: number }>
}

export interface Options {
  /** How many classes `top` lists (default: all). */
  readonly top?: number | undefined
  /** Images per forward pass (default 64). */
  readonly batchSize?: number | undefined
}

/** `softmax(z)` in float64, shifted by the maximum so large logits cannot overflow. */
export const softmax = (logits: ReadonlyArray<number>): ReadonlyArray<number> => {
  const m = Math.max(...logits)
  const e = logits.map((z) => Math.exp(z - m))
  const sum = e.reduce((a, b) => a + b, 0)
  return e.map((x) => x / sum)
}

/** A prediction from one row of logits (ties go to the first class, as `argmax`). */
export const fromLogits = (
  file: string,
  classes: ReadonlyArray<string>,
  logits: ReadonlyArray<number>,
  top = classes.length
): Prediction => {
  const p = softmax(logits)
  const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a] || a - b)
  return {
    file,
    class: classes[order[0]],
    probabilities: Object.fromEntries(classes.map((c, i) => [c, p[i]])),
    logits: [...logits],
    top: order.slice(0, Math.max(1, top)).map((i) => ({ class: classes[i], probability: p[i] }))
  }
}

/**
 * The model's input for one decoded image: resized to `inputShape`'s H x W, to CHW floats in
 * [0, 1], standardized by the run's normalizer.
 */
export const preprocess = (
  run: Checkpoint.Run
): Either.Either<
  (img: Image.RgbImage) => Transforms.ImageTensor,
  DataErrors.InvalidArgument | DataErrors.InvalidNormalizer
> =>
  Either.gen(function* () {
    const [, h, w] = run.inputShape
    const resize = yield* Transforms.Resize([h, w])
    const toTensor = Transforms.ToTensor()
    const normalize = run.normalizer === null ? undefined : yield* Transforms.Normalize(run.normalizer)
    return (img: Image.RgbImage) => {
      const t = toTensor(resize(img, Transforms.noContext), Transforms.noContext)
      return normalize === undefined ? t : normalize(t, Transforms.noContext)
    }
  })

/**
 * The image files of the inputs, in order: a file as given, a folder's image files (by
 * extension, not recursive) sorted by name. A path that does not exist is left to decoding,
 * which names it; a folder without images fails here.
 */
export const imageFiles = (
  paths: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<string>, PredictError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const out: Array<string> = []
    for (const path of paths) {
      const info = yield* Effect.option(fs.stat(path))
      if (info._tag === "None" || info.value.type !== "Directory") {
        out.push(path)
        continue
      }
      const names = yield* fs
        .readDirectory(path)
        .pipe(
          Effect.mapError(
            (e) => new PredictError({ path, reason: `cannot list the folder: ${e.message}`, cause: e })
          )
        )
      const images = names.filter(ImageFolder.hasImageExtension).sort()
      if (images.length === 0)
        return yield* new PredictError({ path, reason: "the folder holds no image files" })
      for (const name of images) out.push(`${path.replace(/\/+$/, "")}/${name}`)
    }
    return out
  })

/** Predictions for decoded images with a model from `Checkpoint.trained` (tensors stay the caller's). */
export const images = (
  trained: Checkpoint.Trained,
  inputs: ReadonlyArray<{ readonly file: string; readonly tensor: Transforms.ImageTensor }>,
  options: Options = {}
): ReadonlyArray<Prediction> => {
  const { run, built, params, buffers } = trained
  const k = run.classes.length
  const per = run.inputShape[0] * run.inputShape[1] * run.inputShape[2]
  const size = options.batchSize ?? 64
  const out: Array<Prediction> = []
  for (let start = 0; start < inputs.length; start += size) {
    const chunk = inputs.slice(start, start + size)
    const x = new Float32Array(chunk.length * per)
    chunk.forEach((c, i) => {
      x.set(c.tensor.data, i * per)
    })
    const y = Loss.outputs(
      built.module,
      params,
      { x, shape: [chunk.length, ...run.inputShape] },
      { training: false, buffers }
    )
    chunk.forEach((c, i) => {
      out.push(
        fromLogits(c.file, run.classes, Array.from(y.values.subarray(i * k, (i + 1) * k)), options.top)
      )
    })
  }
  return out
}

/**
 * `stepwise predict` as one call: classifies the image files of `paths` (files, or folders of
 * images) with the checkpoint at `checkpoint`, which must carry its run info. Fails naming the
 * file: a missing or undecodable image, a folder without images, a checkpoint without run info.
 */
export const files = (
  checkpoint: string,
  paths: ReadonlyArray<string>,
  options: Options = {}
): Effect.Effect<
  ReadonlyArray<Prediction>,
  Checkpoint.CheckpointError | SafetensorsError | PredictError | DataErrors.ImageReadError,
  FileSystem.FileSystem | Engine
> =>
  Effect.gen(function* () {
    const snapshot = yield* Checkpoint.load(checkpoint)
    const run = yield* Checkpoint.runOf(snapshot, checkpoint)
    if (run.inputShape[0] !== 3) {
      return yield* new PredictError({
        path: checkpoint,
        reason: `the model takes ${run.inputShape[0]}-channel inputs; image files give RGB (3 channels)`
      })
    }
    const list = yield* imageFiles(paths)
    // A damaged run info (a zero std, say) names the checkpoint it came from.
    const prepare = yield* Either.mapLeft(
      preprocess(run),
      (e) => new PredictError({ path: checkpoint, reason: e.message, cause: e })
    )
    const inputs = yield* Effect.forEach(list, (file) =>
      Effect.map(Image.load(file), (img) => ({ file, tensor: prepare(img) }))
    )
    return yield* Effect.acquireUseRelease(
      Checkpoint.trained(snapshot, checkpoint),
      (trained) => Effect.sync(() => images(trained, inputs, options)),
      (trained) =>
        Effect.sync(() => tf.dispose([...Object.values(trained.params), ...Object.values(trained.buffers)]))
    )
  })
