// Property tests of weft/quant: StatsQ and LSQ quantisers (options, forward/backward on random
// weights, quantize + dequantize, freeze_at), quantize_linear / export_weights /
// quantized_linear with hand-tampered QuantizedWeights, the oscillation tracker and CGA
// controller options, and the activation quantiser, on random, mismatched, empty and extreme
// input. See tests/property/property.hpp for the property and how to rerun a failing case.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "property/property.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd.hpp"
#include "weft/quant.hpp"

namespace weft_unit_property_quant_test {

using namespace weft;
namespace prop = weft::test::prop;

namespace {

const std::vector<long long> bad_bits{0, 9, 33, -1};
auto bits_ok = [](long long b) { return b >= 1 && b <= 8; };

Shape weight_shape(prop::Gen& g) {
  const int r = 1 + g.pick(3);
  index_t d[4];
  for (int i = 0; i < r; ++i) d[i] = g.extent(5);
  return Shape::from(d, r);
}

/// forward with gradients (codes recorded), backward of sum, quantize: codes and steps that
/// validate and dequantize to the forward output bit for bit; then freeze_at with random codes.
template <class T>
void exercise(prop::Gen& g, quant::WeightQuantizer<T>& q, const Tensor<T>& w, const prop::Watch& watch) {
  prop::check(g, watch, [&] {
    Tape<T> tape;
    Var<T> wv = tape.variable(w);
    Var<T> y = q.apply(wv);
    prop::expect_result(g, y.value(), w.shape());
    tape.backward(sum(y));
    prop::expect_result(g, wv.grad(), w.shape());
    const quant::QuantizedWeights<T> qw = q.quantize(w);
    qw.validate();
    if (!g.exotic()) CHECK_MESSAGE(test::identical(qw.dequantize(), y.value()), "dequantize() differs from the forward");
  });
  if (q.codes().empty()) return;
  const index_t i = index_t(g.integer("freeze index", 0, index_t(q.codes().size()) - 1, 0.1,
                                      {-1, index_t(q.codes().size())}, [&](long long v) { return v >= 0 && v < index_t(q.codes().size()); }));
  const auto r = q.code_range();
  const long long k = g.integer("freeze code", (long long)r.lo, (long long)r.hi, 0.15, {(long long)r.lo - 1, (long long)r.hi + 1, 100},
                                [&](long long c) { return c >= r.lo && c <= r.hi && !(r.sign && c == 0); });
  prop::Watch none;
  prop::check(g, none, [&] {
    q.freeze_at(i, quant::qcode_t(k));
    Tape<T> tape;
    prop::expect_result(g, q.apply(tape.variable(w)).value(), w.shape());
  });
}

template <class T>
void statsq(std::uint64_t seed) {
  prop::run("quant/StatsQ: options, forward, quantize, freeze_at", seed, 300, [](prop::Gen& g) {
    quant::StatsQOptions o;
    o.bits = int(g.integer("bits", 1, 8, 0.1, bad_bits, bits_ok));
    o.granularity = quant::Granularity(g.pick(3));
    const Shape ws = weight_shape(g);
    if (o.granularity == quant::Granularity::axes) {
      const int n = 1 + g.pick(2);
      for (int i = 0; i < n; ++i)
        o.reduce_axes.push_back(int(g.integer("reduce axis", 0, ws.rank() - 1, 0.1, {ws.rank(), -5}, [](long long) { return true; })));
    }
    o.ste_gate = g.chance(0.7) ? 0.0 : g.real("ste_gate", 0.01, 1, 0.2, [](double v) { return v >= 0 && std::isfinite(v); });
    std::shared_ptr<quant::StatsQuantizer<quant::dynamic_bits, T>> q;
    if (!prop::construct(g, [&] { q = quant::statsq<quant::dynamic_bits, T>(o); })) return;
    Tensor<T> w = g.tensor<T>(ws, "w");
    prop::Watch watch;
    watch.add(w, "w");
    exercise(g, *q, w, watch);
  }, false);
}

template <class T>
void lsq(std::uint64_t seed) {
  prop::run("quant/LSQ: options, forward, quantize, set_scale, init_from", seed, 300, [](prop::Gen& g) {
    quant::LsqOptions o;
    o.bits = int(g.integer("bits", 1, 8, 0.1, bad_bits, bits_ok));
    o.is_signed = g.chance(0.7);
    o.granularity = quant::Granularity(g.pick(3));
    if (o.granularity == quant::Granularity::axes) g.set_bad_option("LSQ with axes granularity");
    o.init = g.chance(0.5) ? quant::LsqInit::lsq : quant::LsqInit::lsq_plus;
    Tensor<T> w = g.tensor<T>(weight_shape(g), "w");
    if (w.numel() == 0 || !w.all_finite()) g.set_bad_option("an empty or non-finite initial weight");
    std::shared_ptr<quant::LsqQuantizer<quant::dynamic_bits, T>> q;
    if (!prop::construct(g, [&] { q = quant::lsq<quant::dynamic_bits, T>(w, o); })) return;
    prop::Watch watch;
    watch.add(w, "w").add(q->scale, "scale");
    exercise(g, *q, w, watch);
    // set_scale with a drawn value, init_from with another weight: the scale handle survives
    Parameter<T> handle = q->scale;
    Tensor<T> s(q->scale.shape(), T(g.real("scale", 1e-3, 1, 0.2, [](double v) { return v > 0 && std::isfinite(v) && std::isfinite(T(v)) && T(v) > T(0); })));
    prop::Watch ws;
    ws.add(q->scale, "scale");
    prop::check(g, ws, [&] { q->set_scale(s); });
    Tensor<T> w2 = g.tensor<T>(g.chance(0.5) ? w.shape() : weight_shape(g), "w2");
    if (w2.numel() == 0 || !w2.all_finite()) g.set_must_fail("an empty or non-finite weight for init_from");
    prop::Watch wi;
    wi.add(q->scale, "scale");
    prop::check(g, wi, [&] {
      q->init_from(w2);
      CHECK(handle == q->scale);
      prop::expect_result(g, q->scale.value(), q->scale.shape());
    });
  }, true);
}

template <class T>
void export_and_deploy(std::uint64_t seed) {
  prop::run("quant/quantize_linear, export_weights, quantized_linear on tampered structs", seed, 300, [](prop::Gen& g) {
    const index_t in = 1 + g.pick(5), out = 1 + g.pick(5);
    nn::Linear<T> lin(in, out, g.rng, g.chance(0.5));
    const int bits = 1 + g.pick(8);
    quant::QuantizedLayer<T> ql;
    if (g.chance(0.5)) {
      quant::StatsQOptions o;
      o.bits = bits;
      o.granularity = g.chance(0.5) ? quant::Granularity::per_row : quant::Granularity::per_tensor;
      ql = quant::quantize_linear<T>(lin, quant::statsq<quant::dynamic_bits, T>(o));
    } else {
      quant::LsqOptions o;
      o.bits = bits;
      o.is_signed = g.chance(0.5);
      o.granularity = g.chance(0.5) ? quant::Granularity::per_row : quant::Granularity::per_tensor;
      ql = quant::quantize_linear<T>(lin, quant::lsq<quant::dynamic_bits, T>(lin.weight.value(), o));
    }
    g.note("bits", bits);
    quant::QuantizedWeights<T> qw = quant::export_weights(ql);
    // tamper with one field, as a user's own deserialiser might
    const int t = g.pick(10);
    g.note("tamper (none none none codes- codes+ step- code bits geometry step-NaN)", t);
    if (t == 3 && !qw.codes.empty()) qw.codes.pop_back(), g.set_must_fail("one code missing");
    if (t == 4) qw.codes.push_back(0), g.set_must_fail("one code too many");
    if (t == 5) qw.step.pop_back(), g.set_must_fail("one step missing");
    if (t == 6) qw.codes[std::size_t(g.pick(int(qw.codes.size())))] = quant::qcode_t(1 << 12), g.set_must_fail("code out of range");
    if (t == 7) qw.bits = int(bad_bits[std::size_t(g.pick(4))]), g.set_must_fail("bad bits");
    if (t == 8) qw.geometry.inner += 1, g.set_must_fail("geometry");
    if (t == 9) qw.step[0] = std::numeric_limits<T>::quiet_NaN(), g.set_must_fail("NaN step");
    prop::Watch none;
    prop::check(g, none, [&] { prop::expect_result(g, qw.dequantize(), Shape{out, in}); });
    const bool tampered = t >= 3;
    Tensor<T> x = g.tensor<T>(Shape{g.extent(4), g.near(in, "x width")}, "x");
    if (tampered) g.set_must_fail("tampered struct");
    Tensor<T> b = lin.bias.defined() ? lin.bias.value() : Tensor<T>();
    prop::Watch w;
    w.add(x, "x");
    prop::check(g, w, [&] {
      const Tensor<T> y = quant::quantized_linear(qw, x, lin.bias.defined() ? &b : nullptr);
      prop::expect_result(g, y, Shape{x.dim(0), out});
    });
  });
}

template <class T>
void controllers(std::uint64_t seed) {
  prop::run("quant/OscillationTracker, CgaController, ActivationQuantizer", seed, 300, [](prop::Gen& g) {
    const int which = g.pick(3);
    g.note("which (tracker cga activation)", which);
    if (which == 0) {
      quant::TrackerOptions o;
      o.momentum = g.real("momentum", 0.001, 1, 0.15, [](double m) { return m > 0 && m <= 1; });
      o.freeze_threshold = g.chance(0.6) ? 0.0 : g.real("freeze_threshold", 0.001, 0.5, 0.2, [](double v) { return v >= 0 && v <= 1; });
      std::unique_ptr<quant::OscillationTracker<T>> tr;
      if (!prop::construct(g, [&] { tr = std::make_unique<quant::OscillationTracker<T>>(o); })) return;
      quant::CodeSpec spec;
      spec.size = g.extent(6);
      spec.bits = int(g.integer("bits", 1, 8, 0.1, bad_bits, bits_ok));
      spec.is_signed = g.chance(0.5);
      prop::Watch none;
      if (prop::check(g, none, [&] { tr->track_codes(spec); }) != prop::Outcome::returned) return;
      const long long lo = spec.is_signed ? -(1LL << (spec.bits - 1)) : 0;
      const long long hi = spec.is_signed ? (1LL << (spec.bits - 1)) - 1 : (1LL << spec.bits) - 1;
      for (int step = 0; step < 4; ++step) {
        std::vector<quant::qcode_t> codes(std::size_t(g.near(spec.size, "codes")));
        for (auto& c : codes) c = quant::qcode_t(lo + (long long)g.rng.below(std::uint64_t(hi - lo + 1)));
        if (!codes.empty() && g.chance(0.05)) codes[0] = quant::qcode_t(hi + 2), g.set_must_fail("code out of range");
        if (prop::check(g, none, [&] { tr->observe(codes); }) != prop::Outcome::returned) return;
      }
      const auto s = tr->window();
      prop::expect_finite(g, s.osc_rate(), "oscillation rate");
      prop::expect_finite(g, s.flip_rate(), "flip rate");
    } else if (which == 1) {
      quant::CgaOptions o;
      o.boundary_range = g.real("boundary_range", 0, 0.5, 0.15, [](double v) { return v >= 0 && v <= 0.5; });
      o.cumulative = g.chance(0.5);
      std::unique_ptr<quant::CgaController<T>> cga;
      if (!prop::construct(g, [&] { cga = std::make_unique<quant::CgaController<T>>(o); })) return;
      const index_t in = 1 + g.pick(4), out = 1 + g.pick(4);
      nn::Linear<T> lin(in, out, g.rng);
      lin.weight.value().copy_from(g.tensor<T>(lin.weight.shape(), "weight"));
      auto sq = quant::statsq<quant::dynamic_bits, T>(quant::StatsQOptions{});
      quant::quantize_linear<T>(lin, sq);
      cga->manage(lin, sq);
      Tensor<T> x = g.tensor<T>(Shape{g.extent(3), in}, "x");
      prop::Watch w;
      w.add(x, "x");
      prop::check(g, w, [&] {
        Tape<T> tape;
        Var<T> y = lin(tape.constant(x));
        tape.backward(sum(y));
        cga->pre_step();
        cga->post_step();
        prop::expect_result(g, lin.weight.grad(), lin.weight.shape());
        prop::expect_result(g, lin.weight.value(), lin.weight.shape());
      });
    } else {
      quant::ActivationQuantizerOptions o;
      o.bits = int(g.integer("bits", 1, 8, 0.1, bad_bits, bits_ok));
      o.is_signed = g.chance(0.5);
      o.scale = g.chance(0.5) ? quant::ActScale::per_token : quant::ActScale::per_tensor;
      o.mode = g.chance(0.5) ? quant::ActMode::ofq : quant::ActMode::lsq_plus;
      const index_t features = index_t(g.integer("features", 1, 5, 0.08, {0, -1}, [](long long v) { return v > 0; }));
      const index_t tokens = index_t(g.integer("tokens", 1, 4, 0.08, {0, -1}, [&](long long v) { return v > 0 || o.scale == quant::ActScale::per_tensor; }));
      std::unique_ptr<quant::ActivationQuantizer<T>> aq;
      if (!prop::construct(g, [&] { aq = std::make_unique<quant::ActivationQuantizer<T>>(o, features, tokens); })) return;
      Tensor<T> x = g.tensor<T>(Shape{g.extent(3), (o.scale == quant::ActScale::per_token ? g.near(tokens, "tokens of x") : g.extent(3)), g.near(features, "features of x")}, "x");
      prop::Watch w;
      w.add(x, "x").add(aq->scale, "scale");
      prop::check(g, w, [&] {
        aq->init_from(x);
        Tape<T> tape;
        Var<T> xv = tape.variable(x);
        Var<T> y = aq->apply(xv);
        prop::expect_result(g, y.value(), x.shape());
        tape.backward(sum(y));
        prop::expect_result(g, xv.grad(), x.shape());
      });
    }
  }, false);
}

template <class T>
void qkr(std::uint64_t seed) {
  prop::run("quant/QkrAttention: forward and logits on random inputs", seed, 200, [](prop::Gen& g) {
    const index_t heads = 1 + g.pick(2), dim = heads * (1 + g.pick(3));
    nn::MultiHeadAttention<T> mha(dim, heads, g.rng, g.chance(0.7));
    quant::QkrOptions o;
    o.qk_bias = g.chance(0.5) ? quant::QkBias::drop : quant::QkBias::exact;
    quant::QkrAttention<T> q(mha, o);
    Tensor<T> x = g.tensor<T>(Shape{g.extent(3), g.extent(4), g.near(dim, "x width")}, "x");
    prop::Watch w;
    w.add(x, "x").add(mha);
    prop::check(g, w, [&] {
      Tape<T> tape;
      Var<T> y = q.forward(tape.constant(x));
      prop::expect_result(g, y.value(), x.shape());
      tape.backward(sum(y));
      for (auto& p : mha.parameters()) prop::expect_result(g, p.grad(), p.shape());
    });
  });
}

}  // namespace

TEST_CASE("property/quant: StatsQ quantiser") {
  statsq<double>(501);
  statsq<float>(502);
}

TEST_CASE("property/quant: LSQ quantiser") {
  lsq<double>(511);
  lsq<float>(512);
}

TEST_CASE("property/quant: export and quantized_linear on consistent and tampered structs") {
  export_and_deploy<double>(521);
  export_and_deploy<float>(522);
}

TEST_CASE("property/quant: query-key reparameterised attention") {
  qkr<double>(541);
  qkr<float>(542);
}

TEST_CASE("property/quant: tracker, CGA and activation quantiser") {
  controllers<double>(531);
  controllers<float>(532);
}

}  // namespace weft_unit_property_quant_test
