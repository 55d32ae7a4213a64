// Tests of weft/ep/estimators.hpp - spec V1 (symmetric weights: Cauchy estimator error and its
// decay with N and |beta|, gradient cosine, conjugate half-sum = full sum, complex step, online
// estimator) and V2 (asymmetric weights: the nudge bias vanishes but the asymmetry bias stays),
// plus agreement with the per-sample reference and bad input.
#include "ep/ep_test_util.hpp"

namespace weft_unit_ep_estimators_test {

using namespace weft;
using ep_test::Setup;
using ep_test::tight_hep;

namespace {

double rel_to(const Setup<double>& s, const ep::State<double>& ref, int N, double abs_beta) {
  const auto est = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, tight_hep(N, abs_beta));
  CHECK(est.report.ok());
  CHECK(est.report.converged == est.report.columns);
  return ep::relative_error(est.e, ref);
}

}  // namespace

TEST_CASE("ep/estimators: V1 Cauchy estimator error decays as |beta|^N (symmetric weights)") {
  for (std::uint64_t seed : {31u, 32u}) {
    Setup<double> s(0, seed);
    const auto ex = ep::exact_errors(s.net, s.batch.X, s.batch.y, s.u0);
    const ep::State<double>& delta = ex.delta;  // = e exactly for alpha = 0
    const double r2 = rel_to(s, delta, 2, 0.5), r4 = rel_to(s, delta, 4, 0.5), r8 = rel_to(s, delta, 8, 0.5);
    INFO("seed ", seed, ": rel N=2 ", r2, ", N=4 ", r4, ", N=8 ", r8);
    CHECK(r2 <= 3e-2);
    CHECK(r4 <= 2e-3);
    CHECK(r8 <= 1e-5);
    CHECK(r2 > r4);
    CHECK(r4 > r8);
    const double q1 = rel_to(s, delta, 1, 0.5) / rel_to(s, delta, 1, 0.25);
    const double q2 = r2 / rel_to(s, delta, 2, 0.25);
    const double q4 = r4 / rel_to(s, delta, 4, 0.25);
    INFO("ratios |beta| 0.5 / 0.25: N=1 ", q1, ", N=2 ", q2, ", N=4 ", q4);
    CHECK(q1 >= 1.7);
    CHECK(q1 <= 2.4);
    CHECK(q2 >= 3.4);
    CHECK(q2 <= 4.6);
    CHECK(q4 >= 13);
    CHECK(q4 <= 19);
    // gradient cosine of g(e_4) and g(delta), readout excluded
    const auto e4 = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, tight_hep(4, 0.5));
    const auto g4 = ep::error_gradients(s.net, s.batch.X, s.batch.y, s.u0, e4.e);
    const auto gd = ep::error_gradients(s.net, s.batch.X, s.batch.y, s.u0, delta);
    CHECK(ep::gradient_cosine(g4, gd, s.net.dynamics_parameters()) >= 0.9999);
  }
}

TEST_CASE("ep/estimators: V1 the conjugate half-phase sum equals the full N-phase sum") {
  Setup<double> s(90, 33);
  for (int N : {3, 4, 6}) {
    ep::HepOptions half = tight_hep(N, 0.5), full = half;
    full.conjugate_symmetry = false;
    const auto a = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, half);
    const auto b = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, full);
    CHECK(a.report.columns == 8 * (N / 2 + 1));
    CHECK(b.report.columns == 8 * N);
    CHECK(ep_test::max_abs_diff(a.e, b.e) <= 1e-12);
  }
}

TEST_CASE("ep/estimators: V1 the complex step gives the exact e") {
  for (double alpha : {0.0, 90.0}) {
    Setup<double> s(alpha, 34);
    const auto ex = ep::exact_errors(s.net, s.batch.X, s.batch.y, s.u0);
    ep::HepOptions o;
    o.N = 0;
    o.relax.gamma = 1;
    o.relax.max_iters = 200;  // fixed count from u0
    const auto cs = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o);
    CHECK(cs.report.iterations == 200);
    CHECK(ep::relative_error(cs.e, ex.e) <= 1e-10);
  }
}

