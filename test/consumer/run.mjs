/**
 * The consumer test: the four packages as a user gets them from the registry.
 *
 *   npm run test:consumer          (the last step of `npm test`)
 *
 * 1. `npm pack` every workspace (each `prepack` builds it) and check what each tarball holds:
 *    only dist .js/.d.ts, README, package.json (+ data's assets, cli's bin), and every `exports`
 *    target present.
 * 2. Install the tarballs into a fresh project in the OS temp folder (outside this repo) with the
 *    peers (effect, @effect/*, fast-check) at the versions of our lockfile, from the npm cache:
 *    `--offline`, else `--prefer-offline`.
 * 3. Type-check app/src/main.ts there (strict, `nodenext`; `skipLibCheck` as `tsc --init` sets it,
 *    since tfjs's and @effect/platform's declarations expect DOM and other ambient types) and run
 *    it: a user-written optimizer checked with `@stepwise/optim/testing`, then CNN2 training on
 *    the bundled images with it, then a chart through `@stepwise/cli`.
 * 4. `npx stepwise --help` and `npx stepwise stats --json` in that project.
 *
 * Skips (exit 0, with the reason) only when the dependencies are neither in the npm cache nor
 * reachable; STEPWISE_CONSUMER_REQUIRED=1 (set by .ci/run) turns that skip into a failure.
 * The temp project is removed on success and kept (path printed) on failure.
 */
import { spawnSync } from "node:child_process"
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync
} from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"

const repo = realpathSync(fileURLToPath(new URL("../..", import.meta.url)))
const here = join(repo, "test", "consumer")
const started = performance.now()
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`
const log = (line) => console.log(`consumer: ${line} [${elapsed()}]`)

const work = mkdtempSync(join(realpathSync(tmpdir()), "stepwise-consumer-"))
if (!relative(repo, work).startsWith("..")) {
  console.error(`consumer: the temp folder ${work} is inside the repo; set TMPDIR elsewhere`)
  process.exit(1)
}

const fail = (message) => {
  console.error(`consumer: FAILED: ${message}\nconsumer: the project is kept at ${work}`)
  process.exit(1)
}

// `npm run` exports the calling project's settings (npm_config_local_prefix, npm_package_*, ...);
// the nested npm calls must see the temp project only. The cache and registry settings stay.
const env = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) => !/^npm_(package_|lifecycle_|config_local_prefix|config_workspace|command|execpath)/i.test(k)
  )
)
const npm = process.platform === "win32" ? "npm.cmd" : "npm"
const npx = process.platform === "win32" ? "npx.cmd" : "npx"

/** Runs a command; returns { status, stdout, stderr } without throwing. */
const exec = (cmd, args, cwd) => {
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
  return { status: r.status ?? 1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" }
}
const must = (cmd, args, cwd) => {
  const r = exec(cmd, args, cwd)
  if (r.status !== 0)
    fail(`${cmd} ${args.join(" ")} (in ${cwd}) exited ${r.status}\n${r.stdout}\n${r.stderr}`)
  return r
}

// ---------------------------------------------------------------------------------- 1. pack
const tarballs = join(work, "tarballs")
mkdirSync(tarballs)
const packed = JSON.parse(
  must(npm, ["pack", "--workspaces", "--json", "--pack-destination", tarballs], repo).stdout
)
const allowed = /^(dist\/.+\.(js|d\.ts)|README\.md|package\.json|assets\/.+|bin\/stepwise\.js)$/
for (const p of packed) {
  const paths = new Set(p.files.map((f) => f.path))
  const unexpected = [...paths].filter(
    (f) => !allowed.test(f) || (f.startsWith("assets/") && p.name !== "@stepwise/data")
  )
  if (unexpected.length > 0)
    fail(`${p.name} ships files that do not run: ${unexpected.slice(0, 5).join(", ")}`)
  const manifest = JSON.parse(
    readFileSync(join(repo, "packages", p.name.split("/")[1], "package.json"), "utf8")
  )
  const targets = Object.values(manifest.exports).flatMap((t) =>
    typeof t === "string" ? [t] : Object.values(t)
  )
  for (const t of [...targets, ...Object.values(manifest.bin ?? {})]) {
    if (!paths.has(t.replace(/^\.\//, ""))) fail(`${p.name}: ${t} is declared but not in the tarball`)
  }
  log(
    `packed ${p.filename}: ${(p.size / 1024).toFixed(1)} kB (${p.entryCount} files, ${(p.unpackedSize / 1024).toFixed(1)} kB unpacked)`
  )
}

// ------------------------------------------------------------------------------- 2. install
const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8"))
const locked = (name) => {
  const entry = lock.packages[`node_modules/${name}`]
  if (entry === undefined) fail(`${name} is not in package-lock.json`)
  return entry.version
}
const app = join(work, "app")
mkdirSync(join(app, "src"), { recursive: true })
copyFileSync(join(here, "app", "tsconfig.json"), join(app, "tsconfig.json"))
copyFileSync(join(here, "app", "src", "main.ts"), join(app, "src", "main.ts"))
const peers = [
  "effect",
  "@effect/platform",
  "@effect/platform-node",
  "@effect/cli",
  "@effect/cluster",
  "@effect/sql",
  "@effect/workflow",
  "fast-check"
]
writeFileSync(
  join(app, "package.json"),
  `${JSON.stringify(
    {
      name: "stepwise-consumer",
      private: true,
      type: "module",
      dependencies: {
        ...Object.fromEntries(packed.map((p) => [p.name, `file:../tarballs/${p.filename}`])),
        ...Object.fromEntries(peers.map((n) => [n, locked(n)]))
      },
      devDependencies: { typescript: locked("typescript"), "@types/node": locked("@types/node") }
    },
    null,
    2
  )}\n`
)
const installArgs = ["install", "--no-audit", "--no-fund", "--no-update-notifier"]
let install = exec(npm, [...installArgs, "--offline"], app)
if (install.status !== 0) {
  // npm resolves a new project from full packuments; a cache filled by `npm ci` may hold only
  // the abbreviated ones (or none), so ask the registry for what is missing.
  const why =
    (install.stdout + install.stderr)
      .trim()
      .split("\n")
      .find((l) => /error/.test(l)) ?? ""
  log(`--offline did not resolve from the npm cache (${why.trim()}); retrying with --prefer-offline`)
  install = exec(npm, [...installArgs, "--prefer-offline"], app)
}
if (install.status !== 0) {
  const out = install.stdout + install.stderr
  // A package missing from the cache shows up as ENOTCACHED or, for a peer, as an ERESOLVE on
  // "effect@undefined"; either way it is external only if the registry cannot be reached.
  const ping = exec(npm, ["ping", "--fetch-retries=0", "--fetch-timeout=10000"], app)
  if (ping.status !== 0) {
    const reason = `a dependency is not in the npm cache and the registry is unreachable (npm ping: ${
      (ping.stdout + ping.stderr)
        .trim()
        .split("\n")
        .find((l) => /error/.test(l)) ?? `exit ${ping.status}`
    })`
    if (process.env.STEPWISE_CONSUMER_REQUIRED === "1") fail(`${reason}\n${out}`)
    console.log(
      `consumer: SKIPPED: ${reason}\nconsumer: run \`npm ci\` once with the registry reachable to fill the cache.`
    )
    rmSync(work, { recursive: true, force: true })
    process.exit(0)
  }
  fail(`npm install exited ${install.status}\n${out}`)
}
log(`installed the tarballs into ${app}`)

