// Optimizer step benchmark: @stepwise/optim on tfjs (cpu and wasm backends) and on the float64
// reference, against torch.optim timed in the same run when /usr/bin/python3 has torch.
// Usage: npm run bench -w packages/optim   (builds dist first)
import { execFileSync } from "node:child_process"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import "@tensorflow/tfjs-backend-cpu" // registers the "cpu" backend
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Either } from "effect"
import { Float64, Optimizers, TfNumeric } from "../dist/index.js"

const SECONDS = Number(process.env.BENCH_SECONDS ?? 1)

// CNN2 of the chapter (n_filters 5): 140 + 230 + 6,300 + 153 = 6,823 parameters.
const sizes = {
  "6,823 (CNN2)": {
    "conv1.weight": [5, 3, 3, 3],
    "conv1.bias": [5],
    "conv2.weight": [5, 5, 3, 3],
    "conv2.bias": [5],
    "fc1.weight": [50, 125],
    "fc1.bias": [50],
    "fc2.weight": [3, 50],
    "fc2.bias": [3]
  },
  "1,000,000": { "fc.weight": [1000, 1000] }
}

const optimizers = {
  "SGD nesterov": { _tag: "SGD", lr: 0.01, momentum: 0.9, nesterov: true },
  Adam: { _tag: "Adam", lr: 0.001 },
  AdamW: { _tag: "AdamW", lr: 0.001 },
  RMSprop: { _tag: "RMSprop", lr: 0.01 },
  Adagrad: { _tag: "Adagrad", lr: 0.01 }
}

const count = (shapes) => Object.values(shapes).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0)
for (const [name, shapes] of Object.entries(sizes)) {
  if (count(shapes) !== (name.startsWith("6,823") ? 6823 : 1_000_000))
    throw new Error(`bad sizes for ${name}`)
}

const random = (n, seed) => {
  // a small LCG: deterministic inputs without tfjs' global RNG
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32 - 0.5
  })
}

/** Median time of one step (robust to the other processes sharing this machine's 2 cores). */
const timeLoop = (stepOnce, afterWarmup = () => {}) => {
  for (let i = 0; i < 10; i++) stepOnce()
  afterWarmup()
  const times = []
  const start = performance.now()
  while (performance.now() - start < SECONDS * 1000 || times.length < 5) {
    const t0 = performance.now()
    stepOnce()
    times.push(performance.now() - t0)
  }
  times.sort((a, b) => a - b)
  return times[times.length >> 1]
}

// One tensor per shape, filled from the seeds `seed`, `seed + 1`, ... in the shapes' order.
const randomTree = (shapes, seed, make) =>
  Object.fromEntries(
    Object.entries(shapes).map(([k, s], i) => [k, make(random(count({ k: s }), seed + i), s)])
  )

const benchTf = (def, shapes) => {
  const N = TfNumeric.TfNumeric
  const opt = def(N)
  let params = randomTree(shapes, 1, N.fromArray)
  const grads = randomTree(shapes, 100, N.fromArray)
  let state = opt.init(params)
  let before = 0
  const ms = timeLoop(
    () => {
      const next = Either.getOrThrow(TfNumeric.tidyUpdate(opt, state, grads, params, opt.defaults))
      TfNumeric.disposeReplaced(TfNumeric.stateTensors(state), TfNumeric.stateTensors(next.state))
      TfNumeric.disposeReplaced(params, next.params)
      // dataSync on one value: wait for the backend to finish (wasm and cpu are synchronous anyway)
      Object.values(next.params)[0].dataSync()
      state = next.state
      params = next.params
    },
    () => {
      before = tf.memory().numTensors // SGD's momentum buffers appear at the first step
    }
  )
  if (tf.memory().numTensors !== before)
    throw new Error(`tensor leak: ${before} -> ${tf.memory().numTensors}`)
  tf.dispose([...Object.values(params), ...Object.values(grads), ...TfNumeric.stateTensors(state)])
  return ms
}

const benchF64 = (def, shapes) => {
  const N = Float64.Float64
  const opt = def(N)
  let params = randomTree(shapes, 1, Float64.make)
  const grads = randomTree(shapes, 100, Float64.make)
  let state = opt.init(params)
  return timeLoop(() => {
    const next = opt.update(state, grads, params, opt.defaults)
    state = next.state
    params = next.params
  })
}

const torchTimes = () => {
  const python = "/usr/bin/python3"
  if (!existsSync(python)) return { skipped: "no /usr/bin/python3" }
  try {
    execFileSync(python, ["-c", "import torch"], { stdio: "ignore" })
  } catch {
    return { skipped: "torch is not installed for /usr/bin/python3" }
  }
  const script = fileURLToPath(new URL("../scripts/bench_torch.py", import.meta.url))
  const job = JSON.stringify({
    sizes: Object.fromEntries(Object.entries(sizes).map(([k, v]) => [k, Object.values(v)])),
    optimizers,
    seconds: SECONDS
  })
  return JSON.parse(execFileSync(python, [script, job], { encoding: "utf8", maxBuffer: 1 << 24 }))
}

const backends = []
backends.push("cpu")
try {
  await import("@tensorflow/tfjs-backend-wasm")
  backends.push("wasm")
} catch {
  console.log("(tfjs-backend-wasm not installed: wasm column skipped)")
}

const rows = []
for (const [size, shapes] of Object.entries(sizes)) {
  for (const [name, config] of Object.entries(optimizers)) {
    const def = Effect.runSync(Effect.flatMap(Optimizers.decode(config), Optimizers.fromConfig))
    const row = { optimizer: name, size }
    for (const backend of backends) {
      await tf.setBackend(backend)
      await tf.ready()
      row[backend] = benchTf(def, shapes)
    }
    row.float64 = benchF64(def, shapes)
    rows.push(row)
  }
}

const torch = torchTimes()
const fmt = (ms) => (ms === undefined ? "-" : ms < 1 ? ms.toFixed(3) : ms.toFixed(1))
const ratio = (a, b) => (a === undefined || b === undefined ? "-" : `${(a / b).toFixed(1)}x`)
const header = [
  "optimizer",
  "parameters",
  ...backends.map((b) => `tfjs-${b} ms`),
  "float64 ms",
  "torch ms",
  ...backends.map((b) => `${b}/torch`),
  "float64/torch"
]
const table = rows.map((r) => {
  const t = torch.results?.find((x) => x.optimizer === r.optimizer && x.size === r.size)?.msPerStep
  return [
    r.optimizer,
    r.size,
    ...backends.map((b) => fmt(r[b])),
    fmt(r.float64),
    fmt(t),
    ...backends.map((b) => ratio(r[b], t)),
    ratio(r.float64, t)
  ]
})
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)))
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`
console.log(
  `\n@stepwise/optim: one optimizer step (ms, median over >= ${SECONDS}s of steps), node ${process.version}`
)
console.log(
  torch.skipped
    ? `torch.optim: skipped (${torch.skipped})`
    : `torch.optim ${torch.torch}, ${torch.threads} threads, same run`
)
console.log(line(header))
console.log(line(widths.map((w) => "-".repeat(w))))
for (const row of table) console.log(line(row))
console.log("ratio = stepwise / torch (lower is better; 1.0x = parity)")
