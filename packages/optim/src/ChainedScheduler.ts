import { Either, ParseResult, Schema } from "effect"
import type { Hyper } from "./Optimizer.js"
import {
  type Any,
  type Cadence,
  HyperSchema,
  JsonValue,
  jsonState,
  make as makeScheduler,
  type Scheduled,
  type Scheduler,
  type Signal
} from "./Scheduler.js"

export interface State {
  readonly base: Hyper
  /** Every scheduler with its own state, in order. */
  readonly inner: ReadonlyArray<Scheduled>
}

/** The state as JSON: each scheduler's state through its own `stateSchema`. */
const stateSchema = (schedulers: ReadonlyArray<Any>) =>
  jsonState(
    Schema.transformOrFail(
      Schema.Struct({ base: HyperSchema, inner: Schema.Array(JsonValue) }),
      Schema.declare((u: unknown): u is State => typeof u === "object" && u !== null && "inner" in u),
      {
        strict: true,
        decode: (e, _, ast) => {
          if (e.inner.length !== schedulers.length) {
            return ParseResult.fail(
              new ParseResult.Type(
                ast,
                e.inner,
                `inner: ${schedulers.length} states expected, got ${e.inner.length}`
              )
            )
          }
          return Either.match(Either.all(schedulers.map((sch, i) => sch.start(e.base).decode(e.inner[i]))), {
            onLeft: (error) =>
              ParseResult.fail(new ParseResult.Type(ast, e.inner, `inner: ${error.message}`)),
            onRight: (inner) => ParseResult.succeed({ base: e.base, inner })
          })
        },
        encode: (s, _, ast) =>
          Either.match(Either.all(s.inner.map((i) => i.encode())), {
            onLeft: (error) => ParseResult.fail(new ParseResult.Type(ast, s, `inner: ${error.message}`)),
            onRight: (inner) => ParseResult.succeed({ base: s.base, inner })
          })
      }
    )
  )

/**
 * Steps every scheduler together; the lr is the base times each one's factor `lr_i / base`,
 * which is PyTorch's `ChainedScheduler` for its multiplicative schedulers (Step, MultiStep,
 * Exponential, Lambda-like, cosine with etaMin 0 before its first minimum). Momentum / beta1:
 * the last scheduler that moves it wins.
 */
export const make = (
  schedulers: ReadonlyArray<Any>,
  cadence: Cadence = schedulers[0].cadence
): Scheduler<State> =>
  makeScheduler({
    name: "ChainedScheduler",
    cadence,
    stateSchema: stateSchema(schedulers),
    init: (base) => ({ base, inner: schedulers.map((s) => s.start(base)) }),
    step: (s, signal?: Signal) =>
      Either.map(Either.all(s.inner.map((inner) => inner.step(signal))), (inner) => ({
        base: s.base,
        inner
      })),
    current: ({ base, inner }) => {
      let out: Hyper = base
      let factor = 1
      for (const sch of inner) {
        const h = sch.hyper
        factor *= base.lr === 0 ? 0 : h.lr / base.lr
        if (h.momentum !== base.momentum) out = { ...out, momentum: h.momentum }
        if (h.beta1 !== base.beta1) out = { ...out, beta1: h.beta1 }
      }
      return { ...out, lr: base.lr * factor }
    }
  })
