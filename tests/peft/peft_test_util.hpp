// tests/peft/peft_test_util.hpp - helpers shared by the peft tests.
#pragma once

#include <algorithm>
#include <cmath>

#include "nn/nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/nn/linear.hpp"

namespace weft::peft_test {

/// lin(x) as a plain tensor (no gradient recorded).
template <class T>
Tensor<T> forward_value(nn::Linear<T>& lin, const Tensor<T>& x) {
  Tape<T> tape;
  no_grad ng;
  return lin(tape.constant(x)).value().clone();
}

/// x W^T + b with explicit loops in double.
inline Tensor<double> affine_ref(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>& b) {
  Tensor<double> y(Shape{x.dim(0), w.dim(0)});
  for (index_t r = 0; r < x.dim(0); ++r)
    for (index_t o = 0; o < w.dim(0); ++o) {
      double acc = b.defined() ? b(o) : 0.0;
      for (index_t i = 0; i < w.dim(1); ++i) acc += x(r, i) * w(o, i);
      y(r, o) = acc;
    }
  return y;
}

/// max |a - b| / max(max |b|, tiny).
template <class T>
double max_rel_diff(const Tensor<T>& a, const Tensor<T>& b) {
  const double d = double((a.array() - b.array()).abs().maxCoeff());
  return d / std::max(double(b.array().abs().maxCoeff()), 1e-300);
}

/// True when both tensors hold equal values element by element (== : -0 equals +0).
template <class T>
bool equal_values(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return false;
  for (index_t i = 0; i < a.numel(); ++i)
    if (!(a.flat(i) == b.flat(i))) return false;
  return true;
}

}  // namespace weft::peft_test
