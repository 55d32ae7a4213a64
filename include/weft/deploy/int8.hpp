// weft/deploy/int8.hpp - y = x W^T (+ bias) with packed 2- or 4-bit W and int8 activations:
// gemm_int8 (vector body) and gemm_int8_reference (scalar), on raw pointers like
// deploy/kernels.hpp (no allocation, no Eigen).
//
// Input row x_b is quantised to q = round(x / a) with a = max |x_b| / 127 (q in [-127, 127]);
// per group the integer dot sum q u and sum q are exact int32, and
// y_r = a sum_g step_rg (dot_g + bias sum_g q) (+ b_r). Error: the activation rounding, at
// most a / 2 per element. The vector body unpacks codes into bytes (one shift and
// one mask per 4 codes of a lane) and multiplies them with permuted input bytes by VNNI's
// u8 x s8 dot product (simd::dot_u8s8; a shift-and-multiply emulation elsewhere); its int32
// sums are exact, so it returns gemm_int8_reference's bits.
//
// Threads and errors as in deploy/kernels.hpp: output rows over parallel_for, each element in
// a fixed order (1 and N threads, any batch: the same bits); inputs checked before writing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "weft/core/error.hpp"
#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/deploy/kernels.hpp"
#include "weft/deploy/packed.hpp"

WEFT_NAMESPACE_BEGIN
namespace deploy {

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

}  // namespace deploy
WEFT_NAMESPACE_END
