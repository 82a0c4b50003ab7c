/**
 * The runner processes `stepwise sweep` starts on its own machine (all its runners but the
 * first, which it hosts itself), in two moves: spawned as early as the command line shows a sweep
 * (`bin`, before the sweep loads its own modules), each standing by with the runner's modules
 * loaded (`RunnerMain`); then started once the sweep knows its storage (`start`). How many
 * `prestart` spawns is a guess from the command line; the sweep takes what it needs (`take`),
 * ends the rest and spawns any missing.
 *
 * Node builtins only: `bin` imports this before anything else.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { availableParallelism } from "node:os"
import { fileURLToPath } from "node:url"

const ENTRY = fileURLToPath(new URL("./RunnerMain.js", import.meta.url))

/** What a standing-by runner waits for: its storage URL, its port, the recipe files to warm. */
export interface Start {
  readonly type: "start"
  readonly storage: string
  readonly port: number
  readonly warm: ReadonlyArray<string>
}

/**
 * A standing-by runner: with this process's node flags (a memory limit, a profiler), its output
 * piped (the sweep writes it to the runner's log once it knows where), and an IPC channel (the
 * start message; and a runner stops when its sweep dies).
 */
export const spawnStandby = (): ChildProcess => {
  const child = spawn(process.execPath, [...process.execArgv, ENTRY], {
    stdio: ["ignore", "pipe", "pipe", "ipc"]
  })
  // (a failed spawn shows as the child's exit, which the sweep watches)
  child.on("error", () => {})
  return child
}

/** Sends a standing-by runner its storage and port. */
export const start = (child: ChildProcess, how: Omit<Start, "type">): void => {
  child.send({ type: "start", ...how } satisfies Start)
}

let standby: Array<ChildProcess> = []

/**
 * The runners `stepwise sweep ARGS` will start here, as its command line says: `--runners N`, by
 * default one per core; none for help. (@effect/cli parses the real command line later; a wrong
 * guess costs a spawn or a late start, never a wrong sweep.)
 */
export const guess = (args: ReadonlyArray<string>): number => {
  if (args.some((a) => a === "--help" || a === "-h" || a === "--wizard" || a === "--version")) return 0
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    const value = a === "--runners" ? args[i + 1] : a.startsWith("--runners=") ? a.slice(10) : undefined
    if (value === undefined) continue
    const n = Number(value)
    return Number.isSafeInteger(n) && n >= 0 ? Math.min(n, 4 * availableParallelism()) : 0
  }
  return availableParallelism()
}

/**
 * Spawns the runner processes a sweep with these arguments will want, standing by: all its
 * runners but the first, which the sweep hosts itself.
 */
export const prestart = (args: ReadonlyArray<string>): void => {
  for (let i = guess(args) - 1; i > 0; i--) standby.push(spawnStandby())
}

/** Up to `n` of the standing-by runners (still alive); the others are ended. */
export const take = (n: number): Array<ChildProcess> => {
  const alive = standby.filter((c) => c.exitCode === null && c.signalCode === null)
  standby = []
  for (const c of alive.slice(n)) c.kill("SIGTERM")
  return alive.slice(0, n)
}
