/**
 * The optimizer a recipe names is the one a user property-tests: `examples/lion.mjs`'s export,
 * loaded as `stepwise train` loads it, checked with @stepwise/optim/testing's laws and against
 * Lion's equation written per element.
 */
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { Laws } from "@stepwise/optim/testing"
import { Effect, Schema } from "effect"
import * as fc from "fast-check"
import * as CustomOptimizer from "../src/CustomOptimizer.js"

const lionFile = fileURLToPath(new URL("../../../examples/lion.mjs", import.meta.url))

describe("examples/lion.mjs", () => {
  it.effect(
    "is a { name, schema, make } definition whose optimizer obeys the kit's laws and Lion's equation",
    () =>
      Effect.gen(function* () {
        const lion = yield* CustomOptimizer.load(lionFile, "lion")
        expect(lion.name).toBe("Lion")
        const config = Schema.decodeUnknownSync(lion.schema)({ weightDecay: 0.01 })
        expect(config).toEqual({ lr: 1e-4, betas: [0.9, 0.99], weightDecay: 0.01, clip: 0 })
        // weight decay moves the weights even at zero gradients: no fixed-point law then
        Laws.checkOptimizer(lion.make(config), { decays: true, numRuns: 100 })
        Laws.checkOptimizer(lion.make({ ...config, weightDecay: 0 }), { numRuns: 100 })
        const [beta1, beta2] = config.betas
        fc.assert(
          Laws.matchesReference(lion.make(config), {
            initial: 0,
            step: (m, p, g, h) => {
              const c = (h.beta1 ?? beta1) * m + (1 - (h.beta1 ?? beta1)) * g
              return {
                param: p * (1 - h.lr * config.weightDecay) - h.lr * Math.sign(c),
                memory: beta2 * m + (1 - beta2) * g
              }
            }
          }),
          { numRuns: 200 }
        )
      })
  )
})
