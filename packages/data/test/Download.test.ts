import { createHash } from "node:crypto"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import { NodeFileSystem, NodeHttpClient } from "@effect/platform-node"
import { it } from "@effect/vitest"
import { DecodePool, Errors, ImageFolder, Rps } from "@stepwise/data"
import { Effect, Layer } from "effect"
import { zipSync } from "fflate"
import { afterAll, beforeAll, describe, expect } from "vitest"
import { tempDirs } from "./TempDir.js"

// Two tiny archives laid out like the real ones: a top-level folder with one sub-folder per class.
const png = readFileSync(new URL("../assets/rps-28/rps/paper/paper01-000.png", import.meta.url))
const makeZip = (folder: string, perClass: number) => {
  const files: Record<string, Uint8Array> = {}
  for (const c of ["paper", "rock", "scissors"]) {
    for (let i = 0; i < perClass; i++) files[`${folder}/${c}/${c}${i}.png`] = png
  }
  files["__MACOSX/._junk"] = new Uint8Array([1, 2, 3])
  return Buffer.from(zipSync(files))
}
// 50 MB of zeros in one entry: a ~50 KB archive (a zip bomb, scaled down).
const bomb = Buffer.from(zipSync({ "rps/paper/bomb.png": new Uint8Array(50e6) }))
/** The same archive lying in its central directory: the entry claims to hold 1,000 bytes. */
const liar = (() => {
  const b = Buffer.from(bomb)
  const dir = b.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]))
  b.writeUInt32LE(1000, dir + 24)
  return b
})()
const zips: Record<string, Buffer> = {
  "/data/bomb.zip": bomb,
  "/data/liar.zip": liar,
  "/data/rps.zip": makeZip("rps", 4),
  "/data/rps-test-set.zip": makeZip("rps-test-set", 2),
  "/data/evil.zip": Buffer.from(zipSync({ "rps/../../escaped.png": png })),
  "/data/garbage.zip": Buffer.from("this is not a zip file at all")
}
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex")

