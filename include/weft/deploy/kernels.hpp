// weft/deploy/kernels.hpp - y = x W^T (+ bias) with packed low-bit W (deploy/packed.hpp):
// float activations (gemm, gemm_reference) and int8 activations for 2 and 4 bits (gemm_int8),
// on raw pointers: no allocation (the caller passes scratch), no exceptions needed beyond
// WEFT_CHECK, no Eigen (core/error, parallel and simd only). deploy/linear.hpp has the
// Tensor forms linear() and linear_int8().
//
// Math. Row r of the output, for one row x of the input, with groups g of W's row:
//   y_r = sum_g step_rg sum_{c in g} x_c (u_rc + bias)  (+ b_r)
// The float kernels add bias to the unpacked code before the multiply (one add per code, or
// per vector), so they sum the same terms x_c (k_rc + offset) as x Q(W)^T, in another order.
// The correction-term form step (sum x u + bias sum x), with sum x shared by every output row,
// saves that add but cancels badly: after a ReLU every x_c >= 0, sum x u and bias sum x are
// each up to |bias| / |u + bias| times larger than their difference, and a trained 4-bit LSQ
// MLP lost a factor 15 in accuracy (1.5e-5 against 1e-6 relative). The int8 path below uses it,
// where integer sums are exact.
//
// Paths. gemm_reference is the scalar loop above, group by group. gemm runs the vector body
// when simd::active<float> and the words of a row do not straddle groups (every Bits but 3
// with GroupSize > 0, which takes the reference): per block of N words (N = float lanes), lane
// l holds word l; for each of the P code slots of a word one shift + mask + int->float + add
// gives u + bias of slot i of N words, multiplied with x permuted once per input row so that
// slot i of N consecutive words is contiguous (scratch). With groups, each lane accumulates its
// word's dot product per block and the block's steps (one per lane) scale it into the row's
// total; with one step per row the lanes sum over the whole row and the step scales the sum.
// GEMM unpacks a block once for up to 4 input rows and, with one step per row, loads x once
// for 4 output rows (a 4 x 4 register tile). Words past the last full block take a scalar
// tail. Tiling does not change the operations of an output element, only which run together,
// so batch size and thread count do not change the bits of a row's result. The
// summation orders differ: both paths agree with the exact x Q(W)^T to a few float ulps times
// sum_c |x_c| |w_rc| (tests use 1e-5 of it).
//
// int8 path (gemm_int8, Bits 2 and 4): x_b is quantised per row to q = round(x / a) with
// a = max |x_b| / 127 (q in [-127, 127]); per group the integer dot sum q u and sum q are
// exact int32; y_r = a sum_g step_rg (dot_g + bias sum_g q) (+ b_r). Error: the activation
// rounding, at most a / 2 per element. The vector body unpacks codes into bytes (one shift and
// one mask per 4 codes of a lane) and multiplies them with permuted input bytes by VNNI's
// u8 x s8 dot product (simd::dot_u8s8; a shift-and-multiply emulation elsewhere); its int32
// sums are exact, so it returns gemm_int8_reference's bits.
//
// Threads. Output rows are split over parallel_for; every output element is computed by one
// call in a fixed order that does not depend on the split, so 1 and N threads give the same
// bits. Inputs are checked (shapes, finite x) before anything is written.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "weft/core/error.hpp"
#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/deploy/packed.hpp"

