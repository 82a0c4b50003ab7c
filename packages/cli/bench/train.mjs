/**
 * `node packages/cli/bench/train.mjs` (part of the root `npm run bench`): the CLI as users run
 * it, next to PyTorch (Debian's python3-torch 1.13, 2 threads) in the same run, for three of
 * issue 14's goals. Every number comes from the real `stepwise train` process (no bench path):
 *
 * (a) per-epoch training time: `stepwise train --config examples/chapter6-adam.json --epochs 6
 *     --json` on the bundled rps-28, median of epochs 2-6 of its `epochSeconds` (row to row: training,
 *     validation with its accuracy counts, the running training accuracy, checkpoint and metrics
 *     files; `--exact-train-accuracy`, off by default, would add an eval pass), against
 *     core/scripts/bench_cli_torch.py `cached` (images decoded once into tensors, train +
 *     validation per epoch). Goal <= 1.0x. (`--json`, like any run whose output is not a
 *     terminal, draws no live bar; on a terminal the bar's per-batch consumer adds its share.)
 *     An epoch's files are written while the next one trains, so a row's seconds include the
 *     wait for the previous epoch's files, not their whole write.
 * (c) the chapter's 10-epoch recipe from process start to exit, against the book's pipeline
 *     (`book`: ImageFolder decoding every epoch) on the same files. Goal <= 0.5x.
 * (e) peak RSS (/usr/bin/time's maximum resident set) of a one-epoch `stepwise train` on 20,000
 *     images (the bundled training images hard-linked/copied ~8 times) against their decoded
 *     float32 pixels. Goal <= 2x + 200 MB.
 *
 * Prints a table and one `GOAL {json}` line per goal for the root runner. `--quick` shortens
 * (4 epochs for (a), 3 for (c), 5,000 images for (e)).
 */
import { execFileSync, spawnSync } from "node:child_process"
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const quick = process.argv.includes("--quick")
const here = (p) => fileURLToPath(new URL(p, import.meta.url))
const BIN = here("../bin/stepwise.js")
const RECIPE = here("../../../examples/chapter6-adam.json")
const ROOT = here("../../data/assets/rps-28")
const TORCH_SCRIPT = here("../../core/scripts/bench_cli_torch.py")
const PYTHON = "/usr/bin/python3"
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const work = mkdtempSync(join(tmpdir(), "stepwise-bench-cli-"))

