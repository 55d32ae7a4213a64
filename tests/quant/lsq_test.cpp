// Tests of weft/quant/lsq.hpp and activation.hpp: LSQ's forward and its straight-through
// gradients (weight mask and the scale gradient with g = 1 / sqrt(Q_P N)) checked analytically
// against the spec's formulas, initialisation rules, the scale floor, export; the OFQ activation
// quantiser (shifts, per-token scales) and LSQ+ (offset gradient); and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "quant_test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/nn/linear.hpp"
#include "weft/quant/activation.hpp"
#include "weft/quant/lsq.hpp"

namespace weft_unit_quant_lsq_test {

using namespace weft;
using namespace weft::quant_test;

namespace {

/// Runs L = sum(R * Q(W)) and returns (Q(W), dL/dW); the scale gradient lands in q.scale.grad().
template <class T>
std::pair<Tensor<T>, Tensor<T>> run(quant::LsqQuantizerBase<T>& q, const Tensor<T>& w, const Tensor<T>& R) {
  q.scale.zero_grad();
  Tape<T> t;
  Var<T> wv = t.variable(w);
  Var<T> y = q.apply(wv);
  t.backward(sum(y * t.constant(R)));
  return {y.value().clone(), wv.grad().clone()};
}

}  // namespace

TEST_CASE("quant/lsq: forward and gradients follow the spec's formulas (per row, per tensor, signed, unsigned, 1 bit)") {
  Rng rng(1);
  for (int bits : {1, 2, 3, 8})
    for (bool is_signed : {true, false})
      for (quant::Granularity gran : {quant::Granularity::per_row, quant::Granularity::per_tensor}) {
        const index_t O = 5, I = 13;
        const Tensor<double> w = test::randn<double>(Shape{O, I}, rng), R = test::randn<double>(Shape{O, I}, rng);
        quant::LsqOptions o;
        o.bits = bits;
        o.is_signed = is_signed;
        o.granularity = gran;
        quant::LsqQuantizer<quant::dynamic_bits, double> q(o, w);
        const ops::LsqRange range = ops::lsq_range(bits, is_signed);
        const index_t S = gran == quant::Granularity::per_row ? O : 1, N = gran == quant::Granularity::per_row ? I : O * I;
        REQUIRE(q.scale.numel() == S);
        const double qp = range.hi, g = 1 / std::sqrt(qp * double(N));
        CHECK(q.gradient_scale(w.shape()) == doctest::Approx(g));
        auto [y, gw] = run(q, w, R);
        std::vector<double> ds(static_cast<std::size_t>(S), 0.0);
        for (index_t r = 0; r < O; ++r)
          for (index_t j = 0; j < I; ++j) {
            const double s = q.scale.value().flat(S == 1 ? 0 : r);
            const LsqRef e = lsq_ref(w(r, j), s, range.lo, range.hi, range.sign);
            CHECK(y(r, j) == doctest::Approx(e.q).epsilon(1e-15));
            CHECK(gw(r, j) == (e.inside ? R(r, j) : 0.0));
            ds[std::size_t(S == 1 ? 0 : r)] += R(r, j) * e.dqds;
          }
        for (index_t m = 0; m < S; ++m) CHECK(q.scale.grad().flat(m) == doctest::Approx(g * ds[std::size_t(m)]).epsilon(1e-12));
      }
}

TEST_CASE("quant/lsq: initialisation from the weight, the floor, and user scales") {
  Tensor<double> w = Tensor<double>::from_values({1, -3, 2, 0, 0, 0, 0.5, 0.5, -0.5}, Shape{3, 3});
  quant::LsqQuantizer<2, double> q(quant::LsqOptions{}, w);  // signed 2 bits: Q_P = 1
  CHECK(q.scale.value().flat(0) == doctest::Approx(2 * 2.0 / 1.0));
  CHECK(q.scale.value().flat(1) == ops::lsq_min_scale);  // an all-zero row starts at the floor
  CHECK(q.scale.value().flat(2) == doctest::Approx(2 * 0.5));
  quant::LsqOptions u;
  u.is_signed = false;
  quant::LsqQuantizer<2, double> qu(u, w);  // unsigned: 4 mean |W| / sqrt(3)
  CHECK(qu.scale.value().flat(0) == doctest::Approx(4 * 2.0 / std::sqrt(3.0)));
  quant::LsqOptions p;
  p.init = quant::LsqInit::lsq_plus;
  quant::LsqQuantizer<3, double> qp(p, w);  // max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1)
  const double mu = 0, sigma = std::sqrt((1 + 9 + 4) / 3.0);
  CHECK(qp.scale.value().flat(0) == doctest::Approx(std::max(std::abs(mu - 3 * sigma), std::abs(mu + 3 * sigma)) / 4));
  // below the floor the forward uses 1e-5 and the gradient still reaches s
  q.set_scale(Tensor<double>::from_values({1e-9, 1, 1}, Shape{3}));
  Tensor<double> R = Tensor<double>::full(Shape{3, 3}, 1.0);
  R(0, 0) = 3.0;  // dL/ds over row 0 (all clipped): 3 Q_P - Q_N + Q_P = 2 != 0
  auto [y, gw] = run(q, w, R);
  CHECK(y(0, 0) == 1e-5);  // code Q_P = 1 times the floor
  CHECK(q.scale.grad().flat(0) == doctest::Approx(2.0 / std::sqrt(3.0)));  // g = 1 / sqrt(Q_P I)
  // the scale is a parameter of the transform, so a Linear reports it
  Rng rng(2);
  nn::Linear<float> layer(4, 3, rng);
  layer.add_transform(quant::lsq<2>(layer.weight.value()));
  auto names = layer.named_parameters();
  REQUIRE(names.size() == 3);
  CHECK(names[2].first == "transforms.0.lsq.s");
}

TEST_CASE("quant/lsq: exported codes dequantise to the forward output bit for bit; compile-time bits") {
  Rng rng(3);
  const Tensor<float> w = test::randn<float>(Shape{6, 17}, rng);
  quant::LsqQuantizer<3, float> q(quant::LsqOptions{}, w);
  CHECK(q.bits() == 3);
  Tape<float> t;
  const Tensor<float> y = q.apply(t.constant(w)).value().clone();
  const quant::QuantizedWeights<float> e = q.quantize(w);
  CHECK(e.scheme == "lsq");
  CHECK(e.offset == 0.0f);
  CHECK(test::identical(e.dequantize(), y));
  quant::LsqOptions o;
  o.bits = 3;
  quant::LsqQuantizer<quant::dynamic_bits, float> d(o, w);
  CHECK(test::identical(q.scale.value(), d.scale.value()));
}

TEST_CASE("quant/lsq: bad input is rejected and leaves the quantiser unchanged") {
  const Tensor<float> w = Tensor<float>::full(Shape{2, 3}, 0.5f);
  quant::LsqOptions o;
  o.bits = 0;
  WEFT_QUANT_CHECK_FAILS(quant::LsqQuantizer<quant::dynamic_bits>(o, w), ConfigError, "quant::LsqQuantizer");
  o.bits = 2;
  o.granularity = quant::Granularity::axes;
  WEFT_QUANT_CHECK_FAILS(quant::LsqQuantizer<quant::dynamic_bits>(o, w), ConfigError, "quant::LsqQuantizer");
  Tensor<float> nan = w.clone();
  nan.flat(2) = std::nanf("");
  WEFT_QUANT_CHECK_FAILS(quant::LsqQuantizer<2>(quant::LsqOptions{}, nan), ValueError, "quant::LsqQuantizer::init_from");
  quant::LsqQuantizer<2> q(quant::LsqOptions{}, w);
  const Tensor<float> before = q.scale.value().clone();
  WEFT_QUANT_CHECK_FAILS(q.set_scale(Tensor<float>::from_values({0.1f, 0.0f}, Shape{2})), ValueError,
                         "quant::LsqQuantizer::set_scale");
  WEFT_QUANT_CHECK_FAILS(q.set_scale(Tensor<float>::from_values({0.1f, -1.0f}, Shape{2})), ValueError,
                         "quant::LsqQuantizer::set_scale");
  WEFT_QUANT_CHECK_FAILS(q.set_scale(Tensor<float>::from_values({0.1f}, Shape{1})), ShapeError, "quant::LsqQuantizer::set_scale");
  CHECK(test::identical(q.scale.value(), before));
  Tape<float> t;
  WEFT_QUANT_CHECK_FAILS(q.apply(t.constant(Tensor<float>(Shape{3, 2}))), ShapeError, "quant::LsqQuantizer::apply");
  WEFT_QUANT_CHECK_FAILS(q.quantize(Tensor<float>(Shape{3, 2})), ShapeError, "quant::LsqQuantizer::quantize");
}

TEST_CASE("quant/activation: OFQ quantiser = LSQ(x + beta1) + beta2 with per-token scales; gradients analytic") {
  Rng rng(5);
  const index_t B = 3, N = 4, C = 6;
  quant::ActivationQuantizerOptions o;
  o.bits = 3;
  quant::ActivationQuantizer<double> aq(o, C, N);
  CHECK(aq.name() == "ofq_act");
  CHECK(aq.scale.numel() == N);
  for (index_t j = 0; j < C; ++j) {
    aq.shift_in.value().flat(j) = 0.05 * double(j);
    aq.shift_out.value().flat(j) = -0.02 * double(j);
  }
  const Tensor<double> x = test::randn<double>(Shape{B, N, C}, rng), R = test::randn<double>(Shape{B, N, C}, rng);
  Tape<double> t;
  Var<double> xv = t.variable(x);
  Var<double> y = aq.apply(xv);
  CHECK(aq.initialized());
  t.backward(sum(y * t.constant(R)));
  const ops::LsqRange range = aq.range();  // signed 3 bits: [-4, 3]
  // the first batch initialised s per token: 2 mean |x + beta1| / sqrt(Q_P)
  for (index_t n = 0; n < N; ++n) {
    double a = 0;
    for (index_t b = 0; b < B; ++b)
      for (index_t j = 0; j < C; ++j) a += std::abs(x(b, n, j) + aq.shift_in.value().flat(j));
    CHECK(aq.scale.value().flat(n) == doctest::Approx(2 * a / double(B * C) / std::sqrt(3.0)));
  }
  const double g = 1 / std::sqrt(3.0 * double(B * C));
  std::vector<double> ds(static_cast<std::size_t>(N), 0.0), db1(static_cast<std::size_t>(C), 0.0), db2(static_cast<std::size_t>(C), 0.0);
  for (index_t b = 0; b < B; ++b)
    for (index_t n = 0; n < N; ++n)
      for (index_t j = 0; j < C; ++j) {
        const double xin = x(b, n, j) + aq.shift_in.value().flat(j);
        const LsqRef e = lsq_ref(xin, aq.scale.value().flat(n), range.lo, range.hi, false);
        CHECK(y.value()(b, n, j) == doctest::Approx(e.q + aq.shift_out.value().flat(j)).epsilon(1e-14));
        CHECK(xv.grad()(b, n, j) == (e.inside ? R(b, n, j) : 0.0));
        ds[std::size_t(n)] += R(b, n, j) * e.dqds;
        db1[std::size_t(j)] += e.inside ? R(b, n, j) : 0.0;
        db2[std::size_t(j)] += R(b, n, j);
      }
  for (index_t n = 0; n < N; ++n) CHECK(aq.scale.grad().flat(n) == doctest::Approx(g * ds[std::size_t(n)]).epsilon(1e-12));
  for (index_t j = 0; j < C; ++j) {
    CHECK(aq.shift_in.grad().flat(j) == doctest::Approx(db1[std::size_t(j)]).epsilon(1e-12));
    CHECK(aq.shift_out.grad().flat(j) == doctest::Approx(db2[std::size_t(j)]).epsilon(1e-12));
  }
  CHECK(aq.codes().size() == std::size_t(B * N * C));
  std::vector<std::pair<std::string, Parameter<double>>> ps;
  aq.parameters(ps);
  CHECK(ps.size() == 3);
}

TEST_CASE("quant/activation: LSQ+ with min/max initialisation and the offset gradient; unsigned per tensor") {
  Rng rng(6);
  quant::ActivationQuantizerOptions o;
  o.bits = 2;
  o.mode = quant::ActMode::lsq_plus;
  o.scale = quant::ActScale::per_tensor;
  quant::ActivationQuantizer<double> aq(o, 5);
  const Tensor<double> x = test::rand_uniform<double>(Shape{8, 5}, rng, -1.0, 3.0), R = test::randn<double>(Shape{8, 5}, rng);
  aq.init_from(x);
  const double lo = x.array().minCoeff(), hi = x.array().maxCoeff();
  const double s = aq.scale.value().flat(0), beta = aq.offset.value().flat(0);
  CHECK(s == doctest::Approx((hi - lo) / 3.0));  // codes [-2, 1]
  CHECK(beta == doctest::Approx(lo + 2 * s));
  Tape<double> t;
  Var<double> xv = t.variable(x);
  Var<double> y = aq.apply(xv);
  t.backward(sum(y * t.constant(R)));
  double db = 0, ds = 0;
  for (index_t i = 0; i < x.numel(); ++i) {
    const LsqRef e = lsq_ref(x.flat(i), s, -2, 1, false, beta);
    CHECK(y.value().flat(i) == doctest::Approx(e.q).epsilon(1e-14));
    CHECK(xv.grad().flat(i) == (e.inside ? R.flat(i) : 0.0));
    db += e.inside ? 0.0 : R.flat(i);
    ds += R.flat(i) * e.dqds;
  }
  CHECK(aq.offset.grad().flat(0) == doctest::Approx(db).epsilon(1e-12));
  CHECK(aq.scale.grad().flat(0) == doctest::Approx(ds / std::sqrt(1.0 * 40)).epsilon(1e-12));
  // the range ends map to the extreme codes
  CHECK(y.value().array().minCoeff() == doctest::Approx(lo));
  // unsigned OFQ: 4 mean |x| / sqrt(Q_P) per tensor, codes [0, 2^b - 1]
  quant::ActivationQuantizerOptions uo;
  uo.is_signed = false;
  uo.scale = quant::ActScale::per_tensor;
  quant::ActivationQuantizer<double> un(uo, 5);
  un.init_from(x);
  CHECK(un.scale.value().flat(0) == doctest::Approx(4 * x.array().abs().mean() / std::sqrt(3.0)));
  CHECK(un.range().lo == 0);
  CHECK(un.range().hi == 3);
}

TEST_CASE("quant/activation: bad shapes and options are rejected") {
  quant::ActivationQuantizerOptions o;
  WEFT_QUANT_CHECK_FAILS(quant::ActivationQuantizer<float>(o, 0, 4), ShapeError, "quant::ActivationQuantizer");
  WEFT_QUANT_CHECK_FAILS(quant::ActivationQuantizer<float>(o, 4, 0), ShapeError, "quant::ActivationQuantizer");
  o.bits = 9;
  WEFT_QUANT_CHECK_FAILS(quant::ActivationQuantizer<float>(o, 4, 2), ConfigError, "quant::ActivationQuantizer");
  o.bits = 2;
  quant::ActivationQuantizer<float> aq(o, 4, 2);
  Tape<float> t;
  WEFT_QUANT_CHECK_FAILS(aq.apply(t.constant(Tensor<float>(Shape{3, 4}))), ShapeError, "quant::ActivationQuantizer::apply");
  WEFT_QUANT_CHECK_FAILS(aq.apply(t.constant(Tensor<float>(Shape{3, 5, 4}))), ShapeError, "quant::ActivationQuantizer::apply");
  WEFT_QUANT_CHECK_FAILS(aq.apply(t.constant(Tensor<float>(Shape{3, 2, 5}))), ShapeError, "quant::ActivationQuantizer::apply");
  CHECK(!aq.initialized());
  Tensor<float> bad(Shape{1, 2, 4});
  bad.flat(0) = std::nanf("");
  WEFT_QUANT_CHECK_FAILS(aq.init_from(bad), ValueError, "quant::ActivationQuantizer::init_from");
  CHECK(!aq.initialized());
}

TEST_CASE("quant/lsq: freeze_at takes only codes of the quantiser's range; init_from keeps the scale's handle") {
  Tape<double> t;
  const Tensor<double> w = Tensor<double>::from(Eigen::MatrixXd::Random(3, 4));
  quant::LsqQuantizer<2, double> q(quant::LsqOptions{}, w);
  q.apply(t.variable(w));  // a training forward sizes the codes
  WEFT_QUANT_CHECK_FAILS(q.freeze_at(0, 100), ValueError, "quant::WeightQuantizer::freeze_at");
  WEFT_QUANT_CHECK_FAILS(q.freeze_at(0, 2), ValueError, "quant::WeightQuantizer::freeze_at");
  CHECK(q.frozen_count() == 0);
  q.freeze_at(0, -2);
  q.freeze_at(1, 1);
  CHECK(q.frozen_count() == 2);
  quant::LsqOptions u;
  u.is_signed = false;
  quant::LsqQuantizer<2, double> qu(u, w);
  qu.apply(t.variable(w));
  WEFT_QUANT_CHECK_FAILS(qu.freeze_at(0, -1), ValueError, "quant::WeightQuantizer::freeze_at");
  qu.freeze_at(0, 3);
  quant::LsqQuantizer<1, double> sign(quant::LsqOptions{}, w);  // sign codes {-1, +1}
  sign.apply(t.variable(w));
  WEFT_QUANT_CHECK_FAILS(sign.freeze_at(0, 0), ValueError, "quant::WeightQuantizer::freeze_at");
  CHECK(sign.nearest_code(0.2) == 1);
  CHECK(sign.nearest_code(-0.2) == -1);
  CHECK(q.nearest_code(7.0) == 1);
  CHECK(q.nearest_code(-2.5) == -2);
  // an optimiser's handle sees the re-initialised scale, also for a weight of another shape
  Parameter<double> handle = q.scale;
  const Tensor<double> w2 = Tensor<double>::from(Eigen::MatrixXd::Random(5, 4));
  q.clear_frozen();
  q.init_from(w2);
  CHECK(handle == q.scale);
  CHECK(handle.shape() == Shape{5});
  CHECK(q.apply(t.variable(w2)).shape() == w2.shape());
}

}  // namespace weft_unit_quant_lsq_test

