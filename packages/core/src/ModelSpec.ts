import { Either, ParseResult, Schema } from "effect"
import { ModelSpecError } from "./Errors.js"
import * as Module from "./Module.js"

export { ModelSpecError } from "./Errors.js"

/**
 * Models as data: a model is a list of layer specs (PyTorch's class names and argument names in
 * camelCase) that a recipe can hold, built against an input shape so every size a layer needs
 * from its input (`inChannels`, `inFeatures`, `numFeatures`) is inferred; given explicitly it is
 * checked. Shapes here are PyTorch's, without the batch dimension: [C, H, W] or [features].
 */

const PosInt = Schema.Int.pipe(Schema.positive())
const NonNegInt = Schema.Int.pipe(Schema.nonNegative())
const PairOf = <A>(s: Schema.Schema<A, A>) => Schema.Union(s, Schema.Tuple(s, s))
const Probability = Schema.Number.pipe(Schema.between(0, 1))
const Name = Schema.optional(
  Schema.String.annotations({
    description:
      "Parameter prefix (`conv1` gives `conv1.weight`); defaults to the layer's index, as nn.Sequential"
  })
)
const layer = <T extends string, F extends Schema.Struct.Fields>(type: T, fields: F, description: string) =>
  Schema.Struct({ type: Schema.Literal(type), name: Name, ...fields }).annotations({ description })

export const Conv2d = layer(
  "Conv2d",
  {
    inChannels: Schema.optional(PosInt),
    outChannels: PosInt,
    kernelSize: PairOf(PosInt),
    stride: Schema.optional(PairOf(PosInt)),
    padding: Schema.optional(Schema.Union(PairOf(NonNegInt), Schema.Literal("same", "valid"))),
    dilation: Schema.optional(PairOf(PosInt)),
    bias: Schema.optional(Schema.Boolean)
  },
  "nn.Conv2d (stride 1, padding 0, dilation 1, bias true)"
)
export const Linear = layer(
  "Linear",
  { inFeatures: Schema.optional(PosInt), outFeatures: PosInt, bias: Schema.optional(Schema.Boolean) },
  "nn.Linear"
)
const poolFields = {
  kernelSize: PairOf(PosInt),
  stride: Schema.optional(PairOf(PosInt)),
  padding: Schema.optional(PairOf(NonNegInt))
}
export const MaxPool2d = layer("MaxPool2d", poolFields, "nn.MaxPool2d (stride = kernelSize, padding 0)")
export const AvgPool2d = layer(
  "AvgPool2d",
  { ...poolFields, countIncludePad: Schema.optional(Schema.Boolean) },
  "nn.AvgPool2d (stride = kernelSize, padding 0, countIncludePad true)"
)
export const AdaptiveAvgPool2d = layer(
  "AdaptiveAvgPool2d",
  { outputSize: PairOf(PosInt) },
  "nn.AdaptiveAvgPool2d"
)
const bnFields = {
  numFeatures: Schema.optional(PosInt),
  eps: Schema.optional(Schema.Number.pipe(Schema.positive())),
  momentum: Schema.optional(Probability),
  affine: Schema.optional(Schema.Boolean),
  trackRunningStats: Schema.optional(Schema.Boolean)
}
export const BatchNorm1d = layer(
  "BatchNorm1d",
  bnFields,
  "nn.BatchNorm1d on [features] (eps 1e-5, momentum 0.1)"
)
export const BatchNorm2d = layer("BatchNorm2d", bnFields, "nn.BatchNorm2d (eps 1e-5, momentum 0.1)")
export const Dropout = layer("Dropout", { p: Schema.optional(Probability) }, "nn.Dropout (p 0.5)")
export const Dropout2d = layer("Dropout2d", { p: Schema.optional(Probability) }, "nn.Dropout2d (p 0.5)")
export const Flatten = layer("Flatten", {}, "nn.Flatten (start_dim 1)")
export const ReLU = layer("ReLU", {}, "nn.ReLU")
export const LeakyReLU = layer(
  "LeakyReLU",
  { negativeSlope: Schema.optional(Schema.Number) },
  "nn.LeakyReLU (negativeSlope 0.01)"
)
export const ELU = layer("ELU", { alpha: Schema.optional(Schema.Number) }, "nn.ELU (alpha 1)")
export const GELU = layer("GELU", { approximate: Schema.optional(Schema.Literal("none", "tanh")) }, "nn.GELU")
export const SiLU = layer("SiLU", {}, "nn.SiLU")
export const Tanh = layer("Tanh", {}, "nn.Tanh")
export const Sigmoid = layer("Sigmoid", {}, "nn.Sigmoid")

