// Tests of weft/quantile/levels.hpp and weft/quantile/scores.hpp: the hand-checkable examples of
// the spec (section 8), the interval-score identity and Bracher's WIS, coverage / MACE / width,
// pinball_loss with its float64 gradient check, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/grad_check.hpp"
#include "weft/quantile/scores.hpp"

namespace weft_unit_quantile_scores_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace q = weft::quantile;
namespace wt = weft::test;

namespace {
const double nan_v = std::numeric_limits<double>::quiet_NaN();
double score(const std::vector<double>& qv, double y, const std::vector<double>& tau) {
  return q::row_score(qv.data(), y, tau.data(), index_t(qv.size()));
}
}  // namespace

TEST_CASE("quantile/scores: hand-checkable examples of the spec") {
  const std::vector<double> tau{0.1, 0.5, 0.9};
  CHECK(score({1, 2, 3}, 2.5, tau) == doctest::Approx(0.45).epsilon(1e-14));
  CHECK(score({3, 2, 1}, 2.5, tau) == doctest::Approx(2.05).epsilon(1e-14));
  CHECK(score({2, 2, 2}, 2.5, tau) == doctest::Approx(0.75).epsilon(1e-14));  // isotonic((3, 2, 1))
  // interval [1, 3] at alpha = 0.2
  CHECK(q::interval_score(1, 3, 2.5, 0.2) == doctest::Approx(2.0));
  CHECK(q::pinball(2.5 - 1, 0.1) + q::pinball(2.5 - 3, 0.9) == doctest::Approx(0.2));
  CHECK(q::interval_score(1, 3, 4, 0.2) == doctest::Approx(12.0));
  CHECK(q::pinball(4 - 1.0, 0.1) + q::pinball(4 - 3.0, 0.9) == doctest::Approx(1.2));
  CHECK(q::pinball(-2, 0.3) == doctest::Approx(1.4));
  CHECK(q::pinball(0, 0.3) == 0);
}

TEST_CASE("quantile/levels: even levels, lookup, symmetric pairs, exact counts") {
  const auto t = q::even_levels(19);
  REQUIRE(t.size() == 19);
  CHECK(t[0] == 0.05);
  CHECK(t[9] == 0.5);
  CHECK(t[18] == 0.95);
  CHECK(t[3] == 0.2);
  CHECK(q::level_index(t, 0.9, "test") == 17);
  const auto pairs = q::symmetric_pairs(t, "test");
  REQUIRE(pairs.size() == 9);
  CHECK(pairs[0].first == 0);
  CHECK(pairs[0].second == 18);
  CHECK(q::ceil_count((1 - 0.3) * 10) == 7);  // 6.999999999999999 in binary
  CHECK(q::ceil_count(0.9 * 10) == 9);
  CHECK(q::ceil_count(8.1) == 9);
  CHECK(q::ceil_count(0.05 * 25) == 2);
  CHECK(q::ceil_count(0.2 * 25) == 5);
  CHECK_THROWS_WITH_AS(q::symmetric_pairs({0.1, 0.5, 0.8}, "test"), doctest::Contains("level 0.1 without a partner"),
                       weft::ValueError);
  CHECK_THROWS_WITH_AS(q::symmetric_pairs({0.1, 0.4, 0.9}, "test"), doctest::Contains("level 0.4 without a partner"),
                       weft::ValueError);
  CHECK_THROWS_AS(q::check_levels({}, "test"), weft::ValueError);
  CHECK_THROWS_AS(q::check_levels({0.5, 0.3}, "test"), weft::ValueError);
  CHECK_THROWS_AS(q::check_levels({0.3, 0.3}, "test"), weft::ValueError);
  CHECK_THROWS_AS(q::check_levels({0.0, 0.3}, "test"), weft::ValueError);
  CHECK_THROWS_AS(q::check_levels({0.3, 1.0}, "test"), weft::ValueError);
  CHECK_THROWS_AS(q::check_levels({0.3, nan_v}, "test"), weft::ValueError);
  CHECK_THROWS_AS(q::level_index(t, 0.33, "test"), weft::ValueError);
  CHECK_THROWS_AS(q::even_levels(0), weft::ValueError);
}

