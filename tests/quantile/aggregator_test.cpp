// Tests of weft/quantile/aggregator.hpp: the average and the start of training (equal weights),
// p = 1 and equal base models, coarse weights keep monotone inputs monotone, training finds the
// good model, local weights use the features, the options (validation, minibatches, in-training
// transforms, margins, free weights) and their determinism, the ELU gradient, float vs double
// ranking, and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/grad_check.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/quantile/aggregator.hpp"
#include "weft/quantile/models.hpp"

namespace weft_unit_quantile_aggregator_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace q = weft::quantile;
namespace wt = weft::test;

namespace {

const std::vector<double> kTau{0.1, 0.3, 0.5, 0.7, 0.9};

/// Synthetic stacking problem: x ~ U(-1, 1), y = x + 0.3 eps; model 0 is the truth (with the
/// normal quantiles), model 1 is shifted by +0.5, model 2 is too narrow. With `swap`, model 0
/// is the good one for x < 0 and model 1 (then unshifted) for x >= 0.
template <class T>
struct Problem {
  Tensor<T> G, y, X;
};
template <class T>
Problem<T> make_problem(index_t n, std::uint64_t seed, bool swap = false) {
  weft::Rng rng(seed);
  Problem<T> pr{Tensor<T>(Shape{n, 3, 5}), Tensor<T>(Shape{n}), Tensor<T>(Shape{n, 1})};
  for (index_t i = 0; i < n; ++i) {
    const double x = rng.uniform(-1, 1);
    pr.X(i, 0) = T(x);
    pr.y(i) = T(x + 0.3 * rng.normal());
    for (index_t k = 0; k < 5; ++k) {
      const double z = q::normal_quantile(kTau[std::size_t(k)]);
      const double good = x + 0.3 * z, shifted = good + 0.5;
      pr.G(i, 0, k) = T(swap && x >= 0 ? shifted : good);
      pr.G(i, 1, k) = T(swap && x >= 0 ? good : shifted);
      pr.G(i, 2, k) = T(x + 0.05 * z);
    }
  }
  return pr;
}

q::AggregatorOptions opts(q::Scheme s, int steps = 300, bool local = false) {
  q::AggregatorOptions o;
  o.scheme = s;
  o.steps = steps;
  o.local = local;
  return o;
}

}  // namespace

TEST_CASE("quantile/aggregator: average, and every scheme starts at the average") {
  const auto pr = make_problem<double>(50, 1);
  const Tensor<double> avg = [&] {
    q::Aggregator<double> a(opts(q::Scheme::average));
    a.fit(pr.G, pr.y, kTau);
    return a.predict(pr.G);
  }();
  for (index_t i = 0; i < 50; ++i)
    for (index_t k = 0; k < 5; ++k) CHECK(avg(i, k) == doctest::Approx((pr.G(i, 0, k) + pr.G(i, 1, k) + pr.G(i, 2, k)) / 3));
  for (auto s : {q::Scheme::coarse, q::Scheme::medium, q::Scheme::fine})
    for (bool local : {false, true})
      for (bool normalize : {true, false}) {
        auto o = opts(s, 0, local);
        o.normalize = normalize;
        q::Aggregator<double> a(o);
        a.fit(pr.G, pr.y, kTau, pr.X);
        if (s == q::Scheme::fine && normalize) {
          // zero logits over all (model, level) pairs: every level gets the mean of all of them
          const Tensor<double> out = a.predict(pr.G, pr.X);
          for (index_t i = 0; i < 50; ++i) {
            double mean = 0;
            for (index_t k = 0; k < 5; ++k) mean += avg(i, k) / 5;
            for (index_t k = 0; k < 5; ++k) CHECK(out(i, k) == doctest::Approx(mean).epsilon(1e-13));
          }
        } else {
          WEFT_CHECK_CLOSE(a.predict(pr.G, pr.X), avg, 1e-14);
        }
      }
}

