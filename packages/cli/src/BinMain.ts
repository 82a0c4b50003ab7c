/**
 * The `stepwise` executable, after `bin` (which starts a sweep's runners first). Failures end as
 * one line on stderr and a non-zero exit code: 2 for a command line @effect/cli rejects (it
 * already printed why), 1 for everything else, 130 after Ctrl-C. Never a stack trace.
 */
import { ValidationError } from "@effect/cli"
// Subpaths, not the package index: the index loads all of platform-node (HTTP, sockets, cluster,
// workers), a noticeable part of every command's start-up.
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect, Exit } from "effect"
import { formatError } from "./Errors.js"
import { main } from "./Main.js"
import { exitWith } from "./ProcessExit.js"

/**
 * @effect/cli prints a rejected command line itself (`Console.error`); this gives those lines the
 * same `stepwise: ` prefix as every other failure, without the trailing blank line.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching escape codes is the point
const ANSI = /\x1b\[[0-9;]*m/g
const plain = !(process.stderr.isTTY === true && (process.env.NO_COLOR ?? "") === "")

const prefixedErrors = (console: Console.Console): Console.Console => ({
  ...console,
  error: (...args) =>
    console.error(
      ...args.map((a) =>
        typeof a === "string"
          ? // colour only on a terminal without NO_COLOR
            (plain ? a.replace(ANSI, "") : a)
              .trimEnd()
              .split("\n")
              .map((l) => (l.length > 0 ? `stepwise: ${l}` : l))
              .join("\n")
          : a
      )
    )
})

/**
 * A failure is reported here, through the Console (which adds the `stepwise: ` prefix); a command line
 * @effect/cli rejected was already printed by it. The exit still fails, for the exit code.
 */
const report = (cause: Cause.Cause<unknown>) => {
  if (Cause.isInterruptedOnly(cause)) return Effect.void
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some" && ValidationError.isValidationError(failure.value)) return Effect.void
  return Console.error(formatError(failure._tag === "Some" ? failure.value : Cause.squash(cause)))
}

const program = Console.consoleWith((console) =>
  main(process.argv).pipe(Effect.tapErrorCause(report), Effect.withConsole(prefixedErrors(console)))
).pipe(Effect.provide(NodeContext.layer))

// A process started with an IPC channel (a sweep's runners, which `sweep` spawns) stops when its
// parent dies, even by SIGKILL: as after Ctrl-C, its run folders consistent.
if (process.send !== undefined) process.once("disconnect", () => process.kill(process.pid, "SIGTERM"))

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit) => exitWith(exitCode(exit))
})

function exitCode(exit: Exit.Exit<unknown, unknown>): number {
  if (Exit.isSuccess(exit)) return 0
  const cause = exit.cause
  if (Cause.isInterruptedOnly(cause)) return 130
  const failure = Cause.failureOption(cause)
  return failure._tag === "Some" && ValidationError.isValidationError(failure.value) ? 2 : 1
}
