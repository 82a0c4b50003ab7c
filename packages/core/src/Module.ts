import { Random } from "@stepwise/data"
import { type Numeric, Shape } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import { Engine } from "./Engine.js"
import { InvalidLayer, WeightMismatch } from "./Errors.js"
import { registerGradients } from "./Gradients.js"
import { biasBound, kaimingUniformBound, uniform } from "./Init.js"
import { biasGrad, linearGrad, maxPoolReluGrad, reluGrad } from "./kernels/Fused.js"

/** Named parameter trees keyed like PyTorch's `state_dict` (`conv1.weight`). */
export type Params = Numeric.Params<tf.Tensor>

/**
 * Named buffers (BatchNorm's `running_mean`, `running_var`, `num_batches_tracked`): state that
 * lives beside the parameters and in checkpoints, is updated by the forward pass in training
 * mode, and is never touched by an optimizer.
 */
export type Buffers = Params

/**
 * How a parameter is stored here versus in PyTorch, so weights can be exchanged exactly:
 * - `conv2d`: here [kh, kw, in, out] (tfjs), PyTorch [out, in, kh, kw];
 * - `linear`: here [in, out], PyTorch [out, in];
 * - `linearAfterFlatten`: like `linear`, but the input is a flattened NHWC map [h, w, c]
 *   while PyTorch flattens NCHW [c, h, w], so the input rows are permuted too;
 * - `same`: identical (biases, BatchNorm's vectors).
 */
export type Layout =
  | { readonly _tag: "conv2d" }
  | { readonly _tag: "linear" }
  | { readonly _tag: "linearAfterFlatten"; readonly chw: readonly [number, number, number] }
  | { readonly _tag: "same" }

export interface ParamSpec {
  /** Full name (`conv1.weight`). */
  readonly name: string
  /** Shape here (tfjs layout). */
  readonly shape: ReadonlyArray<number>
  readonly layout: Layout
  /** U(-bound, bound) at init (PyTorch's default for Conv2d and Linear). */
  readonly bound: number
  /** A constant instead of a random draw (BatchNorm's weight 1 and bias 0); draws nothing. */
  readonly fill?: number | undefined
}

/** A buffer and its value at construction (PyTorch's: running_mean 0, running_var 1, count 0). */
export interface BufferSpec {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly fill: number
}

/**
 * What a forward pass needs besides parameters: train/eval mode, the random state the dropout
 * masks come from (each layer derives its own with `Random.foldIn`, so a seed reproduces every
 * mask), the buffers (BatchNorm's running statistics), and an optional tap that sees every named
 * layer's output (the chapter's hooks).
 */
export interface Ctx {
  readonly training: boolean
  readonly rng: Random.State
  readonly buffers?: Buffers | undefined
  readonly tap?: ((layer: string, output: tf.Tensor) => void) | undefined
  /**
   * Where `call` records the tensors its custom ops keep past their tidy (saved for the backward,
   * updated buffers), so a pass that stops half way (`InvalidLayer`) can release them.
   */
  readonly kept?: Array<tf.Tensor> | undefined
}

export interface Backward {
  /** Gradient with respect to the input; absent when the caller said it does not need it. */
  readonly dx: tf.Tensor | undefined
  readonly grads: Record<string, tf.Tensor>
}

/** A forward result that remembers what its backward needs (a vector-Jacobian product). */
export interface Forward {
  readonly y: tf.Tensor
  readonly backward: (dy: tf.Tensor) => Backward
  /**
   * This layer's backward composed with a ReLU's, valid when its input is that ReLU's output
   * (`Sequential` then skips the ReLU's backward): dx is for the ReLU's input. Absent when the
   * layer or the engine has no fused form; undefined when it cannot apply to this run.
   */
  readonly backwardAfterRelu?: ((dy: tf.Tensor) => Backward | undefined) | undefined
  /** Buffers this pass updated (training mode), full names; absent or empty when none. */
  readonly buffers?: Buffers | undefined
}

/**
 * A forward pass for tfjs' autodiff: the output and updated buffers. The buffers are kept
 * (they must outlive the tidy tfjs runs a custom op in): the caller disposes them.
 */
export interface Output {
  readonly y: tf.Tensor
  readonly buffers: Buffers
}

/**
 * A module: a pure function of (parameters, buffers, input), usable two ways.
 *
 * - `call` is plain tfjs ops, so `tf.grads` / `tf.valueAndGrads` / `tf.variableGrads`
 *   differentiate it; built-in layers are `tf.customGrad` ops whose gradient is their
 *   hand-written backward, so autodiff through them costs what the explicit path costs.
 * - `forward` (when `explicit`) returns the output and its hand-written backward: what
 *   `Loss.lossAndGrads` uses for a net of built-in layers. It skips what a step does not need
 *   (the first layer's input gradient) and runs one tfjs kernel where the tape would run several.
 *
 * A module built from a user's function (`Lambda`) is not explicit: a net containing one is
 * trained through tfjs' autodiff (see Gradients.ts for how its gradient configs get registered).
 */
export interface Module {
  readonly kind: string
  /** Parameters with names relative to `prefix` "" (a container prefixes its children's). */
  readonly specs: ReadonlyArray<ParamSpec>
  /** Buffers, named like `specs`. */
  readonly buffers: ReadonlyArray<BufferSpec>
  /** Every part has a hand-written backward (`forward` needs no autodiff). */
  readonly explicit: boolean
  /**
   * `prefix` is prepended to this module's parameter names when looking them up;
   * `needDx` false lets the first layer skip its input gradient.
   */
  readonly forward: (params: Params, prefix: string, x: tf.Tensor, ctx: Ctx, needDx: boolean) => Forward
  readonly call: (params: Params, prefix: string, x: tf.Tensor, ctx: Ctx) => Output
  /**
   * The same forward without the custom gradients: tfjs differentiates its ops with its own
   * gradient functions. What the tests hold the hand-written backward against.
   */
  readonly reference?: ((params: Params, prefix: string, x: tf.Tensor, ctx: Ctx) => Output) | undefined
}

/** Options of `apply` and of a training step: the seed reproduces every dropout mask. */
export interface ApplyOptions {
  readonly training: boolean
  readonly seed?: number | undefined
  readonly rng?: Random.State | undefined
  readonly buffers?: Buffers | undefined
  readonly tap?: ((layer: string, output: tf.Tensor) => void) | undefined
}

export const ctxOf = (options: ApplyOptions): Ctx => ({
  training: options.training,
  // lossAndGrads and lossOf check the seed first (InvalidArgument); `apply` takes it as given.
  rng: options.rng ?? Random.unsafeMake(options.seed ?? 0),
  buffers: options.buffers,
  tap: options.tap
})

const sizeOf = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)

/** Whether two shapes are the same (rank and every dimension): optim's, which the optimizers check with. */
export const sameShape = Shape.sameShape