export type SequentialSpec = {
  readonly type: "Sequential"
  readonly name?: string | undefined
  readonly layers: ReadonlyArray<LayerSpec>
}

export type LayerSpec =
  | typeof Conv2d.Type
  | typeof Linear.Type
  | typeof MaxPool2d.Type
  | typeof AvgPool2d.Type
  | typeof AdaptiveAvgPool2d.Type
  | typeof BatchNorm1d.Type
  | typeof BatchNorm2d.Type
  | typeof Dropout.Type
  | typeof Dropout2d.Type
  | typeof Flatten.Type
  | typeof ReLU.Type
  | typeof LeakyReLU.Type
  | typeof ELU.Type
  | typeof GELU.Type
  | typeof SiLU.Type
  | typeof Tanh.Type
  | typeof Sigmoid.Type
  | SequentialSpec

export const Sequential: Schema.Schema<SequentialSpec> = Schema.Struct({
  type: Schema.Literal("Sequential"),
  name: Name,
  layers: Schema.Array(Schema.suspend((): Schema.Schema<LayerSpec> => Layer))
}).annotations({ description: 'nn.Sequential; name "" adds no prefix to its children\'s names' })

/** One layer spec, told apart by `type`. */
export const Layer: Schema.Schema<LayerSpec> = Schema.Union(
  Conv2d,
  Linear,
  MaxPool2d,
  AvgPool2d,
  AdaptiveAvgPool2d,
  BatchNorm1d,
  BatchNorm2d,
  Dropout,
  Dropout2d,
  Flatten,
  ReLU,
  LeakyReLU,
  ELU,
  GELU,
  SiLU,
  Tanh,
  Sigmoid,
  Sequential
)

export const layerTypes = [
  "Conv2d",
  "Linear",
  "MaxPool2d",
  "AvgPool2d",
  "AdaptiveAvgPool2d",
  "BatchNorm1d",
  "BatchNorm2d",
  "Dropout",
  "Dropout2d",
  "Flatten",
  "ReLU",
  "LeakyReLU",
  "ELU",
  "GELU",
  "SiLU",
  "Tanh",
  "Sigmoid",
  "Sequential"
] as const

/** A model given by its layers (`"model": { "layers": [...] }` in a recipe). */
export const Layers = Schema.Struct({ layers: Schema.Array(Layer) })

/** The chapter's CNN2 by name: `{ "preset": "CNN2", "nFilters": 5, "p": 0.3 }`. */
export const Cnn2Preset = Schema.Struct({
  preset: Schema.Literal("CNN2"),
  nFilters: PosInt,
  p: Schema.optional(Probability),
  nClasses: Schema.optional(PosInt)
})

/** What a recipe's `model` holds. */
export const Model = Schema.Union(Layers, Cnn2Preset)
export type Model = typeof Model.Type

