/*
 * stepwise's own wasm SIMD kernels for the training step on the tfjs wasm backend.
 *
 * Built by ./build.sh (Debian's clang 14 + wasm-ld 14) into kernels.wasm, embedded in
 * ../SimdModule.ts so that installing needs no toolchain. The module imports the tfjs wasm
 * backend's own memory ("env", "memory"): every pointer here is an offset into that heap (a
 * tensor's data, or scratch the caller allocated with the backend's malloc). The code keeps no
 * state, uses no stack and has no data segment, so it never writes outside what it is handed.
 */
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))

static inline float hsum(v128_t v) {
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
         (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

/*
 * The filter gradient of a unit-stride, undilated 2-D convolution, NHWC x [n, h, w, ci] and
 * dy [n, oh, ow, co] -> dw [kh, kw, ci, co]:
 *   dw[a, b, c, o] = sum over (s, r, j) of x[s, r + a - top, j + b - left, c] dy[s, r, j, o].
 * Both maps are first laid out planar on scratch, rows padded with zeros to owp (ow rounded up
 * to 4): dy once, x once per filter column b, shifted by b and by the padding. Then every
 * (a, b, c, o) is a dot product of two contiguous runs (x's plane from row a on, dy's plane),
 * f32x4 lanes, float32 sums (lane partial sums, added at the end), as XNNPACK's convolution sums.
 * xs: kw * n * ci * (oh + kh - 1) * owp floats, dyp: n * co * oh * owp.
 */
EXPORT(conv_filter_grad)
void conv_filter_grad(const float* x, const float* dy, float* dw, float* xs, float* dyp, int n, int h,
                      int w, int ci, int oh, int ow, int co, int kh, int kw, int top, int left) {
  const int owp = (ow + 3) & ~3;
  const int hp = oh + kh - 1;
  const int xPlane = hp * owp;
  const int dyPlane = oh * owp;
  const int xCopy = n * ci * xPlane;
  for (int b = 0; b < kw; b++)
    for (int s = 0; s < n; s++)
      for (int c = 0; c < ci; c++) {
        float* plane = xs + b * xCopy + (s * ci + c) * xPlane;
        for (int r = 0; r < hp; r++) {
          const int sr = r - top;
          float* row = plane + r * owp;
          if (sr < 0 || sr >= h) {
            for (int q = 0; q < owp; q++) row[q] = 0.0f;
            continue;
          }
          const float* src = x + ((s * h + sr) * w) * ci + c;
          for (int q = 0; q < owp; q++) {
            const int sc = q + b - left;
            row[q] = (sc >= 0 && sc < w) ? src[sc * ci] : 0.0f;
          }
        }
      }
  for (int s = 0; s < n; s++)
    for (int o = 0; o < co; o++) {
      float* plane = dyp + (s * co + o) * dyPlane;
      for (int r = 0; r < oh; r++) {
        const float* src = dy + ((s * oh + r) * ow) * co + o;
        float* row = plane + r * owp;
        int q = 0;
        for (; q < ow; q++) row[q] = src[q * co];
        for (; q < owp; q++) row[q] = 0.0f;
      }
    }
  for (int a = 0; a < kh; a++)
    for (int b = 0; b < kw; b++)
      for (int c = 0; c < ci; c++) {
        float* out = dw + ((a * kw + b) * ci + c) * co;
        const float* xb = xs + b * xCopy + c * xPlane + a * owp;
        int o = 0;
        // four output channels at a time: one x load serves four products
        for (; o + 4 <= co; o += 4) {
          v128_t acc0 = wasm_f32x4_splat(0.0f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
          for (int s = 0; s < n; s++) {
            const float* xr = xb + s * ci * xPlane;
            const float* d0 = dyp + (s * co + o) * dyPlane;
            const float* d1 = d0 + dyPlane;
            const float* d2 = d1 + dyPlane;
            const float* d3 = d2 + dyPlane;
            for (int j = 0; j < dyPlane; j += 4) {
              const v128_t xv = wasm_v128_load(xr + j);
              acc0 = wasm_f32x4_add(acc0, wasm_f32x4_mul(xv, wasm_v128_load(d0 + j)));
              acc1 = wasm_f32x4_add(acc1, wasm_f32x4_mul(xv, wasm_v128_load(d1 + j)));
              acc2 = wasm_f32x4_add(acc2, wasm_f32x4_mul(xv, wasm_v128_load(d2 + j)));
              acc3 = wasm_f32x4_add(acc3, wasm_f32x4_mul(xv, wasm_v128_load(d3 + j)));
            }
          }
          out[o] = hsum(acc0);
          out[o + 1] = hsum(acc1);
          out[o + 2] = hsum(acc2);
          out[o + 3] = hsum(acc3);
        }
        for (; o < co; o++) {
          v128_t acc0 = wasm_f32x4_splat(0.0f), acc1 = acc0;
          for (int s = 0; s < n; s++) {
            const float* xr = xb + s * ci * xPlane;
            const float* d0 = dyp + (s * co + o) * dyPlane;
            int j = 0;
            // two chains, so additions overlap
            for (; j + 8 <= dyPlane; j += 8) {
              acc0 = wasm_f32x4_add(acc0, wasm_f32x4_mul(wasm_v128_load(xr + j), wasm_v128_load(d0 + j)));
              acc1 = wasm_f32x4_add(acc1, wasm_f32x4_mul(wasm_v128_load(xr + j + 4), wasm_v128_load(d0 + j + 4)));
            }
            for (; j < dyPlane; j += 4)
              acc0 = wasm_f32x4_add(acc0, wasm_f32x4_mul(wasm_v128_load(xr + j), wasm_v128_load(d0 + j)));
          }
          out[o] = hsum(wasm_f32x4_add(acc0, acc1));
        }
      }
}

/*
 * A bias's gradient: dy [m, c] summed over m per channel, in storage order, in float64, rounded
 * to float32 once (the same sums, bit for bit, as the JavaScript kernel on the cpu backend).
 * Four channels at a time, so four independent additions are in flight.
 */
EXPORT(bias_grad)
void bias_grad(const float* dy, float* out, int m, int c) {
  int d = 0;
  for (; d + 4 <= c; d += 4) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const float* p = dy + d;
    for (int i = 0; i < m; i++, p += c) {
      s0 += p[0];
      s1 += p[1];
      s2 += p[2];
      s3 += p[3];
    }
    out[d] = (float)s0;
    out[d + 1] = (float)s1;
    out[d + 2] = (float)s2;
    out[d + 3] = (float)s3;
  }
  for (; d < c; d++) {
    double s = 0;
    const float* p = dy + d;
    for (int i = 0; i < m; i++, p += c) s += p[0];
    out[d] = (float)s;
  }
}

/*
 * The input gradient of a max pool whose windows tile the input (kernel = stride, no padding),
 * NHWC x [n, h, w, c], dy [n, oh, ow, c] -> dx [n, h, w, c]: each output's gradient goes to its
 * window's first strictly largest input (rows in order, columns in order: tfjs' rule; a window
 * of NaN and -Infinity passes nothing). after_relu: x is a ReLU's output and dx is for the
 * ReLU's input, so nothing passes where the maximum is not positive.
 */
/* One 2x2 window, four channels at once (lanes): the winner's lane gets dy, the others 0. */
static inline void window2x2(const float* x, const float* dy, float* dx, int first, int c, int row_stride,
                             v128_t floor_) {
  const int k1 = first + c, k2 = first + row_stride, k3 = k2 + c;
  const v128_t v0 = wasm_v128_load(x + first), v1 = wasm_v128_load(x + k1);
  const v128_t v2 = wasm_v128_load(x + k2), v3 = wasm_v128_load(x + k3);
  v128_t best = wasm_f32x4_splat(-__builtin_inff());
  v128_t at = wasm_i32x4_splat(4);
  v128_t m = wasm_f32x4_gt(v0, best);
  best = wasm_v128_bitselect(v0, best, m);
  at = wasm_v128_bitselect(wasm_i32x4_splat(0), at, m);
  m = wasm_f32x4_gt(v1, best);
  best = wasm_v128_bitselect(v1, best, m);
  at = wasm_v128_bitselect(wasm_i32x4_splat(1), at, m);
  m = wasm_f32x4_gt(v2, best);
  best = wasm_v128_bitselect(v2, best, m);
  at = wasm_v128_bitselect(wasm_i32x4_splat(2), at, m);
  m = wasm_f32x4_gt(v3, best);
  best = wasm_v128_bitselect(v3, best, m);
  at = wasm_v128_bitselect(wasm_i32x4_splat(3), at, m);
  // no winner (nothing above -Infinity, or a maximum the ReLU does not pass): 4
  at = wasm_v128_bitselect(at, wasm_i32x4_splat(4), wasm_f32x4_gt(best, floor_));
  const v128_t g = wasm_v128_load(dy);
  wasm_v128_store(dx + first, wasm_v128_and(g, wasm_i32x4_eq(at, wasm_i32x4_splat(0))));
  wasm_v128_store(dx + k1, wasm_v128_and(g, wasm_i32x4_eq(at, wasm_i32x4_splat(1))));
  wasm_v128_store(dx + k2, wasm_v128_and(g, wasm_i32x4_eq(at, wasm_i32x4_splat(2))));
  wasm_v128_store(dx + k3, wasm_v128_and(g, wasm_i32x4_eq(at, wasm_i32x4_splat(3))));
}

EXPORT(max_pool_grad_tiled)
void max_pool_grad_tiled(const float* x, const float* dy, float* dx, int n, int h, int w, int c, int oh,
                         int ow, int sh, int sw, int after_relu) {
  const float floor_ = after_relu ? 0.0f : -__builtin_inff();
  const int row_stride = w * c;
  const int window_stride = sw * c;
  // What no window covers (the last rows and columns when the size is not a multiple): zero.
  for (int b = 0; b < n; b++) {
    float* image = dx + b * h * row_stride;
    for (int r = 0; r < h; r++) {
      const int from = r < oh * sh ? ow * sw * c : 0;
      for (int q = from; q < row_stride; q++) image[r * row_stride + q] = 0.0f;
    }
  }
  if (sh == 2 && sw == 2 && c >= 4) {
    // Every covered input is written once, with lanes and selects, no branches: which input of
    // a window is largest is random, so a branch on it mispredicts often. Channels in fours;
    // the last four overlap the previous ones when c is not a multiple (same values again).
    const v128_t fl = wasm_f32x4_splat(floor_);
    int o = 0;
    for (int b = 0; b < n; b++)
      for (int r = 0; r < oh; r++) {
        int corner = (b * h + r * sh) * row_stride;
        for (int q = 0; q < ow; q++, corner += window_stride, o += c) {
          for (int d = 0; d + 4 <= c; d += 4) window2x2(x, dy + o + d, dx, corner + d, c, row_stride, fl);
          if (c % 4 != 0) window2x2(x, dy + o + c - 4, dx, corner + c - 4, c, row_stride, fl);
        }
      }
    return;
  }
  int o = 0;
  for (int b = 0; b < n; b++)
    for (int r = 0; r < oh; r++) {
      int corner = (b * h + r * sh) * row_stride;
      for (int q = 0; q < ow; q++, corner += window_stride)
        for (int d = 0; d < c; d++, o++) {
          const int first = corner + d;
          float best = -__builtin_inff();
          int at = -1;
          for (int i = 0; i < sh; i++) {
            int k = first + i * row_stride;
            for (int j = 0; j < sw; j++, k += c) {
              const float v = x[k];
              if (v > best) {
                best = v;
                at = k;
              }
              dx[k] = 0.0f;
            }
          }
          if (at >= 0 && best > floor_) dx[at] = dy[o];
        }
    }
}

/*
 * A linear layer's weight gradient: out [k, n] = a^T b for a [m, k], b [m, n], summed over m in
 * order, float32 (a product then a sum per term, as tfjs' own loop).
 */
EXPORT(matmul_ta)
void matmul_ta(const float* a, const float* b, float* out, int m, int k, int n) {
  for (int i = 0; i < k * n; i++) out[i] = 0.0f;
  for (int s = 0; s < m; s++) {
    const float* bs = b + s * n;
    for (int i = 0; i < k; i++) {
      const float ai = a[s * k + i];
      float* row = out + i * n;
      const v128_t av = wasm_f32x4_splat(ai);
      int j = 0;
      for (; j + 4 <= n; j += 4)
        wasm_v128_store(row + j, wasm_f32x4_add(wasm_v128_load(row + j), wasm_f32x4_mul(av, wasm_v128_load(bs + j))));
      for (; j < n; j++) row[j] += ai * bs[j];
    }
  }
}

/*
 * A linear layer's input gradient: out [m, k] = a w^T for a [m, n], w [k, n]: dot products of
 * rows, f32x4 lanes then the remainder.
 */
EXPORT(matmul_tb)
void matmul_tb(const float* a, const float* w, float* out, int m, int k, int n) {
  for (int s = 0; s < m; s++) {
    const float* as = a + s * n;
    for (int i = 0; i < k; i++) {
      const float* wi = w + i * n;
      v128_t acc = wasm_f32x4_splat(0.0f);
      int j = 0;
      for (; j + 4 <= n; j += 4) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(as + j), wasm_v128_load(wi + j)));
      float sum = hsum(acc);
      for (; j < n; j++) sum += as[j] * wi[j];
      out[s * k + i] = sum;
    }
  }
}

