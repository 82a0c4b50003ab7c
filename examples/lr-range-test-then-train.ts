/**
 * An LR range test, then training with the rate it suggests.
 *
 * As in the chapter: an untrained CNN2 with SGD (lr 1e-3, Nesterov momentum), the test sweeping
 * up to 0.2 over 100 mini-batches with exponential steps and an EWMA-smoothed loss. The trainer
 * is a value, so "restoring the model and optimizer afterwards" is simply using the trainer we
 * already have; `Trainer.setOptimizer` then gives it an optimizer at the suggested rate.
 *
 *   npx tsc -b examples && node .tsbuild/examples/lr-range-test-then-train.js
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import type { LrRangeTest } from "@stepwise/core"
import { Cnn2, Engine, Loss, Trainer } from "@stepwise/core"
import { type Errors as DataErrors, Random } from "@stepwise/data"
import type { InvalidHyperparameter } from "@stepwise/optim"
import { SGD, TfNumeric } from "@stepwise/optim"
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
    yield* Engine.use("wasm")
    const { trainLoader, valLoader } = yield* prepare(o)
    const sgd = (lr: number) =>
      Effect.map(SGD.make({ lr, momentum: 0.9, nesterov: true }), (def) => def(TfNumeric.TfNumeric))
    const untrained = Trainer.make(
      {
        model: Cnn2.make({ nFilters: 5, p: 0.5 }).model,
        loss: Loss.crossEntropy,
        optimizer: yield* sgd(1e-3),
        trainLoader,
        valLoader
      },
      Random.make(13)
    )
    const test = yield* Trainer.lrRangeTest(untrained, { endLr: 0.2, numIter: o.numIter ?? 100 })
    // The steepest descent of the smoothed loss, falling back to fastai's valley.
    const suggested = test.suggestions.steepest?.lr ?? test.suggestions.valley?.lr ?? 1e-2
    console.log(`tried ${test.tracking.lr.length} rates; suggested lr ${suggested.toExponential(2)}`)
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
  })

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, "/"))) {
  main().pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain)
}
