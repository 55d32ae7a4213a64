// Edge cases and bad input of weft::ordinal (spec section 9): an absent class, K < 2, p = 0, a
// constant column, NaN/Inf, invalid lambda and mixing a, bad weights and shapes, a separated
// rare class with lambda -> 0, the simulation guards and the data loaders. Inputs stay
// unchanged when a call throws.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ordinal/ordinal_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/ordinal/baselines.hpp"
#include "weft/ordinal/datasets.hpp"
#include "weft/ordinal/presto.hpp"
#include "weft/ordinal/simulate.hpp"

namespace weft_unit_ordinal_edge_cases_test {

using namespace weft;

TEST_CASE("ordinal/edge: an absent class is a ValueError naming the class; K < 2 is a ValueError") {
  auto d = ordinal_test::random_ordinal(100, 2, 4, 50);
  for (int& c : d.y)
    if (c == 2) c = 1;  // class 2 of 0..3 disappears
  test::Snapshot<double> snap({d.x});
  const std::vector<int> y0 = d.y;
  try {
    ordinal::fit_presto(d.x, d.y, 0.1);
    FAIL("expected a ValueError");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()).find("none of class 2") != std::string::npos);
  }
  CHECK_THROWS_AS(ordinal::presto(d.x, d.y), ValueError);
  CHECK_THROWS_AS(ordinal::fit_proportional_odds(d.x, d.y), ValueError);
  CHECK_THROWS_AS(ordinal::fit_logistic(d.x, d.y), ValueError);
  ordinal::PrestoOptions o;
  o.num_classes = 5;  // the top class 4 is absent too
  CHECK_THROWS_AS(ordinal::fit_presto(ordinal_test::random_ordinal(50, 2, 4, 1).x, ordinal_test::random_ordinal(50, 2, 4, 1).y, 0.1, o), ValueError);
  CHECK(snap.unchanged());
  CHECK(d.y == y0);
  std::vector<int> one(100, 0);
  CHECK_THROWS_AS(ordinal::fit_presto(d.x, one, 0.1), ValueError);
  CHECK_THROWS_AS(ordinal::lambda_max(d.x, one), ValueError);
  std::vector<int> neg = d.y;
  neg[3] = -1;
  CHECK_THROWS_AS(ordinal::fit_presto(d.x, neg, 0.1), ValueError);
  // a class with zero total weight is absent as well
  auto e = ordinal_test::random_ordinal(100, 2, 3, 51);
  std::vector<double> w(100, 1.0);
  for (index_t i = 0; i < 100; ++i)
    if (e.y[std::size_t(i)] == 1) w[std::size_t(i)] = 0;
  CHECK_THROWS_AS(ordinal::fit_presto(e.x, e.y, 0.1, {}, w), ValueError);
}

TEST_CASE("ordinal/edge: p = 0 gives the intercept-only fit; a constant column keeps coefficient 0") {
  const auto d = ordinal_test::random_ordinal(90, 2, 3, 52);
  const Tensor<double> none(Shape{90, 0});
  const auto f = ordinal::fit_presto(none, d.y, 0.0);
  CHECK(f.converged);
  CHECK(f.model.coef.dim(0) == 0);
  double c0 = 0;
  for (int c : d.y) c0 += c == 0 ? 1 : 0;
  CHECK(f.model.intercepts(0) == doctest::Approx(std::log(c0 / (90 - c0))).epsilon(1e-12));
  const auto cv = ordinal::presto(none, d.y);
  CHECK(cv.lambda_max == 0);
  CHECK(ordinal::predict_proba(cv.fit.model, none).probs.dim(1) == 3);
  // a constant column: standardised to 0 (sd taken as 1), so its coefficients stay 0
  Tensor<double> xc(Shape{90, 3});
  for (index_t i = 0; i < 90; ++i) {
    xc(i, 0) = d.x(i, 0);
    xc(i, 1) = 4.25;
    xc(i, 2) = d.x(i, 1);
  }
  const auto P = ordinal::detail::make_problem(xc, d.y, {}, {}, 0, true, true, "test");
  CHECK(P.scale[1] == 1.0);
  CHECK(P.mean[1] == 4.25);
  for (double lam : {0.0, 0.01}) {
    const auto fc = ordinal::fit_presto(xc, d.y, lam);
    CHECK(fc.converged);
    for (index_t k = 0; k < 2; ++k) CHECK(fc.model.coef(1, k) == 0);
    const auto fr = ordinal::fit_presto(d.x, d.y, lam);
    CHECK(fc.model.coef(0, 1) == doctest::Approx(fr.model.coef(0, 1)).epsilon(1e-8));
  }
  CHECK(ordinal::fit_proportional_odds(xc, d.y).model.coef(1, 0) == 0);
}

