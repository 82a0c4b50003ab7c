/**
 * Writing your own optimizer, and proving it with the kit.
 *
 * `clippedSgd` is SGD with momentum whose gradients are first clipped elementwise to
 * [-clip, clip] (a common guard against exploding gradients). It is written once against the
 * `Numeric` interface, so it runs on float64 arrays and on tfjs tensors alike, and is pure:
 * `update` returns a new state and new parameters.
 *
 * `main` property-tests it with `@stepwise/optim/testing`: the generic laws (purity, zero
 * gradients from a fresh state, the state's Schema round trip) and equivalence to the
 * textbook equation written per element. fast-check shrinks any failure to a minimal case.
 * The optim package's test suite runs `main`; as a program it prints which laws held:
 *
 *   npm run example -- custom-optimizer
 */
import { type Numeric, Optimizer, SGD } from "@stepwise/optim"
import { Laws } from "@stepwise/optim/testing"
import { Data, Effect } from "effect"
import * as fc from "fast-check"

export interface ClippedSgdOptions {
  readonly lr: number
  readonly momentum: number
  /** Gradients are clipped elementwise to [-clip, clip]. */
  readonly clip: number
}

/** Its state: PyTorch-style, a step count and one slot tree (absent before the first step). */
export type State<T> = { readonly step: number; readonly momentumBuffer?: Numeric.Params<T> }

export const clippedSgd =
  (o: ClippedSgdOptions) =>
  <T>(N: Numeric.Numeric<T>): Optimizer.Optimizer<T, State<T>> => ({
    name: "ClippedSGD",
    defaults: { lr: o.lr, momentum: o.momentum },
    init: () => ({ step: 0 }),
    update: (state, grads, params, hyper) => {
      const momentum = hyper.momentum ?? o.momentum
      const next = Optimizer.perParameter(params, (name, p) => {
        const g = N.clamp(grads[name], -o.clip, o.clip)
        const previous = state.momentumBuffer?.[name]
        const buf = previous === undefined ? g : N.add(N.scale(previous, momentum), g)
        return { param: N.sub(p, N.scale(buf, hyper.lr)), slots: { momentumBuffer: buf } }
      })
      return {
        state: { step: state.step + 1, momentumBuffer: next.slots.momentumBuffer },
        params: next.params
      }
    }
  })

export class LawFailed extends Data.TaggedError("LawFailed")<{
  readonly law: string
  readonly report: string
}> {
  override get message() {
    return `law "${this.law}" failed:\n${this.report}`
  }
}

/** Runs one fast-check property; a failure becomes a typed error carrying fast-check's report. */
const law = (name: string, property: fc.IRawProperty<any>, numRuns: number) =>
  Effect.try({
    try: () => {
      fc.assert(property, { numRuns })
      return name
    },
    catch: (e) => new LawFailed({ law: name, report: String(e) })
  })

export const options: ClippedSgdOptions = { lr: 0.05, momentum: 0.9, clip: 1 }

/** Property-tests `clippedSgd` with the kit; succeeds with the names of the laws that held. */
export const main: Effect.Effect<ReadonlyArray<string>, LawFailed> = Effect.gen(function* () {
  const def = clippedSgd(options)
  const passed = [
    yield* law("purity", Laws.purity(def), 200),
    yield* law("zero gradient fixed point", Laws.zeroGradientFixedPoint(def), 200),
    yield* law("state round trip", Laws.stateRoundTrip(def), 200),
    yield* law(
      "textbook equation",
      Laws.matchesReference(def, {
        initial: undefined as number | undefined,
        step: (buf, p, g, h) => {
          const clipped = Math.min(Math.max(g, -options.clip), options.clip)
          const next = buf === undefined ? clipped : (h.momentum ?? options.momentum) * buf + clipped
          return { param: p - h.lr * next, memory: next }
        }
      }),
      300
    ),
    // with gradients inside [-clip, clip], clipping does nothing: it is PyTorch's SGD
    yield* law(
      "equals SGD on small gradients",
      Laws.matchesReference(
        def,
        {
          initial: undefined as number | undefined,
          step: (buf, p, g, h) => {
            const next = buf === undefined ? g : (h.momentum ?? options.momentum) * buf + g
            return { param: p - h.lr * next, memory: next }
          }
        },
        { scale: options.clip }
      ),
      300
    )
  ]
  // and the same SGD via the built-in, as a cross-check of the kit itself
  const sgd = yield* Effect.orDie(SGD.make({ lr: options.lr, momentum: options.momentum }))
  passed.push(yield* law("built-in SGD purity", Laws.purity(sgd), 100))
  return passed
})

// Run as a program (`npm run example -- custom-optimizer`): the property checks, then their summary.
if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, "/"))) {
  Effect.runPromise(main).then(
    (laws) =>
      console.log(`clippedSgd: ${laws.length} laws held:\n${laws.map((l) => `  ok ${l}`).join("\n")}`),
    (e) => {
      console.error(String(e))
      process.exitCode = 1
    }
  )
}
