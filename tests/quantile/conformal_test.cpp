// Tests of weft/quantile/conformal.hpp: the finite-sample index (n = 9 and n = 8 at alpha = 0.1),
// a hand example, the synthetic CQR coverage check of the spec (20 seeds, per-seed and mean
// bounds), the asymmetric variant, infinite intervals, threads, and bad input (m = 1,
// unmatched levels, NaN).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/test_util.hpp"
#include "weft/quantile/conformal.hpp"
#include "weft/quantile/models.hpp"

namespace weft_unit_quantile_conformal_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace q = weft::quantile;
namespace wt = weft::test;

namespace {

/// x ~ U(0, 4), y = x + (0.5 + 0.5 x) t_3, and the deliberately narrow predictor
/// q_tau(x) = x + 0.5 Phi^{-1}(tau).
struct Synthetic {
  Tensor<double> Q, y;
};
Synthetic synthetic(index_t n, const std::vector<double>& tau, weft::Rng& rng) {
  Synthetic s{Tensor<double>(Shape{n, index_t(tau.size())}), Tensor<double>(Shape{n})};
  for (index_t i = 0; i < n; ++i) {
    const double x = rng.uniform(0, 4), z = rng.normal();
    double chi = 0;
    for (int k = 0; k < 3; ++k) chi += std::pow(rng.normal(), 2);
    s.y(i) = x + (0.5 + 0.5 * x) * z / std::sqrt(chi / 3);
    for (std::size_t k = 0; k < tau.size(); ++k) s.Q(i, index_t(k)) = x + 0.5 * q::normal_quantile(tau[k]);
  }
  return s;
}

}  // namespace

TEST_CASE("quantile/conformal: the finite-sample index") {
  CHECK(q::conformal_rank(9, 0.9) == 9);
  CHECK(q::conformal_rank(8, 0.9) == 9);  // > n: infinite
  CHECK(q::conformal_rank(99, 0.9) == 90);
  CHECK(q::conformal_rank(9, 1 - 0.3) == 7);  // (1 - 0.3) * 10 is 6.999999999999999 in binary
  const std::vector<double> tau{0.05, 0.5, 0.95};
  // n = 9 at alpha = 0.1: r = 9, the largest score
  Tensor<double> Q(Shape{9, 3}), y(Shape{9});
  for (index_t i = 0; i < 9; ++i) {
    Q(i, 0) = -1;
    Q(i, 1) = 0;
    Q(i, 2) = 1;
    y(i) = 0.25 * double(i);  // scores max(-1 - y, y - 1) = y - 1: -1, -0.75, ..., 1
  }
  q::ConformalCalibrator<double> c;
  c.fit(Q, y, tau);
  REQUIRE(c.pairs().size() == 1);
  CHECK(c.pairs()[0].rank == 9);
  CHECK(c.pairs()[0].shift_lower == doctest::Approx(1.0));
  CHECK(!c.infinite());
  const Tensor<double> out = c.apply(Tensor<double>::from_values({-1, 0.3, 1}, Shape{1, 3}));
  WEFT_CHECK_CLOSE(out, Tensor<double>::from_values({-2, 0.3, 2}, Shape{1, 3}), 1e-15);  // median unchanged
  // n = 8: r = 9 > 8, an infinite interval: not an error, reported
  q::ConformalCalibrator<double> c8;
  c8.fit(Q.rows(0, 8), y.rows(0, 8), tau);
  CHECK(c8.infinite());
  CHECK(c8.pairs()[0].infinite);
  CHECK(c8.report().find("infinite interval (needs n >= 9)") != std::string::npos);
  const Tensor<double> inf = c8.apply(Tensor<double>::from_values({-1, 0.3, 1}, Shape{1, 3}));
  CHECK(inf(0, 0) == -std::numeric_limits<double>::infinity());
  CHECK(inf(0, 2) == std::numeric_limits<double>::infinity());
  CHECK(inf(0, 1) == 0.3);
}

TEST_CASE("quantile/conformal: shrinking, crossing pairs are re-sorted") {
  const std::vector<double> tau{0.1, 0.2, 0.8, 0.9};
  // outer pair [-3, 3] too wide for y = +-1 (scores -2, r = 17 of 20); inner pair [0.5, 0.5]
  // (scores 0.5 and 1.5, r = ceil(0.6 * 21) = 13 -> 1.5): calibrated to [-1, 1] and [-1, 2],
  // so the inner upper end crosses the outer one and the sort puts them back in order
  Tensor<double> Q(Shape{20, 4}), y(Shape{20});
  for (index_t i = 0; i < 20; ++i) {
    Q(i, 0) = -3;
    Q(i, 1) = 0.5;
    Q(i, 2) = 0.5;
    Q(i, 3) = 3;
    y(i) = (i % 2) ? 1 : -1;
  }
  q::ConformalCalibrator<double> c;
  c.fit(Q, y, tau);
  CHECK(c.pairs()[0].rank == 17);
  CHECK(c.pairs()[0].shift_lower == doctest::Approx(-2));
  CHECK(c.pairs()[1].rank == 13);
  CHECK(c.pairs()[1].shift_lower == doctest::Approx(1.5));
  WEFT_CHECK_CLOSE(c.apply(Q.rows(0, 1)), Tensor<double>::from_values({-1, -1, 1, 2}, Shape{1, 4}), 1e-15);
  q::ConformalOptions o;
  o.resort = false;
  q::ConformalCalibrator<double> nosort(o);
  nosort.fit(Q, y, tau);
  WEFT_CHECK_CLOSE(nosort.apply(Q.rows(0, 1)), Tensor<double>::from_values({-1, -1, 2, 1}, Shape{1, 4}), 1e-15);
  CHECK(c.report().find("correction -2") != std::string::npos);
}

