// weft/quantile/monotone.hpp - non-crossing quantiles: post-processing rules, differentiable
// sort and isotonic transforms, and the cross-quantile margin penalty.
//
// Post-processing (monotonize):
//   sort      q <- sort(q) ascending (exact; the default of the library)
//   isotonic  q <- argmin_{t non-decreasing} sum_k (t_k - q_k)^2 (unweighted PAVA, core/ops)
//   mono      from the median index m/2 outward: running min going down, running max going up
//   cummax    running max from left to right
//   average   mean of the running max and the reversed running min
// Theorem (Fakoor et al., JMLR 2023; checked on many random rows in the tests): for every y,
// every q and any levels, S(sort(q), y) <= S(q, y) and S(isotonic(q), y) <= S(q, y), where S is
// the row pinball score. It is NOT true for mono, cummax, average, or weighted isotonic
// regression with arbitrary weights (tau = (0.1, 0.9), q = (10, 0), y = 0: cummax raises S from 9
// to 10). Only sort and unweighted isotonic carry the guarantee.
//
// In-training options: sort_levels and isotonic_levels are differentiable (sort passes the
// gradient back through the permutation; isotonic holds the block partition constant, so the
// gradient of a block mean spreads equally over its members). margin_penalty is
// mean_i mean_{k<l} relu(q_ik - q_il + delta_kl), normalised by n m (m - 1) / 2, with delta from
// margin_single / margin_vec / margin_adapt.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "weft/core/autograd/tape.hpp"
#include "weft/core/ops/isotonic.hpp"
#include "weft/quantile/scores.hpp"

WEFT_NAMESPACE_BEGIN
namespace quantile {

enum class Monotonize { none, sort, isotonic, mono, cummax, average };

inline const char* to_string(Monotonize h) noexcept {
  switch (h) {
    case Monotonize::sort: return "sort";
    case Monotonize::isotonic: return "isotonic";
    case Monotonize::mono: return "mono";
    case Monotonize::cummax: return "cummax";
    case Monotonize::average: return "average";
    default: return "none";
  }
}

namespace detail {
template <class T>
void check_rows(const Tensor<T>& Q, const char* func) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "quantile predictions are real tensors: use float or double");
  WEFT_CHECK(Q.defined() && Q.rank() == 2 && Q.dim(1) >= 1, shape, func,
             "expected predictions of shape (n, m >= 1), got ", Q.defined() ? Q.shape() : Shape{});
  for (index_t i = 0; i < Q.numel(); ++i)
    WEFT_CHECK(!std::isnan(Q.flat(i)), value, func, "expected predictions without NaN, got NaN at row ",
               i / Q.dim(1), ", level ", i % Q.dim(1));
}
template <class T>
void running_rules(const T* q, T* out, index_t m, Monotonize h) {
  if (h == Monotonize::mono) {
    const index_t mid = m / 2;
    out[mid] = q[mid];
    for (index_t k = mid - 1; k >= 0; --k) out[k] = std::min(q[k], out[k + 1]);
    for (index_t k = mid + 1; k < m; ++k) out[k] = std::max(q[k], out[k - 1]);
    return;
  }
  T hi = q[0];
  for (index_t k = 0; k < m; ++k) out[k] = hi = std::max(hi, q[k]);
  if (h == Monotonize::cummax) return;
  T lo = q[m - 1];
  for (index_t k = m - 1; k >= 0; --k) {
    lo = std::min(lo, q[k]);
    out[k] = T(0.5) * (out[k] + lo);
  }
}
}  // namespace detail

/// The predictions (n, m) made non-crossing by rule `how` (a new tensor; `none` copies).
/// Rows run in parallel; results do not depend on the thread count.
template <class T>
Tensor<T> monotonize(const Tensor<T>& Q, Monotonize how) {
  detail::check_rows(Q, "quantile::monotonize");
  const index_t n = Q.dim(0), m = Q.dim(1);
  Tensor<T> out(Q.shape());
  switch (how) {
    case Monotonize::none: out.copy_from(Q); break;
    case Monotonize::sort: ops::sort_rows(Q.data(), out.data(), n, m); break;
    case Monotonize::isotonic: ops::isotonic_rows(Q.data(), out.data(), n, m); break;
    default:
      parallel_for(0, n, ops::detail::monotone_row_grain(m), [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) detail::running_rules(Q.data() + i * m, out.data() + i * m, m, how);
      });
  }
  return out;
}

