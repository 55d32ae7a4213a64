// weft/quantile/linear_qr.hpp - linear quantile regression (Koenker & Bassett 1978): for each
// level tau, beta_tau = argmin_b sum_i psi_tau(y_i - x_i b) with an intercept.
//
// The minimiser is found as a linear program, by the Frisch-Newton primal-dual interior point
// method (Portnoy & Koenker 1997) on the dual problem
//   max_a y^T a   subject to   X^T a = (1 - tau) X^T 1,   0 <= a <= 1,
// whose equality multipliers are -beta. Each iteration solves one (d+1) x (d+1) system
// X^T D X with Mehrotra's predictor-corrector step. When the duality gap has fallen below
// tol (relative), a crossover step makes the solution exact: an optimal beta of a linear
// program sits at a vertex, where d + 1 residuals are zero, so the rows with the smallest
// |residual| are interpolated exactly, and that vertex is kept when its pinball objective is
// not larger (in exact arithmetic it is then optimal). Fitting runs in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>

#include "weft/quantile/models.hpp"

#include <Eigen/Cholesky>
#include <Eigen/LU>

WEFT_NAMESPACE_BEGIN
namespace quantile {

struct LinearQROptions {
  double tol = 1e-11;   ///< relative duality gap at which the interior point stops
  int max_iter = 100;   ///< Newton iterations at most (ConfigError-free: the best iterate is kept)
  bool crossover = true;  ///< snap to the interpolating vertex when it is at least as good
};

namespace detail {

// The solver is a template on the scalar (double wherever weft calls it) so that Eigen's LDLT,
// LLT and FullPivLU are compiled only in translation units that fit a model, not in every one
// that includes this header.
template <class Real>
using QrVec = Eigen::Matrix<Real, Eigen::Dynamic, 1>;
template <class Real>
using QrMat = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic>;

template <class DA, class DY, class DB>
typename DA::Scalar pinball_objective(const Eigen::MatrixBase<DA>& A, const Eigen::MatrixBase<DY>& y,
                                      const Eigen::MatrixBase<DB>& beta, typename DA::Scalar tau) {
  using Real = typename DA::Scalar;
  const QrVec<Real> r = y - A * beta;
  Real s = 0;
  for (index_t i = 0; i < r.size(); ++i) s += r(i) < 0 ? (tau - 1) * r(i) : tau * r(i);
  return s;
}

/// Largest step in (0, 1] keeping v + step dv >= 0 (times 0.99995 when limited by a bound).
template <class DV, class DD>
typename DV::Scalar max_step(const Eigen::MatrixBase<DV>& v, const Eigen::MatrixBase<DD>& dv) {
  using Real = typename DV::Scalar;
  Real a = Real(1) / Real(0.99995);
  for (index_t i = 0; i < v.size(); ++i)
    if (dv(i) < 0) a = std::min(a, -v(i) / dv(i));
  return std::min(Real(1), Real(0.99995) * a);
}

/// beta minimising the pinball loss at level tau for design A (n, p) and targets y.
template <class Real>
QrVec<Real> rq_interior_point(const RowMatrix<Real>& A, const QrVec<Real>& y, Real tau, const LinearQROptions& o,
                              int* iterations = nullptr) {
  using Vec = QrVec<Real>;
  using Mat = QrMat<Real>;
  const index_t n = A.rows(), p = A.cols();
  const Vec c = -y, u = Vec::Ones(n);
  const Vec b = (1 - tau) * (A.transpose() * u);
  Vec x = Vec::Constant(n, 1 - tau), s = u - x;
  // dual start: least squares, then z - w = c - A y split into two positive parts
  Eigen::LDLT<Mat> ls(A.transpose() * A);
  Vec yd = ls.solve(A.transpose() * c);
  Vec r = c - A * yd;
  const Real shift = std::max(Real(1e-8), Real(0.1) * r.cwiseAbs().mean());
  Vec z = r.cwiseMax(Real(0)).array() + shift, w = (-r).cwiseMax(Real(0)).array() + shift;
  Vec q(n), rhat(n), dx(n), dz(n), dw(n), dy(p), hx(n), hs(n);
  int it = 0;
  for (; it < o.max_iter; ++it) {
    const Real gap = x.dot(z) + s.dot(w);
    if (gap <= o.tol * (1 + std::abs(c.dot(x)))) break;
    const Vec rb = b - A.transpose() * x, rc = c - A * yd - z + w;
    q = (z.cwiseQuotient(x) + w.cwiseQuotient(s)).cwiseInverse();
    const Mat M = A.transpose() * q.asDiagonal() * A;
    Eigen::LLT<Mat> llt(M);
    auto direction = [&](const Vec& hxv, const Vec& hsv) {
      rhat = rc - hxv + hsv;
      dy = llt.solve(rb + A.transpose() * q.cwiseProduct(rhat));
      dx = q.cwiseProduct(A * dy - rhat);
      dz = hxv - z.cwiseQuotient(x).cwiseProduct(dx);
      dw = hsv + w.cwiseQuotient(s).cwiseProduct(dx);
    };
    direction(-z, -w);  // affine scaling (predictor)
    Real ap = std::min(max_step(x, dx), max_step(s, -dx)), ad = std::min(max_step(z, dz), max_step(w, dw));
    const Real mu = gap / Real(2 * n);
    const Real mu_aff = ((x + ap * dx).dot(z + ad * dz) + (s - ap * dx).dot(w + ad * dw)) / Real(2 * n);
    const Real sigma = std::pow(mu_aff / mu, 3);
    hx = (Vec::Constant(n, sigma * mu) - x.cwiseProduct(z) - dx.cwiseProduct(dz)).cwiseQuotient(x);
    hs = (Vec::Constant(n, sigma * mu) - s.cwiseProduct(w) + dx.cwiseProduct(dw)).cwiseQuotient(s);
    direction(hx, hs);  // corrector
    ap = std::min(max_step(x, dx), max_step(s, -dx));
    ad = std::min(max_step(z, dz), max_step(w, dw));
    x += ap * dx;
    s -= ap * dx;
    yd += ad * dy;
    z += ad * dz;
    w += ad * dw;
  }
  if (iterations) *iterations = it;
  Vec beta = -yd;
  if (!o.crossover) return beta;
  // crossover: interpolate the p rows closest to the fit; keep that vertex if it is no worse
  const Vec res = (y - A * beta).cwiseAbs();
  std::vector<index_t> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), index_t(0));
  std::partial_sort(idx.begin(), idx.begin() + p, idx.end(), [&](index_t i, index_t j) { return res(i) < res(j); });
  Mat B(p, p);
  Vec yb(p);
  for (index_t k = 0; k < p; ++k) {
    B.row(k) = A.row(idx[std::size_t(k)]);
    yb(k) = y(idx[std::size_t(k)]);
  }
  Eigen::FullPivLU<Mat> lu(B);
  if (lu.rank() == p) {
    const Vec vertex = lu.solve(yb);
    if (pinball_objective(A, y, vertex, tau) <= pinball_objective(A, y, beta, tau)) beta = vertex;
  }
  return beta;
}

}  // namespace detail

