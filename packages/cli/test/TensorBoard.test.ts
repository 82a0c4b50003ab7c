import { Either, Option } from "effect"
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as TB from "../src/TensorBoard.js"

const bytes = (s: string) => new TextEncoder().encode(s)

describe("CRC32C", () => {
  it("matches the standard check value and RFC 3720 vectors", () => {
    expect(TB.crc32c(bytes("123456789"))).toBe(0xe3069283)
    expect(TB.crc32c(new Uint8Array(32))).toBe(0x8a9136aa)
    expect(TB.crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43)
    expect(TB.crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e)
  })

  it("masks like TFRecord: rotate right by 15 then add 0xa282ead8", () => {
    const crc = TB.crc32c(bytes("123456789"))
    const rotated = ((crc >>> 15) | (crc << 17)) >>> 0
    expect(TB.maskedCrc32c(bytes("123456789"))).toBe((rotated + 0xa282ead8) % 2 ** 32)
  })
})

describe("Event encoding", () => {
  it("encodes the protobuf bytes derived by hand from event.proto / summary.proto", () => {
    const encoded = TB.encodeEvent({ wallTime: 1.5, step: 3, scalars: [{ tag: "a", value: 2 }] })
    expect(Array.from(encoded)).toEqual([
      0x09,
      0,
      0,
      0,
      0,
      0,
      0,
      0xf8,
      0x3f, // wall_time = 1.5 (fixed64)
      0x10,
      0x03, // step = 3 (varint)
      0x2a,
      0x0a, // summary, 10 bytes
      0x0a,
      0x08, // value, 8 bytes
      0x0a,
      0x01,
      0x61, // tag "a"
      0x15,
      0,
      0,
      0,
      0x40 // simple_value = 2.0f
    ])
  })

  it("frames a record with its length and both masked CRCs", () => {
    const data = bytes("hello")
    const record = TB.frameRecord(data)
    const view = new DataView(record.buffer)
    expect(record.length).toBe(8 + 4 + 5 + 4)
    expect(Number(view.getBigUint64(0, true))).toBe(5)
    expect(view.getUint32(8, true)).toBe(TB.maskedCrc32c(record.subarray(0, 8)))
    expect(Array.from(record.subarray(12, 17))).toEqual(Array.from(data))
    expect(view.getUint32(17, true)).toBe(TB.maskedCrc32c(data))
  })

  it("round-trips a file of scalars through readEvents (float32 precision)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            step: fc.integer({ min: 0, max: 2 ** 40 }),
            scalars: fc.array(
              fc.record({
                tag: fc.string({ minLength: 1, maxLength: 30 }),
                value: fc.float({ noNaN: true })
              }),
              { maxLength: 4 }
            )
          }),
          { maxLength: 12 }
        ),
        (events) => {
          const parts = [
            TB.fileVersionRecord(1700000000.25),
            ...events.map((e) => TB.scalarsRecord(1700000001, e.step, e.scalars))
          ]
          const file = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
          let off = 0
          for (const p of parts) {
            file.set(p, off)
            off += p.length
          }
          const decoded = Either.getOrThrow(TB.readEvents(file))
          expect(decoded.length).toBe(events.length + 1)
          expect(decoded[0].fileVersion).toBe("brain.Event:2")
          expect(decoded[0].wallTime).toBe(1700000000.25)
          events.forEach((e, i) => {
            expect(decoded[i + 1].step).toBe(e.step)
            expect(decoded[i + 1].scalars.map((s) => s.tag)).toEqual(e.scalars.map((s) => s.tag))
            expect(decoded[i + 1].scalars.map((s) => s.value)).toEqual(
              e.scalars.map((s) => Math.fround(s.value))
            )
          })
        }
      )
    )
  })

  it("rejects a corrupted byte with a CRC error", () => {
    const record = TB.scalarsRecord(1, 1, [{ tag: "loss/train", value: 0.5 }])
    const bad = record.slice()
    bad[20] ^= 0xff
    expect(Either.getLeft(TB.readEvents(bad))).toEqual(
      Option.some(new TB.CorruptEventFile({ offset: 0, reason: "data CRC mismatch" }))
    )
    expect(
      Either.getLeft(TB.readEvents(record.subarray(0, record.length - 2))).pipe(Option.map((e) => e.message))
    ).toEqual(Option.some("corrupt event file at byte 0: truncated record"))
  })
})
