// Closed-form cases of a LINEAR network (identity activation, mse readout with real targets),
// worked out by hand here and compared with weft's free phase, estimators, RBP and gradients.
//
// The net 1-2-1: u_1 = W_1 x + b_1 + B_2 r_2, u_2 = W_2 r_1 + b_2 (+ beta (r_2 - t)), r = u.
// With a = W_1 x + b_1, c = W_2 a + b_2 and k = 1 - W_2 B_2 (a scalar: W_2 is 1 x 2, B_2 2 x 1):
//   free fixed point   u_2 = c / k,  u_1 = a + B_2 u_2
//   nudged             u_2(beta) = (c - beta t) / (k - beta)    (a Moebius map of beta)
//   g = u_2 - t,  J_r = H' - I:  e = -J_r^-1 G:      e_2 = g / k, e_1 = B_2 e_2
//                                delta = -J_r^-T G:  delta_2 = g / k, delta_1 = W_2^T delta_2
// r_2(beta) = c/k + sum_{j>=1} (g / k^j) beta^j is analytic for |beta| < k, but NOT a polynomial:
// the nudge feeds back through r_2. So the Cauchy estimates are not exact for N >= 2; they are
//   e_N = e / (1 - (|beta| / k)^N)   (N >= 2),   e_1 = g / (k - beta),   complex step: e exactly,
// and these closed forms are what weft must reproduce (to rounding).
#include "ep/ep_test_util.hpp"

namespace weft_unit_ep_linear_test {

using namespace weft;

namespace {

struct Linear {
  ep::DenseNet<double> net;
  Tensor<double> X{Shape{2, 1}}, T{Shape{2, 1}};
  // the parameters by hand
  double W1[2] = {1.0, -0.5}, b1[2] = {0.1, 0.2}, W2[2] = {0.4, -0.6}, b2 = 0.05, B2[2] = {0.8, 0.2};

