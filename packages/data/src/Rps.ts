/**
 * Rock Paper Scissors: the bundled 28x28 copy (works offline) and the full-size download.
 */
import { fileURLToPath } from "node:url"

/** Where the bundled copy lives; `../assets` resolves the same from `src/` and `dist/`. */
const bundledRoot = fileURLToPath(new URL("../assets/rps-28", import.meta.url))

/** Paths of the bundled 28x28 sets: `train` (rps, 2,520 images) and `test` (rps-test-set, 372). */
export const bundled = (): { readonly root: string; readonly train: string; readonly test: string } => ({
  root: bundledRoot,
  train: `${bundledRoot}/rps`,
  test: `${bundledRoot}/rps-test-set`
})

/** Class names of the dataset, in ImageFolder order. */
export const CLASSES: ReadonlyArray<string> = ["paper", "rock", "scissors"]
