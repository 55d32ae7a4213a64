// Tests of weft/ep/engine.hpp, relax.hpp and reference.hpp: the batched split-plane solver against
// the per-sample std::complex reference, the vector path against the scalar path, 1 vs 2
// threads, the stopping rule and the reported residuals, divergence reporting, conjugate
// symmetry, and bad input.
#include "ep/ep_test_util.hpp"

#include <complex>

namespace weft_unit_ep_relax_test {

using namespace weft;
using ep_test::Setup;
using ep_test::ThreadCountGuard;

namespace {

using C = std::complex<double>;

/// Relaxes every sample of `s` with the reference at beta from u0; returns the states.
ep::State<C> reference_states(const Setup<double>& s, C beta, const ep::RelaxOptions& o,
                              std::vector<ep::reference::SampleReport>* reps = nullptr) {
  const auto& net = s.net;
  const ep::reference::ComplexNet<double> cn(net);
  ep::State<C> out = ep::zero_state<C>(net, s.batch.X.dim(0));
  for (index_t b = 0; b < s.batch.X.dim(0); ++b) {
    std::vector<ep::reference::CVector<double>> u(std::size_t(net.layers() + 1));
    for (index_t l = 1; l <= net.layers(); ++l)
      u[std::size_t(l)] = s.u0.layers[std::size_t(l - 1)].matrix().row(b).transpose().cast<C>();
    auto r = ep::reference::relax_sample(net, cn, s.batch.X.data() + b * net.size(0), s.batch.y[std::size_t(b)], beta,
                                         u, o);
    if (reps) reps->push_back(r);
    for (index_t l = 1; l <= net.layers(); ++l) out.layers[std::size_t(l - 1)].matrix().row(b) = u[std::size_t(l)].transpose();
  }
  return out;
}

ep::State<C> to_complex(const ep::State<double>& u) {
  ep::State<C> c;
  for (const auto& t : u.layers) c.layers.push_back(t.cast<C>());
  return c;
}

}  // namespace

TEST_CASE("ep/relax: batched split planes equal the per-sample std::complex reference") {
  for (ep::Activation act : {ep::Activation::sigmoid, ep::Activation::dsilu})
    for (ep::Readout ro : {ep::Readout::softmax, ep::Readout::mse}) {
      Setup<double> s(90, 11, {16, 24, 24, 10}, 8, act, ro);
      for (C beta : {C(0.5, 0), C(-0.3, 0), C(0.2, 0.4), C(0, 1e-20)}) {
        ep::RelaxOptions o;
        o.max_iters = 40;  // fixed count
        o.block_rows = 6;  // several blocks, partly filled
        ep::State<C> u = to_complex(s.u0);
        const ep::RelaxReport rep = ep::relax(s.net, s.batch.X, s.batch.y, beta, u, o);
        const ep::State<C> ref = reference_states(s, beta, o);
        CHECK(ep_test::max_abs_diff(u, ref) <= 1e-12);
        CHECK(rep.iterations == 40);
        CHECK(rep.ok());
        if (beta.imag() == 0) {  // the real path gives the same states
          ep::State<double> ur = s.u0.clone();
          ep::relax(s.net, s.batch.X, s.batch.y, beta.real(), ur, o);
          CHECK(ep_test::max_abs_diff(to_complex(ur), ref) <= 1e-12);
        }
      }
    }
}

TEST_CASE("ep/relax: columns stop at tol and the reported residual is the returned state's") {
  Setup<double> s(90, 12);
  ep::RelaxOptions o;
  o.gamma = 0.5;
  o.tol = 1e-9;
  o.max_iters = 3000;
  ep::State<double> u = s.u0.clone();
  const ep::RelaxReport rep = ep::relax(s.net, s.batch.X, s.batch.y, 0.5, u, o);
  CHECK(rep.converged == 8);
  CHECK(rep.max_residual <= 1e-9);
  std::vector<ep::reference::SampleReport> refs;
  const ep::State<C> ref = reference_states(s, C(0.5), o, &refs);
  CHECK(ep_test::max_abs_diff(to_complex(u), ref) <= 1e-12);
  bool differ = false;
  for (index_t b = 0; b < 8; ++b) {
    CHECK(rep.column_iterations[std::size_t(b)] == refs[std::size_t(b)].iterations);
    CHECK(rep.column_residual[std::size_t(b)] == doctest::Approx(refs[std::size_t(b)].residual).epsilon(1e-5));
    differ = differ || rep.column_iterations[std::size_t(b)] != rep.iterations;
  }
  CHECK(differ);  // columns really stop at different iterations
  // relaxing the result for 0 iterations only evaluates: the same residuals, the state unchanged
  ep::RelaxOptions e0 = o;
  e0.max_iters = 0;
  ep::State<double> v = u.clone();
  const ep::RelaxReport r0 = ep::relax(s.net, s.batch.X, s.batch.y, 0.5, v, e0);
  CHECK(ep_test::same_bits(u, v));
  for (index_t b = 0; b < 8; ++b)
    CHECK(r0.column_residual[std::size_t(b)] == doctest::Approx(rep.column_residual[std::size_t(b)]).epsilon(1e-9));
  CHECK(r0.iterations == 0);
}

TEST_CASE("ep/relax: free phase from zero reaches the fixed point F(u0) = 0") {
  Setup<double> s(0, 13);
  CHECK(s.free.ok());
  CHECK(s.free.converged == 8);
  CHECK(s.free.max_residual <= 1e-14);
  CHECK(s.free.iterations < 500);
  // the relaxation from zero at beta = 0 through relax() gives the same bits
  ep::RelaxOptions o;
  o.tol = 1e-14;
  o.max_iters = 2000;
  ep::State<double> z = ep::zero_state<double>(s.net, 8);
  ep::relax(s.net, s.batch.X, std::vector<int>{}, 0.0, z, o);
  CHECK(ep_test::same_bits(z, s.u0));
}

TEST_CASE_TEMPLATE("ep/relax: vector path equals scalar path", T, float, double) {
  Setup<T> s(90, 14, {16, 24, 24, 10}, 8, ep::Activation::dsilu);
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  for (std::complex<T> beta : {std::complex<T>(T(0.5), T(0)), std::complex<T>(T(0.3), T(0.3))}) {
    ep::RelaxOptions o;
    o.max_iters = 30;
    ep::State<std::complex<T>> a, b;
    for (const auto& t : s.u0.layers) a.layers.push_back(t.template cast<std::complex<T>>());
    b = a.clone();
    o.vectorize = true;
    ep::relax(s.net, s.batch.X, s.batch.y, beta, a, o);
    o.vectorize = false;
    ep::relax(s.net, s.batch.X, s.batch.y, beta, b, o);
    CHECK(ep_test::max_abs_diff(a, b) <= tol);
  }
}

TEST_CASE("ep/relax: 1 and 2 threads give the same bits") {
  ThreadCountGuard guard;
  Setup<double> s(90, 15, {16, 24, 24, 10}, 12);
  ep::HepOptions o = ep_test::tight_hep(6, 0.5);
  o.relax.block_rows = 8;  // many blocks, so both threads get work
  set_num_threads(1);
  const auto e1 = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o);
  set_num_threads(2);
  const auto e2 = ep::hep_error(s.net, s.batch.X, s.batch.y, s.u0, o);
  CHECK(ep_test::same_bits(e1.e, e2.e));
  CHECK(e1.report.column_iterations == e2.report.column_iterations);
}