namespace weft::deploy {

namespace detail {

/// Output rows per parallel_for chunk at least (chunks depend on the thread count, results not).
inline constexpr index_t row_grain = 64;

template <int Bits, int GroupSize>
inline constexpr bool vector_format = (GroupSize == 0 || GroupSize % (32 / Bits) == 0);

template <int Bits, int GroupSize>
void check_args(const PackedView<Bits, GroupSize>& w, const float* x, index_t batch, const float* y, const void* scratch,
                const char* fn) {
  WEFT_CHECK(w.rows >= 1 && w.cols >= 1 && w.words && w.steps, shape, fn,
             "expected a packed weight with rows, cols >= 1 and storage, got (", w.rows, ", ", w.cols, ")");
  WEFT_CHECK(batch >= 1, shape, fn, "expected at least one input row, got ", batch);
  WEFT_CHECK(x && y && scratch, value, fn, "expected x, y and scratch buffers, got a null pointer");
  for (index_t i = 0; i < batch * w.cols; ++i)
    WEFT_CHECK(std::isfinite(x[i]), value, fn, "expected finite inputs, got ", x[i], " at row ", i / w.cols, ", column ",
               i % w.cols);
}

/// sum_c x_c (u_c + bias) over the codes of one word (first code at column c0).
template <int Bits>
inline float word_dot(word_t wd, const float* x, index_t c0, index_t cols, float bias) {
  constexpr int P = 32 / Bits;
  const index_t n = std::min<index_t>(P, cols - c0);
  float d = 0.0f;
  for (index_t i = 0; i < n; ++i) d += x[c0 + i] * (float((wd >> (int(i) * Bits)) & ((word_t(1) << Bits) - 1)) + bias);
  return d;
}

}  // namespace detail

/// Floats of scratch gemm() and gemm_reference() need for `batch` input rows.
template <int Bits, int GroupSize>
index_t gemm_scratch_size(const PackedView<Bits, GroupSize>& w, index_t batch) {
  index_t n = 0;
#if WEFT_USE_XSIMD
  if constexpr (simd::active<float> && detail::vector_format<Bits, GroupSize>)
    n += batch * (w.words_per_row() / simd::width<float>) * simd::width<float> * (32 / Bits);
#endif
  return std::max<index_t>(n, 1);
}

namespace detail {

template <int Bits, int GroupSize>
void gemm_reference_body(const PackedView<Bits, GroupSize>& w, const float* x, index_t batch, float* y, const float* bias,
                         float* scratch) {
  const index_t rows = w.rows, cols = w.cols, gpr = w.groups_per_row(), gc = w.group_cols();
  const float bz = w.bias();
  (void)scratch;
  parallel_for(0, rows, row_grain, [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r)
      for (index_t b = 0; b < batch; ++b) {
        const float* xb = x + b * cols;
        float acc = 0.0f;
        for (index_t g = 0; g < gpr; ++g) {
          float d = 0.0f;
          for (index_t c = g * gc; c < std::min(cols, (g + 1) * gc); ++c) d += xb[c] * (float(w.unsigned_code(r, c)) + bz);
          acc += w.steps[r * gpr + g] * d;
        }
        y[b * rows + r] = bias ? acc + bias[r] : acc;
      }
  });
}

}  // namespace detail

/// Scalar reference: y (batch, rows) = x (batch, cols) W^T (+ bias (rows), may be null).
/// scratch: gemm_scratch_size(w, batch) floats.
template <int Bits, int GroupSize>
void gemm_reference(const PackedView<Bits, GroupSize>& w, const float* x, index_t batch, float* y, const float* bias,
                    float* scratch) {
  detail::check_args(w, x, batch, y, scratch, "deploy::gemm_reference");
  detail::gemm_reference_body(w, x, batch, y, bias, scratch);
}

