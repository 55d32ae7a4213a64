// weft/prune/kernels.hpp - the element-wise hot paths of pruning on raw arrays (no autograd).
//
//   abs_scores            s = |w|                                  (magnitude)
//   col_scaled_abs        s_ij = |w_ij| c_j                        (Wanda: c_j = ||X_j||_2)
//   col_scaled_sq         s_ij = w_ij^2 c_j                        (ObsDiag: c_j = 1 / [H^-1]_jj)
//   taylor_first          s = |w g|                                (LLM-Pruner param_first)
//   taylor_mix            s = |w g - 1/2 w^2 f|                    (LLM-Pruner param_mix)
//   couple_scaled         gt = g (1 + a)                           (isotropic coupling, a = c G / mean G)
//   couple_cubic          gt = g + kappa h g^3                     (paper_fisher: h = G or G / mean G)
//   couple_square         gt = g + kappa h g^2                     (reference_code, lomo.py)
//   accumulate_dual       I += |sign u + a u^2 (+ theta^3)|, u = gscale gt theta  (D-Pruner)
//   masked_copy           out = keep ? w : 0 (keep as a 0/1 array of T)
// Each has a scalar body (the reference and the WEFT_DONT_VECTORIZE path) and an xsimd body;
// the drivers dispatch on simd::active<T> and split rows or elements with parallel_for. Every
// output element depends on its own inputs only, so results are the same with 1 and N threads.
#pragma once

#include <cmath>

#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace prune {

/// The coupling kernels' forms (see dpruner.hpp for the couplings built on them).
enum class coupling_form { scaled, cubic, square };

// ---------------------------------------------------------------------------------------------
// scalar bodies

template <class T>
void abs_scores_scalar(const T* w, T* s, index_t n) {
  for (index_t i = 0; i < n; ++i) s[i] = std::abs(w[i]);
}
template <class T>
void col_scaled_abs_scalar(const T* w, const T* c, T* s, index_t n) {
  for (index_t i = 0; i < n; ++i) s[i] = std::abs(w[i]) * c[i];
}
template <class T>
void col_scaled_sq_scalar(const T* w, const T* c, T* s, index_t n) {
  for (index_t i = 0; i < n; ++i) s[i] = w[i] * w[i] * c[i];
}
template <class T>
void taylor_first_scalar(const T* w, const T* g, T* s, index_t n) {
  for (index_t i = 0; i < n; ++i) s[i] = std::abs(w[i] * g[i]);
}
template <class T>
void taylor_mix_scalar(const T* w, const T* g, const T* f, T* s, index_t n) {
  for (index_t i = 0; i < n; ++i) s[i] = std::abs(w[i] * g[i] - T(0.5) * w[i] * f[i] * w[i]);
}
/// gt = g + kappa h g^p for the given form (scaled: gt = g (1 + kappa h)).
template <coupling_form F, class T>
void couple_scalar(const T* g, const T* h, T* gt, index_t n, T kappa) {
  for (index_t i = 0; i < n; ++i) {
    if constexpr (F == coupling_form::scaled) gt[i] = g[i] * (T(1) + kappa * h[i]);
    else if constexpr (F == coupling_form::cubic) gt[i] = g[i] + kappa * h[i] * (g[i] * g[i] * g[i]);
    else gt[i] = g[i] + kappa * h[i] * (g[i] * g[i]);
  }
}
template <class T>
void accumulate_dual_scalar(T* imp, const T* gt, const T* th, index_t n, T sign, T a, T gscale, bool cubic) {
  for (index_t i = 0; i < n; ++i) {
    const T u = gscale * gt[i] * th[i];
    T v = sign * u + a * u * u;
    if (cubic) v += th[i] * th[i] * th[i];
    imp[i] += std::abs(v);
  }
}
template <class T>
void masked_copy_scalar(const T* w, const T* keep, T* out, index_t n) {
  for (index_t i = 0; i < n; ++i) out[i] = keep[i] != T(0) ? w[i] : T(0);
}

