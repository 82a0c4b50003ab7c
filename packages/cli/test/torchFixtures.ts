/**
 * Core's PyTorch 1.13 weight fixtures (packages/core/scripts/torch_weights_fixture.py) for the
 * CLI's tests: the files, their weights in this engine's layout, and checkpoints holding them.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Checkpoint, ModelSpec, Safetensors, TorchWeights } from "@stepwise/core"
import { OptimizerState } from "@stepwise/optim"
import { Either } from "effect"

export const fixtures = fileURLToPath(new URL("../../core/test/fixtures", import.meta.url))
export const readFile = (path: string) =>
  Either.getOrThrow(Safetensors.decode(new Uint8Array(readFileSync(path)), path))
export const fixture = (name: string) => readFile(join(fixtures, `${name}.safetensors`))

/**
 * A self-describing checkpoint (`meta.run`, as `stepwise train` writes them once checkpoints
 * carry their run) holding the weights of a PyTorch fixture in this engine's layout.
 */
export const snapshotOf = (name: "cnn2" | "bn", run: boolean): Checkpoint.Snapshot => {
  const io = fixture(`torch-${name}-io`)
  const spec = JSON.parse(io.metadata["stepwise.model"])
  const built = Either.getOrThrow(ModelSpec.make(spec, [3, 28, 28]))
  const torch = fixture(`torch-${name}`).tensors
  // PyTorch's layout -> ours with the inverse index maps: export of this must give `torch` back.
  const host = Either.getOrThrow(hostWeights(built.module, torch))
  const meta: Checkpoint.Meta = {
    format: Checkpoint.FORMAT,
    totalEpochs: 0,
    losses: [],
    valLosses: [],
    learningRates: [],
    seed: 13,
    optimizer: { name: "Adam", step: 0 },
    scheduler: null,
    run: run
      ? {
          model: spec,
          inputShape: [3, 28, 28],
          classes: ["paper", "rock", "scissors"],
          normalizer: { mean: [0.85, 0.82, 0.81], std: [0.21, 0.25, 0.27] },
          recipe: {}
        }
      : null
  }
  return { meta, ...host, optimizer: OptimizerState.make(0, {}), fileFormat: Checkpoint.FORMAT }
}

/** Our layout from PyTorch's, on the host: the permutation that `stateDictOfHost` undoes. */
export const hostWeights = (
  model: ModelSpec.Built["module"],
  torch: { readonly [name: string]: Safetensors.HostTensor }
): Either.Either<TorchWeights.HostWeights, TorchWeights.WeightMismatch> => {
  // Probe the permutation with indices: export 0, 1, 2, ... and read where each one lands.
  const probe = {
    params: Object.fromEntries(
      model.specs.map((s) => [
        s.name,
        Safetensors.tensor(
          Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, (_, i) => i),
          s.shape
        )
      ])
    ),
    buffers: Object.fromEntries(
      model.buffers.map((b) => [
        b.name,
        Safetensors.tensor(new Float32Array(b.shape.reduce((a, c) => a * c, 1)), b.shape)
      ])
    )
  }
  return Either.map(TorchWeights.stateDictOfHost(model, probe), (exported) => ({
    params: Object.fromEntries(
      model.specs.map((s) => {
        const where = exported[s.name].data as Float32Array
        const ours = new Float32Array(where.length)
        const values = torch[s.name].data as Float32Array
        for (let j = 0; j < where.length; j++) ours[where[j]] = values[j]
        return [s.name, Safetensors.tensor(ours, s.shape)]
      })
    ),
    buffers: Object.fromEntries(
      model.buffers.map((b) => {
        const t = torch[b.name]
        const values =
          t.dtype === "I64" ? Float32Array.from(t.data as BigInt64Array, Number) : (t.data as Float32Array)
        return [b.name, Safetensors.tensor(values.slice(), b.shape)]
      })
    )
  }))
}
