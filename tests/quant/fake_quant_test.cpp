// Tests of weft/core/ops/fake_quant.hpp and fake_quant_lsq.hpp: the kernels against the spec's
// formulas in double, the edge cases (1 bit, zero and NaN groups, ties, clipping), the vector
// body against the scalar body (bit for bit; LSQ's scale sums within rounding), 1 vs 2 threads
// bit for bit, frozen codes, and bad arguments.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "quant_test_util.hpp"
#include "weft/core/ops/fake_quant_lsq.hpp"

namespace weft_unit_quant_fake_quant_test {

using namespace weft;
using namespace weft::quant_test;

namespace {

template <class T>
struct StatsqRun {
  std::vector<T> q, s;
  std::vector<ops::qcode_t> codes;
  std::vector<std::uint8_t> near;
};

template <class T>
StatsqRun<T> run_statsq(const std::vector<T>& w, const ops::FqGeometry& g, int bits, double br, bool scalar) {
  StatsqRun<T> r;
  r.q.assign(w.size(), T(-7));
  r.codes.assign(w.size(), 99);
  r.near.assign(w.size(), 7);
  r.s.assign(std::size_t(g.groups), T(-7));
  ops::StatsqOut<T> out;
  out.q = r.q.data();
  out.codes = r.codes.data();
  out.near = r.near.data();
  out.scales = r.s.data();
  if (scalar) ops::statsq_forward_scalar(w.data(), g, bits, out, br);
  else ops::statsq_forward(w.data(), g, bits, out, br);
  return r;
}

}  // namespace

TEST_CASE("quant/fake_quant: StatsQ matches the spec's formula per row, per tensor and over axes") {
  Rng rng(3);
  for (int bits = 1; bits <= 8; ++bits) {
    for (ops::FqGeometry g : {ops::FqGeometry{1, 5, 37}, ops::FqGeometry{1, 1, 61}, ops::FqGeometry{3, 4, 9}}) {
      const std::vector<double> w = uniform_vector<double>(g.numel(), -1.5, 1.5, rng);
      const auto r = run_statsq(w, g, bits, 0.02, false);
      for (index_t m = 0; m < g.groups; ++m) {
        double abs_sum = 0;
        for (index_t a = 0; a < g.outer; ++a)
          for (index_t j = 0; j < g.inner; ++j) abs_sum += std::abs(w[std::size_t(g.segment(a, m) + j)]);
        const double s = r.s[std::size_t(m)];
        CHECK(s == doctest::Approx(2 * abs_sum / double(g.group_size())).epsilon(1e-13));
        for (index_t a = 0; a < g.outer; ++a)
          for (index_t j = 0; j < g.inner; ++j) {
            const std::size_t i = std::size_t(g.segment(a, m) + j);
            const StatsqRef e = statsq_ref(w[i], s, bits, 0.02);
            CHECK_MESSAGE(r.q[i] == e.q, "bits ", bits, " element ", i);
            CHECK(r.codes[i] == e.code);
            CHECK(bool(r.near[i]) == e.near);
            CHECK(e.code >= -(1 << (bits - 1)));
            CHECK(e.code <= (1 << (bits - 1)) - 1);
          }
      }
    }
  }
}

TEST_CASE("quant/fake_quant: StatsQ levels, ties, clipping and the 1-bit codes") {
  // one row, mean |w| = 1, so s = 2: x = w / 2
  SUBCASE("2 bits: levels +-s/4, +-3s/4, thresholds at w = 0, +-mean|w|") {
    const std::vector<double> w = {0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5, 5.0};
    // mean |w| = 15 / 10 = 1.5, s = 3: thresholds (x n in {-1, 0, 1}) at w = 0, +-1.5
    const auto r = run_statsq(w, ops::FqGeometry{1, 1, 10}, 2, 0.0, false);
    CHECK(r.s[0] == 3.0);
    const std::vector<int> codes = {0, 0, -1, 1, -2, 0, -1, 1, -1, 1};  // ties go up (floor): 1.5 -> 1, -1.5 -> -1
    for (std::size_t i = 0; i < w.size(); ++i) {
      CHECK_MESSAGE(r.codes[i] == codes[i], "w = ", w[i]);
      CHECK(r.q[i] == (codes[i] + 0.5) * 3.0 / 2.0);
    }
    CHECK(r.q[0] == 0.75);  // W = 0 -> +s/(2n)
    CHECK(r.q[9] == 2.25);  // clipped at the top level 3s/4
  }
  SUBCASE("1 bit: sign binarisation at +-mean|w|, codes clamped to {-1, 0}") {
    const std::vector<double> w = {-3.0, -0.5, 0.0, 0.5, 3.0};  // mean |w| = 1.4, s = 2.8
    const auto r = run_statsq(w, ops::FqGeometry{1, 1, 5}, 1, 0.0, false);
    const std::vector<int> codes = {-1, -1, 0, 0, 0};  // w / s <= -1 gives -1, not the reference's -2
    for (std::size_t i = 0; i < w.size(); ++i) {
      CHECK(r.codes[i] == codes[i]);
      CHECK(r.q[i] == doctest::Approx(w[i] < 0 ? -1.4 : 1.4).epsilon(1e-15));
    }
  }
  SUBCASE("the near mask: within BR steps of an inner threshold, never at the clip edges") {
    // s = 2 (mean |w| = 1): t = x n = w (2 bits, n = 2); thresholds at t = -1, 0, 1
    const std::vector<double> w = {1.004, 0.996, 0.006, -1.0, 1.9999, -2.0, -0.004, 1.0};
    const auto r = run_statsq(w, ops::FqGeometry{1, 1, 8}, 2, 0.005, false);
    CHECK(r.s[0] == doctest::Approx(2 * (1.004 + 0.996 + 0.006 + 1.0 + 1.9999 + 2.0 + 0.004 + 1.0) / 8));
    const double s = r.s[0];
    for (std::size_t i = 0; i < w.size(); ++i) CHECK(bool(r.near[i]) == statsq_ref(w[i], s, 2, 0.005).near);
    const auto edge = run_statsq(std::vector<double>{-4.0, 4.0, 0.0, 0.0}, ops::FqGeometry{1, 1, 4}, 2, 0.005, false);
    CHECK(edge.near[0] == 0);  // x = -1: the clip edge is not a threshold
    CHECK(edge.near[1] == 0);
    CHECK(edge.near[2] == 1);  // x = 0 sits on a threshold
  }
}

TEST_CASE("quant/fake_quant: StatsQ zero groups give zeros, NaN groups give NaN, other groups unaffected") {
  std::vector<float> w = {0, 0, 0, 0, 1, -2, 3, 0.5f, 1, std::numeric_limits<float>::quiet_NaN(), 2, 3,
                          1, 2, std::numeric_limits<float>::infinity(), 4};
  const std::vector<float> clean = {1, -2, 3, 0.5f};
  for (bool scalar : {true, false}) {
    const auto r = run_statsq(w, ops::FqGeometry{1, 4, 4}, 2, 0.005, scalar);
    const auto ref = run_statsq(clean, ops::FqGeometry{1, 1, 4}, 2, 0.005, scalar);
    for (int j = 0; j < 4; ++j) {
      CHECK(r.q[std::size_t(j)] == 0.0f);
      CHECK(!std::signbit(r.q[std::size_t(j)]));
      CHECK(r.codes[std::size_t(j)] == 0);
      CHECK(r.near[std::size_t(j)] == 1);
      CHECK(r.q[std::size_t(4 + j)] == ref.q[std::size_t(j)]);
      CHECK(std::isnan(r.q[std::size_t(8 + j)]));
      CHECK(std::isnan(r.q[std::size_t(12 + j)]));
      CHECK(r.codes[std::size_t(8 + j)] == 0);
      CHECK(r.near[std::size_t(12 + j)] == 0);
    }
    CHECK(r.s[0] == 0.0f);
    CHECK(std::isnan(r.s[2]));
    CHECK(std::isinf(r.s[3]));
  }
}

TEST_CASE_TEMPLATE("quant/fake_quant: StatsQ vector body equals scalar body bit for bit", T, float, double) {
  Rng rng(11);
  for (index_t inner = 1; inner <= 70; inner += 3)
    for (int bits : {1, 2, 4, 8}) {
      for (ops::FqGeometry g : {ops::FqGeometry{1, 3, inner}, ops::FqGeometry{2, 2, inner}}) {
        const std::vector<T> w = uniform_vector<T>(g.numel(), -2, 2, rng);
        const auto a = run_statsq(w, g, bits, 0.01, true), b = run_statsq(w, g, bits, 0.01, false);
        CHECK_MESSAGE(same_bits(a.q, b.q), "inner ", inner, " bits ", bits);
        CHECK(same_bits(a.s, b.s));
        CHECK(a.codes == b.codes);
        CHECK(a.near == b.near);
      }
    }
}

TEST_CASE("quant/fake_quant: StatsQ and LSQ give the same bits with 1 and 2 threads") {
  ThreadCountGuard guard;
  Rng rng(5);
  const index_t rows = 300, cols = 257;  // large enough to be split over threads
  const std::vector<float> w = uniform_vector<float>(rows * cols, -1, 1, rng),
                           g = uniform_vector<float>(rows * cols, -1, 1, rng);
  const std::vector<float> s = uniform_vector<float>(rows, 0.05, 0.5, rng);
  auto run = [&](int threads) {
    set_num_threads(threads);
    StatsqRun<float> r = run_statsq(w, ops::FqGeometry{1, rows, cols}, 3, 0.01, false);
    std::vector<float> q(w.size()), gx(w.size(), 0.25f), ds(static_cast<std::size_t>(rows));
    std::vector<ops::qcode_t> c(w.size());
    ops::LsqParams<float> ps;
    ps.s = s.data();
    ps.count = rows;
    ops::lsq_forward(w.data(), rows, cols, ps, ops::lsq_range(3, true), q.data(), c.data());
    ops::lsq_backward(w.data(), g.data(), rows, cols, ps, ops::lsq_range(3, true), gx.data(), ds.data(),
                      static_cast<float*>(nullptr));
    r.q.insert(r.q.end(), q.begin(), q.end());
    r.q.insert(r.q.end(), gx.begin(), gx.end());
    r.q.insert(r.q.end(), ds.begin(), ds.end());
    r.codes.insert(r.codes.end(), c.begin(), c.end());
    return r;
  };
  const auto one = run(1), two = run(2);
  CHECK(same_bits(one.q, two.q));
  CHECK(same_bits(one.s, two.s));
  CHECK(one.codes == two.codes);
  CHECK(one.near == two.near);
}

TEST_CASE("quant/fake_quant: frozen codes replace StatsQ and LSQ codes where frozen") {
  const std::vector<double> w = {0.1, -0.7, 0.4, 0.9, -0.2, 0.3};
  std::vector<std::uint8_t> mask = {0, 1, 0, 0, 1, 0};
  std::vector<ops::qcode_t> fc = {0, 1, 0, 0, -2, 0};
  ops::FrozenCodes fz;
  fz.mask = mask.data();
  fz.codes = fc.data();
  std::vector<double> q(6), s(1);
  std::vector<ops::qcode_t> c(6);
  ops::StatsqOut<double> out;
  out.q = q.data();
  out.codes = c.data();
  out.scales = s.data();
  ops::statsq_forward(w.data(), ops::FqGeometry{1, 1, 6}, 2, out, 0.0, fz);
  const auto free = run_statsq(w, ops::FqGeometry{1, 1, 6}, 2, 0.0, true);
  for (std::size_t i = 0; i < 6; ++i) {
    CHECK(c[i] == (mask[i] ? fc[i] : free.codes[i]));
    CHECK(q[i] == (c[i] + 0.5) * s[0] / 2);
  }
  // LSQ: the frozen code's value, no input gradient, dq/ds = the code, dq/dbeta = 1
  const double sc = 0.25, beta = 0.1;
  ops::LsqParams<double> ps;
  ps.s = &sc;
  ps.beta = &beta;
  ps.count = 1;
  const std::vector<double> g = {1, 1, 1, 1, 1, 1};
  std::vector<double> gx(6, 0.0), ds(1), db(1);
  ops::lsq_forward(w.data(), 1, 6, ps, ops::lsq_range(2, true), q.data(), c.data(), fz);
  ops::lsq_backward(w.data(), g.data(), 1, 6, ps, ops::lsq_range(2, true), gx.data(), ds.data(), db.data(), fz);
  double eds = 0, edb = 0;
  for (std::size_t i = 0; i < 6; ++i) {
    const LsqRef e = lsq_ref(w[i], sc, -2, 1, false, beta);
    const double code = mask[i] ? fc[i] : e.code;
    CHECK(c[i] == ops::qcode_t(code));
    CHECK(q[i] == doctest::Approx(code * sc + beta).epsilon(1e-15));
    CHECK(gx[i] == (!mask[i] && e.inside ? 1.0 : 0.0));
    eds += mask[i] ? code : e.dqds;
    edb += (!mask[i] && e.inside) ? 0.0 : 1.0;
  }
  CHECK(ds[0] == doctest::Approx(eds).epsilon(1e-14));
  CHECK(db[0] == doctest::Approx(edb).epsilon(1e-14));
}

TEST_CASE("quant/fake_quant: LSQ and LSQ+ match the spec's formulas (signed, unsigned, 1 bit)") {
  Rng rng(8);
  const index_t rows = 6, cols = 29;
  for (int bits = 1; bits <= 8; ++bits)
    for (bool is_signed : {true, false})
      for (bool with_beta : {false, true}) {
        const ops::LsqRange range = ops::lsq_range(bits, is_signed);
        const std::vector<double> x = uniform_vector<double>(rows * cols, -3, 3, rng),
                                  g = uniform_vector<double>(rows * cols, -1, 1, rng);
        std::vector<double> s = uniform_vector<double>(3, 0.02, 0.6, rng),
                            beta = uniform_vector<double>(3, -0.3, 0.3, rng);
        s[2] = 1e-7;  // below the floor: 1e-5 is used
        ops::LsqParams<double> ps;
        ps.s = s.data();
        ps.beta = with_beta ? beta.data() : nullptr;
        ps.count = 3;  // row r uses index r % 3
        std::vector<double> q(x.size()), gx(x.size(), 0.5), ds(static_cast<std::size_t>(rows)), db(static_cast<std::size_t>(rows));
        std::vector<ops::qcode_t> c(x.size());
        ops::lsq_forward(x.data(), rows, cols, ps, range, q.data(), c.data());
        ops::lsq_backward(x.data(), g.data(), rows, cols, ps, range, gx.data(), ds.data(), db.data());
        for (index_t r = 0; r < rows; ++r) {
          const std::size_t k = std::size_t(r % 3);
          double eds = 0, edb = 0;
          for (index_t j = 0; j < cols; ++j) {
            const std::size_t i = std::size_t(r * cols + j);
            const LsqRef e = lsq_ref(x[i], s[k], range.lo, range.hi, range.sign, with_beta ? beta[k] : 0.0);
            CHECK(c[i] == e.code);
            CHECK(q[i] == doctest::Approx(e.q).epsilon(1e-15));
            CHECK(gx[i] == 0.5 + (e.inside ? g[i] : 0.0));
            eds += g[i] * e.dqds;
            edb += e.inside ? 0.0 : g[i];
          }
          CHECK(ds[std::size_t(r)] == doctest::Approx(eds).epsilon(1e-12));
          CHECK(db[std::size_t(r)] == doctest::Approx(edb).epsilon(1e-12));
        }
      }
  // the signed 1-bit case: two codes, sign(0) = +1
  const std::vector<double> x = {-0.3, 0.0, -0.0, 0.2, 5.0};
  const double s1 = 0.5;
  ops::LsqParams<double> ps;
  ps.s = &s1;
  std::vector<double> q(5);
  std::vector<ops::qcode_t> c(5);
  ops::lsq_forward(x.data(), 1, 5, ps, ops::lsq_range(1, true), q.data(), c.data());
  CHECK(c == std::vector<ops::qcode_t>{-1, 1, 1, 1, 1});
  CHECK(q == std::vector<double>{-0.5, 0.5, 0.5, 0.5, 0.5});
}

TEST_CASE("quant/fake_quant: LSQ NaN inputs give NaN outputs with code 0 and no input gradient") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> x(40, 0.3f);
  x[3] = nan;
  x[21] = inf;
  x[22] = -inf;
  const float s = 0.2f;
  ops::LsqParams<float> ps;
  ps.s = &s;
  for (bool scalar : {true, false}) {
    std::vector<float> q(40), gx(40, 0.0f), g(40, 1.0f), ds(1);
    std::vector<ops::qcode_t> c(40);
    if (scalar) {
      ops::lsq_forward_scalar(x.data(), 1, 40, ps, ops::lsq_range(2, true), q.data(), c.data());
      ops::lsq_backward_scalar(x.data(), g.data(), 1, 40, ps, ops::lsq_range(2, true), gx.data(), ds.data(),
                               static_cast<float*>(nullptr));
    } else {
      ops::lsq_forward(x.data(), 1, 40, ps, ops::lsq_range(2, true), q.data(), c.data());
      ops::lsq_backward(x.data(), g.data(), 1, 40, ps, ops::lsq_range(2, true), gx.data(), ds.data(),
                        static_cast<float*>(nullptr));
    }
    CHECK(std::isnan(q[3]));
    CHECK(c[3] == 0);
    CHECK(gx[3] == 0.0f);
    CHECK(q[21] == 0.2f);  // +Inf clips to the top code 1
    CHECK(q[22] == -0.4f); // -Inf to the bottom code -2
    CHECK(q[0] == 0.2f);
    CHECK(std::isfinite(ds[0]));
  }
}

