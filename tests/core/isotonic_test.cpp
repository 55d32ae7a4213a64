// Tests of weft/core/ops/isotonic.hpp: PAVA (unweighted and weighted) against hand examples,
// scikit-learn's IsotonicRegression and a naive O(m^2) reference; stable row sorting; the row
// drivers (vector path vs scalar path, 1 vs 2 threads, bit for bit); the checked tensor
// functions and their errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/ops/isotonic.hpp"
#include "weft/core/parallel.hpp"

namespace weft_unit_core_isotonic_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace ops = weft::ops;
namespace wt = weft::test;

namespace {

std::vector<double> pava(std::vector<double> q) {
  std::vector<index_t> ends(q.size());
  ops::isotonic_row(q.data(), q.data(), index_t(q.size()), ends.data());
  return q;
}

/// Naive pool-adjacent-violators: pool the first violating adjacent pair of blocks, restart.
/// O(m^2) or worse; long double.
std::vector<double> naive_pava(const std::vector<double>& q, const std::vector<double>& w) {
  struct B { long double s, w; index_t n; };
  std::vector<B> b;
  for (std::size_t i = 0; i < q.size(); ++i) b.push_back({(long double)w[i] * q[i], (long double)w[i], 1});
  for (bool again = true; again;) {
    again = false;
    for (std::size_t k = 0; k + 1 < b.size(); ++k)
      if (b[k].s / b[k].w > b[k + 1].s / b[k + 1].w) {
        b[k].s += b[k + 1].s;
        b[k].w += b[k + 1].w;
        b[k].n += b[k + 1].n;
        b.erase(b.begin() + std::ptrdiff_t(k) + 1);
        again = true;
        break;
      }
  }
  std::vector<double> out;
  for (auto& x : b)
    for (index_t j = 0; j < x.n; ++j) out.push_back(double(x.s / x.w));
  return out;
}

void check_close(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK_MESSAGE(std::abs(a[i] - b[i]) <= tol, "at ", i, ": ", a[i], " vs ", b[i]);
}

/// Random rows: a mix of sorted rows, rows with ties and crossing rows (sorted plus noise).
template <class T>
Tensor<T> random_rows(index_t rows, index_t m, weft::Rng& rng) {
  Tensor<T> q(Shape{rows, m});
  for (index_t r = 0; r < rows; ++r) {
    const int kind = int(rng.below(3));
    for (index_t k = 0; k < m; ++k) {
      const double base = double(k) / double(m);
      q(r, k) = T(kind == 0 ? base : kind == 1 ? std::round(4 * (base + 0.2 * rng.normal())) / 4
                                               : base + 0.3 * rng.normal());
    }
  }
  return q;
}

}  // namespace

TEST_CASE("core/isotonic: hand examples and edge cases") {
  check_close(pava({1, 3, 2, 4}), {1, 2.5, 2.5, 4}, 0);
  check_close(pava({3, 2, 1}), {2, 2, 2}, 0);
  check_close(pava({1, 2, 2, 3}), {1, 2, 2, 3}, 0);   // ties stay
  check_close(pava({2, 2, 1}), {5.0 / 3, 5.0 / 3, 5.0 / 3}, 1e-15);
  check_close(pava({7}), {7}, 0);                      // m = 1: identity
  CHECK(pava({}).empty());                             // m = 0: nothing to do
  std::vector<index_t> ends(4);
  std::vector<double> q{1, 3, 2, 4}, out(4);
  CHECK(ops::isotonic_row(q.data(), out.data(), 4, ends.data()) == 3);
  CHECK(ends[0] == 1);  // block sizes
  CHECK(ends[1] == 2);
  CHECK(ends[2] == 1);
}

