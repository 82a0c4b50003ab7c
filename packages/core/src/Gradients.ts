import { createRequire } from "node:module"
import * as tf from "@tensorflow/tfjs-core"

/**
 * tfjs-core's gradient configs (what `tf.grad`, `tf.valueAndGrads` and `tf.variableGrads` need)
 * are not in the bundle Node loads: `main` is dist/tf-core.node.js, which has none, and the
 * ESM `dist/gradients/*.js` use extension-less imports Node's loader rejects. The only CommonJS
 * build that carries them is the union package `@tensorflow/tfjs`: its dist/tf.node.js bundles
 * tfjs-core's `register_all_gradients` and requires `@tensorflow/tfjs-core` (so the configs land
 * in the global gradient registry the engine reads) and `@tensorflow/tfjs-backend-cpu` (which,
 * resolved by Node to the same module instance as ours, is not evaluated again).
 *
 * Measured with tfjs 4.22 on Node 20 (test/Gradients.test.ts keeps the kernel and warning
 * claims true): all 101 configs registered, no kernel of any backend added or replaced, no
 * warning printed, no backend registered (webgl only registers in a browser); ~0.5 s once per
 * process (layers, converter, data and webgl bundles load with it). Loading the ESM files
 * through a resolver hook would change module resolution for the whole process, and writing
 * the configs ourselves would copy tfjs; a dependency loaded once by the Engine layer is the
 * smallest thing that holds up.
 */
export const gradientsRegistered = (): boolean =>
  tf.getGradient("Conv2D") !== undefined && tf.getGradient("Relu") !== undefined

/** Registers tfjs' gradient configs once (tfjs' own registry is the only state involved). */
export const registerGradients = (): void => {
  if (gradientsRegistered()) return
  createRequire(import.meta.url)("@tensorflow/tfjs")
}
