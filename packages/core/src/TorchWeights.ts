/**
 * PyTorch weights: parameters between this engine's layouts and PyTorch's, and whole
 * `state_dict`s (parameters and buffers, PyTorch's names) as safetensors files that
 * `model.load_state_dict(safetensors.torch.load_file(path))` takes as they are.
 */
import type { FileSystem, Error as PlatformError } from "@effect/platform"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either, Schema } from "effect"
import { Engine } from "./Engine.js"
import { SafetensorsError, WeightMismatch } from "./Errors.js"
import * as ModelSpec from "./ModelSpec.js"
import { type Buffers, type Layout, type Module, type Params, sameShape } from "./Module.js"
import * as Safetensors from "./Safetensors.js"

/** A tensor in PyTorch's layout: row-major values and a shape (what `state_dict` holds). */
export interface TorchTensor {
  readonly shape: ReadonlyArray<number>
  readonly data: Float32Array
}

export { WeightMismatch } from "./Errors.js"

const sizeOf = (shape: ReadonlyArray<number>) => shape.reduce((a, b) => a * b, 1)

/**
 * For each of our flat indices, the matching index in PyTorch's layout (undefined for "same",
 * where they coincide): conv2d [kh, kw, in, out] -> [out, in, kh, kw]; linear [in, out] ->
 * [out, in], with the inputs of a flattened NHWC map moved to their NCHW place.
 */
const torchIndex = (layout: Layout, shape: ReadonlyArray<number>): Int32Array | undefined => {
  switch (layout._tag) {
    case "same":
      return undefined
    case "conv2d": {
      const [kh, kw, cin, cout] = shape
      const idx = new Int32Array(kh * kw * cin * cout)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++)
          for (let i = 0; i < cin; i++)
            for (let o = 0; o < cout; o++)
              idx[((y * kw + x) * cin + i) * cout + o] = ((o * cin + i) * kh + y) * kw + x
      return idx
    }
    case "linear":
    case "linearAfterFlatten": {
      const [nIn, nOut] = shape
      const idx = new Int32Array(nIn * nOut)
      const torchIn = inputPermutation(layout, nIn)
      for (let r = 0; r < nIn; r++) for (let o = 0; o < nOut; o++) idx[r * nOut + o] = o * nIn + torchIn[r]
      return idx
    }
  }
}

/** Our layout -> PyTorch's for one parameter. */
const toTorchValues = (layout: Layout, shape: ReadonlyArray<number>, v: Float32Array): TorchTensor => {
  const idx = torchIndex(layout, shape)
  if (idx === undefined) return { shape, data: v.slice() }
  const out = new Float32Array(v.length)
  for (let j = 0; j < idx.length; j++) out[idx[j]] = v[j]
  return { shape: torchShape(layout, shape), data: out }
}

/**
 * For each of our input rows, the PyTorch input column: identity, or for a flattened NHWC map
 * the NCHW position of (h, w, c).
 */
const inputPermutation = (layout: Layout, nIn: number): Int32Array => {
  const perm = new Int32Array(nIn)
  if (layout._tag !== "linearAfterFlatten") {
    for (let i = 0; i < nIn; i++) perm[i] = i
    return perm
  }
  const [c, h, w] = layout.chw
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let ch = 0; ch < c; ch++) perm[(y * w + x) * c + ch] = (ch * h + y) * w + x
  return perm
}

const torchShape = (layout: Layout, shape: ReadonlyArray<number>): ReadonlyArray<number> =>
  layout._tag === "conv2d"
    ? [shape[3], shape[2], shape[0], shape[1]]
    : layout._tag === "same"
      ? shape
      : [shape[1], shape[0]]

/** PyTorch layout -> ours for one parameter (the inverse of `toTorchValues`). */
const fromTorchValues = (layout: Layout, shape: ReadonlyArray<number>, t: Float32Array): Float32Array => {
  const idx = torchIndex(layout, shape)
  if (idx === undefined) return t.slice()
  const out = new Float32Array(t.length)
  for (let j = 0; j < idx.length; j++) out[j] = t[idx[j]]
  return out
}

/** The parameters as PyTorch's `state_dict` would hold them (same names, PyTorch shapes). */
export const toTorch = (model: Module, params: Params): Record<string, TorchTensor> => {
  const out: Record<string, TorchTensor> = {}
  for (const spec of model.specs) {
    const values = params[spec.name].dataSync() as Float32Array
    out[spec.name] = toTorchValues(spec.layout, spec.shape, values)
  }
  return out
}

