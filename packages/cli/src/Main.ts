/** Wires the command tree (`Cli`) to the command handlers. */
import { type CliApp, Command } from "@effect/cli"
import { Effect } from "effect"
import * as Cli from "./Cli.js"
import * as Download from "./Download.js"
import * as Eval from "./Eval.js"
import * as LrFind from "./LrFind.js"
import * as Plot from "./Plot.js"
import { layerOutput } from "./Progress.js"
import * as Stats from "./Stats.js"
import * as Train from "./Train.js"

const withOutput =
  <A extends { readonly json: boolean }, E, R>(f: (args: A) => Effect.Effect<void, E, R>) =>
  (args: A) =>
    f(args).pipe(Effect.provide(layerOutput(args.json)))

const command = Cli.root.pipe(
  Command.withSubcommands([
    Cli.train.pipe(Command.withHandler(withOutput(Train.run))),
    Cli.lrFind.pipe(Command.withHandler(withOutput(LrFind.run))),
    Cli.stats.pipe(Command.withHandler(withOutput(Stats.run))),
    Cli.evaluate.pipe(Command.withHandler(withOutput(Eval.run))),
    Cli.plot.pipe(Command.withHandler(withOutput(Plot.run))),
    Cli.download.pipe(Command.withHandler(withOutput(Download.run)))
  ])
)

/** Runs the command line `argv` (as `process.argv`). */
export const main: (argv: ReadonlyArray<string>) => Effect.Effect<void, unknown, CliApp.CliApp.Environment> =
  Command.run(command, { name: "stepwise", version: "0.1.0" })
