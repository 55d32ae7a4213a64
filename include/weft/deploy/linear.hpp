// weft/deploy/linear.hpp - the Tensor forms of the packed kernels (deploy/kernels.hpp):
// linear(w, x, bias) and linear_int8(w, x, bias) map x (..., cols) to y (..., rows),
// allocating the result and the scratch, after checking shapes and finite inputs.
#pragma once

#include <cmath>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/core/tensor.hpp"
#include "weft/deploy/int8.hpp"
#include "weft/deploy/kernels.hpp"
#include "weft/deploy/packed.hpp"

WEFT_NAMESPACE_BEGIN
namespace deploy {

namespace detail {

/// Tensor-level argument checks shared by linear() and linear_int8(); returns the batch.
template <int Bits, int GroupSize>
index_t check_tensor_args(const PackedView<Bits, GroupSize>& w, const Tensor<float>& x, const Tensor<float>* bias,
                          const char* fn) {
  WEFT_CHECK(w.rows >= 1 && w.cols >= 1 && w.words && w.steps, shape, fn,
             "expected a packed weight with rows, cols >= 1 and storage, got (", w.rows, ", ", w.cols, ")");
  WEFT_CHECK(x.rank() >= 1 && x.shape().last() == w.cols && x.numel() > 0, shape, fn, "expected x of shape (..., ", w.cols,
             ") with at least one row, got ", x.shape());
  if (bias) WEFT_CHECK(bias->shape() == Shape{w.rows}, shape, fn, "expected a bias of shape (", w.rows, "), got ", bias->shape());
  for (index_t i = 0; i < x.numel(); ++i)
    WEFT_CHECK(std::isfinite(x.data()[i]), value, fn, "expected finite inputs, got ", x.data()[i], " at flat index ", i);
  return x.numel() / w.cols;
}

}  // namespace detail

/// y = x W^T (+ bias): x (..., cols) -> y (..., rows), allocating the result and the scratch.
template <int Bits, int GroupSize>
Tensor<float> linear(const PackedView<Bits, GroupSize>& w, const Tensor<float>& x, const Tensor<float>* bias = nullptr) {
  const index_t batch = detail::check_tensor_args(w, x, bias, "deploy::linear");
  std::vector<float> scratch(std::size_t(gemm_scratch_size(w, batch)));
  Tensor<float> y(x.shape().with(-1, w.rows));
  gemm(w, x.data(), batch, y.data(), bias ? bias->data() : nullptr, scratch.data());
  return y;
}

/// Tensor form of gemm_int8: x (..., cols) -> y (..., rows).
template <int Bits, int GroupSize>
Tensor<float> linear_int8(const PackedView<Bits, GroupSize>& w, const Tensor<float>& x, const Tensor<float>* bias = nullptr) {
  const index_t batch = detail::check_tensor_args(w, x, bias, "deploy::linear_int8");
  std::vector<unsigned char> scratch(std::size_t(gemm_int8_scratch_bytes(w, batch)));
  Tensor<float> y(x.shape().with(-1, w.rows));
  gemm_int8(w, x.data(), batch, y.data(), bias ? bias->data() : nullptr, scratch.data());
  return y;
}

}  // namespace deploy
WEFT_NAMESPACE_END
