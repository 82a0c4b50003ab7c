/**
 * The CLI as a user runs it, for the end-to-end tests: the built `dist/bin.js` in a child process,
 * spawned asynchronously (a long `spawnSync` blocks the test worker, which then misses vitest's
 * RPC and fails the run with "Timeout calling onTaskUpdate").
 */
import { spawn } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

export const root = fileURLToPath(new URL("../../..", import.meta.url))
export const bin = join(root, "packages/cli/dist/bin.js")

export interface Result {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export interface RunOptions {
  readonly cwd?: string | undefined
  readonly env?: Record<string, string> | undefined
  readonly timeout?: number | undefined
}

/** Runs `cmd args` to its end, collecting its output. */
export const run = (cmd: string, args: ReadonlyArray<string>, options: RunOptions = {}): Promise<Result> =>
  new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: options.cwd ?? root,
      env: { ...process.env, ...options.env },
      timeout: options.timeout
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => {
      stdout += d
    })
    child.stderr.on("data", (d) => {
      stderr += d
    })
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })

/** `stepwise args...`. */
export const cli = (args: ReadonlyArray<string>, options: RunOptions = {}): Promise<Result> =>
  run(process.execPath, [bin, ...args], options)

/** The JSON object on the last stdout line (what `--json` promises). */
export const lastJson = (r: Pick<Result, "stdout">): any =>
  JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "")
