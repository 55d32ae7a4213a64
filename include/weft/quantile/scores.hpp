// weft/quantile/scores.hpp - proper scores for quantile predictions: pinball loss, WIS, interval
// score, coverage, calibration error, widths; and pinball_loss, the differentiable training loss.
//
// Pinball (check) loss of level tau at u = y - q: psi_tau(u) = max(tau u, (tau - 1) u).
// Row score S(q, y) = sum_k psi_{tau_k}(y - q_k). weft's wis(Q, y) is the mean of psi over rows
// and levels, (1 / (n m)) sum_i S(q_i, y_i): what the reference code of Fakoor et al. (JMLR
// 2023) reports and trains on. With levels symmetric about 0.5 that include 0.5 (m = 2K + 1),
// S = |y - q_med| / 2 + sum_k (alpha_k / 2) IS_{alpha_k}, and the weighted interval score of
// Bracher et al. (PLoS Comp. Biol. 2021) is S / (K + 1/2) = 2 S / m, i.e. twice weft's wis:
// wis_bracher() returns that.
// Interval score of a central (1 - alpha) interval [l, u] (Gneiting & Raftery 2007):
// IS = (u - l) + (2 / alpha)(l - y)_+ + (2 / alpha)(y - u)_+, and
// psi_{alpha/2}(y - l) + psi_{1 - alpha/2}(y - u) = (alpha / 2) IS.
//
// Predictions are (n, m) tensors with m == levels.size(), y is (n). NaN in Q and non-finite y
// raise ValueError; +-inf in Q (an infinite conformal interval) is allowed and scores as inf.
// All scores are accumulated in double in a fixed order (independent of threads).
#pragma once

#include <cmath>
#include <vector>

#include "weft/core/autograd/tape.hpp"
#include "weft/quantile/levels.hpp"

WEFT_NAMESPACE_BEGIN
namespace quantile {

/// psi_tau(u) = u (tau - 1{u < 0}).
inline double pinball(double u, double tau) noexcept { return u < 0 ? (tau - 1.0) * u : tau * u; }

/// Interval score of [l, u] for a central (1 - alpha) interval and observation y.
inline double interval_score(double l, double u, double y, double alpha) {
  WEFT_CHECK(alpha > 0 && alpha < 1, value, "quantile::interval_score", "expected alpha in (0, 1), got ", alpha);
  return (u - l) + (2.0 / alpha) * (l > y ? l - y : 0.0) + (2.0 / alpha) * (y > u ? y - u : 0.0);
}

namespace detail {
template <class T>
void check_predictions(const Tensor<T>& Q, const std::vector<double>& levels, const char* func) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "quantile predictions are real tensors: use float or double");
  check_levels(levels, func);
  WEFT_CHECK(Q.defined() && Q.rank() == 2 && Q.dim(0) >= 1, shape, func,
             "expected predictions of shape (n >= 1, m), got ", Q.defined() ? Q.shape() : Shape{});
  WEFT_CHECK(Q.dim(1) == index_t(levels.size()), shape, func, "expected ", levels.size(),
             " columns (one per level), got shape ", Q.shape());
  for (index_t i = 0; i < Q.numel(); ++i)
    WEFT_CHECK(!std::isnan(Q.flat(i)), value, func, "expected predictions without NaN, got NaN at row ",
               i / Q.dim(1), ", level ", i % Q.dim(1));
}
template <class T>
void check_targets(const Tensor<T>& y, index_t n, const char* func) {
  WEFT_CHECK(y.defined() && y.rank() == 1 && y.dim(0) == n, shape, func, "expected targets of shape (", n,
             "), got ", y.defined() ? y.shape() : Shape{});
  for (index_t i = 0; i < n; ++i)
    WEFT_CHECK(std::isfinite(y.flat(i)), value, func, "expected finite targets, got ", y.flat(i), " at row ", i);
}
template <class T>
void check_scored(const Tensor<T>& Q, const Tensor<T>& y, const std::vector<double>& levels, const char* func) {
  check_predictions(Q, levels, func);
  check_targets(y, Q.dim(0), func);
}
}  // namespace detail

/// S(q, y) = sum_k psi_{tau_k}(y - q_k) for one row of m values (no checks).
template <class T>
double row_score(const T* q, double y, const double* levels, index_t m) noexcept {
  double s = 0;
  for (index_t k = 0; k < m; ++k) s += pinball(y - double(q[k]), levels[k]);
  return s;
}

