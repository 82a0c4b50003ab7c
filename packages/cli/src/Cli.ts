/**
 * The command tree: `stepwise train | lr-find | stats | eval | predict | export | plot | download`, every flag with
 * its validation. Handlers live in one module a command; this file only parses.
 */
import { Args, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { Effect, Option } from "effect"
import * as F from "./Flags.js"
import { BackendNames, optimizerTags, schedulerTags, tagOf } from "./Recipe.js"

const json = Options.boolean("json").pipe(
  Options.withDescription(
    "Print one JSON object with the results as the last line of stdout (human output goes to stderr)"
  )
)

// --- recipe flags, shared by train and lr-find ---

export const modelFlags = {
  filters: F.number("filters", "CNN2: number of filters of each conv layer (n_feature) [5]", {
    integer: true,
    min: 1
  }),
  dropout: F.number("dropout", "CNN2: dropout probability p [0.3]", { min: 0, max: 1, maxExclusive: true })
}

/** A class name of optim's in any case (`sgd`, `SGD`; schedulers also without `LR`). */
const named = (
  name: string,
  tags: ReadonlyArray<string>,
  description: string,
  extra: ReadonlyArray<string> = []
) =>
  Options.text(name).pipe(
    Options.withPseudoName("NAME"),
    Options.withDescription(`${description}: ${[...tags, ...extra].join(", ")}`),
    Options.mapEffect((text) => {
      if (extra.includes(text.toLowerCase())) return Effect.succeed(text.toLowerCase())
      const tag = tagOf(tags, text)
      return tag === undefined
        ? Effect.fail(
            ValidationError.invalidValue(
              HelpDoc.p(`--${name} ${text}: expected one of ${[...tags, ...extra].join(", ")} (any case)`)
            )
          )
        : Effect.succeed(tag)
    }),
    Options.optional
  )

export const optimizerFlags = {
  optimizer: named("optimizer", optimizerTags, "Optimizer [Adam]"),
  ...F.hyperparameterOptions("optimizer")
}

export const schedulerFlags = {
  scheduler: named("scheduler", schedulerTags, "Learning-rate scheduler [none]", ["none"]),
  ...F.hyperparameterOptions("scheduler")
}

export const dataFlags = {
  data: F.text("data", "ImageFolder root of the training set [bundled Rock Paper Scissors 28x28]", "DIR"),
  val: F.text("val", "ImageFolder root of the validation set [bundled test set, with bundled data]", "DIR"),
  valSplit: F.number("val-split", "Hold out this fraction of the training set for validation", {
    min: 0,
    max: 1,
    minExclusive: true,
    maxExclusive: true
  }),
  resize: Options.text("resize").pipe(
    Options.withPseudoName("N|HxW"),
    Options.withDescription("Resize images: shorter side to N, or exactly HxW [28]"),
    Options.mapEffect((text) =>
      /^\d+(x\d+)?$/.test(text) && text.split("x").every((n) => Number(n) > 0)
        ? Effect.succeed(text)
        : Effect.fail(
            ValidationError.invalidValue(HelpDoc.p(`--resize ${text}: expected N or HxW (like 28 or 28x28)`))
          )
    ),
    Options.optional
  ),
  normalize: F.toggle("normalize", "Standardize with the training set's per-channel mean/std")
}

export const epochsFlag = {
  epochs: F.number("epochs", "Epochs to train [10]", { integer: true, min: 1 })
}

export const runFlags = {
  config: F.text(
    "config",
    'Recipe file (JSON or YAML); flags override its fields. Its "model" may be { "layers": [...] } and its "optimizer" { "module": "./file.mjs", ... } (see the README)',
    "FILE"
  ),
  batchSize: F.number("batch-size", "Mini-batch size [16]", { integer: true, min: 1 }),
  seed: F.number("seed", "Seed for initialisation, shuffling and dropout [13]", { integer: true, min: 0 }),
  backend: F.choice("backend", BackendNames, "Tensor engine [wasm]")
}

const trainRunFlags = {
  out: F.text("out", "Run folder to write [runs/<time>]", "DIR"),
  resume: F.text(
    "resume",
    "Continue the interrupted run in this folder exactly, or from a checkpoint file alone (in a new run folder)",
    "RUN_DIR|FILE"
  ),
  allowDataChange: Options.boolean("allow-data-change").pipe(
    Options.withDescription("With --resume: continue although the data files changed")
  ),
  exactTrainAccuracy: Options.boolean("exact-train-accuracy").pipe(
    Options.withDescription(
      "Measure training accuracy on the trained model in eval mode after each epoch (one more " +
        "pass over the training set) instead of the running accuracy of its training steps"
    )
  ),
  keepCheckpoints: F.number("keep-checkpoints", "Keep only the N latest checkpoints [all]", {
    integer: true,
    min: 1
  }),
  initFrom: F.text(
    "init-from",
    "Start from a PyTorch state_dict (safetensors, e.g. from stepwise export) instead of the seed's weights",
    "FILE"
  ),
  captureGradients: F.text(
    "capture-gradients",
    "Record one layer's gradients (e.g. conv1) for plots",
    "LAYER"
  ),
  plots: F.toggle("plots", "Write the losses / lr / filters pictures into the run folder [on]"),
  tensorboard: F.toggle("tensorboard", "Write TensorBoard event files into the run folder [on]"),
  json
}

export const train = Command.make("train", {
  ...runFlags,
  ...epochsFlag,
  ...modelFlags,
  ...optimizerFlags,
  ...schedulerFlags,
  ...dataFlags,
  ...trainRunFlags
}).pipe(Command.withDescription("Train CNN2 on an ImageFolder (default: the bundled Rock Paper Scissors)"))

const rangeTestFlags = {
  startLr: F.number("start-lr", "First learning rate of the test [the optimizer's --lr]", {
    min: 0,
    minExclusive: true
  }),
  endLr: F.number("end-lr", "Last learning rate of the test [0.1]", { min: 0, minExclusive: true }),
  numIter: F.number("num-iter", "Mini-batches (learning rates) to try [100]", { integer: true, min: 2 }),
  stepMode: F.choice("step-mode", ["exp", "linear"] as const, "How the lr grows [exp]"),
  smoothing: F.number("smoothing", "EWMA alpha for the loss curve [0.05]", {
    min: 0,
    max: 1,
    minExclusive: true
  })
}

const lrFindRunFlags = {
  out: F.text("out", "Folder for the plot and results [runs/lr-find-<time>]", "DIR"),
  json
}

// No --epochs (the test runs --num-iter mini-batches) and no scheduler (it is its own schedule).
export const lrFind = Command.make("lr-find", {
  ...runFlags,
  ...modelFlags,
  ...optimizerFlags,
  ...dataFlags,
  ...rangeTestFlags,
  ...lrFindRunFlags
}).pipe(
  Command.withDescription(
    "LR range test: tries growing learning rates, one mini-batch each, and suggests one"
  )
)

const statsFlags = {
  data: F.text("data", "ImageFolder root [bundled training set]", "DIR"),
  resize: dataFlags.resize,
  batchSize: F.number("batch-size", "Mini-batch size used to accumulate [16]", { integer: true, min: 1 }),
  json
}

export const stats = Command.make("stats", statsFlags).pipe(
  Command.withDescription("Per-channel mean and std of a training set (the normalizer)")
)

const evalFlags = {
  checkpoint: Options.text("checkpoint").pipe(
    Options.withPseudoName("FILE|RUN_DIR"),
    Options.withDescription("Checkpoint file, or a run folder (its latest checkpoint)")
  ),
  data: F.text("data", "ImageFolder root to evaluate [the run's validation set]", "DIR"),
  batchSize: F.number("batch-size", "Mini-batch size [16]", { integer: true, min: 1 }),
  backend: runFlags.backend,
  plot: F.text("plot", "Also write the confusion matrix picture here (.png or .svg)", "FILE"),
  json
}

export const evaluate = Command.make("eval", evalFlags).pipe(
  Command.withDescription("Per-class [correct, total], accuracy and the confusion matrix")
)

const predictFlags = {
  checkpoint: Options.text("checkpoint").pipe(
    Options.withPseudoName("FILE"),
    Options.withDescription("Checkpoint file (its run info gives the model, classes and preprocessing)")
  ),
  top: F.number("top", "Classes listed per image, most probable first [1]", { integer: true, min: 1 }),
  backend: runFlags.backend,
  json
}

export const predict = Command.make("predict", {
  ...predictFlags,
  paths: Args.text({ name: "FILE|DIR" }).pipe(
    Args.withDescription("Image files (PNG, JPEG, ...), or folders of them"),
    Args.atLeast(1)
  )
}).pipe(Command.withDescription("Classify image files with a checkpoint"))

export const PlotNames = [
  "losses",
  "lr",
  "filters",
  "lr-finder",
  "ewma",
  "adapted-gradients",
  "dropout",
  "paths",
  "update-terms",
  "all"
] as const
export type PlotName = (typeof PlotNames)[number]

const plotFlags = {
  run: F.text(
    "run",
    "Run folder to plot from (losses, lr, filters, lr-finder, adapted-gradients)",
    "RUN_DIR"
  ),
  compare: F.text("compare", "losses: a second run folder to draw alongside", "RUN_DIR"),
  layer: F.text("layer", "filters: conv1 or conv2 [conv1]; adapted-gradients: the captured layer", "LAYER"),
  out: F.text("out", "Output folder [RUN_DIR/plots, or runs/plots]", "DIR"),
  format: F.choice("format", ["png", "svg", "both"] as const, "Picture format [png]"),
  json
}

export const plot = Command.make("plot", {
  which: Args.text({ name: "plot" }).pipe(
    Args.withDescription(`One of ${PlotNames.join(", ")}`),
    Args.mapEffect((text) =>
      (PlotNames as ReadonlyArray<string>).includes(text)
        ? Effect.succeed(text as PlotName)
        : Effect.fail(HelpDoc.p(`plot ${text}: expected one of ${PlotNames.join(", ")}`))
    )
  ),
  ...plotFlags
}).pipe(Command.withDescription("The chapter's pictures, from a run folder or from built-in demos"))

const exportFlags = {
  checkpoint: evalFlags.checkpoint,
  format: F.choice(
    "format",
    ["torch"] as const,
    "torch: the model's PyTorch state_dict as safetensors [torch]"
  ),
  out: Options.text("out").pipe(
    Options.withPseudoName("FILE"),
    Options.withDescription("File to write (.safetensors)")
  ),
  json
}

export const exportWeights = Command.make("export", exportFlags).pipe(
  Command.withDescription("Export a checkpoint's weights for PyTorch (a state_dict as safetensors)")
)

const downloadFlags = {
  to: Options.text("to").pipe(
    Options.withPseudoName("DIR"),
    Options.withDescription("Folder to extract into")
  ),
  json
}

export const download = Command.make("download", {
  dataset: Args.text({ name: "dataset" }).pipe(
    Args.withDescription("rps: the full-size Rock Paper Scissors images (300x300)"),
    Args.mapEffect((text) =>
      text === "rps"
        ? Effect.succeed("rps" as const)
        : Effect.fail(HelpDoc.p(`download ${text}: the only dataset is rps`))
    )
  ),
  ...downloadFlags
}).pipe(Command.withDescription("Download a dataset"))

const sweepFlags = {
  config: F.text("config", "Sweep file (JSON or YAML): base recipes, search space, metric", "FILE"),
  out: F.text("out", "Sweep folder to write [runs/sweep-<time>]", "DIR"),
  resume: F.text("resume", "Continue the interrupted sweep in this folder", "SWEEP_DIR"),
  runners: F.number("runners", "Runner processes to start on this machine [one per core]", {
    integer: true,
    min: 0
  }),
  storage: F.text(
    "storage",
    "Cluster storage shared with runners elsewhere [sqlite file in the sweep folder]",
    "URL"
  ),
  json
}

export const sweep = Command.make("sweep", sweepFlags).pipe(
  Command.withDescription("Hyperparameter sweep: trials as durable workflows on runner processes")
)

const runnerFlags = {
  storage: Options.text("storage").pipe(
    Options.withPseudoName("URL"),
    Options.withDescription("Cluster storage: sqlite:PATH or postgres://USER@HOST:PORT/DB")
  ),
  host: F.text("host", "Address other runners and sweeps reach this runner at [127.0.0.1]", "HOST"),
  port: F.number("port", "Port to listen on [34431]", { integer: true, min: 1, max: 65535 })
}

export const runner = Command.make("runner", runnerFlags).pipe(
  Command.withDescription("Run sweep trials from a cluster storage until stopped")
)

export const root = Command.make("stepwise").pipe(
  Command.withDescription(
    "stepwise: Chapter 6 of Deep Learning with PyTorch Step-by-Step, the functional way"
  )
)

const keys = (...groups: ReadonlyArray<object>): ReadonlyArray<string> => groups.flatMap(Object.keys)

/** What `Help` shows of each command: its summary, examples and option groups. */
export const commands = {
  train: {
    command: train,
    summary: "Train CNN2 or a recipe's model on an ImageFolder (default: the bundled RPS data)",
    args: undefined,
    examples: [
      "stepwise train --config examples/chapter6-adam.json",
      "stepwise train --config examples/recipe-batchnorm.json --epochs 3",
      "stepwise train --optimizer SGD --lr 0.03 --momentum 0.9 --nesterov --dropout 0.5 --scheduler CyclicLR --base-lr 1e-3 --max-lr 1e-2 --step-size-up epoch --mode triangular2",
      "stepwise train --resume runs/<time> --epochs 20",
      "stepwise train --resume model.safetensors --epochs 20 --out runs/more"
    ],
    groups: [
      ["Data", keys(dataFlags)],
      ["Model (CNN2)", keys(modelFlags)],
      ["Optimizer", keys(optimizerFlags)],
      ["Scheduler", keys(schedulerFlags)],
      ["Run", keys(runFlags, epochsFlag, trainRunFlags)]
    ]
  },
  "lr-find": {
    command: lrFind,
    summary: "LR range test: tries growing learning rates, one mini-batch each, and suggests one",
    args: undefined,
    examples: [
      "stepwise lr-find --optimizer SGD --lr 1e-3 --momentum 0.9 --nesterov --end-lr 0.2",
      "stepwise lr-find --config examples/chapter6-adam.json --lr 1e-5 --end-lr 1 --num-iter 200"
    ],
    groups: [
      ["Data", keys(dataFlags)],
      ["Model (CNN2)", keys(modelFlags)],
      ["Optimizer", keys(optimizerFlags)],
      ["Range test", keys(rangeTestFlags)],
      ["Run", keys(runFlags, lrFindRunFlags)]
    ]
  },
  stats: {
    command: stats,
    summary: "Per-channel mean and std of a training set (the normalizer)",
    args: undefined,
    examples: ["stepwise stats", "stepwise stats --data data/rps --resize 28x28"],
    groups: [["Options", keys(statsFlags)]]
  },
  eval: {
    command: evaluate,
    summary: "Per-class [correct, total], accuracy and the confusion matrix of a checkpoint",
    args: undefined,
    examples: [
      "stepwise eval --checkpoint runs/<time>",
      "stepwise eval --checkpoint runs/<time>/checkpoints/epoch-0010.safetensors --data DIR --plot confusion.png"
    ],
    groups: [["Options", keys(evalFlags)]]
  },
  predict: {
    command: predict,
    summary: "Classify image files with a checkpoint: class and probabilities per file",
    args: "<FILE|DIR>...",
    examples: [
      "stepwise predict --checkpoint runs/<time>/checkpoints/epoch-0010.safetensors photo.png",
      "stepwise predict --checkpoint model.safetensors --top 3 --json images/"
    ],
    groups: [["Options", keys(predictFlags)]]
  },
  export: {
    command: exportWeights,
    summary: "A checkpoint's weights as a PyTorch state_dict (safetensors, with classes and normalizer)",
    args: undefined,
    examples: [
      "stepwise export --checkpoint runs/<time> --format torch --out model.safetensors",
      "stepwise export --checkpoint runs/<time>/checkpoints/epoch-0010.safetensors --out model.safetensors"
    ],
    groups: [["Options", keys(exportFlags)]]
  },
  plot: {
    command: plot,
    summary: "The chapter's pictures, from a run folder or from built-in demos",
    args: `<${PlotNames.join("|")}>`,
    examples: [
      "stepwise plot losses --run runs/<time>",
      "stepwise plot paths --format svg",
      "stepwise plot all"
    ],
    groups: [["Options", keys(plotFlags)]]
  },
  download: {
    command: download,
    summary: "Download a dataset (rps: the full-size Rock Paper Scissors images, 300x300)",
    args: "rps",
    examples: ["stepwise download rps --to data/"],
    groups: [["Options", keys(downloadFlags)]]
  },
  sweep: {
    command: sweep,
    summary: "Hyperparameter sweep: trials as durable workflows on runners",
    args: undefined,
    examples: [
      "stepwise sweep --config examples/sweep-chapter6.yaml",
      "stepwise sweep --resume runs/sweep-<time>",
      "stepwise sweep --config F --storage postgres://stepwise@db:5432/sweeps --runners 2"
    ],
    groups: [["Options", keys(sweepFlags)]]
  },
  runner: {
    command: runner,
    summary: "Run sweep trials from a cluster storage (runners join from any machine)",
    args: undefined,
    examples: ["stepwise runner --storage postgres://stepwise@db:5432/sweeps --host 10.0.0.7 --port 34431"],
    groups: [["Options", keys(runnerFlags)]]
  }
} as const

export type CommandName = keyof typeof commands

export type Values<C> = C extends Command.Command<any, any, any, infer A> ? A : never

export const isSome = Option.isSome