TEST_CASE("ep/estimators: with a tolerance every estimator makes progress from the free state") {
  // Regression (issue 21): the complex step's imaginary residual starts at ~h |G| = 1e-20, below
  // any tol, and used to stop it after 0 updates with e = 0 and no flag. The imaginary plane is
  // now measured relative to min(1, |Im beta|).
  for (double alpha : {0.0, 90.0}) {
    Setup<double> s(alpha, 39);
    const auto ex = ep::exact_errors(s.net, s.batch.X, s.batch.y, s.u0);
    for (double tol : {1e-14, 1e-10}) {
      ep::HepOptions o;
      o.N = 0;
      o.relax.gamma = 1;
      o.relax.tol = tol;
      o.relax.max_iters = 2000;
      const auto cs = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o);
      INFO("alpha ", alpha, ", tol ", tol, ": ", cs.report.iterations, " updates, max residual ",
           cs.report.max_residual);
      CHECK(cs.report.converged == cs.report.columns);
      for (index_t it : cs.report.column_iterations) CHECK(it >= 10);
      CHECK(ep::relative_error(cs.e, ex.e) <= 100 * tol);
      // the stopped state's imaginary residual is tol relative to h, so far below tol itself
      CHECK(cs.report.max_residual <= tol);
    }
    for (int N : {1, 2, 4}) {  // the Cauchy estimators stop at tol too, and agree with a fixed count
      ep::HepOptions o = tight_hep(N, 0.5);
      o.relax.tol = 1e-12;
      const auto a = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o);
      o.relax.tol = 0;
      o.relax.max_iters = 600;
      const auto b = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o);
      CHECK(a.report.converged == a.report.columns);
      for (index_t it : a.report.column_iterations) CHECK(it >= 1);
      CHECK(ep::relative_error(a.e, b.e) <= 1e-9);
    }
    ep::RbpOptions r;  // the iterative RBP loop starts from delta = 0, away from its fixed point
    r.tol = 1e-12;
    r.max_iters = 2000;
    const auto rb = ep::rbp_error(s.net, s.batch.X, s.batch.y, s.u0, r);
    CHECK(rb.iterations >= 1);
    CHECK(ep::relative_error(rb.delta, ex.delta) <= 1e-9);
  }
}

TEST_CASE("ep/estimators: V1 the online estimator from u = 0") {
  Setup<double> s(0, 35);
  const auto ex = ep::exact_errors(s.net, s.batch.X, s.batch.y, s.u0);
  ep::OnlineOptions o;
  o.N = 4;
  o.blocks = 20;
  o.abs_beta = 0.5;
  o.relax.gamma = 1;
  o.relax.max_iters = 30;
  const auto on = ep::online_hep(s.net, s.batch.X, s.batch.y, o);
  CHECK(on.report.ok());
  CHECK(on.report.iterations == 600);
  CHECK(ep::relative_error(on.e, ex.delta) <= 2e-3);
  CHECK(ep::relative_error(on.u_mean, s.u0) <= 1e-3);
}

TEST_CASE("ep/estimators: V2 asymmetric weights: the nudge bias vanishes, the asymmetry bias stays") {
  for (std::uint64_t seed : {36u, 37u}) {
    Setup<double> s(90, seed);
    const auto ex = ep::exact_errors(s.net, s.batch.X, s.batch.y, s.u0);
    const auto e8 = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, tight_hep(8, 0.5));
    CHECK(ep::relative_error(e8.e, ex.e) <= 1e-5);
    const auto g8 = ep::error_gradients(s.net, s.batch.X, s.batch.y, s.u0, e8.e);
    const auto gd = ep::error_gradients(s.net, s.batch.X, s.batch.y, s.u0, ex.delta);
    const double c = ep::gradient_cosine(g8, gd, s.net.dynamics_parameters());
    INFO("gradient cosine ", c);
    CHECK(c <= 0.9);
  }
}

