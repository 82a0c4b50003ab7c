/**
 * `npm run acceptance -w packages/core`: the chapter's two recipes on the bundled Rock Paper
 * Scissors (train 2,520 / validation 372, Resize(28), normalizer from the training set, batch 16,
 * 10 epochs), trained with `Trainer`, next to PyTorch 1.13 on the same files:
 *
 * - Adam lr 3e-4, CNN2(5, p = 0.3)                                       PyTorch: 330 / 372
 * - SGD lr 0.03, momentum 0.9, Nesterov + CyclicLR(1e-3..1e-2,
 *   step_size_up = one epoch, triangular2), CNN2(5, p = 0.5)             PyTorch: 344 / 372
 *
 * Pass: mean validation accuracy within 3 points of PyTorch's (or better). Also runs the chapter's LR range test
 * (SGD from 1e-3 to 0.2, 100 iterations) before the second recipe and prints its suggestions.
 * `--seeds 13,14,15` repeats each recipe for several initialisation seeds (one number is noise).
 * `--root DIR` reads another copy (default: the data package's bundled one).
 * `--torch` also runs scripts/acceptance_torch.py (Debian's python3-torch) with the same seeds, so
 * the comparison is seed-for-seed on this machine and not against one published number.
 */
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { NodeFileSystem } from "@effect/platform-node"
import { Cnn2, Engine, Loss, Metrics, Trainer } from "@stepwise/core"
import { DataLoader, DecodePool, ImageFolder, Random, Rps, Statistics } from "@stepwise/data"
import { Adam, CyclicLR, Optimizers, SGD } from "@stepwise/optim"
import { Effect, Either, Layer } from "effect"

const args = process.argv.slice(2)
const flag = (name: string) => {
  const i = args.indexOf(name)
  return i < 0 ? undefined : args[i + 1]
}
const seeds = (flag("--seeds") ?? "13").split(",").map(Number)
const root = flag("--root") ?? Rps.bundled().root
const epochs = Number(flag("--epochs") ?? 10)

const PYTORCH = { adam: 330, sgd: 344 }
const TOTAL = 372

/** optim's definition on the engine's numeric (fused kernels on wasm): what users run. */
const fused = (config: Optimizers.OptimizerConfig) =>
  Effect.zipWith(Optimizers.fromConfig(config), Engine.Engine, (def, engine) => def(engine.numeric))

