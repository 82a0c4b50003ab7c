import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

const pkg = (name: string) => fileURLToPath(new URL(`./packages/${name}/src`, import.meta.url))

/** Shared vitest settings: `@stepwise/x[/sub]` resolves to `packages/x/src/[sub|index].ts`. */
export const shared = (name: string) =>
  defineConfig({
    resolve: {
      alias: [
        { find: /^@stepwise\/(optim|data|core|cli)$/, replacement: `${pkg("$1")}/index.ts` },
        { find: /^@stepwise\/(optim|data|core|cli)\/(.+)$/, replacement: `${pkg("$1")}/$2.ts` }
      ]
    },
    test: {
      name,
      include: ["test/**/*.test.ts"],
      testTimeout: 60_000,
      hookTimeout: 60_000
    }
  })
