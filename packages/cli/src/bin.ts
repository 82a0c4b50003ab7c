#!/usr/bin/env node
/**
 * The `stepwise` executable. Failures end as one line on stderr and a non-zero exit code:
 * 2 for a command line @effect/cli rejects (it already printed why), 1 for everything else,
 * 130 after Ctrl-C. Never a stack trace.
 */
import { ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import { formatError } from "./Errors.js"
import { main } from "./Main.js"

const program = main(process.argv).pipe(Effect.provide(NodeContext.layer))

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) => {
    if (Exit.isSuccess(exit)) return onExit(0)
    const cause = exit.cause
    if (Cause.isInterruptedOnly(cause)) return onExit(130)
    const failure = Cause.failureOption(cause)
    if (failure._tag === "Some" && ValidationError.isValidationError(failure.value)) return onExit(2)
    const error = failure._tag === "Some" ? failure.value : Cause.squash(cause)
    process.stderr.write(`stepwise: ${formatError(error)}\n`)
    return onExit(1)
  }
})
