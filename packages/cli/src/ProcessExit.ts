/**
 * Exits once stdout and stderr are flushed. Explicit, because a finished run must end even if a
 * library (a tensor backend, an image decoder's thread pool) still holds the event loop open.
 * Shared by the `stepwise` command (bin) and the runners a sweep spawns (RunnerMain).
 */
export const exitWith = (code: number): void => {
  const streams = [process.stdout, process.stderr].filter((s) => s.writableLength > 0)
  if (streams.length === 0) process.exit(code)
  let pending = streams.length
  for (const s of streams) {
    s.once("drain", () => {
      pending -= 1
      if (pending === 0) process.exit(code)
    })
  }
}
