// Tests of weft/ep/train.hpp: the gradient a training step applies is the estimator's plus lambda
// times the homeostatic one, every estimator lowers the loss of a batch, fit is deterministic and
// counts its steps, evaluation counts diverged samples as errors, and bad input.
#include "ep/ep_test_util.hpp"

namespace weft_unit_ep_train_test {

using namespace weft;
using ep_test::Setup;

namespace {

ep::TrainOptions quick_options(ep::Estimator est) {
  ep::TrainOptions o;
  o.estimator = est;
  o.free_phase.gamma = 0.5;
  o.free_phase.max_iters = 80;
  o.hep.relax.gamma = 0.5;
  o.hep.relax.max_iters = 40;
  o.rbp.max_iters = 80;
  o.rbp.gamma = 0.5;
  o.online.relax.gamma = 0.5;
  o.online.relax.max_iters = 20;
  o.online.blocks = 8;
  return o;
}

}  // namespace

TEST_CASE("ep/train: a step applies the estimator's gradient plus lambda times the homeostatic one") {
  Setup<double> s(90, 51);
  ep::TrainOptions o = quick_options(ep::Estimator::hep);
  o.homeo_lambda = 2.0;
  o.homeo_draws = 3;
  nn::SGDOptions so;
  so.lr = 0;  // keep the weights: inspect the gradients
  nn::SGD<double> opt(s.net.parameters(), so);
  for (auto& p : s.net.parameters()) p.grad().fill(7.0);  // train_step zeroes them first
  Rng rng(12), twin(12);
  const ep::StepStats st = ep::train_step(s.net, opt, s.batch.X, s.batch.y, o, rng);
  CHECK(st.free.iterations == 80);
  CHECK(st.nudged.columns == 16);
  // by hand
  ep::State<double> u0;
  ep::free_phase(s.net, s.batch.X, u0, o.free_phase);
  const auto est = ep::hep_error(s.net, s.batch.X, s.batch.y, u0, o.hep);
  auto g = ep::error_gradients(s.net, s.batch.X, s.batch.y, u0, est.e);
  ep::State<double> eps = ep::zero_state<double>(s.net, 8 * 3);
  for (auto& t : eps.layers)
    for (auto& x : t) x = twin.normal();
  const auto h = ep::homeostasis_gradient(s.net, eps);
  for (index_t l = 2; l <= s.net.layers(); ++l) {
    g[std::size_t(l - 1)].array() += 2.0 * h.W[std::size_t(l - 2)].array();
    g[std::size_t(2 * s.net.layers() + l - 2)].array() += 2.0 * h.B[std::size_t(l - 2)].array();
  }
  const auto params = s.net.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) CHECK(test::compare(params[i].grad(), g[i], 1e-12).ok);
  CHECK(st.homeo_loss == doctest::Approx(h.loss).epsilon(1e-12));
  CHECK(st.loss == doctest::Approx(ep::readout(s.net, u0, s.batch.y).loss).epsilon(1e-12));
}

TEST_CASE("ep/train: every estimator lowers the loss of a batch") {
  for (ep::Estimator est : {ep::Estimator::hep, ep::Estimator::rbp, ep::Estimator::online})
    for (int N : {0, 2}) {
      if (est != ep::Estimator::hep && N == 0) continue;
      Setup<double> s(0, 52, {16, 24, 10}, 16);
      ep::TrainOptions o = quick_options(est);
      o.hep.N = N;
      nn::AdamOptions ao;
      ao.lr = 0.01;
      nn::Adam<double> opt(s.net.parameters(), ao);
      Rng rng(13);
      const double first = ep::train_step(s.net, opt, s.batch.X, s.batch.y, o, rng).loss;
      double last = first;
      for (int k = 0; k < 40; ++k) last = ep::train_step(s.net, opt, s.batch.X, s.batch.y, o, rng).loss;
      INFO("estimator ", int(est), " N ", N, ": loss ", first, " -> ", last);
      CHECK(last < 0.5 * first);
    }
}

