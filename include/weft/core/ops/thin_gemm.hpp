// weft/core/ops/thin_gemm.hpp - matrix products with one small dimension M (a few columns or
// rows: the rank-r factors of low-rank and Kronecker products), on raw row-major buffers.
//
//   thin_dots        out[row][c] (+)= <X[row][:L], W[c][:L]>            X rows x L, W M x L
//   thin_combine     out[row][:L] (+)= sum_c coef[row][c] W[c][:L]      coef rows x M, W M x L
//   thin_accumulate  out[c][:L] += sum_row coef[row][c] X[row][:L]     coef rows x M, X rows x L
// For M up to ~16 these beat a general GEMM, which packs the big operand for a few
// multiply-adds per element: here every element of the big operand (X, out) is read or written
// once, with M vector accumulators kept in registers (groups of up to 8 at a time). Each has a
// scalar body and an xsimd body (the *_scalar variants force the scalar one). thin_dots and
// thin_combine split rows over threads; thin_accumulate splits the L columns (at multiples of 64)
// and sums rows in order, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <type_traits>

#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

namespace thin_detail {

inline constexpr index_t group = 8;  // accumulators per pass

inline index_t grain_for(double work) {
  const double g = 65536.0 / std::max(work, 1.0);
  return g < 1 ? 1 : index_t(g);
}

/// o[g] (+)= <x, W[g]> for g < G.
template <int G, bool Vec, class T>
inline void dots(const T* x, const T* W, index_t L, T* o, bool accumulate) {
  T res[G];
  for (int g = 0; g < G; ++g) res[g] = T(0);
  index_t i = 0;
#if WEFT_USE_XSIMD
  if constexpr (Vec) {
    using B = simd::batch<T>;
    constexpr index_t Wd = simd::width<T>;
    const index_t full = L - L % Wd;
    if (full > 0) {
      B acc[G];
      for (int g = 0; g < G; ++g) acc[g] = B(T(0));
      for (; i < full; i += Wd) {
        const B xv = simd::load(x + i);
        for (int g = 0; g < G; ++g) acc[g] = simd::fma(xv, simd::load(W + g * L + i), acc[g]);
      }
      for (int g = 0; g < G; ++g) res[g] = simd::hadd(acc[g]);
    }
  }
#endif
  for (; i < L; ++i)
    for (int g = 0; g < G; ++g) res[g] += x[i] * W[g * L + i];
  for (int g = 0; g < G; ++g) o[g] = accumulate ? o[g] + res[g] : res[g];
}

/// o[:L] (+)= sum_{g<G} c[g] W[g][:L].
template <int G, bool Vec, class T>
inline void combine(const T* c, const T* W, index_t L, T* o, bool accumulate) {
  index_t i = 0;
#if WEFT_USE_XSIMD
  if constexpr (Vec) {
    using B = simd::batch<T>;
    constexpr index_t Wd = simd::width<T>;
    const index_t full = L - L % Wd;
    B cv[G];
    for (int g = 0; g < G; ++g) cv[g] = B(c[g]);
    for (; i < full; i += Wd) {
      B v = accumulate ? simd::load(o + i) : B(T(0));
      for (int g = 0; g < G; ++g) v = simd::fma(cv[g], simd::load(W + g * L + i), v);
      simd::store(o + i, v);
    }
  }
#endif
  for (; i < L; ++i) {
    T v = accumulate ? o[i] : T(0);
    for (int g = 0; g < G; ++g) v += c[g] * W[g * L + i];
    o[i] = v;
  }
}

/// out[g][lo..hi) += sum_row coef[row][g] X[row][lo..hi) for g < G (coef has row stride M).
template <int G, bool Vec, class T>
inline void accumulate_cols(index_t rows, index_t L, index_t M, const T* coef, const T* X, T* out, index_t lo,
                            index_t hi) {
  index_t i = lo;
#if WEFT_USE_XSIMD
  if constexpr (Vec) {
    using B = simd::batch<T>;
    constexpr index_t Wd = simd::width<T>;
    const index_t full = lo + (hi - lo) - (hi - lo) % Wd;
    for (; i < full; i += Wd) {
      B acc[G];
      for (int g = 0; g < G; ++g) acc[g] = simd::load(out + g * L + i);
      for (index_t r = 0; r < rows; ++r) {
        const B xv = simd::load(X + r * L + i);
        for (int g = 0; g < G; ++g) acc[g] = simd::fma(B(coef[r * M + g]), xv, acc[g]);
      }
      for (int g = 0; g < G; ++g) simd::store(out + g * L + i, acc[g]);
    }
  }
#endif
  for (; i < hi; ++i)
    for (int g = 0; g < G; ++g) {
      T v = out[g * L + i];
      for (index_t r = 0; r < rows; ++r) v += coef[r * M + g] * X[r * L + i];
      out[g * L + i] = v;
    }
}

/// Calls f(std::integral_constant<int, G>{}, c0) for the groups of up to `group` of M.
template <class F>
inline void for_groups(index_t M, F&& f) {
  for (index_t c0 = 0; c0 < M; c0 += group) {
    switch (std::min<index_t>(group, M - c0)) {
      case 1: f(std::integral_constant<int, 1>{}, c0); break;
      case 2: f(std::integral_constant<int, 2>{}, c0); break;
      case 3: f(std::integral_constant<int, 3>{}, c0); break;
      case 4: f(std::integral_constant<int, 4>{}, c0); break;
      case 5: f(std::integral_constant<int, 5>{}, c0); break;
      case 6: f(std::integral_constant<int, 6>{}, c0); break;
      case 7: f(std::integral_constant<int, 7>{}, c0); break;
      default: f(std::integral_constant<int, 8>{}, c0); break;
    }
  }
}

template <bool Vec, class T>
void thin_dots(index_t rows, index_t L, index_t M, const T* X, const T* W, T* out, bool accumulate) {
  parallel_for(0, rows, grain_for(double(L) * double(M)), [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r)
      for_groups(M, [&](auto G, index_t c0) { dots<decltype(G)::value, Vec>(X + r * L, W + c0 * L, L, out + r * M + c0, accumulate); });
  });
}

