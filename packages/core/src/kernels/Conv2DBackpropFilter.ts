import type { backend_util } from "@tensorflow/tfjs-core"

/**
 * The filter gradient of a 2-D convolution in NHWC with filters [kh, kw, in, out], over flat
 * arrays: dW[kh,kw,ci,co] = sum over (b, oh, ow) of x[b, oh*sh - top + kh, ow*sw - left + kw, ci]
 * * dy[b, oh, ow, co]. Shared by the cpu kernel and the wasm kernel's strided-and-padded case.
 * Accumulates in float64 (one rounding at the end), which is what makes it agree with the stock
 * kernels to float32 precision.
 */
export const conv2dBackpropFilterNhwc = (
  x: Float32Array,
  dy: Float32Array,
  info: backend_util.Conv2DInfo
): Float32Array => {
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info
  const { strideHeight, strideWidth, filterHeight, filterWidth, dilationHeight, dilationWidth } = info
  const top = info.padInfo.top
  const left = info.padInfo.left
  const acc = new Float64Array(filterHeight * filterWidth * inChannels * outChannels)
  const tap = inChannels * outChannels
  for (let b = 0; b < batchSize; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let kh = 0; kh < filterHeight; kh++) {
        const ih = oh * strideHeight - top + kh * dilationHeight
        if (ih < 0 || ih >= inHeight) continue
        const xRow = (b * inHeight + ih) * inWidth
        const dyRow = (b * outHeight + oh) * outWidth
        for (let kw = 0; kw < filterWidth; kw++) {
          const wOff = (kh * filterWidth + kw) * tap
          for (let ow = 0; ow < outWidth; ow++) {
            const iw = ow * strideWidth - left + kw * dilationWidth
            if (iw < 0 || iw >= inWidth) continue
            const xOff = (xRow + iw) * inChannels
            const dyOff = (dyRow + ow) * outChannels
            for (let ci = 0; ci < inChannels; ci++) {
              const xv = x[xOff + ci]
              // Inputs after a ReLU are mostly zero: skipping them is the cheapest speed-up.
              if (xv === 0) continue
              const o = wOff + ci * outChannels
              for (let co = 0; co < outChannels; co++) acc[o + co] += xv * dy[dyOff + co]
            }
          }
        }
      }
    }
  }
  return Float32Array.from(acc)
}

/**
 * The gradient of a 2-D max pool in NHWC over flat arrays: each output's gradient goes to the
 * first strictly largest input of its window (tfjs's `maxPoolPositions` tie rule).
 */
/**
 * Non-overlapping windows (kernel = stride, no padding: the usual MaxPool2d(k)): one pass over
 * the outputs, each reading its own window (strided by the channel count) and adding its
 * gradient at the window's first strictly largest input. 2x2 windows, CNN2's, are unrolled.
 */
const maxPoolGradTiled = (
  x: Float32Array,
  dy: Float32Array,
  info: backend_util.Conv2DInfo,
  dx: Float32Array,
  afterRelu: boolean
): Float32Array => {
  const {
    batchSize,
    inHeight,
    inWidth,
    inChannels: c,
    outHeight,
    outWidth,
    strideHeight: sh,
    strideWidth: sw
  } = info
  const rowStride = inWidth * c
  const windowStride = sw * c
  const twoByTwo = sh === 2 && sw === 2
  // best > floor: a gradient reaches a window's maximum unless it is not positive after a ReLU;
  // best starts at -Infinity, so a window of -Infinity and NaN passes nothing (at stays -1).
  const floor = afterRelu ? 0 : Number.NEGATIVE_INFINITY
  let o = 0
  for (let b = 0; b < batchSize; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      let corner = (b * inHeight + oh * sh) * rowStride
      for (let ow = 0; ow < outWidth; ow++, corner += windowStride) {
        for (let d = 0; d < c; d++, o++) {
          let best = Number.NEGATIVE_INFINITY
          let at = -1
          if (twoByTwo) {
            // Window rows in order, columns in order within each: tfjs' first-maximum rule.
            const i0 = corner + d
            const i2 = i0 + rowStride
            let v = x[i0]
            if (v > best) {
              best = v
              at = i0
            }
            v = x[i0 + c]
            if (v > best) {
              best = v
              at = i0 + c
            }
            v = x[i2]
            if (v > best) {
              best = v
              at = i2
            }
            v = x[i2 + c]
            if (v > best) {
              best = v
              at = i2 + c
            }
          } else {
            for (let r = 0; r < sh; r++) {
              let i = corner + r * rowStride + d
              for (let q = 0; q < sw; q++, i += c) {
                const v = x[i]
                if (v > best) {
                  best = v
                  at = i
                }
              }
            }
          }
          if (at >= 0 && best > floor) dx[at] += dy[o]
        }
      }
    }
  }
  return dx
}

/** Whether a pool's windows tile its input (kernel = stride, undilated, no padding). */
export const tiles = (info: backend_util.Conv2DInfo): boolean =>
  info.filterHeight === info.strideHeight &&
  info.filterWidth === info.strideWidth &&
  info.dilationHeight === 1 &&
  info.dilationWidth === 1 &&
  info.padInfo.top === 0 &&
  info.padInfo.left === 0 &&
  info.padInfo.bottom === 0 &&
  info.padInfo.right === 0