namespace detail {

#if WEFT_USE_XSIMD
/// Output rows r0 .. r0 + RB - 1 for input rows b0 .. b0 + TB - 1 (vector body; see the file
/// comment). With one step per row (GroupSize 0) every lane sums x (u + bias) over the whole
/// row and the step multiplies the total; with groups, each block's per-lane sums are scaled by
/// the lanes' steps. Every (row, input row) pair takes the same operations in the same order
/// whatever RB and TB, so tiling (and hence batch and thread count) does not change the bits.
template <int RB, int TB, int Bits, int GroupSize>
void vector_tile(const PackedView<Bits, GroupSize>& w, index_t r0, index_t b0, const float* x, const float* xp, float* y,
                 const float* bias) {
  using B = simd::batch<float>;
  constexpr index_t N = simd::width<float>, P = 32 / Bits, BC = N * P;
  constexpr bool row_step = GroupSize == 0;
  constexpr bool uniform = GroupSize == 0 || GroupSize % BC == 0;  // one step per block
  const index_t cols = w.cols, wpr = w.words_per_row(), gpr = w.groups_per_row(), gc = w.group_cols();
  const index_t nb = wpr / N, xstride = nb * BC;
  const float bz = w.bias();
  const B bv(bz);
  B total[RB][TB];
  for (int j = 0; j < RB; ++j)
    for (int t = 0; t < TB; ++t) total[j][t] = B(0.0f);
  for (index_t k = 0; k < nb; ++k) {
    simd::word_batch wb[RB];
    for (int j = 0; j < RB; ++j) wb[j] = simd::load_words(w.words + (r0 + j) * wpr + k * N);
    const float* xk = xp + (b0 * xstride) + k * BC;
    if constexpr (row_step) {
      for (index_t i = 0; i < P; ++i) {
        B u[RB];
        for (int j = 0; j < RB; ++j) u[j] = simd::field_to_float(wb[j], int(i) * Bits, PackedFormat<Bits, GroupSize>::mask) + bv;
        for (int t = 0; t < TB; ++t) {
          const B xv = simd::load(xk + t * xstride + i * N);
          for (int j = 0; j < RB; ++j) total[j][t] = simd::fma(u[j], xv, total[j][t]);
        }
      }
    } else {
      for (int j = 0; j < RB; ++j) {
        const float* sr = w.steps + (r0 + j) * gpr;
        B sv;
        if constexpr (uniform) {
          sv = B(sr[(k * BC) / gc]);
        } else {
          alignas(64) float sl[N];
          for (index_t l = 0; l < N; ++l) sl[l] = sr[((k * N + l) * P) / gc];
          sv = simd::load(sl);
        }
        B acc[TB];
        for (int t = 0; t < TB; ++t) acc[t] = B(0.0f);
        for (index_t i = 0; i < P; ++i) {
          const B u = simd::field_to_float(wb[j], int(i) * Bits, PackedFormat<Bits, GroupSize>::mask) + bv;
          for (int t = 0; t < TB; ++t) acc[t] = simd::fma(u, simd::load(xk + t * xstride + i * N), acc[t]);
        }
        for (int t = 0; t < TB; ++t) total[j][t] = simd::fma(acc[t], sv, total[j][t]);
      }
    }
  }
  for (int j = 0; j < RB; ++j) {
    const index_t r = r0 + j;
    const word_t* wr = w.words + r * wpr;
    const float* sr = w.steps + r * gpr;
    for (int t = 0; t < TB; ++t) {
      const index_t b = b0 + t;
      const float* xb = x + b * cols;
      float v;
      if constexpr (row_step) {
        float tail = 0.0f;
        for (index_t kw = nb * N; kw < wpr; ++kw) tail += word_dot<Bits>(wr[kw], xb, kw * P, cols, bz);
        v = sr[0] * (simd::reduce_add(total[j][t]) + tail);
      } else {
        float tail = 0.0f;
        for (index_t kw = nb * N; kw < wpr; ++kw) tail += sr[(kw * P) / gc] * word_dot<Bits>(wr[kw], xb, kw * P, cols, bz);
        v = simd::reduce_add(total[j][t]) + tail;
      }
      y[b * w.rows + r] = bias ? v + bias[r] : v;
    }
  }
}

/// Input rows in tiles of 4 for output rows r0 .. r0 + RB - 1.
template <int RB, int Bits, int GroupSize>
void vector_rows(const PackedView<Bits, GroupSize>& w, index_t r0, index_t batch, const float* x, const float* xp, float* y,
                 const float* bias) {
  index_t b = 0;
  for (; b + 4 <= batch; b += 4) vector_tile<RB, 4>(w, r0, b, x, xp, y, bias);
  switch (batch - b) {
    case 3: vector_tile<RB, 3>(w, r0, b, x, xp, y, bias); break;
    case 2: vector_tile<RB, 2>(w, r0, b, x, xp, y, bias); break;
    case 1: vector_tile<RB, 1>(w, r0, b, x, xp, y, bias); break;
    default: break;
  }
}

/// x permuted per block of N words: xp[b][k][i][l] = x[b][(k N + l) P + i] (0 past cols).
template <int Bits, int GroupSize>
void permute_x(const PackedView<Bits, GroupSize>& w, const float* x, index_t batch, float* xp) {
  constexpr index_t N = simd::width<float>, P = 32 / Bits, BC = N * P;
  const index_t nb = w.words_per_row() / N, cols = w.cols;
  for (index_t b = 0; b < batch; ++b)
    for (index_t k = 0; k < nb; ++k) {
      float* o = xp + (b * nb + k) * BC;
      const float* xb = x + b * cols;
      for (index_t l = 0; l < N; ++l)
        for (index_t i = 0; i < P; ++i) {
          const index_t c = (k * N + l) * P + i;
          o[i * N + l] = c < cols ? xb[c] : 0.0f;
        }
    }
}
#endif

}  // namespace detail

