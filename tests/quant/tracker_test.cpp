// Tests of weft/quant/tracker.hpp: oscillation events, switches and the frequency EMA on hand-made
// code sequences, the window aggregates (osc_rate, flip_rate, flip_frac, osc_frac), iterative
// freezing (frozen at round(EMA(k)), substituted by the quantiser in its next forward), the
// optimiser hook, code sequences fed by hand (the same statistics as the quantiser path), and
// bad options and codes.
#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "quant_test_util.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/optim.hpp"
#include "weft/quant/statsq.hpp"
#include "weft/quant/tracker.hpp"

namespace weft_unit_quant_tracker_test {

using namespace weft;
using quant::qcode_t;

namespace {

/// A quantiser whose codes are set by hand (its forward is the identity).
struct CodeSource : quant::WeightQuantizer<double> {
  std::string name() const override { return "codes"; }
  int bits() const override { return 2; }
  Var<double> apply(const Var<double>& w) override { return w; }
  quant::QuantizedWeights<double> quantize(const Tensor<double>&) override { return {}; }
  void set(const std::vector<qcode_t>& k) {
    qcode_t* c = code_buffer(index_t(k.size()));
    std::copy(k.begin(), k.end(), c);
  }
};

}  // namespace

TEST_CASE("quant/tracker: oscillations are direction reversals of code switches; f is their EMA") {
  auto src = std::make_shared<CodeSource>();
  quant::OscillationTracker<double> tr;
  tr.track(src, "w");
  // weight 0: 0 1 0 1 1 2 1   (switches at t = 1, 2, 3, 5, 6; oscillations at 2, 3, 6)
  // weight 1: 0 0 0 0 0 0 0
  // weight 2: 0 1 2 3 2 2 1   (switches 1, 2, 3, 4, 6; oscillation at 4 only)
  const std::vector<std::vector<qcode_t>> seq = {{0, 0, 0}, {1, 0, 1}, {0, 0, 2}, {1, 0, 3}, {1, 0, 2}, {2, 0, 2}, {1, 0, 1}};
  const std::vector<int> osc0 = {0, 0, 1, 1, 0, 0, 1}, osc2 = {0, 0, 0, 0, 1, 0, 0};
  std::vector<std::int64_t> per_step;
  for (auto& k : seq) {
    src->set(k);
    tr.observe();
    per_step.push_back(tr.last_oscillations());
  }
  CHECK(tr.steps() == 6);  // the first observation initialises
  CHECK(tr.weights() == 3);
  const quant::OscillationStats w = tr.window();
  CHECK(w.oscillations == 4);
  CHECK(w.flips == 10);
  CHECK(w.flipped == 2);
  CHECK(w.osc_rate() == doctest::Approx(4.0 / 18));
  CHECK(w.flip_rate() == doctest::Approx(10.0 / 18));
  CHECK(w.flip_frac() == doctest::Approx(2.0 / 3));
  double f0 = 0, f2 = 0;
  for (std::size_t t = 1; t < seq.size(); ++t) {
    f0 = 0.01 * osc0[t] + 0.99 * f0;
    f2 = 0.01 * osc2[t] + 0.99 * f2;
    CHECK(per_step[t] == osc0[t] + osc2[t]);
  }
  CHECK(tr.frequency(0)[0] == doctest::Approx(f0).epsilon(1e-6));
  CHECK(tr.frequency(0)[1] == 0.0f);
  CHECK(tr.frequency(0)[2] == doctest::Approx(f2).epsilon(1e-6));
  CHECK(tr.osc_frac(0.02) == doctest::Approx(1.0 / 3));  // f0 ~ 0.0298 > 0.02 > f2 ~ 0.0096
  CHECK(tr.osc_frac(0.0) == doctest::Approx(2.0 / 3));
  // a window: counts restart, the EMA and directions carry on
  tr.begin_window();
  src->set({2, 0, 1});  // weight 0 switches up after a down switch: an oscillation
  tr.observe();
  const quant::OscillationStats w2 = tr.window();
  CHECK(w2.steps == 1);
  CHECK(w2.oscillations == 1);
  CHECK(w2.flips == 1);
  CHECK(w2.flipped == 1);
  CHECK(w2.flip_frac() == doctest::Approx(1.0 / 3));
}

TEST_CASE("quant/tracker: LSQ-style code changes count even when only the scale moved") {
  // StatsQ on a fixed weight whose row statistic changes through another element: the codes of
  // untouched weights can switch, and the tracker sees them (it reads codes, not values)
  auto q = quant::statsq<2, double>();
  quant::OscillationTracker<double> tr;
  tr.track(q);
  Tensor<double> w = Tensor<double>::from_values({0.9, 0.1, 0.5, -0.5}, Shape{1, 4});  // s = 1: 0.9 -> code 1
  auto step = [&]() {
    Tape<double> t;
    q->apply(t.variable(w));
    tr.observe();
  };
  step();
  w.flat(1) = 1.3;  // s = 1.6: 0.9 / 1.6 * 2 = 1.125 -> still 1; 0.5 -> 0.625 -> 0
  step();
  w.flat(1) = 4.0;  // s = 2.95: 0.9 -> 0.61 -> code 0
  step();
  CHECK(q->codes()[0] == 0);
  CHECK(tr.window().flips >= 1);
}

TEST_CASE("quant/tracker: iterative freezing pins oscillating weights at round(EMA(k))") {
  Rng rng(4);
  nn::Linear<double> layer(2, 1, rng, false);
  auto q = quant::statsq<2, double>();
  layer.add_transform(q);
  quant::TrackerOptions o;
  o.momentum = 0.5;  // fast EMA for a short test
  o.freeze_threshold = 0.3;
  quant::OscillationTracker<double> tr(o);
  tr.track(q);
  // weight 0 alternates around the threshold at 0 (mean |w| stays 1: s = 2)
  const std::vector<double> w0 = {0.1, -0.1, 0.1, -0.1, 0.1, -0.1};
  for (std::size_t t = 0; t < w0.size(); ++t) {
    layer.weight.value().flat(0) = w0[t];
    layer.weight.value().flat(1) = 2.0 - std::abs(w0[t]);
    Tape<double> tape;
    tape.backward(sum(layer(tape.constant(Tensor<double>::full(Shape{1, 2}, 1.0)))));
    tr.observe();
    // t = 2: the first oscillation lifts f0 to 0.5 > 0.3; frozen at round(EMA) = round(-0.5) = 0
    CHECK(tr.frozen() == (t >= 2 ? 1 : 0));
  }
  REQUIRE(tr.frozen() == 1);
  CHECK(q->codes()[0] == 0);  // w0 = -0.1 would give code -1
  CHECK(q->frozen_mask()[0] == 1);
  CHECK(q->frozen_mask()[1] == 0);
  // once frozen the code no longer follows the weight, and the weight gets no gradient
  const qcode_t pinned = q->codes()[0];
  layer.weight.value().flat(0) = pinned == 0 ? -0.1 : 0.1;  // would give the other code
  layer.weight.zero_grad();
  Tape<double> tape;
  tape.backward(sum(layer(tape.constant(Tensor<double>::full(Shape{1, 2}, 1.0)))));
  CHECK(q->codes()[0] == pinned);
  CHECK(layer.weight.grad().flat(0) == 0.0);
  CHECK(layer.weight.grad().flat(1) == 1.0);
  tr.set_freeze_threshold(0);  // stop freezing new weights; the frozen one stays
  CHECK(tr.frozen() == 1);
}

TEST_CASE("quant/tracker: attach() observes before every optimiser step") {
  Rng rng(5);
  nn::Linear<float> layer(8, 4, rng);
  auto q = quant::statsq<2, float>();
  layer.add_transform(q);
  nn::AdamOptions ao;
  ao.lr = 0.05;
  nn::Adam<float> opt(layer.parameters(), ao);
  quant::OscillationTracker<float> tr;
  tr.track(q);
  tr.attach(opt);
  const Tensor<float> x = test::randn<float>(Shape{16, 8}, rng);
  for (int s = 0; s < 20; ++s) {
    opt.zero_grad();
    Tape<float> t;
    t.backward(mean(square(layer(t.constant(x)))));
    opt.step();
  }
  CHECK(tr.steps() == 19);
  CHECK(tr.window().flips > 0);
}

TEST_CASE("quant/tracker: codes fed by observe(codes) give the quantiser path's statistics") {
  Rng rng(7);
  nn::Linear<float> layer(8, 4, rng);
  auto q = quant::statsq<2, float>();
  layer.add_transform(q);
  nn::AdamOptions ao;
  ao.lr = 0.05;
  nn::Adam<float> opt(layer.parameters(), ao);
  quant::OscillationTracker<float> via_q, fed;
  via_q.track(q);
  quant::CodeSpec spec;
  spec.size = 32;
  spec.bits = 2;
  CHECK(fed.track_codes(spec) == 0);
  const Tensor<float> x = test::randn<float>(Shape{16, 8}, rng);
  for (int s = 0; s < 40; ++s) {
    if (s == 25) via_q.begin_window(), fed.begin_window();
    opt.zero_grad();
    Tape<float> t;
    t.backward(mean(square(layer(t.constant(x)))));
    via_q.observe();
    fed.observe(q->codes());
    CHECK(fed.last_oscillations() == via_q.last_oscillations());
    CHECK(fed.last_flips() == via_q.last_flips());
    opt.step();
  }
  const quant::OscillationStats a = via_q.window(), b = fed.window();
  REQUIRE(a.flips > 0);
  CHECK(b.steps == a.steps);
  CHECK(b.weights == a.weights);
  CHECK(b.oscillations == a.oscillations);
  CHECK(b.flips == a.flips);
  CHECK(b.flipped == a.flipped);
  CHECK(fed.steps() == via_q.steps());
  CHECK(fed.frequency(0) == via_q.frequency(0));
  CHECK(fed.osc_frac(0.0) == via_q.osc_frac(0.0));
}

TEST_CASE("quant/tracker: several fed sequences next to a quantiser; the code ranges of the bit widths") {
  auto src = std::make_shared<CodeSource>();
  quant::OscillationTracker<double> tr;
  quant::CodeSpec sign1, u3;
  sign1.size = 2;
  sign1.bits = 1;  // LSQ's sign codes {-1, +1} and StatsQ's {-1, 0}
  u3.size = 1;
  u3.bits = 3;
  u3.is_signed = false;  // [0, 7]
  CHECK(tr.track_codes(sign1) == 0);
  tr.track(src);
  CHECK(tr.track_codes(u3) == 2);
  CHECK(sign1.lowest() == -1);
  CHECK(sign1.highest() == 1);
  CHECK(u3.highest() == 7);
  const std::vector<std::vector<qcode_t>> a = {{-1, 0}, {7}}, b = {{1, -1}, {0}}, c = {{-1, 0}, {7}};
  src->set({0});
  tr.observe(a);  // initialises all three
  src->set({1});
  tr.observe(b);  // switches: 2 (sequence 0) + 1 (quantiser) + 1 (sequence 2)
  CHECK(tr.last_flips() == 4);
  CHECK(tr.last_oscillations() == 0);
  src->set({0});
  tr.observe(c);  // every one reverses: 4 oscillations
  CHECK(tr.last_oscillations() == 4);
  CHECK(tr.steps() == 2);
  CHECK(tr.weights() == 4);
  CHECK(tr.frequency(2)[0] == doctest::Approx(0.01));
  tr.observe();  // fed sequences take no step here; the quantiser's unchanged codes do
  CHECK(tr.steps() == 3);
  CHECK(tr.last_flips() == 0);
}

TEST_CASE("quant/tracker: bad options") {
  quant::TrackerOptions o;
  o.momentum = 0;
  WEFT_QUANT_CHECK_FAILS(quant::OscillationTracker<float>{o}, ValueError, "quant::OscillationTracker");
  o.momentum = 0.01;
  o.freeze_threshold = 2;
  WEFT_QUANT_CHECK_FAILS(quant::OscillationTracker<float>{o}, ValueError, "quant::OscillationTracker");
  quant::OscillationTracker<float> tr;
  WEFT_QUANT_CHECK_FAILS(tr.track(nullptr), ConfigError, "quant::OscillationTracker::track");
  WEFT_QUANT_CHECK_FAILS(tr.set_freeze_threshold(-1), ValueError, "quant::OscillationTracker::set_freeze_threshold");
  WEFT_QUANT_CHECK_FAILS(tr.frequency(0), ShapeError, "quant::OscillationTracker");
  tr.observe();  // nothing tracked: no step
  CHECK(tr.steps() == 0);
}

TEST_CASE("quant/tracker: bad fed codes are rejected before anything changes") {
  quant::OscillationTracker<float> tr;
  quant::CodeSpec spec;
  spec.size = 0;
  WEFT_QUANT_CHECK_FAILS(tr.track_codes(spec), ShapeError, "quant::OscillationTracker::track_codes");
  spec.size = 3;
  spec.bits = 0;
  WEFT_QUANT_CHECK_FAILS(tr.track_codes(spec), ConfigError, "quant::OscillationTracker::track_codes");
  spec.bits = 2;  // codes in [-2, 1]
  tr.track_codes(spec);
  const std::vector<qcode_t> k0 = {-2, 0, 1}, k1 = {1, 0, -2};
  tr.observe(k0);
  tr.observe(k1);
  const std::vector<float> f = tr.frequency(0);
  const std::vector<qcode_t> short_k = {0, 0}, high = {0, 2, 0}, low = {-3, 0, 0};
  WEFT_QUANT_CHECK_FAILS(tr.observe(short_k), ShapeError, "quant::OscillationTracker::observe");
  WEFT_QUANT_CHECK_FAILS(tr.observe(high), ValueError, "quant::OscillationTracker::observe");
  CHECK_THROWS_WITH(tr.observe(low), doctest::Contains("[-2, 1]"));
  const std::vector<std::vector<qcode_t>> two = {k0, k0};
  WEFT_QUANT_CHECK_FAILS(tr.observe(two), ShapeError, "quant::OscillationTracker::observe");
  CHECK(tr.steps() == 1);
  CHECK(tr.window().flips == 2);
  CHECK(tr.frequency(0) == f);
  tr.observe(k0);  // still tracking from k1
  CHECK(tr.last_flips() == 2);
}

}  // namespace weft_unit_quant_tracker_test
