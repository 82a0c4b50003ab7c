/**
 * `npm run bench -w packages/core` (second table): one full epoch of the chapter's training loop
 * through `Trainer.train` on cached data (2,520 training images in shuffled batches of 16, then
 * validation on 372), CNN2(5, p = 0.3) with Adam 3e-4, on each engine, next to PyTorch's
 * StepByStep-style epoch (Debian's python3-torch, 2 threads) measured in the same run.
 * Decoding is excluded on both sides (decode once, train many epochs). Compare ratios of one run.
 */
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Cnn2, Engine, Loss, Trainer } from "@stepwise/core"
import { DataLoader, Random, TensorDataset } from "@stepwise/data"
import { Adam, Optimizers } from "@stepwise/optim"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"

const quick = process.argv.includes("--quick")
const cpuSeconds = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1e6
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const dataset = (n: number, seed: number) => {
  const [x] = Random.normals(Random.unsafeMake(seed), n * 3 * 28 * 28)
  return Either.getOrThrow(
    TensorDataset.make({
      x: Float32Array.from(x),
      y: Int32Array.from({ length: n }, (_, i) => i % 3),
      sampleShape: [3, 28, 28]
    })
  )
}

const train = dataset(2520, 1)
const val = dataset(372, 2)

const epochs = (repeats: number) =>
  Effect.gen(function* () {
    const engine = yield* Engine.Engine
    const config = Adam.Config.make({ lr: 3e-4 })
    const def = yield* Optimizers.fromConfig(config)
    const t = yield* Trainer.make(
      {
        model: Either.getOrThrow(Cnn2.make({ nFilters: 5, p: 0.3 })).model,
        loss: Loss.crossEntropy,
        optimizer: def(engine.numeric),
        trainLoader: yield* DataLoader.fromTensorDataset(train, { batchSize: 16, shuffle: true, seed: 13 }),
        valLoader: yield* DataLoader.fromTensorDataset(val, { batchSize: 16 })
      },
      Random.unsafeMake(13)
    )
    const times: Array<number> = []
    const tensors: Array<number> = []
    let last = t
    // One warm-up epoch, then `repeats` timed ones, each continuing from the previous.
    for (let i = 0; i <= repeats; i++) {
      const t0 = performance.now()
      const next = yield* Trainer.train(last, 1, 42)
      if (i > 0) times.push((performance.now() - t0) / 1000)
      Trainer.dispose(last)
      last = next
      tensors.push(tf.memory().numTensors)
    }
    // The same 158 steps called directly on pre-gathered batches: what the loop itself costs.
    const batches = yield* DataLoader.collect(last.config.trainLoader!, 99)
    const raw: Array<number> = []
    for (let r = 0; r < repeats; r++) {
      let params = last.params
      let optState = last.optState
      const t0 = performance.now()
      for (const [i, b] of batches.entries()) {
        const next = Either.getOrThrow(
          Trainer.trainStep(last.config, params, optState, Trainer.hyper(last), b, Trainer.stepRng(42, 99, i))
        )
        if (params !== last.params) Trainer.dispose({ params, optState })
        params = next.params
        optState = next.optState
      }
      raw.push((performance.now() - t0) / 1000)
      Trainer.dispose({ params, optState })
    }
    const t0 = performance.now()
    yield* Trainer.evaluate(last, last.config.valLoader!)
    const validation = (performance.now() - t0) / 1000
    // The CLI's per-epoch training accuracy: one more forward pass over the training set.
    const c0 = process.cpuUsage()
    const a0 = performance.now()
    yield* Trainer.loaderApply(last.config.trainLoader!, (b) => Trainer.correct(last, b))
    const accuracy = (performance.now() - a0) / 1000
    const accuracyCpu = cpuSeconds(process.cpuUsage(c0))
    const e0 = process.cpuUsage()
    Trainer.dispose(yield* Trainer.train(last, 1, 7))
    const epochCpu = cpuSeconds(process.cpuUsage(e0))
    Trainer.dispose(last)
    return {
      seconds: median(times),
      tensors,
      steps: median(raw),
      validation,
      accuracy,
      accuracyCpu,
      epochCpu
    }
  })

const torchEpoch = (): { label: string; seconds: number } | string => {
  try {
    execFileSync("/usr/bin/python3", ["-c", "import torch"], { stdio: "ignore" })
  } catch {
    return "PyTorch not installed (/usr/bin/python3 -c 'import torch' failed): skipped"
  }
  const script = fileURLToPath(new URL("../../scripts/epoch_torch.py", import.meta.url))
  const out = JSON.parse(
    execFileSync("/usr/bin/python3", [script, quick ? "1" : "3", "2"], { encoding: "utf8" })
  )
  return { label: `PyTorch ${out.torch} (${out.threads} threads)`, seconds: out.sPerEpoch }
}

const accuracyLine = (wasm: { accuracy: number; accuracyCpu: number; epochCpu: number }) =>
  console.log(
    `\nThe CLI's per-epoch training-accuracy pass (forward over 2,520 images): ${wasm.accuracy.toFixed(3)} s, ` +
      `CPU ${wasm.accuracyCpu.toFixed(3)} s against ${wasm.epochCpu.toFixed(3)} s CPU for a training epoch with validation ` +
      `(+${((100 * wasm.accuracyCpu) / wasm.epochCpu).toFixed(0)}%)`
  )

const program = Effect.gen(function* () {
  const wasm = yield* epochs(quick ? 1 : 3).pipe(Effect.provide(Engine.wasm))
  if (process.argv.includes("--accuracy-only")) return accuracyLine(wasm)
  const cpu = yield* epochs(1).pipe(Effect.provide(Engine.cpu))
  const torch = torchEpoch()
  const ref = typeof torch === "string" ? undefined : torch.seconds
  const ratio = (s: number) => (ref === undefined ? "-" : `${(s / ref).toFixed(2)}x`)
  console.log(
    "\nFull epoch on cached data (Trainer.train: 158 steps of 16 + validation on 372), CNN2(5), Adam"
  )
  console.log("| engine | s per epoch | vs PyTorch | tensors after each epoch |")
  console.log("| --- | --- | --- | --- |")
  console.log(
    `| stepwise wasm | ${wasm.seconds.toFixed(2)} | ${ratio(wasm.seconds)} | ${wasm.tensors.join(", ")} |`
  )
  console.log(
    `| stepwise cpu | ${cpu.seconds.toFixed(2)} | ${ratio(cpu.seconds)} | ${cpu.tensors.join(", ")} |`
  )
  if (typeof torch === "string") console.log(torch)
  else console.log(`| ${torch.label} | ${torch.seconds.toFixed(2)} | 1x | - |`)
  console.log(
    "\nWhere a wasm epoch goes: 158 bare trainStep calls on pre-gathered batches, validation, the rest"
  )
  console.log("| bare steps (s) | validation (s) | loop, batching, events (s) |")
  console.log("| --- | --- | --- |")
  const rest = wasm.seconds - wasm.steps - wasm.validation
  console.log(`| ${wasm.steps.toFixed(3)} | ${wasm.validation.toFixed(3)} | ${rest.toFixed(3)} |`)
  accuracyLine(wasm)
})

Effect.runPromise(program).then(
  () => process.exit(0),
  (e) => {
    console.error(e)
    process.exit(1)
  }
)