TEST_CASE("ep/relax: the conjugate beta gives the conjugate state") {
  Setup<double> s(90, 16);
  ep::RelaxOptions o;
  o.max_iters = 50;
  ep::State<C> a = to_complex(s.u0), b = to_complex(s.u0);
  ep::relax(s.net, s.batch.X, s.batch.y, C(0.3, 0.4), a, o);
  ep::relax(s.net, s.batch.X, s.batch.y, C(0.3, -0.4), b, o);
  for (auto& t : b.layers) t.array() = t.array().conjugate();
  CHECK(ep_test::max_abs_diff(a, b) <= 1e-14);
}

TEST_CASE("ep/relax: divergence is reported, not hidden") {
  // the activations are bounded, so a real state can only diverge by overflow: finite inputs of
  // 1e300 with weights of 1e10 give an infinite drive in samples 0 and 5
  Setup<double> s(90, 17);
  s.net.W[0].value().array() *= 1e10;
  Tensor<double> X = s.batch.X.clone();
  X.matrix().row(0).fill(1e300);
  X.matrix().row(5).fill(-1e300);
  ep::RelaxOptions o;
  o.max_iters = 30;
  ep::State<double> u = ep::zero_state<double>(s.net, 8);
  const ep::RelaxReport rep = ep::relax(s.net, X, s.batch.y, 0.5, u, o);
  CHECK(rep.diverged == 2);
  CHECK_FALSE(rep.ok());
  CHECK(rep.column_diverged == std::vector<char>{1, 0, 0, 0, 0, 1, 0, 0});
  CHECK(std::isinf(rep.column_residual[0]));
  CHECK(rep.column_iterations[0] == 0);  // stopped at the state whose F is not finite
  CHECK(std::isfinite(rep.max_residual));
  // estimators raise, unless asked to zero the affected samples
  ep::HepOptions h;
  h.relax = o;
  const ep::State<double> u0 = ep::zero_state<double>(s.net, 8);
  CHECK_THROWS_AS(ep::hep_error(s.net, X, s.batch.y, u0, h), ValueError);
  h.allow_divergence = true;
  const auto est = ep::hep_error(s.net, X, s.batch.y, u0, h);
  CHECK(est.report.diverged == 4);  // two phases
  for (const auto& t : est.e.layers) {
    CHECK(t[0].array().abs().maxCoeff() == 0.0);
    CHECK(t[5].array().abs().maxCoeff() == 0.0);
    CHECK(t.all_finite());
  }
  // layer 1 of the other samples saturates (drive ~1e10), the nudged output layer does not
  CHECK(est.e.layers.back()[1].array().abs().maxCoeff() > 0.0);
}