/// y (batch, rows) = x (batch, cols) W^T (+ bias (rows), may be null), vector path where the
/// format allows (see the file comment), else gemm_reference. scratch: gemm_scratch_size(w,
/// batch) floats. Batch 1 is the GEMV.
template <int Bits, int GroupSize>
void gemm(const PackedView<Bits, GroupSize>& w, const float* x, index_t batch, float* y, const float* bias, float* scratch) {
  detail::check_args(w, x, batch, y, scratch, "deploy::gemm");
#if WEFT_USE_XSIMD
  if constexpr (simd::active<float> && detail::vector_format<Bits, GroupSize>) {
    float* xp = scratch;
    detail::permute_x(w, x, batch, xp);
    parallel_for(0, w.rows, detail::row_grain, [&](index_t lo, index_t hi) {
      // one step per row and several input rows: 4 output rows share each load of x
      constexpr int RB = GroupSize == 0 ? 4 : 1;
      index_t r = lo;
      if (batch > 1)
        for (; r + RB <= hi; r += RB) detail::vector_rows<RB>(w, r, batch, x, xp, y, bias);
      for (; r < hi; ++r) detail::vector_rows<1>(w, r, batch, x, xp, y, bias);
    });
    return;
  }
#endif
  detail::gemm_reference_body(w, x, batch, y, bias, scratch);
}

// ---------------------------------------------------------------------------------------------
// int8 activations

