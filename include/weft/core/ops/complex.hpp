// weft/core/ops/complex.hpp - complex arithmetic on split planes (real and imaginary parts
// stored apart), for plain scalars and for SIMD batches.
//
// A complex array kept as two real planes (re[i], im[i]) lets real kernels do complex work:
// a real matrix times a complex matrix is one real GEMM over [re; im] stacked rows, and the
// element-wise functions below run on xsimd batches of re and im (std::complex has no vector
// path). Holomorphic equilibrium propagation (ep/) relaxes every contour point this way.
//
//   split_complex<V>     {re, im} with V = float, double or simd::batch<float/double>;
//                        + - * and cmul/crecip/cdiv/cexp, csigmoid (overflow-safe), rsigmoid
//   map_planes           out = f(in) over n split-complex elements: the vector body over full
//                        batches, the scalar body over the tail (map_planes_scalar: scalar only)
//   to_planes/from_planes  std::complex arrays <-> two planes
//   softmax_rows_planes  row-wise complex softmax with the max-real-part shift (scalar)
// The same generic function (a template over V) gives both bodies, so the two paths compute
// the same formula and differ only by the rounding of the vector exp/sin/cos.
#pragma once

#include <cmath>
#include <complex>
#include <utility>

#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

/// A complex number as two real values of type V (a scalar or a SIMD batch).
template <class V>
struct split_complex {
  V re, im;
};

namespace detail {
template <class T>
inline T vexp(T x) {
  return std::exp(x);
}
template <class T>
inline std::pair<T, T> vsincos(T x) {
  return {std::sin(x), std::cos(x)};
}
/// x >= 0 ? a : b (NaN takes b).
template <class T>
inline T select_nonneg(T x, T a, T b) {
  return x >= T(0) ? a : b;
}
template <class T>
inline T vabs(T x) {
  return std::abs(x);
}
#if WEFT_USE_XSIMD
template <class T, class A>
inline simd::batch<T, A> vexp(const simd::batch<T, A>& x) {
  return simd::exp(x);
}
template <class T, class A>
inline std::pair<simd::batch<T, A>, simd::batch<T, A>> vsincos(const simd::batch<T, A>& x) {
  return simd::sincos(x);
}
template <class T, class A>
inline simd::batch<T, A> select_nonneg(const simd::batch<T, A>& x, const simd::batch<T, A>& a,
                                        const simd::batch<T, A>& b) {
  return simd::select(x >= simd::batch<T, A>(T(0)), a, b);
}
template <class T, class A>
inline simd::batch<T, A> vabs(const simd::batch<T, A>& x) {
  return simd::abs(x);
}
#endif
}  // namespace detail

