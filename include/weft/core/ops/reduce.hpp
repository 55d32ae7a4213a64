// weft/core/ops/reduce.hpp - reductions along one axis on raw tensors (no autograd).
//
// A tensor reduced along `axis` is seen as (outer, len, inner): outer = product of the extents
// before the axis, inner = product of those after it. Sums run in a fixed order (over len for
// each (outer, inner) pair, ascending), so results do not depend on thread count.
// Range: a mean whose plain sum overflows (float beyond about 3.4e38 in total, double beyond
// 1.8e308) is recomputed by mean_axis_rescue as sum_l (x_l / len), which cannot overflow when
// the inputs are finite; the plain sum is kept (bit for bit) wherever it is finite.
#pragma once

#include <cmath>

#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

struct AxisSplit {
  index_t outer = 1, len = 1, inner = 1;
};

inline AxisSplit axis_split(const Shape& s, int axis) {
  AxisSplit a;
  for (int k = 0; k < s.rank(); ++k) {
    if (k < axis) a.outer *= s[k];
    else if (k == axis) a.len = s[k];
    else a.inner *= s[k];
  }
  return a;
}

/// The shape of a reduction along `axis`: the axis removed, or kept as 1 with keepdim.
inline Shape reduced_shape(const Shape& s, int axis, bool keepdim) {
  if (keepdim) return s.with(axis, 1);
  index_t d[4] = {0, 0, 0, 0};  // initialised: GCC 12 warns (maybe-uninitialized) when rank is 1
  int r = 0;
  for (int k = 0; k < s.rank(); ++k)
    if (k != axis) d[r++] = s[k];
  return Shape::from(d, r);
}

/// out[o, i] = sum_l x[o, l, i]  (out has outer * inner elements; overwritten).
template <class T>
void sum_axis(const T* x, T* out, const AxisSplit& a) {
  if (a.inner == 1) {
    ConstMatrixMap<T> m(x, a.outer, a.len);
    VectorMap<T>(out, a.outer) = m.rowwise().sum();
    return;
  }
  for (index_t o = 0; o < a.outer; ++o) {
    T* dst = out + o * a.inner;
    const T* src = x + o * a.len * a.inner;
    for (index_t i = 0; i < a.inner; ++i) dst[i] = src[i];
    for (index_t l = 1; l < a.len; ++l)
      for (index_t i = 0; i < a.inner; ++i) dst[i] += src[l * a.inner + i];
  }
}

/// True when every real and imaginary part of x is finite.
template <class T>
bool is_finite_value(const T& x) noexcept {
  if constexpr (is_complex_v<T>) return std::isfinite(x.real()) && std::isfinite(x.imag());
  else return std::isfinite(x);
}

/// sum_l x[l * stride] / len over len finite values, without overflow (the mean's cold path).
template <class T>
WEFT_COLD T mean_scaled(const T* x, index_t len, index_t stride) {
  const T n = T(real_t<T>(len));
  T s(0);
  for (index_t l = 0; l < len; ++l) s += x[l * stride] / n;
  return s;
}

/// After out = scale * sum_axis(x): recomputes each non-finite mean whose inputs are finite with
/// mean_scaled (so a representable mean is returned even when its sum overflowed).
template <class T>
void mean_axis_rescue(const T* x, T* out, const AxisSplit& a) {
  for (index_t o = 0; o < a.outer; ++o)
    for (index_t i = 0; i < a.inner; ++i) {
      T& r = out[o * a.inner + i];
      if (WEFT_LIKELY(is_finite_value(r))) continue;
      const T* src = x + o * a.len * a.inner + i;
      bool finite = true;
      for (index_t l = 0; l < a.len && finite; ++l) finite = is_finite_value(src[l * a.inner]);
      if (finite) r = mean_scaled(src, a.len, a.inner);
    }
}

/// out[o, i] = max_l x[o, l, i] by real part (NaN propagates: a NaN element wins).
template <class T>
void max_axis(const T* x, T* out, const AxisSplit& a) {
  for (index_t o = 0; o < a.outer; ++o)
    for (index_t i = 0; i < a.inner; ++i) {
      const T* src = x + o * a.len * a.inner + i;
      T best = src[0];
      for (index_t l = 1; l < a.len; ++l) {
        T v = src[l * a.inner];
        if (real_part(v) > real_part(best) || std::isnan(real_part(v))) best = v;
        if (std::isnan(real_part(best))) break;
      }
      out[o * a.inner + i] = best;
    }
}

/// gx[o, l*, i] += g[o, i] where l* is the first index attaining the maximum y[o, i].
template <class T>
void max_axis_backward(const T* x, const T* y, const T* g, T* gx, const AxisSplit& a) {
  for (index_t o = 0; o < a.outer; ++o)
    for (index_t i = 0; i < a.inner; ++i) {
      const T* src = x + o * a.len * a.inner + i;
      T target = y[o * a.inner + i];
      for (index_t l = 0; l < a.len; ++l) {
        T v = src[l * a.inner];
        bool hit = std::isnan(real_part(target)) ? std::isnan(real_part(v)) : (v == target);
        if (hit) {
          gx[o * a.len * a.inner + l * a.inner + i] += g[o * a.inner + i];
          break;
        }
      }
    }
}

}  // namespace ops
WEFT_NAMESPACE_END
