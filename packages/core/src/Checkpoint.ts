/**
 * Checkpoints: everything a run needs to continue exactly, and to be used alone (evaluate,
 * predict, export), in one safetensors file.
 *
 * Format `stepwise.checkpoint/2` (readable by any safetensors tool):
 * - tensors, float32, in this engine's layout (conv filters [kh, kw, in, out], linear [in, out]):
 *   `params/<name>` for every parameter (`params/conv1.weight`), `buffers/<name>` for every
 *   buffer (BatchNorm's `buffers/bn1.running_mean`, absent without BatchNorm), and
 *   `optimizer/<slot>/<name>` for every optimizer slot (`optimizer/expAvg/conv1.weight`);
 * - `__metadata__.stepwise`: a JSON document checked by `Meta` on load: `format`,
 *   `totalEpochs` (the epoch count), the histories `losses` / `valLosses` / `learningRates`,
 *   `seed` (the dropout masks of epoch e, batch b come from `foldIn(foldIn(make(seed), e), b)`,
 *   and loaders shuffle by (their seed, epoch), so seed and epoch are the whole random state),
 *   the optimizer's `name` and `step` (with the slot tensors, decoded by `OptimizerState.schema`),
 *   the scheduler's `name` and `state` (encoded by its `stateSchema`: JSON, non-finite numbers as
 *   strings), and `run`: what the run was, `{ model, inputShape, classes, normalizer, recipe }`,
 *   so the file alone rebuilds the model and its preprocessing (null when saved without it).
 *
 * Format-1 files (no `run`; non-finite numbers as `{"$number": "Infinity"}`) are still read.
 * Files are written to a temporary name and renamed, so a crash never leaves half a checkpoint.
 */
import { type Optimizer, OptimizerState, Scheduler } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either, Schema } from "effect"
import { Engine } from "./Engine.js"
import { CheckpointError } from "./Errors.js"
import * as ModelSpec from "./ModelSpec.js"
import * as Module from "./Module.js"
import * as Safetensors from "./Safetensors.js"
import type * as Trainer from "./Trainer.js"

export const FORMAT = "stepwise.checkpoint/2"
export const FORMAT_1 = "stepwise.checkpoint/1"

export { CheckpointError } from "./Errors.js"

const PositiveInt = Schema.Int.pipe(Schema.positive())
const Numbers = Schema.Array(Scheduler.JsonNumber)

/**
 * What a run was, beyond its tensors: the model spec, the input shape [C, H, W] it was built for,
 * the class names (in the order of the model's outputs), the normalizer of its inputs (null: none)
 * and the recipe it was trained from (the CLI's; null from code).
 */
export const Run = Schema.Struct({
  model: ModelSpec.Model,
  inputShape: Schema.Tuple(PositiveInt, PositiveInt, PositiveInt),
  classes: Schema.Array(Schema.String),
  normalizer: Schema.NullOr(
    Schema.Struct({ mean: Schema.Array(Schema.Number), std: Schema.Array(Schema.Number) })
  ),
  recipe: Schema.NullOr(Scheduler.JsonValue)
})
export type Run = typeof Run.Type

const common = {
  totalEpochs: Schema.NonNegativeInt,
  losses: Numbers,
  valLosses: Numbers,
  learningRates: Numbers,
  seed: Schema.Int,
  optimizer: Schema.Struct({ name: Schema.String, step: Schema.NonNegativeInt })
}

export const Meta = Schema.Struct({
  format: Schema.Literal(FORMAT),
  ...common,
  scheduler: Schema.NullOr(Schema.Struct({ name: Schema.String, state: Scheduler.JsonValue })),
  run: Schema.NullOr(Run)
})
export type Meta = typeof Meta.Type

/** Format 1, read into format 2's shape (no run info). */
const Meta1 = Schema.transform(
  Schema.Struct({
    format: Schema.Literal(FORMAT_1),
    ...common,
    scheduler: Schema.NullOr(Schema.Struct({ name: Schema.String, state: Scheduler.JsonValue }))
  }),
  Schema.typeSchema(Meta),
  {
    strict: true,
    decode: ({ format: _, ...m }) => ({ ...m, format: FORMAT as typeof FORMAT, run: null }),
    encode: ({ format: _, run: __, ...m }) => ({ ...m, format: FORMAT_1 as typeof FORMAT_1 })
  }
)

const AnyMeta = Schema.Union(Meta, Meta1)