const fits = (
  what: "parameter" | "buffer",
  specs: ReadonlyArray<{ readonly name: string; readonly shape: ReadonlyArray<number> }>,
  tree: Record<string, tf.Tensor>,
  exact: boolean
): WeightMismatch | undefined => {
  for (const spec of specs) {
    const t = tree[spec.name]
    if (t === undefined)
      return new WeightMismatch({
        parameter: spec.name,
        reason:
          what === "parameter"
            ? "parameter missing"
            : "buffer missing (pass buffers: Module.initBuffers(model), a checkpoint's or the trainer's)",
        expected: spec.shape
      })
    if (!sameShape(t.shape, spec.shape))
      return new WeightMismatch({
        parameter: spec.name,
        reason: `${what} of shape [${t.shape.join(", ")}], the model's is [${spec.shape.join(", ")}] (tfjs layout)`,
        expected: spec.shape,
        actual: t.shape
      })
  }
  if (!exact) return undefined
  const extra = Object.keys(tree).find((name) => !specs.some((s) => s.name === name))
  return extra === undefined
    ? undefined
    : new WeightMismatch({ parameter: extra, reason: `not a ${what} of the model` })
}

/**
 * Whether `params` and `buffers` are `module`'s: every parameter and buffer present with its
 * shape (`exact`: and nothing else). A `WeightMismatch` names the first that is not; checked
 * where tensors enter (`Trainer.make`, `Loss.lossAndGrads`, `Loss.lossOf`), so the forward pass
 * never meets a missing one.
 */
export const checkWeights = (
  module: Pick<Module, "specs" | "buffers">,
  params: Params,
  buffers: Buffers,
  exact = false
): Either.Either<void, WeightMismatch> => {
  const bad = fits("parameter", module.specs, params, exact) ?? fits("buffer", module.buffers, buffers, exact)
  return bad === undefined ? Either.void : Either.left(bad)
}

/**
 * Fresh parameters with PyTorch's default initialisation, drawn from `rng` in spec order
 * (constant-initialised parameters draw nothing, so they do not shift the others' values).
 * Tensors are made on the engine, so `init` requires it: a program without `Engine.layer`
 * does not compile. What takes these tensors (`apply`, `Loss.lossAndGrads`, a trainer's step)
 * is plain code: holding them is the proof an engine is there, and the per-step hot path
 * pays no fiber.
 */
export const init: (module: Module, rng: Random.State) => Effect.Effect<Params, never, Engine> = Effect.fn(
  "Module.init"
)(function* (module, rng) {
  yield* Engine
  return unsafeInit(module, rng)
})

/** The buffers at construction (empty for a model without BatchNorm), made on the engine. */
export const initBuffers: (module: Module) => Effect.Effect<Buffers, never, Engine> = Effect.fn(
  "Module.initBuffers"
)(function* (module) {
  yield* Engine
  return unsafeInitBuffers(module)
})

/**
 * `init` for code that already runs on an engine (tests, benches, `Trainer.unsafeMake`): no
 * engine in the type, as `Random.unsafeMake`.
 */
export const unsafeInit = (module: Module, rng: Random.State): Params => {
  const out: Record<string, tf.Tensor> = {}
  let state = rng
  for (const spec of module.specs) {
    const size = sizeOf(spec.shape)
    if (spec.fill !== undefined) {
      out[spec.name] = tf.fill([...spec.shape], spec.fill, "float32")
      continue
    }
    const [values, next] = uniform(state, size, spec.bound)
    state = next
    out[spec.name] = tf.tensor(values, [...spec.shape], "float32")
  }
  return out
}

/** `initBuffers` for code that already runs on an engine (see `unsafeInit`). */
export const unsafeInitBuffers = (module: Module): Buffers =>
  Object.fromEntries(module.buffers.map((b) => [b.name, tf.fill([...b.shape], b.fill, "float32")]))

/**
 * The forward pass only (inference, or training mode for dropout demos). Plain code on tensors
 * (from `init`, a checkpoint, `Loss.inputTensor`): no engine in the type, no fiber per call.
 */
export const apply = (module: Module, params: Params, x: tf.Tensor, options: ApplyOptions): tf.Tensor =>
  tf.tidy(() => {
    const out = module.call(params, "", x, ctxOf(options))
    disposeAll(out.buffers)
    return out.y
  })

/** Number of trainable scalars (6,823 for CNN2 with 5 filters). */
export const countParameters = (module: Module): number =>
  module.specs.reduce((n, s) => n + sizeOf(s.shape), 0)

// --------------------------------------------------------------------------- building blocks

/** A layer's pullback: input and parameter gradients from the output gradient. */
export interface Pullback {
  readonly dx: tf.Tensor | undefined
  /** One per parameter, in `specs` order. */
  readonly dps: ReadonlyArray<tf.Tensor>
}

/**
 * One run of a built-in layer. `back` may close over plain values (shapes, flags) but reads
 * tensors only from `saved`: under `tf.customGrad` the engine disposes the forward pass's
 * intermediates and hands `back` kept copies of what was saved.
 */
export interface Run {
  readonly y: tf.Tensor
  readonly saved: ReadonlyArray<tf.Tensor>
  readonly back: (dy: tf.Tensor, saved: ReadonlyArray<tf.Tensor>, needDx: boolean) => Pullback
  /** `back` composed with a ReLU before this layer (see `Forward.backwardAfterRelu`); parameterless layers only. */
  readonly backAfterRelu?:
    | ((dy: tf.Tensor, saved: ReadonlyArray<tf.Tensor>) => tf.Tensor | undefined)
    | undefined
  /** Updated buffers, relative names (BatchNorm in training mode). */
  readonly buffers?: Record<string, tf.Tensor> | undefined
}

export interface LeafDefinition {
  readonly kind: string
  readonly specs?: ReadonlyArray<ParamSpec>
  readonly buffers?: ReadonlyArray<BufferSpec>
  /** `params` in `specs` order; `buffers` by relative name. */
  readonly run: (
    x: tf.Tensor,
    params: ReadonlyArray<tf.Tensor>,
    ctx: Ctx,
    buffers: Record<string, tf.Tensor>
  ) => Run
}

const bufferValues = (
  kind: string,
  specs: ReadonlyArray<BufferSpec>,
  prefix: string,
  ctx: Ctx
): Record<string, tf.Tensor> => {
  const out: Record<string, tf.Tensor> = {}
  for (const b of specs) {
    const t = ctx.buffers?.[`${prefix}${b.name}`]
    // Checked where tensors enter (checkWeights): only `apply` on hand-made trees gets here.
    if (t === undefined)
      throw new RangeError(
        `${kind}: buffer '${prefix}${b.name}' missing (pass buffers: Module.initBuffers(model) or the trainer's)`
      )
    out[b.name] = t
  }
  return out
}

