/**
 * The programs in examples/ (type-checked by `tsc -b examples`), run here on a few mini-batches:
 * every 40th image of the bundled sets (63 training images = 4 mini-batches, 10 validation).
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import sharp from "sharp"
import { describe, expect, it } from "vitest"

const example = (name: string) => fileURLToPath(new URL(`../../../examples/${name}`, import.meta.url))
const run = <A>(effect: Effect.Effect<A, unknown, any>) =>
  Effect.runPromise(Effect.provide(effect, NodeContext.layer) as Effect.Effect<A>)

describe("examples/", () => {
  it("train-cnn2-with-scheduler.ts trains with SGD + CyclicLR from code", async () => {
    const ex = await import(/* @vite-ignore */ example("train-cnn2-with-scheduler.ts"))
    const r: any = await run(ex.main({ every: 40, epochs: 2 }))
    expect(r.losses).toHaveLength(2)
    expect(r.valLosses).toHaveLength(2)
    for (const l of [...r.losses, ...r.valLosses]) expect(Number.isFinite(l)).toBe(true)
    // CyclicLR with step size up = 4 mini-batches: at the top after epoch 1, back at the base after 2
    expect(r.learningRates[0]).toBeCloseTo(1e-2, 12)
    expect(r.learningRates[1]).toBeCloseTo(1e-3, 12)
    expect(r.valCorrect.reduce((a: number, row: number[]) => a + row[1], 0)).toBe(10)
  })

  it("lr-range-test-then-train.ts finds a rate and trains with it", async () => {
    const ex = await import(/* @vite-ignore */ example("lr-range-test-then-train.ts"))
    const r: any = await run(ex.main({ every: 40, epochs: 1, numIter: 12 }))
    expect(r.tracking.lr[0]).toBeCloseTo(1e-3, 15)
    expect(r.tracking.lr.length).toBeGreaterThan(3)
    expect(r.suggested).toBeGreaterThan(1e-3)
    expect(r.suggested).toBeLessThan(0.2)
    expect(r.losses).toHaveLength(1)
  })

  it("adapted-gradients.ts captures conv1's gradients and draws Figure 6.17", async () => {
    const ex = await import(/* @vite-ignore */ example("adapted-gradients.ts"))
    const out = join(mkdtempSync(join(tmpdir(), "stepwise-ex-")), "adapted.png")
    const r: any = await run(ex.main({ every: 40, epochs: 2, out }))
    expect(r.steps).toBe(8) // 2 epochs x 4 mini-batches
    // the first adapted gradient is sign(g): both bias-corrected EWMAs equal g and g^2 at step 1
    expect(r.adapted[0]).toBeCloseTo(Math.sign(r.gradients[0]), 5)
    expect(existsSync(out)).toBe(true)
    const info = await sharp(readFileSync(out)).metadata()
    expect(info.width).toBeGreaterThan(600)
  })
})
