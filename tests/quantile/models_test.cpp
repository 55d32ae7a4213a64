// Tests of weft/quantile/models.hpp, linear_qr.hpp and stacking.hpp: the normal quantile, linear
// quantile regression against a brute-force vertex search and scikit-learn's HiGHS solution
// on the diabetes data, the Gaussian linear model, kNN's inverse ECDF, folds and out-of-fold
// predictions, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/data.hpp"
#include "weft/core/io/csv.hpp"
#include "weft/quantile/linear_qr.hpp"
#include "weft/quantile/stacking.hpp"

namespace weft_unit_quantile_models_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace q = weft::quantile;
namespace wt = weft::test;

namespace {
double objective(const Tensor<double>& X, const Tensor<double>& y, const Eigen::VectorXd& beta, double tau) {
  return q::detail::pinball_objective(q::detail::design_with_intercept(X), y.vector(), beta, tau);
}
}  // namespace

TEST_CASE("quantile/models: normal quantile") {
  CHECK(q::normal_quantile(0.5) == doctest::Approx(0.0).epsilon(1e-15));
  CHECK(q::normal_quantile(0.975) == doctest::Approx(1.959963984540054).epsilon(1e-14));
  CHECK(q::normal_quantile(0.05) == doctest::Approx(-1.6448536269514729).epsilon(1e-14));
  CHECK(q::normal_quantile(1e-10) == doctest::Approx(-6.361340902404056).epsilon(1e-12));
  CHECK(q::normal_quantile(0.3) == doctest::Approx(-q::normal_quantile(0.7)).epsilon(1e-14));
  CHECK_THROWS_AS(q::normal_quantile(1.0), weft::ValueError);
}

TEST_CASE("quantile/linear_qr: the pinball minimum equals a brute-force search over vertices") {
  weft::Rng rng(3);
  for (int trial = 0; trial < 30; ++trial) {
    const index_t n = 12, d = 2;
    Tensor<double> X = wt::randn<double>({n, d}, rng), y(Shape{n});
    for (index_t i = 0; i < n; ++i) y(i) = 1 + X(i, 0) - 0.5 * X(i, 1) + rng.normal() * (1 + std::abs(X(i, 0)));
    const double tau = rng.uniform(0.05, 0.95);
    q::LinearQuantileRegression<double> lqr;
    lqr.fit(X, y, {tau});
    const Eigen::VectorXd beta = lqr.coefficients().row(0).transpose();
    // an optimal solution interpolates d + 1 = 3 rows: try every triple
    const auto A = q::detail::design_with_intercept(X);
    double best = std::numeric_limits<double>::infinity();
    for (index_t i = 0; i < n; ++i)
      for (index_t j = i + 1; j < n; ++j)
        for (index_t k = j + 1; k < n; ++k) {
          Eigen::Matrix3d B;
          B << A.row(i), A.row(j), A.row(k);
          best = std::min(best, objective(X, y, B.fullPivLu().solve(Eigen::Vector3d(y(i), y(j), y(k))), tau));
        }
    CHECK(objective(X, y, beta, tau) == doctest::Approx(best).epsilon(1e-12));
    // without the crossover the interior point alone is within its gap tolerance
    q::LinearQROptions o;
    o.crossover = false;
    q::LinearQuantileRegression<double> ipm(o);
    ipm.fit(X, y, {tau});
    CHECK(objective(X, y, ipm.coefficients().row(0).transpose(), tau) == doctest::Approx(best).epsilon(1e-9));
  }
}

TEST_CASE("quantile/linear_qr: diabetes objective equals scikit-learn's QuantileRegressor (HiGHS)") {
  const Tensor<double> X = weft::read_csv<double>(weft::data_path("diabetes_data_raw.csv"), [] {
    weft::CsvOptions o;
    o.whitespace = true;
    return o;
  }());
  const Tensor<double> y = weft::read_csv<double>(weft::data_path("diabetes_target.csv")).reshape({-1});
  REQUIRE(X.shape() == (Shape{442, 10}));
  // sklearn 1.2.1: QuantileRegressor(quantile=tau, alpha=0, solver="highs").fit(X, y): sum of pinball losses
  const std::vector<double> tau{0.1, 0.5, 0.9}, ref{3764.02024424, 9512.17165158, 4016.85037847};
  q::LinearQuantileRegression<double> lqr;
  lqr.fit(X, y, tau);
  for (std::size_t k = 0; k < tau.size(); ++k) {
    const double obj = objective(X, y, lqr.coefficients().row(index_t(k)).transpose(), tau[k]);
    CHECK(obj == doctest::Approx(ref[k]).epsilon(1e-9));
    CHECK(obj <= ref[k] * (1 + 1e-11));
  }
  CHECK(lqr.coefficients()(1, 0) == doctest::Approx(-328.5667883).epsilon(1e-6));  // intercept at 0.5
}

