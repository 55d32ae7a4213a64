// Tests of weft/core/ops/complex.hpp (split-plane complex arithmetic) and weft/ep/activation.hpp:
// the formulas against std::complex, holomorphy (derivative by complex step), overflow safety,
// and the vector path against the scalar path over lengths that cover the tails.
#include "ep/ep_test_util.hpp"

#include <complex>

namespace weft_unit_ep_activation_test {

using namespace weft;
using ep_test::ThreadCountGuard;

namespace {

template <class T>
std::complex<T> sigmoid_direct(std::complex<T> z) {
  return T(1) / (T(1) + std::exp(-z));
}

std::complex<double> phi_direct(ep::Activation a, std::complex<double> z) {
  if (a == ep::Activation::sigmoid) return sigmoid_direct(4.0 * z - 2.0);
  return 0.5 * z * sigmoid_direct(z) + (1.0 - 0.5 * z) * sigmoid_direct(z - 2.0);
}

}  // namespace

TEST_CASE("core/ops/complex: split arithmetic equals std::complex") {
  Rng rng(1);
  for (int i = 0; i < 200; ++i) {
    const std::complex<double> a(rng.normal(), rng.normal()), b(rng.normal(), rng.normal());
    const ops::split_complex<double> sa{a.real(), a.imag()}, sb{b.real(), b.imag()};
    auto eq = [](ops::split_complex<double> s, std::complex<double> z) {
      return std::abs(std::complex<double>(s.re, s.im) - z) <= 1e-14 * std::max(1.0, std::abs(z));
    };
    CHECK(eq(sa * sb, a * b));
    CHECK(eq(sa + sb, a + b));
    CHECK(eq(sa - sb, a - b));
    CHECK(eq(ops::cdiv(sa, sb), a / b));
    CHECK(eq(ops::crecip(sa), 1.0 / a));
    CHECK(eq(ops::cexp(sa), std::exp(a)));
    CHECK(eq(ops::csigmoid(sa), sigmoid_direct(a)));
  }
}

TEST_CASE("core/ops/complex: csigmoid is finite and correct for large real parts") {
  for (double re : {-800.0, -40.0, 40.0, 800.0})
    for (double im : {-3.0, 0.0, 0.7, 2.5}) {
      const std::complex<double> s = ops::csigmoid(std::complex<double>(re, im));
      CHECK(std::isfinite(s.real()));
      CHECK(std::isfinite(s.imag()));
      CHECK(std::abs(s - std::complex<double>(re > 0 ? 1.0 : 0.0, 0.0)) < 1e-15);
    }
  CHECK(ops::rsigmoid(-1000.0) == 0.0);
  CHECK(ops::rsigmoid(1000.0) == 1.0);
  CHECK(ops::rsigmoid(0.3) == doctest::Approx(1 / (1 + std::exp(-0.3))).epsilon(1e-15));
}

TEST_CASE("core/ops/complex: complex softmax on planes equals std::complex softmax") {
  Rng rng(2);
  const index_t rows = 3, n = 7;
  std::vector<double> re(rows * n), im(rows * n), pr(rows * n), pi(rows * n);
  for (auto& x : re) x = 3 * rng.normal();
  for (auto& x : im) x = rng.normal();
  ops::softmax_rows_planes(re.data(), im.data(), pr.data(), pi.data(), rows, n);
  for (index_t r = 0; r < rows; ++r) {
    std::complex<double> s = 0;
    for (index_t j = 0; j < n; ++j) s += std::exp(std::complex<double>(re[r * n + j], im[r * n + j]));
    for (index_t j = 0; j < n; ++j) {
      const std::complex<double> p = std::exp(std::complex<double>(re[r * n + j], im[r * n + j])) / s;
      CHECK(std::abs(std::complex<double>(pr[r * n + j], pi[r * n + j]) - p) < 1e-14);
    }
  }
  // planes <-> interleaved
  std::vector<std::complex<double>> z(5);
  std::vector<double> a = {1, 2, 3, 4, 5}, b = {-1, -2, -3, -4, -5}, a2(5), b2(5);
  ops::from_planes(a.data(), b.data(), z.data(), 5);
  CHECK(z[3] == std::complex<double>(4, -4));
  ops::to_planes(z.data(), a2.data(), b2.data(), 5);
  CHECK(a2 == a);
  CHECK(b2 == b);
}

TEST_CASE("ep/activation: real and complex values equal the defining formulas") {
  Rng rng(3);
  for (ep::Activation a : {ep::Activation::sigmoid, ep::Activation::dsilu})
    for (int i = 0; i < 200; ++i) {
      const std::complex<double> z(2 * rng.normal(), 0.3 * rng.normal());
      const std::complex<double> ref = phi_direct(a, z);
      CHECK(std::abs(ep::phi(a, z) - ref) <= 1e-13 * std::max(1.0, std::abs(ref)));
      const double u = 3 * rng.normal();
      CHECK(ep::phi(a, u) == doctest::Approx(phi_direct(a, u).real()).epsilon(1e-13));
    }
  // dsilu is a smoothed clip(z / 2, 0, 1); sigmoid's derivative peaks at 1
  CHECK(ep::phi(ep::Activation::dsilu, 8.0) == doctest::Approx(1.0).epsilon(1e-2));
  CHECK(ep::phi(ep::Activation::dsilu, -6.0) == doctest::Approx(0.0).epsilon(1e-2));
  CHECK(ep::phi_derivative(ep::Activation::sigmoid, 0.5) == doctest::Approx(1.0));
}

TEST_CASE("ep/activation: phi' equals the complex-step derivative (holomorphy)") {
  // phi'(u) = Im phi(u + i h) / h with h = 1e-20 holds only for a holomorphic phi
  for (ep::Activation a : {ep::Activation::sigmoid, ep::Activation::dsilu})
    for (double u = -6; u <= 6; u += 0.37) {
      const double cs = ep::phi(a, std::complex<double>(u, 1e-20)).imag() / 1e-20;
      const double d = ep::phi_derivative(a, u);
      CHECK(std::abs(d - cs) <= 1e-14 * std::max(1.0, std::abs(d)));
      const double h = 1e-6, fd = (ep::phi(a, u + h) - ep::phi(a, u - h)) / (2 * h);
      CHECK(std::abs(d - fd) <= 1e-8);
    }
}

TEST_CASE_TEMPLATE("ep/activation: vector path equals scalar path", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 4e-6 : 1e-14;
  Rng rng(4);
  for (ep::Activation a : {ep::Activation::sigmoid, ep::Activation::dsilu})
    for (index_t n = 0; n <= 37; ++n) {
      std::vector<T> re(static_cast<std::size_t>(n)), im(static_cast<std::size_t>(n));
      for (auto& x : re) x = T(3 * rng.normal());
      for (auto& x : im) x = T(0.5 * rng.normal());
      std::vector<T> r1(re.size()), r2(re.size()), i1(re.size()), i2(re.size()), d1(re.size()), d2(re.size());
      ep::activate(a, re.data(), r1.data(), n, true);
      ep::activate(a, re.data(), r2.data(), n, false);
      ep::activate_derivative(a, re.data(), d1.data(), n, true);
      ep::activate_derivative(a, re.data(), d2.data(), n, false);
      for (index_t i = 0; i < n; ++i) {
        CHECK(std::abs(double(r1[std::size_t(i)]) - double(r2[std::size_t(i)])) <= tol);
        CHECK(std::abs(double(d1[std::size_t(i)]) - double(d2[std::size_t(i)])) <= tol);
      }
      ep::activate_planes(a, re.data(), im.data(), r1.data(), i1.data(), n, true);
      ep::activate_planes(a, re.data(), im.data(), r2.data(), i2.data(), n, false);
      for (index_t i = 0; i < n; ++i) {
        CHECK(std::abs(double(r1[std::size_t(i)]) - double(r2[std::size_t(i)])) <= tol);
        CHECK(std::abs(double(i1[std::size_t(i)]) - double(i2[std::size_t(i)])) <= tol);
        // and the scalar plane path equals the std::complex value
        const std::complex<T> z = ep::phi(a, std::complex<T>(re[std::size_t(i)], im[std::size_t(i)]));
        CHECK(std::abs(double(z.real()) - double(r2[std::size_t(i)])) <= tol);
        CHECK(std::abs(double(z.imag()) - double(i2[std::size_t(i)])) <= tol);
      }
    }
}

TEST_CASE("ep/activation: planes may alias the input") {
  std::vector<double> re = {0.1, -0.4, 1.3}, im = {0.2, 0.0, -0.5};
  std::vector<double> r(3), i(3);
  ep::activate_planes(ep::Activation::dsilu, re.data(), im.data(), r.data(), i.data(), 3);
  ep::activate_planes(ep::Activation::dsilu, re.data(), im.data(), re.data(), im.data(), 3);
  CHECK(re == r);
  CHECK(im == i);
}

}  // namespace weft_unit_ep_activation_test