export const maxPoolGradNhwc = (
  x: Float32Array,
  dy: Float32Array,
  info: backend_util.Conv2DInfo,
  /** Where to write (zeros, input-sized): the wasm kernel passes its output's heap view. */
  dx: Float32Array = new Float32Array(info.batchSize * info.inHeight * info.inWidth * info.inChannels),
  /**
   * `x` is a ReLU's output and `dx` is wanted for the ReLU's input: a gradient only reaches a
   * window's maximum when it is positive (ReLU's backward, fused: one kernel and pass fewer).
   */
  afterRelu = false
): Float32Array => {
  const { batchSize, inHeight, inWidth, inChannels: c, outHeight, outWidth } = info
  const { strideHeight, strideWidth, effectiveFilterHeight, effectiveFilterWidth } = info
  const { dilationHeight, dilationWidth } = info
  const top = info.padInfo.top
  const left = info.padInfo.left
  if (tiles(info)) return maxPoolGradTiled(x, dy, info, dx, afterRelu)
  // Channels innermost, so every read is contiguous; one running maximum per channel.
  const best = new Float32Array(c)
  const at = new Int32Array(c)
  for (let b = 0; b < batchSize; b++) {
    const xBatch = b * inHeight * inWidth * c
    for (let oh = 0; oh < outHeight; oh++) {
      const rCorner = oh * strideHeight - top
      let rMin = rCorner
      while (rMin < 0) rMin += dilationHeight
      const rMax = Math.min(inHeight, rCorner + effectiveFilterHeight)
      for (let ow = 0; ow < outWidth; ow++) {
        const cCorner = ow * strideWidth - left
        let cMin = cCorner
        while (cMin < 0) cMin += dilationWidth
        const cMax = Math.min(inWidth, cCorner + effectiveFilterWidth)
        // Plain loops: a fill() call per window costs more than the window itself.
        for (let d = 0; d < c; d++) {
          best[d] = Number.NEGATIVE_INFINITY
          at[d] = -1
        }
        for (let r = rMin; r < rMax; r += dilationHeight) {
          for (let q = cMin; q < cMax; q += dilationWidth) {
            const base = xBatch + (r * inWidth + q) * c
            for (let d = 0; d < c; d++) {
              const v = x[base + d]
              if (v > best[d]) {
                best[d] = v
                at[d] = base + d
              }
            }
          }
        }
        const dyOff = ((b * outHeight + oh) * outWidth + ow) * c
        for (let d = 0; d < c; d++) if (at[d] >= 0 && (!afterRelu || best[d] > 0)) dx[at[d]] += dy[dyOff + d]
      }
    }
  }
  return dx
}

/**
 * The walk shared by im2col and col2im: for every [row, kh, kw] block of `c` column entries (rows
 * in output-position order), `cell(o, src)` with `o` the block's column offset and `src` the
 * matching NHWC input offset, or -1 where the window hangs over the padding.
 */
const forEachColumnBlock = (info: backend_util.Conv2DInfo, cell: (o: number, src: number) => void): void => {
  const { batchSize, inHeight, inWidth, inChannels: c, outHeight, outWidth } = info
  const { strideHeight, strideWidth, filterHeight, filterWidth, dilationHeight, dilationWidth } = info
  const top = info.padInfo.top
  const left = info.padInfo.left
  const k = filterHeight * filterWidth * c
  let row = 0
  for (let b = 0; b < batchSize; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++, row += k) {
        let o = row
        for (let kh = 0; kh < filterHeight; kh++) {
          const ih = oh * strideHeight - top + kh * dilationHeight
          for (let kw = 0; kw < filterWidth; kw++, o += c) {
            const iw = ow * strideWidth - left + kw * dilationWidth
            const outside = ih < 0 || ih >= inHeight || iw < 0 || iw >= inWidth
            cell(o, outside ? -1 : ((b * inHeight + ih) * inWidth + iw) * c)
          }
        }
      }
    }
  }
}

/**
 * im2col: `cols` [n * outH * outW, kh * kw * inC] gets, for every output position, the input
 * window it sees (zeros where the window hangs over the padding). Rows are ordered like a
 * [kh, kw, in, out] filter's, so one matrix product with dy gives the filter gradient.
 */
export const im2colNhwc = (x: Float32Array, cols: Float32Array, info: backend_util.Conv2DInfo): void => {
  const c = info.inChannels
  forEachColumnBlock(info, (o, src) => {
    if (src < 0) cols.fill(0, o, o + c)
    else for (let ch = 0; ch < c; ch++) cols[o + ch] = x[src + ch]
  })
}

/** col2im: the adjoint of `im2colNhwc`, summing each column entry back into `dx` (zeroed here). */
export const col2imNhwc = (cols: Float32Array, dx: Float32Array, info: backend_util.Conv2DInfo): void => {
  const c = info.inChannels
  dx.fill(0)
  forEachColumnBlock(info, (o, dst) => {
    if (dst >= 0) for (let ch = 0; ch < c; ch++) dx[dst + ch] += cols[o + ch]
  })
}
