/**
 * `stepwise predict`: classifies image files with a checkpoint alone (core's `Predict.files`):
 * a table of file, class and probability (the `--top` most probable classes), or with `--json`
 * one line `{"command":"predict","predictions":[{file, class, probabilities, logits}]}`.
 */
import type { FileSystem } from "@effect/platform"
import { type Checkpoint, Engine, Predict, type Safetensors } from "@stepwise/core"
import type { Errors as DataErrors } from "@stepwise/data"
import { Effect, Option } from "effect"
import type * as Cli from "./Cli.js"
import { Output } from "./Progress.js"

export type Args = Cli.Values<typeof Cli.predict>

/** The human table: one row per listed class, the file named on its first row. */
export const table = (predictions: ReadonlyArray<Predict.Prediction>): ReadonlyArray<string> => {
  const rows = predictions.flatMap((p) =>
    p.top.map((t, i) => [i === 0 ? p.file : "", t.class, `${(100 * t.probability).toFixed(2)}%`] as const)
  )
  const header = ["file", "class", "probability"] as const
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)))
  const line = (r: ReadonlyArray<string>) =>
    r
      .map((cell, c) => (c === 2 ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
      .join("  ")
      .trimEnd()
  return [line(header), ...rows.map(line)]
}

/** The failures of this command (named so the declaration can be emitted). */
export type Failure =
  | Engine.BackendUnavailable
  | Checkpoint.CheckpointError
  | Safetensors.SafetensorsError
  | Predict.PredictError
  | DataErrors.ImageReadError

export const run = (args: Args): Effect.Effect<void, Failure, Output | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const out = yield* Output
    const engine = yield* Engine.make(Option.getOrElse(args.backend, () => "wasm" as const))
    const predictions = yield* Predict.files(args.checkpoint, args.paths, {
      top: Option.getOrElse(args.top, () => 1)
    }).pipe(Effect.provideService(Engine.Engine, engine))
    for (const l of table(predictions)) yield* out.line(l)
    yield* out.json({
      command: "predict",
      predictions: predictions.map((p) => ({
        file: p.file,
        class: p.class,
        probabilities: p.probabilities,
        logits: p.logits
      }))
    })
  }).pipe(Effect.scoped)
