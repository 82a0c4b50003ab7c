import "@tensorflow/tfjs-backend-cpu"
import "@tensorflow/tfjs-backend-wasm"
import { type Numeric, TfNumeric } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Context, Effect, Layer, type Scope } from "effect"
import { BackendUnavailable } from "./Errors.js"
import { registerGradients } from "./Gradients.js"
import * as Fused from "./kernels/Fused.js"
import * as Kernels from "./kernels/Register.js"

export { BackendUnavailable } from "./Errors.js"

/**
 * The tensor engine, chosen as a layer: `wasm` (default, ships its .wasm in node_modules),
 * `cpu` (pure JS fallback) or `tensorflow` (libtensorflow through @tensorflow/tfjs-node or
 * -node-gpu, loaded at run time only when the user installed one).
 */
export type BackendName = "wasm" | "cpu" | "tensorflow"

export const backendNames: ReadonlyArray<BackendName> = ["wasm", "cpu", "tensorflow"]

export interface EngineService {
  readonly backend: BackendName
  /** The tfjs-core namespace, switched to `backend`. */
  readonly tf: typeof tf
  /**
   * The numeric optimizers run on: tfjs tensors, with `fused` Adam/SGD kernels on cpu and wasm
   * (optim's Adam/AdamW/SGD then take one kernel call per step instead of a dozen ops per tensor).
   */
  readonly numeric: Numeric.Numeric<tf.Tensor>
  /** What the layer registered; `kernels.stock` holds the stock kernels ours replaced. */
  readonly kernels: Kernels.Registration
}

export class Engine extends Context.Tag("@stepwise/core/Engine")<Engine, EngineService>() {}

/** Packages providing the `tensorflow` backend, tried in order. */
export const tensorflowPackages = ["@tensorflow/tfjs-node", "@tensorflow/tfjs-node-gpu"] as const

const importOptional = (specifier: string): Promise<unknown> => import(specifier)

const loadTensorflow = Effect.fn("Engine.loadTensorflow")(function* () {
  const reasons: Array<string> = []
  for (const pkg of tensorflowPackages) {
    const loaded = yield* Effect.tryPromise({
      try: () => importOptional(pkg),
      catch: (e) => String((e as Error)?.message ?? e)
    }).pipe(Effect.either)
    if (loaded._tag === "Right") return
    reasons.push(`${pkg}: ${loaded.left.split("\n")[0]}`)
  }
  return yield* new BackendUnavailable({
    backend: "tensorflow",
    package: tensorflowPackages.join(" or "),
    reason: reasons.join("; ")
  })
})

const run = (kernel: string, inputs: Record<string, tf.Tensor>, attrs: object): Array<tf.Tensor> =>
  tf.engine().runKernel(kernel, inputs as any, attrs as any) as unknown as Array<tf.Tensor>

/**
 * tfjs tensors with the fused update kernels (registered by the engine on cpu and wasm): one
 * multi-tensor kernel call per step over every parameter (inputs `param0`, `grad0`, ...).
 */
