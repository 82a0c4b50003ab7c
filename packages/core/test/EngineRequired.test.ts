/**
 * The engine is a layer, and every entry point that makes tensors from plain data requires it in
 * its type: a program that forgets `Engine.layer` does not compile (this file is type-checked by
 * `tsc -b`; each `@ts-expect-error` fails the build if the line it marks compiles). What takes
 * those tensors (`Module.apply`, `Loss.lossAndGrads`, `Trainer.trainStep`) is plain code.
 */
import type { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Random } from "@stepwise/data"
import { Effect, Either } from "effect"
import { expectTypeOf } from "vitest"
import * as Engine from "../src/Engine.js"
import * as Loss from "../src/Loss.js"
import * as Module from "../src/Module.js"
import * as Predict from "../src/Predict.js"
import * as TorchWeights from "../src/TorchWeights.js"

const model = () =>
  Module.Sequential([["fc", Either.getOrThrow(Module.Linear({ inFeatures: 4, outFeatures: 3 }))]])

describe("the Engine in the types", () => {
  it("Module.init, initBuffers, Loss.inputTensor, TorchWeights and Predict.files require Engine", () => {
    const init = Module.init(model(), Random.unsafeMake(1))
    expectTypeOf(init).toEqualTypeOf<Effect.Effect<Module.Params, never, Engine.Engine>>()
    expectTypeOf<
      Effect.Effect.Context<ReturnType<typeof Module.initBuffers>>
    >().toEqualTypeOf<Engine.Engine>()
    expectTypeOf<Effect.Effect.Context<ReturnType<typeof Loss.inputTensor>>>().toEqualTypeOf<Engine.Engine>()
    expectTypeOf<
      Effect.Effect.Context<ReturnType<typeof TorchWeights.fromTorch>>
    >().toEqualTypeOf<Engine.Engine>()
    expectTypeOf<
      Effect.Effect.Context<ReturnType<typeof TorchWeights.fromStateDict>>
    >().toEqualTypeOf<Engine.Engine>()
    expectTypeOf<
      Exclude<Effect.Effect.Context<ReturnType<typeof Predict.files>>, FileSystem.FileSystem>
    >().toEqualTypeOf<Engine.Engine>()

    // Never run: these only have to fail to compile.
    const withoutEngine = () => {
      // @ts-expect-error Module.init without the Engine layer: 'Engine' is not assignable to 'never'
      Effect.runPromise(init)
      // @ts-expect-error Predict.files with a file system but no Engine layer
      Effect.runPromise(Predict.files("model.safetensors", ["a.png"]).pipe(Effect.provide(NodeContext.layer)))
      // @ts-expect-error TorchWeights.read with a file system but no Engine layer
      Effect.runPromise(TorchWeights.read("w.safetensors", model()).pipe(Effect.provide(NodeContext.layer)))
    }
    expect(typeof withoutEngine).toBe("function")
  })

  it.effect("with the layer they run, and each run makes its own tensors", () =>
    Effect.gen(function* () {
      const init = Module.init(model(), Random.unsafeMake(1))
      const a = yield* init
      const b = yield* init
      expect(a["fc.weight"]).not.toBe(b["fc.weight"])
      expect(Array.from(a["fc.weight"].dataSync())).toEqual(Array.from(b["fc.weight"].dataSync()))
      const x = yield* Loss.inputTensor(Float32Array.from([1, 2, 3, 4]), [1, 4])
      const y = Module.apply(model(), a, x, { training: false })
      expect(y.shape).toEqual([1, 3])
      for (const t of [...Object.values(a), ...Object.values(b), x, y]) t.dispose()
    }).pipe(Effect.provide(Engine.cpu))
  )
})
