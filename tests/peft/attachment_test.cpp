// Tests of the one attachment record (nn/attachment.hpp) and the one fold (nn/fold.hpp) across
// families: every family's attach function returns an nn::Attachment; detaching in reverse order
// restores the model bit for bit; out of order is refused with the model untouched; named
// adapters (set_active, disable, remove); fold equals the attached model; merging into a
// quantised base re-quantises and reports the error.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../../examples/common/roundtrip.hpp"  // shared with examples/compose_detach.cpp
#include "peft_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/nn/attachment.hpp"
#include "weft/nn/fold.hpp"
#include "weft/nn/layers.hpp"
#include "weft/peft/merge.hpp"
#include "weft/peft/model.hpp"
#include "weft/phm/adapter.hpp"
#include "weft/prune/attach.hpp"
#include "weft/quant/activation.hpp"
#include "weft/quant/wrap.hpp"
#include "weft/reparam/attach.hpp"

namespace weft_unit_peft_attachment_test {

using namespace weft;

namespace {

// the model helpers of the shared round trip (examples/common/roundtrip.hpp)
using weft_examples::roundtrip::attached_count;
using weft_examples::roundtrip::half_mask;
using weft_examples::roundtrip::stored;

template <class T>
Tensor<T> run(nn::MLP<T>& m, const Tensor<T>& x) {
  return weft_examples::roundtrip::output(m, x);
}
template <class T>
bool all_identical(const std::vector<Tensor<T>>& a, const std::vector<Tensor<T>>& b) {
  return weft_examples::roundtrip::identical(a, b);
}

/// Random values for every parameter of a record (adapters then differ from their no-op init).
template <class T>
void randomise(const nn::Attachment<T>& a, Rng& rng, double sd = 0.2) {
  for (auto p : a.parameters()) p.value().copy_from(test::randn<T>(p.shape(), rng, 0, sd));
}

peft::LoraOptions lora(index_t r, peft::LoraInit init = peft::LoraInit::kaiming) {
  peft::LoraOptions o;
  o.r = r;
  o.alpha = double(r);
  o.init = init;
  return o;
}
peft::BoneOptions bone(index_t r) {
  peft::BoneOptions o;
  o.r = r;
  return o;
}

}  // namespace

TEST_CASE_TEMPLATE("nn/attachment: every family attached, detached in reverse order: bit-identical model", T, float,
                   double) {
  // the composition of examples/compose_detach.cpp (examples/common/roundtrip.hpp), plus the
  // out-of-order checks
  Rng rng(1601);
  nn::MLP<T> m({16, 16, 16, 8}, rng);
  const Tensor<T> x = test::randn<T>({5, 16}, rng);
  const auto w0 = stored(m);
  const Tensor<T> y0 = run(m, x);

  std::vector<nn::Attachment<T>> recs = weft_examples::roundtrip::attach_every_family(m, rng);
  REQUIRE(recs.size() == 9);
  CHECK(recs[0].technique() == "lora");
  CHECK(recs[1].technique() == "pissa");
  CHECK(recs[6].technique() == "compander");
  CHECK(recs[8].technique() == "mask");
  CHECK(recs[4].is_adapter());
  CHECK_FALSE(recs[5].is_adapter());
  CHECK(recs[5].layer_names() == std::vector<std::string>{"layers.0", "layers.2"});
  CHECK(recs[5].entries().size() == 4);  // a weight and an input quantiser per layer
  CHECK(!test::identical(run(m, x), y0));
  // out of order: PiSSA's weight was rewritten by the compander (still attached): refused, nothing changes
  {
    const auto w1 = stored(m);
    const Tensor<T> y1 = run(m, x);
    const std::size_t n1 = attached_count(m);
    CHECK_THROWS_WITH_AS(recs[1].detach(), doctest::Contains("detach the later attachments first"), ConfigError);
    WEFT_NN_CHECK_FAILS(recs[1].detach(), ConfigError, "nn::Attachment::detach");
    CHECK(all_identical(stored(m), w1));
    CHECK(test::identical(run(m, x), y1));
    CHECK(attached_count(m) == n1);
    CHECK(recs[1].attached());
  }
  for (auto it = recs.rbegin(); it != recs.rend(); ++it) it->detach();
  CHECK(attached_count(m) == 0);
  CHECK(all_identical(stored(m), w0));
  CHECK(test::identical(run(m, x), y0));
  // detaching twice names the function
  WEFT_NN_CHECK_FAILS(recs[0].detach(), ConfigError, "nn::Attachment::detach");
}

TEST_CASE_TEMPLATE("nn/attachment: a trained rewritten weight refuses detach; fold keeps it", T, float, double) {
  Rng rng(1602);
  nn::MLP<T> m({8, 8, 4}, rng);
  auto c = reparam::attach_compander(m);
  const auto w1 = stored(m);
  m.layers[0].weight.value()(0, 0) += T(0.01);  // "training" v
  const auto w2 = stored(m);
  CHECK_THROWS_WITH_AS(c.detach(), doctest::Contains("fold() to keep the trained weights"), ConfigError);
  CHECK(all_identical(stored(m), w2));
  CHECK(m.layers[0].transforms().size() == 1);
  (void)w1;
  const Tensor<T> x = test::randn<T>({3, 8}, rng), y = run(m, x);
  const nn::FoldReport rep = nn::fold(m);
  CHECK(rep.folded.size() == 2);
  CHECK(m.layers[0].transforms().empty());
  CHECK(test::compare(run(m, x), y, std::is_same_v<T, double> ? 1e-12 : 1e-5).ok);
  // folded objects are gone: the record refuses to detach
  WEFT_NN_CHECK_FAILS(c.detach(), ConfigError, "nn::Attachment::detach");
}

TEST_CASE_TEMPLATE("nn/attachment: named adapters switch, disable bit-exactly and remove", T, float, double) {
  Rng rng(1603);
  nn::MLP<T> m({12, 12, 6}, rng);
  const Tensor<T> x = test::randn<T>({4, 12}, rng);
  const Tensor<T> y0 = run(m, x);
  nn::Attachments<T> set;
  auto a = peft::attach_lora(m, lora(2), rng);
  auto b = peft::attach_bone_shared(m, bone(3), rng);
  randomise(a, rng);
  randomise(b, rng);
  set.add("a", a);
  set.add("b", b);
  set.add("q", quant::quantize_linears(m, quant::statsq_factory<T>(), {"layers.1"}));
  CHECK(set.names() == std::vector<std::string>{"a", "b", "q"});
  set.get("q").set_enabled(false);  // not an adapter: set_active never touches it
  const Tensor<T> y_both = run(m, x);
  set.set_active("a");
  const Tensor<T> ya = run(m, x);
  set.set_active("b");
  const Tensor<T> yb = run(m, x);
  CHECK(!test::identical(ya, yb));
  CHECK(!test::identical(ya, y0));
  CHECK(!test::identical(yb, y0));
  CHECK_FALSE(set.get("q").enabled());
  // a alone: only its side paths add; the same as b removed by hand
  {
    auto g = set.disable();
    CHECK(test::identical(run(m, x), y0));  // the base, bit for bit
    CHECK_FALSE(set.get("b").enabled());
  }
  CHECK(test::identical(run(m, x), yb));  // b active again, a still off
  CHECK(set.get("b").enabled());
  CHECK_FALSE(set.get("a").enabled());
  set.get("a").set_enabled(true);
  CHECK(test::identical(run(m, x), y_both));
  set.set_active("a");
  set.remove("a");
  CHECK(set.names() == std::vector<std::string>{"b", "q"});
  CHECK(test::identical(run(m, x), y0));  // a gone, b disabled
  set.set_active("b");
  CHECK(test::identical(run(m, x), yb));
  for (auto& l : m.layers) CHECK(l.side_paths().size() == 1);
  // errors name the function; the set is unchanged
  WEFT_NN_CHECK_FAILS(set.add("b", b), ConfigError, "nn::Attachments::add");
  WEFT_NN_CHECK_FAILS(set.add("", b), ConfigError, "nn::Attachments::add");
  WEFT_NN_CHECK_FAILS(set.set_active("a"), ConfigError, "nn::Attachments::set_active");
  WEFT_NN_CHECK_FAILS(set.set_active("q"), ConfigError, "nn::Attachments::set_active");
  WEFT_NN_CHECK_FAILS(set.remove("zzz"), ConfigError, "nn::Attachments::remove");
  WEFT_NN_CHECK_FAILS(set.get("zzz"), ConfigError, "nn::Attachments::get");
  CHECK(set.size() == 2);
}

TEST_CASE("nn/fold: folded model equals the attached one; the report lists what stays") {
  Rng rng(1604);
  const Tensor<double> x = test::randn<double>({6, 16}, rng);
  for (int kind = 0; kind < 5; ++kind) {
    CAPTURE(kind);
    nn::MLP<double> m({16, 16, 8}, rng);
    nn::Attachment<double> rec;
    switch (kind) {
      case 0: rec = peft::attach_lora(m, lora(3), rng); break;
      case 1: rec = peft::attach_bone_shared(m, bone(4), rng); break;
      case 2: rec = peft::attach_bone_affine(m, bone(4), rng); break;
      case 3: rec = reparam::attach_compander(m); break;
      default:
        rec = prune::apply_masks(m, {}, std::vector<prune::Mask>{half_mask(16, 16, 0), half_mask(8, 16, 1)});
    }
    randomise(rec, rng, 0.1);
    const Tensor<double> y = run(m, x);
    const nn::FoldReport rep = nn::fold(m);
    CHECK(rep.folded.size() == 2);
    CHECK(rep.kept.empty());
    CHECK(attached_count(m) == 0);
    CHECK(test::compare(run(m, x), y, 1e-12).ok);
  }
  // what cannot be folded stays, with a reason: an activation quantiser (and the LoRA behind it),
  // a PHM output adapter, a disabled adapter
  nn::MLP<double> m({16, 16, 8}, rng);
  quant::ActivationQuantizerOptions ao;
  ao.scale = quant::ActScale::per_tensor;
  auto aq = quant::quantize_linears<double>(m, nullptr, {"layers.0"}, [&](const std::string&, nn::Linear<double>& l) {
    return std::make_shared<quant::ActivationQuantizer<double>>(ao, l.in_features());
  });
  auto lo = peft::attach_lora(m, lora(2), rng);
  randomise(lo, rng);
  phm::AdapterConfig pc = phm::AdapterConfig::make(phm::AdapterKind::compacter);
  pc.reduction_factor = 4;
  auto ad = phm::add_adapters(m, pc, rng, {"layers.0"});
  auto off = peft::attach_bone_shared(m, bone(4), rng, {"layers.1"});
  off.set_enabled(false);
  const Tensor<double> y = run(m, x);
  const nn::FoldReport rep = nn::fold(m);
  REQUIRE(rep.folded.size() == 1);  // the LoRA of layers.1
  CHECK(rep.folded[0].layer == "layers.1");
  REQUIRE(rep.kept.size() == 4);
  const std::string s = rep.to_string();
  CHECK(s.find("transforms activations") != std::string::npos);
  CHECK(s.find("reads the raw input") != std::string::npos);
  CHECK(s.find("maps the layer's output") != std::string::npos);
  CHECK(s.find("disabled") != std::string::npos);
  CHECK(test::compare(run(m, x), y, 1e-12).ok);
  // require_all: ConfigError naming the caller, model unchanged
  const auto w = stored(m);
  nn::FoldOptions fo;
  fo.require_all = true;
  WEFT_NN_CHECK_FAILS(nn::fold(m, {}, fo), ConfigError, "nn::fold");
  CHECK(all_identical(stored(m), w));
  WEFT_NN_CHECK_FAILS(nn::fold(m, {"nothing"}), ConfigError, "nn::fold");
}

TEST_CASE_TEMPLATE("nn/fold: an adapter merged into a quantised base re-quantises; the error is reported", T, float,
                   double) {
  Rng rng(1605);
  nn::MLP<T> m({16, 16, 8}, rng);
  quant::StatsQOptions so;
  so.bits = 2;
  auto q = quant::quantize_linears(m, quant::statsq_factory<T>(so));
  // the record's typed view exports the codes the layer's chain uses
  for (std::size_t i = 0; i < m.layers.size(); ++i)
    CHECK(test::identical(quant::export_weights(q.layers[i]).dequantize(), m.layers[i].folded_weight()));
  auto lo = peft::attach_lora(m, lora(4), rng);
  randomise(lo, rng, 0.3);
  std::vector<Tensor<T>> expected, reference;
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    auto& l = m.layers[i];
    Tensor<T> merged = l.weight.value().clone();
    merged.array() += l.side_paths()[0]->linear_delta().array();
    expected.push_back(merged);
    Tensor<T> ref = l.transforms()[0]->fold(l.weight.value());  // Q(W) + dW
    ref.array() += l.side_paths()[0]->linear_delta().array();
    reference.push_back(ref);
  }
  nn::FoldOptions fo;
  fo.adapters_only = true;
  const nn::FoldReport rep = nn::fold(m, {}, fo);
  CHECK(rep.folded.size() == 2);
  REQUIRE(rep.requantized.size() == 2);
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    auto& l = m.layers[i];
    REQUIRE(l.transforms().size() == 1);  // still quantised
    CHECK(l.transforms()[0]->name() == q.layers[i].weight->name());
    CHECK(l.side_paths().empty());
    CHECK(test::identical(l.weight.value(), expected[i]));  // W + dW in the float shadow weight
    const double err = nn::detail::relative_frobenius(l.folded_weight(), reference[i]);
    CHECK(rep.requantized[i].layer == "layers." + std::to_string(i));
    CHECK(rep.requantized[i].relative_error == doctest::Approx(err).epsilon(1e-12));
    CHECK(rep.requantized[i].relative_error > 0);  // 2 bits cannot hold W + dW exactly
    CHECK(std::isfinite(rep.requantized[i].relative_error));
  }
  CHECK(rep.to_string().find("re-quantised 'layers.0'") != std::string::npos);
  // peft::merge_and_unload is the same fold; under a compander it is still impossible
  nn::MLP<T> m2({8, 8}, rng);
  auto c = reparam::attach_compander(m2);
  auto l2 = peft::attach_lora(m2, lora(2), rng);
  const auto w = stored(m2);
  WEFT_NN_CHECK_FAILS(peft::merge_and_unload(m2), ConfigError, "peft::merge_and_unload");
  CHECK(all_identical(stored(m2), w));
  CHECK(m2.layers[0].side_paths().size() == 1);
  l2.detach();
  c.detach();
}

}  // namespace weft_unit_peft_attachment_test