/**
 * An input a layer cannot take (a hand-built model whose layers do not fit each other, a
 * BatchNorm batch of one). A forward pass has no error channel, so it is thrown as the typed
 * `InvalidLayer`, named after the layer by `leaf`, and `Loss.lossAndGrads` / `lossOf` and the
 * trainer's step return it (nothing else they catch): a typed failure, not a defect.
 */
const misfit = (kind: string, x: tf.Tensor, reason: string): never => {
  throw new InvalidLayer({ layer: kind, field: "input", value: x.shape, reason })
}

/** Runs `f`, naming the layer at `prefix` in an `InvalidLayer` it throws. */
const named = <A>(prefix: string, f: () => A): A => {
  try {
    return f()
  } catch (e) {
    if (e instanceof InvalidLayer && prefix !== "" && !e.layer.includes(" ("))
      throw new InvalidLayer({ ...e, layer: `${prefix.replace(/\.$/, "")} (${e.layer})` })
    throw e
  }
}

/** `f`'s result, or the `InvalidLayer` a layer threw (anything else is rethrown: a defect). */
export const catchInvalidLayer = <A>(f: () => A): Either.Either<A, InvalidLayer> => {
  try {
    return Either.right(f())
  } catch (e) {
    if (e instanceof InvalidLayer) return Either.left(e)
    throw e
  }
}

const prefixed = (prefix: string, tree: Record<string, tf.Tensor> | undefined): Buffers =>
  tree === undefined ? {} : Object.fromEntries(Object.entries(tree).map(([k, v]) => [`${prefix}${k}`, v]))

/**
 * A built-in layer from its run: `forward` calls the hand-written backward directly, `call`
 * wraps the same run in `tf.customGrad` so autodiff uses it too.
 */
export const leaf = (definition: LeafDefinition): Module => {
  const specs = definition.specs ?? []
  const buffers = definition.buffers ?? []
  const paramsOf = (params: Params, prefix: string) =>
    specs.map((s) => {
      const p = params[`${prefix}${s.name}`]
      // Checked where tensors enter (checkWeights): only `apply` on hand-made trees gets here.
      if (p === undefined) throw new RangeError(`${definition.kind}: parameter '${prefix}${s.name}' missing`)
      return p
    })
  return {
    kind: definition.kind,
    specs,
    buffers,
    explicit: true,
    forward: (params, prefix, x, ctx, needDx) => {
      const run = named(prefix, () =>
        definition.run(x, paramsOf(params, prefix), ctx, bufferValues(definition.kind, buffers, prefix, ctx))
      )
      return {
        y: run.y,
        buffers: prefixed(prefix, run.buffers),
        backward: (dy) => {
          const g = run.back(dy, run.saved, needDx)
          const grads: Record<string, tf.Tensor> = {}
          specs.forEach((s, i) => {
            grads[`${prefix}${s.name}`] = g.dps[i]
          })
          return { dx: g.dx, grads }
        },
        backwardAfterRelu:
          run.backAfterRelu === undefined
            ? undefined
            : (dy) => {
                const dx = run.backAfterRelu!(dy, run.saved)
                return dx === undefined ? undefined : { dx, grads: {} }
              }
      }
    },
    call: (params, prefix, x, ctx) => {
      const ps = paramsOf(params, prefix)
      const bufs = bufferValues(definition.kind, buffers, prefix, ctx)
      let updated: Record<string, tf.Tensor> | undefined
      const op = tf.customGrad((...args: Array<any>) => {
        const save = args[args.length - 1] as tf.GradSaveFunc
        const run = definition.run(args[0], args.slice(1, args.length - 1), ctx, bufs)
        save([...run.saved])
        // Kept: tfjs runs a custom op's forward in a tidy that would dispose them.
        updated = run.buffers === undefined ? undefined : keepAll(run.buffers)
        ctx.kept?.push(...run.saved, ...Object.values(updated ?? {}))
        return {
          // A custom op must output a new tensor: handing back its input (an identity layer)
          // confuses the tape about which node produced it.
          value: run.y === args[0] ? tf.clone(run.y) : run.y,
          gradFunc: (dy: tf.Tensor | Array<tf.Tensor>, saved: Array<tf.Tensor>) => {
            const g = run.back(dy as tf.Tensor, saved, true)
            return [g.dx!, ...g.dps]
          }
        }
      })
      const y = named(prefix, () => op(x, ...ps) as tf.Tensor)
      return { y, buffers: prefixed(prefix, updated) }
    },
    reference: (params, prefix, x, ctx) => {
      const run = named(prefix, () =>
        definition.run(x, paramsOf(params, prefix), ctx, bufferValues(definition.kind, buffers, prefix, ctx))
      )
      // tfjs cannot differentiate y = x itself (an identity layer); a clone it can.
      return { y: run.y === x ? tf.clone(x) : run.y, buffers: prefixed(prefix, run.buffers) }
    }
  }
}

const keepAll = (tree: Record<string, tf.Tensor>): Record<string, tf.Tensor> =>
  Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, tf.keep(v)]))

/** Disposes a tree of tensors (the buffers `call` returns are kept, so tidy leaves them). */
export const disposeAll = (tree: Record<string, tf.Tensor> | undefined): void => {
  for (const t of Object.values(tree ?? {})) t.dispose()
}

const join = (prefix: string, name: string) => (name === "" ? prefix : `${prefix}${name}.`)

/**
 * nn.Sequential over named children. A child named "" adds no prefix (so a model made of a
 * featurizer and a classifier keeps PyTorch's flat names like `conv1.weight`).
 */
export const Sequential = (children: ReadonlyArray<readonly [string, Module]>): Module => ({
  kind: "Sequential",
  specs: children.flatMap(([name, child]) =>
    child.specs.map((s) => ({ ...s, name: `${join("", name)}${s.name}` }))
  ),
  buffers: children.flatMap(([name, child]) =>
    child.buffers.map((b) => ({ ...b, name: `${join("", name)}${b.name}` }))
  ),
  explicit: children.every(([, child]) => child.explicit),
  forward: (params, prefix, x, ctx, needDx) => {
    const outs: Array<Forward> = []
    const buffers: Record<string, tf.Tensor> = {}
    let h = x
    children.forEach(([name, child], i) => {
      const childCtx: Ctx = { ...ctx, rng: Random.foldIn(ctx.rng, i) }
      const out = child.forward(params, join(prefix, name), h, childCtx, needDx || i > 0)
      if (ctx.tap !== undefined && name !== "") ctx.tap(`${prefix}${name}`, out.y)
      outs.push(out)
      Object.assign(buffers, out.buffers)
      h = out.y
    })
    return {
      y: h,
      buffers,
      backward: (dy) => {
        const grads: Record<string, tf.Tensor> = {}
        let g: tf.Tensor | undefined = dy
        for (let i = outs.length - 1; i >= 0; i--) {
          // ReLU then a layer with a fused backward (a max pool): one kernel for both.
          const fused: Backward | undefined =
            i > 0 && children[i - 1][1].kind === "ReLU" ? outs[i].backwardAfterRelu?.(g!) : undefined
          const b: Backward = fused ?? outs[i].backward(g!)
          if (fused !== undefined) i--
          Object.assign(grads, b.grads)
          g = b.dx
        }
        return { dx: g, grads }
      }
    }
  },
  call: (params, prefix, x, ctx) => {
    const buffers: Record<string, tf.Tensor> = {}
    let h = x
    children.forEach(([name, child], i) => {
      const out = child.call(params, join(prefix, name), h, { ...ctx, rng: Random.foldIn(ctx.rng, i) })
      if (ctx.tap !== undefined && name !== "") ctx.tap(`${prefix}${name}`, out.y)
      Object.assign(buffers, out.buffers)
      h = out.y
    })
    return { y: h, buffers }
  },
  reference: children.every(([, child]) => child.reference !== undefined)
    ? (params, prefix, x, ctx) => {
        const buffers: Record<string, tf.Tensor> = {}
        let h = x
        children.forEach(([name, child], i) => {
          const out = child.reference!(params, join(prefix, name), h, {
            ...ctx,
            rng: Random.foldIn(ctx.rng, i)
          })
          Object.assign(buffers, out.buffers)
          h = out.y
        })
        return { y: h, buffers }
      }
    : undefined
})

