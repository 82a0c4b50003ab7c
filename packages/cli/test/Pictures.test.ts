import { existsSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import * as Pictures from "../src/Pictures.js"
import * as Render from "../src/Render.js"

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..")
const docs = join(pkg, "docs", "pictures")
const runs = join(docs, "runs")

const draw = (picture: Pictures.Picture) =>
  Effect.runPromise(Pictures.spec(picture, runs).pipe(Effect.provide(NodeContext.layer)))

describe("the README pictures are what the code draws (npm run pictures -w packages/cli)", () => {
  it("every picture a README shows is made by the script, with its PNG and its data beside it", () => {
    const names = new Set(Pictures.PICTURES.map((p) => p.name))
    for (const readme of [join(pkg, "README.md"), join(pkg, "..", "..", "README.md")]) {
      if (!existsSync(readme)) continue
      const shown = [
        ...readFileSync(readme, "utf8").matchAll(/!\[[^\]]*\]\([^)]*docs\/pictures\/([\w-]+)\.png\)/g)
      ]
      expect(shown.length).toBeGreaterThan(0)
      for (const [, name] of shown) expect(names).toContain(name)
    }
    for (const name of names) {
      expect(existsSync(join(docs, `${name}.png`))).toBe(true)
      expect(existsSync(join(docs, `${name}.json`))).toBe(true)
    }
  })

  for (const picture of Pictures.PICTURES) {
    it(`${picture.name}: ${picture.command}`, async () => {
      const record = JSON.parse(readFileSync(join(docs, `${picture.name}.json`), "utf8"))
      expect(record.command).toBe(picture.command)
      expect(Render.specData(await draw(picture))).toEqual(record.data)
    })
  }

  it("the CNN2 LR finder: the recorded test ran all 100 steps, and the picture leaves out the diverged tail", async () => {
    const result = JSON.parse(readFileSync(join(runs, "lr-find", "lr-finder.json"), "utf8"))
    const spec: any = await draw(Pictures.PICTURES.find((p) => p.name === "lr-finder-cnn2")!)
    const curve = spec.layer[0].data.values
    expect(curve.length).toBeLessThanOrEqual(result.lr.length)
    const [lo, hi] = spec.layer[0].encoding.y.scale.domain
    // the y axis is set by the drawn curve, never by a blown-up loss
    expect(hi).toBeLessThan(2 * Math.max(...curve.map((p: any) => p.loss)))
    expect(lo).toBeLessThan(Math.min(...curve.map((p: any) => p.loss)))
    expect(spec.layer[2].data.values.map((m: any) => m.label.split(":")[0])).toEqual([
      "steepest",
      "valley",
      "minimum/10"
    ])
  })

  it("the compared losses say what differs between the runs: the dropout p", async () => {
    const spec: any = await draw(Pictures.PICTURES.find((p) => p.name === "losses-compared")!)
    const series = new Set(spec.data.values.map((v: any) => v.series))
    expect([...series].sort()).toEqual([
      "dropout p = 0.3: Training Loss",
      "dropout p = 0.3: Validation Loss",
      "dropout p = 0: Training Loss",
      "dropout p = 0: Validation Loss"
    ])
  })
})
