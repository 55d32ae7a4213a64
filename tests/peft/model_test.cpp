// Tests of weft/peft/model.hpp and merge.hpp: attaching to models and attention projections,
// freezing, several adapters on one layer, safe merge, merge-and-unload, atomicity on errors,
// LoRA+ parameter groups.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "peft/peft_test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/nn/attention.hpp"
#include "weft/nn/layers.hpp"
#include "weft/peft/merge.hpp"

namespace weft_unit_peft_model_test {

using namespace weft;
using weft::peft_test::equal_values;
using weft::peft_test::forward_value;
using weft::peft_test::max_rel_diff;

namespace {
peft::LoraOptions model_lora(index_t r, double alpha) {
  peft::LoraOptions o;
  o.r = r;
  o.alpha = alpha;
  return o;
}
peft::BoneOptions model_bone(index_t r) {
  peft::BoneOptions o;
  o.r = r;
  return o;
}
Tensor<double> mlp_out(nn::MLP<double>& m, const Tensor<double>& x) {
  Tape<double> t;
  no_grad ng;
  return m(t.constant(x)).value().clone();
}
/// W -> 2 W: a weight transform that is not an adapter.
struct Doubler : nn::WeightTransform<double> {
  std::string name() const override { return "doubler"; }
  Var<double> apply(const Var<double>& w) override { return w * 2.0; }
};
/// x -> x / 2: an input transform (as an activation quantiser is).
struct Halver : nn::InputTransform<double> {
  std::string name() const override { return "halver"; }
  Var<double> apply(const Var<double>& x) override { return x * 0.5; }
};
/// Fills every adapter parameter of `att` with random values (a "trained" state).
void randomise(const peft::Attachment<double>& att, Rng& rng, double scale = 0.2) {
  for (auto& p : att.parameters()) p.value().copy_from(test::randn<double>(p.shape(), rng, 0, scale));
}
}  // namespace

TEST_CASE("peft/model: attach to every Linear of an MLP; names, counts and freezing") {
  Rng rng(61);
  nn::MLP<double> m({32, 64, 64, 16}, rng, nn::Activation::tanh, false);
  const peft::Attachment<double> att = peft::attach_lora(m, model_lora(4, 4), rng);
  REQUIRE(att.adapters.size() == 3);
  CHECK(att.adapters[1].layer_name == "layers.1");
  CHECK(att.num_trainable() == 1216);  // the spec's budget: 4 (96 + 128 + 80)
  CHECK(peft::freeze_base(m) == 1216);
  auto np = m.named_parameters();
  bool found = false;
  for (auto& p : np) found = found || p.first == "layers.0.side.0.lora.A";
  CHECK(found);
  nn::MLP<double> m2({32, 64, 64, 16}, rng, nn::Activation::tanh, false);
  CHECK(peft::attach_bone_shared(m2, model_bone(8), rng).num_trainable() == 1152);  // 8 (64 + 64 + 16)
  nn::MLP<double> m3({32, 64, 64, 16}, rng, nn::Activation::tanh, false);
  CHECK(peft::attach_bone_affine(m3, model_bone(8), rng).num_trainable() == 1152);
  CHECK(peft::freeze_base(m3) == 1152);
}

TEST_CASE("peft/model: targets reach attention projections by name") {
  Rng rng(62);
  nn::MultiHeadAttention<double> attn(8, 2, rng);
  const Tensor<double> x = test::randn<double>({2, 5, 8}, rng);
  Tape<double> t0;
  const Tensor<double> y0 = attn(t0.constant(x)).value().clone();
  const peft::Attachment<double> att = peft::attach_lora(attn, model_lora(2, 4), rng, {"q_proj", "v_proj"});
  REQUIRE(att.adapters.size() == 2);
  CHECK(att.adapters[0].layer_name == "q_proj");
  CHECK(att.adapters[1].layer_name == "v_proj");
  CHECK(attn.k_proj.side_paths().empty());
  CHECK(attn.out_proj.side_paths().empty());
  randomise(att, rng);
  Tape<double> t1;
  const Tensor<double> y1 = attn(t1.constant(x)).value().clone();
  CHECK(max_rel_diff(y1, y0) > 1e-3);
  CHECK(peft::merge(att) == 2);
  Tape<double> t2;
  CHECK(max_rel_diff(attn(t2.constant(x)).value(), y1) <= 1e-12);
  CHECK(peft::is_target("blocks.0.attn.q_proj", {"q_proj"}));
  CHECK_FALSE(peft::is_target("blocks.0.attn.xq_proj", {"q_proj"}));
  CHECK(peft::is_target("anything", {}));
  // a regex over the whole dotted name (PEFT's target_modules string) and a predicate
  nn::MultiHeadAttention<double> a2(8, 2, rng);
  const auto rx = peft::attach_bone_shared(a2, model_bone(4), rng, nn::Selector<double>::regex("[kv]_proj"));
  REQUIRE(rx.adapters.size() == 2);
  CHECK(rx.adapters[0].layer_name == "k_proj");
  CHECK(rx.adapters[1].layer_name == "v_proj");
  const auto pr = peft::attach_lora(a2, model_lora(2, 4), rng,
                                    [](const std::string& n, const nn::Linear<double>&) { return n == "out_proj"; });
  REQUIRE(pr.adapters.size() == 1);
  CHECK(a2.out_proj.side_paths().size() == 1);
  // an unknown name: the error names it and lists the layers; nothing attached
  CHECK_THROWS_WITH_AS(peft::attach_lora(a2, model_lora(2, 4), rng, {"q_proj", "qq_proj"}),
                       doctest::Contains("'qq_proj' matching none; the model's Linears are {q_proj, k_proj, v_proj, out_proj}"),
                       ConfigError);
  CHECK(a2.q_proj.side_paths().empty());
}

TEST_CASE("peft/model: several adapters on one layer merge together and unmerge in reverse") {
  Rng rng(63);
  nn::Linear<double> lin(8, 8, rng);
  const Tensor<double> w0 = lin.weight.value().clone(), x = test::randn<double>({6, 8}, rng);
  peft::Attachment<double> all;
  for (const auto& att : {peft::attach_lora(lin, model_lora(2, 4), rng), peft::attach_bone_shared(lin, model_bone(4), rng),
                          peft::attach_bone_affine(lin, model_bone(4), rng), peft::attach_lora(lin, model_lora(3, 3), rng)})
    all.adapters.insert(all.adapters.end(), att.adapters.begin(), att.adapters.end());
  randomise(all, rng);
  const Tensor<double> y = forward_value(lin, x);
  CHECK(peft::merge(all) == 4);  // the transform first, then the side paths
  for (auto& a : all.adapters) CHECK(a.adapter->merged());
  CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
  CHECK(peft::unmerge(all) == 4);
  CHECK(max_rel_diff(lin.weight.value(), w0) <= 1e-12);
  CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
  CHECK(peft::merge_and_unload(lin) == 4);
  CHECK(lin.side_paths().empty());
  CHECK(lin.transforms().empty());
  CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
}

TEST_CASE("peft/model: safe merge refuses NaN and leaves every weight unchanged") {
  Rng rng(64);
  nn::MLP<double> m({6, 5, 4}, rng);
  const peft::Attachment<double> att = peft::attach_lora(m, model_lora(2, 2), rng);
  randomise(att, rng);
  const auto& second = att.adapters[1].lora;
  REQUIRE(second != nullptr);
  second->B().value()(1, 0) = std::nan("");
  test::Snapshot<double> snap({m.layers[0].weight.value(), m.layers[1].weight.value()});
  CHECK_THROWS_WITH_AS(peft::merge(att, peft::MergeOptions{true}), doctest::Contains("refused to merge into layer 'layers.1'"),
                       ValueError);
  CHECK(snap.unchanged());
  for (auto& a : att.adapters) CHECK_FALSE(a.adapter->merged());
  CHECK(peft::merge(att) == 2);  // the unsafe merge goes through
  CHECK_FALSE(m.layers[1].weight.value().all_finite());
}

TEST_CASE("peft/model: merging into a base of another shape, or under a foreign transform, is refused") {
  Rng rng(65);
  nn::Linear<double> lin(6, 4, rng);
  const peft::Attachment<double> att = peft::attach_lora(lin, model_lora(2, 2), rng);
  const auto& a = att.adapters[0].adapter;
  Tensor<double> other = test::randn<double>({4, 5}, rng);
  test::Snapshot<double> so({other});
  WEFT_NN_CHECK_FAILS(a->merge_into(other), ShapeError, "peft::Adapter::merge_into");
  WEFT_NN_CHECK_FAILS(a->unmerge_from(other), ShapeError, "peft::Adapter::unmerge_from");
  CHECK(so.unchanged());
  lin.add_transform(std::make_shared<Doubler>());
  test::Snapshot<double> sw({lin.weight.value()});
  CHECK_THROWS_WITH_AS(peft::merge(att), doctest::Contains("got 'doubler'"), ConfigError);
  CHECK(sw.unchanged());
  CHECK_FALSE(a->merged());
  // a BoneAffine cannot go after a foreign transform (it acts on the plain stored weight): refused
  // when attached, chain unchanged; before one it can merge
  nn::Linear<double> l2(8, 8, rng);
  l2.add_transform(std::make_shared<Doubler>());
  WEFT_NN_CHECK_FAILS(peft::add_bone_affine(l2, model_bone(4), rng), ConfigError, "nn::Linear::add_transform");
  CHECK(l2.transforms().size() == 1);
  WEFT_NN_CHECK_FAILS(peft::attach_bone_affine(l2, model_bone(4), rng), ConfigError, "peft::attach_bone_affine");
  CHECK(l2.transforms().size() == 1);
  nn::Linear<double> l3(8, 8, rng);
  const peft::Attachment<double> b3 = peft::attach_bone_affine(l3, model_bone(4), rng);
  b3.parameters()[0].value().copy_from(test::randn<double>({2, 4, 4}, rng, 0, 0.2));  // B
  l3.add_transform(std::make_shared<Doubler>());
  const Tensor<double> x = test::randn<double>({3, 8}, rng), y = forward_value(l3, x);
  CHECK(peft::merge(b3) == 1);
  CHECK(max_rel_diff(forward_value(l3, x), y) <= 1e-12);
  CHECK(peft::merge_and_unload(l3) == 1);
  REQUIRE(l3.transforms().size() == 1);  // the foreign transform stays
  CHECK(l3.transforms()[0]->name() == "doubler");
  CHECK(max_rel_diff(forward_value(l3, x), y) <= 1e-12);
}

TEST_CASE("peft/model: merge order across records on one layer; a side path under an input transform stays unmerged") {
  Rng rng(66);
  nn::Linear<double> lin(8, 8, rng);
  const Tensor<double> w0 = lin.weight.value().clone(), x = test::randn<double>({4, 8}, rng);
  const peft::Attachment<double> lo = peft::attach_lora(lin, model_lora(2, 2), rng);
  const peft::Attachment<double> ba = peft::attach_bone_affine(lin, model_bone(4), rng);
  randomise(lo, rng);
  randomise(ba, rng);
  const Tensor<double> y = forward_value(lin, x);
  // the side path waits for the transform; the transform does not go under a merged side path
  test::Snapshot<double> snap({lin.weight.value()});
  CHECK_THROWS_WITH_AS(peft::merge(lo), doctest::Contains("got 'bone_affine'"), ConfigError);
  CHECK(snap.unchanged());
  CHECK(peft::merge(ba) == 1);
  CHECK(ba.adapters[0].object->in_weight());
  CHECK(peft::merge(lo) == 1);
  CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
  test::Snapshot<double> merged({lin.weight.value()});
  CHECK_THROWS_WITH_AS(peft::unmerge(ba), doctest::Contains("got the merged 'lora'"), ConfigError);
  CHECK(merged.unchanged());
  CHECK(peft::unmerge(lo) == 1);
  CHECK(peft::unmerge(ba) == 1);
  CHECK(max_rel_diff(lin.weight.value(), w0) <= 1e-12);
  CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
  // an input transform: the path reads the raw input, the product the transformed one
  lin.add_input_transform(std::make_shared<Halver>());
  CHECK(peft::merge(ba) == 1);  // a transform still merges (it acts on the weight, not the input)
  test::Snapshot<double> before({lin.weight.value()});
  CHECK_THROWS_WITH_AS(peft::merge(lo), doctest::Contains("got 'halver'"), ConfigError);
  CHECK(before.unchanged());
  CHECK_FALSE(lo.adapters[0].adapter->merged());
  // a record whose adapter was removed from its layer is refused
  peft::unload(lin);
  WEFT_NN_CHECK_FAILS(peft::merge(ba), ConfigError, "peft::merge");
}

TEST_CASE("peft/model: attach checks every layer first; unload detaches without merging") {
  Rng rng(66);
  nn::MLP<double> m({16, 12, 3}, rng);
  // r = 4 is fine for (12, 16) but not for (3, 12): nothing is attached
  WEFT_NN_CHECK_FAILS(peft::attach_lora(m, model_lora(4, 4), rng), ValueError, "peft::attach_lora");
  WEFT_NN_CHECK_FAILS(peft::attach_bone_affine(m, model_bone(4), rng), ShapeError, "peft::attach_bone_affine");
  WEFT_NN_CHECK_FAILS(peft::attach_lora(m, model_lora(2, 2), rng, {"nothing"}), ConfigError, "peft::attach_lora");
  for (auto& l : m.layers) CHECK(l.side_paths().empty());
  for (auto& l : m.layers) CHECK(l.transforms().empty());
  const Tensor<double> x = test::randn<double>({4, 16}, rng), y0 = mlp_out(m, x);
  const peft::Attachment<double> att = peft::attach_lora(m, model_lora(3, 3), rng, {"layers.0"});
  REQUIRE(att.adapters.size() == 1);
  randomise(att, rng);
  CHECK(max_rel_diff(mlp_out(m, x), y0) > 1e-4);
  CHECK(peft::unload(m) == 1);
  CHECK(equal_values(mlp_out(m, x), y0));
  peft::set_training(m, false);  // no adapters left: a no-op
}

TEST_CASE("peft/model: LoRA+ groups: B at ratio x lr, other trainables at lr, 1-D at ratio x lr without decay") {
  Rng rng(67);
  nn::MLP<double> m({6, 5, 4}, rng);
  const peft::Attachment<double> att = peft::attach_lora(m, model_lora(2, 2), rng);
  peft::freeze_base(m);
  m.layers[1].bias.set_requires_grad(true);  // a trainable bias goes with B, without decay
  auto groups = peft::loraplus_param_groups(m, 1e-3, 16.0, 0.01);
  REQUIRE(groups.size() == 3);
  CHECK(groups[0].name == "loraplus.A");
  CHECK(groups[0].params.size() == 2);
  CHECK(*groups[0].lr == doctest::Approx(1e-3));
  CHECK(*groups[0].weight_decay == doctest::Approx(0.01));
  CHECK(groups[1].name == "loraplus.B");
  CHECK(groups[1].params.size() == 2);
  CHECK(*groups[1].lr == doctest::Approx(16e-3));
  for (auto& a : att.adapters)
    CHECK(dynamic_cast<peft::Lora<double>*>(a.adapter.get())->B() == groups[1].params[&a - &att.adapters[0]]);
  CHECK(groups[2].name == "loraplus.B_no_decay");
  CHECK(groups[2].params.size() == 1);
  CHECK(*groups[2].weight_decay == 0.0);
  nn::Adam<double> opt(groups);
  CHECK(opt.group_lr(1) == doctest::Approx(16.0 * opt.group_lr(0)));
  WEFT_NN_CHECK_FAILS(peft::loraplus_param_groups(m, 1e-3, 0.5), ValueError, "peft::loraplus_param_groups");
  m.set_requires_grad(false);
  WEFT_NN_CHECK_FAILS(peft::loraplus_param_groups(m, 1e-3, 16.0), ConfigError, "peft::loraplus_param_groups");
}

TEST_CASE("peft/model: dropout follows set_training over the whole model") {
  Rng rng(68);
  nn::MLP<double> m({10, 8, 4}, rng);
  peft::LoraOptions o = model_lora(2, 2);
  o.dropout = 0.5;
  const peft::Attachment<double> att = peft::attach_lora(m, o, rng);
  randomise(att, rng, 1.0);
  const Tensor<double> x = test::randn<double>({5, 10}, rng), clean = mlp_out(m, x);
  auto recorded = [&]() {
    Tape<double> t;
    return m(t.constant(x)).value().clone();
  };
  CHECK(max_rel_diff(recorded(), clean) > 1e-3);
  peft::set_training(m, false);
  CHECK(equal_values(recorded(), clean));
  for (auto& a : att.adapters) CHECK_FALSE(a.adapter->training());
}

}  // namespace weft_unit_peft_model_test
