// weft/core/ops/prox.hpp - proximal operators of separable convex penalties, scalar + xsimd.
//
// The proximal operator of a penalty h with step t is prox_{t h}(v) = argmin_x h(x) + (x - v)^2 / (2 t).
// For the elastic net h(x) = l1 |x| + (l2 / 2) x^2 it has the closed form
//   prox(v) = soft(v, t l1) / (1 + t l2),   soft(v, c) = sign(v) max(|v| - c, 0),
// the soft-thresholding operator of the lasso (Tibshirani 1996; glmnet's coordinate update).
// Proximal-gradient methods (ISTA / FISTA, Beck & Teboulle 2009) take the step
//   x+ = prox_{t h}(x - t grad f(x))
// which prox_grad_step fuses into one pass, with a penalty factor per coordinate (0 leaves a
// coordinate unpenalised: an intercept, a frozen group).
//
// Conventions: soft(v, c) for |v| <= c is +0; a NaN input gives NaN; c must be >= 0 (callers
// check options before calling). The scalar and vector bodies compute the same expression in
// the same order; they agree to the last bit or two (the compiler may fuse x - t g into an FMA
// in one body and not the other). Threads: the array forms run in chunks through parallel_for;
// every element is independent, so 1 and N threads give the same bits.
#pragma once

#include <cmath>

#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

/// sign(v) max(|v| - c, 0) for c >= 0 (+0 inside [-c, c]; NaN stays NaN).
template <class T>
inline T soft_threshold(T v, T c) noexcept {
  if (v > c) return v - c;
  if (v < -c) return v + c;
  return v != v ? v : T(0);
}

/// prox of t (l1 |x| + l2 / 2 x^2) at v, with tl1 = t l1 and tl2 = t l2 (both >= 0).
template <class T>
inline T prox_elastic_net(T v, T tl1, T tl2) noexcept {
  return soft_threshold(v, tl1) / (T(1) + tl2);
}

namespace detail {
#if WEFT_USE_XSIMD
template <class B>
inline B soft_threshold_v(B v, B c) {
  const B zero(typename B::value_type(0));
  B r = simd::select(v > c, v - c, simd::select(v < -c, v + c, zero));
  return simd::select(v != v, v, r);
}
#endif
}  // namespace detail

/// out[i] = soft(in[i], c) with the scalar body (in == out allowed).
template <class T>
void soft_threshold_scalar(const T* in, T* out, index_t n, T c) {
  for (index_t i = 0; i < n; ++i) out[i] = soft_threshold(in[i], c);
}

/// out[i] = soft(x[i] - step g[i], step l1 w[i]) / (1 + step l2 w[i]) with the scalar body:
/// one proximal-gradient step of the elastic net with penalty factors w (w == nullptr: all 1).
template <class T>
void prox_grad_step_scalar(const T* x, const T* g, const T* w, T* out, index_t n, T step, T l1, T l2) {
  for (index_t i = 0; i < n; ++i) {
    const T wi = w ? w[i] : T(1);
    out[i] = soft_threshold(x[i] - step * g[i], step * l1 * wi) / (T(1) + step * l2 * wi);
  }
}

#if WEFT_USE_XSIMD
template <class T>
void soft_threshold_simd(const T* in, T* out, index_t n, T c) {
  const simd::batch<T> cv(c);
  simd::map(in, out, n, [&](auto v) { return detail::soft_threshold_v(v, cv); },
            [c](T v) { return soft_threshold(v, c); });
}

template <class T>
void prox_grad_step_simd(const T* x, const T* g, const T* w, T* out, index_t n, T step, T l1, T l2) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  const index_t full = n - n % W;  // not `i + W <= n`: see simd::map
  const B sv(step), one(T(1)), sl1(step * l1), sl2(step * l2);
  index_t i = 0;
  for (; i < full; i += W) {
    const B wi = w ? simd::load(w + i) : one;
    const B v = simd::load(x + i) - sv * simd::load(g + i);
    simd::store(out + i, detail::soft_threshold_v(v, sl1 * wi) / (one + sl2 * wi));
  }
  // the tail through the scalar body, with step * l1 * w computed as in the vector body
  for (; i < n; ++i) {
    const T wi = w ? w[i] : T(1);
    out[i] = soft_threshold(x[i] - step * g[i], (step * l1) * wi) / (T(1) + (step * l2) * wi);
  }
}
#endif

/// out[i] = soft(in[i], c) for c >= 0; vector path for float/double, chunks in parallel.
template <class T>
void soft_threshold(const T* in, T* out, index_t n, T c) {
  parallel_for(0, n, [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      soft_threshold_simd(in + lo, out + lo, hi - lo, c);
      return;
    }
#endif
    soft_threshold_scalar(in + lo, out + lo, hi - lo, c);
  });
}

/// One elastic-net proximal-gradient step, out = prox_{step h}(x - step g), with
/// h(x) = sum_i w_i (l1 |x_i| + l2 / 2 x_i^2); w == nullptr means w_i = 1. out may alias x.
template <class T>
void prox_grad_step(const T* x, const T* g, const T* w, T* out, index_t n, T step, T l1, T l2) {
  parallel_for(0, n, [&](index_t lo, index_t hi) {
    const T* wl = w ? w + lo : nullptr;
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      prox_grad_step_simd(x + lo, g + lo, wl, out + lo, hi - lo, step, l1, l2);
      return;
    }
#endif
    prox_grad_step_scalar(x + lo, g + lo, wl, out + lo, hi - lo, step, l1, l2);
  });
}

}  // namespace ops
WEFT_NAMESPACE_END
