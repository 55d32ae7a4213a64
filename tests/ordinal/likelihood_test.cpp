// Tests of weft/ordinal/{kernels,likelihood,model}.hpp: the closed-form gradient against finite
// differences (P1) and against the tape gradient of the NLL written with core ops, the Hessian
// against differences of the gradient, the per-row kernel (scalar vs SIMD, infinite boundaries,
// threads), and the reparameterisation and probabilities (P6).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ordinal/ordinal_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/core/autograd/grad_check.hpp"
#include "weft/ordinal/likelihood.hpp"
#include "weft/ordinal/model.hpp"
#include "weft/ordinal/presto.hpp"
#include "weft/ordinal/simulate.hpp"

namespace weft_unit_ordinal_likelihood_test {

using namespace weft;

namespace {

/// A feasible point near proportional odds: alpha (K-1) increasing, psi (p, K-1) small beyond psi_0.
void random_point(index_t p, index_t K, Rng& rng, Tensor<double>& alpha, Tensor<double>& psi) {
  alpha = Tensor<double>(Shape{K - 1});
  psi = Tensor<double>(Shape{p, K - 1});
  for (index_t k = 0; k < K - 1; ++k) alpha(k) = -1.0 + 1.5 * double(k) + 0.1 * rng.uniform();
  for (index_t j = 0; j < p; ++j) {
    psi(j, 0) = rng.uniform(-0.4, 0.4);
    for (index_t k = 1; k < K - 1; ++k) psi(j, k) = rng.uniform(-0.05, 0.05);
  }
}

std::vector<double> random_weights(index_t n, Rng& rng) {
  std::vector<double> w;
  for (index_t i = 0; i < n; ++i) w.push_back(rng.uniform(0.5, 3.0));
  return w;
}

}  // namespace

TEST_CASE("ordinal/likelihood: P1 grad_check of the NLL w.r.t. (alpha, psi) in double") {
  const auto d = ordinal_test::random_ordinal(40, 3, 4, 21);
  Rng rng(3);
  Tensor<double> alpha, psi;
  random_point(3, 4, rng, alpha, psi);
  const std::vector<double> w = random_weights(40, rng);
  auto f = [&](Tape<double>&, const std::vector<Var<double>>& v) { return ordinal::cumulative_nll(v[0], v[1], d.x, d.y, w); };
  GradCheckOptions o;
  o.rtol = 1e-6;
  o.atol = 1e-9;
  const GradCheckResult r = grad_check(f, {alpha, psi}, o);
  WEFT_CHECK_GRAD(r);
  CHECK(r.checked == 3 + 9);
  CHECK(r.max_rel_error <= 1e-6);
}

TEST_CASE("ordinal/likelihood: closed-form gradient equals the tape gradient of the NLL built from core ops") {
  const index_t n = 60, p = 4, K = 4;
  const auto d = ordinal_test::random_ordinal(n, p, K, 8);
  Rng rng(4);
  Tensor<double> alpha, psi;
  random_point(p, K, rng, alpha, psi);
  const std::vector<double> w = random_weights(n, rng);
  double W = 0;
  for (double v : w) W += v;
  // eta = x (psi U) + alpha, U upper-triangular ones; pi = [S, 1] - [0, S]; f = -sum(Y log pi)
  Tensor<double> U(Shape{K - 1, K - 1}), Y(Shape{n, K});
  for (index_t l = 0; l < K - 1; ++l)
    for (index_t k = l; k < K - 1; ++k) U(l, k) = 1;
  for (index_t i = 0; i < n; ++i) Y(i, index_t(d.y[std::size_t(i)])) = w[std::size_t(i)] / W;
  Tape<double> t1;
  Var<double> a1 = t1.variable(alpha), s1 = t1.variable(psi);
  Var<double> eta = matmul(t1.constant(d.x), matmul(s1, t1.constant(U))) + a1;
  Var<double> S = sigmoid(eta);
  Var<double> hi = concat(std::vector<Var<double>>{S, t1.constant(Tensor<double>::ones(Shape{n, 1}))}, 1);
  Var<double> lo = concat(std::vector<Var<double>>{t1.constant(Tensor<double>(Shape{n, 1})), S}, 1);
  Var<double> f1 = -sum(t1.constant(Y) * log(hi - lo));
  t1.backward(f1);
  Tape<double> t2;
  Var<double> a2 = t2.variable(alpha), s2 = t2.variable(psi);
  Var<double> f2 = ordinal::cumulative_nll(a2, s2, d.x, d.y, w);
  t2.backward(f2);
  CHECK(f2.item() == doctest::Approx(f1.item()).epsilon(1e-13));
  WEFT_CHECK_CLOSE(a2.grad(), a1.grad(), 1e-12);
  WEFT_CHECK_CLOSE(s2.grad(), s1.grad(), 1e-12);
}

TEST_CASE("ordinal/likelihood: the Hessian (with and without the barrier) equals differences of the gradient") {
  const auto d = ordinal_test::random_ordinal(80, 3, 4, 12);
  Rng rng(9);
  const std::vector<double> w = random_weights(80, rng);
  const auto P = ordinal::detail::make_problem(d.x, d.y, w, {}, 0, true, true, "test");
  ordinal::detail::Workspace<double> ws(P);
  Tensor<double> alpha, psi;
  random_point(3, 4, rng, alpha, psi);
  ordinal::detail::Vec<double> th(P.dim()), g, gp, gm;
  for (index_t k = 0; k < 3; ++k) {
    th(k * 4) = alpha(k);
    for (index_t j = 0; j < 3; ++j) th(k * 4 + 1 + j) = psi(j, k);
  }
  for (double mu : {0.0, 1e-3}) {
    CAPTURE(mu);
    REQUIRE(std::isfinite(ordinal::detail::evaluate(P, th.data(), ws, true, mu)));
    ordinal::detail::Mat<double> H;
    ordinal::detail::hessian(P, ws, H, mu);
    CHECK((H - H.transpose()).cwiseAbs().maxCoeff() <= 1e-15);
    const double h = 1e-6;
    double worst = 0;
    for (index_t j = 0; j < P.dim(); ++j) {
      ordinal::detail::Vec<double> tp = th, tm = th;
      tp(j) += h;
      tm(j) -= h;
      ordinal::detail::evaluate(P, tp.data(), ws, false, mu);
      ordinal::detail::gradient(P, ws, gp, mu);
      ordinal::detail::evaluate(P, tm.data(), ws, false, mu);
      ordinal::detail::gradient(P, ws, gm, mu);
      const ordinal::detail::Vec<double> col = (gp - gm) / (2 * h);
      worst = std::max(worst, (col - H.col(j)).cwiseAbs().maxCoeff() / std::max(1e-3, H.col(j).cwiseAbs().maxCoeff()));
    }
    CHECK(worst <= 1e-6);
    // the gradient itself against differences of the objective
    ordinal::detail::evaluate(P, th.data(), ws, false, mu);
    ordinal::detail::gradient(P, ws, g, mu);
    for (index_t j = 0; j < P.dim(); ++j) {
      ordinal::detail::Vec<double> tp = th, tm = th;
      tp(j) += h;
      tm(j) -= h;
      const double fd = (ordinal::detail::evaluate(P, tp.data(), ws, false, mu) - ordinal::detail::evaluate(P, tm.data(), ws, false, mu)) / (2 * h);
      CHECK(g(j) == doctest::Approx(fd).epsilon(1e-6).scale(1e-3));
    }
  }
}

TEST_CASE_TEMPLATE("ordinal/kernels: boundary terms match long-double formulas; scalar vs SIMD; 1 vs 2 threads", T, float, double) {
  Rng rng(17);
  const index_t n = 9001;
  std::vector<T> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    const double lo = rng.uniform(-8, 8), gap = std::exp(rng.uniform(-9, 2.5));
    a[std::size_t(i)] = T(lo);
    b[std::size_t(i)] = T(lo + gap);
    if (i % 5 == 0) a[std::size_t(i)] = -std::numeric_limits<T>::infinity();  // first class
    if (i % 7 == 0) b[std::size_t(i)] = std::numeric_limits<T>::infinity();   // last class
    if (i % 35 == 0) b[std::size_t(i)] = T(lo + gap);
  }
  std::vector<std::vector<T>> out1(6, std::vector<T>(static_cast<std::size_t>(n))), out2 = out1, outs = out1;
  auto terms = [](std::vector<std::vector<T>>& o) {
    return ordinal::detail::BoundaryTerms<T>{o[0].data(), o[1].data(), o[2].data(), o[3].data(), o[4].data(), o[5].data()};
  };
  {
    ordinal_test::ThreadGuard g1(1);
    ordinal::detail::boundary_terms(a.data(), b.data(), n, terms(out1));
  }
  {
    ordinal_test::ThreadGuard g2(2);
    ordinal::detail::boundary_terms(a.data(), b.data(), n, terms(out2));
  }
  ordinal::detail::boundary_terms_scalar(a.data(), b.data(), n, terms(outs));
  CHECK(out1 == out2);
  const double tol = sizeof(T) == 4 ? 2e-4 : 1e-11;
  double worst_simd = 0, worst_ref = 0;
  for (index_t i = 0; i < n; ++i) {
    using L = long double;
    const L A = L(a[std::size_t(i)]), B = L(b[std::size_t(i)]);
    auto F = [](L t) { return std::isinf(double(t)) ? (t > 0 ? L(1) : L(0)) : L(1) / (L(1) + std::exp(-t)); };
    const L fa = F(A), fb = F(B), pa = fa * (1 - fa), pb = fb * (1 - fb);
    const L pi = std::isinf(double(A)) ? fb : (std::isinf(double(B)) ? 1 - fa : -std::expm1(A - B) * fb * (1 - fa));
    const L u = pa / pi, v = pb / pi;
    const L ref[6] = {std::log(pi), u, v, u * (1 - 2 * fa) + u * u, -u * v, v * v - v * (1 - 2 * fb)};
    for (int q = 0; q < 6; ++q) {
      const double s = double(outs[std::size_t(q)][std::size_t(i)]), v1 = double(out1[std::size_t(q)][std::size_t(i)]);
      const double r = double(ref[q]), scale = std::max(1.0, std::abs(r));
      worst_ref = std::max(worst_ref, std::abs(s - r) / scale);
      worst_simd = std::max(worst_simd, std::abs(v1 - s) / std::max(1.0, std::abs(s)));
    }
  }
  CHECK(worst_ref <= tol);
  CHECK(worst_simd <= tol);
}

