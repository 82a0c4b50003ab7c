/**
 * Every picture in the READMEs, and the documented commands that produce it. The pictures
 * script (`npm run pictures -w packages/cli`) runs the training commands below, keeps the small
 * files the pictures are drawn from under `docs/pictures/runs/<run>/`, draws each picture with
 * the same code as `stepwise plot`, and writes `<name>.png` with `<name>.json` (the chart's data,
 * `Render.specData`) beside it. `test/Pictures.test.ts` redraws every picture's data from the
 * same inputs and fails when it no longer matches the checked-in JSON.
 */
import * as Path from "@effect/platform/Path"
import { Effect } from "effect"
import { PlotError } from "./Errors.js"
import * as Plot from "./Plot.js"
import type { Spec } from "./Render.js"

/** The runs the README's training pictures come from: `stepwise <args> --out <dir>/<run>`. */
export const RUNS = {
  adam: { command: ["train", "--config", "examples/chapter6-adam.json"] },
  nodrop: { command: ["train", "--config", "examples/chapter6-adam.json", "--dropout", "0"] },
  cyclic: { command: ["train", "--config", "examples/chapter6-sgd-cyclic.json"] },
  "lr-find": {
    command: [
      "lr-find",
      "--optimizer",
      "sgd",
      "--lr",
      "1e-3",
      "--momentum",
      "0.9",
      "--nesterov",
      "--end-lr",
      "0.2",
      "--num-iter",
      "100"
    ]
  }
} as const
export type RunName = keyof typeof RUNS

/** The files of a run a picture is drawn from (small; checkpoints only the last one, for filters). */
export const KEPT_FILES = ["config.json", "metrics.jsonl", "lr-finder.json"] as const

export interface Picture {
  readonly name: string
  /** What a reader types to get it (the run folders named after `RUNS`). */
  readonly command: string
  /** The `stepwise plot` picture it is. */
  readonly plot: Parameters<typeof Plot.specsFor>[0]
  readonly run?: RunName
  readonly compare?: RunName
  readonly layer?: string
}

export const PICTURES: ReadonlyArray<Picture> = [
  { name: "losses", command: "stepwise plot losses --run runs/adam", plot: "losses", run: "adam" },
  {
    name: "losses-compared",
    command: "stepwise plot losses --run runs/adam --compare runs/nodrop",
    plot: "losses",
    run: "adam",
    compare: "nodrop"
  },
  {
    name: "filters-conv1",
    command: "stepwise plot filters --run runs/adam --layer conv1",
    plot: "filters",
    run: "adam",
    layer: "conv1"
  },
  {
    name: "filters-conv2",
    command: "stepwise plot filters --run runs/adam --layer conv2",
    plot: "filters",
    run: "adam",
    layer: "conv2"
  },
  {
    name: "lr-finder-cnn2",
    command: `stepwise ${RUNS["lr-find"].command.join(" ")} --out runs/lr-find`,
    plot: "lr-finder",
    run: "lr-find"
  },
  { name: "lr", command: "stepwise plot lr --run runs/cyclic", plot: "lr", run: "cyclic" },
  { name: "lr-finder", command: "stepwise plot lr-finder", plot: "lr-finder" },
  { name: "losses-sgd-adam", command: "stepwise plot losses", plot: "losses" },
  { name: "ewma", command: "stepwise plot ewma", plot: "ewma" },
  { name: "adapted-gradients", command: "stepwise plot adapted-gradients", plot: "adapted-gradients" },
  { name: "dropout", command: "stepwise plot dropout", plot: "dropout" },
  { name: "paths", command: "stepwise plot paths", plot: "paths" },
  { name: "update-terms", command: "stepwise plot update-terms", plot: "update-terms" }
]

/** A picture's spec, drawn from the run folders under `runsDir` (`runsDir/<run>`). */
type Drawn = ReturnType<typeof Plot.specsFor>
export const spec = (
  picture: Picture,
  runsDir: string
): Effect.Effect<Spec, Effect.Effect.Error<Drawn> | PlotError, Effect.Effect.Context<Drawn> | Path.Path> =>
  Effect.gen(function* () {
    const p = yield* Path.Path
    const dir = (r: RunName | undefined) => (r === undefined ? undefined : p.join(runsDir, r))
    const specs = yield* Plot.specsFor(picture.plot, dir(picture.run), dir(picture.compare), picture.layer)
    const found = specs[0]
    if (found === undefined) return yield* new PlotError({ plot: picture.name, reason: "drew nothing" })
    return found[1]
  })