export interface LambdaOptions {
  readonly kind?: string
  /** Its parameters, names relative to the module (as `Module.init` draws them). */
  readonly specs?: ReadonlyArray<ParamSpec>
  /** Any function of tfjs ops; `params` holds this module's parameters by relative name. */
  readonly fn: (params: Params, x: tf.Tensor, ctx: Ctx) => tf.Tensor
}

/**
 * A module from a plain function of tfjs ops: differentiated by tfjs' autodiff. Its `forward`
 * gets a backward by re-running the function under `tf.grads` (only used when someone calls it
 * directly: `Loss.lossAndGrads` sends a net containing a Lambda through `tf.valueAndGrads`).
 */
export const Lambda = (options: LambdaOptions): Module => {
  const specs = options.specs ?? []
  const view = (ps: ReadonlyArray<tf.Tensor>): Params =>
    Object.fromEntries(specs.map((s, i) => [s.name, ps[i]]))
  return {
    kind: options.kind ?? "Lambda",
    specs,
    buffers: [],
    explicit: false,
    forward: (params, prefix, x, ctx, needDx) => {
      const ps = specs.map((s) => params[`${prefix}${s.name}`])
      const f = (xi: tf.Tensor, ...pi: Array<tf.Tensor>) => options.fn(view(pi), xi, ctx)
      return {
        y: f(x, ...ps),
        backward: (dy) => {
          registerGradients() // (tfjs' configs, when the engine left them for the first autodiff)
          const [dx, ...dps] = tf.grads(f)([x, ...ps], dy)
          return {
            dx: needDx ? dx : undefined,
            grads: Object.fromEntries(specs.map((s, i) => [`${prefix}${s.name}`, dps[i]]))
          }
        }
      }
    },
    call: (params, prefix, x, ctx) => ({
      y: options.fn(view(specs.map((s) => params[`${prefix}${s.name}`])), x, ctx),
      buffers: {}
    })
  }
}

// ------------------------------------------------------------------------------------ layers

/** An int or a (height, width) pair, as PyTorch's `_pair`. */
export type Pair = number | readonly [number, number]

export const pair = (v: Pair): readonly [number, number] => (typeof v === "number" ? [v, v] : v)

export { InvalidLayer } from "./Errors.js"

/**
 * A layer constructor's checks, in the order PyTorch runs them: the first one that fails is the
 * `InvalidLayer`; all passing builds the layer.
 */
const checked = (
  layer: string,
  checks: ReadonlyArray<readonly [field: string, value: unknown, ok: boolean, reason: string]>,
  build: () => Module
): Either.Either<Module, InvalidLayer> => {
  const bad = checks.find(([, , ok]) => !ok)
  return bad === undefined
    ? Either.right(build())
    : Either.left(new InvalidLayer({ layer, field: bad[0], value: bad[1], reason: bad[3] }))
}

const isCount = (v: number) => Number.isInteger(v) && v >= 1
const positivePair = (field: string, v: Pair) =>
  [field, v, pair(v).every(isCount), "must be a positive integer or a pair of them"] as const
const nonNegativePair = (field: string, v: Pair) =>
  [
    field,
    v,
    pair(v).every((d) => Number.isInteger(d) && d >= 0),
    "must be a non-negative integer or a pair of them"
  ] as const
const count = (field: string, v: number) => [field, v, isCount(v), "must be a positive integer"] as const
const probability = (v: number) => ["p", v, v >= 0 && v <= 1, "has to be between 0 and 1"] as const

export interface Conv2dOptions {
  readonly inChannels: number
  readonly outChannels: number
  readonly kernelSize: Pair
  readonly stride?: Pair
  /** PyTorch's padding: zeros on each side (an int or per-dimension pair), 'valid' or 'same'. */
  readonly padding?: Pair | "same" | "valid"
  readonly dilation?: Pair
  readonly bias?: boolean
}

type TfPad = "valid" | "same" | Array<[number, number]>

/** A PyTorch padding as tfjs' `pad` attribute (0 stays 'valid', as the chapter's layers ran). */
const tfPad = (padding: Pair | "same" | "valid"): TfPad => {
  if (padding === "same" || padding === "valid") return padding
  const [ph, pw] = pair(padding)
  if (ph === 0 && pw === 0) return "valid"
  // Always explicit: with a number, tfjs 4.22 sizes the output with the height's kernel and
  // stride for both dimensions (wrong for [1, 2] strides or [2, 3] kernels).
  return [
    [0, 0],
    [ph, ph],
    [pw, pw],
    [0, 0]
  ]
}

/**
 * A dilated filter as an ordinary one with zeros between the taps: [kh, kw, i, o] ->
 * [(kh-1)d+1, (kw-1)d+1, i, o]. tfjs convolves with dilation only at stride 1 and its
 * backward kernels not at all; the expanded filter works with any stride and both kernels,
 * and its gradient is the strided slice of the expanded one.
 */
const dilate = (w: tf.Tensor4D, dh: number, dw: number): tf.Tensor4D => {
  const [kh, kw, ci, co] = w.shape
  const spread = tf.pad(tf.reshape(w, [kh, 1, kw, 1, ci, co]), [
    [0, 0],
    [0, dh - 1],
    [0, 0],
    [0, dw - 1],
    [0, 0],
    [0, 0]
  ])
  return tf.slice(
    tf.reshape(spread, [kh * dh, kw * dw, ci, co]) as tf.Tensor4D,
    [0, 0, 0, 0],
    [(kh - 1) * dh + 1, (kw - 1) * dw + 1, ci, co]
  )
}