TEST_CASE_TEMPLATE("quantile/models: Gaussian linear model", T, float, double) {
  weft::Rng rng(5);
  const index_t n = 40;
  Tensor<T> X = wt::randn<T>({n, 2}, rng), y(Shape{n});
  for (index_t i = 0; i < n; ++i) y(i) = T(2 + 3 * double(X(i, 0)) - double(X(i, 1)) + 0.5 * rng.normal());
  q::GaussianLinear<T> g;
  g.fit(X, y, {0.05, 0.5, 0.95});
  // by hand: OLS through the normal equations, s^2 = RSS / (n - 3)
  const auto A = q::detail::design_with_intercept(X);
  const Eigen::VectorXd yy = y.vector().template cast<double>();
  const Eigen::VectorXd beta = (A.transpose() * A).ldlt().solve(A.transpose() * yy);
  const double s = std::sqrt((yy - A * beta).squaredNorm() / double(n - 3));
  CHECK(g.sigma() == doctest::Approx(s).epsilon(1e-10));
  const Tensor<T> Q = g.predict(X);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  for (index_t i = 0; i < n; ++i) {
    const double mu = A.row(i).dot(beta);
    CHECK(double(Q(i, 1)) == doctest::Approx(mu).epsilon(tol));
    CHECK(double(Q(i, 2) - Q(i, 1)) == doctest::Approx(1.6448536269514722 * s).epsilon(tol * 10));
    CHECK(double(Q(i, 1) - Q(i, 0)) == doctest::Approx(1.6448536269514722 * s).epsilon(tol * 10));
  }
}

TEST_CASE("quantile/models: kNN inverse ECDF with the ceil(tau k)-th neighbour") {
  // 1-d features 0..9, targets 10 * x; k = 4 nearest of x = 0.1 are x = 0, 1, 2, 3
  Tensor<double> X(Shape{10, 1}), y(Shape{10});
  for (index_t i = 0; i < 10; ++i) {
    X(i, 0) = double(i);
    y(i) = 10.0 * double(9 - i);  // decreasing, so the order statistic is not the neighbour order
  }
  q::KnnQuantile<double> knn(4);
  knn.fit(X, y, {0.2, 0.25, 0.5, 0.6, 0.99});
  const Tensor<double> Q = knn.predict(Tensor<double>::from_values({0.1}, Shape{1, 1}));
  // neighbour targets sorted: 60, 70, 80, 90; ceil(0.8) = 1, ceil(1) = 1, ceil(2) = 2, ceil(2.4) = 3, ceil(3.96) = 4
  WEFT_CHECK_CLOSE(Q, Tensor<double>::from_values({60, 60, 70, 80, 90}, Shape{1, 5}), 0);
  // ties in distance: x = 4.5 has neighbours 4 and 5 at equal distance; the lower row wins
  q::KnnQuantile<double> one(1);
  one.fit(X, y, {0.5});
  CHECK(one.predict(Tensor<double>::from_values({4.5}, Shape{1, 1}))(0, 0) == 50.0);
  // 25 neighbours at tau = 0.2: exactly the 5th (0.2 * 25 is 5 in decimal)
  Tensor<double> X25(Shape{25, 1}), y25(Shape{25});
  for (index_t i = 0; i < 25; ++i) y25(i) = double(i);
  q::KnnQuantile<double> k25(25);
  k25.fit(X25, y25, {0.05, 0.2, 0.5, 0.95});
  WEFT_CHECK_CLOSE(k25.predict(Tensor<double>(Shape{1, 1})), Tensor<double>::from_values({1, 4, 12, 23}, Shape{1, 4}), 0);
}

