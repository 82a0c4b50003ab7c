/**
 * A batch as the training loop sees it: flat typed arrays plus a shape, no tensor library.
 *
 * Images are NCHW float32 like torchvision's `ToTensor` output stacked by its `DataLoader`;
 * tabular data (the chapter's linear regression) uses `[n, features]`.
 */

/** Targets: class indices for classification, float values for regression. */
export type Targets = Int32Array | Float32Array

export interface Batch<Y extends Targets = Int32Array> {
  /** Row-major samples, `shape` describes it (NCHW for images). */
  readonly x: Float32Array
  /** `[n, c, h, w]` for images, `[n, features]` for tabular data. */
  readonly shape: ReadonlyArray<number>
  /** One target per sample (length n; for regression with several outputs, n * outputs). */
  readonly y: Y
}