/// The row scores S_i, shape (n), in double.
template <class T>
Tensor<double> row_scores(const Tensor<T>& Q, const Tensor<T>& y, const std::vector<double>& levels) {
  detail::check_scored(Q, y, levels, "quantile::row_scores");
  const index_t n = Q.dim(0), m = Q.dim(1);
  Tensor<double> s(Shape{n});
  for (index_t i = 0; i < n; ++i) s.flat(i) = row_score(Q.data() + i * m, double(y.flat(i)), levels.data(), m);
  return s;
}

/// weft's WIS: mean pinball loss over rows and levels, (1 / (n m)) sum_i S_i.
template <class T>
double wis(const Tensor<T>& Q, const Tensor<T>& y, const std::vector<double>& levels) {
  detail::check_scored(Q, y, levels, "quantile::wis");
  const index_t n = Q.dim(0), m = Q.dim(1);
  double s = 0;
  for (index_t i = 0; i < n; ++i) s += row_score(Q.data() + i * m, double(y.flat(i)), levels.data(), m);
  return s / double(n * m);
}

/// Bracher et al.'s WIS, 2 wis(Q, y): defined for levels symmetric about 0.5 that include 0.5.
template <class T>
double wis_bracher(const Tensor<T>& Q, const Tensor<T>& y, const std::vector<double>& levels) {
  symmetric_pairs(levels, "quantile::wis_bracher");
  WEFT_CHECK(levels.size() % 2 == 1, value, "quantile::wis_bracher",
             "expected levels that include the median 0.5 (an odd count), got ", levels.size(), " levels");
  return 2.0 * wis(Q, y, levels);
}

/// Empirical coverage of the closed interval [q_lower, q_{1 - lower}]: mean 1{l <= y <= u}.
template <class T>
double coverage(const Tensor<T>& Q, const Tensor<T>& y, const std::vector<double>& levels, double lower) {
  detail::check_scored(Q, y, levels, "quantile::coverage");
  const index_t lo = level_index(levels, lower, "quantile::coverage");
  const index_t hi = level_index(levels, 1.0 - lower, "quantile::coverage");
  const index_t n = Q.dim(0);
  index_t hits = 0;
  for (index_t i = 0; i < n; ++i) hits += (Q(i, lo) <= y.flat(i) && y.flat(i) <= Q(i, hi)) ? 1 : 0;
  return double(hits) / double(n);
}

/// Mean width q_{1 - lower} - q_lower of the central interval.
template <class T>
double mean_width(const Tensor<T>& Q, const std::vector<double>& levels, double lower) {
  detail::check_predictions(Q, levels, "quantile::mean_width");
  const index_t lo = level_index(levels, lower, "quantile::mean_width");
  const index_t hi = level_index(levels, 1.0 - lower, "quantile::mean_width");
  double s = 0;
  for (index_t i = 0; i < Q.dim(0); ++i) s += double(Q(i, hi)) - double(Q(i, lo));
  return s / double(Q.dim(0));
}

/// Mean interval score of the central (1 - 2 lower) interval over rows.
template <class T>
double mean_interval_score(const Tensor<T>& Q, const Tensor<T>& y, const std::vector<double>& levels, double lower) {
  detail::check_scored(Q, y, levels, "quantile::mean_interval_score");
  const index_t lo = level_index(levels, lower, "quantile::mean_interval_score");
  const index_t hi = level_index(levels, 1.0 - lower, "quantile::mean_interval_score");
  double s = 0;
  for (index_t i = 0; i < Q.dim(0); ++i) s += interval_score(Q(i, lo), Q(i, hi), y.flat(i), 2.0 * lower);
  return s / double(Q.dim(0));
}

/// Mean absolute calibration error (1/m) sum_k |mean_i 1{y_i <= q_ik} - tau_k|.
template <class T>
double mace(const Tensor<T>& Q, const Tensor<T>& y, const std::vector<double>& levels) {
  detail::check_scored(Q, y, levels, "quantile::mace");
  const index_t n = Q.dim(0), m = Q.dim(1);
  double s = 0;
  for (index_t k = 0; k < m; ++k) {
    index_t below = 0;
    for (index_t i = 0; i < n; ++i) below += y.flat(i) <= Q(i, k) ? 1 : 0;
    s += std::abs(double(below) / double(n) - levels[std::size_t(k)]);
  }
  return s / double(m);
}