namespace detail {

/// Words of permuted int8 input per input row for the int8 vector body (0 without one).
template <int Bits, int GroupSize>
index_t int8_perm_words(const PackedView<Bits, GroupSize>& w) {
#if WEFT_USE_XSIMD
  if constexpr (simd::active<float>) return (w.words_per_row() / simd::width<float>) * simd::width<float> * (8 / Bits);
#endif
  (void)w;
  return 0;
}

/// The int8 paths' checks: check_args, scratch aligned to 4, |dot| <= 127 (2^Bits - 1) cols
/// fitting in int32.
template <int Bits, int GroupSize>
void int8_check(const PackedView<Bits, GroupSize>& w, const float* x, index_t batch, const float* y, const void* scratch,
                const char* fn) {
  check_args(w, x, batch, y, scratch, fn);
  WEFT_CHECK(reinterpret_cast<std::uintptr_t>(scratch) % alignof(word_t) == 0, value, fn, "expected scratch aligned to ",
             alignof(word_t), " bytes");
  const index_t max_cols = (index_t(1) << 31) / (127 * ((1 << Bits) - 1)) - 1;
  WEFT_CHECK(w.cols <= max_cols, shape, fn, "expected at most ", max_cols, " columns for int32 accumulation, got ", w.cols);
}

/// Per input row b: scale[b] = max |x_b| / 127, q = round(x_b / scale) in [-127, 127] (0 for
/// an all-zero row), isum[b gpr + g] = sum of q over group g.
template <int Bits, int GroupSize>
void int8_quantize(const PackedView<Bits, GroupSize>& w, const float* x, index_t batch, float* scale, std::int32_t* isum,
                   std::int8_t* q) {
  const index_t cols = w.cols, gpr = w.groups_per_row(), gc = w.group_cols();
  for (index_t b = 0; b < batch; ++b) {
    const float* xb = x + b * cols;
    float m = 0.0f;
    for (index_t c = 0; c < cols; ++c) m = std::max(m, std::abs(xb[c]));
    const float a = m / 127.0f;
    scale[b] = a;
    for (index_t c = 0; c < cols; ++c) {
      const float v = a > 0.0f ? std::nearbyint(xb[c] / a) : 0.0f;
      q[b * cols + c] = std::int8_t(std::min(127.0f, std::max(-127.0f, v)));
    }
    for (index_t g = 0; g < gpr; ++g) {
      std::int32_t s = 0;
      for (index_t c = g * gc; c < std::min(cols, (g + 1) * gc); ++c) s += q[b * cols + c];
      isum[b * gpr + g] = s;
    }
  }
}

/// Adds group g's term to acc the way every int8 path does: step (d + bias sum q) with an
/// explicit fma, so that the compiler's contraction choices (-ffp-contract) cannot make the
/// vector and scalar bodies round differently. d + bias sum q is exact in double.
inline void int8_flush(float& acc, float step, std::int32_t d, double bias, std::int32_t qsum) {
  acc = std::fma(step, float(double(d) + bias * double(qsum)), acc);
}
/// y = acc * scale (+ bias), the same explicit fma in every int8 path.
inline float int8_finish(float acc, float scale, const float* bias, index_t r) {
  return bias ? std::fma(acc, scale, bias[r]) : acc * scale;
}

/// Output row r for input row b, scalar: groups in order, exact int32 dots.
template <int Bits, int GroupSize>
float int8_row_scalar(const PackedView<Bits, GroupSize>& w, index_t r, const std::int8_t* qb, const std::int32_t* isum) {
  constexpr index_t P = 32 / Bits;
  const index_t cols = w.cols, gpr = w.groups_per_row(), gc = w.group_cols();
  const word_t* wr = w.words + r * w.words_per_row();
  const double bz = double(w.bias());
  float acc = 0.0f;
  for (index_t g = 0; g < gpr; ++g) {
    std::int32_t d = 0;
    for (index_t c = g * gc; c < std::min(cols, (g + 1) * gc); ++c)
      d += std::int32_t(qb[c]) * std::int32_t((wr[c / P] >> (int(c % P) * Bits)) & ((word_t(1) << Bits) - 1));
    int8_flush(acc, w.steps[r * gpr + g], d, bz, isum[g]);
  }
  return acc;
}

#if WEFT_USE_XSIMD
/// Output row r for input rows b0 .. b0 + TB - 1 (acc[t] before the scale), vector body: lanes
/// are words as in the float body; the (8 / Bits) shifts of a word by i Bits masked to the low
/// Bits of each byte give, in byte k of a lane, code (8 / Bits) k + i, multiplied with the input
/// bytes permuted to match (qp, pw words per input row) by VNNI's u8 x s8 dot product (4
/// products per 32-bit lane); each unpacked vector serves TB input rows. The int32 sums are
/// exact and every input row's groups are flushed in order with the scalar body's operations:
/// the results have its bits, whatever TB.
template <int TB, int Bits, int GroupSize>
void int8_tile_vector(const PackedView<Bits, GroupSize>& w, index_t r, index_t b0, const std::int8_t* q, const word_t* qp,
                      index_t pw, const std::int32_t* isum, float* acc) {
  constexpr index_t N = simd::width<float>, P = 32 / Bits, CB = 8 / Bits, BC = N * P;
  constexpr word_t bytemask = Bits == 2 ? 0x03030303u : 0x0F0F0F0Fu;
  const index_t cols = w.cols, wpr = w.words_per_row(), gpr = w.groups_per_row(), gc = w.group_cols();
  const index_t nb = wpr / N;
  const word_t* wr = w.words + r * wpr;
  const float* sr = w.steps + r * gpr;
  const double bz = double(w.bias());
  std::int32_t d[TB];      // the running dot of group g, per input row (scalar part)
  simd::int_batch s[TB];   // its vector part, reduced once per group
  for (int t = 0; t < TB; ++t) acc[t] = 0.0f, d[t] = 0, s[t] = simd::int_batch(0);
  auto flush = [&](index_t g) {
    for (int t = 0; t < TB; ++t) {
      int8_flush(acc[t], sr[g], d[t] + simd::reduce_add(s[t]), bz, isum[(b0 + t) * gpr + g]);
      d[t] = 0;
      s[t] = simd::int_batch(0);
    }
  };
  index_t g = 0;
  for (index_t k = 0; k < nb; ++k) {
    const simd::word_batch wb = simd::load_words(wr + k * N);
    for (index_t i = 0; i < CB; ++i) {
      const simd::word_batch a = (wb >> int(i * Bits)) & simd::word_batch(bytemask);
      for (int t = 0; t < TB; ++t) s[t] = simd::dot_u8s8(s[t], a, simd::load_words(qp + (b0 + t) * pw + (k * CB + i) * N));
    }
    if (GroupSize == 0 || gc >= BC) {  // the block lies in group g: keep summing in s
      if (GroupSize != 0 && ((k + 1) * BC) % gc == 0) flush(g++);
    } else {  // the block holds BC / gc whole groups of gc / P lanes each
      alignas(64) std::int32_t lanes[TB][N];
      for (int t = 0; t < TB; ++t) {
        s[t].store_unaligned(lanes[t]);
        s[t] = simd::int_batch(0);
      }
      const index_t lpg = gc / P;
      for (index_t m = 0; m < N / lpg; ++m) {
        for (int t = 0; t < TB; ++t)
          for (index_t l = m * lpg; l < (m + 1) * lpg; ++l) d[t] += lanes[t][l];
        flush(g++);
      }
    }
  }
  // the columns past the last full block, scalar, continuing group g
  for (index_t c = nb * BC; c < cols; ++c) {
    const std::int32_t u = std::int32_t((wr[c / P] >> (int(c % P) * Bits)) & ((word_t(1) << Bits) - 1));
    for (int t = 0; t < TB; ++t) d[t] += std::int32_t(q[(b0 + t) * cols + c]) * u;
    if (c + 1 == cols || (c + 1) % gc == 0) flush(g++);
  }
  if (nb * BC >= cols && g < gpr) flush(g);  // a last group ending in a block
}
#endif

}  // namespace detail

