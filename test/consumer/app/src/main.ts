/**
 * A user's program in their own project: compiled with strict `nodenext` TypeScript and run by
 * test/consumer/run.mjs against the packed tarballs. It touches every entry point: a
 * user-written optimizer proven with `@stepwise/optim/testing`, a few mini-batches of CNN2
 * training with it on the bundled images (`@stepwise/data`, `@stepwise/core`), and the losses
 * drawn with `@stepwise/cli`'s chart and renderer.
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Charts, Render } from "@stepwise/cli"
import { Cnn2, Engine, Loss, Trainer } from "@stepwise/core"
import { DataLoader, DecodePool, ImageFolder, Random, Rps, Statistics, TensorDataset } from "@stepwise/data"
import { type Numeric, Optimizer, TfNumeric } from "@stepwise/optim"
import { Laws } from "@stepwise/optim/testing"
import { Data, Effect } from "effect"
import * as fc from "fast-check"

/** Its state: a step count and the momentum buffers (absent before the first step). */
type HeavyBallState<T> = { readonly step: number; readonly momentumBuffer?: Numeric.Params<T> }

/** Heavy-ball momentum: `buf = momentum * buf + g`, `p = p - lr * buf`; written once for any Numeric. */
const heavyBall =
  (lr: number, momentum: number) =>
  <T>(N: Numeric.Numeric<T>): Optimizer.Optimizer<T, HeavyBallState<T>> => ({
    name: "HeavyBall",
    defaults: { lr, momentum },
    init: () => ({ step: 0 }),
    update: (state, grads, params, hyper) => {
      const m = hyper.momentum ?? momentum
      const next = Optimizer.perParameter(params, (name, p) => {
        const g = grads[name] as T
        const previous = state.momentumBuffer?.[name]
        const buf = previous === undefined ? g : N.add(N.scale(previous, m), g)
        return { param: N.sub(p, N.scale(buf, hyper.lr)), slots: { momentumBuffer: buf } }
      })
      return {
        state: { step: state.step + 1, momentumBuffer: next.slots.momentumBuffer },
        params: next.params
      }
    }
  })

class Check extends Data.TaggedError("Check")<{ readonly message: string }> {}

/** One fast-check property of the kit; a counterexample becomes a typed failure. */
const holds = (name: string, property: fc.IRawProperty<any>) =>
  Effect.try({
    try: () => fc.assert(property, { numRuns: 50, seed: 7 }),
    catch: (e) => new Check({ message: `law "${name}": ${String(e)}` })
  })

const program = Effect.gen(function* () {
  const def = heavyBall(0.01, 0.9)
  yield* holds("purity", Laws.purity(def))
  yield* holds("zero gradient fixed point", Laws.zeroGradientFixedPoint(def))
  yield* holds("state round trip", Laws.stateRoundTrip(def))
  yield* holds(
    "textbook equation",
    Laws.matchesReference(def, {
      initial: undefined as number | undefined,
      step: (buf, p, g, h) => {
        const next = buf === undefined ? g : (h.momentum ?? 0.9) * buf + g
        return { param: p - h.lr * next, memory: next }
      }
    })
  )
  console.log("laws held: purity, zero gradient fixed point, state round trip, textbook equation")

  const all = yield* Effect.provide(
    ImageFolder.loadImageFolder(Rps.bundled().train, { resize: 28 }),
    DecodePool.layerDefault
  )
  // every 40th image: 63 images, 4 mini-batches of 16
  const raw = TensorDataset.subset(
    all,
    Array.from({ length: Math.ceil(all.length / 40) }, (_, i) => i * 40)
  )
  const normalizer = yield* Statistics.makeNormalizer(
    yield* DataLoader.fromTensorDataset(raw, { batchSize: 16 })
  )
  const train = yield* ImageFolder.normalizeDataset(raw, normalizer)
  const trainLoader = yield* DataLoader.fromTensorDataset(train, { batchSize: 16, shuffle: true, seed: 1 })
  const untrained = yield* Trainer.make(
    {
      model: (yield* Cnn2.make({ nFilters: 5, p: 0.3 })).model,
      loss: Loss.crossEntropy,
      optimizer: def(TfNumeric.TfNumeric),
      trainLoader
    },
    yield* Random.make(1)
  )
  const trained = yield* Trainer.train(untrained, 2, 42)
  const losses = trained.losses
  Trainer.dispose(untrained)
  Trainer.dispose(trained)
  if (losses.length !== 2 || !losses.every(Number.isFinite))
    return yield* new Check({ message: `expected 2 finite epoch losses, got ${losses.join(", ")}` })
  console.log(
    `trained CNN2 with HeavyBall on ${raw.length} images (${trainLoader.numBatches} mini-batches an epoch): losses ${losses.map((l) => l.toFixed(4)).join(", ")}`
  )

  const svg = yield* Effect.promise(() => Render.toSvg(Charts.losses([{ losses, valLosses: [] }])))
  if (!svg.startsWith("<svg")) return yield* new Check({ message: "the loss chart is not an SVG" })
  console.log(`drew the losses: ${svg.length} characters of SVG`)
})

// The tensor engine (tfjs on WebAssembly) and Node's file system, as layers.
program.pipe(Effect.provide(Engine.wasm), Effect.provide(NodeContext.layer), NodeRuntime.runMain)