const pathText = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((k, i) => (typeof k === "number" ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`)).join("")

/** Looks up a path in raw input (for naming the layer an issue is in). */
const at = (u: unknown, path: ReadonlyArray<PropertyKey>): unknown =>
  path.reduce<unknown>((v, k) => (v !== null && typeof v === "object" ? (v as any)[k] : undefined), u)

/**
 * Decodes a model spec (unknown fields rejected, so `kernel_size` for `kernelSize` is caught).
 * The error names the innermost layer the issue is in and the field.
 */
export const decode = (u: unknown): Either.Either<Model, ModelSpecError> =>
  // A preset or a list of layers, told apart by its key, so errors speak of the one meant.
  Schema.decodeUnknownEither(
    (u !== null && typeof u === "object" && "preset" in u ? Cnn2Preset : Layers) as Schema.Schema<Model>,
    { onExcessProperty: "error" }
  )(u).pipe(
    Either.mapLeft((error) => {
      // A union's alternatives each report; the one that got furthest names the real problem.
      const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
      const best = issues.reduce((a, b) => (b.path.length > a.path.length ? b : a))
      const path = best.path
      // The innermost `layers[i]` on the path is the layer; what follows is the field.
      let cut = -1
      for (let i = 0; i + 1 < path.length; i++)
        if (path[i] === "layers" && typeof path[i + 1] === "number") cut = i + 2
      const layerPath = cut < 0 ? [] : path.slice(0, cut)
      const raw = at(u, layerPath) as { type?: unknown; name?: unknown } | undefined
      const field =
        cut < 0 ? (path.length === 0 ? "model" : String(path[0])) : path.slice(cut).map(String).join(".")
      return new ModelSpecError({
        path: pathText(layerPath),
        layer: cut < 0 ? "" : describe(raw, Number(path[cut - 1])),
        field: field === "" ? "type" : field,
        reason: best.message
      })
    })
  )

const describe = (raw: { type?: unknown; name?: unknown } | undefined, index: number): string => {
  const name = typeof raw?.name === "string" ? raw.name : String(index)
  const type = typeof raw?.type === "string" ? raw.type : "?"
  return `${name === "" ? '""' : name}: ${type}`
}

// ---------------------------------------------------------------------------------- presets

export interface Cnn2Options {
  readonly nFilters: number
  readonly p?: number | undefined
  readonly nClasses?: number | undefined
}

/**
 * The chapter's CNN2 as layers: the same names (conv1.weight ...), the same parameter order (so
 * the same seed draws the same initial weights) and the same nesting (a featurizer and a
 * classifier, unnamed, so dropout masks come from the same random streams) as `Cnn2.make`.
 */
export const cnn2 = (options: Cnn2Options): { readonly layers: ReadonlyArray<LayerSpec> } => {
  const p = options.p ?? 0
  const drop = (name: string): ReadonlyArray<LayerSpec> => (p > 0 ? [{ type: "Dropout", name, p }] : [])
  return {
    layers: [
      {
        type: "Sequential",
        name: "",
        layers: [
          { type: "Conv2d", name: "conv1", outChannels: options.nFilters, kernelSize: 3 },
          { type: "ReLU", name: "relu1" },
          { type: "MaxPool2d", name: "pool1", kernelSize: 2 },
          { type: "Conv2d", name: "conv2", outChannels: options.nFilters, kernelSize: 3 },
          { type: "ReLU", name: "relu2" },
          { type: "MaxPool2d", name: "pool2", kernelSize: 2 },
          { type: "Flatten", name: "flatten" }
        ]
      },
      {
        type: "Sequential",
        name: "",
        layers: [
          ...drop("drop1"),
          { type: "Linear", name: "fc1", outFeatures: 50 },
          { type: "ReLU", name: "relu3" },
          ...drop("drop2"),
          { type: "Linear", name: "fc2", outFeatures: options.nClasses ?? 3 }
        ]
      }
    ]
  }
}

/** A model's layers (a preset expanded). */
export const layersOf = (model: Model): ReadonlyArray<LayerSpec> =>
  "preset" in model ? cnn2(model).layers : model.layers

// ----------------------------------------------------------------------------------- building

/** One row of the summary: a layer, its output shape (batch first, PyTorch's order), sizes. */
export interface LayerInfo {
  /** Full name (`conv1`, `0`, `block.1`). */
  readonly name: string
  readonly type: string
  /** Nesting depth (0 for the model's own layers). */
  readonly depth: number
  /** PyTorch's shape without the batch dimension ([C, H, W] or [features]). */
  readonly outputShape: ReadonlyArray<number>
  /** Trainable scalars of this layer (its children's for a Sequential). */
  readonly parameters: number
  readonly buffers: number
}

export interface Built {
  readonly module: Module.Module
  readonly inputShape: ReadonlyArray<number>
  readonly outputShape: ReadonlyArray<number>
  readonly layers: ReadonlyArray<LayerInfo>
}

/** What flows between layers while building: the shape, and where a flat vector came from. */
interface Flow {
  readonly shape: ReadonlyArray<number>
  /** Set after a Flatten of a [C, H, W] map: the NHWC-to-NCHW permutation Linear records. */
  readonly chw?: readonly [number, number, number] | undefined
}

type Fail = (field: string, reason: string) => ModelSpecError

const shapeText = (s: ReadonlyArray<number>) => `[${s.join(", ")}]`

const needMap = (
  flow: Flow,
  fail: Fail,
  type: string
): Either.Either<readonly [number, number, number], ModelSpecError> =>
  flow.shape.length === 3
    ? Either.right(flow.shape as unknown as readonly [number, number, number])
    : Either.left(fail("type", `${type} expects a [C, H, W] input, got ${shapeText(flow.shape)}`))

const needVector = (flow: Flow, fail: Fail, type: string): Either.Either<number, ModelSpecError> =>
  flow.shape.length === 1
    ? Either.right(flow.shape[0])
    : Either.left(
        fail(
          "type",
          `${type} expects a [features] input, got ${shapeText(flow.shape)} (add a Flatten before it)`
        )
      )

const checkGiven = (
  fail: Fail,
  field: string,
  given: number | undefined,
  inferred: number
): Either.Either<number, ModelSpecError> =>
  given === undefined || given === inferred
    ? Either.right(inferred)
    : Either.left(fail(field, `${given} given, but the input has ${inferred}`))

const sizeOf = (s: ReadonlyArray<number>) => s.reduce((a, b) => a * b, 1)

const pool = (
  spec: { kernelSize: Module.Pair; stride?: Module.Pair | undefined; padding?: Module.Pair | undefined },
  flow: Flow,
  fail: Fail,
  type: string
): Either.Either<ReadonlyArray<number>, ModelSpecError> =>
  Either.flatMap(needMap(flow, fail, type), ([c, h, w]) => {
    const k = Module.pair(spec.kernelSize)
    const s = Module.pair(spec.stride ?? spec.kernelSize)
    const p = Module.pair(spec.padding ?? 0)
    if (p[0] > k[0] / 2 || p[1] > k[1] / 2)
      return Either.left(
        fail("padding", `pad should be at most half of kernel size, got padding ${p} for kernel ${k}`)
      )
    const oh = Module.poolOutputSize(h, k[0], s[0], p[0])
    const ow = Module.poolOutputSize(w, k[1], s[1], p[1])
    if (oh < 1 || ow < 1)
      return Either.left(
        fail("kernelSize", `kernel ${k[0]} x ${k[1]} does not fit the input ${h} x ${w} (padding ${p})`)
      )
    return Either.right([c, oh, ow])
  })

interface Node {
  readonly module: Module.Module
  readonly flow: Flow
  readonly infos: ReadonlyArray<LayerInfo>
}

const buildLayer = (
  spec: LayerSpec,
  flow: Flow,
  fail: Fail,
  fullName: string,
  path: string,
  depth: number
): Either.Either<Node, ModelSpecError> => {
  const leaf = (module: Module.Module, shape: ReadonlyArray<number>, chw?: Flow["chw"]): Node => ({
    module,
    flow: { shape, chw },
    infos: [
      {
        name: fullName,
        type: spec.type,
        depth,
        outputShape: shape,
        parameters: Module.countParameters(module),
        buffers: module.buffers.reduce((n, b) => n + sizeOf(b.shape), 0)
      }
    ]
  })
  const same = (module: Module.Module) => Either.right(leaf(module, flow.shape, flow.chw))
  // The constructors' own checks, in this spec's terms (the schema already keeps most out).
  const built = (module: Either.Either<Module.Module, Module.InvalidLayer>) =>
    Either.mapLeft(module, (e) => fail(e.field, e.reason))
  switch (spec.type) {
    case "Conv2d":
      return Either.flatMap(needMap(flow, fail, "Conv2d"), ([c, h, w]) =>
        Either.flatMap(checkGiven(fail, "inChannels", spec.inChannels, c), (inChannels) => {
          const [kh, kw] = Module.pair(spec.kernelSize)
          const [sh, sw] = Module.pair(spec.stride ?? 1)
          const [dh, dw] = Module.pair(spec.dilation ?? 1)
          const padding = spec.padding ?? 0
          if (padding === "same" && (sh !== 1 || sw !== 1))
            return Either.left(fail("padding", "padding='same' is not supported for strided convolutions"))
          const [ph, pw] = padding === "same" || padding === "valid" ? [0, 0] : Module.pair(padding)
          const out = (n: number, k: number, s: number, p: number, d: number) =>
            padding === "same" ? n : Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1
          const oh = out(h, kh, sh, ph, dh)
          const ow = out(w, kw, sw, pw, dw)
          if (oh < 1 || ow < 1)
            return Either.left(
              fail(
                "kernelSize",
                `kernel ${kh} x ${kw} (dilation ${dh} x ${dw}) does not fit the padded input ${h + 2 * ph} x ${w + 2 * pw}`
              )
            )
          const module = Module.Conv2d({
            inChannels,
            outChannels: spec.outChannels,
            kernelSize: spec.kernelSize,
            stride: spec.stride ?? 1,
            padding,
            dilation: spec.dilation ?? 1,
            bias: spec.bias ?? true
          })
          return Either.map(built(module), (m) => leaf(m, [spec.outChannels, oh, ow]))
        })
      )
    case "Linear":
      return Either.flatMap(needVector(flow, fail, "Linear"), (f) =>
        Either.flatMap(checkGiven(fail, "inFeatures", spec.inFeatures, f), (inFeatures) =>
          Either.map(
            built(
              Module.Linear({
                inFeatures,
                outFeatures: spec.outFeatures,
                bias: spec.bias ?? true,
                ...(flow.chw === undefined ? {} : { flattenedFrom: flow.chw })
              })
            ),
            (m) => leaf(m, [spec.outFeatures])
          )
        )
      )
    case "MaxPool2d":
      return Either.flatMap(pool(spec, flow, fail, "MaxPool2d"), (shape) =>
        Either.map(
          built(
            Module.MaxPool2d({ kernelSize: spec.kernelSize, stride: spec.stride, padding: spec.padding })
          ),
          (m) => leaf(m, shape)
        )
      )
    case "AvgPool2d":
      return Either.flatMap(pool(spec, flow, fail, "AvgPool2d"), (shape) =>
        Either.map(
          built(
            Module.AvgPool2d({
              kernelSize: spec.kernelSize,
              stride: spec.stride,
              padding: spec.padding,
              countIncludePad: spec.countIncludePad
            })
          ),
          (m) => leaf(m, shape)
        )
      )
    case "AdaptiveAvgPool2d":
      return Either.flatMap(needMap(flow, fail, "AdaptiveAvgPool2d"), ([c]) => {
        const [oh, ow] = Module.pair(spec.outputSize)
        return Either.map(built(Module.AdaptiveAvgPool2d(spec.outputSize)), (m) => leaf(m, [c, oh, ow]))
      })
    case "BatchNorm1d":
    case "BatchNorm2d": {
      const channels =
        spec.type === "BatchNorm2d"
          ? Either.map(needMap(flow, fail, spec.type), ([c]) => c)
          : needVector(flow, fail, spec.type)
      return Either.flatMap(channels, (c) =>
        Either.flatMap(checkGiven(fail, "numFeatures", spec.numFeatures, c), (numFeatures) => {
          const options = {
            numFeatures,
            ...(spec.eps === undefined ? {} : { eps: spec.eps }),
            ...(spec.momentum === undefined ? {} : { momentum: spec.momentum }),
            ...(spec.affine === undefined ? {} : { affine: spec.affine }),
            ...(spec.trackRunningStats === undefined ? {} : { trackRunningStats: spec.trackRunningStats })
          }
          return Either.flatMap(
            built(spec.type === "BatchNorm2d" ? Module.BatchNorm2d(options) : Module.BatchNorm1d(options)),
            same
          )
        })
      )
    }
    case "Dropout":
      return Either.flatMap(built(Module.Dropout(spec.p ?? 0.5)), same)
    case "Dropout2d":
      return Either.flatMap(needMap(flow, fail, "Dropout2d"), () =>
        Either.flatMap(built(Module.Dropout2d(spec.p ?? 0.5)), same)
      )
    case "Flatten":
      return Either.right(
        leaf(
          Module.Flatten(),
          [sizeOf(flow.shape)],
          flow.shape.length === 3 ? (flow.shape as unknown as readonly [number, number, number]) : flow.chw
        )
      )
    case "ReLU":
      return same(Module.ReLU())
    case "LeakyReLU":
      return same(
        Module.LeakyReLU(spec.negativeSlope === undefined ? {} : { negativeSlope: spec.negativeSlope })
      )
    case "ELU":
      return same(Module.ELU(spec.alpha === undefined ? {} : { alpha: spec.alpha }))
    case "GELU":
      return same(Module.GELU(spec.approximate === undefined ? {} : { approximate: spec.approximate }))
    case "SiLU":
      return same(Module.SiLU())
    case "Tanh":
      return same(Module.Tanh())
    case "Sigmoid":
      return same(Module.Sigmoid())
    case "Sequential":
      return Either.map(buildAll(spec.layers, flow, fullName, `${path}.layers`, depth + 1), (inner) => ({
        module: inner.module,
        flow: inner.flow,
        infos: [
          {
            name: fullName,
            type: "Sequential",
            depth,
            outputShape: inner.flow.shape,
            parameters: Module.countParameters(inner.module),
            buffers: inner.module.buffers.reduce((n, b) => n + sizeOf(b.shape), 0)
          },
          ...inner.infos
        ]
      }))
  }
}

const buildAll = (
  specs: ReadonlyArray<LayerSpec>,
  input: Flow,
  prefix: string,
  path: string,
  depth: number
): Either.Either<Node, ModelSpecError> => {
  const children: Array<readonly [string, Module.Module]> = []
  const infos: Array<LayerInfo> = []
  const seen = new Set<string>()
  let flow = input
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i]
    const name = spec.name ?? String(i)
    const here = `${path}[${i}]`
    const fail: Fail = (field, reason) =>
      new ModelSpecError({ path: here, layer: `${name === "" ? '""' : name}: ${spec.type}`, field, reason })
    if (name === "" && spec.type !== "Sequential")
      return Either.left(fail("name", "only a Sequential may have an empty name (its children keep theirs)"))
    if (name.includes(".")) return Either.left(fail("name", `'${name}' contains '.', which separates names`))
    if (name !== "" && seen.has(name)) return Either.left(fail("name", `'${name}' is used twice`))
    seen.add(name)
    const fullName = name === "" ? prefix : prefix === "" ? name : `${prefix}.${name}`
    const built = buildLayer(spec, flow, fail, fullName, here, depth)
    if (Either.isLeft(built)) return built
    children.push([name, built.right.module])
    infos.push(...built.right.infos)
    flow = built.right.flow
  }
  return Either.right({ module: Module.Sequential(children), flow, infos })
}

/**
 * Builds a model for inputs of `inputShape` (PyTorch's, no batch: [3, 28, 28] for the chapter's
 * images): every layer's input size inferred and checked, before any data is read.
 */
export const build = (
  model: Model,
  inputShape: ReadonlyArray<number>
): Either.Either<Built, ModelSpecError> =>
  Either.map(buildAll(layersOf(model), { shape: inputShape }, "", "layers", 0), (node) => ({
    module: node.module,
    inputShape,
    outputShape: node.flow.shape,
    layers: node.infos
  }))

/** `decode` then `build`: a recipe's `model` value to a module, or the first problem. */
export const make = (u: unknown, inputShape: ReadonlyArray<number>): Either.Either<Built, ModelSpecError> =>
  Either.flatMap(decode(u), (model) => build(model, inputShape))

// ------------------------------------------------------------------------------------ summary

const grouped = (n: number) => n.toLocaleString("en-US")

/**
 * A table like torchinfo's: each layer (nested ones indented), its output shape with the batch
 * dimension first, its parameter count; then totals. Buffers (running statistics) are counted
 * apart, as they are not trained.
 */
export const summary = (built: Built, batchSize = 1): string => {
  const rows = built.layers.map((l) => [
    `${"  ".repeat(l.depth)}${l.name === "" ? "(unnamed)" : l.name} (${l.type})`,
    shapeText([batchSize, ...l.outputShape]),
    l.type === "Sequential" ? "--" : grouped(l.parameters)
  ])
  const header = ["Layer (type)", "Output Shape", "Param #"]
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === 2 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("   ")
  const rule = "=".repeat(widths.reduce((a, b) => a + b, 0) + 6)
  const total = Module.countParameters(built.module)
  const buffers = built.module.buffers.reduce((n, b) => n + sizeOf(b.shape), 0)
  return [
    rule,
    line(header),
    rule,
    ...rows.map(line),
    rule,
    `Input shape: ${shapeText([batchSize, ...built.inputShape])}`,
    `Total params: ${grouped(total)}`,
    `Trainable params: ${grouped(total)}`,
    `Non-trainable params: 0`,
    `Buffers: ${grouped(buffers)}`,
    rule
  ].join("\n")
}