// ---------------------------------------------------------------------------------------------
// vector bodies

#if WEFT_USE_XSIMD
template <class T>
void abs_scores_simd(const T* w, T* s, index_t n) {
  using B = simd::batch<T>;
  simd::map(w, s, n, [](const B& x) { return simd::abs(x); }, [](T x) { return std::abs(x); });
}
template <class T>
void col_scaled_abs_simd(const T* w, const T* c, T* s, index_t n) {
  using B = simd::batch<T>;
  simd::map2(w, c, s, n, [](const B& x, const B& y) { return simd::abs(x) * y; },
             [](T x, T y) { return std::abs(x) * y; });
}
template <class T>
void col_scaled_sq_simd(const T* w, const T* c, T* s, index_t n) {
  using B = simd::batch<T>;
  simd::map2(w, c, s, n, [](const B& x, const B& y) { return x * x * y; }, [](T x, T y) { return x * x * y; });
}
template <class T>
void taylor_first_simd(const T* w, const T* g, T* s, index_t n) {
  using B = simd::batch<T>;
  simd::map2(w, g, s, n, [](const B& x, const B& y) { return simd::abs(x * y); },
             [](T x, T y) { return std::abs(x * y); });
}
template <class T>
void taylor_mix_simd(const T* w, const T* g, const T* f, T* s, index_t n) {
  using B = simd::batch<T>;
  const B half(T(0.5));
  simd::map3(w, g, f, s, n, [&](const B& x, const B& y, const B& z) { return simd::abs(x * y - half * x * z * x); },
             [](T x, T y, T z) { return std::abs(x * y - T(0.5) * x * z * x); });
}
template <coupling_form F, class T>
void couple_simd(const T* g, const T* h, T* gt, index_t n, T kappa) {
  using B = simd::batch<T>;
  const B k(kappa), one(T(1));
  auto fs = [kappa](T x, T y) {
    if constexpr (F == coupling_form::scaled) return x * (T(1) + kappa * y);
    else if constexpr (F == coupling_form::cubic) return x + kappa * y * (x * x * x);
    else return x + kappa * y * (x * x);
  };
  auto fv = [&](const B& x, const B& y) {
    if constexpr (F == coupling_form::scaled) return x * (one + k * y);
    else if constexpr (F == coupling_form::cubic) return x + k * y * (x * x * x);
    else return x + k * y * (x * x);
  };
  simd::map2(g, h, gt, n, fv, fs);
}
template <class T>
void accumulate_dual_simd(T* imp, const T* gt, const T* th, index_t n, T sign, T a, T gscale, bool cubic) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  const B vs(sign), va(a), vg(gscale);
  const index_t full = n - n % W;  // not `i + W <= n`: see simd::map
  for (index_t i = 0; i < full; i += W) {
    const B t = simd::load(th + i), u = vg * simd::load(gt + i) * t;
    B v = vs * u + va * u * u;
    if (cubic) v += t * t * t;
    simd::store(imp + i, simd::load(imp + i) + simd::abs(v));
  }
  accumulate_dual_scalar(imp + full, gt + full, th + full, n - full, sign, a, gscale, cubic);
}
template <class T>
void masked_copy_simd(const T* w, const T* keep, T* out, index_t n) {
  using B = simd::batch<T>;
  const B zero(T(0));
  simd::map2(w, keep, out, n, [&](const B& x, const B& k) { return simd::select(k != zero, x, zero); },
             [](T x, T k) { return k != T(0) ? x : T(0); });
}
#endif

// ---------------------------------------------------------------------------------------------
// drivers

