/**
 * The pictures of a training run (`train` draws them into its run folder): losses, learning
 * rates, filters. Part of `Charts`, apart so that drawing them loads neither the engine nor vega
 * before the renderer needs it (`Renderer`'s worker loads only this and `Render`).
 */
import type { Spec } from "./Render.js"

export const W = 420
export const H = 260

export const finite = (v: number) => Number.isFinite(v)

/** `m * 10^k` without the float noise of the product (0.30000000000000004). */
export const decade = (m: number, k: number) => Number((m * 10 ** k).toPrecision(6))

/**
 * A log axis whose lowest values sit above a label: the domain runs from the largest 1, 2 or
 * 5 x 10^k at or below the smallest value (a labelled tick) to a little above the largest. Ticks are then added by priority (the ends, powers of ten, 2 and 5,
 * 3, the rest), each only when it stays `minGap` pixels from those kept, because vega's own log
 * ticks silently drop labels it finds crowded (it dropped 1 and 0.1).
 */
export const logAxis = (values: ReadonlyArray<number>, pixels = H, minGap = 18) => {
  const xs = values.filter((v) => finite(v) && v > 0)
  const min = xs.length === 0 ? 0.1 : Math.min(...xs)
  const max = xs.length === 0 ? 1 : Math.max(...xs)
  const candidates: Array<{ readonly value: number; readonly m: number }> = []
  for (let k = Math.floor(Math.log10(min)) - 1; k <= Math.ceil(Math.log10(max)) + 1; k++)
    for (let m = 1; m <= 9; m++) candidates.push({ value: decade(m, k), m })
  const nice = candidates.filter((c) => c.m === 1 || c.m === 2 || c.m === 5)
  const lo = nice.filter((c) => c.value <= min).at(-1)!.value
  // the top only needs room for the highest point (a tick end there could waste half a decade)
  const hi = max * 1.08
  const perDecade = pixels / Math.log10(hi / lo)
  const rank = (m: number) => [0, 1, 2, 4, 5, 2, 5, 5, 5, 5][m]
  const inside = candidates.filter((c) => c.value > lo && c.value < hi)
  const kept = [lo]
  for (const c of [...inside].sort((x, y) => rank(x.m) - rank(y.m) || x.value - y.value)) {
    if (kept.every((t) => Math.abs(Math.log10(c.value / t)) * perDecade >= minGap)) kept.push(c.value)
  }
  return {
    scale: { type: "log", domain: [lo, hi], nice: false },
    axis: { values: kept.sort((x, y) => x - y), format: "~g", labelOverlap: false }
  }
}

export interface LossRun {
  readonly label?: string
  readonly losses: ReadonlyArray<number>
  readonly valLosses: ReadonlyArray<number>
}

export const lossValues = (runs: ReadonlyArray<LossRun>) => {
  const values: Array<Record<string, unknown>> = []
  for (const run of runs) {
    const prefix = run.label === undefined ? "" : `${run.label}: `
    run.losses.forEach((loss, i) => {
      if (finite(loss) && loss > 0) values.push({ epoch: i + 1, loss, series: `${prefix}Training Loss` })
    })
    run.valLosses.forEach((loss, i) => {
      if (finite(loss) && loss > 0) values.push({ epoch: i + 1, loss, series: `${prefix}Validation Loss` })
    })
  }
  return values
}

export const lossLayer = (
  values: ReadonlyArray<Record<string, unknown>>,
  allLosses: ReadonlyArray<number>,
  colors: ReadonlyArray<string>,
  legend: boolean,
  height = H
) => {
  const y = logAxis(allLosses, height)
  return {
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "epoch", type: "quantitative", title: "Epochs", axis: { tickMinStep: 1 } },
      y: { field: "loss", type: "quantitative", title: "Loss (log scale)", scale: y.scale, axis: y.axis },
      color: {
        field: "series",
        type: "nominal",
        title: null,
        scale: { domain: [...new Set(values.map((v) => v.series as string))], range: colors },
        legend: legend ? { orient: "bottom", columns: 2, symbolType: "stroke", symbolStrokeWidth: 3 } : null
      }
    }
  }
}

export const TRAIN_VAL = ["#1f77b4", "#d62728"]
// Two runs: a hue per run, training solid-ish dark and validation light, so pairs read together.
export const PAIRED = ["#1f77b4", "#9ecae1", "#d62728", "#fc9272", "#2ca02c", "#a1d99b"]

/**
 * Figure 6.10 / 6.11 / 6.31: training and validation losses per epoch, log-scaled y, every run
 * in one chart (its label says what differs between the runs).
 */
export const losses = (runs: ReadonlyArray<LossRun>, title = "Losses"): Spec => {
  const all = runs.flatMap((r) => [...r.losses, ...r.valLosses])
  return {
    title,
    width: W,
    height: H,
    ...lossLayer(lossValues(runs), all, runs.length === 1 ? TRAIN_VAL : PAIRED, true)
  }
}

