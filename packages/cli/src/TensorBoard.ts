/**
 * TensorBoard event files, hand-encoded: TFRecord framing (length, masked CRC32C of the length,
 * payload, masked CRC32C of the payload) around `tensorflow.Event` protobuf messages holding
 * scalar summaries. Only the handful of protobuf fields TensorBoard's scalar dashboard reads are
 * written; `readEvents` decodes the same subset back (and checks every CRC) for tests and tools.
 */
import { Either } from "effect"
import { CorruptEventFile } from "./Errors.js"

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

export const crc32c = (bytes: Uint8Array): number => {
  let crc = 0xffffffff
  for (let i = 0; i < bytes.length; i++) crc = CRC32C_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

/** TFRecord's masking, so that a CRC of data that itself holds CRCs stays well distributed. */
export const maskedCrc32c = (bytes: Uint8Array): number => {
  const crc = crc32c(bytes)
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0
}

/** One TFRecord: u64 length, u32 masked crc(length), data, u32 masked crc(data); little-endian. */
export const frameRecord = (data: Uint8Array): Uint8Array => {
  const out = new Uint8Array(8 + 4 + data.length + 4)
  const view = new DataView(out.buffer)
  view.setBigUint64(0, BigInt(data.length), true)
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true)
  out.set(data, 12)
  view.setUint32(12 + data.length, maskedCrc32c(data), true)
  return out
}

// --- protobuf wire format (just what Event/Summary need) ---

const varint = (value: number | bigint): Array<number> => {
  let v = BigInt(value)
  if (v < 0n) v = (1n << 64n) + v
  const bytes: Array<number> = []
  do {
    let b = Number(v & 0x7fn)
    v >>= 7n
    if (v > 0n) b |= 0x80
    bytes.push(b)
  } while (v > 0n)
  return bytes
}

const tag = (field: number, wireType: number) => varint((field << 3) | wireType)

const lengthDelimited = (field: number, payload: Uint8Array): Array<number> => [
  ...tag(field, 2),
  ...varint(payload.length),
  ...payload
]

const utf8 = new TextEncoder()

/** A scalar point: `tag` (e.g. `loss/train`), its value, at a global step. */
export interface Scalar {
  readonly tag: string
  readonly value: number
}

/** `Summary.Value { tag = 1; simple_value = 2 (float) }` inside `Summary { repeated value = 1 }`. */
const encodeSummary = (scalars: ReadonlyArray<Scalar>): Uint8Array => {
  const out: Array<number> = []
  for (const s of scalars) {
    const f32 = new Uint8Array(4)
    new DataView(f32.buffer).setFloat32(0, s.value, true)
    const value = [...lengthDelimited(1, utf8.encode(s.tag)), ...tag(2, 5), ...f32]
    out.push(...lengthDelimited(1, Uint8Array.from(value)))
  }
  return Uint8Array.from(out)
}

/** `Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5 }`. */
export const encodeEvent = (event: {
  readonly wallTime: number
  readonly step: number
  readonly fileVersion?: string
  readonly scalars?: ReadonlyArray<Scalar>
}): Uint8Array => {
  const wall = new Uint8Array(8)
  new DataView(wall.buffer).setFloat64(0, event.wallTime, true)
  const out: Array<number> = [...tag(1, 1), ...wall]
  if (event.step !== 0) out.push(...tag(2, 0), ...varint(event.step))
  if (event.fileVersion !== undefined) out.push(...lengthDelimited(3, utf8.encode(event.fileVersion)))
  if (event.scalars !== undefined) out.push(...lengthDelimited(5, encodeSummary(event.scalars)))
  return Uint8Array.from(out)
}

/** The first record of every event file: TensorBoard checks it to recognise the format. */
export const fileVersionRecord = (wallTime: number): Uint8Array =>
  frameRecord(encodeEvent({ wallTime, step: 0, fileVersion: "brain.Event:2" }))

export const scalarsRecord = (wallTime: number, step: number, scalars: ReadonlyArray<Scalar>): Uint8Array =>
  frameRecord(encodeEvent({ wallTime, step, scalars }))

/** The file name TensorBoard globs for: `events.out.tfevents.<seconds>.<host>`. */
export const eventFileName = (wallTimeSeconds: number, host: string): string =>
  `events.out.tfevents.${Math.floor(wallTimeSeconds)}.${host}`

// --- reading back (tests, tools) ---

