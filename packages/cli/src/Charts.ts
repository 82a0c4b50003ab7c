/**
 * The chapter's pictures as Vega-Lite specs: pure functions from numbers to JSON. Rendering
 * (`Render`) and computing the numbers (`Demos`, run folders) live elsewhere.
 */
import type { Spec } from "./Render.js"

const W = 420
const H = 260

const finite = (v: number) => Number.isFinite(v)

/** Figure 6.10 / 6.11 / 6.31: training and validation losses per epoch, log-scaled y. */
export const losses = (
  runs: ReadonlyArray<{
    readonly label?: string
    readonly losses: ReadonlyArray<number>
    readonly valLosses: ReadonlyArray<number>
  }>,
  title = "Losses"
): Spec => {
  const values: Array<Record<string, unknown>> = []
  for (const run of runs) {
    const prefix = run.label === undefined ? "" : `${run.label} `
    run.losses.forEach((loss, i) => {
      if (finite(loss) && loss > 0) values.push({ epoch: i + 1, loss, series: `${prefix}Training Loss` })
    })
    run.valLosses.forEach((loss, i) => {
      if (finite(loss) && loss > 0) values.push({ epoch: i + 1, loss, series: `${prefix}Validation Loss` })
    })
  }
  return {
    title,
    width: W,
    height: H,
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "epoch", type: "quantitative", title: "Epochs", axis: { tickMinStep: 1 } },
      y: {
        field: "loss",
        type: "quantitative",
        title: "Loss (log scale)",
        scale: { type: "log", nice: false }
      },
      color: {
        field: "series",
        type: "nominal",
        title: null,
        scale: runs.length === 1 ? { range: ["#1f77b4", "#d62728"] } : { scheme: "category10" }
      }
    }
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
export const filters = (
  layer: string,
  weights: ArrayLike<number>,
  shape: readonly [number, number, number, number]
): Spec => {
  const [out, inC, kh, kw] = shape
  const values: Array<Record<string, unknown>> = []
  for (let o = 0; o < out; o++) {
    for (let c = 0; c < inC; c++) {
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
    title: `${layer} filters (${out} filters x ${inC} channels, ${kh}x${kw})`,
    data: { values },
    facet: {
      row: { field: "filter", type: "nominal", title: null, header: { labelAngle: 0, labelAlign: "left" } },
      column: { field: "channel", type: "nominal", title: null, header: { labelFontSize: 11 } }
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

/** The LR range test's suggestions as labelled marks for `lrFinder`. */
export const suggestionMarks = (
  s: {
    readonly [K in "steepest" | "valley" | "minimum"]?: { readonly lr: number } | undefined
  }
): ReadonlyArray<{ readonly label: string; readonly lr: number }> =>
  (["steepest", "valley", "minimum"] as const).flatMap((k) => {
    const x = s[k]
    return x === undefined ? [] : [{ label: k, lr: x.lr }]
  })

/** Figures 6.14 / 6.27 / 6.30: smoothed loss against learning rate, suggestions marked. */
export const lrFinder = (
  lr: ReadonlyArray<number>,
  loss: ReadonlyArray<number>,
  suggestions: ReadonlyArray<{ readonly label: string; readonly lr: number }>,
  logLr = true
): Spec => {
  const curve = lr.map((x, i) => ({ lr: x, loss: loss[i] })).filter((p) => finite(p.loss))
  const nearest = (x: number) =>
    curve.reduce((best, p) => (Math.abs(Math.log(p.lr / x)) < Math.abs(Math.log(best.lr / x)) ? p : best))
  const marks =
    curve.length === 0 ? [] : suggestions.map((s) => ({ ...nearest(s.lr), label: s.label, lr: s.lr }))
  const x = {
    field: "lr",
    type: "quantitative",
    title: logLr ? "Learning rate (log scale)" : "Learning rate",
    scale: logLr ? { type: "log", nice: false } : { nice: false },
    axis: { format: ".0e" }
  }
  return {
    title: "Learning rate finder",
    width: W,
    height: H,
    layer: [
      {
        data: { values: curve },
        mark: { type: "line", color: "#1f77b4" },
        encoding: { x, y: { field: "loss", type: "quantitative", title: "Loss", scale: { zero: false } } }
      },
      {
        data: { values: marks },
        mark: { type: "point", filled: true, size: 90, color: "#d62728" },
        encoding: { x, y: { field: "loss", type: "quantitative" } }
      },
      {
        data: { values: marks },
        mark: { type: "text", dy: -12, align: "left", dx: 6, fontSize: 11, color: "#d62728" },
        encoding: {
          x,
          y: { field: "loss", type: "quantitative" },
          text: { field: "text", type: "nominal" }
        },
        transform: [{ calculate: "datum.label + ': ' + format(datum.lr, '.2e')", as: "text" }]
      }
    ]
  }
}

/** Figure 6.15-6.16: the raw series with a moving average, an EWMA and a bias-corrected EWMA. */
export const movingAverages = (
  values: ReadonlyArray<number>,
  series: ReadonlyArray<{ readonly label: string; readonly values: ReadonlyArray<number | null> }>,
  title: string
): Spec => ({
  title,
  width: W + 80,
  height: H,
  layer: [
    {
      data: { values: values.map((v, i) => ({ day: i + 1, value: v })) },
      mark: { type: "point", filled: true, color: "#444" },
      encoding: {
        x: { field: "day", type: "quantitative", title: "Day" },
        y: { field: "value", type: "quantitative", title: "Temperature" }
      }
    },
    ...[true, false].map((dashed) => ({
      data: {
        values: series
          .filter((_, i) => i < 2 === dashed)
          .flatMap((s) =>
            s.values.flatMap((v, i) => (v === null ? [] : [{ day: i + 1, value: v, series: s.label }]))
          )
      },
      // the chapter draws the MA and the plain EWMA dashed, the corrected EWMA solid
      mark: { type: "line", strokeWidth: 2, ...(dashed ? { strokeDash: [6, 3] } : {}) },
      encoding: {
        x: { field: "day", type: "quantitative" },
        y: { field: "value", type: "quantitative" },
        color: {
          field: "series",
          type: "nominal",
          title: null,
          scale: { domain: series.map((s) => s.label), range: ["#000000", "#d62728", "#1f77b4", "#2ca02c"] },
          legend: { orient: "top-right", symbolStrokeWidth: 3 }
        }
      }
    }))
  ]
})

interface StepSeries {
  readonly label: string
  readonly values: ReadonlyArray<number>
}

/** One panel of lines against the step (1, 2, ...), a colour per series, the legend below. */
const stepPanel = (
  title: string,
  series: ReadonlyArray<StepSeries>,
  size: { readonly width: number; readonly height: number; readonly strokeWidth: number },
  colors: ReadonlyArray<string>
) => ({
  title,
  width: size.width,
  height: size.height,
  data: {
    values: series.flatMap((s) => s.values.map((v, i) => ({ step: i + 1, value: v, series: s.label })))
  },
  mark: { type: "line", strokeWidth: size.strokeWidth },
  encoding: {
    x: { field: "step", type: "quantitative", title: "Step" },
    y: { field: "value", type: "quantitative", title: null },
    color: {
      field: "series",
      type: "nominal",
      title: null,
      scale: { domain: series.map((s) => s.label), range: colors },
      legend: { orient: "bottom" }
    }
  }
})

/**
 * Figure 6.17: gradients with their bias-corrected EWMA (left), the scaling term (center), and
 * the adapted gradients (right).
 */
export const adaptedGradients = (data: {
  readonly gradients: ReadonlyArray<number>
  readonly correctedEwma: ReadonlyArray<number>
  readonly correctedSqrtEwmaSq: ReadonlyArray<number>
  readonly adapted: ReadonlyArray<number>
  readonly parameter: string
}): Spec => {
  const panel = (title: string, series: ReadonlyArray<StepSeries>) =>
    stepPanel(title, series, { width: 300, height: 220, strokeWidth: 1.6 }, ["#000000", "#d62728", "#1f77b4"])
  return {
    title: `Adapted gradients (${data.parameter})`,
    hconcat: [
      panel("Gradients", [
        { label: "Gradients", values: data.gradients },
        { label: "Bias-corrected EWMA", values: data.correctedEwma }
      ]),
      panel("Scaling factor", [
        { label: "sqrt(bias-corrected EWMA of grad^2)", values: data.correctedSqrtEwmaSq }
      ]),
      panel("Adapted gradients", [
        { label: "Gradients", values: data.gradients },
        { label: "Adapted gradients", values: data.adapted }
      ])
    ],
    resolve: { scale: { color: "independent" } }
  }
}

/** Figures 6.7-6.8: histograms of the summed (adjusted) dropout outputs, one panel per p. */
export const dropoutDistributions = (
  panels: ReadonlyArray<{ readonly p: number; readonly outputs: ReadonlyArray<number> }>
): Spec => ({
  title: "Output distribution for dropout probabilities",
  data: {
    values: panels.flatMap((panel) =>
      panel.outputs.map((v) => ({ p: `p = ${panel.p.toFixed(2)}`, output: v }))
    )
  },
  facet: {
    column: { field: "p", type: "nominal", title: null, sort: panels.map((x) => `p = ${x.p.toFixed(2)}`) }
  },
  spec: {
    width: 200,
    height: 200,
    mark: { type: "bar", color: "#1f77b4" },
    encoding: {
      x: {
        field: "output",
        type: "quantitative",
        bin: { extent: [0, 16], step: 0.4 },
        title: "Sum of outputs"
      },
      y: { aggregate: "count", type: "quantitative", title: "Scenarios" }
    }
  }
})

export interface LossSurface {
  readonly bs: ReadonlyArray<number>
  readonly ws: ReadonlyArray<number>
  /** losses[i][j] at (bs[j], ws[i]). */
  readonly losses: ReadonlyArray<ReadonlyArray<number>>
}

/**
 * Figures 6.18 / 6.20 / 6.22 / 6.28: paths of (b, w) over the loss surface, one panel per
 * optimizer, the optimum as a red dot.
 */
export const optimizerPaths = (
  surface: LossSurface,
  paths: ReadonlyArray<{
    readonly label: string
    readonly b: ReadonlyArray<number>
    readonly w: ReadonlyArray<number>
  }>,
  optimum: { readonly b: number; readonly w: number },
  title = "Paths taken by the optimizers"
): Spec => {
  const db = surface.bs.length > 1 ? surface.bs[1] - surface.bs[0] : 1
  const dw = surface.ws.length > 1 ? surface.ws[1] - surface.ws[0] : 1
  const cells: Array<Record<string, number>> = []
  surface.ws.forEach((w, i) => {
    surface.bs.forEach((b, j) => {
      cells.push({ b, b2: b + db, w, w2: w + dw, loss: surface.losses[i][j] })
    })
  })
  const xDomain = [surface.bs[0], surface.bs[surface.bs.length - 1] + db]
  const yDomain = [surface.ws[0], surface.ws[surface.ws.length - 1] + dw]
  const panel = (p: (typeof paths)[number]) => ({
    title: p.label,
    width: 260,
    height: 260,
    layer: [
      {
        data: { values: cells },
        mark: { type: "rect" },
        encoding: {
          x: { field: "b", type: "quantitative", title: "b", scale: { domain: xDomain, nice: false } },
          x2: { field: "b2" },
          y: { field: "w", type: "quantitative", title: "w", scale: { domain: yDomain, nice: false } },
          y2: { field: "w2" },
          color: {
            field: "loss",
            type: "quantitative",
            scale: { type: "sqrt", scheme: "blues" },
            legend: null
          }
        }
      },
      {
        data: { values: p.b.map((b, i) => ({ b, w: p.w[i], i })) },
        mark: {
          type: "line",
          color: "#000000",
          strokeWidth: 1.2,
          clip: true,
          point: { size: 14, color: "#000" }
        },
        encoding: {
          x: { field: "b", type: "quantitative" },
          y: { field: "w", type: "quantitative" },
          order: { field: "i" }
        }
      },
      {
        data: { values: [optimum] },
        mark: { type: "point", filled: true, color: "#d62728", size: 110 },
        encoding: { x: { field: "b", type: "quantitative" }, y: { field: "w", type: "quantitative" } }
      }
    ]
  })
  const rows: Array<Array<ReturnType<typeof panel>>> = []
  paths.forEach((p, i) => {
    if (i % 3 === 0) rows.push([])
    rows[rows.length - 1].push(panel(p))
  })
  return { title, vconcat: rows.map((r) => ({ hconcat: r })) }
}

/** Figure 6.21: the gradient and the update term (before the lr) per step, one panel a flavour. */
export const updateTerms = (
  flavours: ReadonlyArray<{
    readonly label: string
    readonly gradients: ReadonlyArray<number>
    readonly updates: ReadonlyArray<number>
  }>
): Spec => ({
  title: "Update terms of the SGD flavours (weight)",
  hconcat: flavours.map((f) =>
    stepPanel(
      f.label,
      [
        { label: "Gradient", values: f.gradients },
        { label: "Update term", values: f.updates }
      ],
      { width: 260, height: 200, strokeWidth: 1.5 },
      ["#000000", "#d62728"]
    )
  )
})

/** Per-class [correct, total] as a confusion-matrix heatmap with counts. */
export const confusionMatrix = (
  classes: ReadonlyArray<string>,
  matrix: ReadonlyArray<ReadonlyArray<number>>
): Spec => {
  const values = matrix.flatMap((row, i) =>
    row.map((count, j) => ({ actual: classes[i], predicted: classes[j], count }))
  )
  const enc = {
    x: { field: "predicted", type: "nominal", title: "Predicted", sort: classes },
    y: { field: "actual", type: "nominal", title: "Actual", sort: classes }
  }
  return {
    title: "Confusion matrix",
    width: 60 * classes.length,
    height: 60 * classes.length,
    data: { values },
    layer: [
      {
        mark: "rect",
        encoding: { ...enc, color: { field: "count", type: "quantitative", scale: { scheme: "blues" } } }
      },
      {
        mark: { type: "text", fontSize: 14 },
        encoding: { ...enc, text: { field: "count", type: "quantitative" } }
      }
    ]
  }
}