let server: Server
let base = ""
beforeAll(async () => {
  server = createServer((req, res) => {
    const url = req.url ?? ""
    if (url.startsWith("/stall-headers/")) return // accepts, never answers
    if (url.startsWith("/stall-body/")) {
      const body = zips["/data/rps.zip"]
      res.writeHead(200, { "content-length": String(body.length) })
      res.write(body.subarray(0, 100)) // then silence, connection kept open
      return
    }
    if (url === "/r1/rps.zip") {
      res.writeHead(302, { location: "/r2/rps.zip" }).end()
      return
    }
    if (url === "/r2/rps.zip") {
      res.writeHead(301, { location: `${base}/data/rps.zip` }).end()
      return
    }
    if (url === "/loop/rps.zip") {
      res.writeHead(302, { location: "/loop/rps.zip" }).end()
      return
    }
    if (url === "/truncated/rps.zip") {
      // Promises more bytes than it sends, then hangs up.
      const body = zips["/data/rps.zip"]
      res.writeHead(200, { "content-length": String(body.length + 1000) })
      res.write(body.subarray(0, 100))
      res.destroy()
      return
    }
    const body = zips[url]
    if (!body) {
      res.writeHead(404).end("not found")
      return
    }
    res.writeHead(200, { "content-length": String(body.length) })
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => {
  server.closeAllConnections()
  server.close()
})

const tempDir = tempDirs("stepwise-dl-")
const live = Layer.mergeAll(NodeFileSystem.layer, NodeHttpClient.layerUndici, DecodePool.layerDefault)
const onlyDatasetFolders = (dir: string) => readdirSync(dir).sort()

describe("downloadRps against a local HTTP server", () => {
  it.effect("downloads, reports progress, verifies, extracts and renames into place", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const progress: Array<Rps.Progress> = []
      const result = yield* Rps.downloadRps(dir, {
        baseUrl: `${base}/data/`,
        archives: [
          {
            name: "rps.zip",
            folder: "rps",
            size: zips["/data/rps.zip"].length,
            sha256: sha(zips["/data/rps.zip"])
          },
          { name: "rps-test-set.zip", folder: "rps-test-set" }
        ],
        onProgress: (p) => Effect.sync(() => progress.push(p))
      })
      expect(result.train).toBe(join(dir, "rps"))
      expect(result.archives[1].sha256).toBe(sha(zips["/data/rps-test-set.zip"]))
      expect(onlyDatasetFolders(dir)).toEqual(["rps", "rps-test-set"]) // no temp files left
      const last = progress.filter((p) => p.file === "rps.zip").at(-1)!
      expect(last.received).toBe(zips["/data/rps.zip"].length)
      expect(last.total).toBe(zips["/data/rps.zip"].length)
      const train = yield* ImageFolder.make(result.train)
      expect(train.length).toBe(12)
      const test = yield* ImageFolder.make(result.test)
      expect(test.length).toBe(6)
      expect(readFileSync(train.samples[0].path).equals(png)).toBe(true)
      // A second call finds the folders and downloads nothing.
      const again = yield* Rps.downloadRps(dir, { baseUrl: `${base}/data/` })
      expect(again.archives.every((a) => a.skipped)).toBe(true)
    }).pipe(Effect.provide(live))
  )

  const failing: ReadonlyArray<[string, string, Rps.Archive, RegExp]> = [
    [
      "a checksum mismatch",
      "/data/",
      { name: "rps.zip", folder: "rps", sha256: "00".repeat(32) },
      /SHA-256 .* does not match/
    ],
    ["a size mismatch", "/data/", { name: "rps.zip", folder: "rps", size: 12345 }, /expected 12345/],
    ["an HTTP 404", "/data/", { name: "missing.zip", folder: "rps" }, /HTTP status 404/],
    ["a connection cut short", "/truncated/", { name: "rps.zip", folder: "rps" }, /./],
    ["a file that is not a zip", "/data/", { name: "garbage.zip", folder: "rps" }, /not a valid zip/],
    [
      "an entry escaping the folder",
      "/data/",
      { name: "evil.zip", folder: "rps" },
      /outside the target folder/
    ]
  ]
  for (const [what, path, archive, reason] of failing) {
    it.effect(`${what}: a DownloadError naming the URL, and no dataset folder left behind`, () =>
      Effect.gen(function* () {
        const dir = tempDir()
        const e = yield* Effect.flip(Rps.downloadRps(dir, { baseUrl: `${base}${path}`, archives: [archive] }))
        expect(e).toBeInstanceOf(Errors.DownloadError)
        expect((e as Errors.DownloadError).url).toBe(`${base}${path}${archive.name}`)
        expect((e as Errors.DownloadError).reason).toMatch(reason)
        expect(onlyDatasetFolders(dir)).toEqual([])
        expect(existsSync(join(dir, "..", "escaped.png"))).toBe(false)
      }).pipe(Effect.provide(live))
    )
  }

  const quick = { connectTimeout: "300 millis", idleTimeout: "300 millis" } as const
  const hardening: ReadonlyArray<[string, string, string, Partial<Rps.DownloadOptions>, RegExp]> = [
    [
      "a server that never answers",
      "/stall-headers/",
      "rps.zip",
      quick,
      /no response within 300ms \(server unreachable or stalled\)/
    ],
    [
      "a server that stalls mid-body",
      "/stall-body/",
      "rps.zip",
      quick,
      /no data for 300ms after 100 bytes \(server stalled\)/
    ],
    ["a redirect loop", "/loop/", "rps.zip", { maxRedirects: 3 }, /more than 3 redirects/],
    [
      "a zip bomb (one entry above maxEntryBytes)",
      "/data/",
      "bomb.zip",
      { maxEntryBytes: 10e6 },
      /entry rps\/paper\/bomb.png declares 50000000 bytes, more than the limit of 10000000/
    ],
    [
      "a zip bomb (the archive above maxExtractedBytes)",
      "/data/",
      "bomb.zip",
      { maxExtractedBytes: 20e6 },
      /archive declares 50000000 bytes of files, more than the limit of 20000000/
    ],
    [
      "a zip that lies about its sizes",
      "/data/",
      "liar.zip",
      {},
      /entry rps\/paper\/bomb.png inflates beyond the 1000 bytes it declares/
    ]
  ]
  for (const [what, path, name, options, reason] of hardening) {
    // Live clock: the time-outs are real time (it.effect's TestClock would never fire them).
    it.live(`${what}: a DownloadError with the reason, nothing left behind`, () =>
      Effect.gen(function* () {
        const dir = tempDir()
        const started = Date.now()
        const before = process.memoryUsage().rss
        const e = yield* Effect.flip(
          Rps.downloadRps(dir, { baseUrl: `${base}${path}`, archives: [{ name, folder: "rps" }], ...options })
        )
        expect(e).toBeInstanceOf(Errors.DownloadError)
        expect((e as Errors.DownloadError).reason).toMatch(reason)
        expect(e.message).toContain(`${base}${path}${name}`)
        expect(Date.now() - started).toBeLessThan(10_000)
        expect(process.memoryUsage().rss - before).toBeLessThan(300e6)
        expect(onlyDatasetFolders(dir)).toEqual([])
      }).pipe(Effect.provide(live))
    )
  }

  it.effect("follows a 302 then a 301 (relative and absolute locations) to the archive", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const result = yield* Rps.downloadRps(dir, {
        baseUrl: `${base}/r1/`,
        archives: [{ name: "rps.zip", folder: "rps", sha256: sha(zips["/data/rps.zip"]) }]
      })
      expect(result.archives[0].size).toBe(zips["/data/rps.zip"].length)
      expect(onlyDatasetFolders(dir)).toEqual(["rps"])
      expect(readdirSync(join(dir, "rps")).sort()).toEqual(["paper", "rock", "scissors"])
    }).pipe(Effect.provide(live))
  )

  it.effect("a refused connection names its cause (ECONNREFUSED), not just a transport error", () =>
    Effect.gen(function* () {
      const closed = createServer()
      yield* Effect.promise(() => new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve)))
      const port = (closed.address() as AddressInfo).port
      yield* Effect.promise(() => new Promise<void>((resolve) => closed.close(() => resolve())))
      const e = yield* Effect.flip(
        Rps.downloadRps(tempDir(), {
          baseUrl: `http://127.0.0.1:${port}/`,
          archives: [{ name: "rps.zip", folder: "rps" }]
        })
      )
      expect((e as Errors.DownloadError).reason).toMatch(/ECONNREFUSED/)
      expect((e as Errors.DownloadError).reason).not.toMatch(/^Transport error/)
    }).pipe(Effect.provide(live))
  )
})
