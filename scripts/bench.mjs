/**
 * `npm run bench`: issue 14's goals, each measured side by side with PyTorch (Debian's
 * python3-torch/torchvision) in one run, then one summary table. Each bench prints its own
 * tables and `GOAL {json}` lines; with torch absent they print our numbers only.
 *   (b) packages/core/bench/step.ts       CNN2 Adam step, batch 16
 *   (a, c, e) packages/cli/bench/train.mjs  the real `stepwise train`: per-epoch time, the
 *                                          10-epoch recipe from process start, peak RSS
 *   (d) packages/data/bench/images.ts     first-pass decode + resize of 300x300 photographs
 *   issue 12: packages/cli/bench/sweep.mjs   a 6-trial sweep on 2 runners vs the trials in sequence
 * `--quick` is passed on (shorter runs, for checking that the benches work).
 */
import { execFileSync, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const extra = process.argv.slice(2)
execFileSync("npx", ["tsc", "-b", "packages/core/bench", "packages/data/bench"], {
  cwd: root,
  stdio: "inherit"
})

const benches = [
  ["packages/core/.tsbuild/bench/step.js"],
  ["packages/cli/bench/train.mjs"],
  ["packages/data/.tsbuild/bench/images.js"],
  ["packages/cli/bench/sweep.mjs"]
]

const run = (script) =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...extra], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.on("data", (d) => {
      out += d
      process.stdout.write(d)
    })
    child.on("error", reject)
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${script} exited ${code}`))))
  })

const goals = []
let failed = false
for (const [script] of benches) {
  console.log(`\n== node ${script} ${extra.join(" ")}`)
  try {
    const out = await run(script)
    for (const line of out.split("\n")) if (line.startsWith("GOAL ")) goals.push(JSON.parse(line.slice(5)))
  } catch (e) {
    failed = true
    console.error(String(e))
  }
}
goals.sort((a, b) => a.name.localeCompare(b.name))
const f = (x, unit) => (x === undefined || x === null ? "-" : `${x.toFixed(unit === "MB" ? 0 : 3)} ${unit}`)
console.log("\nissue 14 goals, stepwise / reference, measured in this run")
console.log("| goal | stepwise | reference | ratio | target |\n| --- | --- | --- | --- | --- |")
for (const g of goals)
  console.log(
    `| ${g.name} | ${f(g.ours, g.unit)} | ${f(g.theirs, g.unit)} | ${g.ratio == null ? "n/a (torch missing)" : `${g.ratio.toFixed(2)}x`} | ${g.target} |`
  )
if (failed) process.exit(1)
