// weft/core/autograd/functions/unary.hpp - differentiable element-wise functions.
//
// Each is one of the descriptors of core/ops/elementwise.hpp run through unary(); the forward
// and backward kernels take the xsimd path for float/double (see core/simd/simd.hpp).
#pragma once

#include "weft/core/autograd/tape.hpp"
#include "weft/core/ops/elementwise.hpp"

WEFT_NAMESPACE_BEGIN

/// y = Op(a) element-wise, with gradient ga += g * Op'(a).
template <class Op, class T>
Var<T> unary(const Var<T>& a) {
  Tape<T>& t = a.tape();
  Tensor<T> out = t.alloc_uninit(a.shape());
  ops::unary_forward<Op>(a.value().data(), out.data(), out.numel());
  return t.record(out, {a}, [a, out](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* ga = tp.grad_sink(a))
      ops::unary_backward<Op>(tp.value(a).data(), out.data(), g.data(), ga->data(), out.numel());
  });
}

template <class T> Var<T> neg(const Var<T>& a) { return unary<ops::neg_op>(a); }
template <class T> Var<T> operator-(const Var<T>& a) { return unary<ops::neg_op>(a); }
template <class T> Var<T> square(const Var<T>& a) { return unary<ops::square_op>(a); }
template <class T> Var<T> exp(const Var<T>& a) { return unary<ops::exp_op>(a); }
/// Natural logarithm (log of a negative real is NaN, of 0 is -Inf, as std::log).
template <class T> Var<T> log(const Var<T>& a) { return unary<ops::log_op>(a); }
template <class T> Var<T> sqrt(const Var<T>& a) { return unary<ops::sqrt_op>(a); }
template <class T> Var<T> tanh(const Var<T>& a) { return unary<ops::tanh_op>(a); }
template <class T> Var<T> sigmoid(const Var<T>& a) { return unary<ops::sigmoid_op>(a); }
/// max(x, 0); the derivative at 0 is 0; for complex x the real part decides.
template <class T> Var<T> relu(const Var<T>& a) { return unary<ops::relu_op>(a); }
/// GELU in its tanh form (as PyTorch's approximate="tanh").
template <class T> Var<T> gelu(const Var<T>& a) { return unary<ops::gelu_op>(a); }
/// |x| for real tensors; the derivative at 0 is 0.
template <class T> Var<T> abs(const Var<T>& a) { return unary<ops::abs_op>(a); }

WEFT_NAMESPACE_END
