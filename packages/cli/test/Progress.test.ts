import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Progress from "../src/Progress.js"

describe("progress output", () => {
  it("the live bar fits the terminal and counts batches", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 999 }),
        fc.integer({ min: 1, max: 99_999 }),
        fc.integer({ min: 86, max: 200 }),
        (epochs, batches, columns) => {
          const batch = Math.min(batches, Math.ceil(batches / 3))
          const line = Progress.formatBar(
            {
              epoch: epochs,
              epochs,
              batch,
              batches,
              loss: 0.5,
              lr: 1e-3,
              samplesPerSecond: 1234.5,
              elapsedSeconds: 3
            },
            columns
          )
          expect(line.length).toBeLessThanOrEqual(columns - 1)
          expect(line).toContain(`${batch}/${batches}`)
          expect(line).toMatch(/\[#*\.*\]/)
        }
      )
    )
  })

  it("ETA is the remaining batches at the current pace", () => {
    const line = Progress.formatBar({
      epoch: 1,
      epochs: 10,
      batch: 50,
      batches: 150,
      loss: 1,
      lr: 0.01,
      samplesPerSecond: 100,
      elapsedSeconds: 30
    })
    expect(line).toContain("ETA 1:00") // 100 batches left at 0.6 s each
    expect(Progress.formatSeconds(3725)).toBe("1:02:05")
    expect(Progress.formatSeconds(Number.NaN)).toBe("--:--")
  })

  it("the summary table aligns its columns", () => {
    const table = Progress.summaryTable([
      {
        epoch: 1,
        loss: 1.0842,
        valLoss: 1.05,
        lr: 0.01,
        trainAccuracy: 0.733,
        valAccuracy: 0.53,
        seconds: 1.4
      },
      {
        epoch: 10,
        loss: 0.1476,
        valLoss: null,
        lr: 0.001,
        trainAccuracy: 0.995,
        valAccuracy: null,
        seconds: 12.25
      }
    ])
    const lines = table.split("\n")
    expect(lines).toHaveLength(4)
    expect(new Set(lines.map((l) => l.length)).size).toBe(1)
    expect(lines[2]).toContain("73.3%")
    expect(lines[3]).toContain("99.5%")
  })
})
