/**
 * Removes compiled files from a package's dist/ whose source in src/ no longer exists.
 *
 * `tsc -b` is incremental and never deletes the output of a source file that was removed or
 * renamed, so without this a package would publish stale modules. Run from the package folder
 * (its `prepack` does: `tsc -b && node ../../scripts/prune-dist.mjs`). Cheaper than a clean
 * rebuild, which would also force every dependent package to rebuild.
 */
import { existsSync, readdirSync, rmSync } from "node:fs"
import { join, relative } from "node:path"

const outputSuffixes = [".d.ts.map", ".js.map", ".d.ts", ".js"]

const walk = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]
  )

if (existsSync("dist")) {
  for (const file of walk("dist")) {
    const suffix = outputSuffixes.find((s) => file.endsWith(s))
    if (suffix === undefined) continue // e.g. dist/.tsbuildinfo
    const stem = join("src", relative("dist", file.slice(0, -suffix.length)))
    if (![".ts", ".mts", ".tsx"].some((ext) => existsSync(stem + ext))) {
      rmSync(file)
      console.error(`prune-dist: removed ${file} (no ${stem}.ts)`)
    }
  }
}