/** A checkpoint on the host: tensors as float32 arrays with shapes, plus the metadata. */
export interface Snapshot {
  readonly meta: Meta
  readonly params: { readonly [name: string]: Safetensors.HostTensor }
  readonly buffers: { readonly [name: string]: Safetensors.HostTensor }
  /** The optimizer's state with host tensors (its step and slot trees, checked by its schema). */
  readonly optimizer: Optimizer.OptimizerState<Safetensors.HostTensor>
  /** The format the file was written in (format-1 files read into format 2's shape). */
  readonly fileFormat: typeof FORMAT | typeof FORMAT_1
}

/** Host tensors as a numeric backend for `OptimizerState.schema`: what a file's tensors are. */
const host = {
  fromArray: (values: ArrayLike<number>, shape: ReadonlyArray<number>) =>
    Safetensors.tensor(Float32Array.from(values), shape),
  toArray: (t: Safetensors.HostTensor) => Float64Array.from(t.data as Float32Array),
  shape: (t: Safetensors.HostTensor) => t.shape
}
const hostState = OptimizerState.schema<Safetensors.HostTensor>(host)

const toHost = (x: tf.Tensor): Safetensors.HostTensor =>
  Safetensors.tensor(Float32Array.from(x.dataSync() as Float32Array), x.shape)

const hostTree = (tree: { readonly [name: string]: tf.Tensor }) =>
  Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, toHost(v)]))

/**
 * The snapshot of a trainer (copies its tensors to the host), with `run` describing it (omit it
 * and the checkpoint can only be resumed into a trainer built by its own code). Fails when the
 * scheduler's state does not encode (a custom scheduler whose state is not JSON-safe).
 */
export const snapshot = (
  t: Trainer.Trainer<any, any>,
  run: Run | null = null,
  path = "<snapshot>"
): Either.Either<Snapshot, CheckpointError> =>
  Either.gen(function* () {
    const scheduler =
      t.scheduled === undefined
        ? null
        : {
            name: t.scheduled.name,
            state: yield* Either.mapLeft(
              t.scheduled.encode(),
              (e) => new CheckpointError({ path, reason: `scheduler state: ${e.message}`, cause: e })
            )
          }
    return {
      meta: {
        format: FORMAT,
        totalEpochs: t.totalEpochs,
        losses: [...t.losses],
        valLosses: [...t.valLosses],
        learningRates: [...t.learningRates],
        seed: t.seed,
        optimizer: { name: t.config.optimizer.name, step: t.optState.step },
        scheduler,
        run
      },
      params: hostTree(t.params),
      buffers: hostTree(t.buffers),
      optimizer: OptimizerState.map(t.optState, toHost),
      fileFormat: FORMAT
    }
  })

/** The safetensors file of a snapshot. */
export const toFile = (s: Snapshot, path = "<snapshot>"): Either.Either<Safetensors.File, CheckpointError> =>
  Either.gen(function* () {
    const tensors: Record<string, Safetensors.HostTensor> = {}
    for (const [k, v] of Object.entries(s.params)) tensors[`params/${k}`] = v
    for (const [k, v] of Object.entries(s.buffers)) tensors[`buffers/${k}`] = v
    for (const [slot, tree] of Object.entries(OptimizerState.slotsOf(s.optimizer))) {
      if (slot.includes("/"))
        return yield* Either.left(
          new CheckpointError({ path, reason: `optimizer slot name ${slot} contains '/'` })
        )
      for (const [k, v] of Object.entries(tree)) tensors[`optimizer/${slot}/${k}`] = v
    }
    const meta = yield* Either.mapLeft(
      Schema.encodeEither(Meta)(s.meta),
      (e) => new CheckpointError({ path, reason: `metadata: ${e.message}`, cause: e })
    )
    return { tensors, metadata: { stepwise: JSON.stringify(meta) } }
  })

// Format 1 wrote non-finite numbers as {"$number": "Infinity"}: read them as the strings that
// `JsonNumber` (histories, scheduler states) decodes.
const reviver1 = (_key: string, value: unknown) =>
  typeof value === "object" &&
  value !== null &&
  Object.keys(value).length === 1 &&
  typeof (value as { $number?: unknown }).$number === "string"
    ? (value as { $number: string }).$number
    : value

