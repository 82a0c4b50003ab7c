/**
 * `stepwise --help` and `stepwise <command> --help`, rendered from the commands' own
 * descriptors (@effect/cli's `Command.getHelp`), grouped as `Cli.helpGroups` says, one line a
 * flag with its default, within 100 columns, with real examples. Colour (bold headings) only on
 * a terminal and without `NO_COLOR`.
 */
import { CliConfig, Command, type HelpDoc } from "@effect/cli"
import type { Span } from "@effect/cli/HelpDoc/Span"
import * as Cli from "./Cli.js"
import { kebab } from "./Flags.js"

export const WIDTH = 100
const FLAG_COLUMN = 30

const spanText = (s: Span): string => {
  switch (s._tag) {
    case "Text":
    case "URI":
      return s.value
    case "Sequence":
      return spanText(s.left) + spanText(s.right)
    default:
      return spanText(s.value)
  }
}

const docText = (d: HelpDoc.HelpDoc): ReadonlyArray<string> => {
  switch (d._tag) {
    case "Paragraph":
      return [spanText(d.value)]
    case "Sequence":
      return [...docText(d.left), ...docText(d.right)]
    case "Header":
      return [spanText(d.value)]
    default:
      return []
  }
}

/** Every flag of a command as [usage (`--lr NUMBER`), description], from its descriptor. */
export const flagsOf = (
  command: Command.Command<any, any, any, any>
): ReadonlyArray<readonly [string, string]> => {
  const out: Array<readonly [string, string]> = []
  const walk = (d: HelpDoc.HelpDoc) => {
    if (d._tag === "Sequence") {
      walk(d.left)
      walk(d.right)
    } else if (d._tag === "DescriptionList") {
      for (const [span, doc] of d.definitions) {
        const text = docText(doc)
          // @effect/cli's generic sentences add nothing to a described flag
          .filter(
            (t) =>
              !/^(This setting is optional\.|A user-defined piece of text\.|A true or false value\.)$/.test(t)
          )
          .join(" ")
        out.push([spanText(span).replace(/ \(choices:.*$/, ""), text])
      }
    }
  }
  walk(Command.getHelp(command, CliConfig.make({ showBuiltIns: false })))
  return out
}

/** Words wrapped to `width` columns. */
export const wrap = (text: string, width: number): ReadonlyArray<string> => {
  const lines: Array<string> = []
  let line = ""
  for (const word of text.split(/\s+/).filter((w) => w.length > 0)) {
    if (line.length > 0 && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else line = line.length === 0 ? word : `${line} ${word}`
  }
  if (line.length > 0) lines.push(line)
  return lines
}

/** `  --flag VALUE   description`, continuation lines under the description. */
const row = (usage: string, description: string): ReadonlyArray<string> => {
  const indent = " ".repeat(FLAG_COLUMN)
  const head = `  ${usage}`
  const body = wrap(description, WIDTH - FLAG_COLUMN)
  if (head.length + 1 > FLAG_COLUMN) return [head, ...body.map((l) => indent + l)]
  return body.length === 0
    ? [head]
    : [head.padEnd(FLAG_COLUMN) + body[0], ...body.slice(1).map((l) => indent + l)]
}

interface Style {
  readonly heading: (s: string) => string
}

/** Colour only for a terminal that wants it (https://no-color.org). */
export const styleFor = (isTTY: boolean, env: { readonly NO_COLOR?: string | undefined }): Style =>
  isTTY && (env.NO_COLOR === undefined || env.NO_COLOR === "")
    ? { heading: (s) => `\x1b[1m${s}\x1b[22m` }
    : { heading: (s) => s }

/** The help of one command. */
export const command = (name: Cli.CommandName, style: Style): string => {
  const entry = Cli.commands[name]
  const flags = flagsOf(entry.command)
  // `--x` and `--no-x` (a toggle) share one line: `--[no-]x`.
  const byFlag = new Map(flags.map(([usage, d]) => [usage.split(" ")[0], [usage, d] as const]))
  const line = (key: string): ReadonlyArray<string> => {
    const flag = `--${kebab(key)}`
    const found = byFlag.get(flag)
    if (found === undefined) return []
    const toggle = byFlag.has(`--no-${kebab(key)}`)
    return row(toggle ? `--[no-]${kebab(key)}` : found[0], found[1])
  }
  const out: Array<string> = [
    `stepwise ${name}: ${entry.summary}`,
    "",
    style.heading("Usage"),
    `  stepwise ${name}${entry.args === undefined ? "" : ` ${entry.args}`} [options]`,
    "",
    style.heading("Examples"),
    ...entry.examples.flatMap((e) => wrap(e, WIDTH - 6).map((l, i) => (i === 0 ? `  ${l}` : `      ${l}`))),
    ""
  ]
  for (const [title, keys] of entry.groups) {
    const lines = keys.flatMap(line)
    if (lines.length === 0) continue
    out.push(style.heading(title), ...lines, "")
  }
  return out.join("\n")
}

/** The help of `stepwise` itself: the commands and a few first steps. */
export const root = (style: Style): string => {
  const names = Object.keys(Cli.commands) as ReadonlyArray<Cli.CommandName>
  const width = Math.max(...names.map((n) => n.length)) + 4
  return [
    "stepwise: Chapter 6 of Deep Learning with PyTorch Step-by-Step, the functional way",
    "",
    style.heading("Usage"),
    "  stepwise <command> [options]",
    "  stepwise <command> --help",
    "",
    style.heading("Commands"),
    ...names.flatMap((n) =>
      wrap(Cli.commands[n].summary, WIDTH - width - 2).map((l, i) =>
        i === 0 ? `  ${n.padEnd(width)}${l}` : `  ${" ".repeat(width)}${l}`
      )
    ),
    "",
    style.heading("Examples"),
    "  stepwise stats",
    "  stepwise train --config examples/chapter6-adam.json",
    "  stepwise eval --checkpoint runs/<time>",
    "  stepwise predict --checkpoint runs/<time>/checkpoints/epoch-0010.safetensors photo.png",
    "  stepwise export --checkpoint runs/<time> --format torch --out model.safetensors",
    ""
  ].join("\n")
}

/**
 * The help asked for on this command line, if any: `--help` / `-h` anywhere before `--`, for
 * the command named first (none: the root help).
 */
export const requested = (
  args: ReadonlyArray<string>
): { readonly command: Cli.CommandName | undefined } | undefined => {
  const end = args.indexOf("--")
  const head = end === -1 ? args : args.slice(0, end)
  if (!head.includes("--help") && !head.includes("-h")) return undefined
  const first = head[0]
  return { command: first !== undefined && first in Cli.commands ? (first as Cli.CommandName) : undefined }
}