  Linear() {
    Rng rng(0);
    ep::NetOptions o;
    o.activation = ep::Activation::identity;
    o.readout = ep::Readout::mse;
    o.num_classes = 1;
    net = ep::make_dense_net<double>({1, 2, 1}, rng, o);
    for (int i = 0; i < 2; ++i) {
      net.W[0].value()(i, 0) = W1[i];
      net.b[0].value()(i) = b1[i];
      net.W[1].value()(0, i) = W2[i];
      net.B[0].value()(i, 0) = B2[i];
    }
    net.b[1].value()(0) = b2;
    X(0, 0) = 0.5;
    X(1, 0) = -1.0;
    T(0, 0) = 0.3;
    T(1, 0) = -0.2;
  }
  double k() const { return 1 - (W2[0] * B2[0] + W2[1] * B2[1]); }
  double a(int s, int i) const { return W1[i] * X(s, 0) + b1[i]; }
  double c(int s) const { return W2[0] * a(s, 0) + W2[1] * a(s, 1) + b2; }
  double u2(int s) const { return c(s) / k(); }
  double u1(int s, int i) const { return a(s, i) + B2[i] * u2(s); }
  double g(int s) const { return u2(s) - T(s, 0); }
  /// e (layer 1 entries 0, 1, then layer 2) times `scale`, per sample
  ep::State<double> field(bool delta, double scale) const {
    ep::State<double> f = ep::zero_state<double>(net, 2);
    for (int s = 0; s < 2; ++s) {
      const double e2 = g(s) / k() * scale;
      f.layers[1](s, 0) = e2;
      for (int i = 0; i < 2; ++i) f.layers[0](s, i) = (delta ? W2[i] : B2[i]) * e2;
    }
    return f;
  }
  ep::State<double> u0() const {
    ep::State<double> u = ep::zero_state<double>(net, 2);
    for (int s = 0; s < 2; ++s) {
      u.layers[1](s, 0) = u2(s);
      for (int i = 0; i < 2; ++i) u.layers[0](s, i) = u1(s, i);
    }
    return u;
  }
  /// The loss mean_s (u_2 - t)^2 / 2 from the closed form, for the current net parameters.
  double loss_closed_form() const {
    const auto& w1 = net.W[0].value();
    const auto& bb1 = net.b[0].value();
    const auto& w2 = net.W[1].value();
    const auto& fb = net.B[0].value();
    const double kk = 1 - (w2(0, 0) * fb(0, 0) + w2(0, 1) * fb(1, 0));
    double L = 0;
    for (int s = 0; s < 2; ++s) {
      double cc = net.b[1].value()(0);
      for (int i = 0; i < 2; ++i) cc += w2(0, i) * (w1(i, 0) * X(s, 0) + bb1(i));
      const double d = cc / kk - T(s, 0);
      L += 0.5 * d * d / 2;
    }
    return L;
  }
};

ep::RelaxOptions tight() {
  ep::RelaxOptions r;
  r.gamma = 1;
  r.tol = 1e-14;
  r.max_iters = 5000;
  return r;
}

}  // namespace

TEST_CASE("ep/linear: the free fixed point and the readout equal the closed form") {
  Linear L;
  CHECK(L.k() == doctest::Approx(0.8).epsilon(1e-15));
  ep::State<double> u0;
  const ep::RelaxReport rep = ep::free_phase(L.net, L.X, u0, tight());
  CHECK(rep.converged == 2);
  CHECK(ep_test::max_abs_diff(u0, L.u0()) <= 1e-13);
  const auto ro = ep::readout(L.net, u0, L.T);
  CHECK(ro.loss == doctest::Approx((L.g(0) * L.g(0) + L.g(1) * L.g(1)) / 4).epsilon(1e-13));
  CHECK(std::isnan(ro.accuracy));  // real targets: no accuracy
  for (int s = 0; s < 2; ++s) CHECK(ro.G(s, 0) == doctest::Approx(L.g(s)).epsilon(1e-13));
}

TEST_CASE("ep/linear: delta and e (dense LU, RBP loop) equal the closed form") {
  Linear L;
  const ep::State<double> u0 = L.u0();
  const auto ex = ep::exact_errors(L.net, L.X, L.T, u0);
  CHECK(ep_test::max_abs_diff(ex.delta, L.field(true, 1)) <= 1e-14);
  CHECK(ep_test::max_abs_diff(ex.e, L.field(false, 1)) <= 1e-14);
  ep::RbpOptions ro;
  ro.tol = 1e-15;
  ro.max_iters = 5000;
  const auto rbp = ep::rbp_error(L.net, L.X, L.T, u0, ro);
  CHECK(rbp.diverged == 0);
  CHECK(ep_test::max_abs_diff(rbp.delta, L.field(true, 1)) <= 1e-13);
}

TEST_CASE("ep/linear: the estimators equal their closed forms (not e itself for N >= 1)") {
  Linear L;
  const ep::State<double> u0 = L.u0();
  const double k = L.k(), beta = 0.5;
  ep::HepOptions o;
  o.abs_beta = beta;
  o.relax = tight();
  for (int N : {2, 4}) {
    o.N = N;
    const auto est = ep::hep_error(L.net, L.X, L.T, u0, o);
    const double factor = 1 / (1 - std::pow(beta / k, N));  // the geometric series of the bias
    INFO("N = ", N, " factor ", factor);
    CHECK(ep_test::max_abs_diff(est.e, L.field(false, factor)) <= 1e-12);
    CHECK(ep::relative_error(est.e, L.field(false, 1)) >= 0.1);  // biased: (0.5/0.8)^N
  }
  o.N = 1;
  CHECK(ep_test::max_abs_diff(ep::hep_error(L.net, L.X, L.T, u0, o).e, L.field(false, k / (k - beta))) <= 1e-12);
  o.N = 0;  // complex step: exact
  o.relax.tol = 0;
  o.relax.max_iters = 400;
  CHECK(ep_test::max_abs_diff(ep::hep_error(L.net, L.X, L.T, u0, o).e, L.field(false, 1)) <= 1e-14);
  // the bias shrinks as (|beta| / k)^N: N = 8 at |beta| = 0.2 leaves (1/4)^8 = 1.5e-5 relative
  o = ep_test::tight_hep(8, 0.2);
  const double f8 = 1 / (1 - std::pow(0.2 / k, 8));
  CHECK(f8 - 1 <= 2e-5);
  CHECK(ep_test::max_abs_diff(ep::hep_error(L.net, L.X, L.T, u0, o).e, L.field(false, f8)) <= 1e-12);
}

TEST_CASE("ep/linear: weight gradients equal the formulas and the gradient of the closed-form loss") {
  Linear L;
  const ep::State<double> u0 = L.u0();
  for (bool use_delta : {true, false}) {
    const ep::State<double> xi = L.field(use_delta, 1);
    const auto g = ep::error_gradients(L.net, L.X, L.T, u0, xi);  // W1, W2, b1, b2, B2
    REQUIRE(g.size() == 5);
    for (int i = 0; i < 2; ++i) {
      double gw1 = 0, gb1 = 0, gw2 = 0, gB2 = 0;
      for (int s = 0; s < 2; ++s) {
        gw1 += xi.layers[0](s, i) * L.X(s, 0) / 2;
        gb1 += xi.layers[0](s, i) / 2;
        gw2 += xi.layers[1](s, 0) * L.u1(s, i) / 2;
        gB2 += xi.layers[0](s, i) * L.u2(s) / 2;
      }
      CHECK(g[0](i, 0) == doctest::Approx(gw1).epsilon(1e-13));
      CHECK(g[2](i) == doctest::Approx(gb1).epsilon(1e-13));
      CHECK(g[1](0, i) == doctest::Approx(gw2).epsilon(1e-13));
      CHECK(g[4](i, 0) == doctest::Approx(gB2).epsilon(1e-13));
    }
    CHECK(g[3](0) == doctest::Approx((xi.layers[1](0, 0) + xi.layers[1](1, 0)) / 2).epsilon(1e-13));
    if (!use_delta) continue;
    // delta gives the true gradient: central differences of the closed-form loss
    auto params = L.net.parameters();
    for (std::size_t p = 0; p < params.size(); ++p)
      for (index_t i = 0; i < params[p].numel(); ++i) {
        double& w = params[p].value().flat(i);
        const double w0 = w, h = 1e-6;
        w = w0 + h;
        const double lp = L.loss_closed_form();
        w = w0 - h;
        const double lm = L.loss_closed_form();
        w = w0;
        INFO(params[p].name(), "[", i, "]");
        CHECK(std::abs((lp - lm) / (2 * h) - g[p].flat(i)) <= 1e-9);
      }
  }
  // the EP gradient differs from the true one: B_2 != W_2^T
  const auto gd = ep::error_gradients(L.net, L.X, L.T, u0, L.field(true, 1));
  const auto ge = ep::error_gradients(L.net, L.X, L.T, u0, L.field(false, 1));
  CHECK(ep::gradient_cosine(gd, ge) < 0.99);
}

}  // namespace weft_unit_ep_linear_test
