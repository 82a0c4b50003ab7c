/**
 * Flag constructors whose parse errors name the flag and the value (`--lr abc: not a number`),
 * so a typo gets a one-line answer instead of a usage dump; and the optimizer / scheduler flags,
 * one per hyperparameter of optim's config schemas (`Recipe.optimizerFields`), described from
 * the same schemas. Their values are checked by optim's rules when the recipe is decoded.
 */
import { HelpDoc, Options, ValidationError } from "@effect/cli"
import { Effect, Option } from "effect"
import * as Recipe from "./Recipe.js"

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
  if (/^[+-]?(inf|infinity|nan)$/i.test(trimmed)) return "must be a finite number"
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

/** `weightDecay` -> `weight-decay`. */
export const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

/** One optimizer or scheduler flag: which recipe field it sets, and its option. */
export interface HyperparameterFlag {
  readonly section: "optimizer" | "scheduler"
  readonly field: Recipe.Field
  /** The flag without dashes: the field in kebab case (`--weight-decay`). */
  readonly flag: string
  /** The key of its parsed value among a command's options. */
  readonly option: string
}

/** Flags that are not hyperparameters; a scheduler field of the same name gets a prefix. */
const TAKEN = new Set(["epochs", "seed", "optimizer", "scheduler", "data", "config", "out"])

/**
 * The hyperparameter flags: every optimizer field, then every scheduler field (a scheduler
 * field whose name an optimizer field or another flag already has becomes `--scheduler-NAME`).
 */
export const hyperparameterFlags: ReadonlyArray<HyperparameterFlag> = (() => {
  const optimizer = Recipe.optimizerFields.map((field) => ({
    section: "optimizer" as const,
    field,
    flag: kebab(field.key),
    option: field.key
  }))
  const used = new Set(optimizer.map((f) => f.option))
  const scheduler = Recipe.schedulerFields.map((field) => {
    const clash = used.has(field.key) || TAKEN.has(field.key)
    const option = clash ? `scheduler${field.key[0].toUpperCase()}${field.key.slice(1)}` : field.key
    return { section: "scheduler" as const, field, flag: kebab(option), option }
  })
  return [...optimizer, ...scheduler]
})()

const shown = (v: unknown): string => (Array.isArray(v) ? v.join(",") : String(v))

/**
 * `[0.9,0.999]`, or per config when they differ: `[0; AdamW 0.01]`; empty when no config has
 * a default (a required argument, such as SGD's lr: the recipe supplies `Recipe.DEFAULT_LR`).
 */
export const defaultsText = (field: Recipe.Field): string => {
  const entries = Object.entries(field.defaults)
  if (field.key === "lr") return `[${Recipe.DEFAULT_LR}]`
  if (entries.length === 0) return ""
  const counts = new Map<string, number>()
  for (const [, v] of entries) counts.set(shown(v), (counts.get(shown(v)) ?? 0) + 1)
  const common = [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0]
  const others = entries.filter(([, v]) => shown(v) !== common).map(([tag, v]) => `${tag} ${shown(v)}`)
  return `[${[common, ...others].join("; ")}]`
}

/** The one-line description of a hyperparameter flag: what, for which configs, default. */
export const describeHyperparameter = (f: HyperparameterFlag): string => {
  const all = f.section === "optimizer" ? Recipe.optimizerTags : Recipe.schedulerTags
  const owners = f.field.tags.length === all.length ? "" : `${f.field.tags.join("/")}: `
  // without optim's description: PyTorch's argument name (weight_decay)
  const what = f.field.description ?? f.field.key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
  const epoch = f.field.key === "stepSizeUp" || f.field.key === "stepSizeDown" ? ' ("epoch" = one epoch)' : ""
  return `${owners}${what}${epoch} ${defaultsText(f.field)}`.trim()
}

const hyperOption = (f: HyperparameterFlag): Options.Options<Option.Option<unknown>> => {
  const description = describeHyperparameter(f)
  switch (f.field.kind) {
    case "boolean":
      return toggle(f.flag, description)
    case "choice":
      return choice(f.flag, f.field.choices, description)
    case "numbers":
      return numberList(f.flag, description)
    case "number":
      if (f.field.key === "stepSizeUp" || f.field.key === "stepSizeDown")
        return numberOrEpoch(f.flag, description)
      return number(f.flag, description)
  }
}

/** A number of mini-batches, or `epoch` (CyclicLR's step sizes). */
const numberOrEpoch = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("N|epoch"),
    Options.withDescription(description),
    Options.mapEffect((text): Effect.Effect<number | "epoch", ValidationError.ValidationError> => {
      if (text === "epoch") return Effect.succeed("epoch" as const)
      const r = checkNumber(text, {})
      return typeof r === "string" ? invalid(name, text, `${r} (or "epoch")`) : Effect.succeed(r)
    }),
    Options.optional
  )

/** The options of a command's hyperparameter flags, by option key. */
export const hyperparameterOptions = (
  section: "optimizer" | "scheduler"
): Record<string, Options.Options<Option.Option<unknown>>> =>
  Object.fromEntries(
    hyperparameterFlags.filter((f) => f.section === section).map((f) => [f.option, hyperOption(f)])
  )
