// Tests of weft/ordinal/baselines.hpp and the metrics of model.hpp: the proportional-odds fit of
// MASS::housing against R's polr, PRESTO with K = 2 against lasso logistic regression (P5:
// weft's own fit_logistic and glmnet), unpenalised logistic against glm.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "ordinal/ordinal_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/ordinal/baselines.hpp"
#include "weft/ordinal/datasets.hpp"
#include "weft/ordinal/presto.hpp"

namespace weft_unit_ordinal_baselines_test {

using namespace weft;

TEST_CASE("ordinal/baselines: proportional odds on MASS::housing matches R's polr") {
  // ../shared/data/README.md: polr(Sat ~ Infl + Type + Cont, weights = Freq) (MASS 7.3-58);
  // polr's c is -beta in weft's convention, its zeta is alpha
  const auto h = ordinal::load_housing<double>();
  CHECK(h.x.dim(0) == 72);
  const auto po = ordinal::fit_proportional_odds(h.x, h.y, {}, h.weights);
  CHECK(po.converged);
  CHECK(std::abs(po.deviance - 3479.149) <= 5e-4);
  const double c[6] = {0.5663937, 1.2888191, -0.5723501, -0.3661866, -1.0910149, 0.3602841};
  for (index_t j = 0; j < 6; ++j) {
    CHECK(std::abs(-po.model.coef(j, 0) - c[j]) <= 1e-5);
    CHECK(po.model.coef(j, 1) == po.model.coef(j, 0));
  }
  CHECK(std::abs(po.model.intercepts(0) - (-0.4961353)) <= 1e-5);
  CHECK(std::abs(po.model.intercepts(1) - 0.6907083) <= 1e-5);
  // polr run to convergence (control = list(reltol = 1e-14)) agrees to 1e-7
  const double tight[6] = {0.5663937326, 1.2888190889, -0.5723499825, -0.3661863529, -1.0910146304, 0.3602839960};
  for (index_t j = 0; j < 6; ++j) CHECK(std::abs(-po.model.coef(j, 0) - tight[j]) <= 1e-7);
  CHECK(std::abs(po.model.intercepts(0) - (-0.4961351087)) <= 1e-7);
  // the same fit without standardisation, and in float
  ordinal::BaselineOptions raw;
  raw.standardize = false;
  WEFT_CHECK_CLOSE(ordinal::fit_proportional_odds(h.x, h.y, raw, h.weights).model.coef, po.model.coef, 1e-8);
  const auto hf = ordinal::load_housing<float>();
  const auto pf = ordinal::fit_proportional_odds(hf.x, hf.y, ordinal::BaselineOptions{}, hf.weights);
  CHECK(pf.converged);
  for (index_t j = 0; j < 6; ++j) CHECK(std::abs(double(pf.model.coef(j, 0)) - po.model.coef(j, 0)) <= 1e-4);
}

TEST_CASE("ordinal/baselines: P5 PRESTO with K = 2 is lasso logistic regression (weft and glmnet)") {
  // data: ordinal_test::random_ordinal(300, 5, 2, 11); reference: glmnet 4.1-6,
  // glmnet(x, y, family = "binomial", lambda = l, standardize = TRUE, thresh = 1e-16), which
  // models P(y = 1) = sigma(a + x b): a = -alpha, b = -beta in weft's convention
  const auto d = ordinal_test::random_ordinal(300, 5, 2, 11);
  const double ref[2][6] = {{0.9929026396549, 0.1329845909960, -0.0273256636523, -0.1190199879985, 0.0221703735113, 0.0272932994851},
                            {0.9500051435695, 0.0, 0.0, -0.0605345030172, 0.0, 0.0}};
  const double lambdas[2] = {0.02, 0.05};
  for (int c = 0; c < 2; ++c) {
    CAPTURE(lambdas[c]);
    const auto pr = ordinal::fit_presto(d.x, d.y, lambdas[c]);
    ordinal::BaselineOptions bo;
    bo.lambda = lambdas[c];
    const auto lg = ordinal::fit_logistic(d.x, d.y, bo);
    CHECK(pr.converged);
    CHECK(lg.converged);
    WEFT_CHECK_CLOSE(pr.model.coef, lg.model.coef, 1e-9);
    WEFT_CHECK_CLOSE(pr.model.intercepts, lg.model.intercepts, 1e-9);
    CHECK(std::abs(-pr.model.intercepts(0) - ref[c][0]) <= 1e-9);
    for (index_t j = 0; j < 5; ++j) {
      CHECK(std::abs(-pr.model.coef(j, 0) - ref[c][j + 1]) <= 1e-9);
      CHECK((pr.model.coef(j, 0) == 0) == (ref[c][j + 1] == 0));
    }
  }
}

TEST_CASE("ordinal/baselines: unpenalised logistic regression matches glm; elastic net KKT") {
  // R: glm(y ~ x, family = binomial, control = glm.control(epsilon = 1e-15)); deviance 335.67403420218
  const auto d = ordinal_test::random_ordinal(300, 5, 2, 11);
  const auto lg = ordinal::fit_logistic(d.x, d.y);
  CHECK(lg.converged);
  const double ref[6] = {1.053357280350953, 0.272227960778921, -0.087723014739203, -0.165022960825274,
                         0.051491389515176, 0.053550225783135};
  CHECK(std::abs(-lg.model.intercepts(0) - ref[0]) <= 1e-9);
  for (index_t j = 0; j < 5; ++j) CHECK(std::abs(-lg.model.coef(j, 0) - ref[j + 1]) <= 1e-9);
  CHECK(lg.deviance == doctest::Approx(335.67403420218).epsilon(1e-11));
  // K = 4: one logistic fit per boundary; the last is the rare class against the rest
  const auto d4 = ordinal_test::random_ordinal(400, 3, 4, 12);
  const auto all = ordinal::fit_logistic(d4.x, d4.y);
  CHECK(all.converged);
  std::vector<int> rare;
  for (int c : d4.y) rare.push_back(c == 3 ? 1 : 0);  // class 0 of this two-class problem = {y <= 2}
  const auto last = ordinal::fit_logistic(d4.x, rare);
  for (index_t j = 0; j < 3; ++j) CHECK(all.model.coef(j, 2) == doctest::Approx(last.model.coef(j, 0)).epsilon(1e-9));
  // elastic net: same fit as PRESTO with K = 2 for every mix
  for (double a : {0.5, 0.0}) {
    ordinal::BaselineOptions bo;
    bo.lambda = 0.03;
    bo.l1_ratio = a;
    ordinal::PrestoOptions po;
    po.l1_ratio = a;
    WEFT_CHECK_CLOSE(ordinal::fit_logistic(d.x, d.y, bo).model.coef, ordinal::fit_presto(d.x, d.y, 0.03, po).model.coef, 1e-9);
  }
}

TEST_CASE("ordinal/baselines: separated classes end with finite, steep coefficients") {
  Tensor<double> x(Shape{40, 1});
  std::vector<int> y;
  for (index_t i = 0; i < 40; ++i) {
    x(i, 0) = double(i);
    y.push_back(i < 20 ? 0 : 1);
  }
  // no finite MLE: the gradient decays like exp(-margin) as the slope grows, so the fit ends
  // (at max_iter, or when the gradient underflows tol) with a steep, finite slope, as glm does
  ordinal::BaselineOptions o;
  o.max_iter = 30;
  const auto lg = ordinal::fit_logistic(x, y, o);
  CHECK(lg.iterations <= 30);
  CHECK(lg.model.coef.all_finite());
  CHECK(lg.model.intercepts.all_finite());
  CHECK(lg.model.coef(0, 0) < -1);  // steep, pointing the right way
  const auto po = ordinal::fit_proportional_odds(x, y, o);
  CHECK(po.iterations <= 30);
  CHECK(po.model.coef.all_finite());
}

TEST_CASE("ordinal/model: Brier score and binned calibration MSE on hand-computed cases") {
  const auto probs = Tensor<double>::from_values({0.5, 0.5, 0.0, 0.2, 0.3, 0.5}, Shape{2, 3});
  // row 0 (y = 0): 0.25 + 0.25 + 0 = 0.5; row 1 (y = 2): 0.04 + 0.09 + 0.25 = 0.38
  CHECK(ordinal::brier_score(probs, {0, 2}) == doctest::Approx(0.44));
  CHECK(ordinal::brier_score(probs, {0, 2}, {3.0, 1.0}) == doctest::Approx((3 * 0.5 + 0.38) / 4));
  CHECK_THROWS_AS(ordinal::brier_score(probs, {0, 3}), ValueError);
  CHECK_THROWS_AS(ordinal::brier_score(probs, {0}), ShapeError);
  Tensor<double> bad = probs.clone();  // NaN probabilities and bad weights: a ValueError, not NaN
  bad(1, 1) = std::nan("");
  CHECK_THROWS_WITH_AS(ordinal::brier_score(bad, {0, 2}),
                       doctest::Contains("ordinal::brier_score: expected finite probabilities, got NaN or Inf"),
                       ValueError);
  CHECK_THROWS_WITH_AS(ordinal::brier_score(probs, {0, 2}, {1.0, std::nan("")}),
                       doctest::Contains("expected finite weights >= 0, got nan in row 1"), ValueError);
  CHECK_THROWS_AS(ordinal::brier_score(probs, {0, 2}, {1.0, -1.0}), ValueError);
  CHECK_THROWS_AS(ordinal::brier_score(probs, {0, 2}, {0.0, 0.0}), ValueError);
  // 20 rows -> 10 bins of 2 in sorted order; bin frequency 1/2 where one of the two is rare
  Tensor<double> pred(Shape{20});
  std::vector<int> rare(20, 0);
  for (index_t i = 0; i < 20; ++i) pred(i) = double(19 - i) / 100;  // sorted ascending = reversed
  rare[0] = 1;                                                      // largest prediction 0.19
  double expect = 0;
  for (index_t i = 0; i < 20; ++i) {
    const double f = i < 2 ? 0.5 : 0.0;  // rows 0, 1 share the top bin
    expect += (pred(i) - f) * (pred(i) - f);
  }
  CHECK(ordinal::binned_calibration_mse(pred, rare) == doctest::Approx(expect / 20));
}

}  // namespace weft_unit_ordinal_baselines_test