TEST_CASE("quantile/aggregator: p = 1 returns the base model exactly; equal models give that model") {
  const auto pr = make_problem<double>(40, 2);
  Tensor<double> G1(Shape{40, 1, 5}), Geq(Shape{40, 3, 5});
  for (index_t i = 0; i < 40; ++i)
    for (index_t k = 0; k < 5; ++k) {
      G1(i, 0, k) = pr.G(i, 2, k);
      for (index_t j = 0; j < 3; ++j) Geq(i, j, k) = pr.G(i, 2, k);
    }
  const Tensor<double> base = G1.reshape({40, 5});
  for (auto s : {q::Scheme::average, q::Scheme::coarse, q::Scheme::medium})
    for (bool local : {false, true}) {
      if (local && s == q::Scheme::average) continue;
      q::Aggregator<double> a(opts(s, 100, local));
      a.fit(G1, pr.y, kTau, pr.X);
      CHECK(wt::identical(a.predict(G1, pr.X), base));
    }
  for (auto s : {q::Scheme::coarse, q::Scheme::medium}) {  // (fine mixes levels: not the model)
    q::Aggregator<double> a(opts(s, 100));
    a.fit(Geq, pr.y, kTau);
    WEFT_CHECK_CLOSE(a.predict(Geq), base, 1e-13);
  }
}

TEST_CASE("quantile/aggregator: coarse weights keep monotone base predictions monotone") {
  auto pr = make_problem<double>(80, 3);
  for (bool local : {false, true}) {
    q::Aggregator<double> a(opts(q::Scheme::coarse, 200, local));
    a.fit(pr.G, pr.y, kTau, pr.X);
    const Tensor<double> out = a.predict(pr.G, pr.X);
    CHECK(q::crossing_fraction(out) == 0.0);
  }
}

TEST_CASE("quantile/aggregator: training finds the good model and beats every base model") {
  const auto pr = make_problem<double>(400, 4);
  for (auto s : {q::Scheme::coarse, q::Scheme::medium, q::Scheme::fine}) {
    q::Aggregator<double> a(opts(s, 600));
    a.fit(pr.G, pr.y, kTau);
    const double agg = q::wis(a.predict(pr.G), pr.y, kTau);
    for (index_t j = 0; j < 3; ++j) {
      Tensor<double> Qj(Shape{400, 5});
      for (index_t i = 0; i < 400; ++i)
        for (index_t k = 0; k < 5; ++k) Qj(i, k) = pr.G(i, j, k);
      CHECK(agg <= q::wis(Qj, pr.y, kTau) * 1.001);
    }
    CHECK(a.history().size() == 600);
    CHECK(a.history().back() < a.history().front());
  }
  q::Aggregator<double> c(opts(q::Scheme::coarse, 600));
  c.fit(pr.G, pr.y, kTau);
  CHECK(c.weights()(0, 0) > 0.8);  // the true model carries most weight
  CHECK(c.weights().shape() == (Shape{3, 1}));
}

TEST_CASE("quantile/aggregator: local weights follow the features") {
  const auto pr = make_problem<double>(400, 5, true);
  q::Aggregator<double> g(opts(q::Scheme::coarse, 800)), l(opts(q::Scheme::coarse, 800, true));
  g.fit(pr.G, pr.y, kTau);
  l.fit(pr.G, pr.y, kTau, pr.X);
  const double wg = q::wis(g.predict(pr.G), pr.y, kTau), wl = q::wis(l.predict(pr.G, pr.X), pr.y, kTau);
  CHECK(wl < 0.9 * wg);
  const Tensor<double> W = l.weights(Tensor<double>::from_values({-0.8, 0.8}, Shape{2, 1}));
  REQUIRE(W.shape() == (Shape{2, 3, 1}));
  CHECK(W(0, 0, 0) > W(0, 1, 0));  // x < 0: model 0
  CHECK(W(1, 1, 0) > W(1, 0, 0));  // x > 0: model 1
}