/**
 * Parameters from a PyTorch `state_dict` (names and PyTorch shapes); every parameter of the
 * model must be present with the right shape, else `WeightMismatch` names the parameter and
 * both shapes (nothing is allocated then). Tensors are made on the engine, which it requires.
 */
export const fromTorch = (
  model: Module,
  weights: { readonly [name: string]: TorchTensor }
): Effect.Effect<Params, WeightMismatch, Engine> =>
  Effect.zipRight(
    Engine,
    Effect.suspend(() => unsafeFromTorch(model, weights))
  )

/** `fromTorch` for code already on an engine (tests): no engine in the type. */
export const unsafeFromTorch = (
  model: Module,
  weights: { readonly [name: string]: TorchTensor }
): Either.Either<Params, WeightMismatch> => {
  for (const spec of model.specs) {
    const w = weights[spec.name]
    const expected = torchShape(spec.layout, spec.shape)
    if (w === undefined)
      return Either.left(new WeightMismatch({ parameter: spec.name, reason: "missing", expected }))
    if (!sameShape(w.shape, expected)) {
      return Either.left(
        new WeightMismatch({
          parameter: spec.name,
          reason: `shape [${w.shape.join(", ")}], the model wants [${expected.join(", ")}] (PyTorch's layout)`,
          expected,
          actual: [...w.shape]
        })
      )
    }
    if (w.data.length !== sizeOf(expected)) {
      return Either.left(
        new WeightMismatch({
          parameter: spec.name,
          reason: `${w.data.length} values for shape [${expected.join(", ")}]`,
          expected,
          actual: [...w.shape]
        })
      )
    }
  }
  const out: Record<string, tf.Tensor> = {}
  for (const spec of model.specs) {
    out[spec.name] = tf.tensor(fromTorchValues(spec.layout, spec.shape, weights[spec.name].data), [
      ...spec.shape
    ])
  }
  return Either.right(out)
}

/** PyTorch's shape of each parameter (for documentation and checks). */
export const torchShapes = (model: Module): Record<string, ReadonlyArray<number>> =>
  Object.fromEntries(model.specs.map((s) => [s.name, torchShape(s.layout, s.shape)]))

/**
 * Buffers from a PyTorch `state_dict` (BatchNorm's `running_mean`, `running_var`,
 * `num_batches_tracked`: same names, same layout; the int64 count arrives as a float). Extra
 * names are left alone (the same dict usually holds the parameters too).
 */
export const buffersFromTorch = (
  model: Module,
  weights: { readonly [name: string]: TorchTensor }
): Effect.Effect<Buffers, WeightMismatch, Engine> =>
  Effect.zipRight(
    Engine,
    Effect.suspend(() => unsafeBuffersFromTorch(model, weights))
  )

/** `buffersFromTorch` for code already on an engine (tests): no engine in the type. */
export const unsafeBuffersFromTorch = (
  model: Module,
  weights: { readonly [name: string]: TorchTensor }
): Either.Either<Buffers, WeightMismatch> => {
  const bad = checkBuffers(model, weights)
  if (bad !== undefined) return Either.left(bad)
  return Either.right(
    Object.fromEntries(
      model.buffers.map((b) => [b.name, tf.tensor(weights[b.name].data, [...b.shape], "float32")])
    )
  )
}

/** The first buffer that is missing or misshapen, without allocating anything. */
const checkBuffers = (
  model: Module,
  weights: { readonly [name: string]: TorchTensor }
): WeightMismatch | undefined => {
  for (const spec of model.buffers) {
    const w = weights[spec.name]
    if (w === undefined)
      return new WeightMismatch({ parameter: spec.name, reason: "missing", expected: spec.shape })
    if (!sameShape(w.shape, spec.shape) || w.data.length !== sizeOf(spec.shape))
      return new WeightMismatch({
        parameter: spec.name,
        reason: `shape [${w.shape.join(", ")}], the model's buffer is [${spec.shape.join(", ")}]`,
        expected: spec.shape,
        actual: [...w.shape]
      })
  }
  return undefined
}

