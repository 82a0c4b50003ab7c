/**
 * The entry point of the runners `stepwise sweep` starts on its own machine (`RunnerStart`). It
 * loads the runner (`RunnerProcess`) and stands by until the sweep sends its storage, port and
 * the recipes to warm (`RunnerStart.Start`); then it runs as `stepwise runner --storage URL
 * --port P`, training on its own thread (`Runner.inlineEpochLayer`).
 *
 * It stops when the sweep that started it dies, even by SIGKILL (its IPC channel closes): as
 * after Ctrl-C, its run folders consistent.
 */
import type { Start } from "./RunnerStart.js"

if (process.send === undefined) {
  console.error("stepwise: this is a sweep's runner; start one with `stepwise runner --storage URL`")
  process.exit(2)
}
process.once("disconnect", () => process.kill(process.pid, "SIGTERM"))
// (its output is a pipe to the sweep, which may be gone while this runner shuts down)
for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {})

const started = new Promise<Start>((resolve) => {
  process.on("message", (m: Start) => {
    if (m.type === "start") resolve(m)
  })
})
const { runProcess } = await import("./RunnerProcess.js")
const start = await started
runProcess(start.storage, start.port, start.warm)
