/*
 * Pillow's antialiased resize of 8-bit RGB(A) pixels with WebAssembly SIMD: the same integer
 * arithmetic as Resample.ts (22-bit fixed-point weights, int32 sums starting at half a unit,
 * shifted and clipped to 0..255 after each pass), so the bytes are identical; only the order of
 * the additions differs, which integer addition does not see (no sum comes near 2^31).
 *
 * Freestanding (no libc): build with ./build.sh, which writes src/ResampleWasm.ts.
 * Layout of every call is chosen by the caller (offsets into this module's memory).
 */
#include <stdint.h>
#include <wasm_simd128.h>

#define PRECISION_BITS 22
#define HALF (1 << (PRECISION_BITS - 1))

/* Shift and clip four int32 sums to bytes, the way clip8 does (negative -> 0, > 255 -> 255). */
static inline v128_t shift(v128_t acc) { return wasm_i32x4_shr(acc, PRECISION_BITS); }

/*
 * Horizontal pass: `rows` rows of `width` pixels, `stride` (3 or 4) bytes each, starting at
 * `src`, into `tmp` (outWidth * 3 bytes a row). `bounds` holds (first input, taps) per output
 * pixel and `weights` `ksize` taps per output pixel. `tmp` needs 1 byte of slack at its end and
 * `src` 8 bytes (a 4-byte store and an 8-byte load write / read a little past the last pixel).
 */
__attribute__((export_name("horizontal"))) void horizontal(const uint8_t *src, int width, int stride,
                                                             int rows, int outWidth,
                                                             const int32_t *bounds,
                                                             const int32_t *weights, int ksize,
                                                             uint8_t *tmp) {
  const int rowBytes = width * stride;
  for (int yy = 0; yy < rows; yy++) {
    const uint8_t *row = src + yy * rowBytes;
    uint8_t *out = tmp + yy * outWidth * 3;
    for (int xx = 0; xx < outWidth; xx++) {
      const int n = bounds[2 * xx + 1];
      const int32_t *k = weights + xx * ksize;
      const uint8_t *p = row + bounds[2 * xx] * stride;
      v128_t a0 = wasm_i32x4_splat(HALF);
      v128_t a1 = wasm_i32x4_splat(0);
      int x = 0;
      if (stride == 4) {
        for (; x + 2 <= n; x += 2) {
          const v128_t px = wasm_u16x8_load8x8(p + 4 * x);
          a0 = wasm_i32x4_add(a0, wasm_i32x4_mul(wasm_u32x4_extend_low_u16x8(px), wasm_v128_load32_splat(k + x)));
          a1 = wasm_i32x4_add(a1, wasm_i32x4_mul(wasm_u32x4_extend_high_u16x8(px), wasm_v128_load32_splat(k + x + 1)));
        }
      } else {
        for (; x + 2 <= n; x += 2) {
          /* R0 G0 B0 R1 G1 B1 R2 G2 -> (R0 G0 B0 R1) (R1 G1 B1 R2): lane 3 is never stored. */
          const v128_t raw = wasm_u16x8_load8x8(p + 3 * x);
          const v128_t px = wasm_i16x8_shuffle(raw, raw, 0, 1, 2, 3, 3, 4, 5, 6);
          a0 = wasm_i32x4_add(a0, wasm_i32x4_mul(wasm_u32x4_extend_low_u16x8(px), wasm_v128_load32_splat(k + x)));
          a1 = wasm_i32x4_add(a1, wasm_i32x4_mul(wasm_u32x4_extend_high_u16x8(px), wasm_v128_load32_splat(k + x + 1)));
        }
      }
      if (x < n) {
        const v128_t px = wasm_u16x8_load8x8(p + stride * x);
        a0 = wasm_i32x4_add(a0, wasm_i32x4_mul(wasm_u32x4_extend_low_u16x8(px), wasm_v128_load32_splat(k + x)));
      }
      const v128_t s = shift(wasm_i32x4_add(a0, a1));
      const v128_t w16 = wasm_i16x8_narrow_i32x4(s, s);
      const v128_t b8 = wasm_u8x16_narrow_i16x8(w16, w16);
      wasm_v128_store32_lane(out + 3 * xx, b8, 0);
    }
  }
}

