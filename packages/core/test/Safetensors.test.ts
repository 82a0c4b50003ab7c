import { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import * as fc from "fast-check"
import * as Safetensors from "../src/Safetensors.js"

const utf8 = (s: string) => new TextEncoder().encode(s)

/** A file assembled by hand, byte by byte, the way the format's README describes it. */
const handMade = (header: string, data: Uint8Array) => {
  const h = utf8(header)
  const out = new Uint8Array(8 + h.length + data.length)
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true)
  out.set(h, 8)
  out.set(data, 8 + h.length)
  return out
}

describe("Safetensors", () => {
  it("writes the documented layout: u64 LE header length, JSON header padded to 8 bytes, raw LE data", () => {
    const bytes = Either.getOrThrow(
      Safetensors.encode({
        tensors: {
          b: Safetensors.tensor(new Int32Array([7]), []),
          a: Safetensors.tensor(new Float32Array([1, 2]), [2])
        },
        metadata: { format: "pt" }
      })
    )
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true))
    expect(n % 8).toBe(0)
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)))
    expect(header).toEqual({
      __metadata__: { format: "pt" },
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "I32", shape: [], data_offsets: [8, 12] }
    })
    // 1.0f = 0x3f800000, 2.0f = 0x40000000, little-endian; then int32 7.
    expect([...bytes.subarray(8 + n)]).toEqual([0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 7, 0, 0, 0])
  })

  it("reads a hand-made file with an unpadded header and out-of-order entries", () => {
    const data = new Uint8Array(new Float64Array([0.5, -3]).buffer)
    const bytes = handMade(
      '{"w":{"dtype":"F64","shape":[1,1],"data_offsets":[8,16]},"v":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}',
      data
    )
    const file = Either.getOrThrow(Safetensors.decode(bytes))
    expect(Array.from(file.tensors.v.data as Float64Array)).toEqual([0.5])
    expect(Array.from(file.tensors.w.data as Float64Array)).toEqual([-3])
    expect(file.tensors.w.shape).toEqual([1, 1])
    expect(file.metadata).toEqual({})
  })

  it("round-trips any set of tensors and metadata exactly", () => {
    const tensorArb = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }).chain((shape) => {
      const n = shape.reduce((a, b) => a * b, 1)
      return fc.oneof(
        fc.float32Array({ minLength: n, maxLength: n }).map((v) => Safetensors.tensor(v, shape)),
        fc.float64Array({ minLength: n, maxLength: n }).map((v) => Safetensors.tensor(v, shape)),
        fc.int32Array({ minLength: n, maxLength: n }).map((v) => Safetensors.tensor(v, shape)),
        fc.uint8Array({ minLength: n, maxLength: n }).map((v) => Safetensors.tensor(v, shape))
      )
    })
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.string({ minLength: 1 }).filter((s) => s !== "__metadata__"),
          tensorArb,
          { maxKeys: 5 }
        ),
        fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
        (tensors, metadata) => {
          const back = Either.getOrThrow(
            Safetensors.decode(Either.getOrThrow(Safetensors.encode({ tensors, metadata })))
          )
          expect(back.metadata).toEqual(metadata)
          expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(tensors).sort())
          for (const [name, t] of Object.entries(tensors)) {
            expect(back.tensors[name].dtype).toBe(t.dtype)
            expect(back.tensors[name].shape).toEqual(t.shape)
            // Bytewise, so NaN payloads and -0 survive too.
            const a = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
            const b = new Uint8Array(back.tensors[name].data.buffer)
            expect(Array.from(b)).toEqual(Array.from(a))
          }
        }
      )
    )
  })

  it("keeps names that are also Object.prototype's (__proto__, constructor)", () => {
    const tensors = Object.fromEntries([
      ["__proto__", Safetensors.tensor(new Float32Array([1]), [1])],
      ["constructor", Safetensors.tensor(new Float32Array([2]), [1])]
    ])
    const metadata = Object.fromEntries([["__proto__", "x"]])
    const back = Either.getOrThrow(
      Safetensors.decode(Either.getOrThrow(Safetensors.encode({ tensors, metadata })))
    )
    expect(Object.keys(back.tensors).sort()).toEqual(["__proto__", "constructor"])
    expect(
      Array.from(new Map(Object.entries(back.tensors)).get("constructor")!.data as Float32Array)
    ).toEqual([2])
    expect(Object.keys(back.metadata)).toEqual(["__proto__"])
  })

  it("rejects malformed files with a reason", () => {
    const failure = (bytes: Uint8Array) =>
      Either.match(Safetensors.decode(bytes, "x.safetensors"), {
        onLeft: (e) => {
          expect(e).toBeInstanceOf(Safetensors.SafetensorsError)
          expect(e.path).toBe("x.safetensors")
          return e
        },
        onRight: () => undefined
      })
    const reason = (bytes: Uint8Array) => failure(bytes)?.reason ?? "accepted"
    // The offset points at what is wrong: the length prefix, the header, or the tensor's bytes.
    const header = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}'
    expect(failure(new Uint8Array(4))?.offset).toBe(0)
    expect(failure(handMade("{", new Uint8Array()))?.offset).toBe(8)
    expect(failure(handMade(header, new Uint8Array(4)))?.offset).toBe(8 + header.length)
    expect(failure(handMade(header, new Uint8Array(4)))?.message).toBe(
      `safetensors x.safetensors at byte ${8 + header.length}: tensor a: 4 bytes for F32 shape [2] (needs 8)`
    )
    expect(reason(new Uint8Array(4))).toMatch(/too short/)
    expect(reason(handMade("{", new Uint8Array()))).toMatch(/not UTF-8 JSON/)
    const big = handMade("{}", new Uint8Array())
    new DataView(big.buffer).setBigUint64(0, 1000n, true)
    expect(reason(big)).toMatch(/header length 1000 exceeds/)
    expect(
      reason(handMade('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', new Uint8Array(4)))
    ).toMatch(/4 bytes for F32 shape \[2\] \(needs 8\)/)
    expect(
      reason(handMade('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Uint8Array(8)))
    ).toMatch(/gap or overlap/)
    expect(
      reason(handMade('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(8)))
    ).toMatch(/4 trailing bytes/)
    expect(
      reason(handMade('{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)))
    ).toMatch(/tensor a: malformed entry/)
    expect(reason(handMade('{"__metadata__":{"k":1}}', new Uint8Array()))).toMatch(/__metadata__/)
  })

  it("refuses to encode values that disagree with their shape", () => {
    const encoded = Safetensors.encode(
      { tensors: { a: Safetensors.tensor(new Float32Array(3), [2, 2]) }, metadata: {} },
      "y.safetensors"
    )
    expect(Either.getLeft(encoded)).toEqual(
      Option.some(
        new Safetensors.SafetensorsError({
          path: "y.safetensors",
          reason: "tensor a: 3 F32 values for F32 shape [2, 2]"
        })
      )
    )
  })

  it.effect("writes atomically (no temp file left) and reads back", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* fs.makeTempDirectoryScoped()
      const path = `${dir}/t.safetensors`
      const file = {
        tensors: { w: Safetensors.tensor(new Float32Array([1.5, -2.25]), [2]) },
        metadata: { m: "x" }
      }
      yield* Safetensors.write(path, file)
      yield* Safetensors.write(path, file)
      expect(yield* fs.readDirectory(dir)).toEqual(["t.safetensors"])
      const back = yield* Safetensors.read(path)
      expect(Array.from(back.tensors.w.data as Float32Array)).toEqual([1.5, -2.25])
      const missing = yield* Effect.flip(Safetensors.read(`${dir}/nope.safetensors`))
      expect(missing._tag).toBe("SystemError")
      yield* fs.writeFileString(`${dir}/bad.safetensors`, "garbage!")
      const bad = yield* Effect.flip(Safetensors.read(`${dir}/bad.safetensors`))
      expect(bad).toMatchObject({ _tag: "SafetensorsError", path: `${dir}/bad.safetensors` })
    }).pipe(Effect.scoped, Effect.provide(NodeContext.layer))
  )
})