/// Fraction of rows with at least one crossing (some q_k > q_{k+1}).
template <class T>
double crossing_fraction(const Tensor<T>& Q) {
  WEFT_CHECK(Q.defined() && Q.rank() == 2 && Q.dim(0) >= 1, shape, "quantile::crossing_fraction",
             "expected predictions of shape (n >= 1, m), got ", Q.defined() ? Q.shape() : Shape{});
  const index_t n = Q.dim(0), m = Q.dim(1);
  index_t bad = 0;
  for (index_t i = 0; i < n; ++i)
    for (index_t k = 1; k < m; ++k)
      if (Q(i, k - 1) > Q(i, k)) {
        ++bad;
        break;
      }
  return double(bad) / double(n);
}

/// Differentiable mean pinball loss (weft's wis) of predictions Q (n, m) against y (n):
/// L = (1 / (n m)) sum_ik psi_{tau_k}(y_i - q_ik). Gradient dL/dq_ik = -(tau_k - 1{y_i < q_ik})
/// / (n m); at a tie y_i == q_ik the indicator is 0, so the gradient is -tau_k / (n m).
/// With huber_delta = delta > 0 each term is the Huber-pinball h_delta(u) / delta * (tau if
/// u >= 0 else 1 - tau), h_delta(u) = u^2 / 2 for |u| < delta else delta (|u| - delta / 2)
/// (smooth at u = 0; used for base networks, aggregators use delta = 0).
template <class T>
Var<T> pinball_loss(const Var<T>& Q, const Tensor<T>& y, const std::vector<double>& levels, double huber_delta = 0.0) {
  const char* fn = "quantile::pinball_loss";
  detail::check_scored(Q.value(), y, levels, fn);
  WEFT_CHECK(huber_delta >= 0 && std::isfinite(huber_delta), value, fn, "expected huber_delta >= 0, got ",
             huber_delta);
  Tape<T>& tape = Q.tape();
  const index_t n = Q.dim(0), m = Q.dim(1);
  // levels and targets in the arena: the closure holds plain pointers, no heap objects
  T* tau = static_cast<T*>(tape.alloc_bytes(sizeof(T) * std::size_t(m), alignof(T)));
  for (index_t k = 0; k < m; ++k) tau[k] = T(levels[std::size_t(k)]);
  Tensor<T> yv = tape.alloc_uninit(Shape{n});
  yv.copy_from(y);
  const T delta = T(huber_delta);
  auto term = [delta](T u, T t) -> T {  // loss of one residual u = y - q
    if (delta == T(0)) return u < 0 ? (t - T(1)) * u : t * u;
    const T au = std::abs(u), h = au < delta ? T(0.5) * u * u : delta * (au - T(0.5) * delta);
    return h / delta * (u >= 0 ? t : T(1) - t);
  };
  const T* qv = Q.value().data();
  double acc = 0;
  for (index_t i = 0; i < n; ++i)
    for (index_t k = 0; k < m; ++k) acc += double(term(yv.flat(i) - qv[i * m + k], tau[k]));
  Tensor<T> out = tape.alloc_uninit(Shape{});
  out.flat(0) = T(acc / double(n * m));
  return tape.record(out, {Q}, [Q, yv, tau, n, m, delta](Tape<T>& tp, const Tensor<T>& g) {
    Tensor<T>* gq = tp.grad_sink(Q);
    if (!gq) return;
    const T scale = g.flat(0) / T(real_t<T>(n * m));
    const T* q = tp.value(Q).data();
    T* d = gq->data();
    for (index_t i = 0; i < n; ++i)
      for (index_t k = 0; k < m; ++k) {
        const T u = yv.flat(i) - q[i * m + k], t = tau[k];
        T dpsi;  // d term / du
        if (delta == T(0)) dpsi = u < 0 ? t - T(1) : t;  // u < 0 <=> y < q; a tie takes tau
        else {
          const T dh = std::abs(u) < delta ? u : (u > 0 ? delta : -delta);
          dpsi = dh / delta * (u >= 0 ? t : T(1) - t);
        }
        d[i * m + k] -= scale * dpsi;  // du / dq = -1
      }
  });
}

}  // namespace quantile
WEFT_NAMESPACE_END
