/**
 * Runs one of the programs in examples/:
 *
 *   npm run example -- <name> [arguments...]     e.g. npm run example -- custom-optimizer
 *   npm run example                              lists them
 *
 * The examples are a TypeScript project of their own: this builds it (`tsc -b examples`, which
 * also builds the packages it imports; incremental, so quick when nothing changed) and runs
 * `.tsbuild/examples/<name>.js` with the remaining arguments, exiting with its exit code.
 */
import { spawnSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { basename, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const examples = join(root, "examples")
const programs = readdirSync(examples)
  .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
  .map((f) => basename(f, ".ts"))
  .sort()
const recipes = readdirSync(examples)
  .filter((f) => f.endsWith(".json") && f !== "tsconfig.json")
  .sort()

/** The first paragraph of a program's doc comment. */
const summary = (name) => {
  const text = readFileSync(join(examples, `${name}.ts`), "utf8")
  const doc = /\/\*\*\s*\n((?:\s*\*[^\n]*\n)*?)\s*\*\s*\n/.exec(text)
  if (doc === null) return ""
  return doc[1]
    .split("\n")
    .map((l) => l.replace(/^\s*\*\s?/, "").trim())
    .join(" ")
    .trim()
}

const list = () => {
  console.log("usage: npm run example -- <name> [arguments...]\n\nprograms in examples/:")
  for (const p of programs) console.log(`  ${p.padEnd(28)} ${summary(p)}`)
  console.log("\ntraining recipes in examples/ (for the CLI):")
  for (const r of recipes) console.log(`  npx stepwise train --config examples/${r}`)
}

const [requested, ...args] = process.argv.slice(2)
if (requested === undefined || requested === "--help" || requested === "-h") {
  list()
  process.exit(0)
}
const name = basename(requested).replace(/\.(ts|js)$/, "")
if (recipes.includes(`${name}.json`) || requested.endsWith(".json")) {
  console.error(
    `${requested} is a training recipe, not a program: npx stepwise train --config examples/${name}.json`
  )
  process.exit(2)
}
if (!programs.includes(name)) {
  console.error(`no example named "${requested}"\n`)
  list()
  process.exit(2)
}

const tsc = join(root, "node_modules", "typescript", "bin", "tsc")
const build = spawnSync(process.execPath, [tsc, "-b", "examples"], { cwd: root, stdio: "inherit" })
if (build.status !== 0) process.exit(build.status ?? 1)
const compiled = join(root, ".tsbuild", "examples", `${name}.js`)
if (!existsSync(compiled)) {
  console.error(`tsc -b examples did not produce ${compiled}`)
  process.exit(1)
}
const run = spawnSync(process.execPath, [compiled, ...args], { cwd: root, stdio: "inherit" })
process.exit(run.status ?? 1)
