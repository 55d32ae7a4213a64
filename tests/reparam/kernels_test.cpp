// Tests of weft/reparam/kernels.hpp: every kernel against a double reference, the vector path
// against the scalar path (all lengths up to a few batches, so tails are covered), 1 vs 2
// threads bit for bit, the fixed-order backward sums, and the clamped inverse.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/parallel.hpp"
#include "weft/reparam/kernels.hpp"

namespace weft_unit_reparam_kernels_test {

using namespace weft;
using namespace weft::reparam;

namespace {

using weft::test::same_bits;
using weft::test::ThreadCountGuard;
using weft::test::uniform_vector;

template <class T>
double tol() {
  return std::is_same_v<T, float> ? 2e-6 : 1e-14;
}

/// Relative closeness for vectors.
template <class T>
bool close(const std::vector<T>& a, const std::vector<double>& ref, double rtol, double atol = 0) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::abs(double(a[i]) - ref[i]) <= atol + rtol * std::max(1.0, std::abs(ref[i])))) return false;
  return true;
}

template <class Psi, class T>
void check_against_reference(index_t n, Rng& rng) {
  const T a = T(0.8), b = T(0.6), lambda = T(0.01);
  const std::vector<T> v = uniform_vector<T>(n, -3, 3, rng), g = uniform_vector<T>(n, -1, 1, rng);
  std::vector<double> w_ref(v.size()), d_ref(v.size()), gv_ref(v.size()), decay_ref(v.size());
  double sa = 0, sb = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double u = double(v[i]) / double(b);
    w_ref[i] = double(a) * Psi::f(u);
    d_ref[i] = double(a) / double(b) * Psi::df(u);
    gv_ref[i] = 0.5 + double(g[i]) * d_ref[i];
    decay_ref[i] = 0.5 + double(lambda) * w_ref[i] * d_ref[i];
    sa += double(g[i]) * Psi::f(u);           // dL/da
    sb += double(g[i]) * (-d_ref[i] * u);      // dL/db = -(a / b) sum g u f'(u)
  }
  std::vector<T> w(v.size()), d(v.size()), gv(v.size(), T(0.5)), dec(v.size(), T(0.5));
  compander_forward<Psi>(v.data(), w.data(), n, a, b);
  compander_derivative<Psi>(v.data(), d.data(), n, a, b);
  const CompanderGradSums s = compander_backward<Psi>(v.data(), w.data(), g.data(), gv.data(), n, a, b, true);
  compander_decay_grad<Psi>(v.data(), dec.data(), n, a, b, lambda);
  const double t = tol<T>() * 4;
  CHECK_MESSAGE(close(w, w_ref, t), Psi::name, " forward, n = ", n);
  CHECK_MESSAGE(close(d, d_ref, t), Psi::name, " derivative, n = ", n);
  CHECK_MESSAGE(close(gv, gv_ref, t), Psi::name, " backward gv, n = ", n);
  CHECK_MESSAGE(close(dec, decay_ref, t), Psi::name, " decay, n = ", n);
  const double scale = double(n) + 1;
  CHECK_MESSAGE(std::abs(s.g_w / double(a) - sa) <= t * scale, Psi::name, " dL/da sum, n = ", n);
  CHECK_MESSAGE(std::abs(-(double(a) / double(b)) * s.g_u_df - sb) <= t * scale, Psi::name, " dL/db sum, n = ", n);
}

#if WEFT_USE_XSIMD
template <class Psi, class T>
void check_simd_vs_scalar(index_t n, Rng& rng) {
  const T a = T(0.7), b = T(0.5);
  const std::vector<T> v = uniform_vector<T>(n, -4, 4, rng), g = uniform_vector<T>(n, -1, 1, rng);
  std::vector<T> w1(v.size()), w2(v.size()), d1(v.size()), d2(v.size());
  compander_forward_scalar<Psi>(v.data(), w1.data(), n, a, b);
  compander_forward_simd<Psi>(v.data(), w2.data(), n, a, b);
  std::vector<double> ref(w1.begin(), w1.end());
  CHECK_MESSAGE(close(w2, ref, tol<T>()), Psi::name, " forward simd vs scalar, n = ", n);
  compander_derivative_scalar<Psi>(v.data(), d1.data(), n, a, b);
  compander_derivative_simd<Psi>(v.data(), d2.data(), n, a, b);
  ref.assign(d1.begin(), d1.end());
  CHECK_MESSAGE(close(d2, ref, tol<T>()), Psi::name, " derivative simd vs scalar, n = ", n);
  std::vector<T> gv1(v.size(), T(1)), gv2(v.size(), T(1));
  const auto s1 = compander_backward_scalar<Psi>(v.data(), w1.data(), g.data(), gv1.data(), n, a, b, true);
  const auto s2 = compander_backward_simd<Psi>(v.data(), w1.data(), g.data(), gv2.data(), n, a, b, true);
  ref.assign(gv1.begin(), gv1.end());
  CHECK_MESSAGE(close(gv2, ref, tol<T>()), Psi::name, " backward simd vs scalar, n = ", n);
  CHECK(std::abs(s1.g_w - s2.g_w) <= tol<T>() * (double(n) + 1));
  CHECK(std::abs(s1.g_u_df - s2.g_u_df) <= tol<T>() * (double(n) + 1));
  std::vector<T> e1(v.size(), T(1)), e2(v.size(), T(1));
  compander_decay_grad_scalar<Psi>(v.data(), e1.data(), n, a, b, T(0.1));
  compander_decay_grad_simd<Psi>(v.data(), e2.data(), n, a, b, T(0.1));
  ref.assign(e1.begin(), e1.end());
  CHECK_MESSAGE(close(e2, ref, tol<T>()), Psi::name, " decay simd vs scalar, n = ", n);
}
#endif

