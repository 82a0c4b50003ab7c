/**
 * What a training run tells the world, as typed events on an Effect `PubSub`.
 *
 * The chapter's `capture_gradients`, `capture_parameters` and `attach_hooks` register hooks that
 * append to dictionaries and must be removed afterwards. Here they are subscriptions: each one
 * registers its interest in some layers for the lifetime of its `Scope`, and the training loop
 * copies a layer's gradients, parameters or activations to the host only while somebody is
 * interested in that layer. With no `TrainEvents` service, or no interest, nothing is copied.
 */
import { Chunk, Context, Data, Effect, Fiber, Layer, PubSub, Ref, type Scope, Stream } from "effect"

/** A layer's values on the host, keyed by parameter name within the layer (`weight`, `bias`). */
export interface LayerValues {
  readonly [param: string]: { readonly shape: ReadonlyArray<number>; readonly values: Float32Array }
}

export type TrainEvent = Data.TaggedEnum<{
  /** After every training mini-batch: its loss and the lr it was trained with. */
  BatchEnd: { readonly epoch: number; readonly batch: number; readonly loss: number; readonly lr: number }
  /** After validation: mean mini-batch losses and the lr after this epoch's scheduler steps. */
  EpochEnd: {
    readonly epoch: number
    readonly loss: number
    readonly valLoss: number | undefined
    readonly lr: number
  }
  /** Every time a scheduler step changes the hyperparameters (and once at the start). */
  LearningRate: {
    readonly epoch: number
    readonly batch: number
    readonly lr: number
    readonly momentum: number | undefined
  }
  /** Gradients of a requested layer's parameters, for one training mini-batch. */
  Gradients: {
    readonly epoch: number
    readonly batch: number
    readonly layer: string
    readonly values: LayerValues
  }
  /** Parameters of a requested layer as used in the forward pass of one training mini-batch. */
  Parameters: {
    readonly epoch: number
    readonly batch: number
    readonly layer: string
    readonly values: LayerValues
  }
  /** Output of a requested layer in the forward pass of one training mini-batch. */
  Activations: {
    readonly epoch: number
    readonly batch: number
    readonly layer: string
    readonly shape: ReadonlyArray<number>
    readonly values: Float32Array
  }
  /** The end of a `train` call: subscriptions opened for "the next run" complete here. */
  TrainEnd: { readonly epochs: number }
}>

export const TrainEvent = Data.taggedEnum<TrainEvent>()

export type Kind = "Gradients" | "Parameters" | "Activations"

/** How many subscribers want each layer, per kind. */
export type Interest = { readonly [K in Kind]: ReadonlyMap<string, number> }

const noInterest: Interest = { Gradients: new Map(), Parameters: new Map(), Activations: new Map() }

export interface Bus {
  readonly pubsub: PubSub.PubSub<TrainEvent>
  readonly interest: Ref.Ref<Interest>
}

/** The event bus a training run publishes to, when provided. */
export class TrainEvents extends Context.Tag("@stepwise/core/TrainEvents")<TrainEvents, Bus>() {}

export const makeBus: Effect.Effect<Bus> = Effect.map(
  Effect.zip(PubSub.unbounded<TrainEvent>(), Ref.make(noInterest)),
  ([pubsub, interest]) => ({ pubsub, interest })
)

export const layer: Layer.Layer<TrainEvents> = Layer.effect(TrainEvents, makeBus)

const adjust = (interest: Interest, kind: Kind, layers: ReadonlyArray<string>, delta: number): Interest => {
  const m = new Map(interest[kind])
  for (const l of layers) {
    const n = (m.get(l) ?? 0) + delta
    if (n > 0) m.set(l, n)
    else m.delete(l)
  }
  return { ...interest, [kind]: m }
}

/** The layers somebody is listening to, per kind (what the loop reads before copying anything). */
export const wanted = (interest: Interest, kind: Kind): ReadonlyArray<string> => [...interest[kind].keys()]

/** Registers interest in `layers` for the lifetime of the current scope. */
export const register = (kind: Kind, layers: ReadonlyArray<string>) =>
  Effect.flatMap(TrainEvents, (bus) =>
    Effect.acquireRelease(
      Ref.update(bus.interest, (i) => adjust(i, kind, layers, 1)),
      () => Ref.update(bus.interest, (i) => adjust(i, kind, layers, -1))
    )
  )

