// weft/core/ops/optim.hpp - fused optimiser update kernels (Adam/AdamW, SGD with momentum).
//
// One pass over a parameter: read p, g and the moment buffers, write them back. Adam has one
// body (detail::adam_update_*_impl) for plain Adam/AdamW and for adam_update_scaled, the
// per-element-scaled form reparam::CompanderAdam uses. The vector
// bodies use xsimd for float/double; the scalar bodies are the reference and run for complex
// parameters (Adam on a complex parameter uses |g|^2 for the second moment).
//
// Adam flushes moments that decay below the smallest normal number to zero. Parameters whose
// gradient is exactly zero (dead ReLU units, always-zero input pixels) otherwise drive m into
// the denormal range after ~800 steps (0.9^t), and every later step pays a microcode assist per
// denormal operand: the measured MLP 64-128-10 Adam step became 4x slower. A moment that small
// changes the update by less than 1e-30 of the learning rate.
#pragma once

#include <cmath>
#include <limits>

#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

/// Coefficients of one Adam step, precomputed once per step.
struct AdamStep {
  double lr;           ///< learning rate (already multiplied by the schedule factor)
  double beta1, beta2;
  double eps;
  double bias1, bias2; ///< 1 - beta1^t and 1 - beta2^t
  double l2;           ///< coupled weight decay (Adam): g += l2 * p
  double decoupled;    ///< decoupled weight decay (AdamW): p -= lr * decoupled * p
};

namespace detail {

/// The Adam step of adam_update (Scaled = false) and adam_update_scaled (Scaled = true, d the
/// per-element scale); scalar reference body, also the tail of the vector body.
template <bool Scaled, class T>
void adam_update_scalar_impl(T* p, const T* g, const T* d, T* m, T* v, index_t n, const AdamStep& s) {
  using R = real_t<T>;
  const R b1 = R(s.beta1), b2 = R(s.beta2), eps = R(s.eps), l2 = R(s.l2);
  const R step = R(s.lr / s.bias1), rb2 = R(1.0 / std::sqrt(s.bias2)), shrink = R(1.0 - s.lr * s.decoupled);
  const R tiny = std::numeric_limits<R>::min();
  for (index_t i = 0; i < n; ++i) {
    T gi = g[i] + l2 * p[i];
    if constexpr (Scaled) gi = d[i] > T(0) ? gi / d[i] : T(0);
    m[i] = b1 * m[i] + (R(1) - b1) * gi;
    if constexpr (is_complex_v<T>) {
      v[i] = b2 * v[i] + (R(1) - b2) * std::norm(gi);
    } else {
      v[i] = b2 * v[i] + (R(1) - b2) * gi * gi;
      if (std::abs(m[i]) < tiny) m[i] = T(0);
      if (v[i] < tiny) v[i] = T(0);
    }
    using std::sqrt;
    if constexpr (Scaled) p[i] = shrink * p[i] - step * d[i] * m[i] / (sqrt(v[i]) * rb2 + eps);
    else p[i] = shrink * p[i] - step * m[i] / (sqrt(v[i]) * rb2 + eps);
  }
}

#if WEFT_USE_XSIMD
template <bool Scaled, class T>
void adam_update_simd_impl(T* p, const T* g, const T* d, T* m, T* v, index_t n, const AdamStep& s) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  const B b1(T(s.beta1)), c1(T(1 - s.beta1)), b2(T(s.beta2)), c2(T(1 - s.beta2)), eps(T(s.eps)), l2(T(s.l2));
  const B step(T(s.lr / s.bias1)), rb2(T(1.0 / std::sqrt(s.bias2))), shrink(T(1.0 - s.lr * s.decoupled));
  const B tiny(std::numeric_limits<T>::min()), zero(T(0));
  const index_t full = n - n % W;  // not `i + W <= n`: see simd::map
  index_t i = 0;
  for (; i < full; i += W) {
    B pi = simd::load(p + i);
    B gi = simd::load(g + i) + l2 * pi;
    B di(T(1));
    if constexpr (Scaled) {
      di = simd::load(d + i);
      const auto live = di > zero;
      gi = simd::select(live, gi / simd::select(live, di, B(T(1))), zero);
    }
    B mi = b1 * simd::load(m + i) + c1 * gi;
    B vi = b2 * simd::load(v + i) + c2 * gi * gi;
    mi = simd::select(simd::abs(mi) < tiny, zero, mi);
    vi = simd::select(vi < tiny, zero, vi);
    simd::store(m + i, mi);
    simd::store(v + i, vi);
    if constexpr (Scaled) simd::store(p + i, shrink * pi - step * di * mi / (simd::sqrt(vi) * rb2 + eps));
    else simd::store(p + i, shrink * pi - step * mi / (simd::sqrt(vi) * rb2 + eps));
  }
  adam_update_scalar_impl<Scaled>(p + i, g + i, Scaled ? d + i : d, m + i, v + i, n - i, s);
}
#endif

