// weft/ep/activation.hpp - the holomorphic activations of equilibrium propagation, evaluated for
// real states and for complex states stored as split planes (scalar and xsimd bodies).
//
//   sigmoid  phi(z) = 1 / (1 + e^-(4z - 2)),  phi' = 4 phi (1 - phi)  (max 1; poles at
//            z = 1/2 + i(2k+1)pi/4). The MLP activation of Laborieux & Zenke (2022, 2024).
//   dsilu    phi(z) = z/2 s(z) + (1 - z/2) s(z - 2), s the logistic sigmoid: a smooth
//            clip(z/2, 0, 1); phi' = s(z)/2 + z/2 s(z)(1 - s(z)) - s(z - 2)/2
//            + (1 - z/2) s(z - 2)(1 - s(z - 2)) (about 0.43 at most). The CNN activation.
// Both are holomorphic (no abs, max or clip on the state path), which the Cauchy estimators
// need. Every body is one generic function over V = scalar or simd::batch, built from the
// overflow-safe split-complex sigmoid of core/ops/complex.hpp, so the scalar and vector paths
// compute the same formula. The drivers dispatch to the vector body when simd::active<T> and
// `vectorize` (tests compare both paths); the derivative is needed for real states only.
#pragma once

#include <complex>

#include "weft/core/ops/complex.hpp"

namespace weft::ep {

/// The activation phi of a network.
enum class Activation { sigmoid, dsilu };

inline const char* to_string(Activation a) { return a == Activation::sigmoid ? "sigmoid" : "dsilu"; }

namespace detail {

using ops::split_complex;

/// phi(z) = sigmoid(4z - 2).
struct sigmoid_act {
  template <class V>
  static V real(const V& u) {
    return ops::rsigmoid(V(4) * u - V(2));
  }
  template <class V>
  static split_complex<V> cplx(const split_complex<V>& z) {
    return ops::csigmoid(split_complex<V>{V(4) * z.re - V(2), V(4) * z.im});
  }
  template <class V>
  static V deriv(const V& u) {
    const V p = real(u);
    return V(4) * p * (V(1) - p);
  }
};

/// phi(z) = z/2 s(z) + (1 - z/2) s(z - 2).
struct dsilu_act {
  template <class V>
  static V real(const V& u) {
    const V h = V(0.5) * u;
    return h * ops::rsigmoid(u) + (V(1) - h) * ops::rsigmoid(u - V(2));
  }
  template <class V>
  static split_complex<V> cplx(const split_complex<V>& z) {
    const split_complex<V> h{V(0.5) * z.re, V(0.5) * z.im};
    const split_complex<V> s1 = ops::csigmoid(z);
    const split_complex<V> s2 = ops::csigmoid(split_complex<V>{z.re - V(2), z.im});
    return h * s1 + split_complex<V>{V(1) - h.re, -h.im} * s2;
  }
  template <class V>
  static V deriv(const V& u) {
    const V h = V(0.5) * u, s1 = ops::rsigmoid(u), s2 = ops::rsigmoid(u - V(2));
    return V(0.5) * s1 + h * s1 * (V(1) - s1) - V(0.5) * s2 + (V(1) - h) * s2 * (V(1) - s2);
  }
};

/// Calls f(act_struct{}) for the runtime activation.
template <class F>
decltype(auto) with_activation(Activation a, F&& f) {
  if (a == Activation::sigmoid) return f(sigmoid_act{});
  return f(dsilu_act{});
}

template <class Act, class T>
void act_real(const T* u, T* r, index_t n, bool vectorize) {
#if WEFT_USE_XSIMD
  if constexpr (simd::active<T>) {
    if (vectorize) {
      using B = simd::batch<T>;
      simd::map(u, r, n, [](const B& x) { return Act::real(x); }, [](T x) { return Act::real(x); });
      return;
    }
  }
#endif
  (void)vectorize;
  for (index_t i = 0; i < n; ++i) r[i] = Act::real(u[i]);
}

template <class Act, class T>
void act_deriv(const T* u, T* d, index_t n, bool vectorize) {
#if WEFT_USE_XSIMD
  if constexpr (simd::active<T>) {
    if (vectorize) {
      using B = simd::batch<T>;
      simd::map(u, d, n, [](const B& x) { return Act::deriv(x); }, [](T x) { return Act::deriv(x); });
      return;
    }
  }
#endif
  (void)vectorize;
  for (index_t i = 0; i < n; ++i) d[i] = Act::deriv(u[i]);
}

template <class Act, class T>
void act_planes(const T* re, const T* im, T* ore, T* oim, index_t n, bool vectorize) {
  ops::map_planes(
      re, im, ore, oim, n, [](const auto& z) { return Act::cplx(z); },
      [](const split_complex<T>& z) { return Act::cplx(z); }, vectorize);
}

}  // namespace detail

/// r[i] = phi(u[i]) for real states.
template <class T>
void activate(Activation a, const T* u, T* r, index_t n, bool vectorize = true) {
  detail::with_activation(a, [&](auto act) { detail::act_real<decltype(act)>(u, r, n, vectorize); });
}
/// d[i] = phi'(u[i]) for real states.
template <class T>
void activate_derivative(Activation a, const T* u, T* d, index_t n, bool vectorize = true) {
  detail::with_activation(a, [&](auto act) { detail::act_deriv<decltype(act)>(u, d, n, vectorize); });
}
/// (ore, oim)[i] = phi(re[i] + i im[i]) for complex states as planes (outputs may alias inputs).
template <class T>
void activate_planes(Activation a, const T* re, const T* im, T* ore, T* oim, index_t n, bool vectorize = true) {
  detail::with_activation(a, [&](auto act) { detail::act_planes<decltype(act)>(re, im, ore, oim, n, vectorize); });
}

/// phi(u) of one real value.
template <class T>
T phi(Activation a, T u) {
  return detail::with_activation(a, [&](auto act) { return decltype(act)::real(u); });
}
/// phi(z) of one complex value (the same formula as the plane kernels).
template <class T>
std::complex<T> phi(Activation a, std::complex<T> z) {
  return detail::with_activation(a, [&](auto act) {
    const ops::split_complex<T> r = decltype(act)::cplx(ops::split_complex<T>{z.real(), z.imag()});
    return std::complex<T>(r.re, r.im);
  });
}
/// phi'(u) of one real value.
template <class T>
T phi_derivative(Activation a, T u) {
  return detail::with_activation(a, [&](auto act) { return decltype(act)::deriv(u); });
}

}  // namespace weft::ep
