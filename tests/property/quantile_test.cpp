// Property tests of weft/quantile: levels, scores, monotonisation, the Aggregator (options, fit,
// predict, the strong guarantee of fit), split conformal calibration and the base quantile
// models (linear QR, Gaussian linear, kNN), on random, mismatched, empty and extreme input.
// See tests/property/property.hpp for the property and how to rerun a failing case.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "property/property.hpp"
#include "support/test_util.hpp"
#include "weft/quantile.hpp"

namespace weft_unit_property_quantile_test {

using namespace weft;
namespace prop = weft::test::prop;

namespace {

/// Mostly even_levels(m); sometimes one level replaced by a bad value (0, 1, NaN, a repeat,
/// out of order): then the case must fail.
std::vector<double> draw_levels(prop::Gen& g, index_t m) {
  std::vector<double> lv = quantile::even_levels(m);
  if (g.chance(0.1)) {
    const double bad[] = {0.0, 1.0, -0.2, 1.5, std::numeric_limits<double>::quiet_NaN(), lv.front()};
    const std::size_t at = std::size_t(g.pick(int(lv.size())));
    const double v = bad[g.pick(6)];
    if (!(v == lv[at])) {
      lv[at] = v;
      g.set_must_fail("a bad quantile level");
    }
  }
  std::ostringstream os;
  for (double t : lv) os << t << " ";
  g.note("levels", os.str());
  return lv;
}

template <class T>
void scores_and_monotone(std::uint64_t seed) {
  prop::run("quantile/scores, monotonize, margins", seed, 300, [](prop::Gen& g) {
    const int op = g.pick(5);
    g.note("op (wis monotonize isotonic_weighted margins pinball_loss)", op);
    const index_t n = g.extent(5), m = 1 + g.pick(5);
    const bool uses_levels = op == 0 || op >= 3, uses_q = op != 3, uses_y = op == 0 || op == 4;
    const std::vector<double> lv = uses_levels ? draw_levels(g, m) : std::vector<double>{};
    Tensor<T> Q = uses_q ? g.tensor<T>(Shape{n, uses_levels ? g.near(m, "prediction width") : m}, "Q") : Tensor<T>();
    Tensor<T> y = uses_y ? g.tensor<T>(Shape{g.near(n, "targets")}, "y") : Tensor<T>();
    prop::Watch w;
    w.add(Q, "Q").add(y, "y");
    if (op == 0) {
      if (n == 0) return;  // an empty score is allowed to be 0 or an error; not specified
      prop::check(g, w, [&] {
        prop::expect_finite(g, quantile::wis(Q, y, lv), "wis");
        prop::expect_finite(g, quantile::mace(Q, y, lv), "mace");
      });
    } else if (op == 1) {
      const auto how = quantile::Monotonize(g.pick(6));
      g.note("monotonize", quantile::to_string(how));
      prop::check(g, w, [&] { prop::expect_result(g, quantile::monotonize(Q, how), Q.shape()); });
    } else if (op == 2) {
      Tensor<T> wt = g.tensor<T>(Shape{Q.dim(1)}, "weights");
      for (auto& v : wt) v = T(std::abs(double(v)) + 0.1);
      if (g.chance(0.1)) {
        wt.flat(0) = T(g.chance(0.5) ? 0.0 : -1.0);
        g.set_must_fail("non-positive isotonic weight");
      }
      if (Q.numel() == 0) return;  // weights of an empty prediction: not specified
      w.add(wt, "weights");
      prop::check(g, w, [&] { prop::expect_result(g, quantile::isotonic_weighted(Q, wt), Q.shape()); });
    } else if (op == 3) {
      const double s = g.real("margin scale", 0, 2, 0.2, [](double v) { return v >= 0 && std::isfinite(v); });
      prop::check(g, w, [&] {
        prop::expect_result(g, quantile::margin_vec<T>(lv, s), Shape{m, m});
        prop::expect_result(g, quantile::margin_single<T>(m, s), Shape{m, m});
      });
    } else {
      Tensor<T> delta = quantile::margin_single<T>(m, 1e-3);
      prop::check(g, w, [&] {
        Tape<T> tape;
        Var<T> q = tape.variable(Q);
        Var<T> l = quantile::pinball_loss(q, y, lv) + sum(quantile::margin_penalty(q, delta));
        prop::expect_result(g, l.value(), Shape{});
        tape.backward(l);
        prop::expect_result(g, q.grad(), Q.shape());
      });
    }
  });
}

template <class T>
void aggregator(std::uint64_t seed) {
  prop::run("quantile/Aggregator: options, fit, predict", seed, 150, [](prop::Gen& g) {
    quantile::AggregatorOptions o;
    auto in01 = [](double v) { return v >= 0 && v < 1; };
    o.scheme = quantile::Scheme(g.pick(4));
    o.local = g.chance(0.25);
    if (o.local && o.scheme == quantile::Scheme::average) g.set_bad_option("local average");
    o.normalize = g.chance(0.8);
    o.steps = int(g.integer("steps", 0, 12, 0.05, {-1}, [](long long v) { return v >= 0; }));
    o.lr = g.real("lr", 1e-3, 0.1, 0.1, [](double v) { return v > 0 && std::isfinite(v); });
    o.beta1 = g.real("beta1", 0, 0.95, 0.05, in01);
    o.beta2 = g.real("beta2", 0, 0.999, 0.05, in01);
    o.weight_decay = g.chance(0.7) ? 0.0 : g.real("weight_decay", 0, 0.1, 0.2, [](double v) { return v >= 0 && std::isfinite(v); });
    o.batch_size = index_t(g.integer("batch_size", 0, 6, 0.05, {-1}, [](long long v) { return v >= 0; }));
    o.hidden = index_t(g.integer("hidden", 1, 4, 0.05, {0, -3}, [](long long v) { return v >= 1; }));
    o.layers = int(g.integer("layers", 1, 3, 0.05, {0}, [](long long v) { return v >= 1; }));
    o.dropout = g.chance(0.7) ? 0.0 : g.real("dropout", 0, 0.5, 0.2, in01);
    o.train_transform = quantile::Monotonize(g.pick(3));
    o.margin_weight = g.chance(0.7) ? 0.0 : g.real("margin_weight", 0, 1, 0.2, [](double v) { return v >= 0 && std::isfinite(v); });
    o.margin_delta = g.real("margin_delta", 0, 0.01, 0.05, [](double v) { return v >= 0 && std::isfinite(v); });
    o.validation_fraction = g.chance(0.7) ? 0.0 : g.real("validation_fraction", 0, 0.5, 0.2, in01);
    o.eval_every = int(g.integer("eval_every", 1, 5, 0.05, {0}, [](long long v) { return v >= 1; }));
    o.patience = int(g.integer("patience", 1, 5, 0.05, {0}, [](long long v) { return v >= 1; }));
    o.seed = g.rng.next_u64();
    std::unique_ptr<quantile::Aggregator<T>> agg;
    if (!prop::construct(g, [&] { agg = std::make_unique<quantile::Aggregator<T>>(o); })) return;
    const index_t n = 2 + g.pick(8), p = 1 + g.pick(3), m = 1 + g.pick(4), d = 1 + g.pick(3);
    const std::vector<double> lv = quantile::even_levels(m);
    // a first fit on clean data, so a failed second fit has something to keep
    Rng clean(g.rng.next_u64());
    Tensor<T> G0 = test::randn<T>(Shape{n, p, m}, clean), y0 = test::randn<T>(Shape{n}, clean),
              X0 = test::randn<T>(Shape{n, d}, clean);
    for (index_t i = 0; i < n; ++i)  // sorted base predictions
      for (index_t j = 0; j < p; ++j)
        for (index_t k = 1; k < m; ++k) G0(i, j, k) = std::max(G0(i, j, k), G0(i, j, k - 1));
    Tensor<T> before;
    {
      prop::Watch none;
      prop::check(g, none, [&] {
        agg->fit(G0, y0, lv, o.local ? X0 : Tensor<T>());
        before = agg->predict(G0, o.local ? X0 : Tensor<T>());
        prop::expect_result(g, before, Shape{n, m});
      });
      if (!before.defined()) return;
    }
    // a second fit on drawn data (a refit may change the number of models, levels and features)
    const index_t n2 = g.extent(6), p2 = g.chance(0.8) ? p : g.extent(3), m2 = g.chance(0.8) ? m : 1 + g.pick(4),
                  d2 = g.chance(0.8) ? d : g.extent(3);
    const std::vector<double> lv2 = draw_levels(g, m2);
    Tensor<T> G = g.tensor<T>(Shape{n2, p2, g.near(m2, "levels of G")}, "G");
    Tensor<T> y = g.tensor<T>(Shape{g.near(n2, "targets")}, "y");
    Tensor<T> X = o.local ? g.tensor<T>(Shape{g.near(n2, "feature rows"), d2}, "X") : Tensor<T>();
    if (p2 == 0 || (o.local && d2 == 0)) g.set_must_fail("no model or no feature");
    if (n2 == 0) g.set_must_fail("no rows");
    prop::Watch w;
    w.add(G, "G").add(y, "y");
    if (o.local) w.add(X, "X");
    const auto out = prop::check(g, w, [&] {
      agg->fit(G, y, lv2, X);
      prop::expect_result(g, agg->predict(G, X), Shape{n2, m2});
    });
    if (out == prop::Outcome::weft_error)
      CHECK_MESSAGE(test::identical(agg->predict(G0, o.local ? X0 : Tensor<T>()), before),
                    "a failed fit changed the aggregator's predictions");
  });
}

template <class T>
void conformal(std::uint64_t seed) {
  prop::run("quantile/ConformalCalibrator: fit, apply", seed, 300, [](prop::Gen& g) {
    quantile::ConformalOptions o;
    o.symmetric = g.chance(0.5);
    o.resort = g.chance(0.7);
    quantile::ConformalCalibrator<T> cal(o);
    const index_t n = g.extent(12), m = 1 + g.pick(5);
    const std::vector<double> lv = draw_levels(g, m);
    if (m < 2) g.set_must_fail("no pair of levels");
    Tensor<T> Q = g.tensor<T>(Shape{n, g.near(m, "prediction width")}, "Q");
    Tensor<T> y = g.tensor<T>(Shape{g.near(n, "targets")}, "y");
    prop::Watch w;
    w.add(Q, "Q").add(y, "y");
    if (prop::check(g, w, [&] { cal.fit(Q, y, lv); }) != prop::Outcome::returned) return;
    const index_t n2 = g.extent(4);
    Tensor<T> Q2 = g.tensor<T>(Shape{n2, g.near(m, "apply width")}, "Q2");
    prop::Watch w2;
    w2.add(Q2, "Q2");
    prop::check(g, w2, [&] {
      Tensor<T> r = cal.apply(Q2);
      CHECK(r.shape() == Q2.shape());
      if (!cal.infinite()) prop::expect_result(g, r, Q2.shape());
    });
  });
}

template <class T>
void models(std::uint64_t seed) {
  prop::run("quantile/LinearQR, GaussianLinear, kNN: fit, predict", seed, 200, [](prop::Gen& g) {
    const int kind = g.pick(3);
    g.note("model (LinQR GaussLin kNN)", kind);
    std::unique_ptr<quantile::QuantileModel<T>> model;
    const bool made = prop::construct(g, [&] {
      if (kind == 0) {
        quantile::LinearQROptions o;
        o.tol = g.real("tol", 1e-12, 1e-6, 0.1, [](double v) { return v > 0; });
        o.max_iter = int(g.integer("max_iter", 1, 50, 0.05, {0, -1}, [](long long v) { return v >= 1; }));
        model = std::make_unique<quantile::LinearQuantileRegression<T>>(o);
      } else if (kind == 1) {
        model = std::make_unique<quantile::GaussianLinear<T>>();
      } else {
        model = std::make_unique<quantile::KnnQuantile<T>>(index_t(g.integer("k", 1, 5, 0.1, {0, -2}, [](long long v) { return v >= 1; })));
      }
    });
    if (!made) return;
    const index_t n = g.extent(14), d = 1 + g.pick(3), m = 1 + g.pick(4);
    const std::vector<double> lv = draw_levels(g, m);
    Tensor<T> X = g.tensor<T>(Shape{n, d}, "X");
    Tensor<T> y = g.tensor<T>(Shape{g.near(n, "targets")}, "y");
    prop::Watch w;
    w.add(X, "X").add(y, "y");
    if (prop::check(g, w, [&] { model->fit(X, y, lv); }) != prop::Outcome::returned) return;
    Tensor<T> X2 = g.tensor<T>(Shape{g.extent(4), g.near(d, "predict width")}, "X2");
    prop::Watch w2;
    w2.add(X2, "X2");
    prop::check(g, w2, [&] { prop::expect_result(g, model->predict(X2), Shape{X2.dim(0), m}); });
  });
}

}  // namespace

TEST_CASE("property/quantile: scores, monotonize, isotonic_weighted, margins, pinball loss") {
  scores_and_monotone<double>(201);
  scores_and_monotone<float>(202);
}

TEST_CASE("property/quantile: Aggregator options, fit and predict; a failed fit changes nothing") {
  aggregator<double>(211);
  aggregator<float>(212);
}

TEST_CASE("property/quantile: ConformalCalibrator fit and apply") {
  conformal<double>(221);
  conformal<float>(222);
}

TEST_CASE("property/quantile: base models fit and predict") {
  models<double>(231);
  models<float>(232);
}

}  // namespace weft_unit_property_quantile_test
