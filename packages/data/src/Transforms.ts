/**
 * torchvision's transforms as plain functions.
 *
 * A transform is `(input, context) => output`. The context says which sample of which epoch is
 * being transformed; random transforms derive their randomness from (their seed, epoch, index),
 * so an augmentation is reproducible, independent of decoding order and concurrency, and still
 * different every epoch.
 */

import { Either } from "effect"
import { InvalidArgument, InvalidNormalizer } from "./Errors.js"
import type { RgbImage } from "./Image.js"
import * as Random from "./Random.js"
import * as Resample from "./Resample.js"

/** A CHW float32 tensor, like torchvision's `ToTensor` output. */
export interface ImageTensor {
  readonly shape: readonly [number, number, number]
  readonly data: Float32Array
}

export interface Context {
  readonly epoch: number
  readonly index: number
}

export type Transform<A, B> = (input: A, context: Context) => B

/** The context for transforms applied outside a loader (epoch 0, index 0). */
export const noContext: Context = { epoch: 0, index: 0 }

/** `InvalidArgument` unless every size is a positive integer. */
const checkSize = <S extends number | readonly [number, number]>(
  name: string,
  size: S
): Either.Either<S, InvalidArgument> => {
  for (const v of typeof size === "number" ? [size] : (size as readonly [number, number])) {
    if (!Number.isInteger(v) || v < 1)
      return Either.left(
        new InvalidArgument({ field: `${name} size`, value: v, reason: "must be a positive integer" })
      )
  }
  return Either.right(size)
}

/** torchvision's `Resize` output size as [width, height] (an int matches the smaller edge). */
export const resizedSize = Resample.resizedSize

/**
 * `Resize(size)` with antialiased bilinear interpolation (Pillow's). Returns [w, h] via
 * `resizedSize`; `InvalidArgument` unless the size is positive integers.
 */
export const Resize = (
  size: number | readonly [number, number]
): Either.Either<Transform<RgbImage, RgbImage>, InvalidArgument> =>
  Either.map(checkSize("Resize", size), resizeTo)

const resizeTo = (size: number | readonly [number, number]): Transform<RgbImage, RgbImage> => {
  // Each Resize keeps its own filter-table cache (its images mostly share a size).
  const kernels = Resample.makeKernels(256, Resample.simdModule())
  return (img) => {
    const [w, h] = resizedSize(img.width, img.height, size)
    if (w === img.width && h === img.height) return img
    return { width: w, height: h, data: kernels.resize(img.data, img.width, img.height, 3, w, h) }
  }
}

/** `InvalidArgument` unless `p` is a probability. */
const checkProbability = (name: string, p: number): Either.Either<number, InvalidArgument> =>
  p >= 0 && p <= 1
    ? Either.right(p)
    : Either.left(new InvalidArgument({ field: `${name} p`, value: p, reason: "must be between 0 and 1" }))

/** Crops the rectangle at (left, top) of the given size (pixels outside the image are black). */
export const crop = (img: RgbImage, left: number, top: number, width: number, height: number): RgbImage => {
  const out = new Uint8Array(width * height * 3)
  for (let y = 0; y < height; y++) {
    const sy = top + y
    if (sy < 0 || sy >= img.height) continue
    for (let x = 0; x < width; x++) {
      const sx = left + x
      if (sx < 0 || sx >= img.width) continue
      const s = (sy * img.width + sx) * 3
      const d = (y * width + x) * 3
      out[d] = img.data[s]
      out[d + 1] = img.data[s + 1]
      out[d + 2] = img.data[s + 2]
    }
  }
  return { width, height, data: out }
}

/** Python's `round`: halves go to the even neighbour (torchvision computes crop offsets with it). */
const roundHalfEven = (v: number): number => {
  const f = Math.floor(v)
  const d = v - f
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1
}

/**
 * `CenterCrop(size)`: an int is a square; a pair is [h, w]. Like torchvision, an image smaller
 * than the crop is first zero-padded (extra pixel on the right/bottom), then cropped centrally.
 * `InvalidArgument` unless the size is positive integers.
 */
