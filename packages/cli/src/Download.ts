/** `stepwise download rps --to DIR`: the full-size Rock Paper Scissors images. */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { type Errors as DataErrors, Rps } from "@stepwise/data"
import { Effect } from "effect"
import type * as Cli from "./Cli.js"
import { Output } from "./Progress.js"

export type Args = Cli.Values<typeof Cli.download>

export const run = (args: Args) =>
  Effect.gen(function* () {
    const out = yield* Output
    const baseUrl = process.env.STEPWISE_RPS_BASE_URL
    const result = yield* Rps.downloadRps(args.to, {
      ...(baseUrl === undefined ? {} : { baseUrl }),
      onProgress: (p) =>
        out.status(
          `${p.file}: ${(p.received / 1e6).toFixed(1)} MB${p.total === undefined ? "" : ` of ${(p.total / 1e6).toFixed(1)} MB`}`
        )
    })
    yield* out.clearStatus
    for (const a of result.archives) {
      yield* out.line(
        a.skipped ? `${a.name}: already there, skipped` : `${a.name}: ${a.size} bytes, sha256 ${a.sha256}`
      )
    }
    yield* out.line(`training set: ${result.train}`)
    yield* out.line(`test set:     ${result.test}`)
    yield* out.line(`train on it: stepwise train --data ${result.train} --val ${result.test} --resize 28`)
    yield* out.json({ command: "download", dataset: args.dataset, ...result })
  }).pipe(Effect.provide(NodeHttpClient.layerUndici))
export type _Errors = DataErrors.DownloadError
