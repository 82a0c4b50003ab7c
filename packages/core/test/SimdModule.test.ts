import { execFileSync } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { base64 } from "../src/kernels/SimdModule.js"

// The package ships the SIMD kernels as base64 (no toolchain at install): the embedded module,
// the committed kernels.wasm and kernels.c must be one and the same build.
const simd = fileURLToPath(new URL("../src/kernels/simd/", import.meta.url))
const shipped = Buffer.from(base64, "base64")

// The WebAssembly global, typed here: the package compiles without the DOM's lib.
interface Descriptor {
  readonly module?: string
  readonly name: string
  readonly kind: string
}
const WebAssembly = (
  globalThis as unknown as {
    readonly WebAssembly: {
      readonly Module: {
        new (bytes: Uint8Array): object
        imports(m: object): ReadonlyArray<Descriptor>
        exports(m: object): ReadonlyArray<Descriptor>
      }
    }
  }
).WebAssembly

const hasToolchain = (() => {
  try {
    execFileSync("clang-14", ["--version"], { stdio: "ignore" })
    execFileSync("wasm-ld-14", ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

describe("the SIMD kernels module", () => {
  it("SimdModule.ts embeds the committed kernels.wasm, which imports only the backend's memory", () => {
    expect(shipped.equals(readFileSync(join(simd, "kernels.wasm")))).toBe(true)
    const m = new WebAssembly.Module(shipped)
    expect(WebAssembly.Module.imports(m)).toEqual([{ module: "env", name: "memory", kind: "memory" }])
    expect(WebAssembly.Module.exports(m).map((e) => e.name)).toEqual(
      expect.arrayContaining(["conv_filter_grad", "bias_grad", "max_pool_grad_tiled", "matmul_ta", "adam"])
    )
  })

  // Debian's clang-14 + lld-14 (not installed by CI): rebuilding kernels.c gives the same bytes.
  it.skipIf(!hasToolchain)("build.sh rebuilds kernels.c into the same bytes", () => {
    const dir = mkdtempSync(join(tmpdir(), "stepwise-simd-"))
    try {
      mkdirSync(join(dir, "simd"))
      for (const f of ["build.sh", "kernels.c"]) copyFileSync(join(simd, f), join(dir, "simd", f))
      execFileSync("sh", [join(dir, "simd", "build.sh")], { stdio: "ignore" })
      expect(readFileSync(join(dir, "simd", "kernels.wasm")).equals(shipped)).toBe(true)
      expect(readFileSync(join(dir, "SimdModule.ts"), "utf8")).toBe(
        readFileSync(join(simd, "..", "SimdModule.ts"), "utf8")
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
