// weft/core/autograd/functions/nn.hpp - differentiable softmax, log_softmax, layer_norm and the
// losses cross_entropy and mse.
//
// softmax, log_softmax and layer_norm act on the last axis. Losses reduce to a rank-0 tensor by
// default (Reduction::mean), or return per-sample values (Reduction::none).
//
// cross_entropy with a temperature T computes the cross entropy of softmax(z / T), with no T^2
// factor: the distillation loss of Li & Hoiem (and of Weight Aligning) is
// cross_entropy(student, softmax(teacher / T), {.temperature = T}).
//
// Range: softmax, log_softmax and cross_entropy accept +inf logits (the softmax limit, see
// ops/softmax.hpp); soft targets that are exactly 0 contribute 0 even where log p = -inf; mean
// losses and mse stay finite whenever the result is representable (a cold rescaled pass runs
// only when the plain sum overflows, so ordinary results keep their bits).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "weft/core/autograd/tape.hpp"
#include "weft/core/checked.hpp"
#include "weft/core/ops/reduce.hpp"
#include "weft/core/ops/softmax.hpp"

WEFT_NAMESPACE_BEGIN

enum class Reduction { mean, sum, none };

/// softmax along the last axis.
template <class T>
Var<T> softmax(const Var<T>& a) {
  Tape<T>& t = a.tape();
  WEFT_CHECK(a.rank() >= 1 && a.shape().last() > 0, shape, "softmax",
             "expected rank >= 1 and a non-empty last axis, got shape ", a.shape());
  const index_t n = a.shape().last(), rows = a.numel() / n;
  Tensor<T> out = t.alloc_uninit(a.shape());
  ops::softmax_rows(a.value().data(), out.data(), rows, n);
  return t.record(out, {a}, [a, out, rows, n](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* ga = tp.grad_sink(a)) ops::softmax_backward_rows(out.data(), g.data(), ga->data(), rows, n);
  });
}

/// log(softmax(a)) along the last axis, computed stably.
template <class T>
Var<T> log_softmax(const Var<T>& a) {
  Tape<T>& t = a.tape();
  WEFT_CHECK(a.rank() >= 1 && a.shape().last() > 0, shape, "log_softmax",
             "expected rank >= 1 and a non-empty last axis, got shape ", a.shape());
  const index_t n = a.shape().last(), rows = a.numel() / n;
  Tensor<T> out = t.alloc_uninit(a.shape());
  ops::log_softmax_rows(a.value().data(), out.data(), rows, n);
  return t.record(out, {a}, [a, out, rows, n](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* ga = tp.grad_sink(a)) ops::log_softmax_backward_rows(out.data(), g.data(), ga->data(), rows, n);
  });
}

namespace detail {
template <class T>
Var<T> layer_norm_impl(const Var<T>& x, const Var<T>* gamma, const Var<T>* beta, real_t<T> eps) {
  Tape<T>& t = x.tape();
  const Shape& s = x.shape();
  WEFT_CHECK(s.rank() >= 1 && s.last() > 0, shape, "layer_norm",
             "expected rank >= 1 and a non-empty last axis, got shape ", s);
  WEFT_CHECK(eps >= 0 && std::isfinite(eps), value, "layer_norm", "expected a finite eps >= 0, got ", eps);
  const index_t n = s.last(), rows = x.numel() / n;
  if (gamma)
    WEFT_CHECK(gamma->shape() == Shape{n} && beta->shape() == Shape{n}, shape, "layer_norm",
               "expected gamma and beta of shape (", n, "), got ", gamma->shape(), " and ", beta->shape());
  Tensor<T> out = t.alloc_uninit(s), xhat = t.alloc_uninit(s), rstd = t.alloc_uninit(Shape{rows});
  const Var<T> g = gamma ? *gamma : Var<T>(), b = beta ? *beta : Var<T>();
  const bool affine = gamma != nullptr;
  ops::layer_norm_rows(x.value().data(), affine ? g.value().data() : nullptr,
                       affine ? b.value().data() : nullptr, out.data(), xhat.data(), rstd.data(), rows, n, eps);
  auto backward = [=](Tape<T>& tp, const Tensor<T>& gy) {
    Tensor<T>* gx = tp.grad_sink(x);
    Tensor<T>* gg = affine ? tp.grad_sink(g) : nullptr;
    Tensor<T>* gb = affine ? tp.grad_sink(b) : nullptr;
    ops::layer_norm_backward_rows(gy.data(), affine ? tp.value(g).data() : nullptr, xhat.data(), rstd.data(),
                                  gx ? gx->data() : nullptr, gg ? gg->data() : nullptr,
                                  gb ? gb->data() : nullptr, rows, n);
  };
  if (affine) return t.record(out, {x, g, b}, backward);
  return t.record(out, {x}, backward);
}
}  // namespace detail

