// weft/ordinal/kernels.hpp - the per-row hot path of every cumulative-logit fit: the terms of
// -log(sigma(b) - sigma(a)) for the two boundaries a < b around each row's observed class.
//
// A row of class c has a = eta_{c-1} (-inf for c = 0) and b = eta_c (+inf for c = K-1), and
// contributes l = -log pi, pi = sigma(b) - sigma(a). With F = sigma, f = F' = F (1 - F):
//   u = f(a) / pi = F(a) / (F(b) e),      v = f(b) / pi = F(-b) / (F(-a) e),   e = -expm1(a - b),
//   dl/da = u,  dl/db = -v,
//   d2l/da2 = u (F(-a) - F(a)) + u^2,  d2l/db2 = v^2 - v (F(-b) - F(b)),  d2l/da db = -u v,
// using pi = F(b) F(-a) e, which stays accurate when a and b are close or both large (the naive
// difference F(b) - F(a) cancels). The infinite boundaries need no branches: with IEEE
// arithmetic F(-inf) = 0 and expm1(-inf) = -1 give u = 0 (c = 0) and v = 0 (c = K-1).
// F is evaluated as 1 / (1 + exp(-|t|)) and its complement, so no exp overflows in float.
//
// Scalar body (the reference) and xsimd body (float/double, dispatched by simd::active<T>);
// rows run in chunks through parallel_for. Rows are independent, so 1 and N threads agree bit
// for bit; the two bodies agree to a few ulps (xsimd's exp/log differ from the C library's).
#pragma once

#include <cmath>

#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ordinal::detail {

/// Outputs of boundary_terms, one entry per row; the three Hessian pointers may all be null.
template <class T>
struct BoundaryTerms {
  T* logp = nullptr;  ///< log pi
  T* u = nullptr;     ///< dl/da
  T* v = nullptr;     ///< -dl/db
  T* haa = nullptr;   ///< d2l/da2
  T* hab = nullptr;   ///< d2l/da db
  T* hbb = nullptr;   ///< d2l/db2
};

/// Rows per parallel chunk: each row costs three exponentials and a logarithm.
inline constexpr index_t boundary_grain = 4096;

template <class T>
inline void boundary_row(T a, T b, const BoundaryTerms<T>& o, index_t i) {
  using std::exp;
  using std::expm1;
  using std::log;
  const T ta = exp(-std::abs(a)), tb = exp(-std::abs(b));
  const T ra = T(1) / (T(1) + ta), rb = T(1) / (T(1) + tb);
  const T fa = a >= T(0) ? ra : ta * ra, fna = a >= T(0) ? ta * ra : ra;  // F(a), F(-a)
  const T fb = b >= T(0) ? rb : tb * rb, fnb = b >= T(0) ? tb * rb : rb;  // F(b), F(-b)
  const T e = -expm1(a - b);
  o.logp[i] = log(fb * fna * e);
  const T u = fa / (fb * e), v = fnb / (fna * e);
  o.u[i] = u;
  o.v[i] = v;
  if (o.haa) {
    o.haa[i] = u * (fna - fa) + u * u;
    o.hab[i] = -(u * v);
    o.hbb[i] = v * v - v * (fnb - fb);
  }
}

/// The terms of rows [0, n) with the scalar body.
template <class T>
void boundary_terms_scalar(const T* a, const T* b, index_t n, const BoundaryTerms<T>& o) {
  for (index_t i = 0; i < n; ++i) boundary_row(a[i], b[i], o, i);
}

#if WEFT_USE_XSIMD
template <class T>
void boundary_terms_simd(const T* a, const T* b, index_t n, const BoundaryTerms<T>& o) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  const index_t full = n - n % W;  // not `i + W <= n`: see simd::map
  const B one(T(1)), zero(T(0));
  index_t i = 0;
  for (; i < full; i += W) {
    const B av = simd::load(a + i), bv = simd::load(b + i);
    const B ta = simd::exp(-simd::abs(av)), tb = simd::exp(-simd::abs(bv));
    const B ra = one / (one + ta), rb = one / (one + tb);
    const auto pa = av >= zero, pb = bv >= zero;
    const B fa = simd::select(pa, ra, ta * ra), fna = simd::select(pa, ta * ra, ra);
    const B fb = simd::select(pb, rb, tb * rb), fnb = simd::select(pb, tb * rb, rb);
    const B e = -simd::expm1(av - bv);
    simd::store(o.logp + i, simd::log(fb * fna * e));
    const B u = fa / (fb * e), v = fnb / (fna * e);
    simd::store(o.u + i, u);
    simd::store(o.v + i, v);
    if (o.haa) {
      simd::store(o.haa + i, u * (fna - fa) + u * u);
      simd::store(o.hab + i, -(u * v));
      simd::store(o.hbb + i, v * v - v * (fnb - fb));
    }
  }
  for (; i < n; ++i) boundary_row(a[i], b[i], o, i);
}
#endif

/// The terms of rows [0, n): vector path for float/double, chunks of rows in parallel.
template <class T>
void boundary_terms(const T* a, const T* b, index_t n, const BoundaryTerms<T>& o) {
  parallel_for(0, n, boundary_grain, [&](index_t lo, index_t hi) {
    BoundaryTerms<T> s{o.logp + lo, o.u + lo, o.v + lo, nullptr, nullptr, nullptr};
    if (o.haa) {
      s.haa = o.haa + lo;
      s.hab = o.hab + lo;
      s.hbb = o.hbb + lo;
    }
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      boundary_terms_simd(a + lo, b + lo, hi - lo, s);
      return;
    }
#endif
    boundary_terms_scalar(a + lo, b + lo, hi - lo, s);
  });
}

}  // namespace ordinal::detail
WEFT_NAMESPACE_END
