/**
 * The chapter's pictures as Vega-Lite specs: pure functions from numbers to JSON. Rendering
 * (`Render`) and computing the numbers (`Demos`, run folders) live elsewhere.
 */
import { LrRangeTest } from "@stepwise/core"
import { scheme } from "vega"
import type { Spec } from "./Render.js"
import { decade, finite, H, W } from "./TrainCharts.js"

export {
  FILTER_GRID_MAX,
  filters,
  type LossRun,
  learningRates,
  logAxis,
  losses,
  lossPanels
} from "./TrainCharts.js"

/** What each suggestion is, for the legend: "minimum" is fastai's minimum, divided by 10. */
export const SUGGESTION_LABELS: Readonly<Record<string, string>> = {
  steepest: "steepest",
  valley: "valley",
  minimum: "minimum/10"
}

/** The LR range test's suggestions as labelled marks for `lrFinder`. */
export const suggestionMarks = (
  s: {
    readonly [K in "steepest" | "valley" | "minimum"]?: { readonly lr: number } | undefined
  }
): ReadonlyArray<{ readonly label: string; readonly lr: number }> =>
  (["steepest", "valley", "minimum"] as const).flatMap((k) => {
    const x = s[k]
    return x === undefined ? [] : [{ label: SUGGESTION_LABELS[k], lr: x.lr }]
  })

const MARKER_COLORS = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
const MARKER_SHAPES = ["circle", "diamond", "square", "triangle-up"]

/**
 * Figures 6.14 / 6.27 / 6.30: smoothed loss against learning rate, suggestions marked. Like
 * torch-lr-finder, the range that matters: the curve stops before the first diverged point
 * (smoothed loss above `divergeTh` times the best so far), and the y axis spans the curve from
 * its lowest point up to the highest loss before that lowest point (the start and the descent),
 * so a blow-up at the end neither flattens the curve nor sets the scale. Each suggestion is a
 * marker with a dashed rule, named in the legend (labels next to markers overprint).
 */
