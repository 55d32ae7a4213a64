// Tests of weft/quantile/monotone.hpp: the theorem (sort and unweighted isotonic never increase
// the pinball score) on many random rows, the rules for which it fails, the rules' outputs, the
// differentiable sort / isotonic / margin penalty with float64 gradient checks, threads, and
// bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/grad_check.hpp"
#include "weft/quantile/monotone.hpp"

namespace weft_unit_quantile_monotone_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace q = weft::quantile;
namespace wt = weft::test;

namespace {
double row_score(const Tensor<double>& Q, index_t i, double y, const std::vector<double>& tau) {
  return q::row_score(Q.data() + i * Q.dim(1), y, tau.data(), Q.dim(1));
}
}  // namespace

TEST_CASE("quantile/monotone: sort and unweighted isotonic never increase S (A1, 200000 random rows)") {
  weft::Rng rng(2024);
  const q::Monotonize rules[] = {q::Monotonize::cummax, q::Monotonize::average, q::Monotonize::mono};
  index_t violations = 0, rows_checked = 0, worse[4] = {0, 0, 0, 0};
  for (int batch = 0; batch < 2000; ++batch) {
    const index_t m = 1 + index_t(rng.below(12)), n = 100;
    std::vector<double> tau(static_cast<std::size_t>(m));  // random strictly increasing levels in (0, 1)
    for (auto& t : tau) t = rng.uniform(0.001, 0.999);
    std::sort(tau.begin(), tau.end());
    for (index_t k = 1; k < m; ++k)
      if (tau[std::size_t(k)] <= tau[std::size_t(k - 1)]) tau[std::size_t(k)] = std::nextafter(tau[std::size_t(k - 1)], 1.0);
    Tensor<double> Q(Shape{n, m}), y(Shape{n}), w(Shape{m});
    for (auto& v : Q) v = batch % 4 == 0 ? double(rng.below(5)) : rng.normal(0, 2);  // ties in every 4th batch
    for (auto& v : y) v = batch % 4 == 0 ? double(rng.below(5)) : rng.normal(0, 2);
    for (auto& v : w) v = rng.uniform(0.1, 5.0);
    const Tensor<double> s = q::monotonize(Q, q::Monotonize::sort), iso = q::monotonize(Q, q::Monotonize::isotonic);
    const Tensor<double> wiso = q::isotonic_weighted(Q, w);
    for (index_t i = 0; i < n; ++i) {
      const double base = row_score(Q, i, y(i), tau), slack = 1e-12 * (1 + base);
      violations += row_score(s, i, y(i), tau) > base + slack;
      violations += row_score(iso, i, y(i), tau) > base + slack;
      ++rows_checked;
      worse[3] += row_score(wiso, i, y(i), tau) > base + slack;
    }
    for (int r = 0; r < 3; ++r) {
      const Tensor<double> o = q::monotonize(Q, rules[r]);
      for (index_t i = 0; i < n; ++i) worse[r] += row_score(o, i, y(i), tau) > row_score(Q, i, y(i), tau) * (1 + 1e-12) + 1e-12;
    }
  }
  CHECK(rows_checked == 200000);
  CHECK(violations == 0);
  // the rules without the guarantee do get worse on some rows (the theorem is not vacuous)
  MESSAGE("rows made worse of 200000: cummax ", worse[0], ", average ", worse[1], ", mono ", worse[2], ", weighted isotonic ", worse[3]);
  for (int r = 0; r < 4; ++r) CHECK_MESSAGE(worse[r] > 1000, "rule ", r, " got worse on only ", worse[r], " rows");
}

