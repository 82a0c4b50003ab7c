/** `stepwise stats`: the per-channel mean and std of a training set (the chapter's normalizer). */
import { type Errors as DataErrors, DataLoader, Rps, Statistics } from "@stepwise/data"
import { Effect, Option } from "effect"
import type * as Cli from "./Cli.js"
import * as Pipeline from "./Pipeline.js"
import { Output } from "./Progress.js"

export type Args = Cli.Values<typeof Cli.stats>

const fmt = (xs: ReadonlyArray<number>) => `[${xs.map((x) => x.toFixed(4)).join(", ")}]`

export const run = (args: Args) =>
  Effect.gen(function* () {
    const out = yield* Output
    const root = Option.getOrElse(args.data, () => Rps.bundled().train)
    const resize = Option.getOrElse(args.resize, () => "28")
    const batchSize = Option.getOrElse(args.batchSize, () => 16)
    const ds = yield* Pipeline.loadFolder(root, /^\d+$/.test(resize) ? Number(resize) : resize)
    // The chapter's temporary loader: unshuffled mini-batches, per-image statistics summed up.
    const normalizer = yield* Statistics.makeNormalizer(
      yield* DataLoader.fromTensorDataset(ds, { batchSize })
    )
    const perClass = (ds.classes ?? []).map((name, c) => ({
      name,
      count: ds.y.filter((y) => y === c).length
    }))
    yield* out.line(
      `${root}: ${ds.length} images (${perClass.map((k) => `${k.count} ${k.name}`).join(", ")}), ${ds.sampleShape.join("x")}`
    )
    yield* out.line(`mean ${fmt(normalizer.mean)}`)
    yield* out.line(`std  ${fmt(normalizer.std)}`)
    yield* out.line(`Normalize(mean=${fmt(normalizer.mean)}, std=${fmt(normalizer.std)})`)
    yield* out.json({
      command: "stats",
      root,
      count: ds.length,
      sampleShape: ds.sampleShape,
      classes: perClass,
      mean: normalizer.mean,
      std: normalizer.std
    })
  })
export type _Errors = DataErrors.ImageFolderError
