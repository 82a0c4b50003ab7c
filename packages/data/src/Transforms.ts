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

const checkPositiveInt = (name: string, v: number) => {
  if (!Number.isInteger(v) || v < 1)
    throw new InvalidArgument({ field: `${name} size`, value: v, reason: "must be a positive integer" })
}

/** torchvision's `Resize` output size as [width, height] (an int matches the smaller edge). */
export const resizedSize = Resample.resizedSize

/** `Resize(size)` with antialiased bilinear interpolation (Pillow's). Returns [w, h] via `resizedSize`. */
export const Resize = (size: number | readonly [number, number]): Transform<RgbImage, RgbImage> => {
  for (const s of typeof size === "number" ? [size] : size) checkPositiveInt("Resize", s)
  // Each Resize keeps its own filter-table cache (its images mostly share a size).
  const kernels = Resample.makeKernels()
  return (img) => {
    const [w, h] = resizedSize(img.width, img.height, size)
    if (w === img.width && h === img.height) return img
    return { width: w, height: h, data: kernels.resize(img.data, img.width, img.height, 3, w, h) }
  }
}

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
 */
export const CenterCrop = (size: number | readonly [number, number]): Transform<RgbImage, RgbImage> => {
  const [ch, cw] = typeof size === "number" ? [size, size] : size
  checkPositiveInt("CenterCrop", ch)
  checkPositiveInt("CenterCrop", cw)
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

/** Mirrors left-right with probability `p`; works on decoded images and on cached tensors. */
export const RandomHorizontalFlip = <A extends RgbImage | ImageTensor>(options: {
  readonly seed: number
  readonly p?: number
}): Transform<A, A> => {
  const base = Random.make(options.seed)
  const p = options.p ?? 0.5
  return (input, context) => {
    const [u] = Random.nextFloat(sampleState(base, context))
    if (!(u < p)) return input
    return ("shape" in input ? flipTensor(input) : flipImage(input as RgbImage)) as A
  }
}

/**
 * `RandomResizedCrop(size, scale, ratio)`: a crop of random area fraction and log-uniform aspect
 * ratio (10 attempts, then the central crop fallback, as torchvision), resized to `size`.
 */
export const RandomResizedCrop = (options: {
  readonly seed: number
  readonly size: number | readonly [number, number]
  readonly scale?: readonly [number, number]
  readonly ratio?: readonly [number, number]
}): Transform<RgbImage, RgbImage> => {
  // Seed state, sizes and the final Resize are built once; each sample only draws and crops.
  const base = Random.make(options.seed)
  const [outH, outW] = typeof options.size === "number" ? [options.size, options.size] : options.size
  const resize = Resize([outH, outW])
  const [sMin, sMax] = options.scale ?? [0.08, 1]
  const [rMin, rMax] = options.ratio ?? [3 / 4, 4 / 3]
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

/** `ToTensor()`: uint8 HWC RGB -> float32 CHW in [0, 1]. */
export const ToTensor =
  (): Transform<RgbImage, ImageTensor> =>
  (img): ImageTensor => {
    const hw = img.width * img.height
    const out = new Float32Array(3 * hw)
    for (let i = 0; i < hw; i++) {
      out[i] = BYTE_TO_UNIT[img.data[3 * i]]
      out[hw + i] = BYTE_TO_UNIT[img.data[3 * i + 1]]
      out[2 * hw + i] = BYTE_TO_UNIT[img.data[3 * i + 2]]
    }
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
 * Standardises CHW values in place of a copy: `(x - mean[c]) / std[c]`, in float32 like
 * torchvision (`sub_` then `div_`, each rounded to float32).
 */
export const normalizeCHW = (data: Float32Array, channels: number, params: NormalizeParams): Float32Array => {
  if (params.mean.length !== channels || params.std.length !== channels) {
    throw new InvalidArgument({
      field: "Normalize mean/std",
      value: { mean: params.mean, std: params.std },
      reason: `expected ${channels} values each, one per channel`
    })
  }
  return normalizeCHWInto(data, channels, params, new Float32Array(data.length))
}

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

/** `Normalize(mean, std)` as a tensor transform. */
export const Normalize =
  (params: NormalizeParams): Transform<ImageTensor, ImageTensor> =>
  (t) => ({ shape: t.shape, data: normalizeCHW(t.data, t.shape[0], params) })

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