TEST_CASE("quantile/aggregator: options run, are deterministic, and transforms make predict monotone") {
  const auto pr = make_problem<double>(120, 6);
  auto run = [&](const q::AggregatorOptions& o) {
    q::Aggregator<double> a(o);
    a.fit(pr.G, pr.y, kTau, pr.X);
    return std::make_pair(a.predict(pr.G, pr.X), a.best_steps());
  };
  auto o = opts(q::Scheme::medium, 400, true);
  o.batch_size = 32;
  o.dropout = 0.1;
  o.layers = 3;
  o.validation_fraction = 0.25;
  o.eval_every = 50;
  o.patience = 100;
  const auto a = run(o), b = run(o);
  CHECK(wt::identical(a.first, b.first));
  CHECK(a.second >= 1);
  CHECK(a.second <= 400);
  for (auto t : {q::Monotonize::sort, q::Monotonize::isotonic}) {
    auto ot = opts(q::Scheme::fine, 200);
    ot.train_transform = t;
    CHECK(q::crossing_fraction(run(ot).first) == 0.0);
  }
  auto om = opts(q::Scheme::fine, 200);
  om.margin_weight = 5;
  om.margin_delta = 0.01;
  om.normalize = false;
  CHECK(run(om).first.all_finite());
  const Tensor<double> vec = q::margin_vec<double>(kTau, 1.0);
  om.margin_matrix.assign(vec.begin(), vec.end());
  CHECK(run(om).first.all_finite());
  om.margin_matrix.resize(3);
  CHECK_THROWS_AS(run(om), weft::ConfigError);
}

TEST_CASE("quantile/aggregator: ELU passes the float64 gradient check; scalar and vector paths agree") {
  weft::Rng rng(2);
  Tensor<double> x = wt::away_from_zero(wt::randn<double>({4, 5}, rng), 0.01);
  WEFT_CHECK_GRAD(weft::grad_check([](auto&, const auto& v) { return q::detail::elu(v[0]); }, {x}));
  // the vector path (xsimd expm1) agrees with the scalar one
  Tensor<double> big = wt::randn<double>({1000}, rng, 0.0, 3.0), ys(Shape{1000}), yv(Shape{1000});
  weft::ops::unary_forward_scalar<q::detail::elu_op>(big.data(), ys.data(), 1000);
  weft::ops::unary_forward<q::detail::elu_op>(big.data(), yv.data(), 1000);
  WEFT_CHECK_CLOSE(yv, ys, 1e-14);
  Tensor<double> gs(Shape{1000}), gv(Shape{1000});
  const Tensor<double> ones = Tensor<double>::ones(Shape{1000});
  weft::ops::unary_backward_scalar<q::detail::elu_op>(big.data(), ys.data(), ones.data(), gs.data(), 1000);
  weft::ops::unary_backward<q::detail::elu_op>(big.data(), ys.data(), ones.data(), gv.data(), 1000);
  WEFT_CHECK_CLOSE(gv, gs, 1e-14);
  // the training loss end to end: softmax weights, combination, pinball
  const auto pr = make_problem<double>(8, 3);
  Tensor<double> logits = wt::randn<double>({5, 3}, rng);
  auto f = [&](auto& tape, const auto& v) {
    auto w = weft::transpose(weft::softmax(v[0]));  // (p, m)
    auto out = weft::sum(tape.constant(pr.G) * w, 1);
    return q::pinball_loss(out, pr.y, kTau);
  };
  WEFT_CHECK_GRAD(weft::grad_check(f, {logits}));
}

TEST_CASE("quantile/aggregator: float and double rank the methods alike") {
  auto ranking = [](auto tag) {
    using T = decltype(tag);
    const auto pr = make_problem<T>(300, 8);
    std::vector<double> scores;
    for (index_t j = 0; j < 3; ++j) {
      Tensor<T> Qj(Shape{300, 5});
      for (index_t i = 0; i < 300; ++i)
        for (index_t k = 0; k < 5; ++k) Qj(i, k) = pr.G(i, j, k);
      scores.push_back(q::wis(Qj, pr.y, kTau));
    }
    for (auto s : {q::Scheme::average, q::Scheme::coarse, q::Scheme::medium}) {
      q::Aggregator<T> a(opts(s, 400));
      a.fit(pr.G, pr.y, kTau);
      scores.push_back(q::wis(a.predict(pr.G), pr.y, kTau));
    }
    std::vector<int> order(scores.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return scores[std::size_t(a)] < scores[std::size_t(b)]; });
    return order;
  };
  CHECK(ranking(float()) == ranking(double()));
}

