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
