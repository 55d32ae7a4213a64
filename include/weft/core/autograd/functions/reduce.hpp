// weft/core/autograd/functions/reduce.hpp - differentiable sum, mean and max.
//
// sum(a) / mean(a) / max(a) reduce every element to a rank-0 tensor; the (a, axis, keepdim)
// forms reduce one axis. max sends the gradient to the first element attaining the maximum.
#pragma once

#include "weft/core/autograd/tape.hpp"
#include "weft/core/ops/reduce.hpp"

WEFT_NAMESPACE_BEGIN

namespace detail {
template <class T>
Var<T> sum_impl(const char* func, const Var<T>& a, int axis, bool keepdim, bool all, bool mean) {
  Tape<T>& t = a.tape();
  const Shape& s = a.shape();
  WEFT_CHECK(a.numel() > 0 || !mean, shape, func, "expected a non-empty tensor, got shape ", s);
  ops::AxisSplit sp;
  Shape os;
  if (all) {
    sp.len = a.numel();
    os = Shape{};
  } else {
    const int ax = s.normalize_axis(axis, func);
    sp = ops::axis_split(s, ax);
    os = ops::reduced_shape(s, ax, keepdim);
    WEFT_CHECK(sp.len > 0 || !mean, shape, func, "expected a non-empty axis ", ax, ", got shape ", s);
  }
  Tensor<T> out = t.alloc_uninit(os);
  if (sp.len == 0) out.set_zero();
  else ops::sum_axis(a.value().data(), out.data(), sp);
  const T scale = mean ? T(real_t<T>(1) / real_t<T>(sp.len)) : T(1);
  if (mean) {
    out.array() *= scale;
    ops::mean_axis_rescue(a.value().data(), out.data(), sp);  // a sum that overflowed: x / len summed
  }
  return t.record(out, {a}, [a, sp, scale](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* ga = tp.grad_sink(a))
      for (index_t o = 0; o < sp.outer; ++o)
        for (index_t l = 0; l < sp.len; ++l) {
          T* dst = ga->data() + (o * sp.len + l) * sp.inner;
          const T* src = g.data() + o * sp.inner;
          for (index_t i = 0; i < sp.inner; ++i) dst[i] += scale * src[i];
        }
  });
}

template <class T>
Var<T> max_impl(const Var<T>& a, int axis, bool keepdim, bool all) {
  Tape<T>& t = a.tape();
  const Shape& s = a.shape();
  WEFT_CHECK(a.numel() > 0, shape, "max", "expected a non-empty tensor, got shape ", s);
  ops::AxisSplit sp;
  Shape os;
  if (all) {
    sp.len = a.numel();
  } else {
    const int ax = s.normalize_axis(axis, "max");
    sp = ops::axis_split(s, ax);
    os = ops::reduced_shape(s, ax, keepdim);
    WEFT_CHECK(sp.len > 0, shape, "max", "expected a non-empty axis ", ax, ", got shape ", s);
  }
  Tensor<T> out = t.alloc_uninit(os);
  ops::max_axis(a.value().data(), out.data(), sp);
  return t.record(out, {a}, [a, sp, out](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* ga = tp.grad_sink(a))
      ops::max_axis_backward(tp.value(a).data(), out.data(), g.data(), ga->data(), sp);
  });
}
}  // namespace detail

/// Sum of all elements (rank-0 result; 0 for an empty tensor).
template <class T>
Var<T> sum(const Var<T>& a) { return detail::sum_impl("sum", a, 0, false, true, false); }
/// Sum along `axis` (negative counts from the end); keepdim keeps the axis with extent 1.
template <class T>
Var<T> sum(const Var<T>& a, int axis, bool keepdim = false) {
  return detail::sum_impl("sum", a, axis, keepdim, false, false);
}
/// Mean of all elements (rank-0 result). Empty input is a ShapeError.
template <class T>
Var<T> mean(const Var<T>& a) { return detail::sum_impl("mean", a, 0, false, true, true); }
/// Mean along `axis`.
template <class T>
Var<T> mean(const Var<T>& a, int axis, bool keepdim = false) {
  return detail::sum_impl("mean", a, axis, keepdim, false, true);
}
/// Maximum of all elements (by real part for complex tensors; NaN propagates).
template <class T>
Var<T> max(const Var<T>& a) { return detail::max_impl(a, 0, false, true); }
/// Maximum along `axis`.
template <class T>
Var<T> max(const Var<T>& a, int axis, bool keepdim = false) { return detail::max_impl(a, axis, keepdim, false); }

WEFT_NAMESPACE_END
