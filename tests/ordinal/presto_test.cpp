// Tests of weft/ordinal/{solver,presto}.hpp: the lambda_max point (P2), the start of the path
// (P3), the proportional-odds limit (P4), the KKT certificate (interior and on the ordering
// constraints), Newton vs FISTA, frequency weights vs expanded rows, the non-parallel MLE of the
// housing table against VGAM, and thread / scalar-type independence of cross-validation.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "ordinal/ordinal_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/ordinal/baselines.hpp"
#include "weft/ordinal/datasets.hpp"
#include "weft/ordinal/presto.hpp"
#include "weft/ordinal/simulate.hpp"

namespace weft_unit_ordinal_presto_test {

using namespace weft;

namespace {
index_t nonzeros(const Tensor<double>& theta, index_t p) {
  index_t c = 0;
  for (index_t j = 0; j < theta.numel(); ++j) c += (j % (p + 1) != 0 && theta(j) != 0) ? 1 : 0;
  return c;
}
}  // namespace

TEST_CASE("ordinal/presto: P2 lambda >= lambda_max gives psi = 0 exactly and alpha = logit(cumulative frequencies)") {
  const auto d = ordinal_test::random_ordinal(300, 4, 4, 31);
  const double lmax = ordinal::lambda_max(d.x, d.y);
  CHECK(lmax > 0);
  std::vector<double> F(3, 0.0);
  for (int c : d.y)
    for (int k = c; k < 3; ++k) F[std::size_t(k)] += 1.0 / 300;
  for (double scale : {1.0, 1.5}) {
    const auto fit = ordinal::fit_presto(d.x, d.y, scale * lmax);
    CHECK(fit.converged);
    CHECK(nonzeros(fit.theta, 4) == 0);
    for (index_t j = 0; j < 4; ++j)
      for (index_t k = 0; k < 3; ++k) CHECK(fit.model.coef(j, k) == 0);
    for (index_t k = 0; k < 3; ++k)
      CHECK(std::abs(fit.model.intercepts(k) - std::log(F[std::size_t(k)] / (1 - F[std::size_t(k)]))) <= 1e-8);
  }
}

TEST_CASE("ordinal/presto: P3 just below lambda_max some psi enters; the support grows along the path") {
  const auto d = ordinal_test::random_ordinal(400, 6, 4, 32);
  const double lmax = ordinal::lambda_max(d.x, d.y);
  CHECK(nonzeros(ordinal::fit_presto(d.x, d.y, 0.9 * lmax).theta, 6) >= 1);
  const auto path = ordinal::presto_path(d.x, d.y);
  REQUIRE(path.fits.size() == 20);
  CHECK(path.lambdas.front() == doctest::Approx(lmax).epsilon(1e-12));
  CHECK(path.lambdas.back() == doctest::Approx(0.01 * lmax).epsilon(1e-12));
  int increasing = 0;
  for (std::size_t i = 1; i < path.fits.size(); ++i)
    increasing += nonzeros(path.fits[i].theta, 6) >= nonzeros(path.fits[i - 1].theta, 6) ? 1 : 0;
  CHECK(increasing >= 16);  // "in most steps": the lasso path may drop a variable now and then
  CHECK(nonzeros(path.fits.back().theta, 6) > nonzeros(path.fits[1].theta, 6));
  for (const auto& f : path.fits) CHECK(f.converged);
}

TEST_CASE("ordinal/presto: P4 psi_1.. fixed at 0 with lambda = 0 is the proportional-odds MLE") {
  for (index_t K : {3, 5}) {
    CAPTURE(K);
    const auto d = ordinal_test::random_ordinal(250, 3, K, 40 + std::uint64_t(K));
    ordinal::PrestoOptions o;
    o.proportional_odds = true;
    const auto pr = ordinal::fit_presto(d.x, d.y, 0.0, o);
    const auto po = ordinal::fit_proportional_odds(d.x, d.y);
    CHECK(pr.converged);
    CHECK(po.converged);
    WEFT_CHECK_CLOSE(pr.model.coef, po.model.coef, 1e-6);
    WEFT_CHECK_CLOSE(pr.model.intercepts, po.model.intercepts, 1e-6);
    for (index_t k = 1; k < K - 1; ++k)
      for (index_t j = 0; j < 3; ++j) CHECK(pr.model.coef(j, k) == pr.model.coef(j, 0));
    CHECK(pr.nll == doctest::Approx(po.nll).epsilon(1e-12));
  }
}

TEST_CASE("ordinal/presto: fixed_differences holds a chosen subset of psi_k at 0; all of them is proportional odds") {
  const auto d = ordinal_test::random_ordinal(400, 3, 5, 46);  // K = 5: differences psi_1, psi_2, psi_3
  ordinal::PrestoOptions sub;
  sub.fixed_differences = {3, 1};
  ordinal::PrestoOptions all;
  all.fixed_differences = {2, 3, 1};
  ordinal::PrestoOptions po;
  po.proportional_odds = true;
  const double lmax = ordinal::lambda_max(d.x, d.y, sub);
  for (double lam : {0.0, 0.05 * lmax}) {
    CAPTURE(lam);
    const auto fs = ordinal::fit_presto(d.x, d.y, lam, sub);
    const auto ff = ordinal::fit_presto(d.x, d.y, lam);
    const auto fa = ordinal::fit_presto(d.x, d.y, lam, all);
    const auto fp = ordinal::fit_presto(d.x, d.y, lam, po);
    REQUIRE(fs.converged);
    CHECK(ordinal::kkt_violation(d.x, d.y, fs, sub) <= 1e-8);
    const Tensor<double> psi = fs.psi();
    bool free_moves = false;
    for (index_t j = 0; j < 3; ++j) {
      CHECK(fs.theta(1 * 4 + 1 + j) == 0);  // psi_1 and psi_3 exactly 0 on the solver's scale
      CHECK(fs.theta(3 * 4 + 1 + j) == 0);
      CHECK(fs.model.coef(j, 1) == fs.model.coef(j, 0));  // so beta_1 = beta_0, beta_3 = beta_2
      CHECK(fs.model.coef(j, 3) == fs.model.coef(j, 2));
      free_moves = free_moves || psi(j, 2) != 0;
    }
    if (lam == 0) CHECK(free_moves);  // psi_2 is free and the data are non-parallel
    // nested models: proportional odds <= the subset <= free, in likelihood (lambda = 0)
    if (lam == 0) {
      CHECK(fp.nll >= fs.nll - 1e-12);
      CHECK(fs.nll >= ff.nll - 1e-12);
      CHECK(fs.nll > ff.nll + 1e-6);  // the constraint binds
    }
    // the full subset, in any order, is proportional_odds = true, bit for bit
    CHECK(test::identical(fa.model.coef, fp.model.coef));
    CHECK(test::identical(fa.model.intercepts, fp.model.intercepts));
  }
  // the path and cross-validation keep the constraint
  sub.num_lambda = 5;
  const auto cv = ordinal::presto(d.x, d.y, sub);
  for (index_t j = 0; j < 3; ++j) CHECK(cv.fit.model.coef(j, 1) == cv.fit.model.coef(j, 0));
  for (const auto& f : ordinal::presto_path(d.x, d.y, sub).fits)
    for (index_t j = 0; j < 3; ++j) CHECK(f.model.coef(j, 3) == f.model.coef(j, 2));
}

TEST_CASE("ordinal/presto: unpenalised non-parallel fit of the housing table equals VGAM's") {
  // R: vglm(Sat ~ Infl + Type + Cont, cumulative(parallel = FALSE), weights = Freq,
  //         control = vglm.control(epsilon = 1e-13)); same sign convention logit P(y <= k)
  const auto h = ordinal::load_housing<double>();
  const auto fit = ordinal::fit_presto(h.x, h.y, 0.0, {}, h.weights);
  CHECK(fit.converged);
  CHECK(fit.barrier_mu == 0);
  const double a[2] = {-0.4461742524, 0.6465959340};
  const double b[6][2] = {{-0.5924625447, -0.5498029450}, {-1.2191690659, -1.3077504232}, {0.6011590204, 0.5379373822},
                          {0.1911745673, 0.4830531259},   {1.0789969919, 1.1189979222},   {-0.4304866407, -0.2956602900}};
  for (index_t k = 0; k < 2; ++k) {
    CHECK(std::abs(fit.model.intercepts(k) - a[k]) <= 1e-7);
    for (index_t j = 0; j < 6; ++j) CHECK(std::abs(fit.model.coef(j, k) - b[j][k]) <= 1e-7);
  }
  CHECK(2 * 1681 * fit.nll == doctest::Approx(3470.57870008).epsilon(1e-10));  // VGAM's deviance
}

TEST_CASE("ordinal/presto: the KKT check certifies path fits and fails for a perturbed fit") {
  const auto d = ordinal_test::random_ordinal(300, 5, 4, 33);
  ordinal::PrestoOptions o;
  const auto path = ordinal::presto_path(d.x, d.y, o);
  for (std::size_t i = 0; i < path.fits.size(); ++i) {
    const auto& f = path.fits[i];
    const double k = ordinal::kkt_violation(d.x, d.y, f, o);
    CHECK(k == doctest::Approx(f.kkt).epsilon(1e-3).scale(1e-12));
    CHECK(k <= (f.barrier_mu > 0 ? 1e-7 : 1e-10));
  }
  ordinal::PrestoFit<double> bad = path.fits[10];
  bad.theta(6) += 1e-3;  // alpha_1 (block 1, intercept) moved off its optimum
  CHECK(ordinal::kkt_violation(d.x, d.y, bad, o) > 1e-5);
}

TEST_CASE("ordinal/presto: fits on the ordering constraints are certified optimal (barrier continuation)") {
  // P7-type data at small lambda: the minimiser puts some intermediate class probability at 0
  Rng rng = Rng(2023).stream(1);
  const auto sim = ordinal::simulate<double>(ordinal::SimulationOptions{}, rng);
  const double lmax = ordinal::lambda_max(sim.x, sim.y);
  const auto fit = ordinal::fit_presto(sim.x, sim.y, 0.02 * lmax);
  CHECK(fit.barrier_mu > 0);
  CHECK(fit.converged);
  CHECK(ordinal::kkt_violation(sim.x, sim.y, fit) <= 1e-7);
  // feasible, and no feasible nearby point is better
  const auto eta = ordinal::linear_predictor(fit.model, sim.x);
  double min_slack = 1;
  for (index_t i = 0; i < eta.dim(0); ++i)
    for (index_t k = 0; k + 1 < 3; ++k) min_slack = std::min(min_slack, eta(i, k + 1) - eta(i, k));
  CHECK(min_slack >= 0);
  CHECK(min_slack < 1e-6);  // a constraint is active
  const auto P = ordinal::detail::make_problem(sim.x, sim.y, {}, {}, 0, true, true, "test");
  ordinal::PrestoOptions o;
  const auto pen = ordinal::detail::make_penalty(P, o, 0.02 * lmax);
  ordinal::detail::Workspace<double> ws(P);
  ordinal::detail::Vec<double> th(P.dim());
  for (index_t j = 0; j < P.dim(); ++j) th(j) = fit.theta(j);
  const double F0 = ordinal::detail::evaluate(P, th.data(), ws, false) + ordinal::detail::penalty_value(pen, th);
  CHECK(F0 == doctest::Approx(fit.objective).epsilon(1e-12));
  Rng dir(5);
  int tried = 0;
  for (int r = 0; r < 200 && tried < 40; ++r) {
    ordinal::detail::Vec<double> t = th;
    for (index_t j = 0; j < P.dim(); ++j) t(j) += 1e-5 * dir.normal();
    const double F = ordinal::detail::evaluate(P, t.data(), ws, false) + ordinal::detail::penalty_value(pen, t);
    if (!std::isfinite(F)) continue;  // left the feasible set
    ++tried;
    CHECK(F >= F0 - 1e-12);
  }
  CHECK(tried >= 10);
}

TEST_CASE("ordinal/presto: Newton and FISTA reach the same optimum") {
  const auto d = ordinal_test::random_ordinal(300, 5, 4, 34);
  const double lmax = ordinal::lambda_max(d.x, d.y);
  for (double frac : {0.5, 0.1}) {
    CAPTURE(frac);
    ordinal::PrestoOptions on, of;
    of.solver = ordinal::Solver::fista;
    of.tol = 1e-7;  // a first-order method cannot certify much less in double: its steps stop changing F
    const auto a = ordinal::fit_presto(d.x, d.y, frac * lmax, on);
    const auto b = ordinal::fit_presto(d.x, d.y, frac * lmax, of);
    CHECK(a.converged);
    CHECK(b.converged);
    CHECK(b.objective == doctest::Approx(a.objective).epsilon(1e-7));
    CHECK(a.objective <= b.objective + 1e-12);
    WEFT_CHECK_CLOSE(b.model.coef, a.model.coef, 1e-4);
    WEFT_CHECK_CLOSE(b.model.intercepts, a.model.intercepts, 1e-4);
    CHECK(b.iterations > a.iterations);
  }
}

TEST_CASE("ordinal/presto: frequency weights equal expanded rows; elastic net and penalize_first = false") {
  const auto d = ordinal_test::random_ordinal(120, 3, 4, 35);
  std::vector<double> w;
  ordinal_test::Data e;
  std::vector<double> rows;
  for (index_t i = 0; i < 120; ++i) {
    const int c = 1 + int(i % 3);
    w.push_back(double(c));
    for (int r = 0; r < c; ++r) {
      for (index_t j = 0; j < 3; ++j) rows.push_back(d.x(i, j));
      e.y.push_back(d.y[std::size_t(i)]);
    }
  }
  e.x = Tensor<double>::from_values(rows, Shape{index_t(e.y.size()), 3});
  for (double l1r : {1.0, 0.5, 0.0}) {
    for (bool first : {true, false}) {
      CAPTURE(l1r);
      CAPTURE(first);
      ordinal::PrestoOptions o;
      o.l1_ratio = l1r;
      o.penalize_first = first;
      const double lam = 0.2 * ordinal::lambda_max(d.x, d.y, o, w);
      CHECK(lam == doctest::Approx(0.2 * ordinal::lambda_max(e.x, e.y, o)).epsilon(1e-12));
      const auto a = ordinal::fit_presto(d.x, d.y, lam, o, w);
      const auto b = ordinal::fit_presto(e.x, e.y, lam, o);
      CHECK(a.converged);
      WEFT_CHECK_CLOSE(a.model.coef, b.model.coef, 1e-8);
      WEFT_CHECK_CLOSE(a.model.intercepts, b.model.intercepts, 1e-8);
      CHECK(ordinal::kkt_violation(d.x, d.y, a, o, w) <= 1e-7);
    }
  }
  // with psi_0 unpenalised, lambda_max leaves the proportional-odds MLE in place
  ordinal::PrestoOptions o;
  o.penalize_first = false;
  const auto top = ordinal::fit_presto(d.x, d.y, ordinal::lambda_max(d.x, d.y, o), o);
  const auto po = ordinal::fit_proportional_odds(d.x, d.y);
  WEFT_CHECK_CLOSE(top.model.coef, po.model.coef, 1e-6);
}

TEST_CASE("ordinal/presto: cross-validation gives the same bits with 1 and 2 threads") {
  const auto d = ordinal_test::random_ordinal(400, 4, 4, 36);
  ordinal::PrestoOptions o;
  o.seed = 7;
  ordinal::PrestoCv<double> a, b;
  {
    ordinal_test::ThreadGuard g(1);
    a = ordinal::presto(d.x, d.y, o);
  }
  {
    ordinal_test::ThreadGuard g(2);
    b = ordinal::presto(d.x, d.y, o);
  }
  CHECK(a.best == b.best);
  CHECK(a.mean_brier == b.mean_brier);
  CHECK(test::identical(a.fit.model.coef, b.fit.model.coef));
  // lambda* is the largest lambda attaining the minimum of the averaged Brier score
  for (std::size_t l = 0; l < a.mean_brier.size(); ++l) {
    if (l < std::size_t(a.best)) CHECK(a.mean_brier[l] > a.mean_brier[std::size_t(a.best)]);
    else CHECK(a.mean_brier[l] >= a.mean_brier[std::size_t(a.best)]);
  }
  CHECK(a.lambda_star == a.lambdas[std::size_t(a.best)]);
  CHECK(a.fit.lambda == a.lambda_star);
  o.seed = 8;  // another partition gives other fold scores
  CHECK(ordinal::presto(d.x, d.y, o).mean_brier != a.mean_brier);
}

TEST_CASE("ordinal/presto: float and double choose the same lambda* on the P7 design (first two seeds)") {
  for (std::uint64_t r = 0; r < 2; ++r) {
    CAPTURE(r);
    Rng rng = Rng(2023).stream(r);
    const auto sim = ordinal::simulate<double>(ordinal::SimulationOptions{}, rng);
    const auto a = ordinal::presto(sim.x, sim.y);
    const auto b = ordinal::presto(sim.x.cast<float>(), sim.y);
    CHECK(a.best == b.best);
    CHECK(b.fit.converged);
    CHECK(double(b.fit.model.coef(0, 2)) == doctest::Approx(a.fit.model.coef(0, 2)).epsilon(1e-3).scale(1e-3));
  }
}

}  // namespace weft_unit_ordinal_presto_test
