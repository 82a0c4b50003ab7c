/**
 * The safetensors format (https://github.com/huggingface/safetensors), read and written by hand:
 *
 *   [8 bytes: N, unsigned little-endian] [N bytes: JSON header] [raw tensor bytes]
 *
 * The header maps each tensor name to `{ dtype, shape, data_offsets: [begin, end] }` (offsets
 * relative to the start of the data section, little-endian, row-major, no gaps or overlaps) and
 * may hold a `__metadata__` object of string values. We pad the header with spaces so the data
 * starts 8-byte aligned, as the reference writer does. Host-side only: no tensor library here.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { AtomicFile } from "@stepwise/data"
import { Effect, Either, Schema } from "effect"
import { SafetensorsError } from "./Errors.js"

export type DType = "F32" | "F64" | "I32" | "I64" | "U8" | "I8" | "I16" | "U16" | "U32"

export type Data =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Uint32Array

/** One tensor on the host: its element type, shape and row-major values. */
export interface HostTensor {
  readonly dtype: DType
  readonly shape: ReadonlyArray<number>
  readonly data: Data
}

export interface File {
  readonly tensors: { readonly [name: string]: HostTensor }
  readonly metadata: { readonly [key: string]: string }
}

export { SafetensorsError } from "./Errors.js"

const BYTES: Record<DType, number> = { F32: 4, F64: 8, I32: 4, I64: 8, U8: 1, I8: 1, I16: 2, U16: 2, U32: 4 }

const view = (dtype: DType, buffer: ArrayBuffer): Data => {
  switch (dtype) {
    case "F32":
      return new Float32Array(buffer)
    case "F64":
      return new Float64Array(buffer)
    case "I32":
      return new Int32Array(buffer)
    case "I64":
      return new BigInt64Array(buffer)
    case "U8":
      return new Uint8Array(buffer)
    case "I8":
      return new Int8Array(buffer)
    case "I16":
      return new Int16Array(buffer)
    case "U16":
      return new Uint16Array(buffer)
    case "U32":
      return new Uint32Array(buffer)
  }
}

const dtypeOf = (data: Data): DType =>
  data instanceof Float32Array
    ? "F32"
    : data instanceof Float64Array
      ? "F64"
      : data instanceof Int32Array
        ? "I32"
        : data instanceof BigInt64Array
          ? "I64"
          : data instanceof Uint8Array
            ? "U8"
            : data instanceof Int8Array
              ? "I8"
              : data instanceof Int16Array
                ? "I16"
                : data instanceof Uint16Array
                  ? "U16"
                  : "U32"

/** A host tensor whose dtype follows its array type. */
export const tensor = (data: Data, shape: ReadonlyArray<number>): HostTensor => ({
  dtype: dtypeOf(data),
  shape: [...shape],
  data
})

/** Sets an own property even for names like `__proto__` (a plain assignment would set the prototype). */
const own = <V>(obj: Record<string, V>, key: string, value: V) => {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
}

const numel = (shape: ReadonlyArray<number>) => shape.reduce((a, b) => a * b, 1)

// Typed arrays are little-endian on every platform Node runs on (x86, arm64); the format is LE.
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** Encodes tensors (sorted by name, like the reference writer) and string metadata. */
export const encode = (file: File, path = "<memory>"): Either.Either<Uint8Array, SafetensorsError> => {
  const fail = (reason: string) => Either.left(new SafetensorsError({ path, reason }))
  if (!littleEndian) return fail("big-endian hosts are not supported")
  const names = Object.keys(file.tensors).sort()
  const header: Record<string, unknown> = {}
  if (Object.keys(file.metadata).length > 0) header.__metadata__ = { ...file.metadata }
  let offset = 0
  for (const name of names) {
    if (name === "__metadata__") return fail(`reserved tensor name ${name}`)
    const t = file.tensors[name]
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0))
      return fail(`tensor ${name}: invalid shape [${t.shape.join(", ")}]`)
    if (numel(t.shape) !== t.data.length || dtypeOf(t.data) !== t.dtype)
      return fail(
        `tensor ${name}: ${t.data.length} ${dtypeOf(t.data)} values for ${t.dtype} shape [${t.shape.join(", ")}]`
      )
    const bytes = t.data.byteLength
    own(header, name, { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] })
    offset += bytes
  }
  let json = new TextEncoder().encode(JSON.stringify(header))
  const pad = (8 - (json.length % 8)) % 8
  if (pad > 0) json = new TextEncoder().encode(JSON.stringify(header) + " ".repeat(pad))
  const out = new Uint8Array(8 + json.length + offset)
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true)
  out.set(json, 8)
  let at = 8 + json.length
  for (const name of names) {
    const d = file.tensors[name].data
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at)
    at += d.byteLength
  }
  return Either.right(out)
}