/// Weighted isotonic regression of each row with positive weights w of shape (m) or (n, m).
/// Provided for completeness: with arbitrary weights it can increase the pinball score.
template <class T>
Tensor<T> isotonic_weighted(const Tensor<T>& Q, const Tensor<T>& w) {
  detail::check_rows(Q, "quantile::isotonic_weighted");
  return ops::isotonic_weighted(Q, w);
}

/// Differentiable row sort: forward sorts each row; backward routes each output gradient to
/// the input position it came from (ties keep their order).
template <class T>
Var<T> sort_levels(const Var<T>& Q) {
  detail::check_rows(Q.value(), "quantile::sort_levels");
  Tape<T>& tape = Q.tape();
  const index_t n = Q.dim(0), m = Q.dim(1);
  Tensor<T> out = tape.alloc_uninit(Q.shape());
  index_t* perm = static_cast<index_t*>(tape.alloc_bytes(sizeof(index_t) * std::size_t(n * m), alignof(index_t)));
  const T* q = Q.value().data();
  T* o = out.data();
  parallel_for(0, n, ops::detail::monotone_row_grain(m), [&](index_t lo, index_t hi) {
    std::vector<index_t> scratch(static_cast<std::size_t>(m > 32 ? m : 0));
    for (index_t i = lo; i < hi; ++i) ops::sort_row_perm(q + i * m, o + i * m, perm + i * m, m, scratch.data());
  });
  return tape.record(out, {Q}, [Q, perm, n, m](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gq = tp.grad_sink(Q))
      for (index_t i = 0; i < n; ++i)
        for (index_t k = 0; k < m; ++k) gq->flat(i * m + perm[i * m + k]) += g.flat(i * m + k);
  });
}

/// Differentiable isotonic regression of each row: backward averages the output gradient over
/// each block of the forward pass (partition held constant).
template <class T>
Var<T> isotonic_levels(const Var<T>& Q) {
  detail::check_rows(Q.value(), "quantile::isotonic_levels");
  Tape<T>& tape = Q.tape();
  const index_t n = Q.dim(0), m = Q.dim(1);
  Tensor<T> out = tape.alloc_uninit(Q.shape());
  // per row: block sizes in sizes[i m ..], the number of blocks in count[i]
  index_t* sizes = static_cast<index_t*>(tape.alloc_bytes(sizeof(index_t) * std::size_t(n * (m + 1)), alignof(index_t)));
  index_t* count = sizes + n * m;
  const T* q = Q.value().data();
  T* o = out.data();
  parallel_for(0, n, ops::detail::monotone_row_grain(m), [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) count[i] = ops::isotonic_row(q + i * m, o + i * m, m, sizes + i * m);
  });
  return tape.record(out, {Q}, [Q, sizes, count, m](Tape<T>& tp, const Tensor<T>& g) {
    Tensor<T>* gq = tp.grad_sink(Q);
    if (!gq) return;
    const index_t n = tp.value(Q).dim(0);
    for (index_t i = 0; i < n; ++i)
      for (index_t b = 0, lo = i * m; b < count[i]; lo += sizes[i * m + b], ++b) {
        const index_t hi = lo + sizes[i * m + b];
        T s(0);
        for (index_t k = lo; k < hi; ++k) s += g.flat(k);
        s /= T(real_t<T>(hi - lo));
        for (index_t k = lo; k < hi; ++k) gq->flat(k) += s;
      }
  });
}

