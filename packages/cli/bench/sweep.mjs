/**
 * `node packages/cli/bench/sweep.mjs` (part of the root `npm run bench`): issue 12's goal, a
 * 6-trial sweep on 2 runners against the same 6 trials trained one after another, all real CLI
 * processes on the bundled rps-28:
 *
 * - sequential: `stepwise train --config trials/tXX/recipe.json` for each trial's own recipe
 *   file, one after another (one process each, wall time summed);
 * - sweep: `stepwise sweep --runners 2` of those trials (wall time from process start to exit).
 *   Goal <= 0.6x on 2 cores.
 * - the engine's overhead per trial: (the same sweep on 1 runner - sequential) / 6. It holds the
 *   cluster (runner start, workflow start, storage, shard assignment) and the per-epoch
 *   activity's cost (restoring the last checkpoint in the runner's warm training thread); the
 *   1-runner / sequential ratio shows it apart from the second core.
 * - the trials per runner (from the runners' logs: which runner trained which trial).
 *
 * Prints a table and one `GOAL {json}` line. `--quick`: 1 epoch a trial (else 2).
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const quick = process.argv.includes("--quick")
const here = (p) => fileURLToPath(new URL(p, import.meta.url))
const BIN = here("../bin/stepwise.js")
const RECIPE = here("../../../examples/chapter6-adam.json")
const work = mkdtempSync(join(tmpdir(), "stepwise-bench-sweep-"))
const epochs = quick ? 1 : 2
const TRIALS = 6

const stepwise = (args) => {
  const t0 = performance.now()
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: work, encoding: "utf8", maxBuffer: 1 << 28 })
  const seconds = (performance.now() - t0) / 1000
  if (r.status !== 0) throw new Error(`stepwise ${args.join(" ")} exited ${r.status}:\n${r.stderr}`)
  return { json: JSON.parse(r.stdout.trim().split("\n").at(-1)), seconds }
}

const sweepFile = join(work, "sweep.yaml")
writeFileSync(
  sweepFile,
  `recipes: [${JSON.stringify(RECIPE)}]\nepochs: ${epochs}\ngrid:\n  optimizer.lr: [0.0001, 0.0002, 0.0003, 0.0005, 0.001, 0.002]\n`
)

const two = stepwise(["sweep", "--config", sweepFile, "--out", join(work, "two"), "--runners", "2", "--json"])
if (two.json.trials.length !== TRIALS) throw new Error(`expected ${TRIALS} trials`)
let sequential = 0
for (const t of two.json.trials) {
  const r = stepwise([
    ...["train", "--config", join(t.runDir, "recipe.json"), "--out", join(work, `seq-${t.id}`)],
    ...["--json", "--no-plots", "--no-tensorboard"]
  ])
  if (JSON.stringify(r.json.losses) !== JSON.stringify(t.losses))
    throw new Error(`${t.id}: the sweep's losses differ`)
  sequential += r.seconds
}
const one = stepwise(["sweep", "--config", sweepFile, "--out", join(work, "one"), "--runners", "1", "--json"])
const ratio = two.seconds / sequential
const oneRatio = one.seconds / sequential
// which runner trained which trial (a trial retrained elsewhere after a shard move counts twice)
const split = (dir) =>
  readdirSync(join(dir, "runners"))
    .sort()
    .map((f) => new Set(readFileSync(join(dir, "runners", f), "utf8").match(/^trial t\d+/gm) ?? []).size)
const overhead = (one.seconds - sequential) / TRIALS

console.log(`\nsweep of ${TRIALS} trials x ${epochs} epochs (chapter6-adam over 6 lrs), wall seconds`)
console.log("| run | seconds |\n| --- | --- |")
console.log(`| sequential: 6 x stepwise train | ${sequential.toFixed(1)} |`)
console.log(`| stepwise sweep --runners 2 | ${two.seconds.toFixed(1)} (${ratio.toFixed(2)}x, goal <= 0.6x) |`)
console.log(`| stepwise sweep --runners 1 | ${one.seconds.toFixed(1)} (${oneRatio.toFixed(2)}x) |`)
console.log(`| engine overhead per trial (1 runner - sequential) / 6 | ${overhead.toFixed(1)} |`)
console.log(`| trials per runner (2 runners) | ${split(join(work, "two")).join(" / ")} |`)
console.log(
  `GOAL ${JSON.stringify({ name: "sweep: 6 trials on 2 runners / sequential", ours: two.seconds, theirs: sequential, ratio, unit: "s", target: "<= 0.6x" })}`
)
