import { Conv2d, Dropout, Flatten, Linear, MaxPool2d, type Module, ReLU, Sequential } from "./Module.js"

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

/** The chapter's CNN2(n_filters, p): 6,823 parameters for 5 filters. */
export const make = (options: Cnn2Options): Cnn2 => {
  const o: Required<Cnn2Options> = { p: 0, inChannels: 3, imageSize: 28, nClasses: 3, ...options }
  const n = o.nFilters
  // 28 -> conv 26 -> pool 13 -> conv 11 -> pool 5
  const side = Math.floor((Math.floor((o.imageSize - 2) / 2) - 2) / 2)
  const featurizer = Sequential([
    ["conv1", Conv2d({ inChannels: o.inChannels, outChannels: n, kernelSize: 3 })],
    ["relu1", ReLU()],
    ["pool1", MaxPool2d(2)],
    ["conv2", Conv2d({ inChannels: n, outChannels: n, kernelSize: 3 })],
    ["relu2", ReLU()],
    ["pool2", MaxPool2d(2)],
    ["flatten", Flatten()]
  ])
  const drop = (name: string): ReadonlyArray<readonly [string, Module]> =>
    o.p > 0 ? [[name, Dropout(o.p)]] : []
  const classifier = Sequential([
    ...drop("drop1"),
    ["fc1", Linear({ inFeatures: n * side * side, outFeatures: 50, flattenedFrom: [n, side, side] })],
    ["relu3", ReLU()],
    ...drop("drop2"),
    ["fc2", Linear({ inFeatures: 50, outFeatures: o.nClasses })]
  ])
  const model = Sequential([
    ["", featurizer],
    ["", classifier]
  ])
  return { featurizer, classifier, model, options: o }
}
