// weft/core/autograd/functions/arith.hpp - differentiable +, -, *, / with broadcasting, and
// their scalar forms.
//
// Binary ops broadcast NumPy-style (trailing axes aligned, extents of 1 stretch), which covers
// adding a bias row (m, n) + (n), scaling columns (m, n) * (m, 1), and scalars. The gradient of a
// broadcast operand is summed over the stretched axes.
#pragma once

#include "weft/core/autograd/tape.hpp"
#include "weft/core/ops/elementwise.hpp"

WEFT_NAMESPACE_BEGIN

namespace detail {
template <class T>
struct identity {
  using type = T;
};
/// Non-deduced context, so `x * 2.0` works for Var<float> and `x * 2` for Var<double>.
template <class T>
using nondeduced_t = typename identity<T>::type;

template <class T, class F, class GA, class GB>
Var<T> broadcast_binary(const char* func, const Var<T>& a, const Var<T>& b, F f, GA ga_fn, GB gb_fn) {
  Tape<T>& t = a.tape();
  WEFT_CHECK(b.defined() && &b.tape() == &t, config, func, "expected both operands on the same tape");
  ops::BroadcastPlan p = ops::broadcast_plan(a.shape(), b.shape(), func);
  Tensor<T> out = t.alloc_uninit(p.out);
  ops::broadcast_apply(p, a.value().data(), b.value().data(), out.data(), f);
  return t.record(out, {a, b}, [a, b, p, ga_fn, gb_fn](Tape<T>& tp, const Tensor<T>& g) {
    const T* av = tp.value(a).data();
    const T* bv = tp.value(b).data();
    if (Tensor<T>* ga = tp.grad_sink(a)) ops::broadcast_accumulate(p, false, g.data(), av, bv, ga->data(), ga_fn);
    if (Tensor<T>* gb = tp.grad_sink(b)) ops::broadcast_accumulate(p, true, g.data(), av, bv, gb->data(), gb_fn);
  });
}

/// y = f(a) for an element-wise map with a scalar parameter; df(x, y) is the derivative.
template <class T, class F, class DF>
Var<T> scalar_map(const Var<T>& a, F f, DF df) {
  Tape<T>& t = a.tape();
  Tensor<T> out = t.alloc_uninit(a.shape());
  const T* x = a.value().data();
  T* y = out.data();
  for (index_t i = 0, n = out.numel(); i < n; ++i) y[i] = f(x[i]);
  return t.record(out, {a}, [a, out, df](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* ga = tp.grad_sink(a)) {
      const T *xv = tp.value(a).data(), *yv = out.data(), *gv = g.data();
      T* d = ga->data();
      for (index_t i = 0, n = out.numel(); i < n; ++i) d[i] += gv[i] * df(xv[i], yv[i]);
    }
  });
}
}  // namespace detail

/// a + b with broadcasting.
template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b) {
  return detail::broadcast_binary<T>("add", a, b, [](T x, T y) { return x + y; },
                                     [](T g, T, T) { return g; }, [](T g, T, T) { return g; });
}
/// a - b with broadcasting.
template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b) {
  return detail::broadcast_binary<T>("sub", a, b, [](T x, T y) { return x - y; },
                                     [](T g, T, T) { return g; }, [](T g, T, T) { return -g; });
}
/// a * b (element-wise) with broadcasting.
template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b) {
  return detail::broadcast_binary<T>("mul", a, b, [](T x, T y) { return x * y; },
                                     [](T g, T, T y) { return g * y; }, [](T g, T x, T) { return g * x; });
}
/// a / b (element-wise) with broadcasting. Division by zero follows IEEE (Inf/NaN).
template <class T>
Var<T> div(const Var<T>& a, const Var<T>& b) {
  return detail::broadcast_binary<T>("div", a, b, [](T x, T y) { return x / y; },
                                     [](T g, T, T y) { return g / y; },
                                     [](T g, T x, T y) { return -g * x / (y * y); });
}

/// a + s.
template <class T>
Var<T> add(const Var<T>& a, detail::nondeduced_t<T> s) {
  return detail::scalar_map(a, [s](T x) { return x + s; }, [](T, T) { return T(1); });
}
/// a * s.
template <class T>
Var<T> mul(const Var<T>& a, detail::nondeduced_t<T> s) {
  return detail::scalar_map(a, [s](T x) { return x * s; }, [s](T, T) { return s; });
}
/// s - a.
template <class T>
Var<T> rsub(detail::nondeduced_t<T> s, const Var<T>& a) {
  return detail::scalar_map(a, [s](T x) { return s - x; }, [](T, T) { return T(-1); });
}
/// s / a.
template <class T>
Var<T> rdiv(detail::nondeduced_t<T> s, const Var<T>& a) {
  return detail::scalar_map(a, [s](T x) { return s / x; }, [](T x, T y) { return -y / x; });
}
/// a^p for a real exponent p (x^p with x < 0 and non-integer p gives NaN, as std::pow).
/// With p == 0 the result is constant and its gradient 0, also at x == 0.
template <class T>
Var<T> pow(const Var<T>& a, real_t<T> p) {
  return detail::scalar_map(
      a, [p](T x) { using std::pow; return pow(x, T(p)); },
      [p](T x, T) { using std::pow; return p == 0 ? T(0) : T(p) * pow(x, T(p - 1)); });
}

template <class T> Var<T> operator+(const Var<T>& a, const Var<T>& b) { return add(a, b); }
template <class T> Var<T> operator-(const Var<T>& a, const Var<T>& b) { return sub(a, b); }
template <class T> Var<T> operator*(const Var<T>& a, const Var<T>& b) { return mul(a, b); }
template <class T> Var<T> operator/(const Var<T>& a, const Var<T>& b) { return div(a, b); }
template <class T> Var<T> operator+(const Var<T>& a, detail::nondeduced_t<T> s) { return add(a, s); }
template <class T> Var<T> operator+(detail::nondeduced_t<T> s, const Var<T>& a) { return add(a, s); }
template <class T> Var<T> operator-(const Var<T>& a, detail::nondeduced_t<T> s) { return add(a, T(-s)); }
template <class T> Var<T> operator-(detail::nondeduced_t<T> s, const Var<T>& a) { return rsub(s, a); }
template <class T> Var<T> operator*(const Var<T>& a, detail::nondeduced_t<T> s) { return mul(a, s); }
template <class T> Var<T> operator*(detail::nondeduced_t<T> s, const Var<T>& a) { return mul(a, s); }
template <class T> Var<T> operator/(const Var<T>& a, detail::nondeduced_t<T> s) { return mul(a, T(T(1) / s)); }
template <class T> Var<T> operator/(detail::nondeduced_t<T> s, const Var<T>& a) { return rdiv(s, a); }

WEFT_NAMESPACE_END