// ---------------------------------------------------------------------------------------------
// identity, tanh, hard_sigmoid and user activations

namespace weft_unit_ep_activation_test {

namespace {

const ep::Activation kNew[] = {ep::Activation::identity, ep::Activation::tanh, ep::Activation::hard_sigmoid};

/// The defining formulas in std::complex (hard_sigmoid: piecewise in Re z).
std::complex<double> new_direct(const ep::Activation& a, std::complex<double> z) {
  if (a == ep::Activation::identity) return z;
  if (a == ep::Activation::tanh) return std::tanh(z);
  if (z.real() < 0) return 0.0;
  if (z.real() > 1) return 1.0;
  return z;
}

/// A stateful user activation with a batch form: phi(z) = g tanh(z / g) (g > 0).
struct scaled_tanh {
  double g = 2.0;
  template <class V>
  V real(const V& u) const {
    return V(g) * ep::detail::tanh_act::real(u / V(g));
  }
  template <class V>
  ep::split_complex<V> cplx(const ep::split_complex<V>& z) const {
    const ep::split_complex<V> t = ep::detail::tanh_act::cplx(ep::split_complex<V>{z.re / V(g), z.im / V(g)});
    return {V(g) * t.re, V(g) * t.im};
  }
  template <class V>
  V deriv(const V& u) const {
    return ep::detail::tanh_act::deriv(u / V(g));
  }
};

/// A user activation without a batch form, double only, in std::complex: phi(z) = sin(z) / 2.
struct half_sine {
  double real(double u) const { return 0.5 * std::sin(u); }
  double deriv(double u) const { return 0.5 * std::cos(u); }
  std::complex<double> cplx(std::complex<double> z) const { return 0.5 * std::sin(z); }
};

}  // namespace

TEST_CASE("ep/activation: identity, tanh, hard_sigmoid values equal std::complex formulas") {
  Rng rng(5);
  for (const ep::Activation& a : kNew)
    for (int i = 0; i < 300; ++i) {
      const std::complex<double> z(2 * rng.normal(), 0.4 * rng.normal());
      const std::complex<double> ref = new_direct(a, z);
      INFO(ep::to_string(a), " at ", z);
      CHECK(std::abs(ep::phi(a, z) - ref) <= 1e-14 * std::max(1.0, std::abs(ref)));
      const double u = 3 * rng.normal();
      CHECK(std::abs(ep::phi(a, u) - new_direct(a, u).real()) <= 1e-15 * std::max(1.0, std::abs(u)));
    }
  // tanh near 0: relative accuracy (no cancellation in the real path)
  CHECK(ep::phi(ep::Activation::tanh, 1e-12) == doctest::Approx(1e-12).epsilon(1e-15));
  CHECK(ep::phi(ep::Activation::hard_sigmoid, std::nan("")) != ep::phi(ep::Activation::hard_sigmoid, std::nan("")));
  CHECK(std::string(ep::to_string(ep::Activation::hard_sigmoid)) == "hard_sigmoid");
  CHECK(ep::Activation() == ep::Activation::sigmoid);
  CHECK(ep::Activation::tanh != ep::Activation::identity);
}

TEST_CASE("ep/activation: tanh is overflow-safe on planes and exact near its poles") {
  for (double re : {-800.0, -30.0, 30.0, 800.0})
    for (double im : {-3.0, 0.0, 0.7, 2.5}) {
      const std::complex<double> t = ep::phi(ep::Activation::tanh, std::complex<double>(re, im));
      CHECK(std::isfinite(t.real()));
      CHECK(std::isfinite(t.imag()));
      CHECK(std::abs(t - std::complex<double>(re > 0 ? 1.0 : -1.0, 0.0)) < 1e-15);
    }
  const double half_pi = 1.5707963267948966;
  for (double d : {1e-3, 1e-6})
    for (int k : {-1, 0, 1}) {
      const std::complex<double> z(d, half_pi * (2 * k + 1) + d);
      const std::complex<double> ref = std::tanh(z);
      CHECK(std::abs(ep::phi(ep::Activation::tanh, z) - ref) <= 1e-8 * std::abs(ref));
    }
  CHECK(ep::phi(ep::Activation::tanh, 800.0) == 1.0);
  CHECK(ep::phi_derivative(ep::Activation::tanh, 800.0) == 0.0);
}

TEST_CASE("ep/activation: new activations' phi' equals finite differences and the complex step") {
  for (const ep::Activation& a : kNew)
    for (double u = -3.05; u <= 3.05; u += 0.1) {
      INFO(ep::to_string(a), " at ", u);
      const double d = ep::phi_derivative(a, u), h = 1e-6;
      const double fd = (ep::phi(a, u + h) - ep::phi(a, u - h)) / (2 * h);
      CHECK(std::abs(d - fd) <= 1e-8);
      const double cs = ep::phi(a, std::complex<double>(u, 1e-20)).imag() / 1e-20;
      CHECK(std::abs(d - cs) <= 1e-14 * std::max(1.0, std::abs(d)));
    }
  // hard_sigmoid: 1 on [0, 1] (the kinks included), 0 outside
  CHECK(ep::phi_derivative(ep::Activation::hard_sigmoid, 0.0) == 1.0);
  CHECK(ep::phi_derivative(ep::Activation::hard_sigmoid, 1.0) == 1.0);
  CHECK(ep::phi_derivative(ep::Activation::hard_sigmoid, -1e-9) == 0.0);
  CHECK(ep::phi_derivative(ep::Activation::hard_sigmoid, 1 + 1e-9) == 0.0);
}

TEST_CASE_TEMPLATE("ep/activation: new and user activations, vector path equals scalar path", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 4e-6 : 1e-14;
  std::vector<ep::Activation> acts(std::begin(kNew), std::end(kNew));
  acts.push_back(ep::Activation::custom(scaled_tanh{1.5}, "scaled_tanh"));
  Rng rng(6);
  for (const ep::Activation& a : acts)
    for (index_t n : {0, 1, 3, 8, 17, 37}) {
      std::vector<T> re(static_cast<std::size_t>(n)), im(re.size());
      for (auto& x : re) x = T(3 * rng.normal());
      for (auto& x : im) x = T(0.5 * rng.normal());
      std::vector<T> r1(re.size()), r2(re.size()), i1(re.size()), i2(re.size()), d1(re.size()), d2(re.size());
      ep::activate(a, re.data(), r1.data(), n, true);
      ep::activate(a, re.data(), r2.data(), n, false);
      ep::activate_derivative(a, re.data(), d1.data(), n, true);
      ep::activate_derivative(a, re.data(), d2.data(), n, false);
      std::vector<T> pr1(re.size()), pr2(re.size());
      ep::activate_planes(a, re.data(), im.data(), pr1.data(), i1.data(), n, true);
      ep::activate_planes(a, re.data(), im.data(), pr2.data(), i2.data(), n, false);
      for (std::size_t i = 0; i < re.size(); ++i) {
        INFO(ep::to_string(a), " n ", n, " i ", i);
        CHECK(std::abs(double(r1[i]) - double(r2[i])) <= tol);
        CHECK(std::abs(double(d1[i]) - double(d2[i])) <= tol);
        CHECK(std::abs(double(pr1[i]) - double(pr2[i])) <= tol);
        CHECK(std::abs(double(i1[i]) - double(i2[i])) <= tol);
      }
    }
}

TEST_CASE("ep/activation: a user functor with a batch form") {
  const scaled_tanh f{2.0};
  const ep::Activation a = ep::Activation::custom(f, "scaled_tanh");
  CHECK(std::string(a.name()) == "scaled_tanh");
  CHECK(a.is_custom());
  CHECK(a.supports<float>());
  CHECK(a.supports<double>());
  CHECK(a.vectorized<double>() == simd::active<double>);
  CHECK(!ep::Activation::custom(half_sine{}, "half_sine").vectorized<double>());
  const ep::Activation copy = a;
  CHECK(copy == a);
  CHECK(ep::Activation::custom(f, "scaled_tanh") != a);  // equal only to its copies
  CHECK(ep::Activation::sigmoid.vectorized<double>() == simd::active<double>);
  for (double u = -4; u <= 4; u += 0.45) {
    CHECK(ep::phi(a, u) == doctest::Approx(2 * std::tanh(u / 2)).epsilon(1e-14));
    const std::complex<double> z(u, 0.3);
    CHECK(std::abs(ep::phi(a, z) - 2.0 * std::tanh(z / 2.0)) <= 1e-14);
    const double h = 1e-6, fd = (ep::phi(a, u + h) - ep::phi(a, u - h)) / (2 * h);
    CHECK(std::abs(ep::phi_derivative(a, u) - fd) <= 1e-8);
    CHECK(std::abs(ep::phi_derivative(a, u) - ep::phi(a, std::complex<double>(u, 1e-20)).imag() / 1e-20) <= 1e-14);
  }
}

TEST_CASE("ep/activation: a user functor without a batch form (double only, std::complex)") {
  const ep::Activation a = ep::Activation::custom(half_sine{}, "half_sine");
  CHECK(a.supports<double>());
  CHECK(!a.supports<float>());
  CHECK(!a.vectorized<double>());
  Rng rng(7);
  std::vector<double> re(19), im(19), r1(19), r2(19), i1(19), i2(19), d(19);
  for (auto& x : re) x = 2 * rng.normal();
  for (auto& x : im) x = 0.5 * rng.normal();
  ep::activate(a, re.data(), r1.data(), 19, true);
  ep::activate(a, re.data(), r2.data(), 19, false);
  ep::activate_planes(a, re.data(), im.data(), r1.data(), i1.data(), 19, true);
  ep::activate_planes(a, re.data(), im.data(), r2.data(), i2.data(), 19, false);
  ep::activate_derivative(a, re.data(), d.data(), 19);
  for (std::size_t i = 0; i < 19; ++i) {
    const std::complex<double> ref = 0.5 * std::sin(std::complex<double>(re[i], im[i]));
    CHECK(r1[i] == r2[i]);
    CHECK(i1[i] == i2[i]);
    CHECK(std::abs(std::complex<double>(r1[i], i1[i]) - ref) <= 1e-15);
    const double h = 1e-6, fd = (ep::phi(a, re[i] + h) - ep::phi(a, re[i] - h)) / (2 * h);
    CHECK(std::abs(d[i] - fd) <= 1e-8);
  }
  // a float net cannot use it; a float array call fails with ConfigError too
  Rng net_rng(8);
  ep::NetOptions o;
  o.activation = a;
  CHECK_THROWS_AS(ep::make_dense_net<float>({3, 4, 2}, net_rng, o), ConfigError);
  CHECK_NOTHROW(ep::make_dense_net<double>({3, 4, 2}, net_rng, o));
  float u = 0.5f, r = 0;
  CHECK_THROWS_AS(a.values(&u, &r, 1), ConfigError);
}

TEST_CASE("ep/activation: a user functor runs in the engine like the same built-in") {
  // a custom identity (with a batch form) relaxes to the same bits as Activation::identity
  Rng rng(9);
  ep::NetOptions o;
  o.activation = ep::Activation::identity;
  o.readout = ep::Readout::mse;
  o.num_classes = 4;
  o.alpha_deg = 30;
  ep::DenseNet<double> ref = ep::make_dense_net<double>({5, 6, 4}, rng, o);
  for (auto& p : ref.parameters()) p.value().array() *= 0.5;  // a contraction: the linear net converges
  const auto batch = ep_test::random_batch<double>(4, 5, 4, rng);
  ep::DenseNet<double> net = ref;
  net.activation = ep::Activation::custom(ep::detail::identity_act{}, "my_identity");
  ep::RelaxOptions r;
  r.gamma = 0.5;
  r.max_iters = 300;
  ep::State<double> u0, u_ref;
  ep::free_phase(net, batch.X, u0, r);
  const ep::RelaxReport rep = ep::free_phase(ref, batch.X, u_ref, r);
  CHECK(rep.max_residual < 1e-10);
  CHECK(ep_test::same_bits(u0, u_ref));
  const auto e1 = ep::hep_error(net, batch.X, batch.y, u0, ep_test::tight_hep(4, 0.2));
  const auto e2 = ep::hep_error(ref, batch.X, batch.y, u_ref, ep_test::tight_hep(4, 0.2));
  CHECK(ep_test::same_bits(e1.e, e2.e));
}

}  // namespace weft_unit_ep_activation_test
