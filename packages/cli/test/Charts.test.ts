import { mkdirSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import sharp from "sharp"
import { describe, expect, it } from "vitest"
import * as Charts from "../src/Charts.js"
import * as Demos from "../src/Demos.js"
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

  it("learning-rate schedules of the three CyclicLR modes (Figure 6.26)", async () => {
    const schedules = Demos.cyclicSchedules()
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

  it("MA vs EWMA vs corrected EWMA over the chapter's temperatures (Figure 6.16)", async () => {
    const m = Demos.movingAverages(19)
    // EWMA's first value is alpha * x0 = 0.1 * 5; the corrected one is x0 itself; the MA starts at x0.
    expect(m.series[1].values[0]).toBeCloseTo(0.5, 12)
    expect(m.series[2].values[0]).toBeCloseTo(5, 12)
    expect(m.series[0].values[1]).toBe(8)
    await check("ewma", Charts.movingAverages(m.values, m.series, "Moving average vs EWMA"))
  })

  it("adapted gradients of Adam on the linear regression (Figure 6.17)", async () => {
    const grads = Demos.adamWeightGradients()
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
    await check("dropout", Charts.dropoutDistributions(d))
  })

  it("optimizer paths reach the optimum; update terms equal the chapter's formulas (Figures 6.18-6.22, 6.28)", async () => {
    const runs = Demos.optimizerRuns()
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
    const t = Demos.linearRegressionRangeTest()
    expect(t.lr.length).toBe(100)
    expect(t.lr[0]).toBe(1e-3)
    expect(t.lr[99]).toBeCloseTo(1e-3 * 1000 ** (99 / 100), 12)
    await check("lr-finder", Charts.lrFinder(t.lr, t.loss, [{ label: "steepest", lr: 0.03 }]))
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
})
