// Tests of weft/quant/wrap.hpp: quantisers put on existing modules (an MLP, attention, a tiny
// ViT) without copying them, filters and factories (a throwing factory changes nothing), export
// of integer codes (dequantised weights equal the layer's folded weight bit for bit; the integer
// product with the half-step offset reproduces the layer's output), and bad input.
#include <doctest/doctest.h>

#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include "quant_test_util.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/vit.hpp"
#include "weft/quant/activation.hpp"
#include "weft/quant/wrap.hpp"

namespace weft_unit_quant_wrap_test {

using namespace weft;

namespace {

/// W -> 0.5 W (an element-wise transform before the quantiser).
template <class T>
struct HalfTransform : nn::WeightTransform<T> {
  std::string name() const override { return "half"; }
  Var<T> apply(const Var<T>& w) override { return w * T(0.5); }
};
/// The same map at the mask stage (after a quantiser in the canonical order).
template <class T>
struct HalfMask : HalfTransform<T> {
  nn::TransformStage stage() const override { return nn::TransformStage::mask; }
};

}  // namespace

TEST_CASE("quant/wrap: quantize_linears finds every Linear, honours the filter and shares the layers") {
  Rng rng(1);
  nn::ViTConfig c;
  c.dim = 16;
  c.depth = 2;
  c.heads = 2;
  nn::TinyViT<float> vit(c, rng);
  const auto all = quant::find_linears(vit);
  CHECK(all.size() == 1 + 2 * 6 + 1);  // patch_embed, per block q, k, v, out, fc1, fc2, head
  CHECK(all.front().first == "patch_embed");
  CHECK(all[1].first == "blocks.0.attn.q_proj");
  CHECK(all.back().first == "head");
  const auto att = quant::quantize_linears<float>(
      vit, quant::statsq_factory<float>(), [](const std::string& n, const nn::Linear<float>&) { return n != "head" && n != "patch_embed"; });
  CHECK(att.layers.size() == 12);
  CHECK(att.weight_quantizers().size() == 12);
  CHECK(vit.blocks[1].mlp.layers[1].transforms().size() == 1);  // the model's own layer, not a copy
  CHECK(vit.head.transforms().empty());
  CHECK(att.layers[0].layer == &vit.blocks[0].attn.q_proj);
  // a forward runs through the quantised weights
  Tape<float> t;
  Var<float> y = vit(t.constant(test::rand_uniform<float>(Shape{2, 64}, rng, 0, 1)));
  CHECK(y.shape() == Shape{2, 10});
  CHECK(att.weight_quantizers()[3]->codes().size() == 256);
  // a Linear on its own, and attention with LSQ weights plus input quantisers
  nn::Linear<float> lin(4, 3, rng);
  CHECK(quant::find_linears(lin).size() == 1);
  nn::MultiHeadAttention<float> mha(8, 2, rng);
  quant::ActivationQuantizerOptions ao;
  ao.scale = quant::ActScale::per_tensor;
  const auto a2 = quant::quantize_linears<float>(mha, quant::lsq_factory<float>(), {},
                                                 [&](const std::string&, nn::Linear<float>& l) {
                                                   return std::make_shared<quant::ActivationQuantizer<float>>(ao, l.in_features());
                                                 });
  CHECK(a2.layers.size() == 4);
  CHECK(mha.named_parameters().size() == 8 + 4 + 4 * 3);  // + LSQ scales + (s, shift_in, shift_out)
  const auto one = quant::quantize_linear<float>(lin, quant::statsq<3, float>(), nullptr, "lin");
  CHECK(one.weight->bits() == 3);
  CHECK(lin.transforms().size() == 1);
}

TEST_CASE("quant/wrap: a second quantiser on a weight is refused with the model untouched; regex selection") {
  Rng rng(12);
  nn::MLP<float> mlp({8, 8, 8, 4}, rng);
  const auto first = quant::quantize_linears<float>(mlp, quant::statsq_factory<float>(), {"layers.2"});
  REQUIRE(first.layers.size() == 1);
  // layers.0 and layers.1 are fine, layers.2 has a quantiser: nothing changes anywhere
  CHECK_THROWS_WITH_AS(quant::quantize_linears<float>(mlp, quant::lsq_factory<float>()),
                       doctest::Contains("at most one quantizer transform per weight, got 'lsq'"), ConfigError);
  CHECK(mlp.layers[0].transforms().empty());
  CHECK(mlp.layers[1].transforms().empty());
  CHECK(mlp.layers[2].transforms().size() == 1);
  WEFT_QUANT_CHECK_FAILS(quant::quantize_linear<float>(mlp.layers[2], quant::lsq<2>(mlp.layers[2].weight.value())),
                         ConfigError, "quant::quantize_linear");
  CHECK(mlp.layers[2].transforms().size() == 1);
  // a regex over the dotted names (full match)
  const auto att = quant::quantize_linears<float>(mlp, quant::lsq_factory<float>(), nn::Selector<float>::regex("layers\\.[01]"));
  CHECK(att.layers.size() == 2);
  CHECK(att.layers[1].name == "layers.1");
  // a name that matches no layer names itself and the model's layers
  nn::MLP<float> other({4, 4}, rng);
  CHECK_THROWS_WITH_AS(quant::quantize_linears<float>(other, quant::statsq_factory<float>(), {"head"}),
                       doctest::Contains("'head' matching none; the model's Linears are {layers.0}"), ConfigError);
  CHECK(other.layers[0].transforms().empty());
}

TEST_CASE("quant/wrap: a throwing factory leaves the model unchanged") {
  Rng rng(2);
  nn::MLP<float> mlp({8, 8, 4}, rng);
  int calls = 0;
  auto bad = [&](const std::string&, nn::Linear<float>&) -> std::shared_ptr<quant::WeightQuantizer<float>> {
    if (++calls == 2) throw std::runtime_error("factory failed");
    return quant::statsq<2, float>();
  };
  CHECK_THROWS_AS(quant::quantize_linears<float>(mlp, bad), std::runtime_error);
  CHECK(mlp.layers[0].transforms().empty());
  CHECK(mlp.layers[1].transforms().empty());
  auto none = [](const std::string&, nn::Linear<float>&) { return std::shared_ptr<quant::WeightQuantizer<float>>(); };
  WEFT_QUANT_CHECK_FAILS(quant::quantize_linears<float>(mlp, none), ConfigError, "quant::quantize_linears");
  CHECK(mlp.layers[0].transforms().empty());
  WEFT_QUANT_CHECK_FAILS(quant::quantize_linears<float>(mlp, {}), ConfigError, "quant::quantize_linears");
  WEFT_QUANT_CHECK_FAILS(quant::quantize_linear<float>(mlp.layers[0], nullptr), ConfigError, "quant::quantize_linear");
  quant::StatsQOptions so;
  so.bits = 12;
  WEFT_QUANT_CHECK_FAILS(quant::statsq_factory<float>(so), ConfigError, "quant::StatsQuantizer");
}

TEST_CASE_TEMPLATE("quant/wrap: exported codes reproduce the folded weight and the layer's output", T, float, double) {
  Rng rng(3);
  for (int kind = 0; kind < 3; ++kind) {
    nn::Linear<T> layer(24, 7, rng);
    if (kind == 2) layer.add_transform(std::make_shared<HalfTransform<T>>());  // a transform before the quantiser
    const quant::QuantizedLayer<T> ql =
        kind == 1 ? quant::quantize_linear<T>(layer, quant::lsq<2>(layer.weight.value())) : quant::quantize_linear<T>(layer, quant::statsq<2, T>());
    const quant::QuantizedWeights<T> e = quant::export_weights(ql);
    CHECK(e.codes.size() == 7 * 24);
    CHECK(test::identical(e.dequantize(), layer.folded_weight()));
    // the integer product: y_r = step_r (sum_j x_j k_rj + offset sum_j x_j) + b_r
    const Tensor<T> x = test::randn<T>(Shape{5, 24}, rng);
    const Tensor<T> y = quant::quantized_linear(e, x, &layer.bias.value());
    Tape<T> t;
    no_grad ng;
    const Tensor<T> ref = layer(t.constant(x)).value();
    WEFT_CHECK_CLOSE(y, ref, (std::is_same_v<T, float> ? 1e-5 : 1e-12));
  }
}

TEST_CASE("quant/wrap: export needs a quantiser at the end of the chain; bad shapes") {
  Rng rng(4);
  nn::Linear<float> plain(4, 3, rng);
  const quant::QuantizedLayer<float> none{"plain", &plain, nullptr, nullptr};
  WEFT_QUANT_CHECK_FAILS(quant::export_weights(none), ConfigError, "quant::export_weights");
  const quant::QuantizedLayer<float> qp = quant::quantize_linear<float>(plain, quant::statsq<2, float>(), nullptr, "plain");
  plain.add_transform(std::make_shared<HalfTransform<float>>());  // a weight-stage map goes before the quantiser
  REQUIRE(plain.transforms().back()->name() == "statsq");
  (void)quant::export_weights(qp);
  auto mask = std::make_shared<HalfMask<float>>();
  plain.add_transform(mask);  // a mask-stage map goes after it
  WEFT_QUANT_CHECK_FAILS(quant::export_weights(qp), ConfigError, "quant::export_weights");
  plain.remove(mask.get());
  plain.remove(qp.weight.get());  // a quantiser no longer on its layer
  CHECK_THROWS_WITH_AS(quant::export_weights(qp), doctest::Contains("got it removed"), ConfigError);
  nn::Linear<float> ok(4, 3, rng);
  const auto e = quant::export_weights(quant::quantize_linear<float>(ok, quant::statsq<2, float>()));
  WEFT_QUANT_CHECK_FAILS(quant::quantized_linear(e, Tensor<float>(Shape{2, 5})), ShapeError, "quant::quantized_linear");
  const Tensor<float> b(Shape{4});
  WEFT_QUANT_CHECK_FAILS(quant::quantized_linear(e, Tensor<float>(Shape{2, 4}), &b), ShapeError, "quant::quantized_linear");
  quant::QuantizedWeights<float> odd = e;
  odd.geometry = ops::FqGeometry{3, 2, 2};  // consistent (12 elements, 2 steps) but neither per row nor per tensor
  odd.step.resize(2);
  WEFT_QUANT_CHECK_FAILS(quant::quantized_linear(odd, Tensor<float>(Shape{2, 4})), ConfigError, "quant::quantized_linear");
}

TEST_CASE("quant/wrap: an inconsistent QuantizedWeights is rejected, never read out of bounds") {
  quant::QuantizedWeights<float> qw;
  qw.shape = Shape{2, 3};
  qw.geometry = ops::FqGeometry{1, 2, 3};
  qw.bits = 2;
  qw.scheme = "lsq";
  qw.codes = {-2, -1, 0, 1, 0, 1};
  qw.step = {0.5f, 0.25f};
  const Tensor<float> x(Shape{1, 3}, 1.0f);
  qw.validate();
  CHECK(quant::quantized_linear(qw, x).shape() == Shape{1, 2});
  CHECK(qw.dequantize().flat(5) == 0.25f);
  auto bad = qw;
  bad.step = {0.5f};  // one step for two groups
  WEFT_QUANT_CHECK_FAILS(quant::quantized_linear(bad, x), ShapeError, "quant::quantized_linear");
  WEFT_QUANT_CHECK_FAILS(bad.dequantize(), ShapeError, "quant::QuantizedWeights::dequantize");
  bad = qw;
  bad.codes.pop_back();
  WEFT_QUANT_CHECK_FAILS(bad.dequantize(), ShapeError, "quant::QuantizedWeights::dequantize");
  bad = qw;
  bad.geometry = ops::FqGeometry{1, 2, 4};  // covers 8 elements of a 6-element weight
  WEFT_QUANT_CHECK_FAILS(bad.dequantize(), ShapeError, "quant::QuantizedWeights::dequantize");
  bad = qw;
  bad.geometry = ops::FqGeometry{-1, 2, -3};  // 6 elements, negative extents
  WEFT_QUANT_CHECK_FAILS(bad.dequantize(), ShapeError, "quant::QuantizedWeights::dequantize");
  bad = qw;
  bad.codes[3] = 100;  // not a 2-bit code
  WEFT_QUANT_CHECK_FAILS(quant::quantized_linear(bad, x), ValueError, "quant::quantized_linear");
  bad = qw;
  bad.bits = 0;
  WEFT_QUANT_CHECK_FAILS(bad.dequantize(), ConfigError, "quant::QuantizedWeights::dequantize");
  bad = qw;
  bad.step[1] = std::numeric_limits<float>::quiet_NaN();
  WEFT_QUANT_CHECK_FAILS(bad.validate(), ValueError, "quant::QuantizedWeights::validate");
}

}  // namespace weft_unit_quant_wrap_test
