/**
 * Checkpoints: everything a run needs to continue exactly, in one safetensors file.
 *
 * Format `stepwise.checkpoint/1` (readable by any safetensors tool):
 * - tensors, float32, in this engine's layout (conv filters [kh, kw, in, out], linear [in, out]):
 *   `params/<name>` for every parameter (`params/conv1.weight`), and
 *   `optimizer/<slot>/<name>` for every optimizer slot (`optimizer/expAvg/conv1.weight`);
 * - `__metadata__.stepwise`: a JSON document (checked by a Schema on load) with `format`,
 *   `totalEpochs`, the histories `losses` / `valLosses` / `learningRates`, `seed` (the dropout
 *   masks of epoch e, batch b come from `foldIn(foldIn(make(seed), e), b)`, and loaders shuffle by
 *   (their seed, epoch), so seed and epoch are the whole random state), the optimizer's `name`
 *   and `step`, and the scheduler's `name` and plain-data `state` (non-finite numbers such as
 *   ReduceLROnPlateau's initial best, which JSON cannot hold, are written as `{"$number": "Infinity"}`).
 *
 * Files are written to a temporary name and renamed, so a crash never leaves half a checkpoint.
 */
import { OptimizerState } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { Engine } from "./Engine.js"
import * as Safetensors from "./Safetensors.js"
import type * as Trainer from "./Trainer.js"

export const FORMAT = "stepwise.checkpoint/1"

/** A checkpoint that cannot be read or does not fit the trainer it is restored into. */
export class CheckpointError extends Schema.TaggedError<CheckpointError>()("CheckpointError", {
  path: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `checkpoint ${this.path}: ${this.reason}`
  }
}

const Meta = Schema.Struct({
  format: Schema.Literal(FORMAT),
  totalEpochs: Schema.NonNegativeInt,
  losses: Schema.Array(Schema.Number),
  valLosses: Schema.Array(Schema.Number),
  learningRates: Schema.Array(Schema.Number),
  seed: Schema.Int,
  optimizer: Schema.Struct({ name: Schema.String, step: Schema.NonNegativeInt }),
  scheduler: Schema.NullOr(Schema.Struct({ name: Schema.String, state: Schema.Unknown }))
})
export type Meta = typeof Meta.Type

/** A checkpoint on the host: tensors as float32 arrays with shapes, plus the metadata. */
export interface Snapshot {
  readonly meta: Meta
  readonly params: { readonly [name: string]: Safetensors.HostTensor }
  readonly slots: { readonly [slot: string]: { readonly [name: string]: Safetensors.HostTensor } }
}

// JSON has no Infinity or NaN; scheduler states can hold them (ReduceLROnPlateau's best).
const replacer = (_key: string, value: unknown) =>
  typeof value === "number" && !Number.isFinite(value) ? { $number: String(value) } : value
const reviver = (_key: string, value: unknown) =>
  typeof value === "object" &&
  value !== null &&
  Object.keys(value).length === 1 &&
  typeof (value as { $number?: unknown }).$number === "string"
    ? Number((value as { $number: string }).$number)
    : value

const host = (x: tf.Tensor): Safetensors.HostTensor =>
  Safetensors.tensor(Float32Array.from(x.dataSync() as Float32Array), x.shape)

/** The snapshot of a trainer (copies its tensors to the host). */
export const snapshot = (t: Trainer.Trainer<any, any>): Snapshot => ({
  meta: {
    format: FORMAT,
    totalEpochs: t.totalEpochs,
    losses: [...t.losses],
    valLosses: [...t.valLosses],
    learningRates: [...t.learningRates],
    seed: t.seed,
    optimizer: { name: t.config.optimizer.name, step: t.optState.step },
    scheduler:
      t.config.scheduler === undefined ? null : { name: t.config.scheduler.name, state: t.schedState }
  },
  params: Object.fromEntries(Object.entries(t.params).map(([k, v]) => [k, host(v)])),
  slots: Object.fromEntries(
    Object.entries(OptimizerState.slotsOf(t.optState)).map(([slot, tree]) => [
      slot,
      Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, host(v)]))
    ])
  )
})

/** The safetensors file of a snapshot. */
export const toFile = (s: Snapshot): Safetensors.File => {
  const tensors: Record<string, Safetensors.HostTensor> = {}
  for (const [k, v] of Object.entries(s.params)) tensors[`params/${k}`] = v
  for (const [slot, tree] of Object.entries(s.slots)) {
    if (slot.includes("/")) throw new RangeError(`optimizer slot name ${slot} contains '/'`)
    for (const [k, v] of Object.entries(tree)) tensors[`optimizer/${slot}/${k}`] = v
  }
  return { tensors, metadata: { stepwise: JSON.stringify(s.meta, replacer) } }
}