TEST_CASE("core/isotonic: equals scikit-learn's IsotonicRegression (x = 1..m) within 1e-12") {
  // sklearn 1.2.1: IsotonicRegression().fit_transform(np.arange(1, m + 1), y)
  const std::vector<std::vector<double>> ys = {
      {-0.802, -1.324, -0.248, 0.42, 1.136, 0.11, -0.553, -0.785, 0.749, 1.635},
      {0.273, -0.961, -1.919, -0.319, -0.116, -1.848, -1.932, -3.095, -3.724, -4.212, -4.926, -4.372},
      {5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0},
      {-1.019, -1.066, -0.655, -0.418, -1.048, -0.521, -0.628, -0.274, -0.498, 0.006, 0.1, 0.131, 0.019, 0.326,
       0.228, 0.26, 0.845, 0.556, 1.351}};
  const double a = -1.0630000000000002, b = 0.065599999999999978, c = -2.2625833333333332;
  const std::vector<std::vector<double>> ref = {
      {a, a, -0.248, b, b, b, b, b, 0.749, 1.635},
      std::vector<double>(12, c),
      {2.25, 2.25, 2.25, 2.25, 2.25, 2.25, 2.25, 2.25, 3, 4},
      {-1.0425, -1.0425, -0.70699999999999996, -0.70699999999999996, -0.70699999999999996, -0.57450000000000001,
       -0.57450000000000001, -0.38600000000000001, -0.38600000000000001, 0.0060000000000000001,
       0.083333333333333329, 0.083333333333333329, 0.083333333333333329, 0.27133333333333337,
       0.27133333333333337, 0.27133333333333337, 0.70050000000000001, 0.70050000000000001, 1.351}};
  for (std::size_t i = 0; i < ys.size(); ++i) check_close(pava(ys[i]), ref[i], 1e-12);
  // weighted: fit_transform(x, y, sample_weight=w)
  const std::vector<double> y{0.717, -1.998, 0.272, -1.102, 0.033, 0.044, -1.988, -0.233};
  const std::vector<double> w{2.81, 0.44, 2.57, 1.23, 2.86, 1.32, 2.82, 1.76};
  const double d = -0.35405480427046265;
  std::vector<double> out(8), ws(8);
  std::vector<index_t> ends(8);
  ops::isotonic_row_weighted(y.data(), w.data(), out.data(), 8, ends.data(), ws.data());
  check_close(out, {d, d, d, d, d, d, d, -0.23300000000000001}, 1e-12);
}

TEST_CASE("core/isotonic: PAVA equals the naive pool-adjacent reference on random rows") {
  weft::Rng rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const index_t m = 1 + index_t(rng.below(60));
    std::vector<double> q(static_cast<std::size_t>(m)), w(static_cast<std::size_t>(m)), ones(static_cast<std::size_t>(m), 1.0);
    for (index_t k = 0; k < m; ++k) {
      q[std::size_t(k)] = trial % 3 == 0 ? double(rng.below(4)) : rng.normal() + 0.02 * double(k);
      w[std::size_t(k)] = rng.uniform(0.1, 3.0);
    }
    const std::vector<double> iso = pava(q);
    check_close(iso, naive_pava(q, ones), 1e-12);
    for (index_t k = 1; k < m; ++k) CHECK(iso[std::size_t(k - 1)] <= iso[std::size_t(k)]);
    std::vector<double> wout(static_cast<std::size_t>(m)), ws(static_cast<std::size_t>(m));
    std::vector<index_t> ends(static_cast<std::size_t>(m));
    ops::isotonic_row_weighted(q.data(), w.data(), wout.data(), m, ends.data(), ws.data());
    check_close(wout, naive_pava(q, w), 1e-12);
    ops::isotonic_row_weighted(q.data(), ones.data(), wout.data(), m, ends.data(), ws.data());
    check_close(wout, iso, 1e-13);  // unit weights: the unweighted fit
  }
}

