// weft/deploy/kernels.hpp - y = x W^T (+ bias) with packed low-bit W (deploy/packed.hpp):
// float activations (gemm, gemm_reference) on raw pointers: no allocation (the caller passes
// scratch), no exceptions needed beyond WEFT_CHECK, no Eigen (core/error, parallel and simd
// only). deploy/int8.hpp has the int8-activation path, deploy/linear.hpp the Tensor forms.
//
// Math. Row r of the output, for one row x of the input, with groups g of W's row:
//   y_r = sum_g step_rg sum_{c in g} x_c (u_rc + bias)  (+ b_r)
// The float kernels add bias to the unpacked code before the multiply (one add per code, or
// per vector), so they sum the same terms x_c (k_rc + offset) as x Q(W)^T, in another order.
// The correction-term form step (sum x u + bias sum x), with sum x shared by every output row,
// saves that add but cancels badly: after a ReLU every x_c >= 0, sum x u and bias sum x are
// each up to |bias| / |u + bias| times larger than their difference, and a trained 4-bit LSQ
// MLP lost a factor 15 in accuracy (1.5e-5 against 1e-6 relative). The int8 path below uses it,
// where integer sums are exact (deploy/int8.hpp).
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
// Threads. Output rows are split over parallel_for; every output element is computed by one
// call in a fixed order that does not depend on the split, so 1 and N threads give the same
// bits. Inputs are checked (shapes, finite x) before anything is written.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

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
  (void)w;  // unused without xsimd
  (void)batch;
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

}  // namespace weft::deploy