namespace weft_unit_quant_lsq_range_test {

using namespace weft;

TEST_CASE("quant/lsq: float weights near the maximum initialise a finite scale and quantise to finite values") {
  Tensor<float> w = Tensor<float>::from_values({3e38f, -3e38f, 1e38f, 1.0f}, Shape{2, 2});
  quant::LsqQuantizer<2, float> q(quant::LsqOptions{}, w);  // 2 mean |W| = 6e38 overflows float
  CHECK(std::isfinite(q.scale.value().flat(0)));
  CHECK(double(q.scale.value().flat(0)) <= ops::lsq_max_scale<float>(ops::lsq_range(2, true)));
  CHECK(double(q.scale.value().flat(1)) == doctest::Approx(1e38).epsilon(1e-6));  // 2 mean |w|, unclamped
  Tape<float> t;
  const Tensor<float> out = q.apply(t.constant(w)).value();
  CHECK(out.all_finite());
  CHECK(out(0, 0) > 1e38f);
  CHECK(out(0, 1) < -1e38f);
  quant::ActivationQuantizerOptions ao;
  ao.scale = quant::ActScale::per_tensor;
  quant::ActivationQuantizer<float> aq(ao, 2);
  aq.init_from(w);
  CHECK(aq.scale.value().all_finite());
  Tape<float> t2;
  CHECK(aq.apply(t2.constant(w)).value().all_finite());
}

}  // namespace weft_unit_quant_lsq_range_test