// ----------------------------------------------------------------------- 3. type-check, run
const tsc = join(app, "node_modules", "typescript", "bin", "tsc")
must(process.execPath, [tsc, "-p", "."], app)
log("type-checked src/main.ts (strict, nodenext)")
const program = must(process.execPath, [join("dist", "main.js")], app).stdout
for (const line of program.trim().split("\n")) log(`  ${line}`)
for (const expected of [
  /^laws held: purity, zero gradient fixed point/m,
  /^trained CNN2 with HeavyBall/m,
  /^drew the losses/m
]) {
  if (!expected.test(program)) fail(`the program's output lacks ${expected}:\n${program}`)
}

// ------------------------------------------------------------------------------ 4. the CLI
// `--no`: never fetch a package named "stepwise" from the registry, the bin must be linked; `--`:
// the flags after it are stepwise's, not npx's.
const help = must(npx, ["--no", "--", "stepwise", "--help"], app).stdout
const commands = [
  "train",
  "lr-find",
  "stats",
  "eval",
  "predict",
  "export",
  "plot",
  "download",
  "sweep",
  "runner"
]
for (const command of commands) {
  if (!new RegExp(`^\\s+${command}\\s`, "m").test(help))
    fail(`stepwise --help does not list ${command}:\n${help}`)
}
log(`npx stepwise --help lists ${commands.join(", ")}`)
const stats = must(npx, ["--no", "--", "stepwise", "stats", "--json"], app).stdout.trim().split("\n").at(-1)
const parsed = JSON.parse(stats)
const channels = [parsed.mean, parsed.std].flat()
if (channels.length !== 6 || !channels.every((v) => typeof v === "number" && v > 0 && v < 1)) {
  fail(`stepwise stats --json: expected 3 means and 3 stds in (0, 1), got ${stats}`)
}
log(`npx stepwise stats --json: ${stats}`)

rmSync(work, { recursive: true, force: true })
log("passed")