/** The buffers as PyTorch's `state_dict` holds them. */
export const buffersToTorch = (model: Module, buffers: Buffers): Record<string, TorchTensor> =>
  Object.fromEntries(
    model.buffers.map((b) => [
      b.name,
      { shape: b.shape, data: (buffers[b.name].dataSync() as Float32Array).slice() }
    ])
  )

// ------------------------------------------------------------------ whole state_dicts and files

/** A model's weights: what `Module.init` / `initBuffers` make and a `state_dict` holds. */
export interface Weights {
  readonly params: Params
  readonly buffers: Buffers
}

/**
 * PyTorch keeps BatchNorm's batch count as int64 (`num_batches_tracked` is the one integer
 * buffer of torch.nn); everything else a model holds is float32.
 */
const isCount = (name: string) => name === "num_batches_tracked" || name.endsWith(".num_batches_tracked")

/**
 * The model's `state_dict` as PyTorch holds it: parameters and buffers under PyTorch's names, in
 * PyTorch's layouts ([out, in, kh, kw], [out, in]), float32, the batch counts int64.
 */
export const stateDict = (model: Module, weights: Weights): Record<string, Safetensors.HostTensor> =>
  torchStateDict(
    model,
    (name) => weights.params[name].dataSync() as Float32Array,
    (name) => weights.buffers[name].dataSync() as Float32Array
  )

const torchStateDict = (
  model: Module,
  param: (name: string) => Float32Array,
  buffer: (name: string) => Float32Array
): Record<string, Safetensors.HostTensor> => {
  const out: Record<string, Safetensors.HostTensor> = {}
  for (const spec of model.specs) {
    const t = toTorchValues(spec.layout, spec.shape, param(spec.name))
    out[spec.name] = Safetensors.tensor(t.data, t.shape)
  }
  for (const b of model.buffers) {
    const v = buffer(b.name)
    out[b.name] = isCount(b.name)
      ? Safetensors.tensor(
          BigInt64Array.from(v, (x) => BigInt(Math.round(x))),
          b.shape
        )
      : Safetensors.tensor(v.slice(), b.shape)
  }
  return out
}

/** A model's weights on the host in this engine's layout (a checkpoint's `params` and `buffers`). */
export interface HostWeights {
  readonly params: { readonly [name: string]: Safetensors.HostTensor }
  readonly buffers: { readonly [name: string]: Safetensors.HostTensor }
}

/**
 * The `state_dict` of host weights in this engine's layout (no tensor engine needed): every
 * parameter and buffer of the model, nothing else, float32, each with the model's shape here
 * (`expected` and `actual` in this engine's layout).
 */
export const stateDictOfHost = (
  model: Module,
  host: HostWeights,
  path?: string
): Either.Either<Record<string, Safetensors.HostTensor>, WeightMismatch> => {
  const names = Either.mapLeft(
    checkNames(
      [...model.specs.map((s) => s.name), ...model.buffers.map((b) => b.name)],
      [...Object.keys(host.params), ...Object.keys(host.buffers)]
    ),
    (e) => inFile(e, path)
  )
  if (Either.isLeft(names)) return Either.left(names.left)
  const entries = [
    ...model.specs.map((s) => [s.name, s.shape, host.params[s.name]] as const),
    ...model.buffers.map((b) => [b.name, b.shape, host.buffers[b.name]] as const)
  ]
  for (const [name, shape, t] of entries) {
    const fail = (reason: string, actual?: ReadonlyArray<number>) =>
      Either.left(new WeightMismatch({ parameter: name, reason, expected: shape, actual, path }))
    if (t === undefined) return fail("missing (a parameter saved as a buffer, or the other way round)")
    if (t.dtype !== "F32") return fail(`is ${t.dtype}, expected F32`)
    if (!sameShape(t.shape, shape) || t.data.length !== sizeOf(shape))
      return fail(
        `shape [${t.shape.join(", ")}], the model wants [${shape.join(", ")}] (this engine's layout)`,
        [...t.shape]
      )
  }
  return Either.right(
    torchStateDict(
      model,
      (name) => host.params[name].data as Float32Array,
      (name) => host.buffers[name].data as Float32Array
    )
  )
}

/** The same mismatch, naming the file the weights came from. */
const inFile = (e: WeightMismatch, path: string | undefined): WeightMismatch =>
  path === undefined
    ? e
    : new WeightMismatch({
        parameter: e.parameter,
        reason: e.reason,
        expected: e.expected,
        actual: e.actual,
        missing: e.missing,
        unexpected: e.unexpected,
        path
      })