/** A snapshot from a safetensors file, validating the metadata, the tensor names and the optimizer state. */
export const fromFile = (file: Safetensors.File, path: string): Effect.Effect<Snapshot, CheckpointError> =>
  Effect.gen(function* () {
    const fail = (reason: string, cause?: unknown) => new CheckpointError({ path, reason, cause })
    const raw = file.metadata.stepwise
    if (raw === undefined) return yield* fail("no stepwise metadata: not a stepwise checkpoint")
    const json = yield* Effect.try({
      try: () => JSON.parse(raw, reviver1) as unknown,
      catch: (e) => fail(`metadata is not JSON (${e})`, e)
    })
    const meta = yield* Schema.decodeUnknown(AnyMeta)(json).pipe(
      Effect.mapError((e) => fail(`metadata: ${e.message}`, e))
    )
    const params: Record<string, Safetensors.HostTensor> = {}
    const buffers: Record<string, Safetensors.HostTensor> = {}
    const slots: Record<
      string,
      Record<string, { shape: ReadonlyArray<number>; values: ReadonlyArray<number> }>
    > = {}
    for (const [name, t] of Object.entries(file.tensors)) {
      if (t.dtype !== "F32") return yield* fail(`tensor ${name} is ${t.dtype}, expected F32`)
      const m = /^(params|buffers|optimizer\/([^/]+))\/(.+)$/.exec(name)
      if (m === null) return yield* fail(`unexpected tensor ${name}`)
      if (m[1] === "buffers") buffers[m[3]] = t
      else if (m[2] === undefined) params[m[3]] = t
      else {
        slots[m[2]] ??= {}
        slots[m[2]][m[3]] = { shape: t.shape, values: Array.from(t.data as Float32Array) }
      }
    }
    const optimizer = yield* Schema.decodeUnknown(hostState)({ step: meta.optimizer.step, slots }).pipe(
      Effect.mapError((e) => fail(`optimizer state: ${e.message}`, e))
    )
    const fileFormat = (json as { format?: unknown }).format === FORMAT_1 ? FORMAT_1 : FORMAT
    return { meta, params, buffers, optimizer, fileFormat }
  })

/** Writes `t` to `path` atomically, with `run` describing it (see `Run`). */
export const save = (path: string, t: Trainer.Trainer<any, any>, run: Run | null = null) =>
  Effect.zipRight(
    Engine,
    Effect.flatMap(
      Effect.suspend(() => Either.flatMap(snapshot(t, run, path), (s) => toFile(s, path))),
      (file) => Safetensors.write(path, file)
    )
  )

/** Reads a checkpoint file (a file that cannot be read fails as `CheckpointError`, cause kept). */
export const load = (path: string) =>
  Safetensors.read(path).pipe(
    Effect.catchTags({
      SystemError: (e) =>
        Effect.fail(
          new CheckpointError({
            path,
            reason: e.reason === "NotFound" ? "no such file" : `cannot read (${e.message})`,
            cause: e
          })
        ),
      BadArgument: (e) =>
        Effect.fail(new CheckpointError({ path, reason: `cannot read (${e.message})`, cause: e }))
    }),
    Effect.flatMap((file) => fromFile(file, path))
  )

/**
 * The run info of a checkpoint, or a `CheckpointError` naming the file when it has none (a
 * format-1 file, or one saved from code without it).
 */
export const runOf = (s: Snapshot, path: string): Effect.Effect<Run, CheckpointError> =>
  s.meta.run === null
    ? Effect.fail(
        new CheckpointError({
          path,
          reason:
            s.fileFormat === FORMAT_1
              ? "no run info (model, classes, normalizer): a format-1 checkpoint; evaluate it from its run folder"
              : "no run info (model, classes, normalizer): saved without it (Checkpoint.save's `run`)"
        })
      )
    : Effect.succeed(s.meta.run)

const tensor = (h: Safetensors.HostTensor) => tf.tensor(h.data as Float32Array, [...h.shape], "float32")
const tensorTree = (tree: { readonly [name: string]: Safetensors.HostTensor }) =>
  Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, tensor(v)]))

type Shapes = { readonly [name: string]: { readonly shape: ReadonlyArray<number> } }

/** Parameters and buffers of a snapshot fit a model's (names and shapes), or the reason they do not. */
const fits = (
  s: Pick<Snapshot, "params" | "buffers">,
  want: { readonly params: Shapes; readonly buffers: Shapes }
): string | undefined => {
  const expected = Object.keys(want.params).sort()
  const got = Object.keys(s.params).sort()
  if (expected.join() !== got.join())
    return `parameters [${got.join(", ")}] do not match the model's [${expected.join(", ")}]`
  for (const name of expected) {
    const shape = want.params[name].shape
    if (!Module.sameShape(shape, s.params[name].shape))
      return `parameter ${name} has shape [${s.params[name].shape}], the model wants [${shape}]`
  }
  const wantBuffers = Object.keys(want.buffers).sort()
  const gotBuffers = Object.keys(s.buffers).sort()
  if (wantBuffers.join() !== gotBuffers.join())
    return `buffers [${gotBuffers.join(", ")}] do not match the model's [${wantBuffers.join(", ")}]`
  for (const name of wantBuffers)
    if (!Module.sameShape(want.buffers[name].shape, s.buffers[name].shape))
      return `buffer ${name} has shape [${s.buffers[name].shape}], the model wants [${want.buffers[name].shape}]`
  return undefined
}