TEST_CASE("quantile/scores: S = |y - q_med| / 2 + sum (alpha_k / 2) IS_k and Bracher's WIS = 2 wis") {
  weft::Rng rng(4);
  const auto tau = q::even_levels(9);  // 0.1 .. 0.9
  const index_t n = 50, m = 9;
  Tensor<double> Q = wt::randn<double>({n, m}, rng), y = wt::randn<double>({n}, rng);
  double total = 0;
  for (index_t i = 0; i < n; ++i) {
    double s = 0.5 * std::abs(y(i) - Q(i, 4));
    for (index_t k = 0; k < 4; ++k) s += tau[std::size_t(k)] * q::interval_score(Q(i, k), Q(i, m - 1 - k), y(i), 2 * tau[std::size_t(k)]);
    CHECK(q::row_score(Q.data() + i * m, y(i), tau.data(), m) == doctest::Approx(s).epsilon(1e-12));
    total += s;
  }
  CHECK(q::wis(Q, y, tau) == doctest::Approx(total / double(n * m)).epsilon(1e-12));
  CHECK(q::wis_bracher(Q, y, tau) == doctest::Approx(total / (4 + 0.5) / double(n)).epsilon(1e-12));
  CHECK_THROWS_AS(q::wis_bracher(Q.slice(1, 0, 8), y, q::even_levels(8)), weft::ValueError);  // no median
  const Tensor<double> rs = q::row_scores(Q, y, tau);
  CHECK(rs.numel() == n);
}

TEST_CASE("quantile/scores: coverage, width, interval score, MACE, crossings") {
  const std::vector<double> tau{0.1, 0.5, 0.9};
  const Tensor<double> Q = Tensor<double>::from_values({0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 1, 2}, Shape{4, 3});
  const Tensor<double> y = Tensor<double>::vector_of({2, -1, 0.5, 1.5});
  CHECK(q::coverage(Q, y, tau, 0.1) == doctest::Approx(0.5));  // closed: y = 2 on the bound counts; row 3 is [3, 2]
  CHECK(q::mean_width(Q, tau, 0.1) == doctest::Approx((2 + 2 + 2 - 1) / 4.0));
  CHECK(q::mean_interval_score(Q, y, tau, 0.1) ==
        doctest::Approx((q::interval_score(0, 2, 2, 0.2) + q::interval_score(0, 2, -1, 0.2) +
                         q::interval_score(0, 2, 0.5, 0.2) + q::interval_score(3, 2, 1.5, 0.2)) / 4));
  // below counts per level: 0.1: y <= (0,0,0,3) -> rows 1, 3 -> 0.5; 0.5: y <= 1 -> rows 1, 2 -> 0.5;
  // 0.9: y <= 2 -> all -> 1.0
  CHECK(q::mace(Q, y, tau) == doctest::Approx((0.4 + 0.0 + 0.1) / 3));
  CHECK(q::crossing_fraction(Q) == doctest::Approx(0.25));
}

TEST_CASE("quantile/scores: pinball_loss equals wis and passes the float64 gradient check") {
  weft::Rng rng(8);
  const std::vector<double> tau{0.05, 0.3, 0.5, 0.9};
  const index_t n = 6, m = 4;
  const Tensor<double> y = wt::randn<double>({n}, rng);
  Tensor<double> Q(Shape{n, m});
  for (index_t i = 0; i < n; ++i)  // keep every residual at least 0.05 away from the kink
    for (index_t k = 0; k < m; ++k) {
      double u = rng.normal();
      if (std::abs(u) < 0.05) u = u < 0 ? -0.05 : 0.05;
      Q(i, k) = y(i) - u;
    }
  weft::Tape<double> tape;
  auto loss = q::pinball_loss(tape.variable(Q), y, tau);
  CHECK(loss.item() == doctest::Approx(q::wis(Q, y, tau)).epsilon(1e-14));
  tape.reset();
  WEFT_CHECK_GRAD(weft::grad_check([&](auto&, const auto& v) { return q::pinball_loss(v[0], y, tau); }, {Q}));
  // Huber-pinball: smooth at 0, checked with residuals on both sides of delta
  WEFT_CHECK_GRAD(weft::grad_check([&](auto&, const auto& v) { return q::pinball_loss(v[0], y, tau, 0.7); }, {Q}));
}