const HeaderEntry = Schema.Struct({
  dtype: Schema.Literal("F32", "F64", "I32", "I64", "U8", "I8", "I16", "U16", "U32"),
  shape: Schema.Array(Schema.NonNegativeInt),
  data_offsets: Schema.Tuple(Schema.NonNegativeInt, Schema.NonNegativeInt)
})
const decodeEntry = Schema.decodeUnknownEither(HeaderEntry)

/**
 * Decodes a whole file, checking every offset, size and dtype; values are copied out (aligned).
 * A malformed file is a `SafetensorsError` naming `path` and, where one is to blame, the byte
 * `offset` in the file (0: the length prefix, 8: the header, past the header: a tensor's data).
 */
export const decode = (bytes: Uint8Array, path = "<memory>"): Either.Either<File, SafetensorsError> => {
  const fail = (reason: string, offset?: number, cause?: unknown) =>
    Either.left(new SafetensorsError({ path, reason, offset, cause }))
  if (bytes.length < 8) return fail(`${bytes.length} bytes, too short for the 8-byte header length`, 0)
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)
  if (n > BigInt(bytes.length - 8))
    return fail(`header length ${n} exceeds the file (${bytes.length} bytes)`, 0)
  const headerEnd = 8 + Number(n)
  let header: unknown
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, headerEnd)))
  } catch (e) {
    return fail(`header is not UTF-8 JSON (${String(e)})`, 8, e)
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    return fail("header is not an object", 8)
  const dataLength = bytes.length - headerEnd
  const tensors: Record<string, HostTensor> = {}
  const metadata: Record<string, string> = {}
  const spans: Array<[number, number, string]> = []
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw))
        return fail("__metadata__ must map strings to strings", 8)
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== "string")
          return fail(`__metadata__ must map strings to strings (${k} is not a string)`, 8)
        own(metadata, k, v)
      }
      continue
    }
    const e = decodeEntry(raw)
    if (e._tag === "Left") return fail(`tensor ${name}: malformed entry ${JSON.stringify(raw)}`, 8, e.left)
    const {
      dtype,
      shape,
      data_offsets: [begin, end]
    } = e.right
    const expected = numel(shape) * BYTES[dtype]
    if (end < begin || end > dataLength)
      return fail(`tensor ${name}: offsets [${begin}, ${end}] outside the data (${dataLength} bytes)`, 8)
    if (end - begin !== expected)
      return fail(
        `tensor ${name}: ${end - begin} bytes for ${dtype} shape [${shape.join(", ")}] (needs ${expected})`,
        headerEnd + begin
      )
    spans.push([begin, end, name])
    // A fresh, aligned copy (Node's Buffer#slice would be a view into a shared pool).
    const copy = new Uint8Array(end - begin)
    copy.set(bytes.subarray(headerEnd + begin, headerEnd + end))
    own(tensors, name, { dtype, shape: [...shape], data: view(dtype, copy.buffer) })
  }
  // The format forbids holes and overlaps: the spans must tile the data section exactly.
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let at = 0
  for (const [begin, end, name] of spans) {
    if (begin !== at)
      return fail(`tensor ${name}: starts at ${begin}, expected ${at} (gap or overlap)`, headerEnd + at)
    at = end
  }
  if (at !== dataLength)
    return fail(`${dataLength - at} trailing bytes after the last tensor`, headerEnd + at)
  return Either.right({ tensors, metadata })
}

/**
 * Writes atomically through data's `AtomicFile` (temporary sibling, fsync, rename; the temporary
 * file is removed on failure or interruption).
 */
export const write = (path: string, file: File) =>
  Effect.gen(function* () {
    const bytes = yield* encode(file, path)
    yield* AtomicFile.write(path, bytes)
  })

/** Reads and validates a file. */
export const read = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const bytes = yield* fs.readFile(path)
    return yield* decode(bytes, path)
  })