template <bool Vec, class T>
void thin_combine(index_t rows, index_t L, index_t M, const T* coef, const T* W, T* out, bool accumulate) {
  parallel_for(0, rows, grain_for(double(L) * double(M)), [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r)
      for_groups(M, [&](auto G, index_t c0) {
        combine<decltype(G)::value, Vec>(coef + r * M + c0, W + c0 * L, L, out + r * L, accumulate || c0 > 0);
      });
  });
}

template <bool Vec, class T>
void thin_accumulate(index_t rows, index_t L, index_t M, const T* coef, const T* X, T* out) {
  parallel_for(0, L, std::max<index_t>(64, grain_for(double(rows) * double(M))), [&](index_t lo, index_t hi) {
    for_groups(M, [&](auto G, index_t c0) {
      accumulate_cols<decltype(G)::value, Vec>(rows, L, M, coef + c0, X, out + c0 * L, lo, hi);
    });
  });
}

}  // namespace thin_detail

/// out[row][c] (+)= <X[row][:L], W[c][:L]> for row < rows, c < M (X rows x L, W M x L, out rows x M).
template <class T>
void thin_dots(index_t rows, index_t L, index_t M, const T* X, const T* W, T* out, bool accumulate) {
  thin_detail::thin_dots<simd::active<T>>(rows, L, M, X, W, out, accumulate);
}
template <class T>
void thin_dots_scalar(index_t rows, index_t L, index_t M, const T* X, const T* W, T* out, bool accumulate) {
  thin_detail::thin_dots<false>(rows, L, M, X, W, out, accumulate);
}
/// out[row][:L] (+)= sum_c coef[row][c] W[c][:L] (coef rows x M, W M x L, out rows x L).
template <class T>
void thin_combine(index_t rows, index_t L, index_t M, const T* coef, const T* W, T* out, bool accumulate) {
  thin_detail::thin_combine<simd::active<T>>(rows, L, M, coef, W, out, accumulate);
}
template <class T>
void thin_combine_scalar(index_t rows, index_t L, index_t M, const T* coef, const T* W, T* out, bool accumulate) {
  thin_detail::thin_combine<false>(rows, L, M, coef, W, out, accumulate);
}
/// out[c][:L] += sum_row coef[row][c] X[row][:L] (coef rows x M, X rows x L, out M x L).
template <class T>
void thin_accumulate(index_t rows, index_t L, index_t M, const T* coef, const T* X, T* out) {
  thin_detail::thin_accumulate<simd::active<T>>(rows, L, M, coef, X, out);
}
template <class T>
void thin_accumulate_scalar(index_t rows, index_t L, index_t M, const T* coef, const T* X, T* out) {
  thin_detail::thin_accumulate<false>(rows, L, M, coef, X, out);
}

}  // namespace ops
WEFT_NAMESPACE_END
