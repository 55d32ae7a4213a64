// weft/quantile/models.hpp - the base quantile model interface and two cheap base models.
//
// QuantileModel<T>: fit(X, y, levels) on features X (n, d) and targets y (n), then
// predict(X') -> (n', m), one column per level. Aggregation (aggregator.hpp) and out-of-fold
// stacking (stacking.hpp) work with any model behind this interface; clone_unfitted() gives a
// fresh model with the same options (one per fold).
//
//   GaussianLinear  ordinary least squares mean with intercept, homoscedastic variance
//                   s^2 = RSS / (n - d - 1); q_tau = mu + s Phi^{-1}(tau).
//   KnnQuantile     k nearest training rows by Euclidean distance (ties: lower row index);
//                   q_tau = the ceil(tau k)-th smallest of their targets (inverse ECDF).
//   LinearQuantileRegression (linear_qr.hpp): exact pinball minimiser per level.
// Fitting runs in double whatever T is; predictions are returned in T.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "weft/core/detail/eigen.hpp"  // before the Eigen modules
#include <Eigen/QR>
#include "weft/core/parallel.hpp"
#include "weft/core/tensor.hpp"
#include "weft/quantile/levels.hpp"

WEFT_NAMESPACE_BEGIN
namespace quantile {

/// Phi^{-1}(p), the standard normal quantile, for p in (0, 1): Acklam's rational approximation
/// refined by one Halley step on erfc (relative error near machine precision).
inline double normal_quantile(double p) {
  WEFT_CHECK(p > 0 && p < 1, value, "quantile::normal_quantile", "expected p in (0, 1), got ", p);
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01,  -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  const double plow = 0.02425;
  double x;
  if (p < plow || p > 1 - plow) {
    const double q = std::sqrt(-2 * std::log(p < plow ? p : 1 - p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    if (p > 1 - plow) x = -x;
  } else {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  const double u = e * 2.5066282746310002 * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

/// A base quantile model: fit on (X, y) for a grid of levels, predict (n, m).
template <class T>
class QuantileModel {
 public:
  virtual ~QuantileModel() = default;
  virtual std::string name() const = 0;
  /// Fits on features X (n, d) and targets y (n) for the given levels.
  virtual void fit(const Tensor<T>& X, const Tensor<T>& y, const std::vector<double>& levels) = 0;
  /// Predictions (n', m) for features X (n', d).
  virtual Tensor<T> predict(const Tensor<T>& X) const = 0;
  /// A new, unfitted model with the same options.
  virtual std::unique_ptr<QuantileModel<T>> clone_unfitted() const = 0;
  bool fitted() const noexcept { return !levels_.empty(); }
  const std::vector<double>& levels() const noexcept { return levels_; }

 protected:
  std::vector<double> levels_;
  index_t features_ = 0;

  /// Validates fit arguments; `min_rows` rows at least.
  void check_fit(const Tensor<T>& X, const Tensor<T>& y, const std::vector<double>& levels, index_t min_rows,
                 const char* func) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "quantile models work on real tensors: use float or double");
    check_levels(levels, func);
    WEFT_CHECK(X.defined() && X.rank() == 2 && X.dim(1) >= 1, shape, func, "expected features of shape (n, d >= 1), got ",
               X.defined() ? X.shape() : Shape{});
    WEFT_CHECK(y.defined() && y.rank() == 1 && y.dim(0) == X.dim(0), shape, func, "expected targets of shape (",
               X.dim(0), "), got ", y.defined() ? y.shape() : Shape{});
    WEFT_CHECK(X.dim(0) >= min_rows, shape, func, "expected at least ", min_rows, " rows, got ", X.dim(0));
    WEFT_CHECK(X.all_finite() && y.all_finite(), value, func, "expected finite features and targets, got NaN or Inf");
  }
  void check_predict(const Tensor<T>& X, const char* func) const {
    WEFT_CHECK(fitted(), config, func, "expected a fitted model, got one without fit()");
    WEFT_CHECK(X.defined() && X.rank() == 2 && X.dim(1) == features_, shape, func, "expected features of shape (n, ",
               features_, "), got ", X.defined() ? X.shape() : Shape{});
    WEFT_CHECK(X.all_finite(), value, func, "expected finite features, got NaN or Inf");
  }
};

namespace detail {
/// [1, X] as a double matrix (n, d + 1).
template <class T>
RowMatrix<double> design_with_intercept(const Tensor<T>& X) {
  RowMatrix<double> A(X.dim(0), X.dim(1) + 1);
  A.col(0).setOnes();
  A.rightCols(X.dim(1)) = X.matrix().template cast<double>();
  return A;
}
}  // namespace detail

/// Gaussian linear model: OLS mean with intercept and a homoscedastic normal error.
template <class T>
class GaussianLinear : public QuantileModel<T> {
 public:
  std::string name() const override { return "GaussLin"; }
  void fit(const Tensor<T>& X, const Tensor<T>& y, const std::vector<double>& levels) override {
    this->check_fit(X, y, levels, X.dim(1) + 2, "quantile::GaussianLinear::fit");
    const RowMatrix<double> A = detail::design_with_intercept(X);
    const Eigen::VectorXd yy = y.vector().template cast<double>();
    Eigen::ColPivHouseholderQR<RowMatrix<double>> qr(A);
    WEFT_CHECK(qr.rank() == A.cols(), value, "quantile::GaussianLinear::fit", "expected a full-rank design, got rank ",
               qr.rank(), " for ", A.cols(), " columns");
    beta_ = qr.solve(yy);
    const double rss = (yy - A * beta_).squaredNorm();
    sigma_ = std::sqrt(rss / double(A.rows() - A.cols()));
    z_.clear();
    for (double t : levels) z_.push_back(normal_quantile(t));
    this->levels_ = levels;
    this->features_ = X.dim(1);
  }
  Tensor<T> predict(const Tensor<T>& X) const override {
    this->check_predict(X, "quantile::GaussianLinear::predict");
    const Eigen::VectorXd mu = detail::design_with_intercept(X) * beta_;
    Tensor<T> Q(Shape{X.dim(0), index_t(z_.size())});
    for (index_t i = 0; i < X.dim(0); ++i)
      for (index_t k = 0; k < index_t(z_.size()); ++k) Q(i, k) = T(mu(i) + sigma_ * z_[std::size_t(k)]);
    return Q;
  }
  std::unique_ptr<QuantileModel<T>> clone_unfitted() const override { return std::make_unique<GaussianLinear<T>>(); }
  double sigma() const noexcept { return sigma_; }
  const Eigen::VectorXd& coefficients() const noexcept { return beta_; }  ///< intercept first

 private:
  Eigen::VectorXd beta_;
  double sigma_ = 0;
  std::vector<double> z_;
};

/// k-nearest-neighbour inverse-ECDF quantiles (features should be on comparable scales).
template <class T>
class KnnQuantile : public QuantileModel<T> {
 public:
  explicit KnnQuantile(index_t k = 25) : k_(k) {
    WEFT_CHECK(k >= 1, value, "quantile::KnnQuantile", "expected k >= 1, got ", k);
  }
  std::string name() const override { return "kNN"; }
  index_t k() const noexcept { return k_; }
  void fit(const Tensor<T>& X, const Tensor<T>& y, const std::vector<double>& levels) override {
    this->check_fit(X, y, levels, k_, "quantile::KnnQuantile::fit");
    X_ = X.matrix().template cast<double>();
    y_ = y.vector().template cast<double>();
    rank_.clear();
    for (double t : levels) rank_.push_back(std::min(k_, std::max<index_t>(1, ceil_count(t * double(k_)))) - 1);
    this->levels_ = levels;
    this->features_ = X.dim(1);
  }
  Tensor<T> predict(const Tensor<T>& X) const override {
    this->check_predict(X, "quantile::KnnQuantile::predict");
    const index_t n = X.dim(0), nt = X_.rows(), m = index_t(rank_.size());
    const RowMatrix<double> Xq = X.matrix().template cast<double>();
    Tensor<T> Q(Shape{n, m});
    parallel_for(0, n, std::max<index_t>(1, 16384 / std::max<index_t>(1, nt)), [&](index_t lo, index_t hi) {
      std::vector<double> dist(static_cast<std::size_t>(nt)), ys(static_cast<std::size_t>(k_));
      std::vector<index_t> idx(static_cast<std::size_t>(nt));
      for (index_t i = lo; i < hi; ++i) {
        for (index_t j = 0; j < nt; ++j) dist[std::size_t(j)] = (X_.row(j) - Xq.row(i)).squaredNorm();
        std::iota(idx.begin(), idx.end(), index_t(0));
        std::partial_sort(idx.begin(), idx.begin() + k_, idx.end(), [&](index_t a, index_t b) {
          return dist[std::size_t(a)] < dist[std::size_t(b)] || (dist[std::size_t(a)] == dist[std::size_t(b)] && a < b);
        });
        for (index_t j = 0; j < k_; ++j) ys[std::size_t(j)] = y_(idx[std::size_t(j)]);
        std::sort(ys.begin(), ys.end());
        for (index_t c = 0; c < m; ++c) Q(i, c) = T(ys[std::size_t(rank_[std::size_t(c)])]);
      }
    });
    return Q;
  }
  std::unique_ptr<QuantileModel<T>> clone_unfitted() const override { return std::make_unique<KnnQuantile<T>>(k_); }

 private:
  index_t k_;
  RowMatrix<double> X_;
  Eigen::VectorXd y_;
  std::vector<index_t> rank_;  ///< 0-based order statistic per level
};

}  // namespace quantile
WEFT_NAMESPACE_END
