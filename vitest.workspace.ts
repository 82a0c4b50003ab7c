import { defineWorkspace } from "vitest/config"

// One project a package; each package's vitest.config.ts maps @stepwise/* to sources,
// so tests run against src without a build.
export default defineWorkspace(["packages/*"])