/**
 * The trainer of `template`'s config at the checkpoint: its parameters, optimizer and scheduler
 * states, epoch count and histories. Fails when the checkpoint does not fit (parameter names or
 * shapes, optimizer or scheduler names, a scheduler state its schema rejects).
 */
export const restore = <E, R>(
  template: Trainer.Trainer<E, R>,
  s: Snapshot,
  path = "<snapshot>"
): Effect.Effect<Trainer.Trainer<E, R>, CheckpointError, Engine> =>
  Effect.gen(function* () {
    yield* Engine
    const fail = (reason: string, cause?: unknown) => new CheckpointError({ path, reason, cause })
    const { config } = template
    const misfit = fits(s, template)
    if (misfit !== undefined) return yield* fail(misfit)
    if (s.meta.optimizer.name !== config.optimizer.name) {
      return yield* fail(
        `saved with optimizer ${s.meta.optimizer.name}, restoring into ${config.optimizer.name}`
      )
    }
    const current = template.scheduled
    const saved = s.meta.scheduler
    if ((saved?.name ?? null) !== (current?.name ?? null)) {
      return yield* fail(
        `saved with scheduler ${saved?.name ?? "none"}, restoring into ${current?.name ?? "none"}`
      )
    }
    const scheduled =
      current === undefined || saved === null
        ? undefined
        : yield* Either.mapLeft(current.decode(saved.state), (e) => fail(`scheduler state: ${e.message}`, e))
    for (const [slot, tree] of Object.entries(OptimizerState.slotsOf(s.optimizer))) {
      for (const [name, t] of Object.entries(tree)) {
        if (!(name in s.params) || !Module.sameShape(t.shape, s.params[name].shape)) {
          return yield* fail(
            `optimizer slot ${slot} has an entry ${name} [${t.shape}] that matches no parameter`
          )
        }
      }
    }
    return {
      config,
      params: tensorTree(s.params),
      buffers: tensorTree(s.buffers),
      optState: OptimizerState.map(s.optimizer, tensor),
      scheduled,
      totalEpochs: s.meta.totalEpochs,
      losses: s.meta.losses,
      valLosses: s.meta.valLosses,
      learningRates: s.meta.learningRates,
      seed: s.meta.seed
    }
  })

/** `load` then `restore` into a trainer shaped like `template` (its tensors are left alone). */
export const resume = <E, R>(path: string, template: Trainer.Trainer<E, R>) =>
  Effect.flatMap(load(path), (s) => restore(template, s, path))

/** Writes a checkpoint after every epoch (for `Trainer.train`'s `onEpochEnd`), with `run` describing it. */
export const everyEpoch =
  (path: string, run: Run | null = null) =>
  (t: Trainer.Trainer<any, any>) =>
    save(path, t, run)

/** A trained model from a checkpoint alone: what evaluation and prediction need. */
export interface Trained {
  readonly run: Run
  readonly built: ModelSpec.Built
  readonly params: Module.Params
  readonly buffers: Module.Params
}

/**
 * The model of a checkpoint, rebuilt from its `run` info, with the checkpoint's parameters and
 * buffers (the caller disposes them). Fails naming the file when the checkpoint has no run info
 * or its tensors do not fit the spec.
 */
export const trained = (s: Snapshot, path: string): Effect.Effect<Trained, CheckpointError, Engine> =>
  Effect.gen(function* () {
    yield* Engine
    const run = yield* runOf(s, path)
    const built = yield* Either.mapLeft(
      ModelSpec.build(run.model, run.inputShape),
      (e) => new CheckpointError({ path, reason: `run.model: ${e.message}`, cause: e })
    )
    const want = {
      params: Object.fromEntries(built.module.specs.map((p) => [p.name, { shape: p.shape }])),
      buffers: Object.fromEntries(built.module.buffers.map((b) => [b.name, { shape: b.shape }]))
    }
    const misfit = fits(s, want)
    if (misfit !== undefined) return yield* new CheckpointError({ path, reason: misfit })
    return { run, built, params: tensorTree(s.params), buffers: tensorTree(s.buffers) }
  })