template <class V>
inline split_complex<V> operator+(const split_complex<V>& a, const split_complex<V>& b) {
  return {a.re + b.re, a.im + b.im};
}
template <class V>
inline split_complex<V> operator-(const split_complex<V>& a, const split_complex<V>& b) {
  return {a.re - b.re, a.im - b.im};
}
template <class V>
inline split_complex<V> operator*(const split_complex<V>& a, const split_complex<V>& b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
/// Complex times real.
template <class V>
inline split_complex<V> operator*(const split_complex<V>& a, const V& s) {
  return {a.re * s, a.im * s};
}
/// 1 / a = conj(a) / |a|^2.
template <class V>
inline split_complex<V> crecip(const split_complex<V>& a) {
  const V inv = V(1) / (a.re * a.re + a.im * a.im);
  return {a.re * inv, -(a.im * inv)};
}
/// a / b = a conj(b) / |b|^2.
template <class V>
inline split_complex<V> cdiv(const split_complex<V>& a, const split_complex<V>& b) {
  const V inv = V(1) / (b.re * b.re + b.im * b.im);
  return {(a.re * b.re + a.im * b.im) * inv, (a.im * b.re - a.re * b.im) * inv};
}
/// exp(a) = e^re (cos im + i sin im).
template <class V>
inline split_complex<V> cexp(const split_complex<V>& a) {
  const V m = detail::vexp(a.re);
  const auto sc = detail::vsincos(a.im);
  return {m * sc.second, m * sc.first};
}

/// Logistic sigmoid 1 / (1 + e^-x) of a real x, without overflow: with w = e^-|x| <= 1,
/// q = 1 / (1 + w) is sigmoid(|x|), and sigmoid(x) = q for x >= 0, 1 - q otherwise.
template <class V>
inline V rsigmoid(const V& x) {
  const V q = V(1) / (V(1) + detail::vexp(-detail::vabs(x)));
  return detail::select_nonneg(x, q, V(1) - q);
}

/// Logistic sigmoid of a complex z, holomorphic away from its poles z = i(2k+1)pi, without
/// overflow for any real part: w = e^(-s z) with s = sign(Re z) has |w| <= 1, q = 1 / (1 + w),
/// and sigmoid(z) = q for Re z >= 0, 1 - q otherwise (as 1 / (1 + e^-z) = 1 - 1 / (1 + e^z)).
template <class V>
inline split_complex<V> csigmoid(const split_complex<V>& z) {
  const V m = detail::vexp(-detail::vabs(z.re));
  const auto sc = detail::vsincos(z.im);
  const V ms = m * sc.first;
  // w = m (cos im - s i sin im); d = 1 + w
  const V d_re = V(1) + m * sc.second;
  const V d_im = detail::select_nonneg(z.re, -ms, ms);
  const V inv = V(1) / (d_re * d_re + d_im * d_im);
  const V q_re = d_re * inv, q_im = -(d_im * inv);
  return {detail::select_nonneg(z.re, q_re, V(1) - q_re), detail::select_nonneg(z.re, q_im, -q_im)};
}

/// The same on std::complex (through the split form, so the scalar kernels agree with it).
template <class T>
inline std::complex<T> csigmoid(const std::complex<T>& z) {
  const split_complex<T> s = csigmoid(split_complex<T>{z.real(), z.imag()});
  return {s.re, s.im};
}

// ---------------------------------------------------------------------------------------------
// plane drivers

/// (ore[i], oim[i]) = fs(re[i], im[i]) for i < n with the scalar body. fs maps
/// split_complex<T> -> split_complex<T>. Outputs may alias the inputs.
template <class T, class FS>
void map_planes_scalar(const T* re, const T* im, T* ore, T* oim, index_t n, FS&& fs) {
  for (index_t i = 0; i < n; ++i) {
    const split_complex<T> r = fs(split_complex<T>{re[i], im[i]});
    ore[i] = r.re;
    oim[i] = r.im;
  }
}

/// As map_planes_scalar, with fv (split_complex<simd::batch<T>> -> same) over full batches when
/// simd::active<T> and `vectorize`; fs over the tail (and everywhere otherwise).
template <class T, class FV, class FS>
void map_planes(const T* re, const T* im, T* ore, T* oim, index_t n, FV&& fv, FS&& fs, bool vectorize = true) {
#if WEFT_USE_XSIMD
  if constexpr (simd::active<T>) {
    if (vectorize) {
      using B = simd::batch<T>;
      constexpr index_t W = simd::width<T>;
      const index_t full = n - n % W;  // not `i + W <= n`: see simd::map
      for (index_t i = 0; i < full; i += W) {
        const split_complex<B> r = fv(split_complex<B>{simd::load(re + i), simd::load(im + i)});
        simd::store(ore + i, r.re);
        simd::store(oim + i, r.im);
      }
      map_planes_scalar(re + full, im + full, ore + full, oim + full, n - full, fs);
      return;
    }
  }
#endif
  (void)fv;
  (void)vectorize;
  map_planes_scalar(re, im, ore, oim, n, fs);
}

/// re[i] = Re z[i], im[i] = Im z[i].
template <class T>
void to_planes(const std::complex<T>* z, T* re, T* im, index_t n) {
  for (index_t i = 0; i < n; ++i) {
    re[i] = z[i].real();
    im[i] = z[i].imag();
  }
}
/// z[i] = re[i] + i im[i].
template <class T>
void from_planes(const T* re, const T* im, std::complex<T>* z, index_t n) {
  for (index_t i = 0; i < n; ++i) z[i] = std::complex<T>(re[i], im[i]);
}

/// Row-wise complex softmax p = e^(z - m) / sum e^(z - m) over `rows` rows of length n stored
/// as planes (zr, zi), with m the entry of largest real part in each row (a constant shift, so
/// the result is the holomorphic softmax). Outputs (pr, pi) may alias the inputs.
template <class T>
void softmax_rows_planes(const T* zr, const T* zi, T* pr, T* pi, index_t rows, index_t n) {
  for (index_t r = 0; r < rows; ++r) {
    const T* a = zr + r * n;
    const T* b = zi + r * n;
    T* outr = pr + r * n;
    T* outi = pi + r * n;
    index_t jm = 0;
    for (index_t j = 1; j < n; ++j)
      if (a[j] > a[jm]) jm = j;
    const T mr = a[jm], mi = b[jm];
    split_complex<T> s{T(0), T(0)};
    for (index_t j = 0; j < n; ++j) {
      const split_complex<T> e = cexp(split_complex<T>{a[j] - mr, b[j] - mi});
      outr[j] = e.re;
      outi[j] = e.im;
      s = s + e;
    }
    const split_complex<T> inv = crecip(s);
    for (index_t j = 0; j < n; ++j) {
      const split_complex<T> p = split_complex<T>{outr[j], outi[j]} * inv;
      outr[j] = p.re;
      outi[j] = p.im;
    }
  }
}

}  // namespace ops
WEFT_NAMESPACE_END