export const fusedNumeric: Numeric.Numeric<tf.Tensor> = {
  ...TfNumeric.TfNumeric,
  fused: {
    adam: (inputs, step) => {
      const ins: Record<string, tf.Tensor> = {}
      inputs.forEach((t, i) => {
        ins[Fused.inputName("param", i)] = t.param
        ins[Fused.inputName("grad", i)] = t.grad
        ins[Fused.inputName("expAvg", i)] = t.expAvg
        ins[Fused.inputName("expAvgSq", i)] = t.expAvgSq
        if (step.amsgrad && t.maxExpAvgSq !== undefined)
          ins[Fused.inputName("maxExpAvgSq", i)] = t.maxExpAvgSq
      })
      const k = step.amsgrad ? 4 : 3
      const out = run(Fused.AdamUpdate, ins, { ...step, count: inputs.length })
      return inputs.map((_, i) => ({
        param: out[i * k],
        expAvg: out[i * k + 1],
        expAvgSq: out[i * k + 2],
        maxExpAvgSq: step.amsgrad ? out[i * k + 3] : undefined
      }))
    },
    sgd: (inputs, step) => {
      const withBuffer = step.momentum !== 0
      const ins: Record<string, tf.Tensor> = {}
      inputs.forEach((t, i) => {
        ins[Fused.inputName("param", i)] = t.param
        ins[Fused.inputName("grad", i)] = t.grad
        if (withBuffer && !step.first && t.momentumBuffer !== undefined)
          ins[Fused.inputName("momentumBuffer", i)] = t.momentumBuffer
      })
      const k = withBuffer ? 2 : 1
      const out = run(Fused.SgdUpdate, ins, { ...step, count: inputs.length })
      return inputs.map((_, i) => ({
        param: out[i * k],
        momentumBuffer: withBuffer ? out[i * k + 1] : undefined
      }))
    }
  }
}

const kernelsOf = (backend: BackendName): ReadonlyArray<Kernels.Ours> =>
  backend === "wasm"
    ? [...Kernels.wasmKernels, ...Fused.kernels("wasm")]
    : backend === "cpu"
      ? [...Kernels.cpuKernels, ...Fused.kernels("cpu")]
      : []

/**
 * The engine on `backend`: our kernels registered (restored to the stock ones when the scope
 * closes), tfjs switched to `backend` and ready. tfjs keeps one global engine, so one engine
 * scope at a time is what a program should hold.
 *
 * `gradients: "onDemand"` leaves tfjs' gradient configs (~0.3-0.5 s of loading, see
 * Gradients.ts) to the first autodiff this package runs (`Loss` on a net with a `Lambda` or
 * `autodiff: true`, a `Lambda`'s backward), for a program that calls no `tf.grad` itself: the
 * CLI, whose layers all have explicit backwards. The default registers them here.
 */
export const make = (
  backend: BackendName,
  options: { readonly gradients?: "eager" | "onDemand" } = {}
): Effect.Effect<EngineService, BackendUnavailable, Scope.Scope> =>
  Effect.gen(function* () {
    if (backend === "tensorflow") yield* loadTensorflow()
    // tfjs' gradient configs (see Gradients.ts), before our kernels so nothing loaded with them
    // could replace ours. Not undone at scope end: they only add entries to tfjs' gradient
    // registry, which nothing else writes, and a second scope reuses them.
    if (options.gradients !== "onDemand") registerGradients()
    const kernels = yield* Effect.acquireRelease(
      Effect.sync(() => Kernels.register(kernelsOf(backend))),
      (r) => Effect.sync(r.restore)
    )
    const unavailable = (reason: string, cause?: unknown) =>
      new BackendUnavailable({
        backend,
        package:
          backend === "tensorflow" ? tensorflowPackages.join(" or ") : `@tensorflow/tfjs-backend-${backend}`,
        reason,
        cause
      })
    const ok = yield* Effect.tryPromise({
      try: () => tf.setBackend(backend),
      catch: (e) => unavailable(String((e as Error)?.message ?? e), e)
    })
    if (!ok) return yield* unavailable("tf.setBackend returned false")
    yield* Effect.promise(() => tf.ready())
    const numeric = backend === "tensorflow" ? TfNumeric.TfNumeric : fusedNumeric
    return { backend, tf, numeric, kernels } satisfies EngineService
  }).pipe(Effect.withSpan("Engine.make", { attributes: { backend } }))

/** The engine as a layer: everything that touches tensors requires `Engine`. */
export const layer = (backend: BackendName = "wasm"): Layer.Layer<Engine, BackendUnavailable> =>
  Layer.scoped(Engine, make(backend))

export const wasm = layer("wasm")
export const cpu = layer("cpu")
export const tensorflow = layer("tensorflow")
