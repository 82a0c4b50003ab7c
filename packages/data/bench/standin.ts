/**
 * A full-size stand-in for Rock Paper Scissors (the originals cannot be downloaded here):
 * 300x300 RGBA PNGs, 2,520 training + 372 test images in paper/rock/scissors folders, drawn as
 * smooth shaded "hands" on a white background with sensor-like noise, so the files compress to
 * about the size of the real ones (~70 KB) and decode at the same cost.
 */

import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Random } from "@stepwise/data"
import sharp from "sharp"

const SIZE = 300
const VERSION = "v1"

const draw = (seed: number): Buffer => {
  let s = Random.unsafeMake(seed)
  const take = () => {
    const [u, next] = Random.nextFloat(s)
    s = next
    return u
  }
  const blobs = Array.from({ length: 5 }, () => ({
    cx: 60 + take() * 180,
    cy: 60 + take() * 180,
    rx: 25 + take() * 60,
    ry: 25 + take() * 60,
    shade: [200 + take() * 40, 150 + take() * 50, 120 + take() * 50]
  }))
  const data = Buffer.alloc(SIZE * SIZE * 4)
  const [noise] = Random.normals(s, SIZE * SIZE)
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const i = y * SIZE + x
      let inside = 0
      for (const b of blobs) {
        const d = ((x - b.cx) / b.rx) ** 2 + ((y - b.cy) / b.ry) ** 2
        if (d < 1) inside = Math.max(inside, 1 - d)
      }
      const o = i * 4
      if (inside > 0) {
        const light = 0.75 + 0.25 * inside + 0.02 * noise[i]
        data[o] = Math.min(255, blobs[0].shade[0] * light)
        data[o + 1] = Math.min(255, blobs[0].shade[1] * light)
        data[o + 2] = Math.min(255, blobs[0].shade[2] * light)
        data[o + 3] = 255
      } else {
        // Near-white background with faint noise, as in the rendered originals.
        const v = Math.max(0, Math.min(255, 251 + 1.2 * noise[i]))
        data[o] = v
        data[o + 1] = v
        data[o + 2] = v
        data[o + 3] = 255
      }
    }
  }
  return data
}

export const encode = (seed: number): Promise<Buffer> =>
  sharp(draw(seed), { raw: { width: SIZE, height: SIZE, channels: 4 } })
    .png({ compressionLevel: 6 })
    .toBuffer()

/** Makes the stand-in set under the system temp folder once and returns its root. */
export const standIn = async (
  log: (line: string) => void = () => {}
): Promise<{ train: string; test: string }> => {
  const root = join(tmpdir(), `stepwise-rps-standin-${VERSION}`)
  const done = { train: join(root, "rps"), test: join(root, "rps-test-set") }
  if (existsSync(join(root, "complete"))) return done
  const work = `${root}.tmp-${process.pid}`
  rmSync(work, { recursive: true, force: true })
  const jobs: Array<{ path: string; seed: number }> = []
  const sets: ReadonlyArray<[string, number]> = [
    ["rps", 840],
    ["rps-test-set", 124]
  ]
  let seed = 0
  for (const [set, perClass] of sets) {
    for (const c of ["paper", "rock", "scissors"]) {
      mkdirSync(join(work, set, c), { recursive: true })
      for (let i = 0; i < perClass; i++)
        jobs.push({ path: join(work, set, c, `${c}-${String(i).padStart(3, "0")}.png`), seed: seed++ })
    }
  }
  log(`generating ${jobs.length} 300x300 RGBA PNGs under ${root} (once)...`)
  let next = 0
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++]
        writeFileSync(job.path, await encode(job.seed))
      }
    })
  )
  writeFileSync(join(work, "complete"), `${jobs.length}\n`)
  rmSync(root, { recursive: true, force: true })
  renameSync(work, root)
  log(`  ${readdirSync(join(root, "rps", "paper")).length} per training class`)
  return done
}
