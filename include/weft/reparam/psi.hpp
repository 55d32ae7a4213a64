// weft/reparam/psi.hpp - the S-shaped functions f of the weight compander w = a f(v / b).
//
// A policy is a struct with
//   name                  "atan", "erf", "asinh"
//   limit                 sup |f| (pi/2 for atan, 1 for erf, +infinity for asinh)
//   f(u), df(u)           the function and its derivative, scalar (float or double)
//   fv(u), dfv(u)         the same on xsimd batches (when WEFT_USE_XSIMD)
//   finv(y)               the inverse in double, for initialisation (|y| < limit)
// AtanPsi is the method of Cakaj et al. (IJCNN 2023, arXiv 2306.16993); ErfPsi and AsinhPsi
// are the alternatives of its Sec. IV-F (similar gains; asinh is unbounded). xsimd 8 has
// vectorised atan, erf, asinh and exp, so all three have a vector path; the inverses (tan,
// erfinv, sinh) run once per weight at initialisation and are scalar only.
#pragma once

#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>

#include "weft/core/simd/simd.hpp"

WEFT_NAMESPACE_BEGIN
namespace reparam {

/// f(u) = atan(u): |f| < pi/2, f'(u) = 1 / (1 + u^2). The method's choice.
struct AtanPsi {
  static constexpr const char* name = "atan";
  static constexpr double limit = 1.5707963267948966;  // pi / 2
  template <class S> static S f(S u) { return std::atan(u); }
  template <class S> static S df(S u) { return S(1) / (S(1) + u * u); }
  static double finv(double y) { return std::tan(y); }
#if WEFT_USE_XSIMD
  template <class B> static B fv(const B& u) { return simd::atan(u); }
  template <class B> static B dfv(const B& u) { return B(typename B::value_type(1)) / (B(typename B::value_type(1)) + u * u); }
#endif
};

namespace detail {
/// erfinv(y) for |y| < 1 in double: Winitzki's closed form (relative error ~2e-3) refined by
/// Halley steps on erf (|y| < 0.5) or erfc (the tail, where 1 - |y| is exact); +-inf at +-1.
inline double erfinv(double y) {
  if (std::isnan(y) || std::abs(y) > 1) return std::numeric_limits<double>::quiet_NaN();
  if (y == 0) return y;
  const double ay = std::abs(y);
  if (ay == 1) return std::copysign(std::numeric_limits<double>::infinity(), y);
  constexpr double pi = 3.141592653589793, ka = 0.147, c = 1.1283791670955126;  // 2 / sqrt(pi)
  const double l = std::log((1 - ay) * (1 + ay)), t = 2 / (pi * ka) + l / 2;
  double x = std::sqrt(std::sqrt(t * t - l / ka) - t);
  for (int it = 0; it < 8; ++it) {
    // residual r = f(x) - target with f' = c exp(-x^2) (erf) or -c exp(-x^2) (erfc)
    const double fp = c * std::exp(-x * x);
    const double r = ay < 0.5 ? std::erf(x) - ay : (1 - ay) - std::erfc(x);  // both increase with x
    if (fp == 0) break;
    const double step = r / fp;                  // Newton step on an increasing f
    const double nx = x - step / (1 + x * step); // Halley: f'' / f' = -2x
    const bool done = std::abs(nx - x) <= 1e-16 * std::abs(x);
    x = nx;
    if (done) break;
  }
  return std::copysign(x, y);
}
}  // namespace detail

/// f(u) = erf(u): |f| < 1, f'(u) = 2 / sqrt(pi) exp(-u^2).
struct ErfPsi {
  static constexpr const char* name = "erf";
  static constexpr double limit = 1.0;
  static constexpr double c = 1.1283791670955126;  // 2 / sqrt(pi)
  template <class S> static S f(S u) { return std::erf(u); }
  template <class S> static S df(S u) { return S(c) * std::exp(-u * u); }
  static double finv(double y) { return detail::erfinv(y); }
#if WEFT_USE_XSIMD
  template <class B> static B fv(const B& u) { return simd::erf(u); }
  template <class B> static B dfv(const B& u) { return B(typename B::value_type(c)) * simd::exp(-(u * u)); }
#endif
};

/// f(u) = asinh(u): unbounded (grows like log 2|u|), f'(u) = 1 / sqrt(1 + u^2).
struct AsinhPsi {
  static constexpr const char* name = "asinh";
  static constexpr double limit = std::numeric_limits<double>::infinity();
  template <class S> static S f(S u) { return std::asinh(u); }
  template <class S> static S df(S u) { return S(1) / std::sqrt(S(1) + u * u); }
  static double finv(double y) { return std::sinh(y); }
#if WEFT_USE_XSIMD
  template <class B> static B fv(const B& u) { return simd::asinh(u); }
  template <class B> static B dfv(const B& u) {
    return B(typename B::value_type(1)) / simd::sqrt(B(typename B::value_type(1)) + u * u);
  }
#endif
};

/// True when Psi has the members of a compander policy (name, limit, f, df, finv).
template <class Psi, class = void>
struct is_psi_policy : std::false_type {};
template <class Psi>
struct is_psi_policy<Psi, std::void_t<decltype(Psi::name), decltype(Psi::limit),
                                      decltype(Psi::template f<double>(0.0)),
                                      decltype(Psi::template df<double>(0.0)), decltype(Psi::finv(0.0))>>
    : std::true_type {};
template <class Psi>
inline constexpr bool is_psi_policy_v = is_psi_policy<Psi>::value;

}  // namespace reparam
WEFT_NAMESPACE_END