/// Bytes of scratch gemm_int8() needs for `batch` input rows.
template <int Bits, int GroupSize>
index_t gemm_int8_scratch_bytes(const PackedView<Bits, GroupSize>& w, index_t batch) {
  const index_t words = batch * (1 + w.groups_per_row() + detail::int8_perm_words(w));  // scales, sums, permuted q
  return index_t(sizeof(word_t)) * words + batch * w.cols + 64;
}

/// y (batch, rows) = x W^T (+ bias) with x quantised to int8 per row (see the file comment);
/// Bits 2 or 4. scratch: gemm_int8_scratch_bytes(w, batch) bytes, aligned to 4.
template <int Bits, int GroupSize>
void gemm_int8(const PackedView<Bits, GroupSize>& w, const float* x, index_t batch, float* y, const float* bias,
               void* scratch) {
  static_assert(Bits == 2 || Bits == 4, "weft::deploy::gemm_int8: the int8-activation path supports 2- and 4-bit weights");
  const char* fn = "deploy::gemm_int8";
  detail::int8_check(w, x, batch, y, scratch, fn);
  const index_t rows = w.rows, cols = w.cols, gpr = w.groups_per_row();
  const index_t pw = detail::int8_perm_words(w);
  auto* scale = static_cast<float*>(scratch);
  auto* isum = reinterpret_cast<std::int32_t*>(scale + batch);
  auto* qp = reinterpret_cast<word_t*>(isum + batch * gpr);
  auto* q = reinterpret_cast<std::int8_t*>(qp + batch * pw);
  detail::int8_quantize(w, x, batch, scale, isum, q);
  for (index_t b = 0; b < batch; ++b) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<float>) {
      // qp[b][k][i][l]: byte k' of the word = q at column (k N + l) P + (8 / Bits) k' + i
      constexpr index_t N = simd::width<float>, P = 32 / Bits, CB = 8 / Bits;
      const index_t nb = w.words_per_row() / N;
      for (index_t k = 0; k < nb; ++k)
        for (index_t i = 0; i < CB; ++i)
          for (index_t l = 0; l < N; ++l) {
            word_t v = 0;
            for (index_t kb = 0; kb < 4; ++kb) {
              const index_t c = (k * N + l) * P + CB * kb + i;
              const word_t byte = c < cols ? word_t(std::uint8_t(q[b * cols + c])) : 0;
              v |= byte << (8 * kb);
            }
            qp[b * pw + (k * CB + i) * N + l] = v;
          }
    }
