// weft/ordinal/model.hpp - the cumulative-logit model with one weight vector per transition,
// its class probabilities (with the clamping rule for unordered predictors), the psi <-> beta
// reparameterisation of PRESTO, and the scores used to choose and judge fits.
//
// Model (classes 0 < 1 < ... < K-1 in weft; the paper's 1..K; class K-1 is the rare one):
//   P(y <= k | x) = sigma(eta_k(x)),  eta_k(x) = alpha_k + x^T beta_k,  k = 0..K-2,
//   pi_0 = sigma(eta_0), pi_k = sigma(eta_k) - sigma(eta_{k-1}), pi_{K-1} = 1 - sigma(eta_{K-2}).
// The probabilities are valid iff eta_0(x) <= ... <= eta_{K-2}(x). Proportional odds is the
// special case beta_0 = ... = beta_{K-2}. Signs: MASS::polr writes logit P(y <= k) = zeta_k -
// x^T c, so alpha = zeta and beta = -c; convert at a comparison, never inside the library.
//
// PRESTO (Faletto & Bien, ICML 2023) penalises psi_0 = beta_0 and psi_k = beta_k - beta_{k-1},
// so beta_k = psi_0 + ... + psi_k: beta_from_psi / psi_from_beta convert between the two.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/core/ops/matmul.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ordinal {

/// A fitted cumulative-logit model: K-1 intercepts and a p x (K-1) weight matrix (column k is
/// beta_k), on the original scale of the features.
template <class T>
struct CumulativeLogit {
  Tensor<T> intercepts;  ///< (K-1): alpha_0 .. alpha_{K-2}
  Tensor<T> coef;        ///< (p, K-1): column k is beta_k

  index_t num_classes() const { return intercepts.numel() + 1; }
  index_t num_features() const { return coef.defined() ? coef.dim(0) : 0; }
};

/// beta (p, K-1) from psi (p, K-1) by cumulative sums along the columns.
template <class T>
Tensor<T> beta_from_psi(const Tensor<T>& psi) {
  WEFT_CHECK(psi.rank() == 2, shape, "ordinal::beta_from_psi", "expected psi of shape (p, K-1), got ", psi.shape());
  Tensor<T> b = psi.clone();
  auto m = b.matrix();
  for (index_t k = 1; k < m.cols(); ++k) m.col(k) += m.col(k - 1);
  return b;
}

/// psi (p, K-1) from beta (p, K-1): psi_0 = beta_0, psi_k = beta_k - beta_{k-1}.
template <class T>
Tensor<T> psi_from_beta(const Tensor<T>& beta) {
  WEFT_CHECK(beta.rank() == 2, shape, "ordinal::psi_from_beta", "expected beta of shape (p, K-1), got ",
             beta.shape());
  Tensor<T> s = beta.clone();
  auto m = s.matrix();
  auto b = beta.matrix();
  for (index_t k = 1; k < m.cols(); ++k) m.col(k) = b.col(k) - b.col(k - 1);
  return s;
}

namespace detail {
template <class T>
void check_model(const CumulativeLogit<T>& m, const char* func) {
  WEFT_CHECK(m.intercepts.rank() == 1 && m.intercepts.numel() >= 1, shape, func,
             "expected a model with K-1 >= 1 intercepts, got shape ", m.intercepts.shape());
  WEFT_CHECK(m.coef.rank() == 2 && m.coef.dim(1) == m.intercepts.numel(), shape, func,
             "expected coef of shape (p, ", m.intercepts.numel(), "), got ", m.coef.shape());
}
template <class T>
void check_features(const CumulativeLogit<T>& m, const Tensor<T>& x, const char* func) {
  check_model(m, func);
  WEFT_CHECK(x.rank() == 2 && x.dim(1) == m.coef.dim(0), shape, func, "expected x of shape (n, ",
             m.coef.dim(0), "), got ", x.shape());
  WEFT_CHECK(x.all_finite(), value, func, "expected finite features, got NaN or Inf in x");
}
template <class T>
inline T sigmoid(T t) noexcept {
  return t >= T(0) ? T(1) / (T(1) + std::exp(-t)) : std::exp(t) / (T(1) + std::exp(t));
}
}  // namespace detail

/// eta = 1 alpha^T + x B, shape (n, K-1).
template <class T>
Tensor<T> linear_predictor(const CumulativeLogit<T>& m, const Tensor<T>& x) {
  detail::check_features(m, x, "ordinal::linear_predictor");
  const index_t n = x.dim(0), p = x.dim(1), km1 = m.intercepts.numel();
  Tensor<T> eta(Shape{n, km1});
  if (p > 0 && n > 0) ops::gemm(false, false, x.data(), m.coef.data(), eta.data(), n, km1, p, false);
  eta.matrix().rowwise() += m.intercepts.matrix().row(0);
  return eta;
}

/// Class probabilities and how many rows had to be repaired.
template <class T>
struct Probabilities {
  Tensor<T> probs;            ///< (n, K); each row sums to 1, entries in [0, 1]
  index_t clamped_rows = 0;   ///< rows whose eta were unordered (some pi < 0 before clamping)
};

