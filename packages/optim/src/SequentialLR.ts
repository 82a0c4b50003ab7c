import { Either, ParseResult, Schema } from "effect"
import type { Hyper } from "./Optimizer.js"
import {
  type Any,
  bisectRight,
  type Cadence,
  HyperSchema,
  type Json,
  JsonValue,
  jsonState,
  make as makeScheduler,
  type Scheduled,
  type Scheduler
} from "./Scheduler.js"

export interface State {
  readonly base: Hyper
  readonly epoch: number
  /** The active scheduler with its own state. */
  readonly inner: Scheduled
}

/**
 * The state as JSON: the active scheduler's state through that scheduler's own `stateSchema`
 * (which one is active follows from `epoch`).
 */
const stateSchema = (schedulers: ReadonlyArray<Any>, milestones: ReadonlyArray<number>) =>
  jsonState(
    Schema.transformOrFail(
      Schema.Struct({ base: HyperSchema, epoch: Schema.NonNegativeInt, inner: JsonValue }),
      Schema.declare((u: unknown): u is State => typeof u === "object" && u !== null && "inner" in u),
      {
        strict: true,
        decode: (e, _, ast) => {
          const active = schedulers[bisectRight(milestones, e.epoch)]
          return Either.match(active.start(e.base).decode(e.inner), {
            onLeft: (error) =>
              ParseResult.fail(new ParseResult.Type(ast, e.inner, `inner: ${error.message}`)),
            onRight: (inner) => ParseResult.succeed({ base: e.base, epoch: e.epoch, inner })
          })
        },
        encode: (s, _, ast) =>
          Either.match(s.inner.encode(), {
            onLeft: (error) => ParseResult.fail(new ParseResult.Type(ast, s, `inner: ${error.message}`)),
            onRight: (inner: Json) => ParseResult.succeed({ base: s.base, epoch: s.epoch, inner })
          })
      }
    )
  )

/**
 * Runs `schedulers[i]` from `milestones[i - 1]` on, each restarting from the base values at its
 * milestone (PyTorch's `SequentialLR`, which calls `step(0)` there). All share one cadence.
 */
export const make = (
  schedulers: ReadonlyArray<Any>,
  milestones: ReadonlyArray<number>,
  cadence: Cadence = schedulers[0].cadence
): Scheduler<State> =>
  makeScheduler({
    name: "SequentialLR",
    cadence,
    stateSchema: stateSchema(schedulers, milestones),
    init: (base) => ({ base, epoch: 0, inner: schedulers[0].start(base) }),
    step: (s) => {
      const epoch = s.epoch + 1
      const i = bisectRight(milestones, epoch)
      const restart = i > 0 && milestones[i - 1] === epoch
      return restart
        ? Either.right({ base: s.base, epoch, inner: schedulers[i].start(s.base) })
        : Either.map(s.inner.step(), (inner) => ({ base: s.base, epoch, inner }))
    },
    current: (s) => s.inner.hyper
  })
