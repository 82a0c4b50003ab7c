/**
 * `stepwise export --checkpoint C --format torch --out F.safetensors`: a checkpoint's weights as
 * the PyTorch `state_dict` of its model (PyTorch's names and layouts, BatchNorm's buffers, the
 * batch counts int64), so `model.load_state_dict(safetensors.torch.load_file(F))` takes it as
 * is. The file's metadata carries the class names, the normalizer's `mean` and `std` and the
 * model spec (`stepwise.model`, `stepwise.inputShape`). Nothing but the checkpoint is read: it
 * describes its own run (`meta.run`). No tensor engine either: the layouts are permuted on the host.
 */
import { Checkpoint as CoreCheckpoint, ModelSpec, Safetensors, TorchWeights } from "@stepwise/core"
import { Effect, Either, Option } from "effect"
import * as Checkpoint from "./Checkpoint.js"
import type * as Cli from "./Cli.js"
import { RunFolderError } from "./Errors.js"
import { locate } from "./Eval.js"
import { Output } from "./Progress.js"
import * as Run from "./RunFolder.js"

export type Args = Cli.Values<typeof Cli.exportWeights>

/** What a self-describing checkpoint records about its run (`meta.run`): core's schema. */
export type RunInfo = CoreCheckpoint.Run

/**
 * The run a checkpoint describes (model spec, input shape, classes, normalizer), or an error
 * naming the file when it has none (a format-1 checkpoint, or one saved from code without it).
 */
export const runOf = (
  snapshot: CoreCheckpoint.Snapshot,
  path: string
): Effect.Effect<RunInfo, RunFolderError> =>
  CoreCheckpoint.runOf(snapshot, path).pipe(
    Effect.mapError((e) => new RunFolderError({ path, reason: e.reason, cause: e }))
  )

/**
 * The export file of a checkpoint: its model rebuilt from the spec, its parameters and buffers
 * checked against that model and put in PyTorch's layout, the run's metadata. Pure.
 */
export const torchFile = (
  snapshot: CoreCheckpoint.Snapshot,
  run: RunInfo,
  path: string
): Either.Either<Safetensors.File, RunFolderError | TorchWeights.WeightMismatch> =>
  Either.gen(function* () {
    const built = yield* Either.mapLeft(
      ModelSpec.build(run.model, run.inputShape),
      (e) => new RunFolderError({ path, reason: `model: ${e.message}`, cause: e })
    )
    const stateDict = yield* TorchWeights.stateDictOfHost(built.module, snapshot, path)
    return TorchWeights.toFile(stateDict, {
      classes: run.classes,
      normalizer: run.normalizer ?? undefined,
      model: run.model,
      inputShape: run.inputShape
    })
  })

export const run = (args: Args) =>
  Effect.gen(function* () {
    const out = yield* Output
    const { checkpoint } = yield* locate(args.checkpoint)
    const snapshot = yield* Checkpoint.load(checkpoint)
    const info = yield* runOf(snapshot, checkpoint)
    const file = yield* torchFile(snapshot, info, checkpoint)
    const bytes = yield* Safetensors.encode(file, args.out).pipe(
      Effect.mapError((e) => new RunFolderError({ path: args.out, reason: e.message, cause: e }))
    )
    yield* Run.writeFileAtomic(args.out, bytes)
    const names = Object.keys(file.tensors)
    yield* out.line(`wrote ${args.out}: ${names.length} tensors (PyTorch's state_dict) from ${checkpoint}`)
    yield* out.json({
      command: "export",
      checkpoint,
      format: Option.getOrElse(args.format, () => "torch" as const),
      out: args.out,
      tensors: Object.fromEntries(
        Object.entries(file.tensors).map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape }])
      ),
      classes: info.classes
    })
  })