const program = Effect.gen(function* () {
  const t0 = performance.now()
  // The chapter's data preparation: a temporary loader for the statistics, then Normalize.
  const rawTrain = yield* ImageFolder.loadImageFolder(`${root}/rps`, { resize: 28 })
  const rawVal = yield* ImageFolder.loadImageFolder(`${root}/rps-test-set`, { resize: 28 })
  const normalizer = yield* Statistics.makeNormalizer(
    yield* DataLoader.fromTensorDataset(rawTrain, { batchSize: 16 })
  )
  const train = yield* ImageFolder.normalizeDataset(rawTrain, normalizer)
  const val = yield* ImageFolder.normalizeDataset(rawVal, normalizer)
  console.log(
    `data: ${train.length} train / ${val.length} validation images from ${root} in ${((performance.now() - t0) / 1000).toFixed(1)} s; ` +
      `normalizer mean [${normalizer.mean.map((m) => m.toFixed(4))}] std [${normalizer.std.map((s) => s.toFixed(4))}]`
  )
  const valLoader = yield* DataLoader.fromTensorDataset(val, { batchSize: 16 })
  const accuracyOf = (t: Trainer.Trainer) =>
    Effect.map(
      Trainer.loaderApply(valLoader, (b) => Trainer.correct(t, b)),
      (rows) => rows as Metrics.PerClass
    )

  const run = (
    name: string,
    seed: number,
    p: number,
    setup: (t: Trainer.Trainer) => Effect.Effect<Trainer.Trainer, unknown, Engine.Engine>
  ) =>
    Effect.gen(function* () {
      const trainLoader = yield* DataLoader.fromTensorDataset(train, { batchSize: 16, shuffle: true, seed })
      const adam = yield* fused(Adam.Config.make({ lr: 3e-4 }))
      const start = yield* Trainer.make(
        {
          model: Either.getOrThrow(Cnn2.make({ nFilters: 5, p })).model,
          loss: Loss.crossEntropy,
          optimizer: adam,
          trainLoader,
          valLoader
        },
        Random.unsafeMake(seed)
      )
      const configured = yield* setup(start)
      const t1 = performance.now()
      const trained = yield* Trainer.train(configured, epochs, seed, {
        onEpochEnd: (t) =>
          Effect.sync(() =>
            console.log(
              `  ${name} seed ${seed} epoch ${t.totalEpochs}: loss ${t.losses.at(-1)!.toFixed(4)} val ${t.valLosses.at(-1)!.toFixed(4)} lr ${t.learningRates.at(-1)!.toExponential(3)}`
            )
          )
      })
      const seconds = (performance.now() - t1) / 1000
      const rows = yield* accuracyOf(trained)
      const trainRows = yield* Trainer.loaderApply(
        yield* DataLoader.fromTensorDataset(train, { batchSize: 16 }),
        (b) => Trainer.correct(trained, b)
      )
      const [c] = Metrics.total(rows)
      const [tc, tt] = Metrics.total(trainRows as Metrics.PerClass)
      console.log(
        `  ${name} seed ${seed}: validation ${c}/${TOTAL} per class ${JSON.stringify(rows)}, train ${tc}/${tt}, ${seconds.toFixed(1)} s`
      )
      // Disposing a tensor twice is a no-op in tfjs, so shared parameters are fine here.
      for (const t of [start, configured, trained]) Trainer.dispose(t)
      return c
    })

  const results: Record<"adam" | "sgd", Array<number>> = { adam: [], sgd: [] }
  for (const seed of seeds) {
    results.adam.push(yield* run("adam", seed, 0.3, (t) => Effect.succeed(t)))
    results.sgd.push(
      yield* run("sgd+cyclic", seed, 0.5, (t) =>
        Effect.gen(function* () {
          // The chapter: an LR range test with SGD(1e-3, Nesterov) up to 0.2 over 100 iterations...
          const probe = Trainer.setOptimizer(
            t,
            yield* fused(yield* SGD.decode({ lr: 1e-3, momentum: 0.9, nesterov: true }))
          )
          const test = yield* Trainer.lrRangeTest(probe, { endLr: 0.2, numIter: 100 })
          const s = test.suggestions
          console.log(
            `  LR range test: ${test.tracking.lr.length} points${test.stopped ? ` (stopped: ${test.stopped})` : ""}; ` +
              `suggestions steepest ${s.steepest?.lr.toExponential(2)}, valley ${s.valley?.lr.toExponential(2)}, min/10 ${s.minimum?.lr.toExponential(2)}`
          )
          // ...then SGD(0.03, Nesterov) with CyclicLR(1e-3..1e-2, step_size_up = one epoch, triangular2).
          const sgd = Trainer.setOptimizer(
            t,
            yield* fused(yield* SGD.decode({ lr: 0.03, momentum: 0.9, nesterov: true }))
          )
          const cyclic = yield* CyclicLR.make(
            { baseLr: 1e-3, maxLr: 1e-2, stepSizeUp: 1, unit: "epochs", mode: "triangular2" },
            t.config.trainLoader!.numBatches
          )
          return Trainer.setScheduler(sgd, cyclic)
        })
      )
    )
  }
  const torch = args.includes("--torch") ? torchRun() : undefined
  if (typeof torch === "string") console.log(torch)
  const torchSeeds = typeof torch === "object" ? torch : undefined
  const pct = (c: number) => `${((c / TOTAL) * 100).toFixed(1)}%`
  const avg = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
  // Single seeds swing by 10+ points either way (dropout masks, initial weights, batch order),
  // so with --torch the criterion is seed-mean against seed-mean on this machine; without it,
  // against the issue's single PyTorch numbers.
  console.log(
    `\n| recipe | PyTorch 1.13, issue (seed 13) |${torchSeeds ? " PyTorch 1.13 here (per seed) | mean |" : ""} stepwise (per seed ${seeds.join(",")}) | mean | difference |`
  )
  console.log(`| --- | --- |${torchSeeds ? " --- | --- |" : ""} --- | --- | --- |`)
  let ok = true
  for (const k of ["adam", "sgd"] as const) {
    const mean = avg(results[k])
    const reference = torchSeeds ? avg(torchSeeds[k]) : PYTORCH[k]
    const diff = ((mean - reference) / TOTAL) * 100
    ok &&= diff >= -3
    const torchCols = torchSeeds
      ? ` ${torchSeeds[k].map((c) => `${c} (${pct(c)})`).join(", ")} | ${pct(avg(torchSeeds[k]))} |`
      : ""
    console.log(
      `| ${k === "adam" ? "Adam 3e-4, p=0.3" : "SGD Nesterov + CyclicLR, p=0.5"} | ${PYTORCH[k]}/${TOTAL} (${pct(PYTORCH[k])}) |${torchCols} ` +
        `${results[k].map((c) => `${c} (${pct(c)})`).join(", ")} | ${pct(mean)} | ${diff >= 0 ? "+" : ""}${diff.toFixed(1)} points vs ${torchSeeds ? "PyTorch's mean here" : "the issue"} |`
    )
  }
  if (!ok) process.exitCode = 1
})

/** PyTorch's validation counts for the same seeds, or why it was skipped. */
const torchRun = (): { adam: Array<number>; sgd: Array<number> } | string => {
  try {
    execFileSync("/usr/bin/python3", ["-c", "import torch, torchvision"], { stdio: "ignore" })
  } catch {
    return "PyTorch/torchvision not installed (/usr/bin/python3): skipped the PyTorch column"
  }
  const script = fileURLToPath(new URL("../../scripts/acceptance_torch.py", import.meta.url))
  const out = execFileSync("/usr/bin/python3", [script, root, seeds.join(","), String(epochs)], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"]
  })
  return JSON.parse(out.trim().split("\n").at(-1)!)
}

// Exit explicitly: the image decoder's worker threads would keep the process alive.
Effect.runPromise(
  program.pipe(Effect.provide(Layer.mergeAll(NodeFileSystem.layer, DecodePool.layerDefault, Engine.wasm)))
).then(
  () => process.exit(process.exitCode ?? 0),
  (e) => {
    console.error(e)
    process.exit(1)
  }
)