TEST_CASE_TEMPLATE("quant/fake_quant: LSQ vector body equals scalar body", T, float, double) {
  Rng rng(21);
  for (index_t cols = 1; cols <= 70; cols += 3)
    for (int bits : {1, 2, 8})
      for (bool is_signed : {true, false})
        for (bool with_beta : {false, true}) {
          const index_t rows = 4;
          const ops::LsqRange range = ops::lsq_range(bits, is_signed);
          const std::vector<T> x = uniform_vector<T>(rows * cols, -2, 2, rng),
                               g = uniform_vector<T>(rows * cols, -1, 1, rng);
          const std::vector<T> s = uniform_vector<T>(2, 0.05, 0.7, rng), beta = uniform_vector<T>(2, -0.2, 0.2, rng);
          ops::LsqParams<T> ps;
          ps.s = s.data();
          ps.beta = with_beta ? beta.data() : nullptr;
          ps.count = 2;
          std::vector<T> q1(x.size()), q2(x.size()), gx1(x.size(), T(0.5)), gx2(x.size(), T(0.5));
          std::vector<T> ds1(static_cast<std::size_t>(rows)), ds2(static_cast<std::size_t>(rows)), db1(static_cast<std::size_t>(rows)), db2(static_cast<std::size_t>(rows));
          std::vector<ops::qcode_t> c1(x.size()), c2(x.size());
          ops::lsq_forward_scalar(x.data(), rows, cols, ps, range, q1.data(), c1.data());
          ops::lsq_forward(x.data(), rows, cols, ps, range, q2.data(), c2.data());
          ops::lsq_backward_scalar(x.data(), g.data(), rows, cols, ps, range, gx1.data(), ds1.data(), db1.data());
          ops::lsq_backward(x.data(), g.data(), rows, cols, ps, range, gx2.data(), ds2.data(), db2.data());
          CHECK(c1 == c2);
          CHECK(same_bits(gx1, gx2));  // the STE mask: exact
          if (!with_beta) CHECK(same_bits(q1, q2));
          // with an offset, and in the scale sums, a fused multiply-add may round differently
          const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-14;
          for (std::size_t i = 0; i < q1.size(); ++i)
            CHECK(std::abs(double(q1[i] - q2[i])) <= tol * std::max(1.0, std::abs(double(q1[i]))));
          const double emax = std::max(std::abs(range.lo), std::abs(range.hi)) + 1;
          for (index_t r = 0; r < rows; ++r) {
            double gabs = 0;
            for (index_t j = 0; j < cols; ++j) gabs += std::abs(double(g[std::size_t(r * cols + j)]));
            const std::size_t k = std::size_t(r);
            CHECK(std::abs(double(ds1[k] - ds2[k])) <= tol * 4 * (1 + gabs * emax));
            CHECK(same_bits(std::vector<T>{db1[k]}, std::vector<T>{db2[k]}));  // sums of g: no multiply
          }
        }
}

