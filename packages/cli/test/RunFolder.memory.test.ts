import { readFileSync } from "node:fs"
import { FileSystem } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Recipe from "../src/Recipe.js"
import * as Run from "../src/RunFolder.js"

const example = (name: string) =>
  JSON.parse(readFileSync(new URL(`../../../examples/${name}`, import.meta.url), "utf8")) as unknown

const row = (epoch: number): Run.EpochMetrics => ({
  epoch,
  loss: 1 / epoch,
  valLoss: epoch / 10,
  lr: 0.001,
  batchLrs: [0.001],
  trainCorrect: [[3, 4]],
  valCorrect: null,
  seconds: 0.25
})

/** Every file under `dir` with its text, sorted by path: what a run left, exactly. */
const tree = (dir: string): Effect.Effect<Record<string, string>, unknown, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const out: Record<string, string> = {}
    for (const name of yield* fs.readDirectory(dir)) {
      const path = `${dir}/${name}`
      if ((yield* fs.stat(path)).type === "Directory") Object.assign(out, yield* tree(path))
      else out[path] = yield* fs.readFileString(path)
    }
    return out
  })

describe("run folders on the in-memory file system (RunFolder.layerMemory)", () => {
  it.scoped("lock, config, metrics, checkpoints, reconcile: exact files, nothing on disk", () =>
    Effect.gen(function* () {
      const dir = "/runs/a"
      const recipe = yield* Recipe.decode(example("chapter6-adam.json"), "chapter6-adam.json")
      const config: Run.RunConfig = {
        recipe,
        classes: ["paper", "rock", "scissors"],
        normalizer: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] },
        trainRoot: "/data/train",
        valRoot: null,
        batchesPerEpoch: 2,
        parameters: 6823
      }
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* Run.lock(dir)
          // The lock holds this process's pid while the scope is open.
          expect(yield* tree(dir)).toEqual({ [`${dir}/.lock`]: `{"pid":${process.pid}}` })
          yield* Run.writeConfig(dir, config)
          for (const e of [1, 2, 3]) yield* Run.appendMetrics(dir, row(e))
          for (const e of [0, 1, 2, 3, 4]) {
            const path = yield* Run.checkpointPath(dir, e)
            yield* Run.writeFileAtomic(path, `weights after epoch ${e}`)
          }
        })
      )
      // The lock went with the scope; a crash is simulated by a torn fourth row.
      yield* Run.appendFile(`${dir}/${Run.METRICS_FILE}`, '{"epoch":4,"lo')
      const rows = [
        '{"epoch":1,"loss":1,"valLoss":0.1,"lr":0.001,"batchLrs":[0.001],"trainCorrect":[[3,4]],"valCorrect":null,"seconds":0.25}',
        '{"epoch":2,"loss":0.5,"valLoss":0.2,"lr":0.001,"batchLrs":[0.001],"trainCorrect":[[3,4]],"valCorrect":null,"seconds":0.25}',
        '{"epoch":3,"loss":0.3333333333333333,"valLoss":0.3,"lr":0.001,"batchLrs":[0.001],"trainCorrect":[[3,4]],"valCorrect":null,"seconds":0.25}'
      ]
      const configText = `${JSON.stringify(Schema.encodeSync(Run.RunConfig)(config), null, 2)}\n`
      expect(configText).toContain('"classes": [\n    "paper",\n    "rock",\n    "scissors"\n  ]')
      expect(yield* tree(dir)).toEqual({
        [`${dir}/config.json`]: configText,
        [`${dir}/metrics.jsonl`]: `${rows.join("\n")}\n{"epoch":4,"lo`,
        [`${dir}/checkpoints/epoch-0000.safetensors`]: "weights after epoch 0",
        [`${dir}/checkpoints/epoch-0001.safetensors`]: "weights after epoch 1",
        [`${dir}/checkpoints/epoch-0002.safetensors`]: "weights after epoch 2",
        [`${dir}/checkpoints/epoch-0003.safetensors`]: "weights after epoch 3",
        [`${dir}/checkpoints/epoch-0004.safetensors`]: "weights after epoch 4"
      })
      expect(yield* Run.readConfig(dir)).toEqual(config)
      expect(yield* Run.readMetrics(dir)).toEqual([row(1), row(2), row(3)])
      // Resume point: the latest checkpoint with a metrics row (3); epoch 4's checkpoint and the
      // torn row go.
      const usable = yield* Run.reconcile(dir)
      expect(usable).toEqual({ epoch: 3, path: `${dir}/checkpoints/epoch-0003.safetensors` })
      const after = yield* tree(dir)
      expect(after[`${dir}/metrics.jsonl`]).toBe(`${rows.join("\n")}\n`)
      expect(Object.keys(after).sort()).toEqual([
        `${dir}/checkpoints/epoch-0000.safetensors`,
        `${dir}/checkpoints/epoch-0001.safetensors`,
        `${dir}/checkpoints/epoch-0002.safetensors`,
        `${dir}/checkpoints/epoch-0003.safetensors`,
        `${dir}/config.json`,
        `${dir}/metrics.jsonl`
      ])
      // Nothing of this reached the disk.
      expect(yield* Effect.promise(() => import("node:fs").then((fs) => fs.existsSync(dir)))).toBe(false)
    }).pipe(Effect.provide(Run.layerMemory))
  )

  it.scoped("a second writer is refused while the first holds the lock; each build starts empty", () =>
    Effect.gen(function* () {
      yield* Run.lock("/runs/b")
      const second = yield* Effect.flip(Effect.scoped(Run.lock("/runs/b")))
      expect(second.message).toBe(
        `/runs/b: is being written by another stepwise process (pid ${process.pid}); wait for it or choose another --out`
      )
      const elsewhere = yield* Effect.provide(
        Effect.flatMap(FileSystem.FileSystem, (fs) => fs.exists("/runs/b")),
        Run.layerMemory
      )
      expect(elsewhere).toBe(false)
    }).pipe(Effect.provide(Run.layerMemory))
  )
})
