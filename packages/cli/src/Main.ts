/** Wires the command tree (`Cli`) to the command handlers. */
import { Command } from "@effect/cli"
import { Effect } from "effect"
import * as Cli from "./Cli.js"
import { layerOutput } from "./Progress.js"
import * as Resolve from "./Resolve.js"

const withOutput =
  <A extends { readonly json: boolean }, E, R>(f: (args: A) => Effect.Effect<void, E, R>) =>
  (args: A) =>
    f(args).pipe(Effect.provide(layerOutput(args.json)))

const train = Cli.train.pipe(
  Command.withHandler(
    withOutput((args) =>
      Effect.gen(function* () {
        const recipe = yield* Resolve.resolve(args)
        yield* Effect.log(JSON.stringify(recipe))
      })
    )
  )
)

const command = Cli.root.pipe(
  Command.withSubcommands([train, Cli.lrFind, Cli.stats, Cli.evaluate, Cli.plot, Cli.download])
)

export const main = Command.run(command, { name: "stepwise", version: "0.1.0" })