export const lrFinder = (
  lr: ReadonlyArray<number>,
  loss: ReadonlyArray<number>,
  suggestions: ReadonlyArray<{ readonly label: string; readonly lr: number }>,
  logLr = true,
  divergeTh = 5
): Spec => {
  const kept = LrRangeTest.beforeDivergence(loss, divergeTh)
  const curve = lr
    .slice(0, kept)
    .map((x, i) => ({ lr: x, loss: loss[i] }))
    .filter((p) => finite(p.loss))
  const dropped = lr.length - curve.length
  const nearest = (x: number) =>
    curve.reduce((best, p) => (Math.abs(Math.log(p.lr / x)) < Math.abs(Math.log(best.lr / x)) ? p : best))
  const marks =
    curve.length === 0
      ? []
      : suggestions.map((s) => ({
          lr: s.lr,
          loss: nearest(s.lr).loss,
          label: `${s.label}: ${s.lr.toExponential(2)}`
        }))
  let lowest = 0
  curve.forEach((p, i) => {
    if (p.loss < curve[lowest].loss) lowest = i
  })
  const lo = curve.length === 0 ? 0 : curve[lowest].loss
  const hi = curve.length === 0 ? 1 : Math.max(...curve.slice(0, lowest + 1).map((p) => p.loss))
  const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 0.1
  const x = {
    field: "lr",
    type: "quantitative",
    title: logLr ? "Learning rate (log scale)" : "Learning rate",
    scale: logLr ? { type: "log", nice: false } : { nice: false },
    axis: { format: ".0e", labelExpr: "replace(datum.label, 'e+0', '')" }
  }
  const y = { field: "loss", type: "quantitative", scale: { domain: [lo - pad, hi + pad], nice: false } }
  const color = {
    field: "label",
    type: "nominal",
    title: "suggested",
    scale: { domain: marks.map((m) => m.label), range: MARKER_COLORS.slice(0, marks.length) }
  }
  return {
    title: {
      text: "Learning rate finder",
      ...(dropped > 0
        ? { subtitle: `(${dropped} point${dropped === 1 ? "" : "s"} after the loss diverged not drawn)` }
        : {})
    },
    width: W,
    height: H,
    layer: [
      {
        data: { values: curve },
        mark: { type: "line", color: "#1f77b4", clip: true },
        encoding: { x, y: { ...y, title: "Loss (smoothed)" } }
      },
      {
        data: { values: marks },
        mark: { type: "rule", strokeDash: [4, 3], strokeWidth: 1.2, opacity: 0.8 },
        encoding: { x, color }
      },
      {
        data: { values: marks },
        mark: { type: "point", filled: true, size: 110, opacity: 1, stroke: "white", strokeWidth: 1 },
        encoding: {
          x,
          y,
          color: {
            ...color,
            legend: { orient: "bottom", direction: "horizontal", symbolSize: 110, labelFontSize: 12 }
          },
          shape: {
            field: "label",
            type: "nominal",
            title: "suggested",
            scale: { domain: marks.map((m) => m.label), range: MARKER_SHAPES.slice(0, marks.length) }
          }
        }
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
    // flush end labels: a label overhanging the top edge would push that panel's title up
    y: { field: "value", type: "quantitative", title: null, axis: { labelFlush: true } },
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

/** A bin width of 1, 2 or 5 times a power of ten giving about `bins` bins over `span`. */
const niceStep = (span: number, bins: number) => {
  const raw = span / bins
  if (!(raw > 0)) return 1
  const k = Math.floor(Math.log10(raw))
  const m = [1, 2, 5, 10].find((c) => c * 10 ** k >= raw)!
  return decade(m, k)
}

/**
 * Counts per bin of width `step` from 0 up to the largest value: every value lands in exactly
 * one bin (the last bin is closed), so the counts add up to `values.length`.
 */
export const histogram = (values: ReadonlyArray<number>, step: number) => {
  const max = Math.max(0, ...values)
  const n = Math.max(1, Math.ceil(max / step + 1e-9))
  const counts = new Array<number>(n).fill(0)
  for (const v of values) counts[Math.min(n - 1, Math.max(0, Math.floor(v / step + 1e-9)))]++
  return counts.map((count, i) => ({ x0: decade(i * step, 0), x1: decade((i + 1) * step, 0), count }))
}

/**
 * Figures 6.7-6.8: histograms of the summed (adjusted) dropout outputs, one panel per p. Each
 * panel bins its own range (p = 0.9 spreads its sums up to ten times the inputs), so no
 * scenario falls outside; the panel title says how many scenarios it counts.
 */
export const dropoutDistributions = (
  panels: ReadonlyArray<{ readonly p: number; readonly outputs: ReadonlyArray<number> }>
): Spec => ({
  title: "Output distribution for dropout probabilities",
  hconcat: panels.map((panel) => {
    const bins = histogram(panel.outputs, niceStep(Math.max(...panel.outputs), 30))
    const counted = bins.reduce((a, b) => a + b.count, 0)
    return {
      title: {
        text: `p = ${panel.p.toFixed(2)} (${counted.toLocaleString("en-US")} scenarios)`,
        fontSize: 12
      },
      width: 200,
      height: 200,
      data: { values: bins.filter((b) => b.count > 0) },
      mark: { type: "rect", color: "#1f77b4", stroke: "white", strokeWidth: 0.5 },
      encoding: {
        x: {
          field: "x0",
          type: "quantitative",
          title: "Sum of outputs",
          scale: { domain: [0, bins.at(-1)!.x1], nice: false }
        },
        x2: { field: "x1" },
        y: { field: "count", type: "quantitative", title: "Scenarios" },
        y2: { datum: 0 }
      }
    }
  }),
  config: { title: { fontSize: 15 }, concat: { spacing: 14 } },
  resolve: { scale: { y: "shared" } }
})

export interface LossSurface {
  readonly bs: ReadonlyArray<number>
  readonly ws: ReadonlyArray<number>
  /** losses[i][j] at (bs[j], ws[i]). */
  readonly losses: ReadonlyArray<ReadonlyArray<number>>
}

/**
 * Contour segments of a grid (marching squares): values sit at the cell centres, every square of
 * four neighbouring centres a level crosses contributes one segment (two at a saddle), with the
 * crossing points interpolated linearly along the square's edges.
 */
export const contourSegments = (surface: LossSurface, levels: ReadonlyArray<number>) => {
  const { bs, ws, losses } = surface
  const db = bs.length > 1 ? bs[1] - bs[0] : 1
  const dw = ws.length > 1 ? ws[1] - ws[0] : 1
  const out: Array<{ b: number; w: number; b2: number; w2: number; level: number }> = []
  for (let i = 0; i + 1 < ws.length; i++) {
    for (let j = 0; j + 1 < bs.length; j++) {
      // corners counter-clockwise from (j, i); edges k join corner k and k + 1
      const corners = [
        [bs[j], ws[i], losses[i][j]],
        [bs[j + 1], ws[i], losses[i][j + 1]],
        [bs[j + 1], ws[i + 1], losses[i + 1][j + 1]],
        [bs[j], ws[i + 1], losses[i + 1][j]]
      ] as const
      for (const level of levels) {
        const hits: Array<readonly [number, number]> = []
        for (let k = 0; k < 4; k++) {
          const [b0, w0, v0] = corners[k]
          const [b1, w1, v1] = corners[(k + 1) % 4]
          if (v0 < level !== v1 < level) {
            const t = (level - v0) / (v1 - v0)
            hits.push([b0 + t * (b1 - b0) + db / 2, w0 + t * (w1 - w0) + dw / 2])
          }
        }
        const r = (v: number) => Number(v.toFixed(5))
        for (let h = 0; h + 1 < hits.length; h += 2)
          out.push({
            b: r(hits[h][0]),
            w: r(hits[h][1]),
            b2: r(hits[h + 1][0]),
            w2: r(hits[h + 1][1]),
            level
          })
      }
    }
  }
  return out
}

/** `count` levels evenly spaced in sqrt(loss) (the colour scale's spacing) strictly inside the range. */
const contourLevels = (surface: LossSurface, count = 8) => {
  const all = surface.losses.flat()
  const lo = Math.sqrt(Math.min(...all))
  const hi = Math.sqrt(Math.max(...all))
  return Array.from({ length: count }, (_, k) => (lo + ((k + 1) / (count + 1)) * (hi - lo)) ** 2)
}

/**
 * Figures 6.18 / 6.20 / 6.22 / 6.28: paths of (b, w) over the loss surface with its contour
 * lines, one panel per optimizer, the optimum as a red dot. Each heatmap cell is stroked in its
 * own colour so anti-aliasing leaves no hairline seams between cells.
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
  const contours = contourSegments(surface, contourLevels(surface))
  const xDomain = [surface.bs[0], surface.bs[surface.bs.length - 1] + db]
  const yDomain = [surface.ws[0], surface.ws[surface.ws.length - 1] + dw]
  const panel = (p: (typeof paths)[number]) => ({
    title: p.label,
    width: 260,
    height: 260,
    layer: [
      {
        data: { values: cells },
        mark: { type: "rect", strokeWidth: 0.6 },
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
          },
          stroke: {
            field: "loss",
            type: "quantitative",
            scale: { type: "sqrt", scheme: "blues" },
            legend: null
          }
        }
      },
      {
        data: { values: contours },
        mark: { type: "rule", color: "#08306b", strokeWidth: 0.7, opacity: 0.45 },
        encoding: {
          x: { field: "b", type: "quantitative" },
          y: { field: "w", type: "quantitative" },
          x2: { field: "b2" },
          y2: { field: "w2" }
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

/** WCAG relative luminance of a `#rrggbb` or `rgb(r, g, b)` colour. */
export const luminance = (color: string): number => {
  const hex = /^#([0-9a-f]{6})$/i.exec(color)
  const rgb = hex
    ? [0, 2, 4].map((i) => Number.parseInt(hex[1].slice(i, i + 2), 16))
    : (color.match(/\d+(\.\d+)?/g) ?? ["0", "0", "0"]).slice(0, 3).map(Number)
  const lin = rgb.map((c) => {
    const v = c / 255
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4
  })
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
}

/** Black or white, whichever contrasts more with the background colour (WCAG contrast ratio). */
export const textColorOn = (background: string): "black" | "white" => {
  const l = luminance(background)
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "black" : "white"
}

/**
 * Per-class counts as a confusion-matrix heatmap with the counts written in each cell, black
 * on light cells and white on dark ones (chosen from the cell colour's luminance).
 */
export const confusionMatrix = (
  classes: ReadonlyArray<string>,
  matrix: ReadonlyArray<ReadonlyArray<number>>
): Spec => {
  const max = Math.max(1, ...matrix.flat())
  const blues = scheme("blues") as (t: number) => string
  const values = matrix.flatMap((row, i) =>
    row.map((count, j) => ({
      actual: classes[i],
      predicted: classes[j],
      count,
      textColor: textColorOn(blues(count / max))
    }))
  )
  const enc = {
    x: { field: "predicted", type: "nominal", title: "Predicted", sort: classes, axis: { labelAngle: 0 } },
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
        encoding: {
          ...enc,
          color: { field: "count", type: "quantitative", scale: { scheme: "blues", domain: [0, max] } }
        }
      },
      {
        mark: { type: "text", fontSize: 14 },
        encoding: {
          ...enc,
          text: { field: "count", type: "quantitative" },
          color: { condition: { test: "datum.textColor === 'white'", value: "white" }, value: "black" }
        }
      }
    ]
  }
}