/// Layer normalisation over the last axis with learned gain and bias (shape (n)).
template <class T>
Var<T> layer_norm(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, real_t<T> eps = real_t<T>(1e-5)) {
  return detail::layer_norm_impl(x, &gamma, &beta, eps);
}
/// Layer normalisation over the last axis without affine parameters.
template <class T>
Var<T> layer_norm(const Var<T>& x, real_t<T> eps = real_t<T>(1e-5)) {
  return detail::layer_norm_impl<T>(x, nullptr, nullptr, eps);
}

struct CrossEntropyOptions {
  double temperature = 1.0;  ///< logits are divided by it (> 0)
  Reduction reduction = Reduction::mean;
};

namespace detail {
template <class T>
void check_logits(const char* func, const Var<T>& logits, const CrossEntropyOptions& o) {
  WEFT_CHECK(logits.rank() == 2 && logits.dim(0) > 0 && logits.dim(1) > 0, shape, func,
             "expected non-empty logits of shape (N, C), got ", logits.shape());
  WEFT_CHECK(positive_in<real_t<T>>(o.temperature), value, func,
             "expected a finite temperature > 0 whose reciprocal is finite in the logits' type, got ", o.temperature);
}
template <class T>
Tensor<T> reduce_loss(Tape<T>& t, const Tensor<T>& per_sample, Reduction r) {
  if (r == Reduction::none) return per_sample;
  Tensor<T> out = t.alloc_uninit(Shape{});
  T s = per_sample.array().sum();
  out.flat(0) = r == Reduction::mean ? s / T(real_t<T>(per_sample.numel())) : s;
  if (r == Reduction::mean) ops::mean_axis_rescue(per_sample.data(), out.data(), ops::AxisSplit{1, per_sample.numel(), 1});
  return out;
}
/// sum_i d_i^2 / n (n = 1: the plain sum) of finite real d whose plain sum of squares overflowed:
/// m (m (sum (d_i / m)^2 / n)) with m = max |d_i|, finite whenever the result is representable.
template <class T>
WEFT_COLD T sum_squares_scaled(const T* d, index_t len, real_t<T> n) {
  using R = real_t<T>;
  R m(0);
  for (index_t i = 0; i < len; ++i) {
    if (!std::isfinite(d[i])) return std::numeric_limits<R>::infinity();
    m = std::max(m, R(std::abs(d[i])));
  }
  R ss(0);
  for (index_t i = 0; i < len; ++i) ss += (d[i] / m) * (d[i] / m);
  return m * (m * (ss / n));
}
/// d(loss)/d(per-sample value i), given the upstream gradient of the reduced loss.
template <class T>
T loss_weight(const Tensor<T>& g, Reduction r, index_t i, index_t n) {
  if (r == Reduction::none) return g.flat(i);
  return r == Reduction::mean ? g.flat(0) / T(real_t<T>(n)) : g.flat(0);
}
}  // namespace detail

namespace detail {
/// Rows of the soft-target loss that came out NaN because a zero target met log p = -inf
/// (logits far apart, e.g. [3e38, -3e38] in float): recomputed with 0 log 0 = 0, the limit.
template <class T>
WEFT_COLD void soft_xent_zero_targets(const Tensor<T>& logp, const Tensor<T>& p, Tensor<T>& per) {
  for (index_t i = 0; i < per.numel(); ++i) {
    if (!std::isnan(real_part(per.flat(i)))) continue;
    T s(0);
    for (index_t j = 0; j < logp.dim(1); ++j)
      if (p(i, j) != T(0)) s += logp(i, j) * p(i, j);
    per.flat(i) = -s;
  }
}
}  // namespace detail

/// Cross entropy of softmax(logits / T) against integer class labels (one per row, in [0, C)).
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const std::vector<int>& labels, const CrossEntropyOptions& o = {}) {
  detail::check_logits("cross_entropy", logits, o);
  Tape<T>& t = logits.tape();
  const index_t N = logits.dim(0), C = logits.dim(1);
  WEFT_CHECK(index_t(labels.size()) == N, shape, "cross_entropy", "expected ", N, " labels (one per row), got ",
             labels.size());
  int* lab = static_cast<int*>(t.alloc_bytes(sizeof(int) * std::size_t(N), alignof(int)));
  for (index_t i = 0; i < N; ++i) {
    WEFT_CHECK(labels[std::size_t(i)] >= 0 && labels[std::size_t(i)] < C, value, "cross_entropy",
               "expected labels in [0, ", C, "), got ", labels[std::size_t(i)], " at row ", i);
    lab[i] = labels[std::size_t(i)];
  }
  const T inv_t = T(real_t<T>(1.0 / o.temperature));
  Tensor<T> prob = t.alloc_uninit(logits.shape()), per = t.alloc_uninit(Shape{N});
  ops::softmax_xent_rows(logits.value().data(), inv_t, lab, prob.data(), per.data(), N, C);
  const Reduction r = o.reduction;
  return t.record(detail::reduce_loss(t, per, r), {logits}, [=](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gz = tp.grad_sink(logits))
      for (index_t i = 0; i < N; ++i) {  // d loss_i / d z_ij = (prob_ij - [j == label_i]) / T
        const T w = detail::loss_weight(g, r, i, N) * inv_t;
        T* dz = gz->data() + i * C;
        const T* pi = prob.data() + i * C;
        for (index_t j = 0; j < C; ++j) dz[j] += w * pi[j];
        dz[lab[i]] -= w;
      }
  });
}

