import { describe, expect, it } from "vitest"
// The compiled module: its worker (dist/RenderWorker.js) exists only next to the build.
import * as Renderer from "../dist/Renderer.js"

const picture: Renderer.Picture = {
  chart: "losses",
  args: [[{ losses: [1.05, 0.71, 0.42], valLosses: [1.03, 0.74, 0.54] }]]
}

describe("pictures drawn on the worker", () => {
  it("are the PNG bytes drawn on this thread, in request order, and close ends the worker", async () => {
    const r = Renderer.make()
    r.begin()
    try {
      const lr: Renderer.Picture = {
        chart: "learningRates",
        args: [[{ label: "lr", lrs: [0.1, 0.05] }], "batch"]
      }
      const [a, b] = await Promise.all([r.draw(picture), r.draw(lr)])
      expect([...a.subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]) // "PNG"
      expect(Buffer.from(a).equals(Buffer.from(await Renderer.drawHere(picture)))).toBe(true)
      expect(Buffer.from(b).equals(Buffer.from(await Renderer.drawHere(lr)))).toBe(true)
      expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false)
    } finally {
      await r.close()
    }
    // after close, a picture is still drawn (here)
    expect((await r.draw(picture)).length).toBeGreaterThan(1000)
  }, 30_000)
})
