// Regenerates every picture in the READMEs from the documented commands (see src/Pictures.ts):
//
//   npm run build && npm run pictures -w packages/cli            # trains, then draws (a few minutes)
//   npm run pictures -w packages/cli -- --draw-only             # redraws from docs/pictures/runs
//
// Training runs `stepwise <command> --out <tmp>/<run>`; the small files the pictures are drawn
// from (config.json, metrics.jsonl, lr-finder.json, the last checkpoint) are kept under
// docs/pictures/runs/<run>/, so the pictures and their data can be redrawn and tested offline.
import { spawnSync } from "node:child_process"
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..")
const repo = resolve(pkg, "..", "..")
const bin = join(pkg, "dist", "bin.js")
if (!existsSync(bin)) {
  console.error("pictures: build first (npm run build)")
  process.exit(1)
}
const Pictures = await import("../dist/Pictures.js")
const Plot = await import("../dist/Plot.js")
const Render = await import("../dist/Render.js")

const docs = join(pkg, "docs", "pictures")
const kept = join(docs, "runs")
const drawOnly = process.argv.includes("--draw-only")

if (!drawOnly) {
  const tmp = mkdtempSync(join(tmpdir(), "stepwise-pictures-"))
  for (const [run, { command }] of Object.entries(Pictures.RUNS)) {
    const out = join(tmp, run)
    console.log(`$ stepwise ${command.join(" ")} --out ${out}`)
    const r = spawnSync(process.execPath, [bin, ...command, "--out", out], { cwd: repo, stdio: "inherit" })
    if (r.status !== 0) {
      console.error(`pictures: ${run} failed (exit ${r.status})`)
      process.exit(1)
    }
    const dest = join(kept, run)
    rmSync(dest, { recursive: true, force: true })
    mkdirSync(dest, { recursive: true })
    for (const f of Pictures.KEPT_FILES) {
      if (!existsSync(join(out, f))) continue
      // the run's data roots as paths inside the repository, not this machine's
      writeFileSync(join(dest, f), readFileSync(join(out, f), "utf8").replaceAll(`${repo}/`, ""))
    }
    const checkpoints = join(out, "checkpoints")
    if (Pictures.PICTURES.some((p) => p.run === run && p.plot === "filters") && existsSync(checkpoints)) {
      const last = readdirSync(checkpoints)
        .filter((f) => f.endsWith(".safetensors"))
        .sort()
        .at(-1)
      mkdirSync(join(dest, "checkpoints"), { recursive: true })
      copyFileSync(join(checkpoints, last), join(dest, "checkpoints", last))
    }
  }
  rmSync(tmp, { recursive: true, force: true })
}

const draw = Effect.gen(function* () {
  for (const picture of Pictures.PICTURES) {
    const spec = yield* Pictures.spec(picture, kept)
    yield* Plot.writePicture(docs, picture.name, spec, "png")
    const record = { name: picture.name, command: picture.command, data: Render.specData(spec) }
    writeFileSync(join(docs, `${picture.name}.json`), `${JSON.stringify(record)}\n`)
    console.log(`wrote docs/pictures/${picture.name}.png and .json  (${picture.command})`)
  }
})
await Effect.runPromise(draw.pipe(Effect.provide(NodeContext.layer)))
