import { availableParallelism } from "node:os"
import { describe, expect, it } from "vitest"
import * as RunnerStart from "../src/RunnerStart.js"

describe("RunnerStart.guess: the runners `stepwise sweep ARGS` starts here, read before the CLI parses", () => {
  it("is --runners N in either spelling, by default one per core, none for help", () => {
    const cores = availableParallelism()
    expect(RunnerStart.guess(["--config", "s.yaml"])).toBe(cores)
    expect(RunnerStart.guess(["--config", "s.yaml", "--runners", "3"])).toBe(Math.min(3, 4 * cores))
    expect(RunnerStart.guess(["--runners=1", "--json"])).toBe(1)
    expect(RunnerStart.guess(["--runners", "0", "--storage", "postgres://h/db"])).toBe(0)
    expect(RunnerStart.guess(["--help"])).toBe(0)
    expect(RunnerStart.guess(["--config", "s.yaml", "-h"])).toBe(0)
  })

  it("starts none for a value the CLI will refuse, and at most 4 a core", () => {
    expect(RunnerStart.guess(["--runners", "two"])).toBe(0)
    expect(RunnerStart.guess(["--runners", "-1"])).toBe(0)
    expect(RunnerStart.guess(["--runners", "1.5"])).toBe(0)
    expect(RunnerStart.guess(["--runners", "100000"])).toBe(4 * availableParallelism())
  })
})