/// Margin matrix (m, m) with delta_kl = delta for k < l ("single").
template <class T>
Tensor<T> margin_single(index_t m, double delta) {
  WEFT_CHECK(m >= 1 && delta >= 0 && std::isfinite(delta), value, "quantile::margin_single", "expected m >= 1 and delta >= 0, got m = ", m,
             ", delta = ", delta);
  Tensor<T> d(Shape{m, m});
  for (index_t k = 0; k < m; ++k)
    for (index_t l = k + 1; l < m; ++l) d(k, l) = T(delta);
  return d;
}
/// delta_kl = s 0.01 (tau_l - tau_k) for k < l ("vec").
template <class T>
Tensor<T> margin_vec(const std::vector<double>& levels, double s) {
  check_levels(levels, "quantile::margin_vec");
  WEFT_CHECK(std::isfinite(s) && s >= 0, value, "quantile::margin_vec", "expected a finite scale s >= 0, got ", s);
  const index_t m = index_t(levels.size());
  Tensor<T> d(Shape{m, m});
  for (index_t k = 0; k < m; ++k)
    for (index_t l = k + 1; l < m; ++l) d(k, l) = T(s * 0.01 * (levels[std::size_t(l)] - levels[std::size_t(k)]));
  return d;
}
/// delta_kl = s relu(r_l - r_k) for k < l ("adapt"); r (m) are empirical tau-quantiles of
/// out-of-fold residuals around the median prediction.
template <class T>
Tensor<T> margin_adapt(const std::vector<double>& r, double s) {
  WEFT_CHECK(!r.empty(), shape, "quantile::margin_adapt", "expected at least one residual quantile, got none");
  WEFT_CHECK(std::isfinite(s) && s >= 0, value, "quantile::margin_adapt", "expected a finite scale s >= 0, got ", s);
  for (std::size_t k = 0; k < r.size(); ++k)
    WEFT_CHECK(std::isfinite(r[k]), value, "quantile::margin_adapt", "expected finite residual quantiles, got ", r[k],
               " at ", k);
  const index_t m = index_t(r.size());
  Tensor<T> d(Shape{m, m});
  for (index_t k = 0; k < m; ++k)
    for (index_t l = k + 1; l < m; ++l)
      d(k, l) = T(s * std::max(0.0, r[std::size_t(l)] - r[std::size_t(k)]));
  return d;
}

/// Cross-quantile margin penalty mean_i mean_{k<l} relu(q_ik - q_il + delta_kl) over all level
/// pairs (normalised by n m (m - 1) / 2; 0 for m = 1). delta is (m, m), read above the diagonal.
/// The relu's derivative at 0 is taken as 0.
template <class T>
Var<T> margin_penalty(const Var<T>& Q, const Tensor<T>& delta) {
  const char* fn = "quantile::margin_penalty";
  detail::check_rows(Q.value(), fn);
  const index_t n = Q.dim(0), m = Q.dim(1);
  WEFT_CHECK(delta.defined() && delta.shape() == (Shape{m, m}) && delta.all_finite(), shape, fn,
             "expected a finite margin matrix of shape (", m, ", ", m, "), got ",
             delta.defined() ? delta.shape() : Shape{});
  Tape<T>& tape = Q.tape();
  Tensor<T> dl = tape.alloc_uninit(delta.shape());
  dl.copy_from(delta);
  const double pairs = double(m) * double(m - 1) / 2.0;
  const T* q = Q.value().data();
  double acc = 0;
  for (index_t i = 0; i < n; ++i)
    for (index_t k = 0; k < m; ++k)
      for (index_t l = k + 1; l < m; ++l) acc += std::max(0.0, double(q[i * m + k] - q[i * m + l] + dl(k, l)));
  Tensor<T> out = tape.alloc_uninit(Shape{});
  out.flat(0) = pairs > 0 ? T(acc / (double(n) * pairs)) : T(0);
  return tape.record(out, {Q}, [Q, dl, n, m, pairs](Tape<T>& tp, const Tensor<T>& g) {
    Tensor<T>* gq = tp.grad_sink(Q);
    if (!gq || pairs == 0) return;
    const T scale = g.flat(0) / T(double(n) * pairs);
    const T* qv = tp.value(Q).data();
    T* d = gq->data();
    for (index_t i = 0; i < n; ++i)
      for (index_t k = 0; k < m; ++k)
        for (index_t l = k + 1; l < m; ++l)
          if (qv[i * m + k] - qv[i * m + l] + dl(k, l) > T(0)) {
            d[i * m + k] += scale;
            d[i * m + l] -= scale;
          }
  });
}

}  // namespace quantile
WEFT_NAMESPACE_END
