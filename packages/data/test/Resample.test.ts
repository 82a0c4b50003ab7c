import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { makeKernels, simdModule } from "../src/Resample.js"

// The JavaScript kernels are the reference (Transforms.test checks them, and the SIMD ones,
// against PIL's bytes); the SIMD kernels must give the same bytes for every size and layout.
const js = makeKernels(0, undefined)

describe("Resample: the WebAssembly SIMD kernels equal the JavaScript ones byte for byte", () => {
  it("SIMD is available on this Node (otherwise the JavaScript kernels do the work)", () => {
    expect(simdModule()).toBeDefined()
  })

  it("RGB and RGBA (read as RGB) images of any size, up or down, whole or from a box", () => {
    const simd = makeKernels(16, simdModule())
    fc.assert(
      fc.property(
        fc.record({
          width: fc.integer({ min: 1, max: 90 }),
          height: fc.integer({ min: 1, max: 90 }),
          outWidth: fc.integer({ min: 1, max: 60 }),
          outHeight: fc.integer({ min: 1, max: 60 }),
          stride: fc.constantFrom(3, 4),
          seed: fc.integer(),
          box: fc.boolean()
        }),
        ({ width, height, outWidth, outHeight, stride, seed, box }) => {
          // RGBA is narrowed to RGB even where no resize is needed (same size, whole box).
          const data = new Uint8Array(width * height * stride)
          let s = seed >>> 0
          for (let i = 0; i < data.length; i++) {
            s = (Math.imul(s, 1664525) + 1013904223) >>> 0
            // Mostly extremes and a ramp: sums at the clipping edges and in between.
            data[i] = s >>> 29 === 0 ? 0 : s >>> 29 === 1 ? 255 : s >>> 24
          }
          const b: readonly [number, number, number, number] = box
            ? [Math.floor(width / 4), Math.floor(height / 3), width, height - Math.floor(height / 5)]
            : [0, 0, width, height]
          const expected = js.resize(data, width, height, 3, outWidth, outHeight, b, stride)
          const actual = simd.resize(data, width, height, 3, outWidth, outHeight, b, stride)
          expect(actual).toEqual(expected)
        }
      ),
      { numRuns: 400 }
    )
  })

  it("RGBA at its own size (whole box) is its RGB bytes, from both kernels", () => {
    for (const [w, h] of [
      [2, 1],
      [28, 28],
      [33, 7]
    ]) {
      const data = Uint8Array.from({ length: w * h * 4 }, (_, i) => (i * 2246822519) >>> 24)
      const rgb = data.filter((_, i) => i % 4 !== 3)
      expect(js.resize(data, w, h, 3, w, h, undefined, 4)).toEqual(rgb)
      expect(makeKernels(16, simdModule()).resize(data, w, h, 3, w, h, undefined, 4)).toEqual(rgb)
    }
  })

  it("pixels a decoder left in the SIMD memory (scratch) are resized where they are", () => {
    const simd = makeKernels(0, simdModule())
    const data = Uint8Array.from({ length: 120 * 80 * 4 }, (_, i) => (i * 2246822519) >>> 24)
    for (const [w, h] of [
      [28, 18],
      [200, 50]
    ]) {
      const view = simd.scratch(data.length + 4000)!
      view.set(data)
      const expected = js.resize(data, 120, 80, 3, w, h, undefined, 4)
      expect(simd.resize(view.subarray(0, data.length), 120, 80, 3, w, h, undefined, 4)).toEqual(expected)
    }
  })

  it("a 300x300 RGBA photograph-sized image to 28x28, as the decode workers do it", () => {
    const data = new Uint8Array(300 * 300 * 4)
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24
    const simd = makeKernels(16, simdModule())
    const out = simd.resize(data, 300, 300, 3, 28, 28, undefined, 4)
    expect(out.length).toBe(28 * 28 * 3)
    expect(out).toEqual(js.resize(data, 300, 300, 3, 28, 28, undefined, 4))
    // Reused memory leaves nothing behind: the same call again gives the same bytes.
    expect(simd.resize(data, 300, 300, 3, 28, 28, undefined, 4)).toEqual(out)
  })
})