TEST_CASE("quantile/stacking: folds and out-of-fold predictions") {
  const auto f = q::fold_assignment(23, 5, 7);
  std::vector<int> sizes(5, 0);
  for (index_t v : f) ++sizes[std::size_t(v)];
  for (int s : sizes) CHECK((s == 4 || s == 5));
  CHECK(f == q::fold_assignment(23, 5, 7));
  weft::Rng rng(9);
  const index_t n = 30;
  Tensor<double> X = wt::randn<double>({n, 2}, rng), y = wt::randn<double>({n}, rng);
  const std::vector<double> tau{0.25, 0.5, 0.75};
  q::ModelList<double> models;
  models.push_back(std::make_unique<q::GaussianLinear<double>>());
  models.push_back(std::make_unique<q::KnnQuantile<double>>(5));
  const auto folds = q::fold_assignment(n, 3, 1);
  const Tensor<double> G = q::out_of_fold(models, X, y, tau, folds);
  REQUIRE(G.shape() == (Shape{n, 2, 3}));
  // fold 0 by hand
  std::vector<index_t> in, out;
  for (index_t i = 0; i < n; ++i) (folds[std::size_t(i)] == 0 ? out : in).push_back(i);
  q::KnnQuantile<double> knn(5);
  knn.fit(q::detail::take_rows(X, in), q::detail::take_rows(y, in), tau);
  const Tensor<double> P = knn.predict(q::detail::take_rows(X, out));
  for (std::size_t r = 0; r < out.size(); ++r)
    for (index_t k = 0; k < 3; ++k) CHECK(G(out[r], 1, k) == P(index_t(r), k));
  q::fit_all(models, X, y, tau);
  const Tensor<double> S = q::stack_predictions(models, X);
  WEFT_CHECK_CLOSE(q::base_predictions(S, 0), models[0]->predict(X), 0);
  CHECK_THROWS_AS(q::fold_assignment(3, 5, 0), weft::ValueError);
  CHECK_THROWS_AS(q::out_of_fold(models, X, y, tau, std::vector<index_t>(5, 0)), weft::ShapeError);
  CHECK_THROWS_AS(q::base_predictions(S, 2), weft::ShapeError);
  q::ModelList<double> empty;
  CHECK_THROWS_AS(q::stack_predictions(empty, X), weft::ShapeError);
}

TEST_CASE("quantile/models: bad input") {
  weft::Rng rng(1);
  Tensor<double> X = wt::randn<double>({10, 2}, rng), y = wt::randn<double>({10}, rng);
  const std::vector<double> tau{0.1, 0.9};
  q::LinearQuantileRegression<double> lqr;
  CHECK_THROWS_AS(lqr.predict(X), weft::ConfigError);
  CHECK_THROWS_AS(lqr.fit(X, y, {0.9, 0.1}), weft::ValueError);
  CHECK_THROWS_AS(lqr.fit(X, Tensor<double>(Shape{9}), tau), weft::ShapeError);
  CHECK_THROWS_AS(lqr.fit(X.rows(0, 2), y.rows(0, 2), tau), weft::ShapeError);  // fewer rows than coefficients
  Tensor<double> Xc = X.clone();
  for (index_t i = 0; i < 10; ++i) Xc(i, 1) = 2 * Xc(i, 0);  // collinear
  CHECK_THROWS_AS(lqr.fit(Xc, y, tau), weft::ValueError);
  CHECK_THROWS_AS(q::GaussianLinear<double>().fit(Xc, y, tau), weft::ValueError);
  Tensor<double> Xn = X.clone();
  Xn(3, 1) = std::numeric_limits<double>::quiet_NaN();
  wt::Snapshot<double> snap({Xn, y});
  CHECK_THROWS_AS(lqr.fit(Xn, y, tau), weft::ValueError);
  CHECK(snap.unchanged());
  lqr.fit(X, y, tau);
  CHECK_THROWS_AS(lqr.predict(Tensor<double>(Shape{3, 3})), weft::ShapeError);
  CHECK_THROWS_AS(lqr.predict(Xn), weft::ValueError);
  CHECK_THROWS_AS(q::KnnQuantile<double>(0), weft::ValueError);
  CHECK_THROWS_AS(q::KnnQuantile<double>(11).fit(X, y, tau), weft::ShapeError);
  CHECK_THROWS_AS(q::LinearQuantileRegression<double>([] {
                    q::LinearQROptions o;
                    o.tol = 0;
                    return o;
                  }()),
                  weft::ValueError);
}

}  // namespace weft_unit_quantile_models_test