TEST_CASE("quantile/conformal: synthetic CQR coverage over 20 seeds (spec section 8)") {
  const auto tau = q::even_levels(19);
  double raw90 = 0, sum90 = 0, sum80 = 0, asym90 = 0;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    weft::Rng rng(1000 + seed);
    const Synthetic cal = synthetic(1000, tau, rng), test = synthetic(20000, tau, rng);
    q::ConformalCalibrator<double> c;
    c.fit(cal.Q, cal.y, tau);
    const Tensor<double> out = c.apply(test.Q);
    const double c90 = q::coverage(out, test.y, tau, 0.05), c80 = q::coverage(out, test.y, tau, 0.1);
    CHECK(c90 >= 0.86);
    CHECK(c90 <= 0.94);
    CHECK(c80 >= 0.75);
    CHECK(c80 <= 0.85);
    sum90 += c90;
    sum80 += c80;
    raw90 += q::coverage(test.Q, test.y, tau, 0.05);
    q::ConformalOptions o;
    o.symmetric = false;
    q::ConformalCalibrator<double> a(o);
    a.fit(cal.Q, cal.y, tau);
    asym90 += q::coverage(a.apply(test.Q), test.y, tau, 0.05);
  }
  CHECK(sum90 / 20 >= 0.89);
  CHECK(sum90 / 20 <= 0.915);
  CHECK(sum80 / 20 >= 0.785);
  CHECK(sum80 / 20 <= 0.815);
  CHECK(raw90 / 20 < 0.5);  // the predictor was too narrow (about 0.42)
  CHECK(asym90 / 20 >= 0.89);
  CHECK(asym90 / 20 <= 0.92);
}

TEST_CASE("quantile/conformal: 1 and 2 threads give the same bits") {
  const int threads = weft::num_threads();
  const auto tau = q::even_levels(19);
  weft::Rng rng(5);
  const Synthetic cal = synthetic(500, tau, rng), test = synthetic(30000, tau, rng);
  q::ConformalCalibrator<double> c;
  c.fit(cal.Q, cal.y, tau);
  weft::set_num_threads(1);
  const Tensor<double> a = c.apply(test.Q);
  weft::set_num_threads(2);
  const Tensor<double> b = c.apply(test.Q);
  CHECK(wt::identical(a, b));
  weft::set_num_threads(threads);
}

TEST_CASE("quantile/conformal: bad input") {
  q::ConformalCalibrator<double> c;
  const Tensor<double> Q = Tensor<double>::from_values({0, 1, 2, 0, 1, 2}, Shape{2, 3});
  const Tensor<double> y = Tensor<double>::vector_of({1, 1});
  CHECK_THROWS_AS(c.apply(Q), weft::ConfigError);
  CHECK_THROWS_WITH_AS(c.fit(Q.slice(1, 1, 2), y, {0.5}), doctest::Contains("m >= 2"), weft::ValueError);
  CHECK_THROWS_WITH_AS(c.fit(Q, y, {0.1, 0.5, 0.8}), doctest::Contains("level 0.1 without a partner"), weft::ValueError);
  CHECK_THROWS_AS(c.fit(Q, y, {0.1, 0.9}), weft::ShapeError);
  Tensor<double> Qn = Q.clone();
  Qn(0, 2) = std::numeric_limits<double>::quiet_NaN();
  wt::Snapshot<double> snap({Qn, y});
  CHECK_THROWS_AS(c.fit(Qn, y, {0.1, 0.5, 0.9}), weft::ValueError);
  CHECK(snap.unchanged());
  CHECK_THROWS_AS(c.fit(Q, Tensor<double>::vector_of({1, std::nan("")}), {0.1, 0.5, 0.9}), weft::ValueError);
  CHECK_THROWS_AS(c.fit(Tensor<double>(Shape{0, 3}), Tensor<double>(Shape{0}), {0.1, 0.5, 0.9}), weft::ShapeError);
  c.fit(Q, y, {0.1, 0.5, 0.9});
  CHECK_THROWS_AS(c.apply(Q.slice(1, 0, 2)), weft::ShapeError);
  CHECK_THROWS_AS(c.apply(Qn), weft::ValueError);
}

}  // namespace weft_unit_quantile_conformal_test
