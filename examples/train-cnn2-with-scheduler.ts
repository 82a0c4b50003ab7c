/**
 * Training CNN2 on an ImageFolder with a learning-rate scheduler, from code.
 *
 * The chapter's "Putting It All Together": the normalizer learned from the training images,
 * CNN2 with p = 0.5, SGD with Nesterov momentum, and CyclicLR going from 1e-3 up to 1e-2 in one
 * epoch and back down in the next (triangular2). Every piece is a value: the trainer that
 * `Trainer.train` returns is the trained model, the one it was given is untouched.
 *
 *   npm run example -- train-cnn2-with-scheduler [ROOT]
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cnn2, Engine, Loss, Trainer } from "@stepwise/core"
import type { Errors as DataErrors, Transforms } from "@stepwise/data"
import { DataLoader, DecodePool, ImageFolder, Random, Rps, Statistics, TensorDataset } from "@stepwise/data"
import type { InvalidHyperparameter } from "@stepwise/optim"
import { CyclicLR, SGD } from "@stepwise/optim"
import { Effect } from "effect"

export interface Options {
  /** ImageFolder roots (default: the bundled 28x28 Rock Paper Scissors). */
  readonly train?: string
  readonly val?: string
  readonly epochs?: number
  /** Keep only every k-th image (a quick run for tests and demos). */
  readonly every?: number
}

const thin = (ds: TensorDataset.TensorDataset, every: number) =>
  every <= 1
    ? ds
    : TensorDataset.subset(
        ds,
        Array.from({ length: Math.ceil(ds.length / every) }, (_, i) => i * every)
      )

/** What can go wrong (named, so the declarations of `prepare` and `main` can be emitted). */
export type Failure =
  | DataErrors.ImageFolderError
  | DataErrors.InvalidArgument
  | DataErrors.InvalidNormalizer
  | InvalidHyperparameter.InvalidHyperparameter
export type Normalizer = Transforms.NormalizeParams

/** Decode once, learn the normalizer from the training set, standardize both sets, make loaders. */
export const prepare = (o: Options = {}) =>
  Effect.gen(function* () {
    const every = o.every ?? 1
    const rawTrain = thin(
      yield* ImageFolder.loadImageFolder(o.train ?? Rps.bundled().train, { resize: 28 }),
      every
    )
    const rawVal = thin(
      yield* ImageFolder.loadImageFolder(o.val ?? Rps.bundled().test, { resize: 28 }),
      every
    )
    const normalizer = yield* Statistics.makeNormalizer(
      yield* DataLoader.fromTensorDataset(rawTrain, { batchSize: 16 })
    )
    const train = yield* ImageFolder.normalizeDataset(rawTrain, normalizer)
    const val = yield* ImageFolder.normalizeDataset(rawVal, normalizer)
    return {
      normalizer,
      classes: train.classes ?? Rps.CLASSES,
      trainLoader: yield* DataLoader.fromTensorDataset(train, { batchSize: 16, shuffle: true, seed: 13 }),
      valLoader: yield* DataLoader.fromTensorDataset(val, { batchSize: 16 })
    }
  }).pipe(Effect.provide(DecodePool.layerDefault))

export const main = (o: Options = {}) =>
  Effect.gen(function* () {
    const { numeric } = yield* Engine.Engine
    const { trainLoader, valLoader, classes } = yield* prepare(o)
    const optimizer = (yield* SGD.make({ lr: 0.03, momentum: 0.9, nesterov: true }))(numeric)
    // step_size_up = len(train_loader): up in one epoch, down in the next
    const scheduler = yield* CyclicLR.make({
      baseLr: 1e-3,
      maxLr: 1e-2,
      stepSizeUp: trainLoader.numBatches,
      mode: "triangular2"
    })
    const untrained = Trainer.setScheduler(
      yield* Trainer.make(
        {
          model: (yield* Cnn2.make({ nFilters: 5, p: 0.5 })).model,
          loss: Loss.crossEntropy,
          optimizer,
          trainLoader,
          valLoader
        },
        yield* Random.make(13)
      ),
      scheduler
    )
    const trained = yield* Trainer.train(untrained, o.epochs ?? 10, 42)
    const valCorrect = yield* Trainer.loaderApply(valLoader, (b) => Trainer.correct(trained, b))
    trained.losses.forEach((loss, i) => {
      console.log(
        `epoch ${i + 1}: loss ${loss.toFixed(4)} val_loss ${trained.valLosses[i].toFixed(4)} lr ${trained.learningRates[i].toExponential(2)}`
      )
    })
    valCorrect.forEach(([c, n], k) => {
      console.log(`${classes[k]}: ${c}/${n}`)
    })
    const result = {
      losses: trained.losses,
      valLosses: trained.valLosses,
      learningRates: trained.learningRates,
      valCorrect
    }
    Trainer.dispose(untrained)
    Trainer.dispose(trained)
    return result
  }).pipe(Effect.provide(Engine.wasm))

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, "/"))) {
  main({ train: process.argv[2] }).pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain)
}
