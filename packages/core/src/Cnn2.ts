import { Either } from "effect"
import type { InvalidLayer } from "./Errors.js"
import { Conv2d, Dropout, Flatten, Linear, MaxPool2d, type Module, ReLU, Sequential } from "./Module.js"

export { InvalidLayer } from "./Errors.js"

export interface Cnn2Options {
  readonly nFilters: number
  /** Dropout probability before each linear layer (none when 0, as in the chapter). */
  readonly p?: number
  /** Input images are 3 x 28 x 28 in the chapter. */
  readonly inChannels?: number
  readonly imageSize?: number
  readonly nClasses?: number
}

export interface Cnn2 {
  /** conv1 -> relu -> maxpool(2) -> conv2 -> relu -> maxpool(2) -> flatten. */
  readonly featurizer: Module
  /** [dropout] -> fc1 -> relu -> [dropout] -> fc2 (three logits). */
  readonly classifier: Module
  /** featurizer then classifier, parameters named as PyTorch's CNN2 state_dict. */
  readonly model: Module
  readonly options: Required<Cnn2Options>
}

/**
 * The chapter's CNN2(n_filters, p): 6,823 parameters for 5 filters. `InvalidLayer` names the
 * layer an option breaks (no filters, p outside [0, 1], an image too small for two conv-pool
 * stages shows up as fc1's `inFeatures`).
 */
export const make = (options: Cnn2Options): Either.Either<Cnn2, InvalidLayer> =>
  Either.gen(function* () {
    const o: Required<Cnn2Options> = { p: 0, inChannels: 3, imageSize: 28, nClasses: 3, ...options }
    const n = o.nFilters
    // 28 -> conv 26 -> pool 13 -> conv 11 -> pool 5
    const side = Math.floor((Math.floor((o.imageSize - 2) / 2) - 2) / 2)
    const featurizer = Sequential([
      ["conv1", yield* Conv2d({ inChannels: o.inChannels, outChannels: n, kernelSize: 3 })],
      ["relu1", ReLU()],
      ["pool1", yield* MaxPool2d(2)],
      ["conv2", yield* Conv2d({ inChannels: n, outChannels: n, kernelSize: 3 })],
      ["relu2", ReLU()],
      ["pool2", yield* MaxPool2d(2)],
      ["flatten", Flatten()]
    ])
    // Checked even at p = 0 (no dropout layer then), so a bad p is refused either way.
    const dropout = yield* Dropout(o.p)
    const drop = (name: string): ReadonlyArray<readonly [string, Module]> =>
      o.p > 0 ? [[name, dropout]] : []
    const classifier = Sequential([
      ...drop("drop1"),
      [
        "fc1",
        yield* Linear({
          inFeatures: n * Math.max(side, 0) * Math.max(side, 0),
          outFeatures: 50,
          ...(side >= 1 ? { flattenedFrom: [n, side, side] as const } : {})
        })
      ],
      ["relu3", ReLU()],
      ...drop("drop2"),
      ["fc2", yield* Linear({ inFeatures: 50, outFeatures: o.nClasses })]
    ])
    const model = Sequential([
      ["", featurizer],
      ["", classifier]
    ])
    return { featurizer, classifier, model, options: o }
  })
