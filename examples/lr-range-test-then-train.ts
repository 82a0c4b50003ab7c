/**
 * An LR range test, then training with the rate it suggests.
 *
 * As in the chapter: an untrained CNN2 with SGD (lr 1e-3, Nesterov momentum), the test sweeping
 * up to 0.2 over 100 mini-batches with exponential steps and an EWMA-smoothed loss. The trainer
 * is a value, so "restoring the model and optimizer afterwards" is simply using the trainer we
 * already have; `Trainer.setOptimizer` then gives it an optimizer at the suggested rate.
 *
 * Which suggestion: the chapter reads the curve for "the descending part ... the region we
 * should aim for" and picks "the center of the descending part of the curve" (Figures 6.14,
 * 6.27, 6.30). That is fastai's `valley`: the middle of the longest stretch where the smoothed
 * loss keeps falling. The `steepest` point sits where the loss falls fastest, which on this
 * curve is right before it turns up; there a few more updates overshoot (trained at 7.3e-2 the
 * loss went 1.04 -> 0.99 -> 1.04), so it is no starting rate. With the valley (2.67e-2 here)
 * it learns: training loss 0.75 -> 0.45 -> 0.43, validation 0.47 -> 0.53 -> 0.39. It prints:
 *
 *   tried 100 rates; valley 2.67e-2 (used), steepest 7.31e-2, minimum/10 9.53e-3
 *   epoch 1: loss 0.7486 val_loss 0.4668 ...
 *
 *   npm run example -- lr-range-test-then-train
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import type { LrRangeTest } from "@stepwise/core"
import { Cnn2, Engine, Loss, Trainer } from "@stepwise/core"
import { type Errors as DataErrors, Random } from "@stepwise/data"
import type { InvalidHyperparameter } from "@stepwise/optim"
import { SGD } from "@stepwise/optim"
import { Effect } from "effect"
import { type Options, prepare } from "./train-cnn2-with-scheduler.js"

/** The range test's curve (named, so the declaration of `main` can be emitted). */
export type Tracking = LrRangeTest.Tracking
/** What can go wrong (named, so the declaration of `main` can be emitted). */
export type Failure =
  | DataErrors.ImageFolderError
  | DataErrors.InvalidArgument
  | DataErrors.InvalidNormalizer
  | InvalidHyperparameter.InvalidHyperparameter

export const main = (o: Options & { readonly numIter?: number } = {}) =>
  Effect.gen(function* () {
    const { numeric } = yield* Engine.Engine
    const { trainLoader, valLoader } = yield* prepare(o)
    const sgd = (lr: number) =>
      Effect.map(SGD.make({ lr, momentum: 0.9, nesterov: true }), (def) => def(numeric))
    const untrained = yield* Trainer.make(
      {
        model: (yield* Cnn2.make({ nFilters: 5, p: 0.5 })).model,
        loss: Loss.crossEntropy,
        optimizer: yield* sgd(1e-3),
        trainLoader,
        valLoader
      },
      yield* Random.make(13)
    )
    const test = yield* Trainer.lrRangeTest(untrained, { endLr: 0.2, numIter: o.numIter ?? 100 })
    // The chapter's pick, the centre of the descending part (see above); 1e-2 if the curve never falls.
    const suggested = test.suggestions.valley?.lr ?? 1e-2
    const show = (s: LrRangeTest.Suggestion | undefined) => s?.lr.toExponential(2) ?? "-"
    console.log(
      `tried ${test.tracking.lr.length} rates; valley ${show(test.suggestions.valley)} (used), ` +
        `steepest ${show(test.suggestions.steepest)}, minimum/10 ${show(test.suggestions.minimum)}`
    )
    const ready = Trainer.setOptimizer(untrained, yield* sgd(suggested))
    const trained = yield* Trainer.train(ready, o.epochs ?? 3, 42)
    trained.losses.forEach((loss, i) => {
      console.log(`epoch ${i + 1}: loss ${loss.toFixed(4)} val_loss ${trained.valLosses[i].toFixed(4)}`)
    })
    const result = {
      tracking: test.tracking,
      suggested,
      losses: trained.losses,
      valLosses: trained.valLosses
    }
    Trainer.dispose(untrained)
    Trainer.dispose(ready)
    Trainer.dispose(trained)
    return result
  }).pipe(Effect.provide(Engine.wasm))

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, "/"))) {
  main().pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain)
}