template <class Psi, class T>
void check_threads(Rng& rng) {
  ThreadCountGuard guard;
  const index_t n = 3 * 32768 + 77;  // several parallel chunks and backward blocks, with a tail
  const T a = T(0.6), b = T(0.9);
  const std::vector<T> v = uniform_vector<T>(n, -3, 3, rng), g = uniform_vector<T>(n, -1, 1, rng);
  std::vector<T> w[2], gv[2], d[2], dec[2];
  CompanderGradSums s[2];
  for (int k = 0; k < 2; ++k) {
    weft::set_num_threads(k + 1);
    w[k].resize(v.size());
    d[k].resize(v.size());
    gv[k].assign(v.size(), T(0));
    dec[k].assign(v.size(), T(0));
    compander_forward<Psi>(v.data(), w[k].data(), n, a, b);
    s[k] = compander_backward<Psi>(v.data(), w[k].data(), g.data(), gv[k].data(), n, a, b, true);
    compander_derivative<Psi>(v.data(), d[k].data(), n, a, b);
    compander_decay_grad<Psi>(v.data(), dec[k].data(), n, a, b, T(0.01));
  }
  CHECK(same_bits(w[0], w[1]));
  CHECK(same_bits(gv[0], gv[1]));
  CHECK(same_bits(d[0], d[1]));
  CHECK(same_bits(dec[0], dec[1]));
  CHECK(s[0].g_w == s[1].g_w);
  CHECK(s[0].g_u_df == s[1].g_u_df);
}

}  // namespace

TEST_CASE_TEMPLATE("reparam/kernels: forward, derivative, backward and decay match a double reference", T, float,
                   double) {
  Rng rng(11);
  for (index_t n : {0, 1, 3, 7, 8, 9, 17, 33, 64, 1000, 4096, 4097, 9000}) {
    check_against_reference<AtanPsi, T>(n, rng);
    check_against_reference<ErfPsi, T>(n, rng);
    check_against_reference<AsinhPsi, T>(n, rng);
  }
}

#if WEFT_USE_XSIMD
TEST_CASE_TEMPLATE("reparam/kernels: vector path vs scalar path", T, float, double) {
  Rng rng(12);
  for (index_t n = 0; n <= 40; ++n) {
    check_simd_vs_scalar<AtanPsi, T>(n, rng);
    check_simd_vs_scalar<ErfPsi, T>(n, rng);
    check_simd_vs_scalar<AsinhPsi, T>(n, rng);
  }
  check_simd_vs_scalar<AtanPsi, T>(10007, rng);
  // the dispatching driver runs the vector body exactly when simd::active
  const std::vector<T> v = uniform_vector<T>(1001, -2, 2, rng);
  std::vector<T> x(v.size()), y(v.size());
  compander_forward<AtanPsi>(v.data(), x.data(), 1001, T(0.7), T(0.7));
  if constexpr (simd::active<T>) compander_forward_simd<AtanPsi>(v.data(), y.data(), 1001, T(0.7), T(0.7));
  else compander_forward_scalar<AtanPsi>(v.data(), y.data(), 1001, T(0.7), T(0.7));
  CHECK(same_bits(x, y));
}
#endif

TEST_CASE_TEMPLATE("reparam/kernels: 1 and 2 threads give the same bits", T, float, double) {
  Rng rng(13);
  check_threads<AtanPsi, T>(rng);
  check_threads<ErfPsi, T>(rng);
}

