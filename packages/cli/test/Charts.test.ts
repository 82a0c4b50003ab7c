import { mkdirSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Either } from "effect"
import sharp from "sharp"
import { describe, expect, it } from "vitest"
import * as Charts from "../src/Charts.js"
import * as Demos from "../src/Demos.js"
import * as Plot from "../src/Plot.js"
import * as Render from "../src/Render.js"

const outDir = join(tmpdir(), "stepwise-cli-charts")
mkdirSync(outDir, { recursive: true })

/** Renders, keeps the PNG for eyeballing, and checks it decodes to a non-blank picture. */
const check = async (name: string, spec: Render.Spec, minWidth = 300) => {
  const svg = await Render.toSvg(spec)
  expect(svg.startsWith("<svg")).toBe(true)
  const png = await Render.svgToPng(svg)
  writeFileSync(join(outDir, `${name}.png`), png)
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true })
  expect(info.width).toBeGreaterThanOrEqual(minWidth)
  expect(info.height).toBeGreaterThan(150)
  // Non-blank: a real share of the pixels is not white.
  let ink = 0
  for (let i = 0; i < data.length; i += info.channels)
    if (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200) ink++
  expect(ink / (info.width * info.height)).toBeGreaterThan(0.005)
  return svg
}

describe("chapter pictures", () => {
  it("losses: log scale, both series, labelled axes", async () => {
    const svg = await check(
      "losses",
      Charts.losses([{ losses: [1.0, 0.6, 0.4, 0.3], valLosses: [0.9, 0.7, 0.6, 0.55] }])
    )
    expect(svg).toContain("Training Loss")
    expect(svg).toContain("Validation Loss")
    expect(svg).toContain("Loss (log scale)")
  })

  it("log loss axes end on labelled ticks: 1 and 0.1 and the lowest values are labelled, none crowded", () => {
    const gaps = (ticks: ReadonlyArray<number>, pixels: number, domain: ReadonlyArray<number>) =>
      ticks.slice(1).map((t, i) => (Math.log10(t / ticks[i]) * pixels) / Math.log10(domain[1] / domain[0]))
    // the compared runs of the README: losses from 1.06 down to 0.0905
    const a = Charts.logAxis([1.06, 0.7, 0.3, 0.0905], 260)
    expect(a.scale.domain[0]).toBe(0.05)
    expect(a.scale.domain[1]).toBeCloseTo(1.06 * 1.08, 12)
    expect(a.axis.values).toEqual(expect.arrayContaining([0.05, 0.1, 0.2, 0.5, 1]))
    for (const g of gaps(a.axis.values, 260, a.scale.domain)) expect(g).toBeGreaterThanOrEqual(18)
    // one run: 1.07 .. 0.149
    const b = Charts.logAxis([1.07, 0.149], 260)
    expect(b.scale.domain[0]).toBe(0.1)
    expect(b.axis.values.slice(0, 3)).toEqual([0.1, 0.2, 0.3])
    expect(b.axis.values).toContain(1)
    // many decades: powers of ten first
    const c = Charts.logAxis([3e-4, 2.5], 260)
    expect(c.scale.domain[0]).toBe(2e-4)
    expect(c.axis.values).toEqual(expect.arrayContaining([2e-4, 1e-3, 0.01, 0.1, 1]))
    for (const g of gaps(c.axis.values, 260, c.scale.domain)) expect(g).toBeGreaterThanOrEqual(18)
    for (const axis of [a, b, c])
      expect(Math.max(...axis.axis.values)).toBeLessThanOrEqual(axis.scale.domain[1])
  })

  it("Figure 6.19 is two panels, SGD and Adam, each with its training and validation losses", async () => {
    const runs = Either.getOrThrow(Demos.optimizerRuns()).slice(0, 2)
    const spec = Charts.lossPanels(
      runs.map((r) => ({ label: r.label, losses: r.losses, valLosses: r.valLosses })),
      "Losses (SGD and Adam)"
    ) as any
    expect(spec.hconcat.map((p: any) => p.title)).toEqual(["SGD", "Adam"])
    expect(spec.hconcat[0].data.values).toHaveLength(20)
    const svg = await check("losses-panels", spec)
    expect(svg).toContain("Validation Loss")
  })

  it("learning-rate schedules of the three CyclicLR modes (Figure 6.26)", async () => {
    const schedules = Either.getOrThrow(Demos.cyclicSchedules())
    // triangular: 1e-4, 5.5e-4, 1e-3, 5.5e-4, 1e-4 ... ; triangular2 halves the amplitude each cycle
    expect(schedules[0].lrs.slice(0, 5).map((x) => Number(x.toPrecision(6)))).toEqual([
      1e-4, 5.5e-4, 1e-3, 5.5e-4, 1e-4
    ])
    expect(Number(schedules[1].lrs[6].toPrecision(6))).toBe(5.5e-4)
    await check("lr", Charts.learningRates(schedules, "batch"))
  })

  it("filters: one heatmap per (filter, channel)", async () => {
    const w = Float32Array.from({ length: 5 * 3 * 9 }, (_, i) => Math.sin(i))
    const svg = await check("filters", Charts.filters("conv1", w, [5, 3, 3, 3]), 150)
    expect(svg).toContain("Filter #4")
    expect(svg).toContain("Channel #2")
  })

  it("filters of a wide layer (128 x 128) draw the first 16 x 16 and render to a PNG", async () => {
    const w = Float32Array.from({ length: 128 * 128 * 9 }, (_, i) => Math.sin(i))
    const spec = Charts.filters("conv2", w, [128, 128, 3, 3])
    expect((spec.data as { values: ReadonlyArray<unknown> }).values.length).toBe(16 * 16 * 9)
    const svg = await check("filters-wide", spec, 150)
    expect(svg).toContain("the first 16 x 16 shown")
    expect(svg).not.toContain("Filter #16")
  })

  it("MA vs EWMA vs corrected EWMA over the chapter's temperatures (Figure 6.16)", async () => {
    const m = Demos.movingAverages(19)
    // EWMA's first value is alpha * x0 = 0.1 * 5; the corrected one is x0 itself; the MA starts at x0.
    expect(m.series[1].values[0]).toBeCloseTo(0.5, 12)
    expect(m.series[2].values[0]).toBeCloseTo(5, 12)
    expect(m.series[0].values[1]).toBe(8)
    await check("ewma", Charts.movingAverages(m.values, m.series, "Moving average vs EWMA"))
  })

  it("adapted gradients of Adam on the linear regression (Figure 6.17)", async () => {
    const grads = Either.getOrThrow(Demos.adamWeightGradients())
    expect(grads.length).toBe(50) // 10 epochs x 5 mini-batches
    const a = Demos.adaptedGradients(grads, "linear.weight")
    // First step: corrected EWMA = g, corrected EWMA of g^2 = g^2, so the adapted gradient is sign(g).
    expect(a.adapted[0]).toBeCloseTo(Math.sign(grads[0]), 6)
    for (const v of a.adapted) expect(Math.abs(v)).toBeLessThan(3.5)
    await check("adapted-gradients", Charts.adaptedGradients(a))
  })

  it("dropout output distributions: mean near 6.6, spread growing with p (Figure 6.8)", async () => {
    const d = Demos.dropoutDistributions()
    const stats = d.map(({ outputs }) => {
      const mean = outputs.reduce((a, b) => a + b, 0) / outputs.length
      const sd = Math.sqrt(outputs.reduce((a, b) => a + (b - mean) ** 2, 0) / outputs.length)
      return { mean, sd }
    })
    for (const s of stats) expect(Math.abs(s.mean - 6.6)).toBeLessThan(0.35)
    for (let i = 1; i < stats.length; i++) expect(stats[i].sd).toBeGreaterThan(stats[i - 1].sd)
    const spec = Charts.dropoutDistributions(d) as any
    // every panel counts all 1,000 scenarios (p = 0.9 once lost 132 outside a fixed 0..16 range)
    for (const panel of spec.hconcat) {
      expect(panel.data.values.reduce((a: number, b: any) => a + b.count, 0)).toBe(1000)
      expect(panel.title.text).toContain("1,000 scenarios")
    }
    expect(Charts.histogram([0, 0.4, 0.5, 1, 1.2], 0.5).map((b) => b.count)).toEqual([2, 1, 2])
    await check("dropout", spec)
  })

  it("optimizer paths reach the optimum; update terms equal the chapter's formulas (Figures 6.18-6.22, 6.28)", async () => {
    const runs = Either.getOrThrow(Demos.optimizerRuns())
    const opt = Demos.optimum()
    expect(opt.b).toBeGreaterThan(0.9)
    expect(opt.b).toBeLessThan(1.1)
    expect(opt.w).toBeGreaterThan(1.8)
    expect(opt.w).toBeLessThan(2.2)
    const sgd = runs[0]
    // Plain SGD: the update term is the gradient itself.
    sgd.updateW.forEach((u, i) => {
      expect(u).toBeCloseTo(sgd.gradW[i], 10)
    })
    // Momentum: mo_t = g_t + 0.9 mo_{t-1}.
    const mom = runs[2]
    let mo = 0
    mom.gradW.forEach((g, i) => {
      mo = i === 0 ? g : g + 0.9 * mo
      expect(mom.updateW[i]).toBeCloseTo(mo, 10)
    })
    // Nesterov: g_t + 0.9 mo_t.
    const nes = runs[3]
    mo = 0
    nes.gradW.forEach((g, i) => {
      mo = i === 0 ? g : g + 0.9 * mo
      expect(nes.updateW[i]).toBeCloseTo(g + 0.9 * mo, 10)
    })
    // Every optimizer ends closer to the optimum than it started.
    const dist = (b: number, w: number) => Math.hypot(b - opt.b, w - opt.w)
    for (const r of runs) expect(dist(r.b.at(-1)!, r.w.at(-1)!)).toBeLessThan(dist(r.b[0], r.w[0]))
    await check("paths", Charts.optimizerPaths(Demos.lossSurface(runs), runs, opt))
    await check(
      "update-terms",
      Charts.updateTerms(
        runs
          .slice(0, 4)
          .filter((_, i) => i !== 1)
          .map((r) => ({ label: r.label, gradients: r.gradW, updates: r.updateW }))
      )
    )
  })

  it("the LR range test on the linear regression spans 1e-3..1 and is smoothed (Figure 6.27)", async () => {
    const { tracking: t } = Demos.linearRegressionRangeTest()
    expect(t.lr[0]).toBe(1e-3)
    expect(t.lr[20]).toBeCloseTo(1e-3 * 1000 ** (20 / 100), 12)
    await check("lr-finder", Charts.lrFinder(t.lr, t.loss, [{ label: "steepest", lr: 0.03 }]))
  })

  it("the LR finder draws the range that matters and names its markers in a legend", async () => {
    // the README's CNN2 run: 1.12 falling to 0.88, rising, and 257.7 at the very last step
    const lr = Array.from({ length: 12 }, (_, i) => 1e-3 * 2 ** i)
    const loss = [1.12, 1.1, 1.05, 1.0, 0.95, 0.9, 0.88, 0.89, 1.0, 1.38, 1.97, 257.7]
    const marks = [
      { label: "steepest", lr: lr[4] },
      { label: "valley", lr: lr[4] * 1.01 },
      { label: "minimum/10", lr: lr[6] / 10 }
    ]
    const spec = Charts.lrFinder(lr, loss, marks) as any
    const curve = spec.layer[0].data.values
    expect(curve).toHaveLength(11) // the diverged point is not drawn
    expect(spec.title.subtitle).toContain("1 point")
    // y from the lowest loss to the highest before it, padded; the 1.97 after the minimum is clipped
    const [lo, hi] = spec.layer[0].encoding.y.scale.domain
    expect(lo).toBeCloseTo(0.88 - 0.08 * 0.24, 10)
    expect(hi).toBeCloseTo(1.12 + 0.08 * 0.24, 10)
    // labels live in the legend (never overprinting), each with its lr
    expect(spec.layer[2].data.values.map((m: any) => m.label)).toEqual([
      "steepest: 1.60e-2",
      "valley: 1.62e-2",
      "minimum/10: 6.40e-3"
    ])
    expect(spec.layer.some((l: any) => l.mark.type === "text")).toBe(false)
    const svg = await check("lr-finder-cnn2", spec)
    expect(svg).toContain("minimum/10: 6.40e-3")
    // nothing dropped: no subtitle
    expect((Charts.lrFinder(lr.slice(0, 8), loss.slice(0, 8), []) as any).title.subtitle).toBeUndefined()
  })

  it("confusion matrix", async () => {
    const svg = await check(
      "confusion",
      Charts.confusionMatrix(
        ["paper", "rock", "scissors"],
        [
          [110, 10, 4],
          [5, 115, 4],
          [2, 3, 119]
        ]
      ),
      150
    )
    expect(svg).toContain("scissors")
  })

  it("compared runs are named by the recipe fields that differ, else by their folders", () => {
    const recipe = { model: { filters: 5, dropout: 0.3 }, optimizer: { name: "adam", lr: 3e-4 }, epochs: 10 }
    const nodrop = { ...recipe, model: { filters: 5, dropout: 0 }, epochs: 3 }
    expect(Plot.differenceLabels({ name: "a", recipe }, { name: "b", recipe: nodrop })).toEqual([
      "dropout p = 0.3",
      "dropout p = 0"
    ])
    const sgd = { ...recipe, optimizer: { name: "sgd", lr: 0.03, momentum: 0.9 } }
    expect(Plot.differenceLabels({ name: "a", recipe }, { name: "b", recipe: sgd })).toEqual([
      "optimizer = adam, lr = 0.0003, optimizer.momentum = -",
      "optimizer = sgd, lr = 0.03, optimizer.momentum = 0.9"
    ])
    expect(Plot.differenceLabels({ name: "a", recipe }, { name: "b", recipe })).toEqual(["a", "b"])
  })

  it("confusion-matrix numbers are white on dark cells and black on light ones", () => {
    const spec = Charts.confusionMatrix(
      ["a", "b"],
      [
        [120, 3],
        [40, 0]
      ]
    ) as any
    const color = Object.fromEntries(spec.data.values.map((v: any) => [v.count, v.textColor]))
    expect(color).toEqual({ 120: "white", 3: "black", 40: "black", 0: "black" })
    expect(Charts.textColorOn("#08306b")).toBe("white")
    expect(Charts.textColorOn("#f7fbff")).toBe("black")
    expect(Charts.luminance("rgb(255, 255, 255)")).toBeCloseTo(1, 6)
  })

  it("contour segments cross the level between the corner values", () => {
    // loss = b at the cell centres: the level 1.5 is the vertical line b = 1.5 + half a cell
    const surface = { bs: [0, 1, 2], ws: [0, 1, 2], losses: [0, 1, 2].map(() => [0, 1, 2]) }
    const segs = Charts.contourSegments(surface, [1.5])
    expect(segs).toHaveLength(2)
    for (const s of segs) {
      expect(s.b).toBeCloseTo(2, 12)
      expect(s.b2).toBeCloseTo(2, 12)
    }
  })
})