TEST_CASE("ordinal/model: P6 reparameterisation, probabilities sum to 1, in-sample pi >= 0") {
  Rng rng(2);
  auto B = test::randn<double>(Shape{5, 3}, rng);
  const auto psi = ordinal::psi_from_beta(B);
  WEFT_CHECK_CLOSE(ordinal::beta_from_psi(psi), B, 1e-15);
  for (index_t j = 0; j < 5; ++j) CHECK(psi(j, 2) == doctest::Approx(B(j, 2) - B(j, 1)).epsilon(1e-15));
  // a PRESTO fit on simulated data: every in-sample row valid, rows sum to 1
  ordinal::SimulationOptions so;
  so.n = 600;
  Rng r2 = Rng(11).stream(0);
  const auto sim = ordinal::simulate<double>(so, r2);
  const auto lmax = ordinal::lambda_max(sim.x, sim.y);
  const auto fit = ordinal::fit_presto(sim.x, sim.y, 0.05 * lmax);
  WEFT_CHECK_CLOSE(ordinal::beta_from_psi(fit.psi()), fit.model.coef, 1e-12);
  const auto pr = ordinal::predict_proba(fit.model, sim.x);
  CHECK(pr.clamped_rows == 0);
  double worst = 0, minp = 1;
  for (index_t i = 0; i < so.n; ++i) {
    double s = 0;
    for (index_t k = 0; k < 4; ++k) {
      s += pr.probs(i, k);
      minp = std::min(minp, pr.probs(i, k));
    }
    worst = std::max(worst, std::abs(s - 1));
  }
  CHECK(worst <= 1e-12);
  CHECK(minp >= 0);
  // rare_probability equals the last column where rows are valid
  const auto rare = ordinal::rare_probability(fit.model, sim.x);
  for (index_t i = 0; i < so.n; i += 37) CHECK(rare(i) == doctest::Approx(pr.probs(i, 3)).epsilon(1e-12));
}

