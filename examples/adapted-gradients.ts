/**
 * Capturing one layer's gradients while training, and drawing the chapter's adapted-gradient
 * figure (Figure 6.17) from them.
 *
 * The chapter registers a hook on each parameter tensor and appends gradients to a dict (and
 * must remember to remove the hooks). Here `Events.captureGradients(["conv1"])` registers
 * interest for the lifetime of a scope; the training loop copies conv1's gradients to the host
 * only while someone listens. From the gradients of one weight, the CLI's `Demos.adaptedGradients`
 * computes Adam's two bias-corrected EWMAs (optim's `Ewma.calcCorrectedEwma`) and the adapted
 * gradient (Equation 6.9), and its chart module plots them.
 *
 *   npm run example -- adapted-gradients [OUT.png]
 */
import { writeFileSync } from "node:fs"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Charts, Demos, Render } from "@stepwise/cli"
import { Cnn2, Engine, Events, Loss, Trainer } from "@stepwise/core"
import { type Errors as DataErrors, Random } from "@stepwise/data"
import type { InvalidHyperparameter } from "@stepwise/optim"
import { Adam } from "@stepwise/optim"
import { Effect } from "effect"
import { type Options, prepare } from "./train-cnn2-with-scheduler.js"

/** What can go wrong (named, so the declaration of `main` can be emitted). */
export type Failure =
  | DataErrors.ImageFolderError
  | DataErrors.InvalidArgument
  | DataErrors.InvalidNormalizer
  | InvalidHyperparameter.InvalidHyperparameter

export const main = (o: Options & { readonly out?: string } = {}) =>
  Effect.gen(function* () {
    const { numeric } = yield* Engine.Engine
    const { trainLoader, valLoader } = yield* prepare(o)
    const optimizer = (yield* Adam.make({ lr: 3e-4 }))(numeric)
    const untrained = yield* Trainer.make(
      {
        model: (yield* Cnn2.make({ nFilters: 5, p: 0.3 })).model,
        loss: Loss.crossEntropy,
        optimizer,
        trainLoader,
        valLoader
      },
      yield* Random.make(13)
    )
    const { trained, captured } = yield* Effect.scoped(
      Effect.gen(function* () {
        const gradients = yield* Events.captureGradients(["conv1"])
        const trained = yield* Trainer.train(untrained, o.epochs ?? 1, 42)
        return { trained, captured: yield* gradients }
      })
    ).pipe(Effect.provide(Events.layer))
    // One scalar weight: the first element of conv1.weight, one gradient per mini-batch.
    const series = captured.conv1.weight.map((g) => g[0])
    // Equation 6.9: Adam's bias-corrected EWMAs of g (period 19) and g^2 (period 1999).
    const a = Demos.adaptedGradients(series, "conv1.weight[0]")
    const spec = Charts.adaptedGradients(a)
    const png = yield* Effect.promise(() => Render.toPng(spec))
    const out = o.out ?? "adapted-gradients.png"
    writeFileSync(out, png)
    console.log(`captured ${series.length} gradients of conv1.weight[0]; wrote ${out}`)
    Trainer.dispose(untrained)
    Trainer.dispose(trained)
    return { steps: series.length, gradients: series, adapted: a.adapted, out }
  }).pipe(Effect.provide(Engine.wasm))

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, "/"))) {
  main({ out: process.argv[2] }).pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain)
}