#endif
  }
  parallel_for(0, rows, detail::row_grain, [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) {
#if WEFT_USE_XSIMD
      if constexpr (simd::active<float>) {
        float acc[4];
        auto tile = [&](auto tb, index_t b0) {
          constexpr int TB = decltype(tb)::value;
          detail::int8_tile_vector<TB>(w, r, b0, q, qp, pw, isum, acc);
          for (int t = 0; t < TB; ++t) y[(b0 + t) * rows + r] = detail::int8_finish(acc[t], scale[b0 + t], bias, r);
        };
        index_t b = 0;
        for (; b + 4 <= batch; b += 4) tile(std::integral_constant<int, 4>{}, b);
        switch (batch - b) {
          case 3: tile(std::integral_constant<int, 3>{}, b); break;
          case 2: tile(std::integral_constant<int, 2>{}, b); break;
          case 1: tile(std::integral_constant<int, 1>{}, b); break;
          default: break;
        }
        continue;
      }
#endif
      for (index_t b = 0; b < batch; ++b)
        y[b * rows + r] = detail::int8_finish(detail::int8_row_scalar(w, r, q + b * cols, isum + b * gpr), scale[b], bias, r);
    }
  });
}

/// The scalar reference of gemm_int8 (same quantisation, groups in order, same bits).
template <int Bits, int GroupSize>
void gemm_int8_reference(const PackedView<Bits, GroupSize>& w, const float* x, index_t batch, float* y, const float* bias,
                         void* scratch) {
  static_assert(Bits == 2 || Bits == 4, "weft::deploy::gemm_int8: the int8-activation path supports 2- and 4-bit weights");
  const char* fn = "deploy::gemm_int8_reference";
  detail::int8_check(w, x, batch, y, scratch, fn);
  const index_t rows = w.rows, cols = w.cols, gpr = w.groups_per_row();
  auto* scale = static_cast<float*>(scratch);
  auto* isum = reinterpret_cast<std::int32_t*>(scale + batch);
  auto* q = reinterpret_cast<std::int8_t*>(isum + batch * gpr);
  detail::int8_quantize(w, x, batch, scale, isum, q);
  parallel_for(0, rows, detail::row_grain, [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r)
      for (index_t b = 0; b < batch; ++b) {
        const float acc = detail::int8_row_scalar(w, r, q + b * cols, isum + b * gpr);
        y[b * rows + r] = detail::int8_finish(acc, scale[b], bias, r);
      }
  });
}

}  // namespace weft::deploy
