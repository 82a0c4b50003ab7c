import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import * as TB from "../src/TensorBoard.js"

// An independent reader: Google's protobuf runtime and crcmod's CRC-32C (Debian's
// python3-protobuf and python3-crcmod, installed by .ci/run). Skipped when they are absent.
const python = "/usr/bin/python3"
const script = fileURLToPath(new URL("../scripts/check_tfevents.py", import.meta.url))
const available = (() => {
  try {
    execFileSync(python, ["-c", "import google.protobuf, crcmod"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

const dir = mkdtempSync(join(tmpdir(), "stepwise-tb-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe.skipIf(!available)("TensorBoard event files read by Google's protobuf runtime", () => {
  it("frames, CRCs, steps, wall times and float32 scalars survive an independent parser", () => {
    const records = [
      TB.fileVersionRecord(1_700_000_000.25),
      TB.scalarsRecord(1_700_000_001.5, 1, [
        { tag: "loss/training", value: 1.0848 },
        { tag: "loss/validation", value: 1.0552 }
      ]),
      TB.scalarsRecord(1_700_000_002.75, 300, [{ tag: "learning_rate", value: 0.01 }])
    ]
    const file = join(dir, TB.eventFileName(1_700_000_000, "stepwise"))
    writeFileSync(file, Buffer.concat(records))
    const parsed = JSON.parse(execFileSync(python, [script, file], { encoding: "utf8" }))
    expect(parsed.fileVersion).toBe("brain.Event:2")
    expect(parsed.events.map((e: { step: number }) => e.step)).toEqual([1, 300])
    expect(parsed.events[0].wallTime).toBe(1_700_000_001.5)
    expect(parsed.events[0].scalars["loss/training"]).toBe(Math.fround(1.0848))
    expect(parsed.events[0].scalars["loss/validation"]).toBe(Math.fround(1.0552))
    expect(parsed.events[1].scalars).toEqual({ learning_rate: Math.fround(0.01) })
  })

  it("the independent reader rejects a flipped payload byte (its CRC check is live)", () => {
    const record = TB.scalarsRecord(1, 1, [{ tag: "x", value: 1 }])
    record[record.length - 6] ^= 0xff
    const file = join(dir, "corrupt.tfevents")
    writeFileSync(file, record)
    expect(() => execFileSync(python, [script, file], { stdio: "pipe" })).toThrow(/bad data CRC/)
  })
})
