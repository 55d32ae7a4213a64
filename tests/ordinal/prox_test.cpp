// Tests of weft/core/ops/prox.hpp: soft-thresholding and the fused elastic-net proximal-gradient
// step (values, NaN, scalar vs vector bodies, 1 vs 2 threads).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ordinal/ordinal_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/ops/prox.hpp"

namespace weft_unit_ordinal_prox_test {

using namespace weft;

TEST_CASE_TEMPLATE("core/prox: soft-thresholding values", T, float, double) {
  CHECK(ops::soft_threshold(T(3), T(1)) == T(2));
  CHECK(ops::soft_threshold(T(-3), T(1)) == T(-2));
  CHECK(ops::soft_threshold(T(0.5), T(1)) == T(0));
  CHECK(ops::soft_threshold(T(-1), T(1)) == T(0));
  CHECK(ops::soft_threshold(T(2), T(0)) == T(2));
  CHECK(std::isnan(ops::soft_threshold(std::numeric_limits<T>::quiet_NaN(), T(1))));
  // prox of t (l1 |x| + l2 x^2 / 2) minimises the prox objective: compare with a grid search
  const T v = T(1.7), tl1 = T(0.4), tl2 = T(0.5);
  const T p = ops::prox_elastic_net(v, tl1, tl2);
  CHECK(p == doctest::Approx(double((v - tl1) / (1 + tl2))));
  auto obj = [&](double x) { return double(tl1) * std::abs(x) + 0.5 * double(tl2) * x * x + 0.5 * (x - double(v)) * (x - double(v)); };
  for (double d : {-1e-3, 1e-3}) CHECK(obj(double(p)) < obj(double(p) + d));
}

TEST_CASE_TEMPLATE("core/prox: array forms match the scalar formula, scalar vs SIMD, 1 vs 2 threads", T, float, double) {
  Rng rng(5);
  const index_t n = 70001;  // several parallel chunks and a SIMD tail
  auto x = test::randn<T>(Shape{n}, rng), g = test::randn<T>(Shape{n}, rng);
  auto w = test::rand_uniform<T>(Shape{n}, rng, 0.0, 2.0);
  for (index_t i = 0; i < n; i += 7) w.flat(i) = T(0);  // unpenalised coordinates
  const T step = T(0.3), l1 = T(0.8), l2 = T(0.25);
  Tensor<T> a(Shape{n}), b(Shape{n}), c(Shape{n});
  ops::prox_grad_step_scalar(x.data(), g.data(), w.data(), a.data(), n, step, l1, l2);
  for (index_t i = 0; i < n; i += 997) {
    const double v = double(x.flat(i)) - double(step) * double(g.flat(i));
    const double e = ops::soft_threshold(v, double(step * l1) * double(w.flat(i))) / (1 + double(step * l2) * double(w.flat(i)));
    CHECK(double(a.flat(i)) == doctest::Approx(e).epsilon(1e-5));
  }
  {
    ordinal_test::ThreadGuard one(1);
    ops::prox_grad_step(x.data(), g.data(), w.data(), b.data(), n, step, l1, l2);
  }
  {
    ordinal_test::ThreadGuard two(2);
    ops::prox_grad_step(x.data(), g.data(), w.data(), c.data(), n, step, l1, l2);
  }
  CHECK(test::identical(b, c));
  // vector vs scalar body: the same expression; an FMA may round x - t g differently
  WEFT_CHECK_CLOSE(b, a, sizeof(T) == 4 ? 1e-6 : 1e-14);
  index_t zeros = 0;
  for (index_t i = 0; i < n; ++i) zeros += a.flat(i) == T(0) ? 1 : 0;
  CHECK(zeros > n / 10);  // the threshold is active somewhere
  // without penalty factors and with l1 = l2 = 0 the step is a plain gradient step
  ops::prox_grad_step(x.data(), g.data(), static_cast<const T*>(nullptr), b.data(), n, step, T(0), T(0));
  for (index_t i = 0; i < n; i += 1013) CHECK(double(b.flat(i)) == doctest::Approx(double(x.flat(i) - step * g.flat(i))));
  // soft_threshold over an array, in place
  Tensor<T> s = x.clone(), r(Shape{n});
  ops::soft_threshold_scalar(x.data(), r.data(), n, T(0.5));
  ops::soft_threshold(s.data(), s.data(), n, T(0.5));
  CHECK(test::identical(r, s));
}

}  // namespace weft_unit_ordinal_prox_test
