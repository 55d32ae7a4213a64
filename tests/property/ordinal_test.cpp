// Property tests of weft/ordinal: PRESTO (fit_presto, presto_path, cross-validated presto), the
// proportional-odds and logistic baselines, predict_proba / brier_score and the differentiable
// cumulative_nll, with random options, labels, weights and features (mismatched, empty, NaN/Inf,
// extreme). See tests/property/property.hpp for the property and how to rerun a failing case.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "property/property.hpp"
#include "weft/core/autograd.hpp"
#include "weft/ordinal/baselines.hpp"
#include "weft/ordinal/likelihood.hpp"
#include "weft/ordinal/model.hpp"
#include "weft/ordinal/presto.hpp"

namespace weft_unit_property_ordinal_test {

using namespace weft;
namespace prop = weft::test::prop;

namespace {

/// Ordinal data: x (n, p), labels in [0, K) (sometimes one out of range), optional weights
/// (sometimes a negative or NaN one, or all zero).
struct Data {
  index_t n = 0, p = 0, K = 0;
  std::vector<int> y;
  std::vector<double> w;
};

template <class T>
Tensor<T> draw_data(prop::Gen& g, Data& d) {
  d.n = g.extent(16);
  d.p = g.extent(3);
  d.K = 2 + g.pick(3);
  Tensor<T> x = g.tensor<T>(Shape{d.n, d.p}, "x");
  d.y.resize(std::size_t(g.near(d.n, "labels")));
  for (auto& c : d.y) c = g.pick(int(d.K));
  for (std::size_t i = 0; i < d.y.size() && g.chance(0.9); ++i) d.y[i] = int(i % std::size_t(d.K));  // all classes, mostly
  if (!d.y.empty() && g.chance(0.05)) {
    d.y[std::size_t(g.pick(int(d.y.size())))] = -1;
    g.set_must_fail("negative label");
  }
  if (g.chance(0.3)) {
    const index_t nw = g.chance(0.1) ? d.n + 1 : d.n;  // no weights (size 0) means all 1
    if (nw != d.n) g.set_must_fail("one weight too many");
    d.w.resize(std::size_t(nw));
    for (auto& v : d.w) v = g.rng.uniform(0.5, 2);
    if (!d.w.empty() && g.chance(0.15)) {
      const double bad[] = {-1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()};
      d.w[std::size_t(g.pick(int(d.w.size())))] = bad[g.pick(3)];
      g.set_must_fail("bad weight");
    }
    if (!d.w.empty() && g.chance(0.05)) {
      for (auto& v : d.w) v = 0;
      g.note("all weights 0");
    }
  }
  if (d.n == 0) g.set_must_fail("no rows");
  if (g.exotic() && !g.must_fail()) {
    // NaN/Inf features are rejected by every entry point; extreme but finite ones are not
    bool finite = x.all_finite();
    if (!finite) g.set_must_fail("non-finite features");
  }
  return x;
}

template <class T>
void check_model(prop::Gen& g, const ordinal::CumulativeLogit<T>& m, index_t p, index_t K) {
  prop::expect_result(g, m.intercepts, Shape{K - 1});
  prop::expect_result(g, m.coef, Shape{p, K - 1});
}

/// The number of classes the fit will use: num_classes, or max(y) + 1.
index_t classes_of(const Data& d, index_t num_classes) {
  int ymax = -1;
  for (int c : d.y) ymax = std::max(ymax, c);
  return num_classes > 0 ? num_classes : index_t(ymax) + 1;
}

template <class T>
void presto_fits(std::uint64_t seed) {
  prop::run("ordinal/fit_presto, presto_path, presto", seed, 200, [](prop::Gen& g) {
    Data d;
    Tensor<T> x = draw_data<T>(g, d);
    ordinal::PrestoOptions o;
    o.l1_ratio = g.real("l1_ratio", 0, 1, 0.08, [](double a) { return a >= 0 && a <= 1; });
    o.penalize_first = g.chance(0.7);
    o.proportional_odds = g.chance(0.15);
    o.standardize = g.chance(0.8);
    o.num_classes = g.chance(0.8) ? 0 : index_t(g.integer("num_classes", 2, 5, 0.2, {-1, 1}, [](long long) { return true; }));
    o.num_lambda = index_t(g.integer("num_lambda", 1, 3, 0.05, {0, -1}, [](long long v) { return v >= 1; }));
    o.lambda_min_ratio = g.real("lambda_min_ratio", 0.01, 1, 0.05, [](double v) { return v > 0 && v <= 1; });
    o.folds = index_t(g.integer("folds", 2, 3, 0.05, {1, 0}, [](long long v) { return v >= 2; }));
    o.solver = g.chance(0.8) ? ordinal::Solver::newton : ordinal::Solver::fista;
    o.max_iter = int(g.integer("max_iter", 10, 40, 0.05, {-1}, [](long long v) { return v >= 0; }));
    o.seed = g.rng.next_u64();
    const index_t K = classes_of(d, o.num_classes);
    if (o.num_classes < 0 || K < 2 || classes_of(d, 0) > K) g.set_must_fail("num_classes does not fit the labels");
    if (g.chance(0.1)) {
      o.fixed_differences = {index_t(g.integer("fixed difference", 1, 3, 0.3, {0, -1}, [](long long) { return true; }))};
      if (o.fixed_differences[0] < 1 || o.fixed_differences[0] > K - 2) g.set_must_fail("fixed difference outside [1, K-2]");
    }
    const int entry = g.pick(3);
    g.note("entry (fit_presto presto_path presto)", entry);
    prop::Watch w;
    w.add(x, "x");
    const index_t p = x.dim(1);
    if (entry == 0) {
      const double lambda = g.real("lambda", 0, 0.5, 0.08, [](double l) { return l >= 0 && std::isfinite(l); });
      prop::check(g, w, [&] {
        auto fit = ordinal::fit_presto(x, d.y, lambda, o, d.w);
        check_model(g, fit.model, p, K);
        prop::expect_finite(g, fit.nll, "nll");
      });
    } else if (entry == 1) {
      prop::check(g, w, [&] {
        auto path = ordinal::presto_path(x, d.y, o, d.w);
        CHECK(path.fits.size() == path.lambdas.size());
        for (auto& f : path.fits) check_model(g, f.model, p, K);
      });
    } else {
      if (d.n > 0 && o.folds > d.n) g.set_must_fail("more folds than rows");
      prop::check(g, w, [&] {
        auto cv = ordinal::presto(x, d.y, o, d.w);
        check_model(g, cv.fit.model, p, K);
        for (double b : cv.mean_brier) prop::expect_finite(g, b, "mean Brier score");
      });
    }
  });
}

template <class T>
void baselines(std::uint64_t seed) {
  prop::run("ordinal/fit_proportional_odds, fit_logistic", seed, 250, [](prop::Gen& g) {
    Data d;
    Tensor<T> x = draw_data<T>(g, d);
    ordinal::BaselineOptions o;
    o.lambda = g.chance(0.5) ? 0.0 : g.real("lambda", 0, 0.5, 0.1, [](double l) { return l >= 0 && std::isfinite(l); });
    o.l1_ratio = g.real("l1_ratio", 0, 1, 0.08, [](double a) { return a >= 0 && a <= 1; });
    o.standardize = g.chance(0.8);
    o.tol = g.chance(0.7) ? 0.0 : g.real("tol", 1e-10, 1e-4, 0.15, [](double t) { return t >= 0; });
    o.max_iter = int(g.integer("max_iter", 1, 30, 0.05, {0, -3}, [](long long v) { return v >= 1; }));
    o.singular_tol = g.chance(0.8) ? 0.0 : g.real("singular_tol", 0, 0.5, 0.2, [](double v) { return v >= 0 && v < 1; });
    const index_t K = classes_of(d, 0);
    if (K < 2) g.set_must_fail("fewer than two classes");
    const bool po = g.chance(0.5);
    g.note("baseline (logistic, proportional odds)", po);
    prop::Watch w;
    w.add(x, "x");
    prop::check(g, w, [&] {
      auto fit = po ? ordinal::fit_proportional_odds(x, d.y, o, d.w) : ordinal::fit_logistic(x, d.y, o, d.w);
      check_model(g, fit.model, x.dim(1), K);
      prop::expect_finite(g, fit.nll, "nll");
    });
  }, true);
}

template <class T>
void model_functions(std::uint64_t seed) {
  prop::run("ordinal/predict_proba, brier_score, cumulative_nll", seed, 300, [](prop::Gen& g) {
    const index_t n = g.extent(6), p = g.extent(3), K = 2 + g.pick(3);
    ordinal::CumulativeLogit<T> m;
    m.intercepts = g.tensor<T>(Shape{K - 1}, "intercepts");
    std::sort(m.intercepts.begin(), m.intercepts.end(), [](T a, T b) { return a < b; });
    m.coef = g.tensor<T>(Shape{g.near(p, "coef rows"), K - 1}, "coef", 0.05, 0.3);
    Tensor<T> x = g.tensor<T>(Shape{n, p}, "x");
    std::vector<int> y(static_cast<std::size_t>(n));
    for (auto& c : y) c = g.pick(int(K));
    if (!y.empty() && g.chance(0.08)) {
      y[0] = g.chance(0.5) ? -1 : int(K);
      g.set_must_fail("label out of range");
    }
    const int op = g.pick(2);
    g.note("op (predict_proba+brier, cumulative_nll)", op);
    prop::Watch w;
    w.add(x, "x").add(m.intercepts, "intercepts").add(m.coef, "coef");
    if (op == 0) {
      if (n == 0 && !g.must_fail()) g.set_must_fail("Brier score of no rows");
      prop::check(g, w, [&] {
        auto pr = ordinal::predict_proba(m, x);
        prop::expect_result(g, pr.probs, Shape{n, K});
        prop::expect_finite(g, ordinal::brier_score(pr.probs, y), "Brier score");
      });
    } else {
      if (n == 0 && !g.must_fail()) g.set_must_fail("no rows");
      // psi: differences; unordered eta give +inf by the docs, so keep psi small unless exotic
      prop::check(g, w, [&] {
        Tensor<T> psi = ordinal::psi_from_beta(m.coef);
        Tape<T> tape;
        Var<T> a = tape.variable(m.intercepts), s = tape.variable(psi);
        Var<T> l = ordinal::cumulative_nll(a, s, x, y);
        CHECK(l.value().shape() == Shape{});
        if (std::isfinite(double(l.value().item()))) {
          tape.backward(l);
          prop::expect_result(g, a.grad(), m.intercepts.shape());
          prop::expect_result(g, s.grad(), psi.shape());
        }
      });
    }
  });
}

}  // namespace

TEST_CASE("property/ordinal: PRESTO fits, paths and cross-validation") {
  presto_fits<double>(301);
  presto_fits<float>(302);
}

TEST_CASE("property/ordinal: proportional-odds and logistic baselines") {
  baselines<double>(311);
  baselines<float>(312);
}

TEST_CASE("property/ordinal: predict_proba, brier_score, cumulative_nll") {
  model_functions<double>(321);
  model_functions<float>(322);
}

}  // namespace weft_unit_property_ordinal_test