/**
 * nn.Conv2d on NHWC activations (weights stored [kh, kw, in, out]); `InvalidLayer` for a
 * non-positive channel count, kernel size, stride or dilation, or a negative padding. (Padding
 * 'same' with a stride is tfjs' 'same', which this layer supports; ModelSpec refuses it, as
 * PyTorch does, so recipes stay portable.)
 */
export const Conv2d = (options: Conv2dOptions): Either.Either<Module, InvalidLayer> => {
  const padding = options.padding ?? 0
  return checked(
    "Conv2d",
    [
      count("inChannels", options.inChannels),
      count("outChannels", options.outChannels),
      positivePair("kernelSize", options.kernelSize),
      positivePair("stride", options.stride ?? 1),
      positivePair("dilation", options.dilation ?? 1),
      ...(padding === "same" || padding === "valid" ? [] : [nonNegativePair("padding", padding)])
    ],
    () => conv2d(options)
  )
}

const conv2d = (options: Conv2dOptions): Module => {
  const { inChannels, outChannels } = options
  const [kh, kw] = pair(options.kernelSize)
  const [sh, sw] = pair(options.stride ?? 1)
  const [dh, dw] = pair(options.dilation ?? 1)
  const pad = tfPad(options.padding ?? 0)
  const withBias = options.bias ?? true
  const dilated = dh > 1 || dw > 1
  const fanIn = inChannels * kh * kw
  const filterShape: [number, number, number, number] = [kh, kw, inChannels, outChannels]
  const expandedShape: [number, number, number, number] = [
    (kh - 1) * dh + 1,
    (kw - 1) * dw + 1,
    inChannels,
    outChannels
  ]
  // The backward kernels' attributes, fixed by the layer (only the input gradient adds a shape).
  const attrs = { strides: [sh, sw], pad, dataFormat: "NHWC", dimRoundingMode: undefined }
  const filterAttrs = { ...attrs, filterShape: expandedShape }
  const specs: Array<ParamSpec> = [
    { name: "weight", shape: filterShape, layout: { _tag: "conv2d" }, bound: kaimingUniformBound(fanIn) }
  ]
  if (withBias)
    specs.push({ name: "bias", shape: [outChannels], layout: { _tag: "same" }, bound: biasBound(fanIn) })
  return leaf({
    kind: "Conv2d",
    specs,
    run: (x, [weight, bias]) => {
      const filter = dilated ? dilate(weight as tf.Tensor4D, dh, dw) : (weight as tf.Tensor4D)
      const y = tf.fused.conv2d({
        x: x as tf.Tensor4D,
        filter,
        strides: [sh, sw],
        pad: pad as any,
        ...(withBias ? { bias } : {})
      })
      return {
        y,
        saved: [x, weight],
        back: (dy, [xs, ws], needDx) => {
          const dWe = tf
            .engine()
            .runKernel("Conv2DBackpropFilter", { x: xs, dy }, filterAttrs as any) as tf.Tensor
          const dW = dilated ? tf.stridedSlice(dWe, [0, 0, 0, 0], expandedShape, [dh, dw, 1, 1]) : dWe
          const dx = needDx
            ? (tf
                .engine()
                .runKernel(
                  "Conv2DBackpropInput",
                  { dy, filter: dilated ? dilate(ws as tf.Tensor4D, dh, dw) : ws },
                  { ...attrs, inputShape: xs.shape } as any
                ) as tf.Tensor)
            : undefined
          return { dx, dps: withBias ? [dW, biasGrad(dy)] : [dW] }
        }
      }
    }
  })
}

export interface LinearOptions {
  readonly inFeatures: number
  readonly outFeatures: number
  readonly bias?: boolean
  /** Set when the input is a flattened NHWC map of PyTorch shape [c, h, w] (for weight exchange). */
  readonly flattenedFrom?: readonly [number, number, number]
}

/** nn.Linear: y = x W + b with W stored [in, out]; `InvalidLayer` for a non-positive size. */
export const Linear = (options: LinearOptions): Either.Either<Module, InvalidLayer> =>
  checked(
    "Linear",
    [
      count("inFeatures", options.inFeatures),
      count("outFeatures", options.outFeatures),
      ...(options.flattenedFrom === undefined
        ? []
        : [
            [
              "flattenedFrom",
              options.flattenedFrom,
              options.flattenedFrom.every(isCount) &&
                options.flattenedFrom.reduce((a, b) => a * b, 1) === options.inFeatures,
              `must be positive and multiply to inFeatures (${options.inFeatures})`
            ] as const
          ])
    ],
    () => linear(options)
  )

const linear = (options: LinearOptions): Module => {
  const { inFeatures, outFeatures } = options
  const withBias = options.bias ?? true
  const layout: Layout =
    options.flattenedFrom === undefined
      ? { _tag: "linear" }
      : { _tag: "linearAfterFlatten", chw: options.flattenedFrom }
  const specs: Array<ParamSpec> = [
    { name: "weight", shape: [inFeatures, outFeatures], layout, bound: kaimingUniformBound(inFeatures) }
  ]
  if (withBias)
    specs.push({ name: "bias", shape: [outFeatures], layout: { _tag: "same" }, bound: biasBound(inFeatures) })
  return leaf({
    kind: "Linear",
    specs,
    run: (x, [weight, bias]) => ({
      y: tf.fused.matMul({ a: x as tf.Tensor2D, b: weight as tf.Tensor2D, ...(withBias ? { bias } : {}) }),
      saved: [x, weight],
      back: (dy, [xs, ws], needDx) => {
        // One kernel for all three where the engine has it (wasm).
        const fused = linearGrad(xs, dy, ws, withBias, needDx)
        if (fused !== undefined) return { dx: fused.dx, dps: withBias ? [fused.dW, fused.db!] : [fused.dW] }
        const dW = tf.matMul(xs as tf.Tensor2D, dy as tf.Tensor2D, true, false)
        return {
          // An explicit transpose then a plain product: wasm's matMul with transposeB skips
          // XNNPACK and costs more for these shapes.
          dx: needDx ? tf.matMul(dy, tf.transpose(ws)) : undefined,
          dps: withBias ? [dW, biasGrad(dy)] : [dW]
        }
      }
    })
  })
}

export interface Pool2dOptions {
  readonly kernelSize: Pair
  /** Defaults to `kernelSize` (PyTorch's `stride=None`). */
  readonly stride?: Pair | undefined
  readonly padding?: Pair | undefined
}

/** PyTorch's pooling output size (floor mode): floor((n + 2p - k) / s) + 1. */
export const poolOutputSize = (n: number, k: number, s: number, p: number): number =>
  Math.floor((n + 2 * p - k) / s) + 1