const torchAvailable = (() => {
  try {
    execFileSync(PYTHON, ["-c", "import torch, torchvision"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

/** Runs a command, returning its stdout, wall seconds (spawn to exit) and peak RSS in MB. */
const run = (cmd, args) => {
  const timed = existsSync("/usr/bin/time")
  const t0 = performance.now()
  const r = timed
    ? spawnSync("/usr/bin/time", ["-f", "STEPWISE_MAXRSS_KB=%M", cmd, ...args], {
        encoding: "utf8",
        maxBuffer: 1 << 28
      })
    : spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 28 })
  const seconds = (performance.now() - t0) / 1000
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}:\n${r.stderr}`)
  const kb = /STEPWISE_MAXRSS_KB=(\d+)/.exec(r.stderr ?? "")
  return { stdout: r.stdout, seconds, rssMb: kb ? Number(kb[1]) / 1024 : undefined }
}

const lastJson = (stdout) =>
  JSON.parse(
    stdout
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .at(-1)
  )

const stepwise = (extra, out) => {
  const r = run(process.execPath, [
    BIN,
    "train",
    "--config",
    RECIPE,
    "--json",
    "--out",
    join(work, out),
    ...extra
  ])
  return { ...r, json: lastJson(r.stdout) }
}
const torch = (mode, root, epochs) => {
  const r = run(PYTHON, [TORCH_SCRIPT, mode, root, String(epochs)])
  return { ...r, json: lastJson(r.stdout) }
}

const goals = []
const goal = (name, ours, theirs, target, unit, note) => {
  const ratio = theirs === undefined ? undefined : ours / theirs
  goals.push({ name, ours, theirs, ratio, target, unit, note })
}

// (a) per-epoch time, epochs 2.. (epoch 1 includes start-up work on both sides).
const epochsA = quick ? 4 : 6
const a = stepwise(["--epochs", String(epochsA)], "a")
const oursEpoch = median(a.json.epochSeconds.slice(1))
const ta = torchAvailable ? torch("cached", ROOT, epochsA) : undefined
goal(
  "(a) CLI per-epoch training time (rps-28, Adam, train + validation + per-epoch work)",
  oursEpoch,
  ta && median(ta.json.epochSeconds.slice(1)),
  "<= 1.0x (aim 0.7x)",
  "s",
  `stepwise epochs ${a.json.epochSeconds.map((s) => s.toFixed(2)).join(", ")}` +
    (ta ? `; PyTorch ${ta.json.epochSeconds.map((s) => s.toFixed(2)).join(", ")}` : "")
)

// (c) the 10-epoch recipe end to end from process start.
const epochsC = quick ? 3 : 10
const c = stepwise(["--epochs", String(epochsC)], "c")
const tc = torchAvailable ? torch("book", ROOT, epochsC) : undefined
goal(
  `(c) chapter recipe end to end, ${epochsC} epochs from process start`,
  c.seconds,
  tc?.seconds,
  "<= 0.5x",
  "s",
  `book pipeline decodes every epoch${tc ? ` (its data set-up ${tc.json.dataSeconds.toFixed(1)} s)` : ""}`
)

// (e) peak memory of one training epoch at 20,000 images.
const N = quick ? 5000 : 20000
const big = join(work, "big")
let made = 0
const classes = readdirSync(join(ROOT, "rps")).sort()
const files = classes.flatMap((k) =>
  readdirSync(join(ROOT, "rps", k))
    .sort()
    .map((f) => [k, f])
)
for (const k of classes) mkdirSync(join(big, k), { recursive: true })
for (let copy = 0; made < N; copy++) {
  for (const [k, f] of files) {
    if (made >= N) break
    const to = join(big, k, `${copy}-${f}`)
    try {
      linkSync(join(ROOT, "rps", k, f), to)
    } catch {
      copyFileSync(join(ROOT, "rps", k, f), to)
    }
    made++
  }
}
const e = stepwise(["--epochs", "1", "--data", big, "--val", join(ROOT, "rps-test-set")], "e")
const pixelMb = (N * 3 * 28 * 28 * 4) / 2 ** 20
if (e.rssMb !== undefined) {
  goals.push({
    name: `(e) peak RSS, one epoch on ${N} images vs decoded float32 pixels (${pixelMb.toFixed(0)} MB)`,
    ours: e.rssMb,
    theirs: pixelMb,
    ratio: e.rssMb / pixelMb,
    target: `<= 2x + 200 MB = ${(2 * pixelMb + 200).toFixed(0)} MB`,
    unit: "MB",
    note: `${e.rssMb <= 2 * pixelMb + 200 ? "meets" : "misses"} the goal`
  })
} else console.log("(e) skipped: /usr/bin/time is missing")

rmSync(work, { recursive: true, force: true })
console.log("\nstepwise CLI vs PyTorch 1.13 (2 threads), same run")
console.log("| goal | stepwise | reference | ratio | target | note |\n| --- | --- | --- | --- | --- | --- |")
for (const g of goals) {
  const f = (x) => (x === undefined ? "-" : `${x.toFixed(g.unit === "MB" ? 0 : 2)} ${g.unit}`)
  console.log(
    `| ${g.name} | ${f(g.ours)} | ${f(g.theirs)} | ${g.ratio === undefined ? "n/a" : `${g.ratio.toFixed(2)}x`} | ${g.target} | ${g.note} |`
  )
}
if (!torchAvailable)
  console.log(
    "PyTorch/torchvision not installed (/usr/bin/python3 -c 'import torch, torchvision' failed): our numbers only"
  )
for (const g of goals) console.log(`GOAL ${JSON.stringify(g)}`)
