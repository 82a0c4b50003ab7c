import { execFileSync } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

// The package ships the SIMD resample kernels as base64 (src/ResampleWasm.ts, no toolchain at
// install); with Debian's clang-14 + lld-14 (not installed by CI) wasm/build.sh must rebuild
// wasm/resample.c into exactly that file.
const wasmDir = fileURLToPath(new URL("../wasm/", import.meta.url))
const shipped = fileURLToPath(new URL("../src/ResampleWasm.ts", import.meta.url))

const hasToolchain = (() => {
  try {
    execFileSync("clang-14", ["--version"], { stdio: "ignore" })
    execFileSync("wasm-ld-14", ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

describe("the SIMD resample module", () => {
  it.skipIf(!hasToolchain)("wasm/build.sh rebuilds resample.c into the shipped ResampleWasm.ts", () => {
    const dir = mkdtempSync(join(tmpdir(), "stepwise-resample-"))
    try {
      mkdirSync(join(dir, "wasm"))
      mkdirSync(join(dir, "src"))
      for (const f of ["build.sh", "resample.c"]) copyFileSync(join(wasmDir, f), join(dir, "wasm", f))
      execFileSync("sh", [join(dir, "wasm", "build.sh")], { stdio: "ignore" })
      expect(readFileSync(join(dir, "src", "ResampleWasm.ts"), "utf8")).toBe(readFileSync(shipped, "utf8"))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
