// Tests of weft/quant/cga.hpp: the confidence mask is the spec's (distance to the nearest inner
// threshold <= BR, from the pre-step weight), frozen weights keep their bits across several Adam
// and AdamW steps (weight decay and momentum included) while the trainable ones move, the
// cumulative option, switching on and off, statistics, and bad input.
#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "quant_test_util.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/optim.hpp"
#include "weft/quant/cga.hpp"

namespace weft_unit_quant_cga_test {

using namespace weft;
using namespace weft::quant_test;

namespace {

template <class T>
void loss_step(nn::Linear<T>& layer, nn::Optimizer<T>& opt, const Tensor<T>& x) {
  opt.zero_grad();
  Tape<T> t;
  t.backward(mean(square(layer(t.constant(x)) - T(0.3))));
  opt.step();
}

/// A transform whose folded value has fewer elements than the weight (to provoke a check).
template <class T>
struct ShrinkTransform : nn::WeightTransform<T> {
  std::string name() const override { return "shrink"; }
  Var<T> apply(const Var<T>& w) override { return w; }
  Tensor<T> fold(const Tensor<T>& w) override { return w.slice(0, 0, 1); }
};

}  // namespace

TEST_CASE_TEMPLATE("quant/cga: frozen weights keep their bits across Adam and AdamW steps; the mask is the spec's", T, float,
                   double) {
  Rng rng(7);
  for (bool decoupled : {false, true}) {
    nn::Linear<T> layer(24, 10, rng);
    auto q = quant::statsq<2, T>();
    layer.add_transform(q);
    nn::AdamOptions ao;
    ao.lr = 0.02;
    ao.weight_decay = 0.05;  // L2 (Adam) or decoupled (AdamW): both would move frozen weights
    nn::Adam<T> opt(layer.parameters(), ao, decoupled);
    const Tensor<T> x = test::randn<T>(Shape{32, 24}, rng);
    for (int s = 0; s < 3; ++s) loss_step(layer, opt, x);  // Adam moments are non-zero now
    quant::CgaOptions co;
    co.boundary_range = 0.1;  // a wide band, so that a small layer keeps some weights trainable
    quant::CgaController<T> cga(co);
    cga.manage(layer, q, "layer");
    cga.attach(opt);
    index_t moved_trainable = 0;
    for (int s = 0; s < 5; ++s) {
      const Tensor<T> before = layer.weight.value().clone();
      loss_step(layer, opt, x);
      const auto& keep = cga.trainable_mask(0);
      // the mask from the pre-step weight: within BR steps of an inner threshold
      std::vector<T> scale(10);
      ops::StatsqOut<T> out;
      out.scales = scale.data();
      ops::statsq_forward(before.data(), ops::FqGeometry{1, 10, 24}, 2, out);
      index_t frozen = 0;
      for (index_t i = 0; i < before.numel(); ++i) {
        const StatsqRef e = statsq_ref(double(before.flat(i)), double(scale[std::size_t(i / 24)]), 2, 0.1);
        if (std::abs(e.dist - 0.1) > 1e-5)  // away from the band's edge, where float and double may disagree
          CHECK(bool(keep[std::size_t(i)]) == e.near);
        if (!keep[std::size_t(i)]) {
          ++frozen;
          CHECK(std::memcmp(&before.flat(i), &layer.weight.value().flat(i), sizeof(T)) == 0);
        } else if (before.flat(i) != layer.weight.value().flat(i)) {
          ++moved_trainable;
        }
      }
      CHECK(frozen > 0);
      CHECK(cga.frozen_fraction() == doctest::Approx(double(frozen) / 240.0));
    }
    CHECK(moved_trainable > 0);
    CHECK(cga.steps() == 5);
    CHECK(cga.mean_frozen_fraction() > 0.0);
    CHECK(cga.mean_frozen_fraction() < 1.0);
    CHECK(cga.name(0) == "layer");
  }
}

TEST_CASE("quant/cga: without the restore, Adam's momentum and decay would move gradient-zeroed weights") {
  Rng rng(8);
  nn::Linear<double> layer(16, 8, rng);
  auto q = quant::statsq<2, double>();
  layer.add_transform(q);
  nn::AdamOptions ao;
  ao.lr = 0.02;
  nn::AdamW<double> opt(layer.parameters(), ao);
  const Tensor<double> x = test::randn<double>(Shape{16, 16}, rng);
  for (int s = 0; s < 3; ++s) loss_step(layer, opt, x);
  std::vector<std::uint8_t> keep;
  nn::HookHandle h = opt.add_pre_step_hook([&](nn::Optimizer<double>&) {  // zero the gradients only (no restore)
    q->confidence_mask(layer.weight.value(), 0.005, keep);
    for (std::size_t i = 0; i < keep.size(); ++i)
      if (!keep[i]) layer.weight.grad().flat(index_t(i)) = 0;
  });
  const Tensor<double> before = layer.weight.value().clone();
  loss_step(layer, opt, x);
  index_t moved = 0;
  for (index_t i = 0; i < before.numel(); ++i) moved += !keep[std::size_t(i)] && before.flat(i) != layer.weight.value().flat(i);
  CHECK(moved > 0);
}

TEST_CASE("quant/cga: cumulative masks only shrink; inactive steps change nothing; statistics") {
  Rng rng(9);
  nn::Linear<float> layer(32, 16, rng);
  auto q = quant::statsq<3, float>();
  layer.add_transform(q);
  nn::AdamOptions ao;
  ao.lr = 0.01;
  nn::Adam<float> opt(layer.parameters(), ao);
  quant::CgaOptions co;
  co.boundary_range = 0.2;
  co.cumulative = true;
  quant::CgaController<float> cga(co);
  cga.manage(layer.weight, q, "w");
  cga.attach(opt);
  const Tensor<float> x = test::randn<float>(Shape{8, 32}, rng);
  index_t prev = 1 << 30;
  std::vector<std::uint8_t> last;
  for (int s = 0; s < 6; ++s) {
    loss_step(layer, opt, x);
    const auto& keep = cga.trainable_mask(0);
    index_t n = 0;
    for (std::size_t i = 0; i < keep.size(); ++i) {
      n += keep[i];
      if (!last.empty()) CHECK((keep[i] <= last[i]));  // a frozen weight never thaws
    }
    CHECK(n <= prev);
    prev = n;
    last = keep;
  }
  CHECK(cga.steps() == 6);
  cga.set_active(false);
  const Tensor<float> before = layer.weight.value().clone();
  loss_step(layer, opt, x);
  CHECK(cga.steps() == 6);
  index_t moved = 0;
  for (index_t i = 0; i < before.numel(); ++i) moved += before.flat(i) != layer.weight.value().flat(i);
  CHECK(moved > before.numel() / 2);  // everything trains again
  cga.set_active(true);  // a fresh cumulative mask
  loss_step(layer, opt, x);
  CHECK(cga.steps() == 7);
  cga.reset();
  CHECK(cga.steps() == 0);
  CHECK(cga.mean_frozen_fraction() == 0.0);
}

TEST_CASE("quant/cga: bad input") {
  quant::CgaOptions co;
  co.boundary_range = 0.6;
  WEFT_QUANT_CHECK_FAILS(quant::CgaController<float>{co}, ValueError, "quant::CgaController");
  Rng rng(1);
  nn::Linear<float> plain(4, 3, rng);
  quant::CgaController<float> cga;
  auto qp = quant::statsq<2, float>();
  WEFT_QUANT_CHECK_FAILS(cga.manage(plain, nullptr), ConfigError, "quant::CgaController::manage");
  // a quantiser the layer does not carry
  CHECK_THROWS_WITH_AS(cga.manage(plain, qp), doctest::Contains("got one it does not carry"), ConfigError);
  WEFT_QUANT_CHECK_FAILS(cga.manage(plain.weight, nullptr), ConfigError, "quant::CgaController::manage");
  plain.add_transform(qp);
  cga.manage(plain, qp);
  WEFT_QUANT_CHECK_FAILS(cga.manage(plain, qp), ConfigError, "quant::CgaController::manage");
  WEFT_QUANT_CHECK_FAILS(cga.trainable_mask(3), ShapeError, "quant::CgaController");
  // a preceding transform that is not element-wise: the check fires before any gradient changes
  nn::Linear<float> odd(4, 3, rng);
  odd.add_transform(std::make_shared<ShrinkTransform<float>>());
  auto qo = quant::statsq<2, float>();
  odd.add_transform(qo);
  quant::CgaController<float> c2;
  c2.manage(plain, qp);
  c2.manage(odd, qo);
  plain.weight.grad().fill(1.0f);
  odd.weight.grad().fill(1.0f);
  WEFT_QUANT_CHECK_FAILS(c2.pre_step(), ShapeError, "quant::CgaController::pre_step");
  CHECK(plain.weight.grad().array().minCoeff() == 1.0f);
  CHECK(odd.weight.grad().array().minCoeff() == 1.0f);
}

}  // namespace weft_unit_quant_cga_test