/** PyTorch's pooling checks: positive kernel and stride, padding at most half the kernel. */
const poolChecks = (o: Pool2dOptions) => {
  const k = o.kernelSize
  const padding = o.padding ?? 0
  const validK = pair(k).every(isCount)
  return [
    positivePair("kernelSize", k),
    positivePair("stride", o.stride ?? k),
    nonNegativePair("padding", padding),
    [
      "padding",
      padding,
      !validK || pair(padding).every((p, d) => p <= pair(k)[d] / 2),
      `should be at most half of the kernel size ${JSON.stringify(k)}`
    ] as const
  ]
}

/**
 * nn.MaxPool2d (floor mode, padding counts as -inf as in PyTorch); `InvalidLayer` for a
 * non-positive kernel size or stride, or a padding over half the kernel.
 */
export const MaxPool2d = (
  kernelSize: Pair | Pool2dOptions,
  stride?: Pair
): Either.Either<Module, InvalidLayer> => {
  const o: Pool2dOptions =
    typeof kernelSize === "object" && !Array.isArray(kernelSize)
      ? (kernelSize as Pool2dOptions)
      : { kernelSize: kernelSize as Pair, stride }
  return checked("MaxPool2d", poolChecks(o), () => maxPool2d(o))
}

const maxPool2d = (o: Pool2dOptions): Module => {
  const [kh, kw] = pair(o.kernelSize)
  const [sh, sw] = pair(o.stride ?? o.kernelSize)
  const pad = tfPad(o.padding ?? 0)
  const attrs = { filterSize: [kh, kw], strides: [sh, sw], pad, dimRoundingMode: undefined }
  return leaf({
    kind: "MaxPool2d",
    run: (x) => {
      const y = tf.maxPool(x as tf.Tensor4D, [kh, kw], [sh, sw], pad as any)
      return {
        y,
        saved: [x, y],
        back: (dy, [xs, ys]) => ({
          dx: tf.engine().runKernel("MaxPoolGrad", { dy, input: xs, output: ys }, attrs as any) as tf.Tensor,
          dps: []
        }),
        backAfterRelu: (dy, [xs]) => maxPoolReluGrad(dy, xs, attrs)
      }
    }
  })
}

/**
 * y[n, i, j, c] = sum over (h, w) of rows[i, h] cols[j, w] x[n, h, w, c]: average pooling of
 * every kind is this with 0/weight matrices (PyTorch's divisor factors into a row count times a
 * column count), and its backward is the same map with the matrices transposed. Two matrix
 * products, exact window semantics on any backend.
 */
const separable = (x: tf.Tensor, rows: tf.Tensor2D, cols: tf.Tensor2D): tf.Tensor => {
  const [n, h, w, c] = x.shape
  const oh = rows.shape[0]
  const ow = cols.shape[0]
  const byRow = tf.matMul(rows, tf.reshape(tf.transpose(x, [1, 0, 2, 3]), [h, n * w * c]))
  const t = tf.reshape(tf.transpose(tf.reshape(byRow, [oh, n, w, c]), [2, 1, 0, 3]), [w, n * oh * c])
  return tf.transpose(tf.reshape(tf.matMul(cols, t), [ow, n, oh, c]), [1, 2, 0, 3])
}

/** A host matrix, `[rows, columns]` row-major, with its transpose (the backward's). */
interface HostMatrix {
  readonly values: Float32Array
  readonly transposed: Float32Array
  readonly shape: readonly [number, number]
}

/** The averaging matrix of one dimension: windows [start, end) and their divisors. */
const windowMatrix = (n: number, windows: ReadonlyArray<readonly [number, number, number]>): HostMatrix => {
  const m = new Float32Array(windows.length * n)
  const t = new Float32Array(windows.length * n)
  windows.forEach(([start, end, divisor], i) => {
    for (let r = Math.max(0, start); r < Math.min(n, end); r++) {
      m[i * n + r] = 1 / divisor
      t[r * windows.length + i] = 1 / divisor
    }
  })
  return { values: m, transposed: t, shape: [windows.length, n] }
}

const upload = (m: HostMatrix, transposed: boolean): tf.Tensor2D =>
  transposed
    ? tf.tensor2d(m.transposed, [m.shape[1], m.shape[0]])
    : tf.tensor2d(m.values, [m.shape[0], m.shape[1]])

/**
 * The matrices depend only on the input's height and width: built once per size on the host
 * (not per forward), uploaded per call (a kept tensor would outlive `tidy` and the flat tensor
 * counts), transposed for the backward on the host instead of by two transpose kernels.
 */
const separableLeaf = (
  kind: string,
  matrices: (h: number, w: number) => readonly [HostMatrix, HostMatrix]
): Module => {
  const cache = new Map<string, readonly [HostMatrix, HostMatrix]>()
  const matricesOf = (h: number, w: number) => {
    const key = `${h}x${w}`
    let m = cache.get(key)
    if (m === undefined) {
      m = matrices(h, w)
      cache.set(key, m)
    }
    return m
  }
  return leaf({
    kind,
    run: (x) => {
      const [, h, w] = x.shape
      const [rows, cols] = matricesOf(h, w)
      return {
        y: separable(x, upload(rows, false), upload(cols, false)),
        saved: [],
        back: (dy) => ({ dx: separable(dy, upload(rows, true), upload(cols, true)), dps: [] })
      }
    }
  })
}

export interface AvgPool2dOptions extends Pool2dOptions {
  /** PyTorch's default true: padded zeros count in the divisor. */
  readonly countIncludePad?: boolean | undefined
}

/** nn.AvgPool2d (floor mode); `InvalidLayer` as `MaxPool2d`. */
export const AvgPool2d = (options: Pair | AvgPool2dOptions): Either.Either<Module, InvalidLayer> => {
  const o: AvgPool2dOptions =
    typeof options === "object" && !Array.isArray(options)
      ? (options as AvgPool2dOptions)
      : { kernelSize: options as Pair }
  return checked("AvgPool2d", poolChecks(o), () => avgPool2d(o))
}

const avgPool2d = (o: AvgPool2dOptions): Module => {
  const k = pair(o.kernelSize)
  const s = pair(o.stride ?? o.kernelSize)
  const p = pair(o.padding ?? 0)
  const include = o.countIncludePad ?? true
  const windows = (n: number, d: 0 | 1) =>
    Array.from({ length: poolOutputSize(n, k[d], s[d], p[d]) }, (_, i) => {
      const start = i * s[d] - p[d]
      const end = start + k[d]
      const valid = Math.min(n, end) - Math.max(0, start)
      return [start, end, include ? k[d] : valid] as const
    })
  return separableLeaf("AvgPool2d", (h, w) => [
    windowMatrix(h, windows(h, 0)),
    windowMatrix(w, windows(w, 1))
  ])
}

/** nn.AdaptiveAvgPool2d: output bin i averages rows floor(i n / o) .. ceil((i + 1) n / o) - 1. */
export const AdaptiveAvgPool2d = (outputSize: Pair): Either.Either<Module, InvalidLayer> =>
  checked("AdaptiveAvgPool2d", [positivePair("outputSize", outputSize)], () => adaptiveAvgPool2d(outputSize))

