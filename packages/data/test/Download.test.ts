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
const zips: Record<string, Buffer> = {
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
})