TEST_CASE("quantile/monotone: the cummax counter-example and the rules' outputs") {
  const std::vector<double> tau{0.1, 0.9};
  const Tensor<double> Q = Tensor<double>::from_values({10, 0}, Shape{1, 2});
  const Tensor<double> cm = q::monotonize(Q, q::Monotonize::cummax);
  CHECK(row_score(Q, 0, 0.0, tau) == doctest::Approx(9));
  CHECK(row_score(cm, 0, 0.0, tau) == doctest::Approx(10));
  CHECK(row_score(q::monotonize(Q, q::Monotonize::sort), 0, 0.0, tau) == doctest::Approx(1));

  const Tensor<double> R = Tensor<double>::from_values({3, 1, 2, 0, 4}, Shape{1, 5});
  WEFT_CHECK_CLOSE(q::monotonize(R, q::Monotonize::sort), Tensor<double>::from_values({0, 1, 2, 3, 4}, Shape{1, 5}), 0);
  WEFT_CHECK_CLOSE(q::monotonize(R, q::Monotonize::isotonic), Tensor<double>::from_values({1.5, 1.5, 1.5, 1.5, 4}, Shape{1, 5}), 1e-15);
  WEFT_CHECK_CLOSE(q::monotonize(R, q::Monotonize::cummax), Tensor<double>::from_values({3, 3, 3, 3, 4}, Shape{1, 5}), 0);
  // running max (3,3,3,3,4) and reversed running min (0,0,0,0,4) averaged
  WEFT_CHECK_CLOSE(q::monotonize(R, q::Monotonize::average), Tensor<double>::from_values({1.5, 1.5, 1.5, 1.5, 4}, Shape{1, 5}), 0);
  // mono from the median index 2: down (min(3,1,2), min(1,2), 2), up (2, max(2,0), max(2,0,4))
  WEFT_CHECK_CLOSE(q::monotonize(R, q::Monotonize::mono), Tensor<double>::from_values({1, 1, 2, 2, 4}, Shape{1, 5}), 0);
  WEFT_CHECK_CLOSE(q::monotonize(R, q::Monotonize::none), R, 0);
  const Tensor<double> one = Tensor<double>::from_values({5, -1}, Shape{2, 1});  // m = 1: identity
  for (auto h : {q::Monotonize::sort, q::Monotonize::isotonic, q::Monotonize::mono, q::Monotonize::cummax, q::Monotonize::average})
    CHECK(wt::identical(q::monotonize(one, h), one));
}

TEST_CASE_TEMPLATE("quantile/monotone: 1 and 2 threads give the same bits", T, float, double) {
  const int threads = weft::num_threads();
  weft::Rng rng(6);
  const Tensor<T> Q = wt::randn<T>({20000, 19}, rng);
  for (auto h : {q::Monotonize::sort, q::Monotonize::isotonic, q::Monotonize::mono, q::Monotonize::average}) {
    weft::set_num_threads(1);
    const Tensor<T> a = q::monotonize(Q, h);
    weft::set_num_threads(2);
    const Tensor<T> b = q::monotonize(Q, h);
    CHECK(wt::identical(a, b));
  }
  weft::set_num_threads(threads);
}

TEST_CASE("quantile/monotone: differentiable sort and isotonic pass the float64 gradient check") {
  weft::Rng rng(12);
  // distinct values with gaps >> the finite-difference step, so the permutation and the PAVA
  // partition do not change under the perturbation
  Tensor<double> Q(Shape{5, 7});
  for (auto& v : Q) v = 0.01 * double(rng.below(1000)) + 1e-4 * rng.uniform();
  auto fs = [](auto&, const auto& v) { return q::sort_levels(v[0]); };
  auto fi = [](auto&, const auto& v) { return q::isotonic_levels(v[0]); };
  WEFT_CHECK_GRAD(weft::grad_check(fs, {Q}));
  WEFT_CHECK_GRAD(weft::grad_check(fi, {Q}));
  weft::Tape<double> tape;
  auto out = q::isotonic_levels(tape.constant(Q));
  WEFT_CHECK_CLOSE(out.value(), q::monotonize(Q, q::Monotonize::isotonic), 0);
  // block gradient by hand: isotonic((3, 1)) = (2, 2); d sum(w * out) / dq = mean(w) on both
  tape.reset();
  auto v = tape.variable(Tensor<double>::from_values({3, 1}, Shape{1, 2}));
  auto o = q::isotonic_levels(v);
  tape.backward(weft::sum(o * tape.constant(Tensor<double>::from_values({1, 3}, Shape{1, 2}))));
  CHECK(v.grad()(0, 0) == doctest::Approx(2));
  CHECK(v.grad()(0, 1) == doctest::Approx(2));
}