/** Figure 6.19: one panel per run (SGD | Adam), sharing the y axis so the panels compare. */
export const lossPanels = (
  runs: ReadonlyArray<LossRun & { readonly label: string }>,
  title: string
): Spec => {
  const all = runs.flatMap((r) => [...r.losses, ...r.valLosses])
  return {
    title,
    hconcat: runs.map((r) => ({
      title: r.label,
      width: 300,
      height: 220,
      ...lossLayer(lossValues([{ losses: r.losses, valLosses: r.valLosses }]), all, TRAIN_VAL, true, 220)
    }))
  }
}

/** Figures 6.24-6.26: the learning rate after every step (mini-batch or epoch). */
export const learningRates = (
  series: ReadonlyArray<{ readonly label: string; readonly lrs: ReadonlyArray<number> }>,
  unit: "epoch" | "batch" = "batch",
  title = "Learning rate schedule"
): Spec => {
  const panel = (s: (typeof series)[number]) => ({
    title: series.length > 1 ? s.label : undefined,
    width: series.length > 1 ? 280 : W,
    height: series.length > 1 ? 200 : H,
    data: { values: s.lrs.map((lr, i) => ({ step: i, lr })) },
    mark: {
      type: "line",
      color: "#1f77b4",
      interpolate: unit === "epoch" ? "step-after" : "linear",
      point: unit === "epoch" || s.lrs.length <= 60
    },
    encoding: {
      x: { field: "step", type: "quantitative", title: unit === "epoch" ? "Epoch" : "Mini-batch (update)" },
      y: { field: "lr", type: "quantitative", title: "Learning rate", axis: { format: ".1e" } }
    }
  })
  return series.length === 1 ? { ...panel(series[0]), title } : { title, hconcat: series.map(panel) }
}

/**
 * Figures 6.12-6.13 (`visualize_filters`): one small grayscale heatmap per (filter, input
 * channel). Like matplotlib's `imshow`, each heatmap is scaled to its own min..max.
 * `weights` is in PyTorch's layout [out, in, kh, kw], flat, row-major.
 */
/** The most filters (and channels) a filter grid draws. */
export const FILTER_GRID_MAX = 16

export const filters = (
  layer: string,
  weights: ArrayLike<number>,
  shape: readonly [number, number, number, number]
): Spec => {
  const [out, inC, kh, kw] = shape
  // A grid of every filter of a wide layer (128 x 128 cells) is past any image size limit and
  // unreadable: draw the first FILTER_GRID_MAX of each axis and say so.
  const rows = Math.min(out, FILTER_GRID_MAX)
  const cols = Math.min(inC, FILTER_GRID_MAX)
  const values: Array<Record<string, unknown>> = []
  for (let o = 0; o < rows; o++) {
    for (let c = 0; c < cols; c++) {
      const base = (o * inC + c) * kh * kw
      let lo = Number.POSITIVE_INFINITY
      let hi = Number.NEGATIVE_INFINITY
      for (let k = 0; k < kh * kw; k++) {
        lo = Math.min(lo, weights[base + k])
        hi = Math.max(hi, weights[base + k])
      }
      for (let r = 0; r < kh; r++) {
        for (let col = 0; col < kw; col++) {
          const w = weights[base + r * kw + col]
          values.push({
            filter: `Filter #${o}`,
            channel: `Channel #${c}`,
            row: r,
            col,
            weight: Number(w.toFixed(4)),
            shade: hi > lo ? (w - lo) / (hi - lo) : 0.5
          })
        }
      }
    }
  }
  const cell = Math.max(14, Math.floor(84 / Math.max(kh, kw)))
  return {
    // a short title: a title wider than the grid centres over the grid and leaves a margin beside it
    title: {
      text: `${layer} filters`,
      subtitle:
        `${out} filters x ${inC} channels, ${kh}x${kw}` +
        (rows < out || cols < inC ? ` (the first ${rows} x ${cols} shown)` : "")
    },
    data: { values },
    facet: {
      // horizontal row labels: the header band is as wide as labelLimit (vega's default left a
      // wide empty margin), so it is set to what "Filter #15" needs
      // numeric order (#2 before #10), not the text order vega would use
      row: {
        field: "filter",
        type: "nominal",
        title: null,
        sort: Array.from({ length: rows }, (_, o) => `Filter #${o}`),
        header: { labelAngle: 0, labelAlign: "left", labelLimit: 120, labelPadding: 4 }
      },
      column: {
        field: "channel",
        type: "nominal",
        title: null,
        sort: Array.from({ length: cols }, (_, c) => `Channel #${c}`),
        header: { labelFontSize: 11 }
      }
    },
    spacing: 6,
    spec: {
      width: cell * kw,
      height: cell * kh,
      mark: { type: "rect" },
      encoding: {
        x: { field: "col", type: "ordinal", axis: null },
        y: { field: "row", type: "ordinal", axis: null },
        color: {
          field: "shade",
          type: "quantitative",
          scale: { range: ["#000000", "#ffffff"], domain: [0, 1] },
          legend: null
        },
        tooltip: [{ field: "weight", type: "quantitative" }]
      }
    },
    resolve: { scale: { color: "shared" } }
  }
}