TEST_CASE("quant/fake_quant: bad arguments are rejected before anything is written") {
  std::vector<float> w(8, 1.0f), q(8, 3.0f);
  ops::StatsqOut<float> out;
  out.q = q.data();
  WEFT_QUANT_CHECK_FAILS(ops::statsq_forward(w.data(), ops::FqGeometry{1, 2, 4}, 0, out), ValueError, "ops::statsq_forward");
  WEFT_QUANT_CHECK_FAILS(ops::statsq_forward(w.data(), ops::FqGeometry{1, 2, 4}, 9, out), ValueError, "ops::statsq_forward");
  CHECK(q == std::vector<float>(8, 3.0f));
  WEFT_QUANT_CHECK_FAILS(ops::lsq_range(0, true), ValueError, "ops::lsq_range");
  WEFT_QUANT_CHECK_FAILS(ops::lsq_range(9, false), ValueError, "ops::lsq_range");
  ops::LsqParams<float> ps;  // no scales
  WEFT_QUANT_CHECK_FAILS(ops::lsq_forward(w.data(), 2, 4, ps, ops::lsq_range(2, true), q.data(),
                                          static_cast<ops::qcode_t*>(nullptr)),
                         ValueError, "ops::lsq_forward");
  CHECK(q == std::vector<float>(8, 3.0f));
  // unsigned ranges and the signed 1-bit special case
  CHECK(ops::lsq_range(2, false).lo == 0);
  CHECK(ops::lsq_range(2, false).hi == 3);
  CHECK(ops::lsq_range(8, true).lo == -128);
  CHECK(ops::lsq_range(8, true).hi == 127);
  CHECK(ops::lsq_range(1, true).sign);
  CHECK(!ops::lsq_range(1, false).sign);
}

}  // namespace weft_unit_quant_fake_quant_test