const adaptiveAvgPool2d = (outputSize: Pair): Module => {
  const [oh, ow] = pair(outputSize)
  const windows = (n: number, o: number) =>
    Array.from({ length: o }, (_, i) => {
      const start = Math.floor((i * n) / o)
      const end = Math.ceil(((i + 1) * n) / o)
      return [start, end, end - start] as const
    })
  return separableLeaf("AdaptiveAvgPool2d", (h, w) => [
    windowMatrix(h, windows(h, oh)),
    windowMatrix(w, windows(w, ow))
  ])
}

export interface BatchNormOptions {
  readonly numFeatures: number
  readonly eps?: number
  readonly momentum?: number
  readonly affine?: boolean
  readonly trackRunningStats?: boolean
}

/**
 * nn.BatchNorm1d ([n, c]) and nn.BatchNorm2d (NHWC maps). Training mode normalises with the
 * batch's mean and biased variance and returns updated buffers: running = (1 - momentum)
 * running + momentum batch, with the UNBIASED variance (n / (n - 1)) for running_var, and
 * num_batches_tracked + 1. Eval mode normalises with the running statistics.
 */
const batchNorm = (kind: "BatchNorm1d" | "BatchNorm2d", rank: 2 | 4, options: BatchNormOptions): Module => {
  const c = options.numFeatures
  const eps = options.eps ?? 1e-5
  const momentum = options.momentum ?? 0.1
  const affine = options.affine ?? true
  const track = options.trackRunningStats ?? true
  const axes = rank === 4 ? [0, 1, 2] : [0]
  const specs: Array<ParamSpec> = affine
    ? [
        { name: "weight", shape: [c], layout: { _tag: "same" }, bound: 0, fill: 1 },
        { name: "bias", shape: [c], layout: { _tag: "same" }, bound: 0, fill: 0 }
      ]
    : []
  const buffers: Array<BufferSpec> = track
    ? [
        { name: "running_mean", shape: [c], fill: 0 },
        { name: "running_var", shape: [c], fill: 1 },
        { name: "num_batches_tracked", shape: [], fill: 0 }
      ]
    : []
  return leaf({
    kind,
    specs,
    buffers,
    run: (x, ps, ctx, bufs) => {
      // ModelSpec checks the shapes of the models it builds; a hand-built one can get here.
      if (x.rank !== rank || x.shape[rank - 1] !== c)
        return misfit(
          kind,
          x,
          `does not fit: ${kind}(${c}) takes ${rank === 4 ? "an NHWC map" : "[n, features]"} with ${c} channels`
        )
      const [gamma, beta] = ps
      const batchStats = ctx.training || !track
      const m = x.size / c
      // PyTorch raises too (a last mini-batch of one sample does it).
      if (batchStats && m < 2)
        return misfit(kind, x, "has 1 value per channel: batch statistics need more than 1 when training")
      const mean = batchStats ? tf.mean(x, axes) : bufs.running_mean
      const centered = tf.sub(x, mean)
      const variance = batchStats ? tf.mean(tf.square(centered), axes) : bufs.running_var
      const invstd = tf.rsqrt(tf.add(variance, eps))
      const xhat = tf.mul(centered, invstd)
      const y = affine ? tf.add(tf.mul(xhat, gamma), beta) : xhat
      const updated =
        ctx.training && track
          ? {
              running_mean: tf.add(tf.mul(bufs.running_mean, 1 - momentum), tf.mul(mean, momentum)),
              running_var: tf.add(
                tf.mul(bufs.running_var, 1 - momentum),
                tf.mul(variance, (momentum * m) / (m - 1))
              ),
              num_batches_tracked: tf.add(bufs.num_batches_tracked, 1)
            }
          : undefined
      return {
        y,
        saved: affine ? [xhat, invstd, gamma] : [xhat, invstd],
        buffers: updated,
        back: (dy, [xh, is, g]) => {
          const dxhat = affine ? tf.mul(dy, g) : dy
          const dps = affine ? [tf.sum(tf.mul(dy, xh), axes), tf.sum(dy, axes)] : []
          // With batch statistics the mean and variance depend on x too:
          // dx = invstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)).
          const dx = batchStats
            ? tf.mul(
                is,
                tf.sub(tf.sub(dxhat, tf.mean(dxhat, axes)), tf.mul(xh, tf.mean(tf.mul(dxhat, xh), axes)))
              )
            : tf.mul(dxhat, is)
          return { dx, dps }
        }
      }
    }
  })
}

/** PyTorch's BatchNorm arguments: a positive feature count, eps > 0, momentum in [0, 1]. */
const checkedBatchNorm = (kind: "BatchNorm1d" | "BatchNorm2d", rank: 2 | 4, options: BatchNormOptions) =>
  checked(
    kind,
    [
      count("numFeatures", options.numFeatures),
      ["eps", options.eps, options.eps === undefined || options.eps > 0, "must be positive"],
      [
        "momentum",
        options.momentum,
        options.momentum === undefined || (options.momentum >= 0 && options.momentum <= 1),
        "has to be between 0 and 1"
      ]
    ],
    () => batchNorm(kind, rank, options)
  )

/** nn.BatchNorm1d over [n, features]; `InvalidLayer` for a bad feature count, eps or momentum. */
export const BatchNorm1d = (options: BatchNormOptions): Either.Either<Module, InvalidLayer> =>
  checkedBatchNorm("BatchNorm1d", 2, options)
/** nn.BatchNorm2d over NHWC maps; `InvalidLayer` for a bad feature count, eps or momentum. */
export const BatchNorm2d = (options: BatchNormOptions): Either.Either<Module, InvalidLayer> =>
  checkedBatchNorm("BatchNorm2d", 4, options)

/** nn.Flatten: [n, ...] -> [n, prod(...)], in this engine's NHWC order. */
export const Flatten = (): Module =>
  leaf({
    kind: "Flatten",
    run: (x) => {
      const shape = x.shape
      return {
        y: tf.reshape(x, [shape[0], -1]),
        saved: [],
        back: (dy) => ({ dx: tf.reshape(dy, shape), dps: [] })
      }
    }
  })

/** An element-wise activation: y = f(x), dx = dy * f'(x) from the saved tensors. */
const activation = (
  kind: string,
  f: (x: tf.Tensor) => { readonly y: tf.Tensor; readonly saved: ReadonlyArray<tf.Tensor> },
  df: (dy: tf.Tensor, saved: ReadonlyArray<tf.Tensor>) => tf.Tensor
): Module =>
  leaf({
    kind,
    run: (x) => {
      const { y, saved } = f(x)
      return { y, saved, back: (dy, s) => ({ dx: df(dy, s), dps: [] }) }
    }
  })