/// Class probabilities pi(x) (n, K). Where the fitted eta are unordered out of sample, some
/// pi_k are negative: those are set to 0 and the row renormalised, and the row is counted in
/// clamped_rows (the reference R code stops with an error instead).
template <class T>
Probabilities<T> predict_proba(const CumulativeLogit<T>& m, const Tensor<T>& x) {
  detail::check_features(m, x, "ordinal::predict_proba");
  const Tensor<T> eta = linear_predictor(m, x);
  const index_t n = x.dim(0), K = m.num_classes();
  Probabilities<T> out;
  out.probs = Tensor<T>(Shape{n, K});
  for (index_t i = 0; i < n; ++i) {
    T* p = out.probs.data() + i * K;
    T prev = T(0);
    bool neg = false;
    for (index_t k = 0; k + 1 < K; ++k) {
      const T s = detail::sigmoid(eta(i, k));
      p[k] = s - prev;
      prev = s;
      neg = neg || p[k] < T(0);
    }
    p[K - 1] = T(1) - prev;
    if (neg) {
      ++out.clamped_rows;
      T total = T(0);
      for (index_t k = 0; k < K; ++k) total += (p[k] = std::max(p[k], T(0)));
      for (index_t k = 0; k < K; ++k) p[k] /= total;  // total > 0: the unclamped row sums to 1
    }
  }
  return out;
}

/// The rare-class probability 1 - sigma(eta_{K-2}(x)) of every row (n), from the last
/// boundary alone: for valid rows it equals predict_proba's last column; it is what a logistic
/// regression of 1{y = K-1} on x predicts.
template <class T>
Tensor<T> rare_probability(const CumulativeLogit<T>& m, const Tensor<T>& x) {
  detail::check_features(m, x, "ordinal::rare_probability");
  const Tensor<T> eta = linear_predictor(m, x);
  const index_t n = x.dim(0), last = m.intercepts.numel() - 1;
  Tensor<T> r(Shape{n});
  for (index_t i = 0; i < n; ++i) r(i) = detail::sigmoid(-eta(i, last));
  return r;
}

/// Brier score (1 / sum w) sum_i w_i sum_k (1{y_i = k} - probs_ik)^2 (w empty: all 1).
template <class T>
double brier_score(const Tensor<T>& probs, const std::vector<int>& y, const std::vector<double>& w = {}) {
  WEFT_CHECK(probs.rank() == 2 && probs.dim(0) == index_t(y.size()) && probs.dim(0) > 0, shape,
             "ordinal::brier_score", "expected probs of shape (", y.size(), ", K) with n > 0, got ", probs.shape());
  WEFT_CHECK(w.empty() || w.size() == y.size(), shape, "ordinal::brier_score", "expected ", y.size(),
             " weights, got ", w.size());
  const index_t K = probs.dim(1);
  WEFT_CHECK(probs.all_finite(), value, "ordinal::brier_score", "expected finite probabilities, got NaN or Inf");
  double s = 0, tw = 0;
  for (index_t i = 0; i < probs.dim(0); ++i) {
    const int c = y[std::size_t(i)];
    WEFT_CHECK(c >= 0 && c < K, value, "ordinal::brier_score", "expected classes in [0, ", K, "), got ", c);
    const double wi = w.empty() ? 1.0 : w[std::size_t(i)];
    WEFT_CHECK(std::isfinite(wi) && wi >= 0, value, "ordinal::brier_score", "expected finite weights >= 0, got ", wi,
               " in row ", i);
    double r = 0;
    for (index_t k = 0; k < K; ++k) {
      const double d = (k == c ? 1.0 : 0.0) - double(probs(i, k));
      r += d * d;
    }
    s += wi * r;
    tw += wi;
  }
  WEFT_CHECK(tw > 0, value, "ordinal::brier_score", "expected a positive total weight, got ", tw);
  return s / tw;
}

/// Binned calibration MSE of a rare-class probability (the paper's real-data metric): sort
/// rows by predicted probability, cut them into B = max(round(n / 100), 10) bins of equal count
/// (bin b holds sorted positions [floor(b n / B), floor((b + 1) n / B))), and return the mean
/// over rows of (predicted - observed rare frequency of its bin)^2. Ties keep the row order.
template <class T>
double binned_calibration_mse(const Tensor<T>& predicted, const std::vector<int>& is_rare) {
  const index_t n = predicted.numel();
  WEFT_CHECK(n > 0 && index_t(is_rare.size()) == n, shape, "ordinal::binned_calibration_mse",
             "expected n > 0 predictions and as many labels, got ", n, " and ", is_rare.size());
  std::vector<index_t> order(std::size_t(n), 0);
  std::iota(order.begin(), order.end(), index_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](index_t a, index_t b) { return predicted.flat(a) < predicted.flat(b); });
  const index_t bins = std::min<index_t>(n, std::max<index_t>(index_t(std::lround(double(n) / 100.0)), 10));
  double total = 0;
  for (index_t b = 0; b < bins; ++b) {
    const index_t lo = b * n / bins, hi = (b + 1) * n / bins;
    double freq = 0;
    for (index_t j = lo; j < hi; ++j) freq += is_rare[std::size_t(order[std::size_t(j)])] ? 1.0 : 0.0;
    freq /= double(hi - lo);
    for (index_t j = lo; j < hi; ++j) {
      const double d = double(predicted.flat(order[std::size_t(j)])) - freq;
      total += d * d;
    }
  }
  return total / double(n);
}

}  // namespace ordinal
WEFT_NAMESPACE_END