TEST_CASE("ep/relax: bad input") {
  Setup<double> s(90, 18);
  ep::State<double> u = s.u0.clone();
  const ep::State<double> snap = s.u0.clone();
  ep::RelaxOptions o;
  auto X = s.batch.X;
  auto y = s.batch.y;
  CHECK_THROWS_AS(ep::relax(s.net, X, y, std::nan(""), u, o), ValueError);
  o.gamma = 0;
  CHECK_THROWS_AS(ep::relax(s.net, X, y, 0.5, u, o), ValueError);
  o = {};
  o.tol = -1;
  CHECK_THROWS_AS(ep::relax(s.net, X, y, 0.5, u, o), ValueError);
  o = {};
  o.max_iters = -1;
  CHECK_THROWS_AS(ep::relax(s.net, X, y, 0.5, u, o), ValueError);
  o = {};
  CHECK_THROWS_AS(ep::relax(s.net, X.slice(1, 0, 10), y, 0.5, u, o), ShapeError);
  CHECK_THROWS_AS(ep::relax(s.net, X, std::vector<int>(3, 0), 0.5, u, o), ShapeError);
  std::vector<int> bad_y = y;
  bad_y[0] = 10;
  CHECK_THROWS_AS(ep::relax(s.net, X, bad_y, 0.5, u, o), ValueError);
  Tensor<double> Xn = X.clone();
  Xn(0, 0) = std::nan("");
  CHECK_THROWS_AS(ep::relax(s.net, Xn, y, 0.5, u, o), ValueError);
  ep::State<double> short_u = u.clone();
  short_u.layers.pop_back();
  CHECK_THROWS_AS(ep::relax(s.net, X, y, 0.5, short_u, o), ShapeError);
  ep::State<double> nan_u = u.clone();
  nan_u.layers[1](0, 0) = std::nan("");
  CHECK_THROWS_AS(ep::relax(s.net, X, y, 0.5, nan_u, o), ValueError);
  CHECK(ep_test::same_bits(u, snap));  // untouched by the failed calls
  ep::State<double> f;
  CHECK_THROWS_AS(ep::free_phase(s.net, X.slice(1, 0, 10), f, o), ShapeError);
  CHECK_THROWS_AS(ep::free_phase(s.net, Xn, f, o), ValueError);
  CHECK(f.layers.empty());
}

}  // namespace weft_unit_ep_relax_test