/*
 * Vertical pass: `outHeight` rows of `lineBytes` bytes out of `tmp` (rows `lineBytes` apart;
 * `bounds` are relative to tmp's first row) into `out`. Both need 16 bytes of slack at their end.
 */
__attribute__((export_name("vertical"))) void vertical(const uint8_t *tmp, int lineBytes, int outHeight,
                                                         const int32_t *bounds, const int32_t *weights,
                                                         int ksize, uint8_t *out) {
  for (int yy = 0; yy < outHeight; yy++) {
    const int ymin = bounds[2 * yy];
    const int n = bounds[2 * yy + 1];
    const int32_t *k = weights + yy * ksize;
    uint8_t *o = out + yy * lineBytes;
    for (int i = 0; i < lineBytes; i += 16) {
      v128_t a0 = wasm_i32x4_splat(HALF);
      v128_t a1 = a0, a2 = a0, a3 = a0;
      const uint8_t *p = tmp + ymin * lineBytes + i;
      for (int y = 0; y < n; y++, p += lineBytes) {
        const v128_t v = wasm_v128_load(p);
        const v128_t w = wasm_v128_load32_splat(k + y);
        const v128_t lo = wasm_u16x8_extend_low_u8x16(v);
        const v128_t hi = wasm_u16x8_extend_high_u8x16(v);
        a0 = wasm_i32x4_add(a0, wasm_i32x4_mul(wasm_u32x4_extend_low_u16x8(lo), w));
        a1 = wasm_i32x4_add(a1, wasm_i32x4_mul(wasm_u32x4_extend_high_u16x8(lo), w));
        a2 = wasm_i32x4_add(a2, wasm_i32x4_mul(wasm_u32x4_extend_low_u16x8(hi), w));
        a3 = wasm_i32x4_add(a3, wasm_i32x4_mul(wasm_u32x4_extend_high_u16x8(hi), w));
      }
      const v128_t w01 = wasm_i16x8_narrow_i32x4(shift(a0), shift(a1));
      const v128_t w23 = wasm_i16x8_narrow_i32x4(shift(a2), shift(a3));
      wasm_v128_store(o + i, wasm_u8x16_narrow_i16x8(w01, w23));
    }
  }
}

/* ---- PNG unfiltering ---------------------------------------------------------------------- */

/* One pixel of 3 or 4 bytes as the low lanes of a vector (a 4-byte load: 1 byte past for 3). */
static inline v128_t px(const uint8_t *p) { return wasm_v128_load32_zero(p); }

/* Paeth's predictor for the low 8 byte lanes of a, b, c (as in the PNG spec, lane by lane). */
static inline v128_t paeth(v128_t a8, v128_t b8, v128_t c8) {
  const v128_t a = wasm_u16x8_extend_low_u8x16(a8);
  const v128_t b = wasm_u16x8_extend_low_u8x16(b8);
  const v128_t c = wasm_u16x8_extend_low_u8x16(c8);
  const v128_t bc = wasm_i16x8_sub(b, c);
  const v128_t ac = wasm_i16x8_sub(a, c);
  const v128_t pa = wasm_i16x8_abs(bc);
  const v128_t pb = wasm_i16x8_abs(ac);
  const v128_t pc = wasm_i16x8_abs(wasm_i16x8_add(bc, ac));
  const v128_t useA = wasm_v128_and(wasm_i16x8_le(pa, pb), wasm_i16x8_le(pa, pc));
  const v128_t useB = wasm_i16x8_le(pb, pc);
  const v128_t p = wasm_v128_bitselect(a, wasm_v128_bitselect(b, c, useB), useA);
  return wasm_u8x16_narrow_i16x8(p, p);
}