export const CenterCrop = (
  size: number | readonly [number, number]
): Either.Either<Transform<RgbImage, RgbImage>, InvalidArgument> =>
  Either.map(checkSize("CenterCrop", size), centerCrop)

const centerCrop = (size: number | readonly [number, number]): Transform<RgbImage, RgbImage> => {
  const [ch, cw] = typeof size === "number" ? [size, size] : size
  return (img) => {
    const padLeft = cw > img.width ? Math.floor((cw - img.width) / 2) : 0
    const padTop = ch > img.height ? Math.floor((ch - img.height) / 2) : 0
    const w = Math.max(img.width, cw)
    const h = Math.max(img.height, ch)
    const top = roundHalfEven((h - ch) / 2) - padTop
    const left = roundHalfEven((w - cw) / 2) - padLeft
    return crop(img, left, top, cw, ch)
  }
}

/** The generator state a random transform uses for one sample of one epoch (`base` is `Random.make(seed)`). */
export const sampleState = (base: Random.State, context: Context): Random.State =>
  Random.foldIn(Random.foldIn(base, context.epoch), context.index)

const flipImage = (img: RgbImage): RgbImage => {
  const out = new Uint8Array(img.data.length)
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const s = (y * img.width + x) * 3
      const d = (y * img.width + (img.width - 1 - x)) * 3
      out[d] = img.data[s]
      out[d + 1] = img.data[s + 1]
      out[d + 2] = img.data[s + 2]
    }
  }
  return { width: img.width, height: img.height, data: out }
}

const flipTensor = (t: ImageTensor): ImageTensor => {
  const [c, h, w] = t.shape
  const out = new Float32Array(t.data.length)
  for (let r = 0; r < c * h; r++) {
    for (let x = 0; x < w; x++) out[r * w + (w - 1 - x)] = t.data[r * w + x]
  }
  return { shape: t.shape, data: out }
}

/**
 * Mirrors left-right with probability `p`; works on decoded images and on cached tensors.
 * `InvalidArgument` for a bad seed or `p`.
 */
export const RandomHorizontalFlip = <A extends RgbImage | ImageTensor>(options: {
  readonly seed: number
  readonly p?: number
}): Either.Either<Transform<A, A>, InvalidArgument> =>
  Either.map(
    Either.all([Random.make(options.seed), checkProbability("RandomHorizontalFlip", options.p ?? 0.5)]),
    ([base, p]): Transform<A, A> =>
      (input, context) => {
        const [u] = Random.nextFloat(sampleState(base, context))
        if (!(u < p)) return input
        return ("shape" in input ? flipTensor(input) : flipImage(input as RgbImage)) as A
      }
  )

export interface RandomResizedCropOptions {
  readonly seed: number
  readonly size: number | readonly [number, number]
  readonly scale?: readonly [number, number]
  readonly ratio?: readonly [number, number]
}

/**
 * `RandomResizedCrop(size, scale, ratio)`: a crop of random area fraction and log-uniform aspect
 * ratio (10 attempts, then the central crop fallback, as torchvision), resized to `size`.
 * `InvalidArgument` for a bad seed, size, scale or ratio (torchvision warns on a decreasing
 * range; here it is refused, since it only ever means swapped bounds).
 */
export const RandomResizedCrop = (
  options: RandomResizedCropOptions
): Either.Either<Transform<RgbImage, RgbImage>, InvalidArgument> =>
  Either.map(
    Either.all([
      Random.make(options.seed),
      checkSize("RandomResizedCrop", options.size),
      checkRange("RandomResizedCrop scale", options.scale ?? [0.08, 1]),
      checkRange("RandomResizedCrop ratio", options.ratio ?? [3 / 4, 4 / 3])
    ]),
    ([base, size, scale, ratio]) => randomResizedCrop(base, size, scale, ratio)
  )

