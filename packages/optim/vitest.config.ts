import { mergeConfig } from "vitest/config"
import { shared } from "../../vitest.shared.js"

export default mergeConfig(shared("optim"), { test: { setupFiles: ["test/setup.ts"] } })
