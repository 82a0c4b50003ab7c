/** Wires the command tree (`Cli`) to the command handlers. */
import { type CliApp, Command } from "@effect/cli"
import * as tf from "@tensorflow/tfjs-core"
import { Console, Effect } from "effect"
import * as Cli from "./Cli.js"
import * as Download from "./Download.js"
import { COMMAND_LINE, ConfigError } from "./Errors.js"
import * as Eval from "./Eval.js"
import * as Export from "./Export.js"
import * as Help from "./Help.js"
import * as LrFind from "./LrFind.js"
import * as Plot from "./Plot.js"
import * as Predict from "./Predict.js"
import { layerOutput } from "./Progress.js"
import * as Runner from "./Runner.js"
import * as Stats from "./Stats.js"
import * as Sweep from "./Sweep.js"
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
    Cli.predict.pipe(Command.withHandler(withOutput(Predict.run))),
    Cli.exportWeights.pipe(Command.withHandler(withOutput(Export.run))),
    Cli.plot.pipe(Command.withHandler(withOutput(Plot.run))),
    Cli.download.pipe(Command.withHandler(withOutput(Download.run))),
    Cli.sweep.pipe(Command.withHandler(withOutput(Sweep.run))),
    Cli.runner.pipe(Command.withHandler(Runner.run))
  ])
)

const run = Command.run(command, { name: "stepwise", version: "0.1.0" })

/**
 * A flag given twice (`--lr 0.1 ... --lr 0.2`): @effect/cli would call the second one unknown,
 * so it is named here first.
 */
export const repeatedFlag = (args: ReadonlyArray<string>): string | undefined => {
  const seen = new Set<string>()
  for (const a of args) {
    if (a === "--") return undefined
    if (!/^--[a-z]/.test(a)) continue
    const flag = a.split("=")[0]
    if (seen.has(flag)) return flag
    seen.add(flag)
  }
  return undefined
}

/** Runs the command line `argv` (as `process.argv`). */
export const main = (argv: ReadonlyArray<string>): Effect.Effect<void, unknown, CliApp.CliApp.Environment> =>
  Effect.gen(function* () {
    // tfjs's "install the node backend" banner is advice for developers, not for CLI users.
    tf.enableProdMode()
    const help = Help.requested(argv.slice(2))
    if (help !== undefined) {
      const style = Help.styleFor(process.stdout.isTTY === true, process.env)
      return yield* Console.log(
        help.command === undefined ? Help.root(style) : Help.command(help.command, style)
      )
    }
    const twice = repeatedFlag(argv.slice(2))
    if (twice !== undefined) {
      return yield* new ConfigError({ file: COMMAND_LINE, field: twice, reason: "given twice; give it once" })
    }
    return yield* run(argv)
  })