TEST_CASE("ep/train: fit is deterministic, counts steps, and lr 0 changes nothing") {
  Setup<double> s(90, 53, {16, 12, 10}, 50);
  ep::FitOptions fo;
  fo.epochs = 2;
  fo.batch = 16;
  fo.seed = 3;
  fo.train = quick_options(ep::Estimator::hep);
  fo.train.homeo_lambda = 1;
  std::vector<index_t> steps;
  Setup<double> s2(90, 53, {16, 12, 10}, 50);
  ep::fit<double>(s.net, s.batch.X, s.batch.y, fo, [&](const ep::EpochInfo& e) { steps.push_back(e.steps); });
  ep::fit<double>(s2.net, s2.batch.X, s2.batch.y, fo);
  CHECK(steps == std::vector<index_t>{3, 6});  // 50 / 16 = 3 batches per epoch (last dropped)
  const auto pa = s.net.parameters(), pb = s2.net.parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) CHECK(test::compare(pa[i].value(), pb[i].value(), 0).ok);
  Setup<double> s3(90, 53, {16, 12, 10}, 50);
  const auto before = s3.net.parameters()[0].value().clone();
  fo.lr = 0;
  fo.optimizer = ep::OptimizerKind::sgd;
  ep::fit<double>(s3.net, s3.batch.X, s3.batch.y, fo);
  CHECK(test::compare(s3.net.parameters()[0].value(), before, 0).ok);
}

TEST_CASE("ep/train: evaluate counts diverged samples as errors") {
  Setup<double> s(90, 54, {16, 24, 10}, 12);
  const ep::EvalStats ok = ep::evaluate(s.net, s.batch.X, s.batch.y);
  CHECK(ok.report.ok());
  CHECK(ok.accuracy >= 0.0);
  CHECK(ok.accuracy <= 1.0);
  Tensor<double> X = s.batch.X.clone();
  for (index_t i = 0; i < 12; i += 2) X.matrix().row(i).fill(1e300);  // finite inputs ...
  s.net.W[0].value().array() *= 1e10;                                  // ... whose drive overflows
  const ep::EvalStats bad = ep::evaluate(s.net, X, s.batch.y);
  CHECK(bad.report.diverged == 6);
  for (index_t i = 0; i < 12; ++i) CHECK(bad.report.column_diverged[std::size_t(i)] == (i % 2 == 0));
  CHECK(bad.accuracy <= 0.5);
}

TEST_CASE("ep/train: bad input") {
  Setup<double> s(90, 55);
  nn::SGD<double> opt(s.net.parameters());
  Rng rng(1);
  ep::TrainOptions o = quick_options(ep::Estimator::hep);
  o.homeo_lambda = -1;
  CHECK_THROWS_AS(ep::train_step(s.net, opt, s.batch.X, s.batch.y, o, rng), ValueError);
  o = quick_options(ep::Estimator::hep);
  o.hep.N = -2;
  CHECK_THROWS_AS(ep::train_step(s.net, opt, s.batch.X, s.batch.y, o, rng), ValueError);
  o = quick_options(ep::Estimator::hep);
  CHECK_THROWS_AS(ep::train_step(s.net, opt, s.batch.X, std::vector<int>(3, 1), o, rng), ShapeError);
  ep::FitOptions fo;
  fo.batch = 9;
  CHECK_THROWS_AS(ep::fit<double>(s.net, s.batch.X, s.batch.y, fo), ValueError);
  fo.batch = 4;
  fo.epochs = 0;
  CHECK_THROWS_AS(ep::fit<double>(s.net, s.batch.X, s.batch.y, fo), ValueError);
  // a diverging free phase is an error, not a silent NaN update
  s.net.W[0].value().array() *= 1e10;
  Tensor<double> X = s.batch.X.clone();
  X.matrix().row(3).fill(1e300);
  const auto before = s.net.parameters()[1].value().clone();
  CHECK_THROWS_AS(ep::train_step(s.net, opt, X, s.batch.y, quick_options(ep::Estimator::hep), rng), ValueError);
  CHECK(test::compare(s.net.parameters()[1].value(), before, 0).ok);
}

}  // namespace weft_unit_ep_train_test