TEST_CASE("quantile/aggregator: bad input") {
  const auto pr = make_problem<double>(20, 7);
  q::Aggregator<double> a(opts(q::Scheme::medium, 10));
  CHECK_THROWS_AS(a.predict(pr.G), weft::ConfigError);
  CHECK_THROWS_AS(a.weights(), weft::ConfigError);
  CHECK_THROWS_AS(a.fit(pr.G.reshape({20, 15}), pr.y, kTau), weft::ShapeError);
  CHECK_THROWS_AS(a.fit(pr.G, pr.y, {0.1, 0.5, 0.9}), weft::ShapeError);
  CHECK_THROWS_AS(a.fit(pr.G, Tensor<double>(Shape{19}), kTau), weft::ShapeError);
  Tensor<double> Gn = pr.G.clone();
  Gn(3, 1, 2) = std::numeric_limits<double>::quiet_NaN();
  wt::Snapshot<double> snap({Gn});
  CHECK_THROWS_AS(a.fit(Gn, pr.y, kTau), weft::ValueError);
  CHECK(snap.unchanged());
  a.fit(pr.G, pr.y, kTau);
  CHECK_THROWS_AS(a.predict(pr.G.slice(1, 0, 2)), weft::ShapeError);
  q::Aggregator<double> l(opts(q::Scheme::coarse, 10, true));
  CHECK_THROWS_AS(l.fit(pr.G, pr.y, kTau), weft::ShapeError);  // local needs features
  l.fit(pr.G, pr.y, kTau, pr.X);
  CHECK_THROWS_AS(l.predict(pr.G, Tensor<double>(Shape{20, 2})), weft::ShapeError);
  auto bad = opts(q::Scheme::average, 10, true);
  CHECK_THROWS_AS(q::Aggregator<double>{bad}, weft::ConfigError);
  auto bad2 = opts(q::Scheme::medium);
  bad2.lr = 0;
  CHECK_THROWS_AS(q::Aggregator<double>{bad2}, weft::ConfigError);
  auto bad3 = opts(q::Scheme::medium);
  bad3.train_transform = q::Monotonize::cummax;
  CHECK_THROWS_AS(q::Aggregator<double>{bad3}, weft::ConfigError);
}

TEST_CASE("quantile/aggregator: every option is checked by the constructor; a failed fit changes nothing") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  auto rejects = [](q::AggregatorOptions o) {
    CHECK_THROWS_WITH_AS(q::Aggregator<double>{o}, doctest::Contains("weft::quantile::Aggregator: "), weft::ConfigError);
  };
  auto o = opts(q::Scheme::medium);
  o.beta1 = 1.0;
  rejects(o);
  o = opts(q::Scheme::medium);
  o.beta2 = nan;
  rejects(o);
  o = opts(q::Scheme::medium);
  o.lr = inf;
  rejects(o);
  o = opts(q::Scheme::medium);
  o.weight_decay = -1;
  rejects(o);
  o = opts(q::Scheme::medium);
  o.margin_weight = 1;
  o.margin_delta = nan;
  rejects(o);
  o = opts(q::Scheme::medium);
  o.margin_weight = 1;
  o.margin_matrix.assign(25, 0.01);
  o.margin_matrix[7] = nan;
  rejects(o);
  // a fit that fails (wrong-sized margin matrix) leaves the trained aggregator as it was
  const auto pr = make_problem<double>(40, 3);
  q::Aggregator<double> agg(opts(q::Scheme::medium, 50));
  agg.fit(pr.G, pr.y, kTau);
  const Tensor<double> before = agg.predict(pr.G);
  const auto history = agg.history();
  Tensor<double> y_bad = pr.y.clone();
  y_bad.flat(3) = nan;
  CHECK_THROWS_AS(agg.fit(pr.G, y_bad, kTau), weft::ValueError);
  CHECK(wt::identical(agg.predict(pr.G), before));
  CHECK(agg.history() == history);
  // an unfitted aggregator stays unfitted after a failed fit
  q::Aggregator<double> fresh(opts(q::Scheme::medium, 5));
  CHECK_THROWS_AS(fresh.fit(pr.G, y_bad, kTau), weft::ValueError);
  CHECK_THROWS_AS(fresh.predict(pr.G), weft::ConfigError);
}

}  // namespace weft_unit_quantile_aggregator_test