/* JavaScript's Math.max of two float64: NaN if either is, +0 over -0. */
static inline double js_max(double a, double b) {
  if (__builtin_isnan(a) || __builtin_isnan(b)) return __builtin_nan("");
  if (a == b) return __builtin_signbit(a) ? b : a;
  return a > b ? a : b;
}

/*
 * One tensor's Adam (or AdamW, AMSGrad) update, the JavaScript kernel's arithmetic (Fused.ts)
 * operation for operation in float64, rounded to float32 where it rounds: bit for bit the same
 * parameters and moments (no contraction into fused multiply-adds: -ffp-contract=off, and
 * wasm has none). vmax_in / vmax_out are read / written only with amsgrad.
 */
EXPORT(adam)
void adam(const float* p, const float* g, const float* m, const float* s, const float* vmax_in, float* p_out,
          float* m_out, float* s_out, float* vmax_out, int len, double beta1, double beta2, double eps,
          double weight_decay, double step_size, double bc2, double shrink, int decoupled, int amsgrad,
          int maximize) {
  for (int i = 0; i < len; i++) {
    double gi = maximize ? -(double)g[i] : (double)g[i];
    double pi = p[i];
    if (weight_decay != 0) {
      if (decoupled)
        pi = (float)(pi * shrink);
      else
        gi += weight_decay * pi;
    }
    const float mi = (float)(beta1 * m[i] + (1 - beta1) * gi);
    const float si = (float)(beta2 * s[i] + (1 - beta2) * gi * gi);
    double vi = si;
    if (amsgrad) {
      vi = js_max(vmax_in[i], si);
      vmax_out[i] = (float)vi;
    }
    m_out[i] = mi;
    s_out[i] = si;
    p_out[i] = (float)(pi - (step_size * mi) / (__builtin_sqrt(vi) / bc2 + eps));
  }
}