static inline int paeth1(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = p > a ? p - a : a - p;
  const int pb = p > b ? p - b : b - p;
  const int pc = p > c ? p - c : c - p;
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/*
 * Unfilters in place, as Png.ts's JavaScript does: row y's filtered bytes (after its filter-type
 * byte at y * (stride + 1)) move down to y * stride. Every store lands below the bytes not read
 * yet (a row's output starts y + 1 bytes before its input), so loading before storing is safe,
 * 16 bytes or a pixel at a time. 3-byte pixels are stored as 4 bytes: the extra byte lands on
 * the next pixel's place (written next) or, past a row, on output not yet written. `raw` needs
 * 16 bytes of slack. Returns -1, or the first row whose filter type is invalid.
 */
__attribute__((export_name("unfilter"))) int unfilter(uint8_t *raw, int width, int height, int bpp) {
  const int stride = width * bpp;
  const int wide = bpp >= 3;
  for (int y = 0; y < height; y++) {
    const int filter = raw[y * (stride + 1)];
    const uint8_t *src = raw + y * (stride + 1) + 1;
    uint8_t *row = raw + y * stride;
    const uint8_t *prev = row - stride;
    const int top = y == 0;
    if (filter == 0 || (filter == 2 && top)) {
      __builtin_memmove(row, src, stride);
    } else if (filter == 2) {
      int i = 0;
      for (; i + 16 <= stride; i += 16)
        wasm_v128_store(row + i, wasm_i8x16_add(wasm_v128_load(src + i), wasm_v128_load(prev + i)));
      for (; i < stride; i++) row[i] = (uint8_t)(src[i] + prev[i]);
    } else if (filter == 1 || (filter == 4 && top)) {
      /* Sub (and Paeth above the first row, where it predicts the left pixel). */
      if (wide) {
        v128_t a = wasm_i32x4_splat(0);
        for (int i = 0; i < stride; i += bpp) {
          a = wasm_i8x16_add(px(src + i), a);
          wasm_v128_store32_lane(row + i, a, 0);
        }
      } else {
        for (int i = 0; i < bpp; i++) row[i] = src[i];
        for (int i = bpp; i < stride; i++) row[i] = (uint8_t)(src[i] + row[i - bpp]);
      }
    } else if (filter == 3) {
      if (wide) {
        v128_t a = wasm_i32x4_splat(0);
        for (int i = 0; i < stride; i += bpp) {
          const v128_t b = top ? wasm_i32x4_splat(0) : px(prev + i);
          /* floor((a + b) / 2) without overflow: (a & b) + ((a ^ b) >> 1). */
          const v128_t avg = wasm_i8x16_add(wasm_v128_and(a, b), wasm_u8x16_shr(wasm_v128_xor(a, b), 1));
          a = wasm_i8x16_add(px(src + i), avg);
          wasm_v128_store32_lane(row + i, a, 0);
        }
      } else {
        for (int i = 0; i < stride; i++) {
          const int left = i >= bpp ? row[i - bpp] : 0;
          const int up = top ? 0 : prev[i];
          row[i] = (uint8_t)(src[i] + ((left + up) >> 1));
        }
      }
    } else if (filter == 4) {
      if (wide) {
        v128_t a = wasm_i32x4_splat(0);
        v128_t c = a;
        for (int i = 0; i < stride; i += bpp) {
          const v128_t b = px(prev + i);
          a = wasm_i8x16_add(px(src + i), paeth(a, b, c));
          wasm_v128_store32_lane(row + i, a, 0);
          c = b;
        }
      } else {
        for (int i = 0; i < stride; i++) {
          const int a = i >= bpp ? row[i - bpp] : 0;
          const int c = i >= bpp ? prev[i - bpp] : 0;
          row[i] = (uint8_t)(src[i] + paeth1(a, prev[i], c));
        }
      }
    } else {
      return y;
    }
  }
  return -1;
}