TEST_CASE("reparam/kernels: backward without a v gradient still forms the sums") {
  Rng rng(14);
  const std::vector<double> v = uniform_vector<double>(100, -2, 2, rng), g = uniform_vector<double>(100, -1, 1, rng);
  std::vector<double> w(100), gv(100, 0.0);
  compander_forward<AtanPsi>(v.data(), w.data(), 100, 0.5, 1.0);
  const auto s1 = compander_backward<AtanPsi>(v.data(), w.data(), g.data(), static_cast<double*>(nullptr), 100, 0.5, 1.0, true);
  const auto s2 = compander_backward<AtanPsi>(v.data(), w.data(), g.data(), gv.data(), 100, 0.5, 1.0, true);
  CHECK(s1.g_w == s2.g_w);
  CHECK(s1.g_u_df == s2.g_u_df);
  const auto s3 = compander_backward<AtanPsi>(v.data(), w.data(), g.data(), gv.data(), 100, 0.5, 1.0, false);
  CHECK(s3.g_w == 0.0);
}

TEST_CASE("reparam/kernels: the inverse clamps |w / a| to limit - delta and counts the clamps") {
  const double a = 0.5, b = 0.7, delta = 1e-4;
  const double edge = a * (AtanPsi::limit - delta);
  const std::vector<double> w = {0.0, 0.3, -0.3, edge * 0.999, edge, -edge * 1.5, 10.0, -0.0};
  std::vector<double> v(w.size());
  CHECK(compander_clamp_count<AtanPsi>(w.data(), index_t(w.size()), a, delta) == 3);
  CHECK(compander_inverse<AtanPsi>(w.data(), v.data(), index_t(w.size()), a, b, delta) == 3);
  for (std::size_t i = 0; i < w.size(); ++i) {
    CHECK(std::isfinite(v[i]));
    const double back = a * std::atan(v[i] / b);
    if (std::abs(w[i]) < edge) CHECK(back == doctest::Approx(w[i]).epsilon(1e-14));
    else CHECK(back == doctest::Approx(std::copysign(edge, w[i])).epsilon(1e-12));  // sign kept
  }
  CHECK(v[0] == 0.0);
  CHECK(std::signbit(v[7]));
  // asinh is unbounded: nothing is clamped
  CHECK(compander_inverse<AsinhPsi>(w.data(), v.data(), index_t(w.size()), a, b, delta) == 0);
  CHECK(a * std::asinh(v[6] / b) == doctest::Approx(10.0).epsilon(1e-14));
  // erf: bound a
  const std::vector<float> wf = {0.2f, 0.49999f, 0.6f};
  std::vector<float> vf(3);
  CHECK(compander_inverse<ErfPsi>(wf.data(), vf.data(), 3, a, b, delta) == 2);
  CHECK(0.5 * std::erf(double(vf[0]) / 0.7) == doctest::Approx(0.2).epsilon(1e-6));
}

TEST_CASE("reparam/kernels: the compander Adam step, vector vs scalar, and its zero-derivative guard") {
  Rng rng(15);
  const index_t n = 37;
  ops::AdamStep st{};
  st.lr = 1e-2;
  st.beta1 = 0.9;
  st.beta2 = 0.999;
  st.eps = 1e-8;
  st.bias1 = 0.1;
  st.bias2 = 0.001;
  st.l2 = 1e-3;
  st.decoupled = 0;
  std::vector<double> p = uniform_vector<double>(n, -1, 1, rng), g = uniform_vector<double>(n, -1, 1, rng);
  std::vector<double> d = uniform_vector<double>(n, 0.1, 1, rng);
  d[3] = 0.0;  // an underflowed derivative: g_w is taken as 0, v does not move
  const std::size_t sz = static_cast<std::size_t>(n);
  std::vector<double> p1 = p, p2 = p, m1(sz), m2(sz), s1(sz), s2(sz);
  ops::adam_update_scaled_scalar(p1.data(), g.data(), d.data(), m1.data(), s1.data(), n, st);
#if WEFT_USE_XSIMD
  ops::adam_update_scaled_simd(p2.data(), g.data(), d.data(), m2.data(), s2.data(), n, st);
#else
  ops::adam_update_scaled_scalar(p2.data(), g.data(), d.data(), m2.data(), s2.data(), n, st);
#endif
  for (index_t i = 0; i < n; ++i) {
    const std::size_t k = std::size_t(i);
    CHECK(p1[k] == doctest::Approx(p2[k]).epsilon(1e-14));
    // first step from zero moments: m = (1 - b1) g_w, s = (1 - b2) g_w^2, so the step is
    // lr d sign(g_w) / (1 + eps / |g_w|): each element moves by lr Psi'(v) in the -g_w direction
    const double gw = d[k] > 0 ? (g[k] + st.l2 * p[k]) / d[k] : 0.0;
    const double expect = d[k] > 0 ? p[k] - st.lr * d[k] * gw / (std::abs(gw) + st.eps) : p[k];
    CHECK(p1[k] == doctest::Approx(expect).epsilon(1e-12));
  }
  CHECK(m1[3] == 0.0);
  CHECK(p1[3] == p[3]);
}

}  // namespace weft_unit_reparam_kernels_test