/** `InvalidArgument` unless `[lo, hi]` are positive, finite and in order. */
const checkRange = (
  field: string,
  range: readonly [number, number]
): Either.Either<readonly [number, number], InvalidArgument> =>
  range[0] > 0 && range[0] <= range[1] && Number.isFinite(range[1])
    ? Either.right(range)
    : Either.left(new InvalidArgument({ field, value: range, reason: "must be [lo, hi] with 0 < lo <= hi" }))

const randomResizedCrop = (
  base: Random.State,
  size: number | readonly [number, number],
  [sMin, sMax]: readonly [number, number],
  [rMin, rMax]: readonly [number, number]
): Transform<RgbImage, RgbImage> => {
  // Seed state, sizes and the final Resize are built once; each sample only draws and crops.
  const [outH, outW] = typeof size === "number" ? [size, size] : size
  const resize = resizeTo([outH, outW])
  return (img, context) => {
    const area = img.width * img.height
    let s = sampleState(base, context)
    let box: [number, number, number, number] | undefined
    for (let attempt = 0; attempt < 10 && !box; attempt++) {
      const [u1, s1] = Random.nextFloat(s)
      const [u2, s2] = Random.nextFloat(s1)
      s = s2
      const target = area * (sMin + (sMax - sMin) * u1)
      const aspect = Math.exp(Math.log(rMin) + (Math.log(rMax) - Math.log(rMin)) * u2)
      const w = Math.round(Math.sqrt(target * aspect))
      const h = Math.round(Math.sqrt(target / aspect))
      if (w > 0 && h > 0 && w <= img.width && h <= img.height) {
        const [i, s3] = Random.nextInt(s, img.height - h + 1)
        const [j, s4] = Random.nextInt(s3, img.width - w + 1)
        s = s4
        box = [j, i, w, h]
      }
    }
    if (!box) {
      const inRatio = img.width / img.height
      let w = img.width
      let h = img.height
      if (inRatio < rMin) h = Math.round(w / rMin)
      else if (inRatio > rMax) w = Math.round(h * rMax)
      box = [Math.trunc((img.width - w) / 2), Math.trunc((img.height - h) / 2), w, h]
    }
    const cropped = crop(img, box[0], box[1], box[2], box[3])
    return resize(cropped, context)
  }
}

/** 0..255 / 255 in float32, as torchvision's `img.float().div(255)`. */
const BYTE_TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => v / 255)

/**
 * `ToTensor` writing into `out` from `offset` (`3 * width * height` values): how a whole dataset
 * is decoded into one buffer without a float32 array per image.
 */
export const toTensorInto = (img: RgbImage, out: Float32Array, offset: number): void => {
  const hw = img.width * img.height
  const data = img.data
  for (let i = 0; i < hw; i++) {
    out[offset + i] = BYTE_TO_UNIT[data[3 * i]]
    out[offset + hw + i] = BYTE_TO_UNIT[data[3 * i + 1]]
    out[offset + 2 * hw + i] = BYTE_TO_UNIT[data[3 * i + 2]]
  }
}

/** `ToTensor()`: uint8 HWC RGB -> float32 CHW in [0, 1]. */
export const ToTensor =
  (): Transform<RgbImage, ImageTensor> =>
  (img): ImageTensor => {
    const out = new Float32Array(3 * img.width * img.height)
    toTensorInto(img, out, 0)
    return { shape: [3, img.height, img.width], data: out }
  }

/** A per-channel standardiser: the data `Normalize` needs, reusable on samples and datasets. */
export interface NormalizeParams {
  readonly mean: ReadonlyArray<number>
  readonly std: ReadonlyArray<number>
}

/**
 * Checks `Normalize` parameters: one mean and one std per channel, every value finite, no std
 * zero in float32 (torchvision's `Normalize` raises for a zero std: it would divide by zero).
 * The error names the first bad channel.
 */
