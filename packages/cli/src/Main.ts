/** Wires the command tree (`Cli`) to the command handlers. */
import { type CliApp, Command } from "@effect/cli"
import * as tf from "@tensorflow/tfjs-core"
import { Console, Effect } from "effect"
import * as Cli from "./Cli.js"
import { COMMAND_LINE, ConfigError } from "./Errors.js"
import * as Help from "./Help.js"
import { layerOutput } from "./Progress.js"

const withOutput =
  <A extends { readonly json: boolean }, E, R>(f: (args: A) => Effect.Effect<void, E, R>) =>
  (args: A) =>
    f(args).pipe(Effect.provide(layerOutput(args.json)))

/**
 * A command's handler from its module, loaded when that command runs: `train` never loads the
 * sweep's cluster and SQL libraries, `--help` none of the engines (start-up is part of every run).
 */
const lazy =
  <A, E, R>(load: () => Promise<{ readonly run: (args: A) => Effect.Effect<void, E, R> }>) =>
  (args: A): Effect.Effect<void, E, R> =>
    Effect.flatMap(Effect.promise(load), (m) => m.run(args))

const command = Cli.root.pipe(
  Command.withSubcommands([
    Cli.train.pipe(Command.withHandler(withOutput(lazy(() => import("./Train.js"))))),
    Cli.lrFind.pipe(Command.withHandler(withOutput(lazy(() => import("./LrFind.js"))))),
    Cli.stats.pipe(Command.withHandler(withOutput(lazy(() => import("./Stats.js"))))),
    Cli.evaluate.pipe(Command.withHandler(withOutput(lazy(() => import("./Eval.js"))))),
    Cli.predict.pipe(Command.withHandler(withOutput(lazy(() => import("./Predict.js"))))),
    Cli.exportWeights.pipe(Command.withHandler(withOutput(lazy(() => import("./Export.js"))))),
    Cli.plot.pipe(Command.withHandler(withOutput(lazy(() => import("./Plot.js"))))),
    Cli.download.pipe(Command.withHandler(withOutput(lazy(() => import("./Download.js"))))),
    Cli.sweep.pipe(Command.withHandler(withOutput(lazy(() => import("./Sweep.js"))))),
    Cli.runner.pipe(Command.withHandler(lazy(() => import("./Runner.js"))))
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
