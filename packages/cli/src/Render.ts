/**
 * Vega-Lite spec -> SVG (vega's headless `renderer: "none"` view) -> PNG (sharp/libvips with the
 * system fonts). Works offline: specs carry their data inline and nothing is fetched.
 */

/**
 * vega, vega-lite and sharp, loaded with the first picture: a command pays for them only when
 * it draws (`train` at its end), not at start-up.
 */
const vegaLibs = () => Promise.all([import("vega"), import("vega-lite")])
const sharpLib = () => import("sharp").then((m) => m.default)

/** A Vega-Lite spec as plain JSON. */
export type Spec = { readonly [key: string]: unknown }

const BASE_CONFIG = {
  font: "DejaVu Sans, Liberation Sans, Arial, sans-serif",
  background: "white",
  // vega measures text with its own estimate; the rasterised font runs a little wider, so the
  // last tick label on the right would otherwise be cut at the picture's edge.
  padding: { left: 8, top: 8, right: 24, bottom: 8 },
  view: { stroke: "#bbb" },
  title: { fontSize: 15, anchor: "middle", offset: 10, subtitleFontSize: 11, subtitleColor: "#555" },
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 0 },
  header: { labelFontSize: 12, titleFontSize: 13 }
}

/** Renders a Vega-Lite spec to an SVG string. */
export const toSvg = async (spec: Spec): Promise<string> => {
  const withConfig = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    ...spec,
    config: { ...BASE_CONFIG, ...((spec.config as object | undefined) ?? {}) }
  }
  const [vega, vl] = await vegaLibs()
  const compiled = vl.compile(withConfig as any).spec
  const view = new vega.View(vega.parse(compiled), { renderer: "none" })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

/** Rasterises an SVG at 2x (144 dpi) so text stays crisp. */
export const svgToPng = async (svg: string, density = 144): Promise<Uint8Array> => {
  const sharp = await sharpLib()
  const b = await sharp(Buffer.from(svg), { density }).flatten({ background: "#ffffff" }).png().toBuffer()
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
}

export const toPng = async (spec: Spec): Promise<Uint8Array> => svgToPng(await toSvg(spec))

const round = (v: unknown): unknown =>
  typeof v === "number"
    ? Number.isFinite(v)
      ? Number(v.toPrecision(6))
      : String(v)
    : Array.isArray(v)
      ? v.map(round)
      : v !== null && typeof v === "object"
        ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, round(x)]))
        : v

/**
 * The data a spec draws: every inline `data.values` array, in the order they appear (depth
 * first through layers, concats and facets), numbers to 6 significant digits (a picture
 * cannot show more, and the record must not hinge on the last bit of a float); an array shared
 * by several panels is stored once, then as `{ sameAs: i }`. What `docs/pictures/*.json`
 * store beside each PNG.
 */
export const specData = (spec: unknown): Array<unknown> => {
  const out: Array<unknown> = []
  const seen = new Map<unknown, number>()
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const x of node) walk(x)
      return
    }
    if (node === null || typeof node !== "object") return
    for (const [key, value] of Object.entries(node)) {
      if (key === "data" && value !== null && typeof value === "object" && "values" in value) {
        const values = (value as { values: unknown }).values
        const first = seen.get(values)
        if (first === undefined) seen.set(values, out.length)
        out.push(first === undefined ? round(values) : { sameAs: first })
      } else if (key !== "encoding" && key !== "config") walk(value)
    }
  }
  walk(spec)
  return out
}
