/**
 * What a user watches while training: a live bar per epoch on a terminal (batches done, loss,
 * lr, throughput, ETA), one plain line per epoch otherwise so CI logs stay readable, and a
 * summary table at the end. Formatting is pure; `Output` is the service that writes it.
 */
import { Context, Effect, Layer, Option } from "effect"

export interface BatchProgress {
  readonly epoch: number
  readonly epochs: number
  /** Batches done in this epoch (1-based). */
  readonly batch: number
  readonly batches: number
  readonly loss: number
  readonly lr: number
  /** NaN while there is nothing to measure yet (the epoch's first batch). */
  readonly samplesPerSecond: number
  /** Seconds spent on the last `paceBatches` batches. */
  readonly elapsedSeconds: number
  /** How many batches `elapsedSeconds` covers; default `batch`. */
  readonly paceBatches?: number
}

/**
 * The pace of an epoch, measured from the end of the first batch it is asked about: that
 * batch carries the warm-up (kernel compilation on the very first one) and whatever paused
 * before it (the previous epoch's validation), so counting it gave "16000 img/s" on the first
 * batch and "14 img/s, ETA 3:05" on the first batch of epoch 2. Returns the fields of
 * `BatchProgress` it measures; NaN (shown as "-") until a second batch ends.
 */
export const makePace = (batchSize: number) => {
  let epoch = Number.NaN
  let fromBatch = 0
  let fromMs = 0
  return (
    currentEpoch: number,
    batch: number,
    nowMs: number
  ): Pick<BatchProgress, "samplesPerSecond" | "elapsedSeconds" | "paceBatches"> => {
    if (currentEpoch !== epoch || batch <= fromBatch) {
      epoch = currentEpoch
      fromBatch = batch
      fromMs = nowMs
      return { samplesPerSecond: Number.NaN, elapsedSeconds: Number.NaN, paceBatches: 0 }
    }
    const seconds = Math.max(1e-3, (nowMs - fromMs) / 1000)
    const done = batch - fromBatch
    return { samplesPerSecond: (done * batchSize) / seconds, elapsedSeconds: seconds, paceBatches: done }
  }
}

export interface EpochRow {
  readonly epoch: number
  readonly loss: number
  readonly valLoss: number | null
  readonly lr: number
  readonly trainAccuracy: number | null
  readonly valAccuracy: number | null
  readonly seconds: number
}

