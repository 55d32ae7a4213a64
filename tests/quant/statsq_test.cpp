// Tests of weft/quant/statsq.hpp and quantizer.hpp: the StatsQ transform on a Linear (forward
// equals the kernel, the identity straight-through gradient checked analytically, compile-time
// and run-time bit widths agree), granularities and reduce axes, codes only from training
// forwards, the STE gate, frozen codes, export and dequantisation, and bad options.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "quant_test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/nn/linear.hpp"
#include "weft/quant/statsq.hpp"

namespace weft_unit_quant_statsq_test {

using namespace weft;
using namespace weft::quant_test;

namespace {

template <class T>
Tensor<T> forward_value(quant::StatsQuantizerBase<T>& q, const Tensor<T>& w) {
  Tape<T> t;
  return q.apply(t.constant(w)).value().clone();
}

/// dL/dW of L = sum(R * Q(W)) through the transform.
template <class T>
Tensor<T> grad_through(nn::WeightTransform<T>& q, const Tensor<T>& w, const Tensor<T>& R) {
  Tape<T> t;
  Var<T> wv = t.variable(w);
  Var<T> l = sum(q.apply(wv) * t.constant(R));
  t.backward(l);
  return wv.grad().clone();
}

}  // namespace

TEST_CASE_TEMPLATE("quant/statsq: the transform's forward is the kernel's and its gradient the identity", T, float, double) {
  Rng rng(2);
  const Tensor<T> w = test::randn<T>(Shape{7, 19}, rng), R = test::randn<T>(Shape{7, 19}, rng);
  quant::StatsQuantizer<2, T> q;
  const Tensor<T> qw = forward_value(q, w);
  std::vector<T> ref(std::size_t(w.numel()));
  ops::StatsqOut<T> out;
  out.q = ref.data();
  ops::statsq_forward_scalar(w.data(), ops::FqGeometry{1, 7, 19}, 2, out);
  CHECK(same_bits(std::vector<T>(qw.begin(), qw.end()), ref));
  CHECK(q.scales().size() == 7);
  // identity straight-through estimator: dL/dW = dL/dQ = R exactly, clipped elements included
  Tensor<T> big = w.clone();
  big.flat(3) = T(100);  // far beyond the clip range of its row
  CHECK(test::identical(grad_through(q, big, R), R));
}

TEST_CASE("quant/statsq: compile-time and run-time bit widths give the same transform") {
  Rng rng(4);
  const Tensor<float> w = test::randn<float>(Shape{5, 33}, rng);
  for (int bits = 1; bits <= 8; ++bits) {
    quant::StatsQOptions o;
    o.bits = bits;
    quant::StatsQuantizer<quant::dynamic_bits, float> dyn(o);
    CHECK(dyn.bits() == bits);
    const Tensor<float> a = forward_value(dyn, w);
    Tensor<float> b;
    switch (bits) {
      case 1: { quant::StatsQuantizer<1, float> s; b = forward_value(s, w); break; }
      case 2: { quant::StatsQuantizer<2, float> s; b = forward_value(s, w); break; }
      case 3: { quant::StatsQuantizer<3, float> s; b = forward_value(s, w); break; }
      case 4: { quant::StatsQuantizer<4, float> s; b = forward_value(s, w); break; }
      case 5: { quant::StatsQuantizer<5, float> s; b = forward_value(s, w); break; }
      case 6: { quant::StatsQuantizer<6, float> s; b = forward_value(s, w); break; }
      case 7: { quant::StatsQuantizer<7, float> s; b = forward_value(s, w); break; }
      default: { quant::StatsQuantizer<8, float> s; b = forward_value(s, w); break; }
    }
    CHECK(test::identical(a, b));
  }
  // the template argument wins over options.bits
  quant::StatsQOptions o;
  o.bits = 5;
  CHECK(quant::StatsQuantizer<3, float>(o).bits() == 3);
  CHECK(quant::statsq<4, double>()->bits() == 4);
  CHECK(quant::StatsQuantizer<3, float>::compile_time_bits == 3);
}

TEST_CASE("quant/statsq: granularities: per row, per tensor, 1 x I = per tensor, reduce axes") {
  Rng rng(6);
  const Tensor<double> w = test::randn<double>(Shape{4, 10}, rng);
  quant::StatsQOptions pt;
  pt.granularity = quant::Granularity::per_tensor;
  quant::StatsQuantizer<2, double> per_row, per_tensor(pt);
  forward_value(per_row, w);
  forward_value(per_tensor, w);
  CHECK(per_row.scales().size() == 4);
  CHECK(per_tensor.scales().size() == 1);
  // one channel: per row == per tensor
  const Tensor<double> one = test::randn<double>(Shape{1, 25}, rng);
  CHECK(test::identical(forward_value(per_row, one), forward_value(per_tensor, one)));
  // the reference's 3-D case: one scale per middle index, shared over axes 0 and 2
  quant::StatsQOptions ax;
  ax.granularity = quant::Granularity::axes;
  ax.reduce_axes = {0, -1};
  quant::StatsQuantizer<3, double> q3(ax);
  const Tensor<double> w3 = test::randn<double>(Shape{2, 3, 4}, rng);
  const Tensor<double> out = forward_value(q3, w3);
  REQUIRE(q3.scales().size() == 3);
  for (index_t m = 0; m < 3; ++m) {
    double a = 0;
    for (index_t i = 0; i < 2; ++i)
      for (index_t k = 0; k < 4; ++k) a += std::abs(w3(i, m, k));
    const double s = q3.scales()[std::size_t(m)];
    CHECK(s == doctest::Approx(2 * a / 8).epsilon(1e-14));
    for (index_t i = 0; i < 2; ++i)
      for (index_t k = 0; k < 4; ++k) CHECK(out(i, m, k) == statsq_ref(w3(i, m, k), s, 3).q);
  }
  // rank-1 weights are one row
  const Tensor<double> v = test::randn<double>(Shape{12}, rng);
  CHECK(test::identical(forward_value(per_row, v), forward_value(per_tensor, v)));
  // geometry helper
  CHECK(quant::quant_geometry(Shape{2, 3, 4}, quant::Granularity::axes, {0}, "t").groups == 12);
  CHECK(quant::quant_geometry(Shape{2, 3, 4}, quant::Granularity::axes, {0, 1, 2}, "t").groups == 1);
}

TEST_CASE("quant/statsq: zero rows give zeros with an identity gradient; NaN rows stay in their row") {
  Tensor<double> w = Tensor<double>::from_values({0, 0, 0, 1, -2, 0.5, 3, std::numeric_limits<double>::quiet_NaN(), 1}, Shape{3, 3});
  quant::StatsQuantizer<2, double> q;
  const Tensor<double> out = forward_value(q, w);
  for (index_t j = 0; j < 3; ++j) {
    CHECK(out(0, j) == 0.0);
    CHECK(std::isfinite(out(1, j)));
    CHECK(std::isnan(out(2, j)));
  }
  Rng rng(1);
  const Tensor<double> R = test::randn<double>(Shape{3, 3}, rng);
  CHECK(test::identical(grad_through(q, w, R), R));
}

TEST_CASE("quant/statsq: codes come from training forwards only; a Linear uses the quantised weight") {
  Rng rng(9);
  nn::Linear<float> layer(16, 6, rng);
  auto q = quant::statsq<2, float>();
  layer.add_transform(q);
  CHECK(q->codes().empty());
  {
    Tape<float> t;
    no_grad ng;
    layer(t.constant(test::randn<float>(Shape{3, 16}, rng)));
  }
  CHECK(q->codes().empty());  // evaluation leaves the codes alone
  CHECK(q->code_version() == 0);
  Tape<float> t;
  const Tensor<float> x = test::randn<float>(Shape{3, 16}, rng);
  Var<float> y = layer(t.constant(x));
  CHECK(q->code_version() == 1);
  REQUIRE(q->codes().size() == 96);
  const Tensor<float> folded = layer.folded_weight();
  const std::vector<float>& s = q->scales();
  for (index_t r = 0; r < 6; ++r)
    for (index_t j = 0; j < 16; ++j)
      CHECK(folded(r, j) == (float(q->codes()[std::size_t(r * 16 + j)]) + 0.5f) * (s[std::size_t(r)] / 2.0f));
  // y = x Q(W)^T + b
  const Tensor<float> expect = Tensor<float>::from((x.matrix() * folded.matrix().transpose()).rowwise() +
                                                   layer.bias.value().matrix().row(0));
  WEFT_CHECK_CLOSE(y.value(), expect, 1e-5);
}

TEST_CASE("quant/statsq: the STE gate passes gradient only near thresholds; frozen codes block it") {
  Rng rng(12);
  const Tensor<double> w = test::randn<double>(Shape{6, 40}, rng), R = test::randn<double>(Shape{6, 40}, rng);
  quant::StatsQOptions o;
  o.ste_gate = 0.05;
  quant::StatsQuantizer<2, double> q(o);
  std::vector<std::uint8_t> near;
  q.confidence_mask(w, 0.05, near);
  const Tensor<double> g = grad_through(q, w, R);
  index_t kept = 0;
  for (index_t i = 0; i < w.numel(); ++i) {
    CHECK(g.flat(i) == (near[std::size_t(i)] ? R.flat(i) : 0.0));
    kept += near[std::size_t(i)];
  }
  CHECK(kept > 0);
  CHECK(kept < w.numel());
  q.set_ste_gate(0);
  CHECK(test::identical(grad_through(q, w, R), R));
  // frozen codes: the value comes from the pinned code, and no gradient reaches the weight
  quant::StatsQuantizer<2, double> f;
  WEFT_QUANT_CHECK_FAILS(f.freeze_at(0, 1), ShapeError, "quant::WeightQuantizer::freeze_at");  // before a forward
  grad_through(f, w, R);  // a training forward sizes the codes
  f.freeze_at(5, -2);
  f.freeze_at(7, 1);
  CHECK(f.frozen_count() == 2);
  const Tensor<double> out = forward_value(f, w);
  CHECK(out.flat(5) == (-2 + 0.5) * f.scales()[0] / 2);
  CHECK(out.flat(7) == (1 + 0.5) * f.scales()[0] / 2);
  const Tensor<double> gf = grad_through(f, w, R);
  CHECK(gf.flat(5) == 0.0);
  CHECK(gf.flat(7) == 0.0);
  CHECK(gf.flat(6) == R.flat(6));
  CHECK(f.codes()[5] == -2);
  f.clear_frozen();
  CHECK(f.frozen_count() == 0);
}

TEST_CASE("quant/statsq: exported codes dequantise to the forward output bit for bit") {
  Rng rng(13);
  for (int bits : {1, 2, 4, 8}) {
    quant::StatsQOptions o;
    o.bits = bits;
    quant::StatsQuantizer<quant::dynamic_bits, float> q(o);
    Tensor<float> w = test::randn<float>(Shape{9, 21}, rng);
    w.matrix().row(4).setZero();
    const quant::QuantizedWeights<float> e = q.quantize(w);
    CHECK(e.scheme == "statsq");
    CHECK(e.offset == 0.5f);
    CHECK(e.step.size() == 9);
    CHECK(e.step[4] == 0.0f);
    CHECK(test::identical(e.dequantize(), forward_value(q, w)));
    for (quant::qcode_t k : e.codes) {
      CHECK(k >= -(1 << (bits - 1)));
      CHECK(k <= (1 << (bits - 1)) - 1);
    }
    // the level set is symmetric: +-(2k + 1) s / (2n)
    CHECK(e.dequantize().flat(0) == (float(e.codes[0]) + 0.5f) * e.step[0]);
  }
}

TEST_CASE("quant/statsq: bad options and shapes are rejected") {
  quant::StatsQOptions o;
  o.bits = 0;
  WEFT_QUANT_CHECK_FAILS(quant::StatsQuantizer<quant::dynamic_bits>{o}, ConfigError, "quant::StatsQuantizer");
  o.bits = 9;
  WEFT_QUANT_CHECK_FAILS(quant::StatsQuantizer<quant::dynamic_bits>{o}, ConfigError, "quant::StatsQuantizer");
  o.bits = 2;
  o.ste_gate = -0.1;
  WEFT_QUANT_CHECK_FAILS(quant::StatsQuantizer<quant::dynamic_bits>{o}, ValueError, "quant::StatsQuantizer");
  o.ste_gate = 0;
  o.reduce_axes = {0};  // without Granularity::axes
  WEFT_QUANT_CHECK_FAILS(quant::StatsQuantizer<quant::dynamic_bits>{o}, ConfigError, "quant::StatsQuantizer");
  quant::StatsQuantizer<2, float> ok;
  WEFT_QUANT_CHECK_FAILS(ok.set_ste_gate(0.7), ValueError, "quant::StatsQuantizer::set_ste_gate");
  std::vector<std::uint8_t> near;
  WEFT_QUANT_CHECK_FAILS(ok.confidence_mask(Tensor<float>(Shape{2, 2}), -1.0, near), ValueError,
                         "quant::StatsQuantizer::confidence_mask");
  // axes: out of range, or kept axes with a gap
  quant::StatsQOptions ax;
  ax.granularity = quant::Granularity::axes;
  ax.reduce_axes = {3};
  quant::StatsQuantizer<2, float> bad(ax);
  Tape<float> t;
  Var<float> w = t.constant(Tensor<float>(Shape{2, 3, 4}));
  WEFT_QUANT_CHECK_FAILS(bad.apply(w), ShapeError, "quant::StatsQuantizer");
  ax.reduce_axes = {1};
  quant::StatsQuantizer<2, float> gap(ax);
  WEFT_QUANT_CHECK_FAILS(gap.apply(w), ConfigError, "quant::StatsQuantizer");
  // frozen codes of another size
  quant::StatsQuantizer<2, float> fz;
  fz.apply(t.variable(Tensor<float>(Shape{2, 2}, 1.0f)));
  fz.freeze_at(0, 0);
  WEFT_QUANT_CHECK_FAILS(fz.apply(t.variable(Tensor<float>(Shape{3, 3}, 1.0f))), ShapeError, "quant::StatsQuantizer::apply");
}

TEST_CASE("quant/statsq: freeze_at rejects codes off the b-bit grid") {
  Tape<double> t;
  const Tensor<double> w = Tensor<double>::from(Eigen::MatrixXd::Random(2, 4));
  quant::StatsQuantizer<2, double> q;
  q.apply(t.variable(w));
  WEFT_QUANT_CHECK_FAILS(q.freeze_at(0, 100), ValueError, "quant::WeightQuantizer::freeze_at");
  WEFT_QUANT_CHECK_FAILS(q.freeze_at(0, -3), ValueError, "quant::WeightQuantizer::freeze_at");
  WEFT_QUANT_CHECK_FAILS(q.freeze_at(0, 2), ValueError, "quant::WeightQuantizer::freeze_at");
  CHECK(q.frozen_count() == 0);
  q.freeze_at(0, -2);
  q.freeze_at(1, 1);
  CHECK(q.frozen_count() == 2);
  quant::StatsQuantizer<4, double> q4;
  q4.apply(t.variable(w));
  q4.freeze_at(0, -8);
  q4.freeze_at(1, 7);
  WEFT_QUANT_CHECK_FAILS(q4.freeze_at(2, 8), ValueError, "quant::WeightQuantizer::freeze_at");
}

}  // namespace weft_unit_quant_statsq_test