/// Linear quantile regression with intercept, one exact pinball minimiser per level. Levels are
/// fitted independently, so predictions may cross (monotonize them, see monotone.hpp).
template <class T>
class LinearQuantileRegression : public QuantileModel<T> {
 public:
  explicit LinearQuantileRegression(const LinearQROptions& o = {}) : o_(o) {
    WEFT_CHECK(o.tol > 0 && o.max_iter >= 1, value, "quantile::LinearQuantileRegression",
               "expected tol > 0 and max_iter >= 1, got ", o.tol, " and ", o.max_iter);
  }
  std::string name() const override { return "LinQR"; }
  void fit(const Tensor<T>& X, const Tensor<T>& y, const std::vector<double>& levels) override {
    const char* fn = "quantile::LinearQuantileRegression::fit";
    this->check_fit(X, y, levels, X.dim(1) + 1, fn);
    const RowMatrix<double> A = detail::design_with_intercept(X);
    Eigen::ColPivHouseholderQR<RowMatrix<double>> qr(A);
    WEFT_CHECK(qr.rank() == A.cols(), value, fn, "expected a full-rank design, got rank ", qr.rank(), " for ",
               A.cols(), " columns");
    const Eigen::VectorXd yy = y.vector().template cast<double>();
    beta_.resize(index_t(levels.size()), A.cols());
    iterations_.assign(levels.size(), 0);
    for (std::size_t k = 0; k < levels.size(); ++k)
      beta_.row(index_t(k)) = detail::rq_interior_point(A, yy, levels[k], o_, &iterations_[k]).transpose();
    this->levels_ = levels;
    this->features_ = X.dim(1);
  }
  Tensor<T> predict(const Tensor<T>& X) const override {
    this->check_predict(X, "quantile::LinearQuantileRegression::predict");
    const RowMatrix<double> Q = detail::design_with_intercept(X) * beta_.transpose();
    return Tensor<T>::from(Q);
  }
  std::unique_ptr<QuantileModel<T>> clone_unfitted() const override {
    return std::make_unique<LinearQuantileRegression<T>>(o_);
  }
  /// Coefficients (m, d + 1), intercept first.
  const RowMatrix<double>& coefficients() const noexcept { return beta_; }
  /// Interior-point iterations used per level in the last fit.
  const std::vector<int>& iterations() const noexcept { return iterations_; }

 private:
  LinearQROptions o_;
  RowMatrix<double> beta_;
  std::vector<int> iterations_;
};

}  // namespace quantile
WEFT_NAMESPACE_END