export const formatSeconds = (s: number): string => {
  if (!Number.isFinite(s) || s < 0) return "--:--"
  const total = Math.round(s)
  const m = Math.floor(total / 60)
  const sec = total % 60
  return m >= 60
    ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(sec).padStart(2, "0")}`
    : `${m}:${String(sec).padStart(2, "0")}`
}

export const formatLr = (lr: number): string => lr.toExponential(2)

const pct = (x: number | null) => (x === null ? "   -  " : `${(100 * x).toFixed(1).padStart(5)}%`)
const num = (x: number | null) => (x === null || !Number.isFinite(x) ? "   -   " : x.toFixed(4))

/**
 * The live bar, fitted to `columns`:
 * `epoch 3/10 [#########.......]  98/158 loss 0.5123 lr 1.00e-03 812 img/s ETA 0:02`.
 * On a narrow terminal the less important parts go first (throughput, lr, loss, then the bar
 * itself); the batch count and the ETA are never cut.
 */
export const formatBar = (p: BatchProgress, columns = 100): string => {
  const frac = p.batches > 0 ? Math.min(1, p.batch / p.batches) : 0
  const measured = p.paceBatches ?? p.batch
  const eta = measured > 0 ? (p.elapsedSeconds / measured) * (p.batches - p.batch) : Number.NaN
  const digits = String(p.batches).length
  const epoch = `epoch ${String(p.epoch).padStart(String(p.epochs).length)}/${p.epochs}`
  const count = `${String(p.batch).padStart(digits)}/${p.batches}`
  const loss = `loss ${num(p.loss)}`
  const lr = `lr ${formatLr(p.lr)}`
  const rate = `${Number.isFinite(p.samplesPerSecond) ? Math.round(p.samplesPerSecond) : "-"} img/s`
  const etaText = `ETA ${formatSeconds(eta)}`
  const max = columns - 1
  const layouts: ReadonlyArray<ReadonlyArray<string>> = [
    [count, loss, lr, rate, etaText],
    [count, loss, lr, etaText],
    [count, loss, etaText],
    [count, etaText]
  ]
  for (const parts of layouts) {
    const tail = ` ${parts.join(" ")}`
    const room = max - epoch.length - 1 - tail.length - 2
    if (room >= 5) {
      const width = Math.min(30, room)
      const filled = Math.round(frac * width)
      return `${epoch} [${"#".repeat(filled)}${".".repeat(width - filled)}]${tail}`
    }
  }
  for (const line of [`${epoch} ${count} ${etaText}`, `${count.trim()} ${etaText}`])
    if (line.length <= max) return line
  return etaText
}

/** The plain per-epoch line (also what the bar is replaced with when an epoch ends). */
export const formatEpochLine = (row: EpochRow, epochs: number): string =>
  `epoch ${String(row.epoch).padStart(String(epochs).length)}/${epochs} ` +
  `loss ${num(row.loss)} val_loss ${num(row.valLoss)} ` +
  `acc ${pct(row.trainAccuracy).trim()} val_acc ${pct(row.valAccuracy).trim()} ` +
  `lr ${formatLr(row.lr)} ${row.seconds.toFixed(1)}s`

/** The end-of-run table, one row per epoch, columns aligned. */
export const summaryTable = (rows: ReadonlyArray<EpochRow>): string => {
  const header = ["epoch", "loss", "val_loss", "train_acc", "val_acc", "lr", "seconds"]
  const body = rows.map((r) => [
    String(r.epoch),
    num(r.loss),
    num(r.valLoss),
    pct(r.trainAccuracy).trim(),
    pct(r.valAccuracy).trim(),
    formatLr(r.lr),
    r.seconds.toFixed(1)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => c.padStart(widths[i])).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n")
}

/**
 * Where output goes. Human text goes to stdout, or to stderr when `--json` reserves stdout for
 * the final JSON object. `live` is true when that human stream is a terminal.
 */
export class Output extends Context.Tag("@stepwise/cli/Output")<
  Output,
  {
    readonly live: boolean
    /** Width of the human stream's terminal (100 when not a terminal). */
    readonly columns: number
    /** A full line of human output. */
    readonly line: (text: string) => Effect.Effect<void>
    /** Redraws the current terminal line (only when `live`). */
    readonly status: (text: string) => Effect.Effect<void>
    /** Ends a status line so the next `line` starts clean. */
    readonly clearStatus: Effect.Effect<void>
    /**
     * Redraws a block of lines in place (a live table: the sweep's trials), over the block drawn
     * last; only when `live`.
     */
    readonly block: (text: string) => Effect.Effect<void>
    /** The machine-readable result: one JSON object, last line on stdout. */
    readonly json: (value: unknown) => Effect.Effect<void>
    readonly jsonMode: boolean
  }
>() {}

/** A stream as `makeOutput` writes to it (a terminal's size and colours when it is one). */
export type Stream = Pick<NodeJS.WriteStream, "write"> &
  Partial<Pick<NodeJS.WriteStream, "isTTY" | "columns">>

/**
 * Where a command's output goes instead of this process's stdout and stderr: a sweep's own
 * runner writes its trials' `train` output to its log file (`Sweep`).
 */
export class OutputStreams extends Context.Tag("@stepwise/cli/Progress/OutputStreams")<
  OutputStreams,
  { readonly stdout: Stream; readonly stderr: Stream }
>() {}

export const makeOutput = (options: {
  readonly json: boolean
  readonly stdout: Stream
  readonly stderr: Stream
}) => {
  const human = options.json ? options.stderr : options.stdout
  const live = human.isTTY === true
  let statusShown = false
  let blockLines = 0
  const write = (s: string) => Effect.sync(() => void human.write(s))
  const clearStatus = Effect.suspend(() => {
    if (!statusShown) return Effect.void
    statusShown = false
    return write("\r\x1b[2K")
  })
  return Output.of({
    live,
    columns: human.columns ?? 100,
    jsonMode: options.json,
    line: (text) => clearStatus.pipe(Effect.zipRight(write(`${text}\n`))),
    status: (text) =>
      live
        ? Effect.suspend(() => {
            statusShown = true
            const cols = human.columns ?? 120
            return write(`\r\x1b[2K${text.length > cols - 1 ? text.slice(0, cols - 1) : text}`)
          })
        : Effect.void,
    clearStatus,
    block: (text) =>
      live
        ? Effect.suspend(() => {
            const up = blockLines > 0 ? `\x1b[${blockLines}A\x1b[J` : ""
            blockLines = text.split("\n").length
            return write(`${up}${text}\n`)
          })
        : Effect.void,
    json: (value) =>
      options.json ? Effect.sync(() => void options.stdout.write(`${JSON.stringify(value)}\n`)) : Effect.void
  })
}

export const layerOutput = (json: boolean) =>
  Layer.effect(
    Output,
    Effect.map(Effect.serviceOption(OutputStreams), (streams) =>
      makeOutput({
        json,
        ...Option.getOrElse(streams, () => ({ stdout: process.stdout, stderr: process.stderr }))
      })
    )
  )
