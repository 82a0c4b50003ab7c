/**
 * Flag constructors whose parse errors name the flag and the value (`--lr abc: not a number`),
 * so a typo gets a one-line answer instead of a usage dump.
 */
import { HelpDoc, Options, ValidationError } from "@effect/cli"
import { Effect, Option } from "effect"

const invalid = (flag: string, value: string, reason: string) =>
  Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--${flag} ${value}: ${reason}`)))

export interface NumberRule {
  readonly integer?: boolean
  readonly min?: number
  readonly max?: number
  /** Excludes `min` itself (`> min`). */
  readonly minExclusive?: boolean
  /** Excludes `max` itself (`< max`). */
  readonly maxExclusive?: boolean
}

const describeRule = (r: NumberRule): string => {
  const lo = r.min === undefined ? undefined : `${r.minExclusive ? ">" : ">="} ${r.min}`
  const hi = r.max === undefined ? undefined : `${r.maxExclusive ? "<" : "<="} ${r.max}`
  if (r.min !== undefined && r.max !== undefined)
    return `must be in ${r.minExclusive ? "(" : "["}${r.min}, ${r.max}${r.maxExclusive ? ")" : "]"}`
  return `must be ${[lo, hi].filter((x) => x !== undefined).join(" and ")}`
}

/** Parses and range-checks a number; pure, so tests and config validation share it. */
export const checkNumber = (text: string, rule: NumberRule): number | string => {
  const trimmed = text.trim()
  const value = trimmed.length === 0 ? Number.NaN : Number(trimmed)
  if (!Number.isFinite(value)) return rule.integer ? "not an integer" : "not a number"
  if (rule.integer && !Number.isInteger(value)) return "not an integer"
  const belowMin = rule.min !== undefined && (rule.minExclusive ? !(value > rule.min) : !(value >= rule.min))
  const aboveMax = rule.max !== undefined && (rule.maxExclusive ? !(value < rule.max) : !(value <= rule.max))
  return belowMin || aboveMax ? describeRule(rule) : value
}

/** An optional numeric flag (absent: `Option.none()`, so a recipe file's value stays). */
export const number = (name: string, description: string, rule: NumberRule = {}) =>
  Options.text(name).pipe(
    Options.withPseudoName(rule.integer ? "INT" : "NUMBER"),
    Options.withDescription(description),
    Options.mapEffect((text) => {
      const r = checkNumber(text, rule)
      return typeof r === "string" ? invalid(name, text, r) : Effect.succeed(r)
    }),
    Options.optional
  )

/** An optional choice flag whose error lists the choices and names the flag. */
export const choice = <const C extends ReadonlyArray<string>>(
  name: string,
  choices: C,
  description: string
) =>
  Options.text(name).pipe(
    Options.withPseudoName(choices.join("|")),
    Options.withDescription(description),
    Options.mapEffect((text) =>
      (choices as ReadonlyArray<string>).includes(text)
        ? Effect.succeed(text as C[number])
        : invalid(name, text, `expected one of ${choices.join(", ")}`)
    ),
    Options.optional
  )

/** A comma-separated list of numbers (`--milestones 3,6,9`). */
export const numberList = (name: string, description: string, rule: NumberRule = {}) =>
  Options.text(name).pipe(
    Options.withPseudoName("N,N,..."),
    Options.withDescription(description),
    Options.mapEffect((text) => {
      const out: Array<number> = []
      for (const part of text.split(",")) {
        const r = checkNumber(part, rule)
        if (typeof r === "string") return invalid(name, text, `${part.trim() || "(empty)"}: ${r}`)
        out.push(r)
      }
      return Effect.succeed(out)
    }),
    Options.optional
  )

/** An optional boolean flag: `--nesterov` / `--no-nesterov`; absent stays `none`. */
export const toggle = (name: string, description: string) =>
  // Two plain booleans, because a negatable boolean reads "absent" as false and would override
  // a recipe file's `true`.
  Options.all([
    Options.boolean(name).pipe(Options.withDescription(description)),
    Options.boolean(`no-${name}`).pipe(Options.withDescription(`Turn --${name} off`))
  ]).pipe(
    Options.mapEffect(([on, off]) =>
      on && off
        ? invalid(name, "", `conflicts with --no-${name}`)
        : Effect.succeed(on ? Option.some(true) : off ? Option.some(false) : Option.none())
    )
  )

export const text = (name: string, description: string, pseudo = "TEXT") =>
  Options.text(name).pipe(
    Options.withPseudoName(pseudo),
    Options.withDescription(description),
    Options.optional
  )

/** `Option<A>` -> `A | undefined`, for building recipe overrides. */
export const opt = <A>(o: Option.Option<A>): A | undefined => Option.getOrUndefined(o)
