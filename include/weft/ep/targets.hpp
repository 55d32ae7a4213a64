// weft/ep/targets.hpp - what the readout compares the output layer with: class labels or a
// matrix of real targets, as one non-owning view.
//
//   Targets<Real>(labels)   const std::vector<int>&, one label per sample in [0, C)
//   Targets<Real>(values)   const Tensor<Real>& of shape (batch x C): any finite reals for
//                           Readout::mse (C = s_K; l = |r_K - t|^2 / 2, G = r_K - t), rows that
//                           are probability distributions (entries >= 0, summing to 1 within
//                           sqrt(epsilon)) for Readout::softmax (l = logsumexp(z) - <t, z>,
//                           the cross entropy -<t, log p> for such rows; G = V^T (p - t))
// A one-hot row of values gives the same numbers as its label. The view keeps pointers to the
// labels or the tensor: they must outlive it (a Targets built for a call is gone after it).
// Every function of ep that reads targets takes `const TargetsArg<Real>&`, a non-deduced
// spelling of Targets<Real>, so a std::vector<int> or a Tensor<Real> converts implicitly and
// Real is deduced from the network. Accuracy needs labels: with real-valued targets the
// readout still returns the predictions (argmax of the output) and reports accuracy as NaN.
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "weft/ep/net.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep {

template <class Real>
class Targets {
 public:
  /// No targets (relaxations at beta = 0).
  Targets() = default;
  /// Class labels (one per sample).
  Targets(const std::vector<int>& labels) : labels_(labels.data()), rows_(index_t(labels.size())) {}  // NOLINT
  /// Real targets, one row per sample.
  Targets(const Tensor<Real>& values)  // NOLINT
      : values_(&values), rows_(values.defined() && values.rank() >= 1 ? values.dim(0) : 0) {}

  bool empty() const noexcept { return rows_ == 0; }
  bool has_labels() const noexcept { return values_ == nullptr; }
  index_t rows() const noexcept { return rows_; }
  /// The labels (nullptr for real targets).
  const int* labels() const noexcept { return values_ ? nullptr : labels_; }
  /// The real targets (nullptr for labels).
  const Tensor<Real>* values() const noexcept { return values_; }
  int label(index_t b) const { return labels_[b]; }
  /// Row b of the real targets.
  const Real* row(index_t b) const { return values_->data() + b * values_->dim(1); }
  /// Target j of sample b as a double: the one-hot entry for labels.
  double at(index_t b, index_t j) const {
    return values_ ? double(row(b)[j]) : (labels_[b] == int(j) ? 1.0 : 0.0);
  }

 private:
  const int* labels_ = nullptr;
  const Tensor<Real>* values_ = nullptr;
  index_t rows_ = 0;
};

/// Targets<Real> in a non-deduced context: the parameter type of every function taking targets.
template <class Real>
using TargetsArg = non_deduced_t<Targets<Real>>;

namespace detail {

template <class Real>
void check_target_values(const DenseNet<Real>& net, const Tensor<Real>& t, index_t batch, const char* func) {
  const Shape want{batch, net.classes()};
  WEFT_CHECK(t.defined() && t.shape() == want, shape, func, "expected targets of shape ", want, ", got ",
             t.defined() ? t.shape() : Shape{});
  WEFT_CHECK(t.all_finite(), value, func, "expected finite targets, got NaN or Inf");
  if (net.readout != Readout::softmax) return;
  const double tol = std::sqrt(double(std::numeric_limits<Real>::epsilon()));
  for (index_t b = 0; b < batch; ++b) {
    double s = 0;
    for (index_t j = 0; j < want[1]; ++j) {
      WEFT_CHECK(t(b, j) >= Real(0), value, func, "expected softmax targets >= 0 (probabilities), got ", t(b, j),
                 " in row ", b);
      s += double(t(b, j));
    }
    WEFT_CHECK(std::abs(s - 1.0) <= tol, value, func, "expected softmax target rows summing to 1, got ", s,
               " in row ", b);
  }
}

/// Checks the targets of a batch: labels in [0, classes) or a (batch x classes) real matrix.
template <class Real>
void check_targets(const DenseNet<Real>& net, const Targets<Real>& y, index_t batch, const char* func) {
  if (!y.has_labels()) return check_target_values(net, *y.values(), batch, func);
  WEFT_CHECK(y.rows() == batch, shape, func, "expected one label per row of X (", batch, "), got ", y.rows());
  for (index_t b = 0; b < batch; ++b)
    WEFT_CHECK(y.label(b) >= 0 && index_t(y.label(b)) < net.classes(), value, func, "expected labels in [0, ",
               net.classes(), "), got ", y.label(b));
}

/// Checks X (batch x s_0, finite, batch >= 1) and the targets (see check_targets).
template <class Real>
void check_batch(const DenseNet<Real>& net, const Tensor<Real>& X, const Targets<Real>& y, const char* func) {
  WEFT_CHECK(X.defined() && X.rank() == 2 && X.dim(1) == net.size(0) && X.dim(0) >= 1, shape, func,
             "expected inputs X of shape (batch >= 1, ", net.size(0), "), got ", X.shape());
  check_targets(net, y, X.dim(0), func);
  WEFT_CHECK(X.all_finite(), value, func, "expected finite inputs X, got NaN or Inf");
}

}  // namespace detail
}  // namespace ep
WEFT_NAMESPACE_END
