/**
 * The command tree: `stepwise train | lr-find | stats | eval | plot | download`, every flag with
 * its validation. Handlers live in one module a command; this file only parses.
 */
import { Args, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { Effect, Option } from "effect"
import * as F from "./Flags.js"
import { BackendNames, OptimizerNames, SchedulerNames } from "./Recipe.js"

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

export const optimizerFlags = {
  optimizer: F.choice("optimizer", OptimizerNames, "Optimizer [adam]"),
  // >= 0 as in PyTorch and @stepwise/optim (lr 0 trains nothing, but is not an error)
  lr: F.number("lr", "Learning rate [3e-4]", { min: 0 }),
  momentum: F.number("momentum", "SGD/RMSprop momentum factor [0]", { min: 0 }),
  dampening: F.number("dampening", "SGD dampening for momentum [0]", { min: 0, max: 1 }),
  nesterov: F.toggle("nesterov", "SGD: use Nesterov momentum"),
  weightDecay: F.number("weight-decay", "L2 penalty (decoupled for AdamW) [0; AdamW 1e-2]", { min: 0 }),
  beta1: F.number("beta1", "Adam/AdamW beta1 [0.9]", { min: 0, max: 1, maxExclusive: true }),
  beta2: F.number("beta2", "Adam/AdamW beta2 [0.999]", { min: 0, max: 1, maxExclusive: true }),
  eps: F.number("eps", "Term added to the denominator [1e-8; Adagrad 1e-10]", { min: 0, minExclusive: true }),
  amsgrad: F.toggle("amsgrad", "Adam/AdamW: AMSGrad variant"),
  alpha: F.number("alpha", "RMSprop smoothing constant [0.99]", { min: 0, max: 1 }),
  centered: F.toggle("centered", "RMSprop: centered variant"),
  lrDecay: F.number("lr-decay", "Adagrad learning-rate decay [0]", { min: 0 }),
  initialAccumulatorValue: F.number("initial-accumulator-value", "Adagrad initial accumulator [0]", {
    min: 0
  })
}

const stepsOrEpoch = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("INT|epoch"),
    Options.withDescription(description),
    Options.mapEffect((text): Effect.Effect<number | "epoch", ValidationError.ValidationError> => {
      if (text === "epoch") return Effect.succeed("epoch" as const)
      const r = F.checkNumber(text, { integer: true, min: 1 })
      return typeof r === "string"
        ? Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${name} ${text}: ${r} or "epoch"`)))
        : Effect.succeed(r)
    }),
    Options.optional
  )

export const schedulerFlags = {
  scheduler: F.choice("scheduler", SchedulerNames, "Learning-rate scheduler [none]"),
  stepSize: F.number("step-size", "StepLR: epochs between decays", { integer: true, min: 1 }),
  gamma: F.number("gamma", "StepLR/MultiStepLR/ExponentialLR decay factor; CyclicLR exp_range base", {
    min: 0,
    minExclusive: true
  }),
  milestones: F.numberList("milestones", "MultiStepLR: epochs at which to decay", { integer: true, min: 0 }),
  factor: F.number("factor", "ReduceLROnPlateau: decay factor", { min: 0, minExclusive: true }),
  tMax: F.number("t-max", "CosineAnnealingLR: half period in epochs", { integer: true, min: 1 }),
  etaMin: F.number("eta-min", "CosineAnnealing*: minimum learning rate", { min: 0 }),
  mode: F.choice(
    "mode",
    ["min", "max", "triangular", "triangular2", "exp_range"] as const,
    "ReduceLROnPlateau: min|max; CyclicLR: triangular|triangular2|exp_range"
  ),
  patience: F.number("patience", "ReduceLROnPlateau: bad epochs tolerated", { integer: true, min: 0 }),
  threshold: F.number("threshold", "ReduceLROnPlateau: improvement threshold", { min: 0 }),
  thresholdMode: F.choice("threshold-mode", ["rel", "abs"] as const, "ReduceLROnPlateau threshold mode"),
  cooldown: F.number("cooldown", "ReduceLROnPlateau: epochs to wait after a decay", {
    integer: true,
    min: 0
  }),
  minLr: F.number("min-lr", "ReduceLROnPlateau: lower bound on the learning rate", { min: 0 }),
  baseLr: F.number("base-lr", "CyclicLR: lower learning rate", { min: 0, minExclusive: true }),
  maxLr: F.number("max-lr", "CyclicLR/OneCycleLR: upper learning rate", { min: 0, minExclusive: true }),
  stepSizeUp: stepsOrEpoch("step-size-up", 'CyclicLR: mini-batches going up ("epoch" = one epoch)'),
  stepSizeDown: stepsOrEpoch("step-size-down", "CyclicLR: mini-batches going down [step-size-up]"),
  cycleMomentum: F.toggle("cycle-momentum", "CyclicLR/OneCycleLR: cycle momentum (beta1) inversely"),
  baseMomentum: F.number("base-momentum", "CyclicLR/OneCycleLR: lower momentum", { min: 0, max: 1 }),
  maxMomentum: F.number("max-momentum", "CyclicLR/OneCycleLR: upper momentum", { min: 0, max: 1 }),
  totalSteps: F.number("total-steps", "OneCycleLR: mini-batches in the cycle [epochs x batches]", {
    integer: true,
    min: 1
  }),
  pctStart: F.number("pct-start", "OneCycleLR: fraction of the cycle going up [0.3]", { min: 0, max: 1 }),
  annealStrategy: F.choice("anneal-strategy", ["cos", "linear"] as const, "OneCycleLR annealing [cos]"),
  divFactor: F.number("div-factor", "OneCycleLR: initial lr = max-lr / div-factor [25]", {
    min: 0,
    minExclusive: true
  }),
  finalDivFactor: F.number("final-div-factor", "OneCycleLR: min lr = initial lr / final-div-factor [1e4]", {
    min: 0,
    minExclusive: true
  }),
  threePhase: F.toggle("three-phase", "OneCycleLR: three-phase variant"),
  t0: F.number("t0", "CosineAnnealingWarmRestarts: epochs of the first cycle", { integer: true, min: 1 }),
  tMult: F.number("t-mult", "CosineAnnealingWarmRestarts: cycle length multiplier", { integer: true, min: 1 })
}

export const dataFlags = {
  data: F.text("data", "ImageFolder root of the training set [bundled Rock Paper Scissors 28x28]", "DIR"),
  val: F.text("val", "ImageFolder root of the validation set [bundled test set]", "DIR"),
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

export const runFlags = {
  config: F.text("config", "Recipe file (JSON or YAML); flags override its fields", "FILE"),
  epochs: F.number("epochs", "Epochs to train [10]", { integer: true, min: 1 }),
  batchSize: F.number("batch-size", "Mini-batch size [16]", { integer: true, min: 1 }),
  seed: F.number("seed", "Seed for initialisation, shuffling and dropout [13]", { integer: true, min: 0 }),
  backend: F.choice("backend", BackendNames, "Tensor engine [wasm]")
}

export const train = Command.make("train", {
  ...runFlags,
  ...modelFlags,
  ...optimizerFlags,
  ...schedulerFlags,
  ...dataFlags,
  out: F.text("out", "Run folder to write [runs/<timestamp>]", "DIR"),
  resume: F.text("resume", "Continue the interrupted run in this folder exactly", "RUN_DIR"),
  captureGradients: F.text(
    "capture-gradients",
    "Record one layer's gradients (e.g. conv1) for plots",
    "LAYER"
  ),
  plots: F.toggle("plots", "Write the losses / lr / filters pictures into the run folder"),
  tensorboard: F.toggle("tensorboard", "Write TensorBoard event files into the run folder"),
  json
}).pipe(Command.withDescription("Train CNN2 on an ImageFolder (default: the bundled Rock Paper Scissors)"))

export const lrFind = Command.make("lr-find", {
  ...runFlags,
  ...modelFlags,
  ...optimizerFlags,
  ...dataFlags,
  startLr: F.number("start-lr", "First learning rate of the test [the optimizer's --lr]", {
    min: 0,
    minExclusive: true
  }),
  endLr: F.number("end-lr", "Last learning rate of the test [1e-1]", { min: 0, minExclusive: true }),
  numIter: F.number("num-iter", "Mini-batches (learning rates) to try [100]", { integer: true, min: 2 }),
  stepMode: F.choice("step-mode", ["exp", "linear"] as const, "How the lr grows [exp]"),
  smoothing: F.number("smoothing", "EWMA alpha for the loss curve [0.05]", {
    min: 0,
    max: 1,
    minExclusive: true
  }),
  out: F.text("out", "Folder for the plot and results [runs/lr-find-<timestamp>]", "DIR"),
  json
}).pipe(
  Command.withDescription(
    "LR range test: tries growing learning rates, one mini-batch each, and suggests one"
  )
)

export const stats = Command.make("stats", {
  data: F.text("data", "ImageFolder root [bundled training set]", "DIR"),
  resize: dataFlags.resize,
  batchSize: F.number("batch-size", "Mini-batch size used to accumulate [16]", { integer: true, min: 1 }),
  json
}).pipe(Command.withDescription("Per-channel mean and std of a training set (the normalizer)"))

export const evaluate = Command.make("eval", {
  checkpoint: Options.text("checkpoint").pipe(
    Options.withPseudoName("FILE|RUN_DIR"),
    Options.withDescription("Checkpoint file, or a run folder (its latest checkpoint)")
  ),
  data: F.text("data", "ImageFolder root to evaluate [the run's validation set]", "DIR"),
  batchSize: F.number("batch-size", "Mini-batch size [16]", { integer: true, min: 1 }),
  backend: runFlags.backend,
  plot: F.text("plot", "Also write the confusion matrix picture here (.png or .svg)", "FILE"),
  json
}).pipe(Command.withDescription("Per-class [correct, total], accuracy and the confusion matrix"))

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

export const plot = Command.make("plot", {
  which: Args.text({ name: "plot" }).pipe(
    Args.withDescription(`One of ${PlotNames.join(", ")}`),
    Args.mapEffect((text) =>
      (PlotNames as ReadonlyArray<string>).includes(text)
        ? Effect.succeed(text as PlotName)
        : Effect.fail(HelpDoc.p(`plot ${text}: expected one of ${PlotNames.join(", ")}`))
    )
  ),
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
}).pipe(Command.withDescription("The chapter's pictures, from a run folder or from built-in demos"))

export const download = Command.make("download", {
  dataset: Args.text({ name: "dataset" }).pipe(
    Args.withDescription("rps: the full-size Rock Paper Scissors images (300x300)"),
    Args.mapEffect((text) =>
      text === "rps"
        ? Effect.succeed("rps" as const)
        : Effect.fail(HelpDoc.p(`download ${text}: the only dataset is rps`))
    )
  ),
  to: Options.text("to").pipe(
    Options.withPseudoName("DIR"),
    Options.withDescription("Folder to extract into")
  ),
  json
}).pipe(Command.withDescription("Download a dataset"))

export const root = Command.make("stepwise").pipe(
  Command.withDescription(
    "stepwise: Chapter 6 of Deep Learning with PyTorch Step-by-Step, the functional way"
  )
)

export type Values<C> = C extends Command.Command<any, any, any, infer A> ? A : never

export const isSome = Option.isSome