TEST_CASE("ep/estimators: batched estimate equals the per-sample reference") {
  Setup<double> s(90, 38, {16, 24, 24, 10}, 8, ep::Activation::sigmoid);
  for (int N : {1, 2, 4, 5}) {
    ep::HepOptions o;
    o.N = N;
    o.abs_beta = 0.3;
    o.relax.max_iters = 25;
    o.relax.block_rows = 6;
    const auto a = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o);
    const auto b = ep::reference::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o);
    CHECK(ep::relative_error(a.e, b) <= 1e-12);
  }
}

TEST_CASE("ep/estimators: float estimates agree with double") {
  Setup<double> sd(90, 39);
  ep::DenseNet<float> nf;
  nf.sizes = sd.net.sizes;
  nf.activation = sd.net.activation;
  for (auto& p : sd.net.W) nf.W.emplace_back(p.value().cast<float>(), p.name());
  for (auto& p : sd.net.b) nf.b.emplace_back(p.value().cast<float>(), p.name());
  for (auto& p : sd.net.B) nf.B.emplace_back(p.value().cast<float>(), p.name());
  nf.V = Parameter<float>(sd.net.V.value().cast<float>(), "V");
  nf.c = Parameter<float>(sd.net.c.value().cast<float>(), "c");
  ep::State<float> u0f;
  for (const auto& t : sd.u0.layers) u0f.layers.push_back(t.cast<float>());
  ep::HepOptions o;
  o.N = 4;
  o.relax.max_iters = 40;
  const auto a = ep::hep_error(sd.net, sd.batch.X, sd.batch.y, sd.u0, o);
  const auto b = ep::hep_error(nf, sd.batch.X.cast<float>(), sd.batch.y, u0f, o);
  ep::State<double> bd;
  for (const auto& t : b.e.layers) bd.layers.push_back(t.cast<double>());
  CHECK(ep::relative_error(bd, a.e) <= 1e-4);
}

TEST_CASE("ep/estimators: bad input") {
  Setup<double> s(90, 40);
  ep::HepOptions o;
  o.N = -1;
  CHECK_THROWS_AS(ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o), ValueError);
  o = {};
  o.abs_beta = 0;
  CHECK_THROWS_AS(ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o), ValueError);
  o.abs_beta = -0.5;
  CHECK_THROWS_AS(ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o), ValueError);
  o.abs_beta = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o), ValueError);
  o = {};
  o.N = 0;
  o.h = 0;
  CHECK_THROWS_AS(ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o), ValueError);
  o = {};
  ep::State<double> nan_u = s.u0.clone();
  nan_u.layers[2](1, 1) = std::nan("");
  CHECK_THROWS_AS(ep::hep_error(s.net, s.batch.X, s.batch.y, nan_u, o), ValueError);
  ep::State<double> wrong = s.u0.clone();
  wrong.layers[1] = Tensor<double>(Shape{8, 23});
  CHECK_THROWS_AS(ep::hep_error(s.net, s.batch.X, s.batch.y, wrong, o), ShapeError);
  CHECK_THROWS_AS(ep::hep_error(s.net, s.batch.X, std::vector<int>(5, 0), s.u0, o), ShapeError);
  ep::OnlineOptions oo;
  oo.N = 0;
  CHECK_THROWS_AS(ep::online_hep(s.net, s.batch.X, s.batch.y, oo), ValueError);
  oo = {};
  oo.abs_beta = 0;
  CHECK_THROWS_AS(ep::online_hep(s.net, s.batch.X, s.batch.y, oo), ValueError);
  oo = {};
  oo.blocks = 0;
  CHECK_THROWS_AS(ep::online_hep(s.net, s.batch.X, s.batch.y, oo), ValueError);
  o = {};
  o.N = 0;
  CHECK_THROWS_AS(ep::reference::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o), ValueError);
}

}  // namespace weft_unit_ep_estimators_test