TEST_CASE("ordinal/model: unordered eta out of sample are clamped, renormalised and counted") {
  ordinal::CumulativeLogit<double> m;
  m.intercepts = Tensor<double>::vector_of({-1.0, 0.0, 1.0});
  m.coef = Tensor<double>(Shape{1, 3});
  m.coef(0, 0) = 0.0;
  m.coef(0, 1) = 2.0;  // eta_1 = 2x crosses eta_0 = -1 at x = -0.5 and eta_2 = 1 at x = 0.5
  m.coef(0, 2) = 0.0;
  const auto x = Tensor<double>::from_values({-2.0, 0.0, 2.0}, Shape{3, 1});
  const auto pr = ordinal::predict_proba(m, x);
  CHECK(pr.clamped_rows == 2);
  for (index_t i = 0; i < 3; ++i) {
    double s = 0;
    for (index_t k = 0; k < 4; ++k) {
      CHECK(pr.probs(i, k) >= 0);
      s += pr.probs(i, k);
    }
    CHECK(s == doctest::Approx(1.0).epsilon(1e-15));
  }
  CHECK(pr.probs(0, 1) == 0);  // sigma(-4) - sigma(-1) < 0 was clamped
  CHECK(pr.probs(2, 2) == 0);
}

TEST_CASE("ordinal/likelihood: cumulative_nll is +inf with NaN gradient where eta are unordered; bad shapes throw") {
  const auto d = ordinal_test::random_ordinal(20, 1, 3, 5);
  Tape<double> t;
  Var<double> a = t.variable(Tensor<double>::vector_of({0.5, -0.5}));  // alpha_1 < alpha_0
  Var<double> s = t.variable(Tensor<double>(Shape{1, 2}));
  Var<double> f = ordinal::cumulative_nll(a, s, d.x, d.y);
  CHECK(std::isinf(f.item()));
  t.backward(f);
  CHECK(std::isnan(a.grad()(0)));
  Tape<double> t2;
  Var<double> a2 = t2.variable(Tensor<double>::vector_of({0.0, 1.0}));
  Var<double> bad = t2.variable(Tensor<double>(Shape{2, 2}));
  CHECK_THROWS_AS(ordinal::cumulative_nll(a2, bad, d.x, d.y), ShapeError);
  Var<double> s3 = t2.variable(Tensor<double>(Shape{1, 3}));
  CHECK_THROWS_AS(ordinal::cumulative_nll(a2, s3, d.x, d.y), ShapeError);
}

}  // namespace weft_unit_ordinal_likelihood_test