export const checkNormalize = (
  params: NormalizeParams,
  channels: number
): Either.Either<NormalizeParams, InvalidArgument | InvalidNormalizer> => {
  if (params.mean.length !== channels || params.std.length !== channels) {
    return Either.left(
      new InvalidArgument({
        field: "Normalize mean/std",
        value: { mean: params.mean, std: params.std },
        reason: `expected ${channels} values each, one per channel`
      })
    )
  }
  for (let c = 0; c < channels; c++) {
    const mean = params.mean[c]
    const std = params.std[c]
    const bad = (reason: string) => Either.left(new InvalidNormalizer({ channel: c, mean, std, reason }))
    if (!Number.isFinite(mean)) return bad("has a mean that is not a finite number")
    if (!Number.isFinite(std)) return bad("has a std that is not a finite number")
    if (Math.fround(std) === 0)
      return bad(
        "has std 0 (every value of that channel is the same, e.g. solid-colour images): standardising would divide by zero"
      )
  }
  return Either.right(params)
}

/**
 * Standardises CHW values into a copy: `(x - mean[c]) / std[c]`, in float32 like torchvision
 * (`sub_` then `div_`, each rounded to float32). The parameters are checked by `checkNormalize`.
 */
export const normalizeCHW = (
  data: Float32Array,
  channels: number,
  params: NormalizeParams
): Either.Either<Float32Array, InvalidArgument | InvalidNormalizer> =>
  Either.map(checkNormalize(params, channels), (checked) =>
    normalizeCHWInto(data, channels, checked, new Float32Array(data.length))
  )

/** `normalizeCHW` writing into `out` (same length as `data`), without the parameter check. */
export const normalizeCHWInto = (
  data: Float32Array,
  channels: number,
  params: NormalizeParams,
  out: Float32Array
): Float32Array => {
  const hw = data.length / channels
  for (let c = 0; c < channels; c++) {
    const m = Math.fround(params.mean[c])
    const s = Math.fround(params.std[c])
    const base = c * hw
    for (let i = 0; i < hw; i++) out[base + i] = Math.fround(data[base + i] - m) / s
  }
  return out
}

/**
 * `Normalize(mean, std)` as a tensor transform for `channels`-channel tensors (3, what `ToTensor`
 * makes), checked once here by `checkNormalize`, the dataset path's check.
 */
export const Normalize = (
  params: NormalizeParams,
  channels = 3
): Either.Either<Transform<ImageTensor, ImageTensor>, InvalidArgument | InvalidNormalizer> =>
  Either.map(checkNormalize(params, channels), (checked) => (t: ImageTensor): ImageTensor => {
    // The pipeline fixes the channel count (ToTensor makes 3); another count is a mis-built pipeline.
    if (t.shape[0] !== channels)
      throw new InvalidArgument({
        field: "Normalize input channels",
        value: t.shape[0],
        reason: `expected ${channels}`
      })
    return {
      shape: t.shape,
      data: normalizeCHWInto(t.data, channels, checked, new Float32Array(t.data.length))
    }
  })

/** Runs transforms left to right (torchvision's `Compose`). */
export function Compose<A, B>(t1: Transform<A, B>): Transform<A, B>
export function Compose<A, B, C>(t1: Transform<A, B>, t2: Transform<B, C>): Transform<A, C>
export function Compose<A, B, C, D>(
  t1: Transform<A, B>,
  t2: Transform<B, C>,
  t3: Transform<C, D>
): Transform<A, D>
export function Compose<A, B, C, D, E>(
  t1: Transform<A, B>,
  t2: Transform<B, C>,
  t3: Transform<C, D>,
  t4: Transform<D, E>
): Transform<A, E>
export function Compose<A, B, C, D, E, F>(
  t1: Transform<A, B>,
  t2: Transform<B, C>,
  t3: Transform<C, D>,
  t4: Transform<D, E>,
  t5: Transform<E, F>
): Transform<A, F>
export function Compose(...ts: ReadonlyArray<Transform<any, any>>): Transform<any, any> {
  return (input, context) => ts.reduce((acc, t) => t(acc, context), input)
}