/** A snapshot from a safetensors file, validating the metadata and the tensor names. */
export const fromFile = (file: Safetensors.File, path: string): Effect.Effect<Snapshot, CheckpointError> =>
  Effect.gen(function* () {
    const fail = (reason: string) => new CheckpointError({ path, reason })
    const raw = file.metadata.stepwise
    if (raw === undefined) return yield* fail("no stepwise metadata: not a stepwise checkpoint")
    const json = yield* Effect.try({
      try: () => JSON.parse(raw, reviver) as unknown,
      catch: (e) => fail(`metadata is not JSON (${e})`)
    })
    const meta = yield* Schema.decodeUnknown(Meta)(json).pipe(
      Effect.mapError((e) => fail(`metadata: ${e.message}`))
    )
    const params: Record<string, Safetensors.HostTensor> = {}
    const slots: Record<string, Record<string, Safetensors.HostTensor>> = {}
    for (const [name, t] of Object.entries(file.tensors)) {
      if (t.dtype !== "F32") return yield* fail(`tensor ${name} is ${t.dtype}, expected F32`)
      const m = /^(params|optimizer\/([^/]+))\/(.+)$/.exec(name)
      if (m === null) return yield* fail(`unexpected tensor ${name}`)
      if (m[2] === undefined) params[m[3]] = t
      else {
        slots[m[2]] ??= {}
        slots[m[2]][m[3]] = t
      }
    }
    return { meta, params, slots }
  })

/** Writes `t` to `path` atomically. */
export const save = (path: string, t: Trainer.Trainer<any, any>) =>
  Effect.zipRight(
    Engine,
    Effect.suspend(() => Safetensors.write(path, toFile(snapshot(t))))
  )

/** Reads a checkpoint file. */
export const load = (path: string) => Effect.flatMap(Safetensors.read(path), (file) => fromFile(file, path))

const sameShape = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
  a.length === b.length && a.every((d, i) => d === b[i])

/**
 * The trainer of `config` at the checkpoint: its parameters, optimizer and scheduler states,
 * epoch count and histories. Fails when the checkpoint does not fit (parameter names or shapes,
 * optimizer or scheduler names).
 */
export const restore = <E, R>(
  template: Trainer.Trainer<E, R>,
  s: Snapshot,
  path = "<snapshot>"
): Effect.Effect<Trainer.Trainer<E, R>, CheckpointError, Engine> =>
  Effect.gen(function* () {
    yield* Engine
    const fail = (reason: string) => new CheckpointError({ path, reason })
    const { config } = template
    const expected = Object.keys(template.params).sort()
    const got = Object.keys(s.params).sort()
    if (expected.join() !== got.join()) {
      return yield* fail(`parameters [${got.join(", ")}] do not match the model's [${expected.join(", ")}]`)
    }
    for (const name of expected) {
      const want = template.params[name].shape
      if (!sameShape(want, s.params[name].shape)) {
        return yield* fail(`parameter ${name} has shape [${s.params[name].shape}], the model wants [${want}]`)
      }
    }
    if (s.meta.optimizer.name !== config.optimizer.name) {
      return yield* fail(
        `saved with optimizer ${s.meta.optimizer.name}, restoring into ${config.optimizer.name}`
      )
    }
    const schedName = config.scheduler?.name ?? null
    if ((s.meta.scheduler?.name ?? null) !== schedName) {
      return yield* fail(
        `saved with scheduler ${s.meta.scheduler?.name ?? "none"}, restoring into ${schedName ?? "none"}`
      )
    }
    for (const [slot, tree] of Object.entries(s.slots)) {
      for (const [name, t] of Object.entries(tree)) {
        if (!(name in s.params) || !sameShape(t.shape, s.params[name].shape)) {
          return yield* fail(
            `optimizer slot ${slot} has an entry ${name} [${t.shape}] that matches no parameter`
          )
        }
      }
    }
    const tensor = (h: Safetensors.HostTensor) => tf.tensor(h.data as Float32Array, [...h.shape], "float32")
    const params = Object.fromEntries(Object.entries(s.params).map(([k, v]) => [k, tensor(v)]))
    const slots = Object.fromEntries(
      Object.entries(s.slots).map(([slot, tree]) => [
        slot,
        Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, tensor(v)]))
      ])
    )
    return {
      config,
      params,
      optState: OptimizerState.make<tf.Tensor>(s.meta.optimizer.step, slots),
      schedState: s.meta.scheduler?.state,
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

/** Writes a checkpoint after every epoch (for `Trainer.train`'s `onEpochEnd`). */
export const everyEpoch = (path: string) => (t: Trainer.Trainer<any, any>) => save(path, t)
