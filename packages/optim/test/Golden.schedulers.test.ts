import { LambdaLR, type Optimizer, type Scheduler, Schedulers } from "@stepwise/optim"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"
import { fixture } from "./golden.js"

interface Case {
  readonly name: string
  readonly config: { readonly _tag: string; readonly lambda?: string }
  readonly optimizer: "SGD" | "Adam"
  readonly stepsPerEpoch: number
  readonly metrics: ReadonlyArray<number> | null
  readonly epochs: ReadonlyArray<number> | null
  readonly values: ReadonlyArray<{ lr: number; momentum?: number; beta1?: number }>
}

const { cases } = fixture<{ cases: ReadonlyArray<Case> }>("schedulers.json")

/** The same functions as golden.py's LAMBDAS. */
const lambdas: Record<string, (e: number) => number> = {
  pow095: (e) => 0.95 ** e,
  step3half: (e) => 0.5 ** Math.floor(e / 3),
  warmup: (e) => Math.min(1, (e + 1) / 5)
}

const build = (c: Case): Scheduler.Any =>
  c.config._tag === "LambdaLR"
    ? LambdaLR.make(lambdas[c.config.lambda!])
    : Effect.runSync(
        Effect.flatMap(Schedulers.decode(c.config), (config) =>
          Schedulers.fromConfig(config, { stepsPerEpoch: c.stepsPerEpoch })
        )
      )

/** |a - b| <= 1e-9 |b| + 1e-15: relative, with an absolute floor for values that are 0 in PyTorch. */
const close = (a: number | undefined, b: number) =>
  a !== undefined && Math.abs(a - b) <= 1e-9 * Math.abs(b) + 1e-15

describe("schedulers against torch.optim.lr_scheduler 1.13", () => {
  it("has the fixture cases", () => {
    expect(cases.length).toBe(36)
  })

  for (const c of cases) {
    it(`${c.name}: lr${c.optimizer === "SGD" ? ", momentum" : ", beta1"} at every step`, () => {
      const scheduler = build(c)
      // the optimizer in golden.py: SGD(lr=0.1, momentum=0.9) or Adam(lr=0.1, betas=(0.9, 0.999))
      const base: Optimizer.Hyper =
        c.optimizer === "SGD" ? { lr: 0.1, momentum: 0.9 } : { lr: 0.1, beta1: 0.9 }
      let state = scheduler.start(base)
      c.values.forEach((expected, t) => {
        if (t > 0) {
          const signal = c.metrics
            ? { metric: c.metrics[t - 1] }
            : c.epochs
              ? { epoch: c.epochs[t - 1] }
              : undefined
          state = Either.getOrThrow(state.step(signal))
        }
        const h = state.hyper
        const where = `${c.name} at step ${t}: got ${JSON.stringify(h)}, torch ${JSON.stringify(expected)}`
        expect(close(h.lr, expected.lr), where).toBe(true)
        if (expected.momentum !== undefined) expect(close(h.momentum, expected.momentum), where).toBe(true)
        if (expected.beta1 !== undefined) expect(close(h.beta1, expected.beta1), where).toBe(true)
      })
      // the state through its schema and JSON text: a round trip changes nothing
      const text = JSON.stringify(Either.getOrThrow(state.encode()))
      const back = Either.getOrThrow(state.decode(JSON.parse(text)))
      expect(back.hyper).toEqual(state.hyper)
      expect(JSON.stringify(Either.getOrThrow(back.encode()))).toBe(text)
    })
  }
})
