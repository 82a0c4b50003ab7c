import * as tf from "@tensorflow/tfjs-core"
import "@tensorflow/tfjs-backend-cpu"
import "@tensorflow/tfjs-backend-wasm"
import { describe, expect, it } from "vitest"

// Vitest runs each file in its own process: nothing has loaded the gradient configs yet.
describe("Gradients.registerGradients", () => {
  it("registers tfjs' gradient configs without replacing a kernel, adding a backend or printing", async () => {
    expect(tf.getGradient("Conv2D")).toBeUndefined()
    const kernels = (backend: string) =>
      new Map(tf.getKernelsForBackend(backend).map((k) => [k.kernelName, k.kernelFunc]))
    const before = { cpu: kernels("cpu"), wasm: kernels("wasm") }
    const backends = Object.keys((tf.engine() as any).registryFactory)
    const printed: Array<string> = []
    const { warn, log, error } = console
    console.warn = console.log = console.error = (...args: Array<unknown>) => printed.push(args.join(" "))
    try {
      const { registerGradients, gradientsRegistered } = await import("../src/Gradients.js")
      registerGradients()
      registerGradients()
      expect(gradientsRegistered()).toBe(true)
    } finally {
      Object.assign(console, { warn, log, error })
    }
    expect(printed).toEqual([])
    for (const backend of ["cpu", "wasm"] as const) {
      const after = kernels(backend)
      expect(after.size).toBe(before[backend].size)
      for (const [name, f] of after) expect(f, `${backend}/${name}`).toBe(before[backend].get(name))
    }
    expect(Object.keys((tf.engine() as any).registryFactory)).toEqual(backends)
    for (const k of [
      "Conv2D",
      "MaxPool",
      "AvgPool",
      "Relu",
      "BatchMatMul",
      "Softmax",
      "Erf",
      "Select",
      "Multiply",
      "Reshape"
    ])
      expect(tf.getGradient(k), k).toBeDefined()
  })
})
