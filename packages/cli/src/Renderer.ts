/**
 * The end-of-run pictures drawn on a worker thread that loads its libraries (vega, vega-lite,
 * sharp and the system fonts) while the run trains: `train` trains on one core, so the other
 * one prepares the drawing, and the pictures after the last epoch cost their drawing only, not
 * the ~0.5 s of loading them. A picture the worker cannot draw is drawn here instead.
 */
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import type * as Render from "./Render.js"
import type * as Charts from "./TrainCharts.js"

/** A picture as the chart function and its arguments (plain data, so it can go to the worker). */
export type Picture =
  | { readonly chart: "losses"; readonly args: Parameters<typeof Charts.losses> }
  | { readonly chart: "learningRates"; readonly args: Parameters<typeof Charts.learningRates> }
  | { readonly chart: "filters"; readonly args: Parameters<typeof Charts.filters> }

/** The Vega-Lite spec of a picture. */
export const specOf = (charts: typeof Charts, p: Picture): Render.Spec =>
  p.chart === "losses"
    ? charts.losses(...p.args)
    : p.chart === "learningRates"
      ? charts.learningRates(...p.args)
      : charts.filters(...p.args)

/** Draws a picture to PNG bytes here, on the calling thread. */
export const drawHere = async (p: Picture): Promise<Uint8Array> => {
  const [charts, render] = await Promise.all([import("./TrainCharts.js"), import("./Render.js")])
  return render.toPng(specOf(charts, p))
}

export interface Renderer {
  /** Starts the worker now (it then loads its libraries); `draw` starts it too. */
  readonly begin: () => void
  readonly draw: (p: Picture) => Promise<Uint8Array>
  /** Stops the worker (pending pictures are then drawn here). */
  readonly close: () => Promise<void>
}

/** Messages between the two threads. */
export type Request = { readonly id: number; readonly picture: Picture }
export type Reply =
  | { readonly id: number; readonly png: Uint8Array }
  | { readonly id: number; readonly error: string }

const WORKER = new URL("./RenderWorker.js", import.meta.url)

/**
 * A renderer whose worker starts with `begin` (or the first `draw`). Without the compiled worker
 * next to this module (running from sources), pictures are drawn on the calling thread.
 */
export const make = (): Renderer => {
  let worker: Renderer | undefined
  const started = () => {
    worker ??= existsSync(fileURLToPath(WORKER))
      ? onWorker()
      : { begin: () => {}, draw: drawHere, close: () => Promise.resolve() }
    return worker
  }
  return {
    begin: () => {
      started()
    },
    draw: (p) => started().draw(p),
    close: () => (worker === undefined ? Promise.resolve() : worker.close())
  }
}

const onWorker = (): Renderer => {
  const worker = new Worker(WORKER)
  const pending = new Map<
    number,
    { picture: Picture; resolve: (png: Uint8Array) => void; reject: (e: unknown) => void }
  >()
  let broken = false
  let next = 0
  // (what the worker could not do is done here)
  const fallBack = () => {
    broken = true
    for (const [id, p] of pending) {
      pending.delete(id)
      drawHere(p.picture).then(p.resolve, p.reject)
    }
  }
  worker.on("message", (reply: Reply) => {
    const p = pending.get(reply.id)
    if (p === undefined) return
    pending.delete(reply.id)
    if ("png" in reply) p.resolve(reply.png)
    else drawHere(p.picture).then(p.resolve, p.reject)
  })
  worker.on("error", fallBack)
  worker.on("exit", fallBack)
  return {
    begin: () => {},
    draw: (picture) =>
      broken
        ? drawHere(picture)
        : new Promise((resolve, reject) => {
            const id = next++
            pending.set(id, { picture, resolve, reject })
            worker.postMessage({ id, picture } satisfies Request)
          }),
    close: async () => {
      worker.removeAllListeners("exit")
      broken = true
      await worker.terminate()
    }
  }
}