/// Cross entropy of softmax(logits / T) against soft targets p (shape (N, C), rows usually sum
/// to 1): -sum_j p_ij log softmax(z_i / T)_j. Gradients reach both logits and targets.
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const Var<T>& targets, const CrossEntropyOptions& o = {}) {
  detail::check_logits("cross_entropy", logits, o);
  Tape<T>& t = logits.tape();
  WEFT_CHECK(targets.shape() == logits.shape(), shape, "cross_entropy", "expected soft targets of shape ",
             logits.shape(), ", got ", targets.shape());
  const index_t N = logits.dim(0), C = logits.dim(1);
  const T inv_t = T(real_t<T>(1.0 / o.temperature));
  Tensor<T> logp = t.alloc_uninit(logits.shape());
  logp.array() = logits.value().array() * inv_t;
  ops::log_softmax_rows(logp.data(), logp.data(), N, C);
  Tensor<T> per = t.alloc_uninit(Shape{N});
  per.vector() = -(logp.matrix().array() * targets.value().matrix().array()).rowwise().sum().matrix();
  if (WEFT_UNLIKELY(!per.all_finite())) detail::soft_xent_zero_targets(logp, targets.value(), per);
  const Reduction r = o.reduction;
  return t.record(detail::reduce_loss(t, per, r), {logits, targets}, [=](Tape<T>& tp, const Tensor<T>& g) {
    const Tensor<T>& p = tp.value(targets);
    Tensor<T>* gz = tp.grad_sink(logits);
    Tensor<T>* gp = tp.grad_sink(targets);
    for (index_t i = 0; i < N; ++i) {
      const T w = detail::loss_weight(g, r, i, N);
      T psum(0);
      for (index_t j = 0; j < C; ++j) psum += p(i, j);
      for (index_t j = 0; j < C; ++j) {
        if (gz) (*gz)(i, j) += w * inv_t * (std::exp(logp(i, j)) * psum - p(i, j));
        if (gp) (*gp)(i, j) -= w * logp(i, j);
      }
    }
  });
}

/// Mean (or sum, or per-element) squared error between pred and target of the same shape.
template <class T>
Var<T> mse(const Var<T>& pred, const Var<T>& target, Reduction r = Reduction::mean) {
  Tape<T>& t = pred.tape();
  WEFT_CHECK(pred.shape() == target.shape(), shape, "mse", "expected pred and target of equal shape, got ",
             pred.shape(), " and ", target.shape());
  WEFT_CHECK(pred.numel() > 0 || r != Reduction::mean, shape, "mse", "expected non-empty inputs, got shape ",
             pred.shape());
  const index_t n = pred.numel();
  Tensor<T> diff = t.alloc_uninit(pred.shape());
  diff.array() = pred.value().array() - target.value().array();
  Tensor<T> out;
  if (r == Reduction::none) {
    out = t.alloc_uninit(pred.shape());
    out.array() = diff.array() * diff.array();
  } else {
    out = t.alloc_uninit(Shape{});
    T s = (diff.array() * diff.array()).sum();
    out.flat(0) = r == Reduction::mean ? s / T(real_t<T>(n)) : s;
    if constexpr (!is_complex_v<T>)  // squares or their sum overflowed: the scaled form
      if (WEFT_UNLIKELY(!std::isfinite(out.flat(0))))
        out.flat(0) = detail::sum_squares_scaled(diff.data(), n, real_t<T>(r == Reduction::mean ? n : 1));
  }
  return t.record(out, {pred, target}, [=](Tape<T>& tp, const Tensor<T>& g) {
    Tensor<T>* gp = tp.grad_sink(pred);
    Tensor<T>* gt = tp.grad_sink(target);
    for (index_t i = 0; i < n; ++i) {
      const T w = T(2) * detail::loss_weight(g, r, i, n) * diff.flat(i);
      if (gp) gp->flat(i) += w;
      if (gt) gt->flat(i) -= w;
    }
  });
}

WEFT_NAMESPACE_END
