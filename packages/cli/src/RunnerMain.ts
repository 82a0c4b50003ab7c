/**
 * The entry point of the runners `stepwise sweep` starts on its own machine: `stepwise runner`
 * (`Runner.run`) without the command line's parser and the other commands' definitions, which
 * a runner's main thread would load for nothing (a second or so of CPU per runner, on the cores
 * the trials need). Its arguments are the sweep's, always `STORAGE PORT`; users start runners
 * with `stepwise runner`, which runs the same `Runner.run`.
 *
 * As `bin.ts`: a failure is one `stepwise: ` line on stderr and exit code 1 (130 after a
 * signal), and the runner stops when the sweep that started it dies (its IPC channel closes).
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect, Exit, Option } from "effect"
import { formatError } from "./Errors.js"
import { exitWith } from "./ProcessExit.js"
import * as Runner from "./Runner.js"

if (process.send !== undefined) process.once("disconnect", () => process.kill(process.pid, "SIGTERM"))

const [storage, port] = process.argv.slice(2)

const program = Runner.run({
  storage,
  host: Option.none(),
  port: Option.some(Number(port))
}).pipe(
  Effect.tapErrorCause((cause) =>
    Cause.isInterruptedOnly(cause)
      ? Effect.void
      : Console.error(
          `stepwise: ${formatError(Option.getOrElse(Cause.failureOption(cause), () => Cause.squash(cause)))}`
        )
  ),
  Effect.provide(NodeContext.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit) => exitWith(Exit.isSuccess(exit) ? 0 : Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
})