/** Missing and unexpected names, as `load_state_dict(strict=True)` reports them. */
const checkNames = (
  wanted: ReadonlyArray<string>,
  given: ReadonlyArray<string>
): Either.Either<void, WeightMismatch> => {
  const missing = wanted.filter((n) => !given.includes(n))
  const unexpected = given.filter((n) => !wanted.includes(n))
  if (missing.length === 0 && unexpected.length === 0) return Either.void
  return Either.left(
    new WeightMismatch({
      parameter: missing[0] ?? unexpected[0],
      reason: [
        ...(missing.length > 0 ? [`missing ${missing.join(", ")}`] : []),
        ...(unexpected.length > 0 ? [`unexpected ${unexpected.join(", ")}`] : [])
      ].join("; "),
      missing,
      unexpected
    })
  )
}

/** A host tensor as float32 values, or why its element type cannot be one of the model's. */
const asFloat32 = (name: string, t: Safetensors.HostTensor): Either.Either<TorchTensor, string> => {
  if (t.dtype === "F32") return Either.right({ shape: t.shape, data: t.data as Float32Array })
  // An integer count is exact in float32 up to 2^24 batches, far more than a run trains.
  if (isCount(name) && (t.dtype === "I64" || t.dtype === "I32"))
    return Either.right({
      shape: t.shape,
      data: Float32Array.from(t.data as ArrayLike<number | bigint>, Number)
    })
  return Either.left(
    `is ${t.dtype}, expected ${isCount(name) ? "I64 (or F32)" : "F32 (save the model after model.float())"}`
  )
}

/**
 * A model's weights from a whole PyTorch `state_dict` (strict, like `load_state_dict`): every
 * parameter and buffer present, nothing else, each with PyTorch's shape and float32 (int64 for
 * the batch counts). Nothing is allocated when it fails. Tensors are made on the engine, which
 * it requires.
 */
export const fromStateDict = (
  model: Module,
  tensors: { readonly [name: string]: Safetensors.HostTensor },
  path?: string
): Effect.Effect<Weights, WeightMismatch, Engine> =>
  Effect.zipRight(
    Engine,
    Effect.suspend(() => unsafeFromStateDict(model, tensors, path))
  )

/** `fromStateDict` for code already on an engine (tests): no engine in the type. */
export const unsafeFromStateDict = (
  model: Module,
  tensors: { readonly [name: string]: Safetensors.HostTensor },
  path?: string
): Either.Either<Weights, WeightMismatch> => {
  const at = (e: WeightMismatch) => inFile(e, path)
  const wanted = [...model.specs.map((s) => s.name), ...model.buffers.map((b) => b.name)]
  const names = checkNames(wanted, Object.keys(tensors))
  if (Either.isLeft(names)) return Either.left(at(names.left))
  const host: Record<string, TorchTensor> = {}
  for (const name of wanted) {
    const t = asFloat32(name, tensors[name])
    if (Either.isLeft(t)) return Either.left(at(new WeightMismatch({ parameter: name, reason: t.left })))
    host[name] = t.right
  }
  // Buffers are checked before fromTorch makes the parameters' tensors: a failure allocates nothing.
  const bad = checkBuffers(model, host)
  if (bad !== undefined) return Either.left(at(bad))
  return Either.flatMap(Either.mapLeft(unsafeFromTorch(model, host), at), (params) =>
    Either.map(unsafeBuffersFromTorch(model, host), (buffers) => ({ params, buffers }))
  )
}

/** What a weights file says besides the tensors (our exports write all of it). */
export interface Metadata {
  readonly classes?: ReadonlyArray<string> | undefined
  /** The per-channel statistics inputs are standardized with (absent: none). */
  readonly normalizer?:
    | { readonly mean: ReadonlyArray<number>; readonly std: ReadonlyArray<number> }
    | undefined
  readonly model?: ModelSpec.Model | undefined
  /** [C, H, W] the model was built for. */
  readonly inputShape?: ReadonlyArray<number> | undefined
}

/** Metadata keys: PyTorch users read `classes`, `mean`, `std`; ours carry the model itself. */
export const META_MODEL = "stepwise.model"
export const META_INPUT_SHAPE = "stepwise.inputShape"

/**
 * A safetensors file of a `state_dict` (`stateDict`, `stateDictOfHost`; what `safetensors.torch.load_file` gives
 * `model.load_state_dict`), with `format: pt` as Hugging Face's tools expect, and the metadata
 * as JSON strings.
 */