TEST_CASE("core/isotonic: a 1e5-point row comes out monotone with its sum kept") {
  // a long row with long decreasing stretches: exercises deep merges (no recursion, O(m))
  weft::Rng rng(3);
  const index_t m = 100000;
  std::vector<double> q(static_cast<std::size_t>(m));
  for (index_t k = 0; k < m; ++k) q[std::size_t(k)] = std::log1p(double(k)) + rng.normal() - (k % 5000 == 0 ? 3.0 : 0.0);
  const std::vector<double> iso = pava(q);
  for (index_t k = 1; k < m; ++k) REQUIRE(iso[std::size_t(k - 1)] <= iso[std::size_t(k)]);
  // each block's value is the mean of its members, so the total is kept
  long double s = 0;
  for (index_t k = 0; k < m; ++k) s += q[std::size_t(k)] - iso[std::size_t(k)];
  CHECK(std::abs(double(s)) < 1e-7);
}

TEST_CASE("core/isotonic: stable sort of rows, with the permutation") {
  std::vector<double> q{3, -0.0, 1, 0.0, -2, 1};
  std::vector<double> out(6);
  std::vector<index_t> perm(6);
  ops::sort_row_perm(q.data(), out.data(), perm.data(), 6, static_cast<index_t*>(nullptr));
  check_close(out, {-2, 0, 0, 1, 1, 3}, 0);
  CHECK(std::signbit(out[1]));   // -0 came first in q and stays first
  CHECK(!std::signbit(out[2]));
  CHECK(perm == std::vector<index_t>{4, 1, 3, 2, 5, 0});
  weft::Rng rng(5);
  for (index_t m : {index_t(1), index_t(31), index_t(33), index_t(200), index_t(1000)}) {
    std::vector<double> v(static_cast<std::size_t>(m)), s(static_cast<std::size_t>(m)), scratch(static_cast<std::size_t>(m)), ref;
    std::vector<index_t> p(static_cast<std::size_t>(m)), pscratch(static_cast<std::size_t>(m));
    for (auto& x : v) x = double(rng.below(50));  // many ties
    ref = v;
    std::stable_sort(ref.begin(), ref.end());
    ops::sort_row(v.data(), s.data(), m, scratch.data());
    CHECK(s == ref);
    ops::sort_row_perm(v.data(), s.data(), p.data(), m, pscratch.data());
    CHECK(s == ref);
    for (index_t k = 1; k < m; ++k)  // stable: equal values keep increasing source positions
      if (s[std::size_t(k)] == s[std::size_t(k - 1)]) CHECK(p[std::size_t(k - 1)] < p[std::size_t(k)]);
  }
}

TEST_CASE_TEMPLATE("core/isotonic: vector path equals scalar path, 1 and 2 threads, bit for bit", T, float, double) {
  const int threads = weft::num_threads();
  weft::Rng rng(21);
  for (index_t m : {index_t(1), index_t(3), index_t(19), index_t(100), index_t(200)}) {
    const index_t rows = 5000;
    const Tensor<T> q = random_rows<T>(rows, m, rng);
    Tensor<T> w(Shape{rows, m});
    for (auto& v : w) v = T(rng.uniform(0.5, 2.0));
    Tensor<T> a(q.shape()), b(q.shape()), c(q.shape()), inplace = q.clone();
    auto run_all = [&](auto iso, auto isow, auto srt, Tensor<T>& o1, Tensor<T>& o2, Tensor<T>& o3) {
      iso(q.data(), o1.data(), rows, m);
      isow(q.data(), w.data(), m, o2.data(), rows, m);
      srt(q.data(), o3.data(), rows, m);
    };
    weft::set_num_threads(1);
    run_all([](auto... x) { ops::isotonic_rows_scalar(x...); }, [](auto... x) { ops::isotonic_rows_weighted_scalar(x...); },
            [](auto... x) { ops::sort_rows_scalar(x...); }, a, b, c);
    Tensor<T> a2(q.shape()), b2(q.shape()), c2(q.shape());
    weft::set_num_threads(2);
    run_all([](auto... x) { ops::isotonic_rows(x...); }, [](auto... x) { ops::isotonic_rows_weighted(x...); },
            [](auto... x) { ops::sort_rows(x...); }, a2, b2, c2);
    CHECK(wt::identical(a, a2));
    CHECK(wt::identical(b, b2));
    CHECK(wt::identical(c, c2));
    ops::isotonic_rows(inplace.data(), inplace.data(), rows, m);  // out may alias q
    CHECK(wt::identical(a, inplace));
    for (index_t r = 0; r < rows; ++r) {
      CHECK(ops::is_nondecreasing(a.data() + r * m, m));
      CHECK(ops::is_nondecreasing(c.data() + r * m, m));
      CHECK(ops::is_nondecreasing(q.data() + r * m, m) == ops::is_nondecreasing_scalar(q.data() + r * m, m));
    }
  }
  weft::set_num_threads(threads);
}