export interface DecodedEvent {
  readonly wallTime: number
  readonly step: number
  readonly fileVersion?: string
  readonly scalars: ReadonlyArray<Scalar>
}

export { CorruptEventFile } from "./Errors.js"

/** The protobuf cursor stops at the first bad byte; `readEvents` turns that into its `Left`. */
const corrupt = (offset: number, reason: string) => new CorruptEventFile({ offset, reason })

class Reader {
  pos = 0
  constructor(readonly bytes: Uint8Array) {}
  get done() {
    return this.pos >= this.bytes.length
  }
  varint(): bigint {
    let result = 0n
    let shift = 0n
    for (;;) {
      const b = this.bytes[this.pos++]
      if (b === undefined) throw corrupt(this.pos, "truncated varint")
      result |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) return result
      shift += 7n
    }
  }
  take(n: number): Uint8Array {
    if (this.pos + n > this.bytes.length) throw corrupt(this.pos, "truncated field")
    const out = this.bytes.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }
  /** Yields [field, wireType, payload] with payload as bytes (fixed/len) or bigint (varint). */
  *fields(): Generator<readonly [number, number, Uint8Array | bigint]> {
    while (!this.done) {
      const key = Number(this.varint())
      const field = key >>> 3
      const wire = key & 7
      if (wire === 0) yield [field, wire, this.varint()]
      else if (wire === 1) yield [field, wire, this.take(8)]
      else if (wire === 2) yield [field, wire, this.take(Number(this.varint()))]
      else if (wire === 5) yield [field, wire, this.take(4)]
      else throw corrupt(this.pos, `unsupported wire type ${wire}`)
    }
  }
}

const utf8d = new TextDecoder()
const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength)

const decodeEvent = (bytes: Uint8Array): DecodedEvent => {
  let wallTime = 0
  let step = 0
  let fileVersion: string | undefined
  const scalars: Array<Scalar> = []
  for (const [field, , payload] of new Reader(bytes).fields()) {
    if (field === 1 && payload instanceof Uint8Array) wallTime = view(payload).getFloat64(0, true)
    else if (field === 2 && typeof payload === "bigint") step = Number(BigInt.asIntN(64, payload))
    else if (field === 3 && payload instanceof Uint8Array) fileVersion = utf8d.decode(payload)
    else if (field === 5 && payload instanceof Uint8Array) {
      for (const [vf, , value] of new Reader(payload).fields()) {
        if (vf !== 1 || !(value instanceof Uint8Array)) continue
        let t = ""
        let v = Number.NaN
        for (const [f, , p] of new Reader(value).fields()) {
          if (f === 1 && p instanceof Uint8Array) t = utf8d.decode(p)
          else if (f === 2 && p instanceof Uint8Array) v = view(p).getFloat32(0, true)
        }
        scalars.push({ tag: t, value: v })
      }
    }
  }
  return fileVersion === undefined ? { wallTime, step, scalars } : { wallTime, step, fileVersion, scalars }
}

/**
 * Parses a whole event file, checking both CRCs of every record; `CorruptEventFile` names the
 * byte where it goes wrong.
 */
export const readEvents = (
  bytes: Uint8Array
): Either.Either<ReadonlyArray<DecodedEvent>, CorruptEventFile> => {
  const events: Array<DecodedEvent> = []
  let pos = 0
  while (pos < bytes.length) {
    if (pos + 12 > bytes.length) return Either.left(corrupt(pos, "truncated header"))
    const header = view(bytes.subarray(pos, pos + 12))
    const length = Number(header.getBigUint64(0, true))
    if (header.getUint32(8, true) !== maskedCrc32c(bytes.subarray(pos, pos + 8)))
      return Either.left(corrupt(pos, "length CRC mismatch"))
    const data = bytes.subarray(pos + 12, pos + 12 + length)
    if (data.length !== length || pos + 16 + length > bytes.length)
      return Either.left(corrupt(pos, "truncated record"))
    if (view(bytes.subarray(pos + 12 + length, pos + 16 + length)).getUint32(0, true) !== maskedCrc32c(data))
      return Either.left(corrupt(pos, "data CRC mismatch"))
    try {
      events.push(decodeEvent(data))
    } catch (e) {
      // Only the cursor throws in decodeEvent, and only CorruptEventFile (offsets within the record).
      if (e instanceof CorruptEventFile) return Either.left(corrupt(pos + 12 + e.offset, e.reason))
      throw e
    }
    pos += 16 + length
  }
  return Either.right(events)
}
