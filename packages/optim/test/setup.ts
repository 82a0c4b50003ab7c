import * as fc from "fast-check"

// Property tests are seeded, so every run checks the same cases; explore others with
// FC_SEED=<n> npx vitest run --project optim (a failure prints its seed and shrunk case).
fc.configureGlobal({ seed: Number(process.env.FC_SEED ?? 20_261_125) })
