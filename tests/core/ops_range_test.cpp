// Numeric range of the core kernels (docs/core.md, "Numeric range"): inputs near the largest
// finite value and infinite logits, where plain sums overflow although the answer is
// representable. Each case failed before the scaled fallbacks (inf, 0 or NaN came back).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/ops_common.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/ops/fake_quant_lsq.hpp"
#include "weft/core/ops/isotonic.hpp"

namespace weft_unit_core_ops_range_test {

using weft::Reduction;
using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace ops = weft::ops;

const double dinf = std::numeric_limits<double>::infinity();
const float finf = std::numeric_limits<float>::infinity();

TEST_CASE("core/range: PAVA pools values near the double maximum without overflow") {
  const Tensor<double> q = Tensor<double>::from_values({1.7e308, 1.6e308}, {1, 2});
  const Tensor<double> t = ops::isotonic(q);
  CHECK(t(0, 0) == doctest::Approx(1.65e308));
  CHECK(t(0, 1) == t(0, 0));
  const Tensor<double> q3 = Tensor<double>::from_values({1.7e308, 1.7e308, -1.7e308}, {1, 3});
  const Tensor<double> t3 = ops::isotonic(q3);
  CHECK(t3.all_finite());
  CHECK(t3(0, 0) == doctest::Approx(1.7e308 / 3));
  const Tensor<double> w = Tensor<double>::from_values({1.0, 3.0}, {1, 2});
  const Tensor<double> tw = ops::isotonic_weighted(q, w);
  CHECK(tw(0, 0) == doctest::Approx(1.7e308 / 4 + 3 * (1.6e308 / 4)));
  // float too, and the ordinary path is untouched: 3, 1 pools to exactly 2
  const Tensor<float> qf = Tensor<float>::from_values({3.3e38f, 3.2e38f, 1.0f}, {1, 3});
  CHECK(ops::isotonic(qf).all_finite());
  const Tensor<double> small = ops::isotonic(Tensor<double>::from_values({3.0, 1.0}, {1, 2}));
  CHECK(small(0, 0) == 2.0);
}

TEST_CASE("core/range: float layer_norm of +-1e20 normalises instead of returning 0") {
  weft::Tape<float> t;
  const auto x = t.constant(Tensor<float>::from_values({1e20f, -1e20f, 3e20f, -3e20f, 1.2e38f, 1.2e38f, 1.2e38f, -1.2e38f}, {2, 4}));
  const Tensor<float> y = weft::layer_norm(x).value();
  REQUIRE(y.all_finite());
  // row 0: mean 0, sd sqrt(5) 1e20
  const double sd = std::sqrt(5.0);
  CHECK(y(0, 0) == doctest::Approx(1 / sd).epsilon(1e-5));
  CHECK(y(0, 2) == doctest::Approx(3 / sd).epsilon(1e-5));
  // row 1: the plain sum overflows; the scaled pass keeps it: mean 6e37, sd sqrt(3) 6e37
  CHECK(y(1, 0) == doctest::Approx(1 / std::sqrt(3.0)).epsilon(1e-5));
  CHECK(y(1, 3) == doctest::Approx(-std::sqrt(3.0)).epsilon(1e-5));
}

TEST_CASE("core/range: float mean and mse stay finite when the sum overflows but the result does not") {
  weft::Tape<float> t;
  const auto a = t.constant(Tensor<float>::from_values({3e38f, 3e38f, 3e38f, -1e38f}, {2, 2}));
  CHECK(double(weft::mean(a).value().flat(0)) == doctest::Approx(2e38).epsilon(1e-6));
  const Tensor<float> m0 = weft::mean(a, 0).value();
  CHECK(double(m0(0)) == doctest::Approx(3e38).epsilon(1e-6));
  CHECK(double(m0(1)) == doctest::Approx(1e38).epsilon(1e-6));
  const auto p = t.constant(Tensor<float>::from_values({2e19f, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {10}));
  const auto z = t.constant(Tensor<float>(Shape{10}));
  CHECK(double(weft::mse(p, z).value().flat(0)) == doctest::Approx(4e37).epsilon(1e-6));
  CHECK(std::isinf(weft::mse(p, z, Reduction::sum).value().flat(0)));  // 4e38: not representable
  // a real overflow stays inf, and a NaN stays NaN
  const auto big = t.constant(Tensor<float>::from_values({3e38f, -3e38f}, {2}));
  CHECK(std::isinf(weft::mse(big, t.constant(Tensor<float>(Shape{2}))).value().flat(0)));
  const auto nan = t.constant(Tensor<float>::from_values({std::nanf(""), 1.0f}, {2}));
  CHECK(std::isnan(weft::mean(nan).value().flat(0)));
  // per-sample losses that overflow in the mean of cross_entropy
  const auto lg = t.constant(Tensor<float>::from_values({1e38f, -1e38f, 1e38f, -1e38f}, {2, 2}));
  const float ce = weft::cross_entropy(lg, std::vector<int>{1, 1}).value().flat(0);
  CHECK(double(ce) == doctest::Approx(2e38).epsilon(1e-6));  // per-sample 2e38 each, summed 4e38
}

TEST_CASE("core/range: softmax, log_softmax and cross entropy with +inf logits take the limit") {
  weft::Tape<double> t;
  const auto x = t.constant(Tensor<double>::from_values({dinf, 0, dinf, 1, 2, 3, dinf, -dinf, 0}, {3, 3}));
  const Tensor<double> s = weft::softmax(x).value();
  CHECK(s(0, 0) == 0.5);
  CHECK(s(0, 1) == 0.0);
  CHECK(s(0, 2) == 0.5);
  CHECK(s(2, 0) == 1.0);
  CHECK(s(2, 1) == 0.0);
  CHECK(s.all_finite());
  const Tensor<double> ls = weft::log_softmax(x).value();
  CHECK(ls(0, 0) == doctest::Approx(std::log(0.5)));
  CHECK(ls(0, 1) == -dinf);
  CHECK(ls(2, 0) == 0.0);
  const Tensor<double> ce = weft::cross_entropy(x, std::vector<int>{0, 2, 1}, {1.0, Reduction::none}).value();
  CHECK(ce(0) == doctest::Approx(std::log(2.0)));
  CHECK(ce(2) == dinf);
  // soft targets with logits [3e38, -3e38] in float: a zero target costs 0, not NaN
  weft::Tape<float> tf;
  const auto lf = tf.constant(Tensor<float>::from_values({3e38f, -3e38f, -3e38f, 3e38f}, {2, 2}));
  const auto pf = tf.constant(Tensor<float>::from_values({1.0f, 0.0f, 0.0f, 1.0f}, {2, 2}));
  const Tensor<float> cf = weft::cross_entropy(lf, pf, {1.0, Reduction::none}).value();
  CHECK(cf(0) == 0.0f);
  CHECK(cf(1) == 0.0f);
  const auto pw = tf.constant(Tensor<float>::from_values({0.0f, 1.0f, 0.5f, 0.5f}, {2, 2}));
  const Tensor<float> cw = weft::cross_entropy(lf, pw, {1.0, Reduction::none}).value();
  CHECK(cw(0) == finf);  // all mass on the -inf class: a true infinity, not NaN
}

TEST_CASE("core/range: StatsQ and LSQ quantise float weights near the maximum to finite values") {
  const std::vector<float> w = {3e38f, -3e38f, 1.0f, -2.0f, 1e37f, 0.5f, -3.3e38f, 2e38f};
  const index_t n = index_t(w.size());
  std::vector<float> q(w.size()), qs(w.size()), sc(1);
  ops::FqGeometry g{1, 1, n};
  ops::StatsqOut<float> out;
  out.q = q.data();
  out.scales = sc.data();
  ops::statsq_forward(w.data(), g, 2, out);
  ops::StatsqOut<float> outs = out;
  outs.q = qs.data();
  ops::statsq_forward_scalar(w.data(), g, 2, outs);
  CHECK(std::isfinite(sc[0]));
  CHECK(double(sc[0]) == doctest::Approx(2 * (3e38 + 3e38 + 1 + 2 + 1e37 + 0.5 + 3.3e38 + 2e38) / 8).epsilon(1e-5));
  for (index_t i = 0; i < n; ++i) {
    CHECK(std::isfinite(q[std::size_t(i)]));
    CHECK(q[std::size_t(i)] == qs[std::size_t(i)]);
  }
  // a mean |w| beyond max / 2 has no finite scale: the group is NaN, as documented
  const std::vector<float> huge = {3.3e38f, -3.3e38f};
  ops::FqGeometry g2{1, 1, 2};
  ops::statsq_forward(huge.data(), g2, 2, out);
  CHECK(std::isnan(q[0]));
  // LSQ: the largest scale keeps every code value finite
  for (int bits : {1, 2, 4, 8}) {
    const ops::LsqRange r = ops::lsq_range(bits, true);
    const float smax = float(ops::lsq_max_scale<float>(r));
    std::vector<float> ql(w.size());
    ops::LsqParams<float> ps;
    ps.s = &smax;
    ops::lsq_forward(w.data(), 1, n, ps, r, ql.data(), nullptr);
    for (float v : ql) CHECK(std::isfinite(v));
  }
}

}  // namespace weft_unit_core_ops_range_test