template <bool Scaled, class T>
void adam_update_impl(T* p, const T* g, const T* d, T* m, T* v, index_t n, const AdamStep& s) {
#if WEFT_USE_XSIMD
  if constexpr (simd::active<T>) {
    adam_update_simd_impl<Scaled>(p, g, d, m, v, n, s);
    return;
  }
#endif
  adam_update_scalar_impl<Scaled>(p, g, d, m, v, n, s);
}

}  // namespace detail

/// p -= lr * m_hat / (sqrt(v_hat) + eps) with m, v updated in place.
template <class T>
void adam_update_scalar(T* p, const T* g, T* m, T* v, index_t n, const AdamStep& s) {
  detail::adam_update_scalar_impl<false>(p, g, static_cast<const T*>(nullptr), m, v, n, s);
}

#if WEFT_USE_XSIMD
/// The vector body of adam_update (float, double), for tests that compare it with the scalar one.
template <class T>
void adam_update_simd(T* p, const T* g, T* m, T* v, index_t n, const AdamStep& s) {
  detail::adam_update_simd_impl<false>(p, g, static_cast<const T*>(nullptr), m, v, n, s);
}
/// The vector body of adam_update_scaled (float, double).
template <class T>
void adam_update_scaled_simd(T* p, const T* g, const T* d, T* m, T* v, index_t n, const AdamStep& s) {
  detail::adam_update_simd_impl<true>(p, g, d, m, v, n, s);
}
#endif

template <class T>
void adam_update(T* p, const T* g, T* m, T* v, index_t n, const AdamStep& s) {
  detail::adam_update_impl<false>(p, g, static_cast<const T*>(nullptr), m, v, n, s);
}

/// Adam with a per-element scale d > 0 between the parameter and the weight the moments see
/// (the compander's Psi'(v), Powerpropagation's rule): the moments are those of
/// gw = (g + l2 p) / d (0 where d == 0) and the step is multiplied by d:
/// p -= lr d m_hat / (sqrt(v_hat) + eps). Real T only.
template <class T>
void adam_update_scaled(T* p, const T* g, const T* d, T* m, T* v, index_t n, const AdamStep& s) {
  static_assert(!is_complex_v<T>, "weft::ops::adam_update_scaled: the scale is a real factor per element; use a real T");
  detail::adam_update_impl<true>(p, g, d, m, v, n, s);
}
/// The scalar reference of adam_update_scaled.
template <class T>
void adam_update_scaled_scalar(T* p, const T* g, const T* d, T* m, T* v, index_t n, const AdamStep& s) {
  static_assert(!is_complex_v<T>, "weft::ops::adam_update_scaled_scalar: use a real T");
  detail::adam_update_scalar_impl<true>(p, g, d, m, v, n, s);
}

/// SGD with optional momentum buffer `buf` (PyTorch semantics): d = g + wd p;
/// buf = momentum buf + (1 - dampening) d (buf = d on the first step); d = nesterov ? d +
/// momentum buf : buf; p -= lr d. Pass buf = nullptr for plain SGD.
template <class T>
void sgd_update(T* p, const T* g, T* buf, index_t n, double lr, double momentum, double dampening,
                bool nesterov, double weight_decay, bool first_step) {
  using R = real_t<T>;
  const R mu = R(momentum), damp = R(1 - dampening), wd = R(weight_decay), eta = R(lr);
  for (index_t i = 0; i < n; ++i) {
    T d = g[i] + wd * p[i];
    if (buf) {
      buf[i] = first_step ? d : mu * buf[i] + damp * d;
      d = nesterov ? d + mu * buf[i] : buf[i];
    }
    p[i] -= eta * d;
  }
}

}  // namespace ops
WEFT_NAMESPACE_END
