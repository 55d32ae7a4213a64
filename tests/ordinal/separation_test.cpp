// Tests of the separation probe (ordinal/solver.hpp, baselines.hpp): separated and
// quasi-separated data have no finite MLE; the fits must say so (separated, not converged)
// instead of returning converged = true with coefficients set by the tolerance. Overlapping
// classes, the housing data and penalised PRESTO fits must not be flagged.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "ordinal/ordinal_test_util.hpp"
#include "weft/ordinal/baselines.hpp"
#include "weft/ordinal/datasets.hpp"
#include "weft/ordinal/presto.hpp"

namespace weft_unit_ordinal_separation_test {

using namespace weft;

struct Data {
  Tensor<double> x;
  std::vector<int> y;
};

/// x = 0..n-1; class floor(i / (n / K)) (complete separation), or with `overlap` the two rows
/// around each boundary swapped (overlapping classes: a finite MLE exists).
Data steps(index_t n, int K, bool overlap) {
  Data d{Tensor<double>(Shape{n, 1}), {}};
  for (index_t i = 0; i < n; ++i) {
    d.x(i, 0) = double(i);
    d.y.push_back(int(i / (n / K)));
  }
  if (overlap)
    for (int k = 1; k < K; ++k) std::swap(d.y[std::size_t(k * (n / K))], d.y[std::size_t(k * (n / K) - 1)]);
  return d;
}

/// Quasi-complete separation: classes 0/1 split at x = 20, with one row of each class at x = 20.
Data quasi() {
  Data d{Tensor<double>(Shape{42, 1}), {}};
  for (index_t i = 0; i < 42; ++i) {
    const double v = i < 21 ? double(i) : double(i - 1);  // rows 20 and 21 both sit at 20
    d.x(i, 0) = v;
    d.y.push_back(i <= 20 ? 0 : 1);
  }
  return d;
}

TEST_CASE("ordinal/separation: completely separated data are reported, not converged") {
  for (int K : {2, 3}) {
    const Data d = steps(60, K, false);
    const auto po = ordinal::fit_proportional_odds(d.x, d.y);
    CHECK(po.separated);
    CHECK(!po.converged);
    CHECK(po.inference.status == ordinal::InferenceStatus::not_converged);
    CHECK(po.model.coef.all_finite());
    const auto lg = ordinal::fit_logistic(d.x, d.y);
    CHECK(lg.separated);
    CHECK(!lg.converged);
    const auto pr = ordinal::fit_presto(d.x, d.y, 0.0);
    CHECK(pr.separated);
    CHECK(!pr.converged);
    ordinal::PrestoOptions fo;
    fo.solver = ordinal::Solver::fista;
    fo.max_iter = 20000;
    const auto pf = ordinal::fit_presto(d.x, d.y, 0.0, fo);
    CHECK(!pf.converged);  // fista may stop at max_iter before the probe is reached
  }
}

TEST_CASE("ordinal/separation: quasi-complete separation is reported too") {
  const Data d = quasi();
  const auto po = ordinal::fit_proportional_odds(d.x, d.y);
  CHECK(po.separated);
  CHECK(!po.converged);
  const auto lg = ordinal::fit_logistic(d.x, d.y);
  CHECK(lg.separated);
  CHECK(!lg.converged);
  const auto pr = ordinal::fit_presto(d.x, d.y, 0.0);
  CHECK(pr.separated);
  CHECK(!pr.converged);
}

TEST_CASE("ordinal/separation: overlapping classes, housing and penalised fits are not flagged") {
  for (int K : {2, 3}) {
    const Data d = steps(60, K, true);
    const auto po = ordinal::fit_proportional_odds(d.x, d.y);
    CHECK(!po.separated);
    CHECK(po.converged);
    const auto lg = ordinal::fit_logistic(d.x, d.y);
    CHECK(!lg.separated);
    CHECK(lg.converged);
    const auto pr = ordinal::fit_presto(d.x, d.y, 0.0);
    CHECK(!pr.separated);
    CHECK(pr.converged);
  }
  const auto h = ordinal::load_housing<double>();
  const auto hp = ordinal::fit_proportional_odds(h.x, h.y, {}, h.weights);
  CHECK(!hp.separated);
  CHECK(hp.converged);
  const auto r = ordinal_test::random_ordinal(200, 3, 4, 91);
  CHECK(!ordinal::fit_logistic(r.x, r.y).separated);
  CHECK(!ordinal::fit_presto(r.x, r.y, 0.0).separated);
  // a penalty bounds every slope: separated data with lambda > 0 converge and are not flagged
  const Data s = steps(60, 3, false);
  const auto pen = ordinal::fit_presto(s.x, s.y, 0.01);
  CHECK(pen.converged);
  CHECK(!pen.separated);
}

TEST_CASE("ordinal/separation: float fits are reported as well") {
  const Data d = steps(60, 2, false);
  Tensor<float> xf(Shape{60, 1});
  for (index_t i = 0; i < 60; ++i) xf(i, 0) = float(d.x(i, 0));
  CHECK(ordinal::fit_proportional_odds(xf, d.y).separated);
  CHECK(ordinal::fit_logistic(xf, d.y).separated);
  CHECK(!ordinal::fit_presto(xf, d.y, 0.0).converged);
}

}  // namespace weft_unit_ordinal_separation_test