export const toFile = (
  stateDict: { readonly [name: string]: Safetensors.HostTensor },
  metadata: Metadata = {}
): Safetensors.File => {
  const meta: Record<string, string> = { format: "pt" }
  if (metadata.classes !== undefined) meta.classes = JSON.stringify(metadata.classes)
  if (metadata.normalizer !== undefined) {
    meta.mean = JSON.stringify(metadata.normalizer.mean)
    meta.std = JSON.stringify(metadata.normalizer.std)
  }
  if (metadata.model !== undefined)
    meta[META_MODEL] = JSON.stringify(Schema.encodeSync(ModelSpec.Model)(metadata.model))
  if (metadata.inputShape !== undefined) meta[META_INPUT_SHAPE] = JSON.stringify(metadata.inputShape)
  return { tensors: stateDict, metadata: meta }
}

const Numbers = Schema.parseJson(Schema.Array(Schema.Number))
const MetaFields = Schema.Struct({
  classes: Schema.optional(Schema.parseJson(Schema.Array(Schema.String))),
  mean: Schema.optional(Numbers),
  std: Schema.optional(Numbers),
  [META_MODEL]: Schema.optional(Schema.parseJson()),
  [META_INPUT_SHAPE]: Schema.optional(Schema.parseJson(Schema.Array(Schema.Int.pipe(Schema.positive()))))
})

/**
 * The metadata of a weights file (absent keys stay absent; a PyTorch user's file usually has
 * none). A malformed value, or `mean` without `std`, names the key.
 */
export const metadataOf = (
  file: Safetensors.File,
  path = "<memory>"
): Either.Either<Metadata, SafetensorsError | ModelSpec.ModelSpecError> => {
  const fail = (reason: string) => new SafetensorsError({ path, reason })
  return Either.gen(function* () {
    const m = yield* Either.mapLeft(Schema.decodeUnknownEither(MetaFields)(file.metadata), (e) =>
      fail(`metadata: ${e.message}`)
    )
    if ((m.mean === undefined) !== (m.std === undefined))
      return yield* Either.left(fail("metadata: mean and std go together, one of them is missing"))
    const raw = m[META_MODEL]
    const model = raw === undefined ? undefined : yield* ModelSpec.decode(raw)
    return {
      classes: m.classes,
      normalizer: m.mean === undefined || m.std === undefined ? undefined : { mean: m.mean, std: m.std },
      model,
      inputShape: m[META_INPUT_SHAPE]
    }
  })
}

/** Writes the model's `state_dict` to `path` atomically (temporary sibling, fsync, rename). */
export const write = (path: string, model: Module, weights: Weights, metadata: Metadata = {}) =>
  Effect.suspend(() => Safetensors.write(path, toFile(stateDict(model, weights), metadata)))

/** Reads a `state_dict` file into `model`'s weights (strict: names, shapes, dtypes). */
export const read = (
  path: string,
  model: Module
): Effect.Effect<
  Weights,
  SafetensorsError | WeightMismatch | PlatformError.PlatformError,
  FileSystem.FileSystem | Engine
> => Effect.flatMap(Safetensors.read(path), (file) => fromStateDict(model, file.tensors, path))

/**
 * A file we exported, on its own: the model rebuilt from its `stepwise.model` and
 * `stepwise.inputShape` metadata, its weights, and the rest of the metadata.
 */
export const load = (
  path: string
): Effect.Effect<
  { readonly built: ModelSpec.Built; readonly weights: Weights; readonly metadata: Metadata },
  SafetensorsError | ModelSpec.ModelSpecError | WeightMismatch | PlatformError.PlatformError,
  FileSystem.FileSystem | Engine
> =>
  Effect.gen(function* () {
    const file = yield* Safetensors.read(path)
    const metadata = yield* metadataOf(file, path)
    if (metadata.model === undefined || metadata.inputShape === undefined)
      return yield* new SafetensorsError({
        path,
        reason: `no ${META_MODEL} / ${META_INPUT_SHAPE} metadata: give the model (TorchWeights.read)`
      })
    const built = yield* ModelSpec.build(metadata.model, metadata.inputShape)
    const weights = yield* fromStateDict(built.module, file.tensors, path)
    return { built, weights, metadata }
  })
