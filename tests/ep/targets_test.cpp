// Tests of weft/ep/targets.hpp and real-valued targets through the readout, the engine's nudge,
// the estimators, RBP and training: one-hot rows equal labels, soft softmax targets and real mse
// targets give the gradient of their loss, and bad targets are rejected.
#include "ep/ep_test_util.hpp"

namespace weft_unit_ep_targets_test {

using namespace weft;
using ep_test::Setup;

namespace {

Tensor<double> one_hot(const std::vector<int>& y, index_t C) {
  Tensor<double> t(Shape{index_t(y.size()), C});
  for (std::size_t i = 0; i < y.size(); ++i) t(index_t(i), y[i]) = 1.0;
  return t;
}

/// Rows softmax(2 N(0, 1)): probability distributions.
Tensor<double> soft_targets(index_t B, index_t C, Rng& rng) {
  Tensor<double> t(Shape{B, C});
  for (index_t b = 0; b < B; ++b) {
    double s = 0;
    for (index_t j = 0; j < C; ++j) s += (t(b, j) = std::exp(2 * rng.normal()));
    for (index_t j = 0; j < C; ++j) t(b, j) /= s;
  }
  return t;
}

/// Mean loss at the fixed point re-relaxed from u0 (beta = 0, tol 1e-15).
double loss_at_fixed_point(const ep::DenseNet<double>& net, const Setup<double>& s, const Tensor<double>& t) {
  ep::RelaxOptions o;
  o.tol = 1e-15;
  o.max_iters = 3000;
  ep::State<double> u = s.u0.clone();
  ep::relax(net, s.batch.X, std::vector<int>{}, 0.0, u, o);
  return ep::readout(net, u, t).loss;
}

}  // namespace

TEST_CASE("ep/targets: one-hot rows give the same results as labels") {
  for (ep::Readout ro : {ep::Readout::softmax, ep::Readout::mse}) {
    Setup<double> s(90, 61, {16, 24, 24, 10}, 8, ep::Activation::dsilu, ro);
    const Tensor<double> t = one_hot(s.batch.y, s.net.classes());
    const auto a = ep::readout(s.net, s.u0, s.batch.y);
    const auto b = ep::readout(s.net, s.u0, t);
    CHECK(b.loss == doctest::Approx(a.loss).epsilon(1e-15));
    CHECK(test::compare(a.G, b.G, 1e-15).ok);
    CHECK(a.predictions == b.predictions);
    CHECK(std::isnan(b.accuracy));
    for (int N : {0, 2, 4}) {
      ep::HepOptions o = ep_test::tight_hep(N, 0.3);
      if (N == 0) o.relax.tol = 0;  // the complex step's residual is O(h): a fixed count
      const auto ea = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o);
      const auto eb = ep::hep_error(s.net, s.batch.X, t, s.u0, o);
      INFO("readout ", int(ro), " N ", N);
      CHECK(ep::relative_error(eb.e, ea.e) <= 1e-13);
    }
    const auto xa = ep::exact_errors(s.net, s.batch.X, s.batch.y, s.u0);
    const auto xb = ep::exact_errors(s.net, s.batch.X, t, s.u0);
    CHECK(ep::relative_error(xb.delta, xa.delta) <= 1e-14);
    const auto ga = ep::error_gradients(s.net, s.batch.X, s.batch.y, s.u0, xa.delta);
    const auto gb = ep::error_gradients(s.net, s.batch.X, t, s.u0, xa.delta);
    for (std::size_t i = 0; i < ga.size(); ++i) CHECK(test::compare(ga[i], gb[i], 1e-14).ok);
  }
}

TEST_CASE("ep/targets: soft softmax targets: loss, G, and the estimators agree with the exact e") {
  Setup<double> s(90, 62);
  Rng rng(3);
  const Tensor<double> t = soft_targets(8, 10, rng);
  const auto ro = ep::readout(s.net, s.u0, t);
  // by hand: z = V r_K + c, l = -sum t log p, G = V^T (p - t)
  double loss = 0;
  for (index_t b = 0; b < 8; ++b) {
    Eigen::VectorXd r(10);  // s_K = 10
    for (index_t i = 0; i < 10; ++i) r(i) = ep::phi(s.net.activation, s.u0.layers[2](b, i));
    Eigen::VectorXd z = s.net.V.value().matrix() * r + s.net.c.value().vector();
    const double m = z.maxCoeff();
    const Eigen::VectorXd p = (z.array() - m).exp() / (z.array() - m).exp().sum();
    Eigen::VectorXd tb(10);
    for (index_t j = 0; j < 10; ++j) tb(j) = t(b, j);
    loss -= (tb.array() * p.array().log()).sum() / 8;
    const Eigen::VectorXd G = s.net.V.value().matrix().transpose() * (p - tb);
    for (index_t i = 0; i < 10; ++i) CHECK(ro.G(b, i) == doctest::Approx(G(i)).epsilon(1e-13));
  }
  CHECK(ro.loss == doctest::Approx(loss).epsilon(1e-13));
  const auto ex = ep::exact_errors(s.net, s.batch.X, t, s.u0);
  ep::HepOptions cs;
  cs.N = 0;
  cs.relax.max_iters = 200;
  CHECK(ep::relative_error(ep::hep_error(s.net, s.batch.X, t, s.u0, cs).e, ex.e) <= 1e-10);
  const auto e8 = ep::hep_error(s.net, s.batch.X, t, s.u0, ep_test::tight_hep(8, 0.5));
  CHECK(ep::relative_error(e8.e, ex.e) <= 1e-5);
  CHECK(ep_test::max_abs_diff(ep::reference::hep_error(s.net, s.batch.X, t, s.u0, ep_test::tight_hep(4, 0.5)),
                              ep::hep_error(s.net, s.batch.X, t, s.u0, ep_test::tight_hep(4, 0.5)).e) <= 1e-12);
}

