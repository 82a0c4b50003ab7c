/**
 * `stepwise download rps` against a local HTTP server standing in for the dataset's host
 * (STEPWISE_RPS_BASE_URL), so the test runs offline: real zips, real extraction, real folders.
 */
import { existsSync, mkdtempSync, readdirSync } from "node:fs"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { zipSync } from "fflate"
import sharp from "sharp"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cli } from "./Process.js"

const run = (args: ReadonlyArray<string>, env: Record<string, string>) => cli(args, { env })

let zips: Record<string, Uint8Array> = {}
const server = createServer((req, res) => {
  const body = zips[(req.url ?? "").slice(1)]
  if (body === undefined) {
    res.writeHead(404).end()
    return
  }
  res
    .writeHead(200, { "content-length": body.length, "content-type": "application/zip" })
    .end(Buffer.from(body))
})

beforeAll(async () => {
  // Not a solid colour: stats (rightly) refuses a channel with std 0.
  const pixels = Uint8Array.from({ length: 30 * 30 * 3 }, (_, i) => (i * 37) % 251)
  const png = new Uint8Array(
    await sharp(pixels, { raw: { width: 30, height: 30, channels: 3 } })
      .png()
      .toBuffer()
  )
  const folder = (name: string) =>
    zipSync(
      Object.fromEntries(
        ["paper", "rock", "scissors"].flatMap((c) =>
          [0, 1].map((i) => [`${name}/${c}/${c}${i}.png`, png] as const)
        )
      )
    )
  zips = { "rps.zip": folder("rps"), "rps-test-set.zip": folder("rps-test-set") }
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
})

afterAll(() => {
  server.close()
})

describe("stepwise download rps", () => {
  it("downloads and unpacks both sets, then stats reads them", async () => {
    const to = join(mkdtempSync(join(tmpdir(), "stepwise-dl-")), "data")
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
    const r = await run(["download", "rps", "--to", to, "--json"], { STEPWISE_RPS_BASE_URL: base })
    expect(r.stderr).not.toMatch(/^\s+at /m)
    expect(r.code).toBe(0)
    const result = JSON.parse(r.stdout.trim().split("\n").at(-1)!)
    expect(result.train).toBe(join(to, "rps"))
    expect(result.archives.map((a: { name: string }) => a.name)).toEqual(["rps.zip", "rps-test-set.zip"])
    expect(readdirSync(join(to, "rps")).sort()).toEqual(["paper", "rock", "scissors"])
    expect(readdirSync(join(to, "rps-test-set", "rock")).sort()).toEqual(["rock0.png", "rock1.png"])
    const stats = await run(["stats", "--data", join(to, "rps"), "--json"], {})
    expect(stats.code).toBe(0)
    expect(JSON.parse(stats.stdout.trim().split("\n").at(-1)!).count).toBe(6)
  })

  it("a failing host is one line and leaves no half-filled folder", async () => {
    const to = join(mkdtempSync(join(tmpdir(), "stepwise-dl-")), "data")
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/missing/`
    const r = await run(["download", "rps", "--to", to], { STEPWISE_RPS_BASE_URL: base })
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(/^stepwise: /)
    expect(existsSync(join(to, "rps"))).toBe(false)
  })
})
