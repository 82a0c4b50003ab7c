import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"

// examples/ is its own TypeScript project (type-checked by `tsc -b examples`); here it is run.
const path = fileURLToPath(new URL("../../../examples/custom-optimizer.ts", import.meta.url))

describe("examples/custom-optimizer.ts", () => {
  it("property-tests its clipped SGD with the kit, and every law holds", async () => {
    const example = await import(/* @vite-ignore */ path)
    const passed: ReadonlyArray<string> = await Effect.runPromise(example.main)
    expect(passed).toEqual([
      "purity",
      "zero gradient fixed point",
      "state round trip",
      "textbook equation",
      "equals SGD on small gradients",
      "built-in SGD purity"
    ])
  })

  it("a broken variant is caught: clipping that forgets the lower bound fails the textbook law", async () => {
    const example = await import(/* @vite-ignore */ path)
    const { Laws } = await import("@stepwise/optim/testing")
    const fc = await import("fast-check")
    const def = example.clippedSgd({ lr: 0.05, momentum: 0, clip: 1 })
    const details = fc.check(
      Laws.matchesReference(def, {
        initial: undefined,
        // wrong on purpose: clips only from above
        step: (_: unknown, p: number, g: number, h: { lr: number }) => ({
          param: p - h.lr * Math.min(g, 1),
          memory: undefined
        })
      }),
      { numRuns: 200, seed: 7 }
    )
    expect(details.failed).toBe(true)
  })
})