TEST_CASE("ep/targets: the RBP gradient with real targets equals finite differences of the loss") {
  Rng rng(4);
  const std::pair<ep::Readout, ep::Activation> cases[] = {{ep::Readout::softmax, ep::Activation::sigmoid},
                                                          {ep::Readout::mse, ep::Activation::tanh}};
  for (const auto& c : cases) {
    Setup<double> s(90, 63, {6, 8, 5}, 4, c.second, c.first);
    REQUIRE(s.free.converged == 4);
    Tensor<double> t = c.first == ep::Readout::softmax ? soft_targets(4, 10, rng) : Tensor<double>(Shape{4, 5});
    if (c.first == ep::Readout::mse)
      for (auto& v : t) v = rng.normal();
    const auto ex = ep::exact_errors(s.net, s.batch.X, t, s.u0);
    const auto g = ep::error_gradients(s.net, s.batch.X, t, s.u0, ex.delta);
    auto params = s.net.parameters();
    for (std::size_t p = 0; p < params.size(); ++p)
      for (int k = 0; k < 3; ++k) {
        const index_t i = index_t(rng.below(std::uint64_t(params[p].numel())));
        double& w = params[p].value().flat(i);
        const double w0 = w, h = 1e-5;
        w = w0 + h;
        const double lp = loss_at_fixed_point(s.net, s, t);
        w = w0 - h;
        const double lm = loss_at_fixed_point(s.net, s, t);
        w = w0;
        const double fd = (lp - lm) / (2 * h), gd = g[p].flat(i);
        INFO(ep::to_string(c.second), " ", params[p].name(), "[", i, "]: fd ", fd, " rbp ", gd);
        CHECK(std::abs(fd - gd) <= 1e-4 * std::max(std::abs(gd), 1e-6) + 1e-9);
      }
  }
}

TEST_CASE("ep/targets: training on real targets lowers the loss; accuracy is NaN") {
  Setup<double> s(0, 64, {6, 8, 5}, 16, ep::Activation::tanh, ep::Readout::mse);
  Rng rng(5);
  Tensor<double> t(Shape{16, 5});
  for (auto& v : t) v = 0.5 * rng.normal();
  ep::FitOptions o;
  o.epochs = 15;
  o.batch = 8;
  o.lr = 0.02;
  o.train.free_phase.gamma = 0.5;
  o.train.hep.relax.gamma = 0.5;
  o.train.hep.relax.max_iters = 40;
  std::vector<double> loss;
  ep::fit(s.net, s.batch.X, t, o, [&](const ep::EpochInfo& e) {
    loss.push_back(e.loss);
    CHECK(std::isnan(e.accuracy));
  });
  REQUIRE(loss.size() == 15);
  CHECK(loss.back() < 0.5 * loss.front());
  const ep::EvalStats ev = ep::evaluate(s.net, s.batch.X, t);
  CHECK(std::isnan(ev.accuracy));
  CHECK(ev.loss < loss.front());
}

TEST_CASE("ep/targets: bad targets") {
  Setup<double> s(90, 65);  // softmax, C = 10, batch 8
  const ep::HepOptions o;
  Tensor<double> t = one_hot(s.batch.y, 10);
  CHECK_NOTHROW(ep::hep_error(s.net, s.batch.X, t, s.u0, o));
  CHECK_THROWS_AS(ep::hep_error(s.net, s.batch.X, Tensor<double>(Shape{8, 9}), s.u0, o), ShapeError);
  CHECK_THROWS_AS(ep::hep_error(s.net, s.batch.X, Tensor<double>(Shape{7, 10}), s.u0, o), ShapeError);
  CHECK_THROWS_AS(ep::readout(s.net, s.u0, Tensor<double>()), ShapeError);
  Tensor<double> bad = t.clone();
  bad(2, 3) = std::nan("");
  CHECK_THROWS_AS(ep::exact_errors(s.net, s.batch.X, bad, s.u0), ValueError);
  bad = t.clone();
  bad(1, 0) = 0.5;  // row sums to 1.5
  CHECK_THROWS_AS(ep::rbp_error(s.net, s.batch.X, bad, s.u0), ValueError);
  bad = t.clone();
  bad(1, 0) -= 0.5;  // a negative entry ...
  bad(1, 1) += 0.5;  // ... in a row that sums to 1
  CHECK_THROWS_AS(ep::readout(s.net, s.u0, bad), ValueError);
  CHECK_THROWS_AS(ep::error_gradients(s.net, s.batch.X, std::vector<int>(8, 10), s.u0, s.u0), ValueError);
  CHECK_THROWS_AS(ep::error_gradients(s.net, s.batch.X, std::vector<int>(7, 1), s.u0, s.u0), ShapeError);
  // nothing is modified by a call that throws
  ep::State<double> u = s.u0.clone();
  CHECK_THROWS_AS(ep::relax(s.net, s.batch.X, Tensor<double>(Shape{8, 3}), 0.5, u), ShapeError);
  CHECK(ep_test::same_bits(u, s.u0));
  // mse accepts any finite reals, but not NaN
  Setup<double> m(90, 66, {16, 24, 24, 10}, 8, ep::Activation::dsilu, ep::Readout::mse);
  Tensor<double> r(Shape{8, 10}, -3.5);
  CHECK_NOTHROW(ep::readout(m.net, m.u0, r));
  r(0, 0) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(ep::readout(m.net, m.u0, r), ValueError);
}

}  // namespace weft_unit_ep_targets_test
