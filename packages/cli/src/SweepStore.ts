/**
 * Where a sweep's cluster keeps its state (@effect/cluster's message and runner tables): a SQLite
 * file on one machine (`sqlite:PATH`, or a path ending in .db), PostgreSQL when runners live on
 * several machines (`postgres://...`). This module turns a `--storage URL` into an `SqlClient`
 * layer, checks that it answers, and stamps it with the stepwise version that owns it.
 */
import { readFileSync } from "node:fs"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Duration, Effect, Layer, Redacted, Schedule } from "effect"
import { COMMAND_LINE, ConfigError, firstLine, StorageError, VersionMismatch } from "./Errors.js"

/** This package's version (a runner only joins storage stamped with the same). */
export const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
    return typeof pkg.version === "string" ? pkg.version : "unknown"
  } catch {
    return "unknown"
  }
})()

export type Storage =
  | { readonly _tag: "sqlite"; readonly url: string; readonly filename: string }
  | { readonly _tag: "pg"; readonly url: string }

/** Parses a `--storage` value; anything else is a one-line error naming it. */
export const parse = (url: string): Effect.Effect<Storage, ConfigError> => {
  if (/^postgres(ql)?:\/\//.test(url)) return Effect.succeed({ _tag: "pg", url })
  const m = /^sqlite:(?:\/\/)?(.+)$/.exec(url)
  if (m !== null) return Effect.succeed({ _tag: "sqlite", url, filename: m[1] })
  if (/\.(db|sqlite3?)$/.test(url) && !url.includes("://"))
    return Effect.succeed({ _tag: "sqlite", url, filename: url })
  return Effect.fail(
    new ConfigError({
      file: COMMAND_LINE,
      field: `--storage ${url}`,
      reason: "expected sqlite:PATH (or a .db file) or postgres://USER@HOST:PORT/DB"
    })
  )
}

/** The printable form of a storage URL: no password. */
export const shown = (url: string) => url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@")

/**
 * The SqlClient of a storage, checked with one query (so an unreachable server or an
 * unwritable file fails here, with its reason, rather than deep inside the cluster).
 */
export const layer = (storage: Storage): Layer.Layer<SqlClient.SqlClient, StorageError> => {
  const fail = (cause: unknown) =>
    new StorageError({ url: shown(storage.url), reason: reasonOf(cause), cause })
  const client: Layer.Layer<SqlClient.SqlClient, unknown> =
    storage._tag === "pg"
      ? PgClient.layer({ url: Redacted.make(storage.url) })
      : SqliteClient.layer({ filename: storage.filename })
  const checked = Layer.effectDiscard(
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      // SQLite: the sweep and its runners share one file; on a loaded machine a writer can hold
      // it longer than better-sqlite3's default 5 s wait ("database is locked"). Wait up to 15 s
      // (less than the shards' 30 s lock expiry: the wait blocks the runner's main thread).
      Effect.zipRight(
        storage._tag === "pg" ? Effect.void : Effect.asVoid(sql`PRAGMA busy_timeout = 15000`),
        sql`SELECT 1`
      )
    ).pipe(
      Effect.timeoutFail({ duration: Duration.seconds(10), onTimeout: () => new Error("no answer in 10s") }),
      Effect.mapError(fail)
    )
  )
  return Layer.provideMerge(checked, Layer.mapError(client, fail))
}

const reasonOf = (cause: unknown): string => {
  for (let x: any = cause, depth = 0; x != null && depth < 5; depth++) {
    if (typeof x.code === "string" && /^E[A-Z]+$/.test(x.code)) return `cannot connect (${x.code})`
    if (x.cause === undefined) break
    x = x.cause
  }
  return firstLine(cause)
}

/**
 * Stamps the storage with this version, or checks the stamp (a runner joining): storage made by
 * another version is refused naming both.
 */
export const stamp = (url: string, options: { readonly create: boolean }) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE IF NOT EXISTS stepwise_meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)`
    // The first to stamp wins; a concurrent stamp of the same fresh storage reads its value.
    if (options.create)
      yield* sql`INSERT INTO stepwise_meta (key, value) VALUES ('version', ${VERSION}) ON CONFLICT (key) DO NOTHING`
    const rows = yield* sql<{ value: string }>`SELECT value FROM stepwise_meta WHERE key = 'version'`
    const theirs = rows[0]?.value
    if (theirs !== undefined && theirs !== VERSION)
      return yield* new VersionMismatch({ url: shown(url), ours: VERSION, theirs })
  }).pipe(
    // The sweep and its runners stamp a fresh database at once, and PostgreSQL's CREATE TABLE IF
    // NOT EXISTS is not safe against a concurrent one: the loser's retry finds the table made.
    Effect.retry({
      schedule: Schedule.spaced("200 millis"),
      times: 5,
      while: (e) => e._tag === "SqlError"
    }),
    Effect.catchTag(
      "SqlError",
      (cause) => new StorageError({ url: shown(url), reason: reasonOf(cause), cause })
    )
  )