/**
 * Every event from now on (subscribed when this effect runs, not when the stream is pulled, so
 * nothing published in between is lost). The subscription ends with the scope.
 */
export const subscribe: Effect.Effect<
  Stream.Stream<TrainEvent>,
  never,
  TrainEvents | Scope.Scope
> = Effect.flatMap(TrainEvents, (bus) => Stream.fromPubSub(bus.pubsub, { scoped: true }))

/** Events of the next training run, up to and including its `TrainEnd`. */
export const nextRun: Effect.Effect<Stream.Stream<TrainEvent>, never, TrainEvents | Scope.Scope> = Effect.map(
  subscribe,
  Stream.takeUntil(TrainEvent.$is("TrainEnd"))
)

type Of<K extends Kind> = Extract<TrainEvent, { readonly _tag: K }>

const layerStream = <K extends Kind>(kind: K, layers: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    yield* register(kind, layers)
    const events = yield* nextRun
    const names = new Set(layers)
    return Stream.filter(
      events,
      (e): e is Of<K> => e._tag === kind && names.has((e as Extract<TrainEvent, { layer: string }>).layer)
    )
  })

/** Gradients of `layers` for every mini-batch of the next run. */
export const gradients = (layers: ReadonlyArray<string>) => layerStream("Gradients", layers)
/** Parameters of `layers` for every mini-batch of the next run. */
export const parameters = (layers: ReadonlyArray<string>) => layerStream("Parameters", layers)
/** Outputs of `layers` for every training mini-batch of the next run (the chapter's forward hooks). */
export const activations = (layers: ReadonlyArray<string>) => layerStream("Activations", layers)

/** The chapter's `_gradients` / `_parameters` dictionaries: layer -> parameter -> one array a batch. */
export type Captured = { readonly [layer: string]: { readonly [param: string]: ReadonlyArray<Float32Array> } }

const collectLayers = (stream: Stream.Stream<Of<"Gradients"> | Of<"Parameters">>) =>
  Effect.map(Stream.runCollect(stream), (events) => {
    const out: Record<string, Record<string, Array<Float32Array>>> = {}
    for (const e of Chunk.toReadonlyArray(events)) {
      out[e.layer] ??= {}
      const byParam = out[e.layer]
      for (const [param, v] of Object.entries(e.values)) {
        byParam[param] ??= []
        byParam[param].push(v.values)
      }
    }
    return out as Captured
  })

/**
 * The chapter's `capture_gradients(layers)`: starts collecting now and returns an effect that,
 * once the next training run has ended, gives the collected gradients. Nothing to remove: the
 * interest ends with the scope.
 */
export const captureGradients = (layers: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const stream = yield* gradients(layers)
    const fiber = yield* Effect.forkScoped(collectLayers(stream))
    return Fiber.join(fiber)
  })

/** The chapter's `capture_parameters(layers)`, as `captureGradients`. */
export const captureParameters = (layers: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const stream = yield* parameters(layers)
    const fiber = yield* Effect.forkScoped(collectLayers(stream))
    return Fiber.join(fiber)
  })

/** The chapter's `attach_hooks(layers)` with its default hook: layer -> one output a batch. */
export const attachHooks = (layers: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const stream = yield* activations(layers)
    const fiber = yield* Effect.forkScoped(
      Effect.map(Stream.runCollect(stream), (events) => {
        const out: Record<string, Array<{ shape: ReadonlyArray<number>; values: Float32Array }>> = {}
        for (const e of Chunk.toReadonlyArray(events)) {
          out[e.layer] ??= []
          out[e.layer].push({ shape: e.shape, values: e.values })
        }
        return out as {
          readonly [layer: string]: ReadonlyArray<{ shape: ReadonlyArray<number>; values: Float32Array }>
        }
      })
    )
    return Fiber.join(fiber)
  })

/** The layer of a parameter named like PyTorch's state_dict: `featurizer.conv1.weight` -> `featurizer.conv1`. */
export const layerOf = (param: string): string => {
  const i = param.lastIndexOf(".")
  return i < 0 ? "" : param.slice(0, i)
}

/** The parameter's name within its layer: `conv1.weight` -> `weight`. */
export const leafOf = (param: string): string => param.slice(param.lastIndexOf(".") + 1)