TEST_CASE("ordinal/edge: NaN or Inf in x, bad shapes and bad weights are rejected before anything changes") {
  auto d = ordinal_test::random_ordinal(60, 2, 3, 53);
  Tensor<double> bad = d.x.clone();
  bad(5, 1) = std::numeric_limits<double>::quiet_NaN();
  test::Snapshot<double> snap({bad});
  CHECK_THROWS_AS(ordinal::fit_presto(bad, d.y, 0.1), ValueError);
  bad(5, 1) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(ordinal::presto_path(bad, d.y), ValueError);
  CHECK_THROWS_AS(ordinal::fit_logistic(bad, d.y), ValueError);
  bad(5, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK(snap.unchanged());
  std::vector<int> shorty(d.y.begin(), d.y.end() - 1);
  CHECK_THROWS_AS(ordinal::fit_presto(d.x, shorty, 0.1), ShapeError);
  CHECK_THROWS_AS(ordinal::fit_presto(d.x, d.y, 0.1, {}, std::vector<double>(59, 1.0)), ShapeError);
  std::vector<double> w(60, 1.0);
  w[2] = -1;
  CHECK_THROWS_AS(ordinal::fit_presto(d.x, d.y, 0.1, {}, w), ValueError);
  w[2] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(ordinal::fit_proportional_odds(d.x, d.y, {}, w), ValueError);
  CHECK_THROWS_AS(ordinal::fit_presto(Tensor<double>(Shape{60}), d.y, 0.1), ShapeError);
  const auto fit = ordinal::fit_presto(d.x, d.y, 0.01);
  CHECK_THROWS_AS(ordinal::predict_proba(fit.model, Tensor<double>(Shape{4, 3})), ShapeError);
  CHECK_THROWS_AS(ordinal::predict_proba(fit.model, bad), ValueError);
  CHECK_THROWS_AS(ordinal::kkt_violation(ordinal_test::random_ordinal(60, 3, 3, 53).x, d.y, fit), ShapeError);
}

TEST_CASE("ordinal/edge: lambda < 0, a outside [0, 1] and other bad options are ConfigErrors") {
  const auto d = ordinal_test::random_ordinal(60, 2, 3, 54);
  CHECK_THROWS_AS(ordinal::fit_presto(d.x, d.y, -0.1), ConfigError);
  CHECK_THROWS_AS(ordinal::fit_presto(d.x, d.y, std::numeric_limits<double>::infinity()), ConfigError);
  ordinal::PrestoOptions o;
  for (double a : {-0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    o.l1_ratio = a;
    CHECK_THROWS_AS(ordinal::fit_presto(d.x, d.y, 0.1, o), ConfigError);
    CHECK_THROWS_AS(ordinal::presto(d.x, d.y, o), ConfigError);
    CHECK_THROWS_AS(ordinal::lambda_max(d.x, d.y, o), ConfigError);
    ordinal::BaselineOptions b;
    b.l1_ratio = a;
    CHECK_THROWS_AS(ordinal::fit_logistic(d.x, d.y, b), ConfigError);
  }
  o = ordinal::PrestoOptions{};
  o.lambdas = {0.1, -0.2};
  CHECK_THROWS_AS(ordinal::presto_path(d.x, d.y, o), ConfigError);
  o.lambdas = {0.1, 0.2};  // increasing
  CHECK_THROWS_AS(ordinal::presto_path(d.x, d.y, o), ConfigError);
  o = ordinal::PrestoOptions{};
  o.folds = 1;
  CHECK_THROWS_AS(ordinal::presto(d.x, d.y, o), ConfigError);
  o.folds = 61;
  CHECK_THROWS_AS(ordinal::presto(d.x, d.y, o), ConfigError);
  o = ordinal::PrestoOptions{};
  o.lambda_min_ratio = 0;
  CHECK_THROWS_AS(ordinal::presto_path(d.x, d.y, o), ConfigError);
  o = ordinal::PrestoOptions{};
  o.num_lambda = 0;
  CHECK_THROWS_AS(ordinal::presto(d.x, d.y, o), ConfigError);
  ordinal::BaselineOptions b;
  b.lambda = -1;
  CHECK_THROWS_AS(ordinal::fit_logistic(d.x, d.y, b), ConfigError);
  // an explicit sequence is used as given
  o = ordinal::PrestoOptions{};
  o.lambdas = {0.05, 0.01, 0.0};
  const auto path = ordinal::presto_path(d.x, d.y, o);
  CHECK(path.lambdas == o.lambdas);
  CHECK(path.fits.size() == 3);
}

TEST_CASE("ordinal/edge: fixed_differences out of [1, K-2] or repeated is a ConfigError naming function, expected, got") {
  const auto d = ordinal_test::random_ordinal(80, 2, 4, 56);  // K = 4: differences 1 and 2
  test::Snapshot<double> snap({d.x});
  const std::vector<int> y0 = d.y;
  struct Bad {
    std::vector<index_t> fixed;
    std::string message;
  };
  const Bad bad[] = {{{0}, "expected fixed_differences in [1, K-2] with K = 4, got 0"},
                     {{1, 3}, "expected fixed_differences in [1, K-2] with K = 4, got 3"},
                     {{-1}, "expected fixed_differences in [1, K-2] with K = 4, got -1"},
                     {{2, 1, 2}, "expected distinct fixed_differences, got 2 twice"}};
  for (const auto& b : bad) {
    CAPTURE(b.message);
    ordinal::PrestoOptions o;
    o.fixed_differences = b.fixed;
    try {
      ordinal::fit_presto(d.x, d.y, 0.01, o);
      FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
      const std::string m = e.what();
      CHECK(m.find("ordinal::fit_presto") != std::string::npos);
      CHECK(m.find(b.message) != std::string::npos);
    }
    CHECK_THROWS_AS(ordinal::presto(d.x, d.y, o), ConfigError);
    CHECK_THROWS_AS(ordinal::presto_path(d.x, d.y, o), ConfigError);
    CHECK_THROWS_AS(ordinal::lambda_max(d.x, d.y, o), ConfigError);
    CHECK(o.fixed_differences == b.fixed);
  }
  const auto fit = ordinal::fit_presto(d.x, d.y, 0.01);
  ordinal::PrestoOptions o;
  o.fixed_differences = {5};
  CHECK_THROWS_AS(ordinal::kkt_violation(d.x, d.y, fit, o), ConfigError);
  // K = 2 has no differences at all
  std::vector<int> y2;
  for (int c : d.y) y2.push_back(c >= 2 ? 1 : 0);
  o.fixed_differences = {1};
  CHECK_THROWS_AS(ordinal::fit_presto(d.x, y2, 0.01, o), ConfigError);
  CHECK(snap.unchanged());
  CHECK(d.y == y0);
}

TEST_CASE("ordinal/edge: a perfectly separated rare class with lambda -> 0 gives a finite path, no hang") {
  Rng rng(55);
  Tensor<double> x(Shape{300, 2});
  std::vector<int> y;
  for (index_t i = 0; i < 300; ++i) {
    x(i, 0) = rng.uniform(-1, 1);
    x(i, 1) = rng.uniform(-1, 1);
    const double u = rng.uniform();
    y.push_back(x(i, 0) > 0.85 ? 2 : (u < 0.5 ? 0 : 1));  // class 2 iff x0 > 0.85
  }
  ordinal::PrestoOptions o;
  o.num_lambda = 30;
  o.lambda_min_ratio = 1e-6;
  const auto path = ordinal::presto_path(x, y, o);
  CHECK(path.fits.size() == 30);
  CHECK(path.solved <= 30);
  for (const auto& f : path.fits) {
    CHECK(f.model.coef.all_finite());
    CHECK(f.model.intercepts.all_finite());
    CHECK(std::isfinite(f.nll));
    CHECK(f.iterations <= 100);
  }
  const auto cv = ordinal::presto(x, y, o);
  CHECK(cv.fit.model.coef.all_finite());
}

TEST_CASE("ordinal/edge: simulation guards and data loaders") {
  ordinal::SimulationOptions so;
  so.intercepts = {1.0, 0.0};
  Rng rng(1);
  CHECK_THROWS_AS(ordinal::simulate<double>(so, rng), ConfigError);
  so = ordinal::SimulationOptions{};
  so.intercepts = {0.0, 30.0, 60.0};  // classes 2 and 3 never appear in 20 rows
  so.n = 20;
  CHECK_THROWS_AS(ordinal::simulate<double>(so, rng), ValueError);
  // the dense and sparse designs are valid by construction: every row has ordered eta
  so = ordinal::SimulationOptions{};
  so.n = 500;
  so.dense = true;
  const auto sim = ordinal::simulate<double>(so, rng);
  const auto pr = ordinal::predict_proba(sim.truth, sim.x.cast<double>());
  CHECK(pr.clamped_rows == 0);
  CHECK(sim.y.size() == 500);
  // same stream, same data
  Rng a = Rng(9).stream(3), b = Rng(9).stream(3);
  CHECK(ordinal::simulate<double>(ordinal::SimulationOptions{}, a).y == ordinal::simulate<double>(ordinal::SimulationOptions{}, b).y);
  CHECK_THROWS_AS(ordinal::load_housing<double>("/nonexistent/housing.csv"), IoError);
  const auto dia = ordinal::load_diabetes_ordinal<double>();
  std::vector<int> counts(4, 0);
  for (int c : dia.y) ++counts[std::size_t(c)];
  CHECK(counts == std::vector<int>{147, 168, 113, 14});
  CHECK(dia.x.dim(1) == 10);
}

}  // namespace weft_unit_ordinal_edge_cases_test
