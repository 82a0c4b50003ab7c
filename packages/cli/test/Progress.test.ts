import { Effect } from "effect"
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

  it("on a narrow terminal the less important parts go first; the ETA is never cut", () => {
    const p = {
      epoch: 3,
      epochs: 10,
      batch: 98,
      batches: 158,
      loss: 0.5123,
      lr: 1e-3,
      samplesPerSecond: 812,
      elapsedSeconds: 9.8
    }
    expect(Progress.formatBar(p, 100)).toMatch(/ 98\/158 loss 0\.5123 lr 1\.00e-3 812 img\/s ETA 0:06$/)
    expect(Progress.formatBar(p, 60)).toMatch(/\] +98\/158 loss 0\.5123 lr 1\.00e-3 ETA 0:06$/)
    expect(Progress.formatBar(p, 50)).toMatch(/\] +98\/158 loss 0\.5123 ETA 0:06$/)
    expect(Progress.formatBar(p, 20)).toBe("98/158 ETA 0:06")
    expect(Progress.formatBar(p, 40)).toMatch(/^epoch {2}3\/10 \[#+\.+\] +98\/158 ETA 0:06$/)
    fc.assert(
      fc.property(fc.integer({ min: 10, max: 200 }), (columns) => {
        const line = Progress.formatBar(p, columns)
        expect(line.length).toBeLessThanOrEqual(Math.max(columns - 1, "ETA 0:06".length))
        expect(line.endsWith("ETA 0:06")).toBe(true)
      })
    )
  })

  it("the pace starts after the epoch's first batch: no warm-up, no validation pause", () => {
    const pace = Progress.makePace(16)
    // epoch 1: the first batch took 2 s (warm-up) -> nothing measured yet, shown as "-"
    const first = pace(0, 1, 2000)
    expect(first.samplesPerSecond).toBeNaN()
    expect(
      Progress.formatBar({ epoch: 1, epochs: 2, batch: 1, batches: 158, loss: 1, lr: 0.01, ...first })
    ).toContain("- img/s ETA --:--")
    // then 10 batches of 16 images in 1 s
    expect(pace(0, 11, 3000)).toEqual({ samplesPerSecond: 160, elapsedSeconds: 1, paceBatches: 10 })
    // epoch 2 starts after a 30 s validation pause: its first batch measures nothing
    expect(pace(1, 1, 33100).samplesPerSecond).toBeNaN()
    const second = pace(1, 6, 33600)
    expect(second.samplesPerSecond).toBeCloseTo(160, 9)
    const line = Progress.formatBar({
      epoch: 2,
      epochs: 2,
      batch: 6,
      batches: 158,
      loss: 1,
      lr: 0.01,
      ...second
    })
    expect(line).toContain("160 img/s ETA 0:15") // 152 batches left at 0.1 s each
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

  it("a live block (the sweep's table) is redrawn in place through the Output service; not at all off a terminal", () => {
    const stream = (isTTY: boolean) => {
      const written: Array<string> = []
      return { written, s: { isTTY, columns: 80, write: (t: string) => written.push(t) > 0 } as never }
    }
    const tty = stream(true)
    const live = Progress.makeOutput({ json: false, stdout: tty.s, stderr: stream(false).s })
    Effect.runSync(Effect.zipRight(live.block("a\nb"), live.block("c\nd\ne")))
    expect(tty.written).toEqual(["a\nb\n", "\x1b[2A\x1b[Jc\nd\ne\n"])
    const pipe = stream(false)
    const plain = Progress.makeOutput({ json: false, stdout: pipe.s, stderr: stream(false).s })
    Effect.runSync(plain.block("a"))
    expect(pipe.written).toEqual([])
  })
})