namespace detail {
/// Runs body(lo, hi) over [0, n) in parallel chunks (grain WEFT_PARALLEL_GRAIN).
template <class F>
void for_chunks(index_t n, F&& body) {
  parallel_for(0, n, std::forward<F>(body));
}
/// Runs body(row) for each row of a rows x cols matrix, in parallel blocks of rows.
template <class F>
void for_rows(index_t rows, index_t cols, F&& body) {
  const index_t grain = cols > 0 ? std::max<index_t>(1, index_t(WEFT_PARALLEL_GRAIN) / cols) : rows;
  parallel_for(0, rows, grain, [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) body(r);
  });
}
}  // namespace detail

#if WEFT_USE_XSIMD
#define WEFT_PRUNE_DISPATCH(name, ...)    \
  if constexpr (simd::active<T>) {        \
    name##_simd(__VA_ARGS__);             \
  } else {                                \
    name##_scalar(__VA_ARGS__);           \
  }
#else
#define WEFT_PRUNE_DISPATCH(name, ...) name##_scalar(__VA_ARGS__);
#endif

/// s = |w| over n elements.
template <class T>
void abs_scores(const T* w, T* s, index_t n) {
  detail::for_chunks(n, [&](index_t lo, index_t hi) { WEFT_PRUNE_DISPATCH(abs_scores, w + lo, s + lo, hi - lo) });
}
/// s_ij = |w_ij| c_j for a rows x cols matrix and a column vector c.
template <class T>
void col_scaled_abs(const T* w, const T* c, T* s, index_t rows, index_t cols) {
  detail::for_rows(rows, cols, [&](index_t r) { WEFT_PRUNE_DISPATCH(col_scaled_abs, w + r * cols, c, s + r * cols, cols) });
}
/// s_ij = w_ij^2 c_j.
template <class T>
void col_scaled_sq(const T* w, const T* c, T* s, index_t rows, index_t cols) {
  detail::for_rows(rows, cols, [&](index_t r) { WEFT_PRUNE_DISPATCH(col_scaled_sq, w + r * cols, c, s + r * cols, cols) });
}
/// s = |w g|.
template <class T>
void taylor_first(const T* w, const T* g, T* s, index_t n) {
  detail::for_chunks(n, [&](index_t lo, index_t hi) { WEFT_PRUNE_DISPATCH(taylor_first, w + lo, g + lo, s + lo, hi - lo) });
}
/// s = |w g - 1/2 w^2 f|.
template <class T>
void taylor_mix(const T* w, const T* g, const T* f, T* s, index_t n) {
  detail::for_chunks(n, [&](index_t lo, index_t hi) {
    WEFT_PRUNE_DISPATCH(taylor_mix, w + lo, g + lo, f + lo, s + lo, hi - lo)
  });
}
/// gt = g (1 + kappa h) (scaled), g + kappa h g^3 (cubic) or g + kappa h g^2 (square).
template <coupling_form F, class T>
void couple(const T* g, const T* h, T* gt, index_t n, T kappa) {
  detail::for_chunks(n, [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      couple_simd<F>(g + lo, h + lo, gt + lo, hi - lo, kappa);
      return;
    }
#endif
    couple_scalar<F>(g + lo, h + lo, gt + lo, hi - lo, kappa);
  });
}
/// imp += |sign u + a u^2 (+ theta^3 when cubic)| with u = gscale gt theta.
template <class T>
void accumulate_dual(T* imp, const T* gt, const T* th, index_t n, T sign, T a, T gscale, bool cubic) {
  detail::for_chunks(n, [&](index_t lo, index_t hi) {
    WEFT_PRUNE_DISPATCH(accumulate_dual, imp + lo, gt + lo, th + lo, hi - lo, sign, a, gscale, cubic)
  });
}
/// out = keep != 0 ? w : +0 (out may alias w).
template <class T>
void masked_copy(const T* w, const T* keep, T* out, index_t n) {
  detail::for_chunks(n, [&](index_t lo, index_t hi) { WEFT_PRUNE_DISPATCH(masked_copy, w + lo, keep + lo, out + lo, hi - lo) });
}

#undef WEFT_PRUNE_DISPATCH

}  // namespace prune
WEFT_NAMESPACE_END