TEST_CASE("quantile/monotone: margin penalty value, margins, gradient check") {
  const Tensor<double> Q = Tensor<double>::from_values({0, 1, 0.5, 2, 1, 3}, Shape{2, 3});
  const Tensor<double> d = q::margin_single<double>(3, 0.1);
  weft::Tape<double> tape;
  // row 0 pairs: (0,1): relu(0-1+.1)=0, (0,2): relu(0-.5+.1)=0, (1,2): relu(1-.5+.1)=0.6
  // row 1 pairs: (2-1+.1)=1.1, (2-3+.1)=0, (1-3+.1)=0 -> total 1.7 over n * 3 pairs = 6
  CHECK(q::margin_penalty(tape.constant(Q), d).item() == doctest::Approx(1.7 / 6));
  const std::vector<double> tau{0.1, 0.5, 0.9};
  const Tensor<double> dv = q::margin_vec<double>(tau, 2.0);
  CHECK(dv(0, 2) == doctest::Approx(2 * 0.01 * 0.8));
  CHECK(dv(2, 0) == 0);
  const Tensor<double> da = q::margin_adapt<double>({-1.0, 0.0, -0.5}, 0.5);
  CHECK(da(0, 1) == doctest::Approx(0.5));
  CHECK(da(1, 2) == 0);
  weft::Rng rng(3);
  Tensor<double> R(Shape{4, 5});
  for (auto& v : R) v = 0.1 * double(rng.below(100)) + 0.003;  // pair differences stay off the kink
  WEFT_CHECK_GRAD(weft::grad_check([&](auto&, const auto& v) { return q::margin_penalty(v[0], q::margin_single<double>(5, 0.05)); }, {R}));
  CHECK(q::margin_penalty(tape.constant(Tensor<double>(Shape{3, 1})), q::margin_single<double>(1, 0.1)).item() == 0);
}

TEST_CASE("quantile/monotone: bad input") {
  Tensor<double> Q = Tensor<double>::from_values({0, 1, 2, 3}, Shape{2, 2});
  Tensor<double> bad = Q.clone();
  bad(0, 1) = std::numeric_limits<double>::quiet_NaN();
  wt::Snapshot<double> snap({bad});
  CHECK_THROWS_AS(q::monotonize(bad, q::Monotonize::sort), weft::ValueError);
  CHECK_THROWS_AS(q::monotonize(bad, q::Monotonize::cummax), weft::ValueError);
  CHECK(snap.unchanged());
  CHECK_THROWS_AS(q::monotonize(Q.reshape({4}), q::Monotonize::sort), weft::ShapeError);
  CHECK_THROWS_AS(q::isotonic_weighted(Q, Tensor<double>::from_values({1, -1}, Shape{2})), weft::ValueError);
  weft::Tape<double> tape;
  CHECK_THROWS_AS(q::sort_levels(tape.constant(bad)), weft::ValueError);
  CHECK_THROWS_AS(q::isotonic_levels(tape.constant(Q.reshape({4}))), weft::ShapeError);
  CHECK_THROWS_AS(q::margin_penalty(tape.constant(Q), q::margin_single<double>(3, 0.1)), weft::ShapeError);
  CHECK_THROWS_AS(q::margin_single<double>(3, -0.1), weft::ValueError);
}

}  // namespace weft_unit_quantile_monotone_test

namespace weft_unit_quantile_monotone_nan_test {
namespace q = weft::quantile;

TEST_CASE("quantile/monotone: margins reject NaN and Inf instead of dropping them") {
  const double nan = std::nan("");
  CHECK_THROWS_WITH_AS(q::margin_adapt<double>({-1.0, nan, 0.5}, 0.5),
                       doctest::Contains("quantile::margin_adapt: expected finite residual quantiles, got nan at 1"),
                       weft::ValueError);
  CHECK_THROWS_AS(q::margin_adapt<double>({-1.0, 0.5}, nan), weft::ValueError);
  CHECK_THROWS_AS(q::margin_adapt<double>({-1.0, HUGE_VAL}, 1.0), weft::ValueError);
  CHECK_THROWS_AS(q::margin_vec<double>({0.1, 0.9}, nan), weft::ValueError);
  CHECK_THROWS_AS(q::margin_single<double>(3, HUGE_VAL), weft::ValueError);
}

}  // namespace weft_unit_quantile_monotone_nan_test