/** nn.ReLU; its gradient passes where the output is positive (0 at 0, like PyTorch). */
export const ReLU = (): Module =>
  activation(
    "ReLU",
    (x) => {
      const y = tf.relu(x)
      return { y, saved: [y] }
    },
    (dy, [y]) => reluGrad(dy, y)
  )

/** nn.LeakyReLU(negative_slope = 0.01); slope at 0 (as PyTorch's `x > 0` test). */
export const LeakyReLU = (options: { readonly negativeSlope?: number } = {}): Module => {
  const slope = options.negativeSlope ?? 0.01
  return activation(
    "LeakyReLU",
    (x) => ({ y: tf.leakyRelu(x, slope), saved: [x] }),
    (dy, [x]) => tf.where(tf.greater(x, 0), dy, tf.mul(dy, slope))
  )
}

/** nn.ELU(alpha = 1): x for x > 0, alpha (e^x - 1) otherwise. */
export const ELU = (options: { readonly alpha?: number } = {}): Module => {
  const alpha = options.alpha ?? 1
  return activation(
    "ELU",
    (x) => {
      // relu(x) + alpha expm1(min(x, 0)): exactly x above 0, and every op differentiable by tfjs.
      const y = tf.add(tf.relu(x), tf.mul(tf.expm1(tf.minimum(x, 0)), alpha))
      return { y, saved: [tf.greater(x, 0), y] }
    },
    (dy, [positive, y]) => tf.where(positive, dy, tf.mul(dy, tf.add(y, alpha)))
  )
}

const SQRT1_2 = Math.SQRT1_2
const SQRT_2_PI = Math.sqrt(2 / Math.PI)
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI)

/** nn.GELU(approximate = 'none'): x Φ(x) with the exact erf, or PyTorch's 'tanh' form. */
export const GELU = (options: { readonly approximate?: "none" | "tanh" } = {}): Module => {
  if ((options.approximate ?? "none") === "none")
    return activation(
      "GELU",
      (x) => {
        const cdf = tf.mul(tf.add(tf.erf(tf.mul(x, SQRT1_2)), 1), 0.5)
        return { y: tf.mul(x, cdf), saved: [x, cdf] }
      },
      (dy, [x, cdf]) => {
        const pdf = tf.mul(tf.exp(tf.mul(tf.square(x), -0.5)), INV_SQRT_2PI)
        return tf.mul(dy, tf.add(cdf, tf.mul(x, pdf)))
      }
    )
  return activation(
    "GELU",
    (x) => {
      const t = tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_PI))
      return { y: tf.mul(tf.mul(x, 0.5), tf.add(t, 1)), saved: [x, t] }
    },
    (dy, [x, t]) => {
      const inner = tf.mul(tf.add(tf.mul(tf.square(x), 3 * 0.044715), 1), SQRT_2_PI)
      const d = tf.add(
        tf.mul(tf.add(t, 1), 0.5),
        tf.mul(tf.mul(tf.mul(x, 0.5), tf.sub(1, tf.square(t))), inner)
      )
      return tf.mul(dy, d)
    }
  )
}

/** nn.SiLU: x sigmoid(x). */
export const SiLU = (): Module =>
  activation(
    "SiLU",
    (x) => {
      const s = tf.sigmoid(x)
      return { y: tf.mul(x, s), saved: [x, s] }
    },
    (dy, [x, s]) => tf.mul(dy, tf.mul(s, tf.add(tf.mul(x, tf.sub(1, s)), 1)))
  )

/** nn.Tanh. */
export const Tanh = (): Module =>
  activation(
    "Tanh",
    (x) => {
      const y = tf.tanh(x)
      return { y, saved: [y] }
    },
    (dy, [y]) => tf.mul(dy, tf.sub(1, tf.square(y)))
  )

/** nn.Sigmoid. */
export const Sigmoid = (): Module =>
  activation(
    "Sigmoid",
    (x) => {
      const y = tf.sigmoid(x)
      return { y, saved: [y] }
    },
    (dy, [y]) => tf.mul(dy, tf.mul(y, tf.sub(1, y)))
  )

/**
 * The inverted-dropout mask: each element kept with probability 1 - p (PyTorch's
 * `bernoulli_(1 - p)`) and survivors scaled by 1 / (1 - p) so the expected output is the input.
 */
export const dropoutMask = (rng: Random.State, size: number, p: number): Float32Array => {
  const mask = new Float32Array(size)
  const scale = p < 1 ? 1 / (1 - p) : 0
  // One 32-bit draw per element (PyTorch's bernoulli also draws float32 uniforms): u < p drops.
  const threshold = p * 0x100000000
  // Random.nextUint32 (xoshiro128**) unrolled on four words: the same draws, without a tuple
  // and a state array per element (that allocation was most of a step's mask time). The
  // Module test holds it against nextUint32.
  let [s0, s1, s2, s3] = rng
  for (let i = 0; i < size; i++) {
    const x = Math.imul(s1, 5)
    const u = Math.imul((x << 7) | (x >>> 25), 9) >>> 0
    const t = s1 << 9
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << 11) | (s3 >>> 21)
    mask[i] = u >= threshold ? scale : 0
  }
  return mask
}

/**
 * A dropout module: in training mode (p > 0) multiplies by an inverted-dropout mask of
 * `maskShape(x)` (broadcast over x), the same mask in the backward pass.
 */
const dropoutModule = (
  kind: string,
  p: number,
  maskShape: (x: tf.Tensor) => Array<number>
): Either.Either<Module, InvalidLayer> =>
  checked(kind, [probability(p)], () =>
    leaf({
      kind,
      run: (x, _ps, ctx) => {
        if (!ctx.training || p === 0) return { y: x, saved: [], back: (dy) => ({ dx: dy, dps: [] }) }
        const shape = maskShape(x)
        const mask = tf.tensor(dropoutMask(ctx.rng, sizeOf(shape), p), shape, "float32")
        return { y: tf.mul(x, mask), saved: [mask], back: (dy, [m]) => ({ dx: tf.mul(dy, m), dps: [] }) }
      }
    })
  )

/** nn.Dropout(p = 0.5): drops elements in training mode only; `InvalidLayer` unless 0 <= p <= 1. */
export const Dropout = (p = 0.5): Either.Either<Module, InvalidLayer> =>
  dropoutModule("Dropout", p, (x) => x.shape)

/**
 * nn.Dropout2d(p = 0.5): drops whole channels of an NHWC map (one draw per sample and channel);
 * `InvalidLayer` unless 0 <= p <= 1.
 */
export const Dropout2d = (p = 0.5): Either.Either<Module, InvalidLayer> =>
  dropoutModule("Dropout2d", p, (x) => {
    // ModelSpec checks the shapes of the models it builds; a hand-built one can get here.
    if (x.rank !== 4) return misfit("Dropout2d", x, "does not fit: Dropout2d takes an NHWC map")
    const [n, , , c] = x.shape
    return [n, 1, 1, c]
  })
