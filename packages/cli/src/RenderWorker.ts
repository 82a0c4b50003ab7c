/**
 * The worker of `Renderer`: loads the drawing libraries as soon as it starts and warms them on a
 * small picture (vega's first parse, the fonts librsvg loads on its first text), then draws the
 * pictures it is sent, one PNG per request.
 */
import { parentPort } from "node:worker_threads"
import { drawHere, type Reply, type Request } from "./Renderer.js"

const port = parentPort
if (port !== null) {
  const warm = drawHere({
    chart: "losses",
    args: [[{ losses: [1, 0.5], valLosses: [1.1, 0.6] }]]
  }).catch(() => undefined)
  port.on("message", (m: Request) => {
    warm
      .then(() => drawHere(m.picture))
      .then(
        (png) => port.postMessage({ id: m.id, png } satisfies Reply),
        (e: unknown) =>
          port.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) } satisfies Reply)
      )
  })
}
