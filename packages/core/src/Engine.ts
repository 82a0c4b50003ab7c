import "@tensorflow/tfjs-backend-cpu"
import "@tensorflow/tfjs-backend-wasm"
import * as tf from "@tensorflow/tfjs-core"
import { Context, Effect, Layer, Schema } from "effect"
import { registerGradients } from "./Gradients.js"
import { registerFusedKernels } from "./kernels/Fused.js"
import { registerCpuKernels, registerWasmKernels } from "./kernels/Register.js"

/**
 * The tensor engine, chosen as a layer: `wasm` (default, ships its .wasm in node_modules),
 * `cpu` (pure JS fallback) or `tensorflow` (libtensorflow through @tensorflow/tfjs-node or
 * -node-gpu, loaded at run time only when the user installed one).
 */
export type BackendName = "wasm" | "cpu" | "tensorflow"

export const backendNames: ReadonlyArray<BackendName> = ["wasm", "cpu", "tensorflow"]

/** A requested backend that cannot be used here; `package` is what to install. */
export class BackendUnavailable extends Schema.TaggedError<BackendUnavailable>()("BackendUnavailable", {
  backend: Schema.String,
  package: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `backend '${this.backend}' is unavailable: ${this.reason} (install ${this.package})`
  }
}

export interface EngineService {
  readonly backend: BackendName
  /** The tfjs-core namespace, already switched to `backend`. */
  readonly tf: typeof tf
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

/**
 * Switches tfjs to `backend` (registering our kernels first) and waits until it is ready.
 * tfjs keeps one global engine, so this is a process-wide choice.
 */
export const use = Effect.fn("Engine.use")(function* (backend: BackendName) {
  if (backend === "tensorflow") yield* loadTensorflow()
  // Before our kernels, so nothing loaded with tfjs' gradient configs could replace them.
  registerGradients()
  if (backend === "wasm") registerWasmKernels()
  if (backend === "cpu") registerCpuKernels()
  registerFusedKernels()
  const unavailable = (reason: string) =>
    new BackendUnavailable({
      backend,
      package:
        backend === "tensorflow" ? tensorflowPackages.join(" or ") : `@tensorflow/tfjs-backend-${backend}`,
      reason
    })
  const ok = yield* Effect.tryPromise({
    try: () => tf.setBackend(backend),
    catch: (e) => unavailable(String((e as Error)?.message ?? e))
  })
  if (!ok) return yield* unavailable("tf.setBackend returned false")
  yield* Effect.promise(() => tf.ready())
  return { backend, tf } satisfies EngineService
})

export const layer = (backend: BackendName = "wasm"): Layer.Layer<Engine, BackendUnavailable> =>
  Layer.effect(Engine, use(backend))

export const wasm = layer("wasm")
export const cpu = layer("cpu")
export const tensorflow = layer("tensorflow")