TEST_CASE("quantile/scores: pinball gradient at a tie is -tau / (n m) and Huber reduces to pinball far out") {
  const std::vector<double> tau{0.25, 0.75};
  const Tensor<double> Q = Tensor<double>::from_values({1, 3}, Shape{1, 2});
  const Tensor<double> y = Tensor<double>::vector_of({1});  // a tie at level 0.25, y < q at 0.75
  weft::Tape<double> tape;
  auto v = tape.variable(Q);
  tape.backward(q::pinball_loss(v, y, tau));
  CHECK(v.grad()(0, 0) == doctest::Approx(-0.25 / 2));
  CHECK(v.grad()(0, 1) == doctest::Approx((1 - 0.75) / 2));
  tape.reset();
  // |u| >> delta: h(u)/delta = |u| - delta/2, so the loss is pinball minus a constant
  auto huber = q::pinball_loss(tape.constant(Q), y, tau, 1e-3).item();
  CHECK(huber == doctest::Approx(q::wis(Q, y, tau) - 0.5e-3 * 0.25 / 2).epsilon(1e-12));
}

TEST_CASE_TEMPLATE("quantile/scores: bad input", T, float, double) {
  const std::vector<double> tau{0.1, 0.5, 0.9};
  Tensor<T> Q = Tensor<T>::from_values({0, 1, 2, 0, 1, 2}, Shape{2, 3});
  Tensor<T> y = Tensor<T>::vector_of({1, 1});
  CHECK_THROWS_AS(q::wis(Q, y, {0.1, 0.5}), weft::ShapeError);
  CHECK_THROWS_AS(q::wis(Q, y, {0.5, 0.1, 0.9}), weft::ValueError);
  CHECK_THROWS_AS(q::wis(Q, Tensor<T>::vector_of({1}), tau), weft::ShapeError);
  CHECK_THROWS_AS(q::wis(Q.reshape({6}), y, tau), weft::ShapeError);
  CHECK_THROWS_AS(q::coverage(Q, y, tau, 0.2), weft::ValueError);
  Tensor<T> Qn = Q.clone(), yn = y.clone();
  Qn(1, 1) = T(nan_v);
  yn(0) = T(nan_v);
  CHECK_THROWS_WITH_AS(q::wis(Qn, y, tau), doctest::Contains("got NaN at row 1, level 1"), weft::ValueError);
  CHECK_THROWS_AS(q::wis(Q, yn, tau), weft::ValueError);
  weft::Tape<T> tape;
  CHECK_THROWS_AS(q::pinball_loss(tape.variable(Qn), y, tau), weft::ValueError);
  CHECK_THROWS_AS(q::pinball_loss(tape.variable(Q), y, tau, -1.0), weft::ValueError);
  CHECK_THROWS_AS(q::interval_score(0, 1, 0.5, 0.0), weft::ValueError);
  // +inf bounds (an infinite conformal interval) are allowed: covered, infinite width
  Tensor<T> Qi = Q.clone();
  Qi(0, 0) = -std::numeric_limits<T>::infinity();
  Qi(0, 2) = std::numeric_limits<T>::infinity();
  CHECK(q::coverage(Qi, y, tau, 0.1) == 1.0);
  CHECK(std::isinf(q::mean_width(Qi, tau, 0.1)));
}

TEST_CASE("quantile/levels: even_levels refuses absurd counts instead of allocating them") {
  CHECK_THROWS_WITH_AS(q::even_levels(index_t(1) << 40), doctest::Contains("weft::quantile::even_levels: "),
                       weft::ValueError);
  CHECK_THROWS_AS(q::even_levels(-5), weft::ValueError);
  CHECK(q::even_levels(q::max_even_levels).size() == std::size_t(q::max_even_levels));
}

}  // namespace weft_unit_quantile_scores_test
