import { Effect, Either, Schema } from "effect"
import { InvalidHyperparameter, SchedulerStepError } from "./Errors.js"
import * as F from "./Fields.js"
import { EpochState, make as makeScheduler, type Scheduler, withMomentum } from "./Scheduler.js"

export const fields = {
  maxLr: F.required(F.nonNegative, "peak learning rate"),
  totalSteps: F.optional(
    F.positiveInt,
    "total mini-batches of the cycle; or give epochs (and stepsPerEpoch)"
  ),
  epochs: F.optional(
    F.positiveInt,
    "epochs of the cycle, with stepsPerEpoch (total = epochs * stepsPerEpoch)"
  ),
  stepsPerEpoch: F.optional(
    F.positiveInt,
    "mini-batches per epoch, with epochs (a training loop passes its loader's count)"
  ),
  pctStart: F.withDefault(F.openUnitInterval, 0.3, "fraction of the cycle spent increasing the lr"),
  annealStrategy: F.withDefault(Schema.Literal("cos", "linear"), "cos", "annealing curve: cos or linear"),
  cycleMomentum: F.withDefault(Schema.Boolean, true, "cycle momentum (or beta1) inversely to the lr"),
  baseMomentum: F.withDefault(F.finite, 0.85, "lowest momentum (at the lr peak)"),
  maxMomentum: F.withDefault(F.finite, 0.95, "highest momentum (at the start and end)"),
  divFactor: F.withDefault(F.positive, 25, "initial lr = maxLr / divFactor"),
  finalDivFactor: F.withDefault(F.positive, 1e4, "final lr = initial lr / finalDivFactor"),
  threePhase: F.withDefault(Schema.Boolean, false, "a third phase back down to the initial lr first")
}

/** PyTorch's rule: "You must define either total_steps OR (epochs AND steps_per_epoch)". */
export const Config = Schema.TaggedStruct("OneCycleLR", fields).pipe(
  Schema.filter(
    (c) =>
      c.totalSteps !== undefined ||
      c.epochs !== undefined || {
        path: ["totalSteps"],
        message: "You must define either totalSteps OR (epochs AND stepsPerEpoch)"
      }
  )
)
export type Config = typeof Config.Type

/**
 * The cycle's length: `totalSteps`, or `epochs * stepsPerEpoch` (the config's, else the
 * loader's `stepsPerEpoch` given here). Never a silent 1 step per epoch: without either it fails
 * naming `stepsPerEpoch`.
 */
export const totalSteps = (
  c: Config,
  stepsPerEpoch?: number
): Either.Either<number, InvalidHyperparameter> => {
  if (c.totalSteps !== undefined) return Either.right(c.totalSteps)
  const perEpoch = c.stepsPerEpoch ?? stepsPerEpoch
  if (perEpoch === undefined || !Number.isInteger(perEpoch) || perEpoch <= 0 || c.epochs === undefined) {
    return Either.left(
      new InvalidHyperparameter({
        config: "OneCycleLR",
        field: c.epochs === undefined ? "totalSteps" : "stepsPerEpoch",
        value: perEpoch,
        reason: "You must define either totalSteps OR (epochs AND stepsPerEpoch, a positive integer)"
      })
    )
  }
  return Either.right(c.epochs * perEpoch)
}

const cosine = (start: number, end: number, pct: number) =>
  end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1)
const linear = (start: number, end: number, pct: number) => (end - start) * pct + start

/**
 * The 1cycle policy over `total` mini-batches: from `maxLr / divFactor` up to `maxLr` over
 * `pctStart` of the steps, then down to `initial / finalDivFactor` (three phases: back to the
 * initial lr first). Momentum / beta1 moves inversely. Step `total` is allowed (PyTorch's value
 * there extrapolates slightly past the minimum); one more fails like PyTorch's ValueError.
 */
export const scheduler = (c: Config, total: number): Scheduler<EpochState> => {
  const initial = c.maxLr / c.divFactor
  const min = initial / c.finalDivFactor
  const [hi, lo] = [c.maxMomentum, c.baseMomentum]
  const phases = c.threePhase
    ? [
        { end: c.pctStart * total - 1, lr: [initial, c.maxLr], m: [hi, lo] },
        { end: 2 * c.pctStart * total - 2, lr: [c.maxLr, initial], m: [lo, hi] },
        { end: total - 1, lr: [initial, min], m: [hi, hi] }
      ]
    : [
        { end: c.pctStart * total - 1, lr: [initial, c.maxLr], m: [hi, lo] },
        { end: total - 1, lr: [c.maxLr, min], m: [lo, hi] }
      ]
  const anneal = c.annealStrategy === "cos" ? cosine : linear
  return makeScheduler({
    name: "OneCycleLR",
    cadence: "batch",
    stateSchema: EpochState,
    init: (base) => ({ epoch: 0, base }),
    step: (s, signal) => {
      const epoch = signal?.epoch ?? s.epoch + 1
      return epoch > total
        ? Either.left(
            new SchedulerStepError({
              scheduler: "OneCycleLR",
              reason: `Tried to step ${epoch} times. The specified number of total steps is ${total}`
            })
          )
        : Either.right({ epoch, base: s.base })
    },
    current: ({ base, epoch }) => {
      let start = 0
      for (let i = 0; i < phases.length; i++) {
        const phase = phases[i]
        if (epoch <= phase.end || i === phases.length - 1) {
          const pct = (epoch - start) / (phase.end - start)
          const lr = anneal(phase.lr[0], phase.lr[1], pct)
          return withMomentum(base, lr, c.cycleMomentum ? anneal(phase.m[0], phase.m[1], pct) : undefined)
        }
        start = phase.end
      }
      return base // unreachable: the last phase always matches
    }
  })
}

/** Decodes, resolves the cycle length and builds (`stepsPerEpoch`: the loader's, for `epochs`). */
export const make = (input: Omit<typeof Config.Encoded, "_tag">, stepsPerEpoch?: number) =>
  F.decode(Config)({ ...input, _tag: "OneCycleLR" }).pipe(
    Effect.flatMap((c) => Effect.map(totalSteps(c, stepsPerEpoch), (total) => scheduler(c, total)))
  )
