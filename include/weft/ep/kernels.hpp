// weft/ep/kernels.hpp - element-wise kernels of the batched relaxation (scalar and xsimd).
//
//   residual_row    one column of one layer: F = H + d - U (+ G), written over H, for a real
//                   column (re row only) or a complex one (re and im rows; the drive d is
//                   real and enters the re row only). Returns max_j (Re F_j)^2 and max_j
//                   (Im F_j)^2 separately, and whether every F_j is finite, which the solver
//                   turns into the column's residual (engine.hpp) and its divergence flag.
//   softmax_row     the readout probabilities of one real column (the nudge subtracts the target).
// The vector body runs over full batches and the scalar body over the tail; the maximum is
// exact in both (no rounding), so both paths give the same residual for the same F.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep::detail {

template <class T>
struct RowResidual {
  T max2 = T(0);       ///< max_j (Re F_j)^2
  T max2_im = T(0);    ///< max_j (Im F_j)^2 (complex columns)
  bool finite = true;  ///< every F_j finite (and its squares representable)
};

/// The scalar body. Cplx: im rows given; WithG: g rows given.
template <bool Cplx, bool WithG, class T>
RowResidual<T> residual_row_scalar(T* h_re, const T* u_re, const T* d, const T* g_re, T* h_im, const T* u_im,
                                   const T* g_im, index_t n) {
  RowResidual<T> r;
  const T big = std::numeric_limits<T>::max();
  for (index_t j = 0; j < n; ++j) {
    T fr = h_re[j] + d[j] - u_re[j];
    if constexpr (WithG) fr += g_re[j];
    h_re[j] = fr;
    const T f2 = fr * fr;
    if (!(f2 <= big)) r.finite = false;
    else if (f2 > r.max2) r.max2 = f2;
    if constexpr (Cplx) {
      T fi = h_im[j] - u_im[j];
      if constexpr (WithG) fi += g_im[j];
      h_im[j] = fi;
      const T i2 = fi * fi;
      if (!(i2 <= big)) r.finite = false;
      else if (i2 > r.max2_im) r.max2_im = i2;
    }
  }
  return r;
}

#if WEFT_USE_XSIMD
template <bool Cplx, bool WithG, class T>
RowResidual<T> residual_row_simd(T* h_re, const T* u_re, const T* d, const T* g_re, T* h_im, const T* u_im,
                                 const T* g_im, index_t n) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  const index_t full = n - n % W;
  const B big(std::numeric_limits<T>::max());
  B m(T(0)), mi(T(0));
  auto bad = B(T(0)) != B(T(0));  // all false
  for (index_t j = 0; j < full; j += W) {
    B fr = simd::load(h_re + j) + simd::load(d + j) - simd::load(u_re + j);
    if constexpr (WithG) fr += simd::load(g_re + j);
    simd::store(h_re + j, fr);
    const B f2 = fr * fr;
    const auto ok = f2 <= big;  // false for NaN and +Inf
    bad = bad | !ok;
    m = simd::max(m, simd::select(ok, f2, B(T(0))));
    if constexpr (Cplx) {
      B fi = simd::load(h_im + j) - simd::load(u_im + j);
      if constexpr (WithG) fi += simd::load(g_im + j);
      simd::store(h_im + j, fi);
      const B i2 = fi * fi;
      const auto oki = i2 <= big;
      bad = bad | !oki;
      mi = simd::max(mi, simd::select(oki, i2, B(T(0))));
    }
  }
  RowResidual<T> r = residual_row_scalar<Cplx, WithG>(
      h_re + full, u_re + full, d + full, WithG ? g_re + full : nullptr, Cplx ? h_im + full : nullptr,
      Cplx ? u_im + full : nullptr, (Cplx && WithG) ? g_im + full : nullptr, n - full);
  alignas(64) T lanes[W];
  m.store_aligned(lanes);
  for (index_t k = 0; k < W; ++k) r.max2 = std::max(r.max2, lanes[k]);
  if constexpr (Cplx) {
    mi.store_aligned(lanes);
    for (index_t k = 0; k < W; ++k) r.max2_im = std::max(r.max2_im, lanes[k]);
  }
  if (simd::any(bad)) r.finite = false;
  return r;
}
#endif

/// Dispatches on the column kind, the nudge and the path. Null im pointers for real columns,
/// null g pointers without a nudge.
template <class T>
RowResidual<T> residual_row(T* h_re, const T* u_re, const T* d, const T* g_re, T* h_im, const T* u_im,
                            const T* g_im, index_t n, bool vectorize) {
  const bool cplx = h_im != nullptr, with_g = g_re != nullptr;
#if WEFT_USE_XSIMD
  if constexpr (simd::active<T>) {
    if (vectorize) {
      if (cplx)
        return with_g ? residual_row_simd<true, true>(h_re, u_re, d, g_re, h_im, u_im, g_im, n)
                      : residual_row_simd<true, false>(h_re, u_re, d, g_re, h_im, u_im, g_im, n);
      return with_g ? residual_row_simd<false, true>(h_re, u_re, d, g_re, h_im, u_im, g_im, n)
                    : residual_row_simd<false, false>(h_re, u_re, d, g_re, h_im, u_im, g_im, n);
    }
  }
#endif
  (void)vectorize;
  if (cplx)
    return with_g ? residual_row_scalar<true, true>(h_re, u_re, d, g_re, h_im, u_im, g_im, n)
                  : residual_row_scalar<true, false>(h_re, u_re, d, g_re, h_im, u_im, g_im, n);
  return with_g ? residual_row_scalar<false, true>(h_re, u_re, d, g_re, h_im, u_im, g_im, n)
                : residual_row_scalar<false, false>(h_re, u_re, d, g_re, h_im, u_im, g_im, n);
}

/// Softmax of one real row of logits z (length C) in place (shifted by the row's maximum).
template <class T>
void softmax_row(T* z, index_t C) {
  index_t jm = 0;
  for (index_t j = 1; j < C; ++j)
    if (z[j] > z[jm]) jm = j;
  const T m = z[jm];
  T s = T(0);
  for (index_t j = 0; j < C; ++j) s += (z[j] = std::exp(z[j] - m));
  const T inv = T(1) / s;
  for (index_t j = 0; j < C; ++j) z[j] *= inv;
}

}  // namespace ep::detail
WEFT_NAMESPACE_END