TEST_CASE("core/isotonic: is_nondecreasing treats NaN as a violation") {
  std::vector<double> v(40);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = double(i);
  CHECK(ops::is_nondecreasing(v.data(), 40));
  v[37] = std::numeric_limits<double>::quiet_NaN();
  CHECK(!ops::is_nondecreasing(v.data(), 40));
  CHECK(!ops::is_nondecreasing_scalar(v.data(), 40));
  v[37] = 37;
  v[5] = 4;  // tie: still non-decreasing
  CHECK(ops::is_nondecreasing(v.data(), 40));
  v[5] = 3.5;
  CHECK(!ops::is_nondecreasing(v.data(), 40));
}

TEST_CASE("core/isotonic: checked tensor functions and bad input") {
  const Tensor<double> q = Tensor<double>::from_values({1, 3, 2, 4, 3, 2, 1, 0}, Shape{2, 4});
  WEFT_CHECK_CLOSE(ops::isotonic(q), Tensor<double>::from_values({1, 2.5, 2.5, 4, 1.5, 1.5, 1.5, 1.5}, Shape{2, 4}), 0);
  WEFT_CHECK_CLOSE(ops::sort_last_axis(q), Tensor<double>::from_values({1, 2, 3, 4, 0, 1, 2, 3}, Shape{2, 4}), 0);
  const Tensor<double> w = Tensor<double>::from_values({1, 1, 3, 1}, Shape{4});
  WEFT_CHECK_CLOSE(ops::isotonic_weighted(q, w), Tensor<double>::from_values({1, 2.25, 2.25, 4, 4.0 / 3, 4.0 / 3, 4.0 / 3, 4.0 / 3}, Shape{2, 4}), 1e-15);

  Tensor<double> bad = q.clone();
  bad(1, 2) = std::numeric_limits<double>::quiet_NaN();
  wt::Snapshot<double> snap({bad, w});
  CHECK_THROWS_AS(ops::isotonic(bad), weft::ValueError);
  CHECK_THROWS_AS(ops::sort_last_axis(bad), weft::ValueError);
  CHECK_THROWS_AS(ops::isotonic_weighted(bad, w), weft::ValueError);
  CHECK(snap.unchanged());
  CHECK_THROWS_AS(ops::isotonic(Tensor<double>::scalar(1.0)), weft::ShapeError);
  CHECK_THROWS_AS(ops::isotonic(Tensor<double>()), weft::ShapeError);
  CHECK_THROWS_AS(ops::isotonic_weighted(q, Tensor<double>(Shape{3})), weft::ShapeError);
  CHECK_THROWS_AS(ops::isotonic_weighted(q, Tensor<double>::from_values({1, 0, 1, 1}, Shape{4})), weft::ValueError);
  CHECK_THROWS_WITH_AS(ops::isotonic_weighted(q, Tensor<double>::from_values({1, -1, 1, 1}, Shape{4})),
                       doctest::Contains("expected positive finite weights"), weft::ValueError);
}

}  // namespace weft_unit_core_isotonic_test
