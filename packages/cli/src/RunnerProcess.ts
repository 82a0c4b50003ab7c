/**
 * A runner `stepwise sweep` started on its own machine, once `RunnerMain` has its storage and
 * port: `stepwise runner` (`Runner.run`) without the command line's parser and the other
 * commands' definitions, which a runner's main thread would load for nothing (a second or so of
 * CPU per runner, on the cores the trials need). Users start runners with `stepwise runner`,
 * which runs the same `Runner.run`.
 *
 * As `BinMain`: a failure is one `stepwise: ` line on stderr and exit code 1 (130 after a
 * signal).
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Option } from "effect"
import { exitWith } from "./ProcessExit.js"
import * as Runner from "./Runner.js"

export const runProcess = (storage: string, port: number, warm: ReadonlyArray<string>): void =>
  NodeRuntime.runMain(
    Runner.runReported({ storage, host: Option.none(), port: Option.some(port) }, { inline: warm }).pipe(
      Effect.provide(NodeContext.layer)
    ),
    {
      disableErrorReporting: true,
      teardown: (exit) => exitWith(Exit.isSuccess(exit) ? 0 : Cause.isInterruptedOnly(exit.cause) ? 130 : 1)
    }
  )
