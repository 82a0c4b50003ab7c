/**
 * Run checkpoints: a trainer's parameters and optimizer slots as safetensors (float32, exact),
 * with the rest of its state (step, scheduler state, history, seed) as JSON metadata. Restoring
 * into a trainer built from the same recipe gives the state the run had after that epoch, so a
 * resumed run continues exactly (loaders and dropout are functions of (seed, epoch, batch)).
 */
import { FileSystem, Path } from "@effect/platform"
import { Safetensors, Trainer } from "@stepwise/core"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { RunFolderError } from "./Errors.js"
import type { AnyTrainer } from "./Pipeline.js"

export const FORMAT = "stepwise-checkpoint/1"

const State = Schema.Struct({
  format: Schema.Literal(FORMAT),
  step: Schema.Number,
  schedState: Schema.Unknown,
  totalEpochs: Schema.Number,
  losses: Schema.Array(Schema.Number),
  valLosses: Schema.Array(Schema.Number),
  learningRates: Schema.Array(Schema.Number),
  seed: Schema.Number,
  slots: Schema.Array(Schema.String)
})

const hostTensor = (x: tf.Tensor) =>
  Safetensors.tensor(Float32Array.from(x.dataSync() as Float32Array), x.shape)

/** The checkpoint file of an epoch: `checkpoints/epoch-0003.safetensors`. */
export const fileName = (epoch: number) => `epoch-${String(epoch).padStart(4, "0")}.safetensors`

export const encode = (t: AnyTrainer): Safetensors.File => {
  const tensors: Record<string, ReturnType<typeof hostTensor>> = {}
  for (const [name, x] of Object.entries(t.params)) tensors[`params/${name}`] = hostTensor(x)
  for (const [slot, tree] of Object.entries(t.optState.slots)) {
    for (const [name, x] of Object.entries(tree)) tensors[`slots/${slot}/${name}`] = hostTensor(x)
  }
  const state: typeof State.Type = {
    format: FORMAT,
    step: t.optState.step,
    schedState: t.schedState ?? null,
    totalEpochs: t.totalEpochs,
    losses: t.losses,
    valLosses: t.valLosses,
    learningRates: t.learningRates,
    seed: t.seed,
    slots: Object.keys(t.optState.slots)
  }
  return { tensors, metadata: { state: JSON.stringify(state) } }
}

export const save = (path: string, t: AnyTrainer) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    yield* fs.makeDirectory(p.dirname(path), { recursive: true })
    yield* Safetensors.write(path, encode(t))
  }).pipe(Effect.mapError((e) => new RunFolderError({ path, reason: firstLine(e) })))

const firstLine = (e: unknown) => String((e as { message?: string }).message ?? e).split("\n")[0]

/**
 * Restores a checkpoint into `fresh` (a trainer built from the run's recipe: same model and
 * optimizer), checking every parameter name and shape.
 */
export const restore = (path: string, fresh: AnyTrainer) =>
  Effect.gen(function* () {
    const file = yield* Safetensors.read(path).pipe(
      Effect.mapError((e) => new RunFolderError({ path, reason: firstLine(e) }))
    )
    const bad = (reason: string) => new RunFolderError({ path, reason })
    const stateText = file.metadata.state
    if (stateText === undefined) return yield* bad("not a stepwise checkpoint (no state metadata)")
    const state = yield* Schema.decodeUnknown(Schema.parseJson(State))(stateText).pipe(
      Effect.mapError(() => bad("not a stepwise checkpoint (bad state metadata)"))
    )
    const toTensor = (key: string, like: tf.Tensor | undefined) => {
      const h = file.tensors[key]
      if (h === undefined) return bad(`missing tensor ${key}`)
      if (
        like !== undefined &&
        (h.shape.length !== like.shape.length || h.shape.some((d, i) => d !== like.shape[i]))
      )
        return bad(`tensor ${key} has shape [${h.shape}], the model expects [${like.shape}]`)
      return tf.tensor(Float32Array.from(h.data as ArrayLike<number>), [...h.shape], "float32")
    }
    const made: Array<tf.Tensor> = []
    const take = (key: string, like: tf.Tensor | undefined) =>
      Effect.suspend(() => {
        const r = toTensor(key, like)
        if (r instanceof RunFolderError) return Effect.fail(r)
        made.push(r)
        return Effect.succeed(r)
      })
    return yield* Effect.gen(function* () {
      const params: Record<string, tf.Tensor> = {}
      for (const [name, like] of Object.entries(fresh.params))
        params[name] = yield* take(`params/${name}`, like)
      const slots: Record<string, Record<string, tf.Tensor>> = {}
      for (const slot of state.slots) {
        const tree: Record<string, tf.Tensor> = {}
        for (const [name, like] of Object.entries(fresh.params)) {
          if (file.tensors[`slots/${slot}/${name}`] !== undefined)
            tree[name] = yield* take(`slots/${slot}/${name}`, like)
        }
        slots[slot] = tree
      }
      Trainer.dispose(fresh)
      return {
        ...fresh,
        params,
        optState: { step: state.step, slots },
        schedState: state.schedState === null ? undefined : state.schedState,
        totalEpochs: state.totalEpochs,
        losses: state.losses,
        valLosses: state.valLosses,
        learningRates: state.learningRates,
        seed: state.seed
      } satisfies AnyTrainer
    }).pipe(
      Effect.onError(() =>
        Effect.sync(() => {
          for (const x of made) x.dispose()
        })
      )
    )
  })

/** The latest `epoch-NNNN.safetensors` of a checkpoint folder, if any. */
export const latest = (dir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const p = yield* Path.Path
    if (!(yield* fs.exists(dir))) return undefined
    const names = (yield* fs.readDirectory(dir)).filter((n) => /^epoch-\d{4,}\.safetensors$/.test(n)).sort()
    const last = names.at(-1)
    return last === undefined ? undefined : p.join(dir, last)
  }).pipe(Effect.mapError((e) => new RunFolderError({ path: dir, reason: firstLine(e) })))
