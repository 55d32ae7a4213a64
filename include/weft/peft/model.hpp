// weft/peft/model.hpp - adapters on a whole model: attach, freeze the base, training mode,
// LoRA+ parameter groups.
//
//   auto att = peft::attach_lora(model, lo, rng, {"q_proj", "v_proj"});  // or every Linear: {}
//   peft::freeze_base(model);              // only adapter parameters stay trainable
//   nn::Adam<float> opt(att.parameters(), ao);                     // or, for LoRA+:
//   nn::Adam<float> opt2(peft::loraplus_param_groups(model, lr, 16.0), ao);
// Merging, unloading and the PiSSA/OLoRA -> LoRA conversion are in peft/merge.hpp.
// Targets: an nn::Selector (nn/select.hpp): a list of names (a layer is adapted when its dotted
// name, e.g. "blocks.0.attn.q_proj", equals an entry or ends with "." + entry; an empty list
// adapts every nn::Linear), nn::Selector<T>::regex(...) (full match, PEFT's target_modules
// string) or a predicate on (name, layer). Attention projections are Linears, so "q_proj"
// reaches every attention block. A name that matches no layer, or an empty selection, is an
// error listing the model's layers. attach_* checks every targeted layer before changing any (a
// throwing call leaves the model as it was). The returned peft::Attachment is an nn::Attachment
// (nn/attachment.hpp: parameters(), set_enabled, detach() restoring the model bit for bit, PiSSA /
// OLoRA bases included; named adapters with nn::Attachments) with a typed view `adapters`. It holds
// raw pointers to the model's layers: rebuild it after moving the model.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/nn/attachment.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/module.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/select.hpp"
#include "weft/peft/bone.hpp"
#include "weft/peft/lora.hpp"

WEFT_NAMESPACE_BEGIN
namespace peft {

using nn::find_linears;  // every Linear of a model with its dotted name (nn/linear.hpp)

/// True when `name` equals a target or ends with "." + target; an empty target list matches all.
/// A thin wrapper over nn::Selector's name rule, kept for existing callers.
inline bool is_target(const std::string& name, const std::vector<std::string>& targets) {
  if (targets.empty()) return true;
  for (const auto& t : targets)
    if (nn::Selector<float>::name_matches(name, t)) return true;
  return false;
}

namespace detail {
/// Calls f(object, its parameters) for every attached object of `layer` that is an adapter
/// (Attachable::is_adapter): side paths, weight transforms, input transforms, output adapters.
template <class T, class F>
void for_each_adapter(nn::Linear<T>& layer, F&& f) {
  std::vector<std::pair<std::string, Parameter<T>>> ps;
  auto each = [&](auto& list) {
    for (auto& a : list)
      if (a->is_adapter()) {
        ps.clear();
        a->parameters(ps);
        f(*a, ps);
      }
  };
  each(layer.side_paths());
  each(layer.transforms());
  each(layer.input_transforms());
  each(layer.output_adapters());
}
}  // namespace detail

/// One adapter attached by attach_*: the layer's dotted name, the layer and the adapter, seen as
/// a peft::Adapter (merge state, delta_weight), as the layer holds it (object: the nn side path
/// or weight transform, for Linear::holds / remove) and, for the LoRA family, as a Lora
/// (PiSSA / OLoRA initial factors; null otherwise).
template <class T>
struct AttachedAdapter {
  std::string layer_name;
  nn::Linear<T>* layer = nullptr;
  std::shared_ptr<Adapter<T>> adapter;
  nn::Attachable* object = nullptr;
  std::shared_ptr<Lora<T>> lora;
};

/// What attach_* returns: an nn::Attachment (technique = the adapter method) with the typed view
/// `adapters` (the same objects, in layer order).
template <class T>
struct Attachment : nn::Attachment<T> {
  using nn::Attachment<T>::Attachment;
  std::vector<AttachedAdapter<T>> adapters;
};

// ---------------------------------------------------------------------------------------------
// one layer

/// A LoRA-family adapter (LoRA, rsLoRA, PiSSA, OLoRA) as a new side path of `layer`.
template <class T>
std::shared_ptr<Lora<T>> add_lora(nn::Linear<T>& layer, const LoraOptions& o, Rng& rng) {
  auto a = std::make_shared<Lora<T>>(layer.weight, o, rng);
  layer.add_side_path(a);
  return a;
}
/// A BoneShared (PEFT Bone / MiSS) side path on `layer`.
template <class T>
std::shared_ptr<BoneShared<T>> add_bone_shared(nn::Linear<T>& layer, const BoneOptions& o, Rng& rng) {
  auto a = std::make_shared<BoneShared<T>>(layer.weight, o, rng);
  layer.add_side_path(a);
  return a;
}
/// A MissMini side path on `layer`.
template <class T>
std::shared_ptr<MissMini<T>> add_miss_mini(nn::Linear<T>& layer, const BoneOptions& o, Rng& rng) {
  auto a = std::make_shared<MissMini<T>>(layer.weight, o, rng);
  layer.add_side_path(a);
  return a;
}
/// A BoneAffine (Bat) weight transform appended to `layer`'s transform chain.
template <class T>
std::shared_ptr<BoneAffine<T>> add_bone_affine(nn::Linear<T>& layer, const BoneOptions& o, Rng& rng) {
  auto a = std::make_shared<BoneAffine<T>>(layer.weight, o, rng);
  layer.add_transform(a);
  return a;
}

// ---------------------------------------------------------------------------------------------
// a whole model

namespace detail {
/// Stands in for a BoneAffine in Linear::check_transform (same stage and needs, no parameters).
template <class T>
struct BoneAffineProbe : nn::WeightTransform<T> {
  std::string name() const override { return "bone_affine"; }
  bool needs_plain_weight() const override { return true; }
  Var<T> apply(const Var<T>& w) override { return w; }
};

/// Checks every selected layer, then adds one adapter per layer (add returns the typed
/// shared_ptr) and records it; `rewrites` (PiSSA / OLoRA) snapshots each weight first.
template <class T, class Check, class Add>
Attachment<T> attach_each(nn::Module<T>& model, const nn::Selector<T>& targets, const char* fn, std::string technique,
                          bool rewrites, Check check, Add add) {
  const auto sel = targets.resolve(model, fn);
  for (auto& l : sel)
    WEFT_CHECK(l.second->weight.defined(), config, fn, "expected constructed layers, got an empty Linear '", l.first, "'");
  for (auto& l : sel) check(*l.second, l.first);  // all layers first
  Attachment<T> att(std::move(technique));
  for (auto& l : sel) {
    Tensor<T> before = rewrites ? l.second->weight.value().clone() : Tensor<T>();
    auto a = add(*l.second);
    att.record(l.first, *l.second, a, std::move(before));
    AttachedAdapter<T> v{l.first, l.second, a, a.get(), nullptr};
    if constexpr (std::is_same_v<typename decltype(a)::element_type, Lora<T>>) v.lora = a;
    att.adapters.push_back(std::move(v));
  }
  att.seal();
  return att;
}
}  // namespace detail

/// LoRA-family adapters on every targeted Linear (PiSSA / OLoRA replace each base by its residual).
template <class T>
Attachment<T> attach_lora(nn::Module<T>& model, const LoraOptions& o, Rng& rng, const nn::SelectorArg<T>& targets = {}) {
  const char* fn = "peft::attach_lora";
  const bool residual = o.init == LoraInit::pissa || o.init == LoraInit::olora;
  return detail::attach_each(
      model, targets, fn, detail::lora_method(o.init), residual,
      [&](nn::Linear<T>& l, const std::string& name) {
        detail::check_lora(l.in_features(), l.out_features(), o, fn);
        if (residual)  // residual inits need finite bases
          WEFT_CHECK(l.weight.value().all_finite(), value, fn, "expected finite base weights, got NaN or Inf in '", name,
                     "'");
      },
      [&](nn::Linear<T>& l) { return add_lora(l, o, rng); });
}
template <class T>
Attachment<T> attach_bone_shared(nn::Module<T>& model, const BoneOptions& o, Rng& rng,
                                 const nn::SelectorArg<T>& targets = {}) {
  const char* fn = "peft::attach_bone_shared";
  return detail::attach_each(
      model, targets, fn, "bone_shared", false,
      [&](nn::Linear<T>& l, const std::string&) { detail::check_bone_shared(l.in_features(), l.out_features(), o, false, fn); },
      [&](nn::Linear<T>& l) { return add_bone_shared(l, o, rng); });
}
template <class T>
Attachment<T> attach_miss_mini(nn::Module<T>& model, const BoneOptions& o, Rng& rng,
                               const nn::SelectorArg<T>& targets = {}) {
  const char* fn = "peft::attach_miss_mini";
  return detail::attach_each(
      model, targets, fn, "miss_mini", false,
      [&](nn::Linear<T>& l, const std::string&) { detail::check_bone_shared(l.in_features(), l.out_features(), o, true, fn); },
      [&](nn::Linear<T>& l) { return add_miss_mini(l, o, rng); });
}
template <class T>
Attachment<T> attach_bone_affine(nn::Module<T>& model, const BoneOptions& o, Rng& rng,
                                 const nn::SelectorArg<T>& targets = {}) {
  const char* fn = "peft::attach_bone_affine";
  WEFT_CHECK(o.dropout == 0, config, fn, "expected dropout 0 (the block-affine map has none), got ", o.dropout);
  return detail::attach_each(
      model, targets, fn, "bone_affine", false,
      [&](nn::Linear<T>& l, const std::string&) {
        detail::check_bone_affine(l.in_features(), l.out_features(), o, fn);
        l.check_transform(detail::BoneAffineProbe<T>(), fn);  // it must act on the plain stored weight
      },
      [&](nn::Linear<T>& l) { return add_bone_affine(l, o, rng); });
}

/// Freezes every parameter of `model` except the parameters of its adapters (every attached
/// object with Attachable::is_adapter: PEFT and PHM adapters; PEFT's mark_only_lora_as_trainable,
/// biases included in the frozen set). Returns the trainable count.
template <class T>
index_t freeze_base(nn::Module<T>& model) {
  model.set_requires_grad(false);
  for (auto& l : find_linears(model))
    detail::for_each_adapter(*l.second, [](nn::Attachable&, std::vector<std::pair<std::string, Parameter<T>>>& ps) {
      for (auto& p : ps) p.second.set_requires_grad(true);
    });
  return model.num_parameters(true);
}

/// Training mode of every adapter of `model` (dropout on or off).
template <class T>
void set_training(nn::Module<T>& model, bool on) {
  for (auto& l : find_linears(model))
    detail::for_each_adapter(*l.second,
                             [on](nn::Attachable& a, std::vector<std::pair<std::string, Parameter<T>>>&) { a.set_training(on); });
}

/// LoRA+ (Hayou, Ghosh & Yu 2024) parameter groups, PEFT's create_loraplus_optimizer rule over the
/// trainable parameters (a LoRA-family side path is known by its name, "lora", "pissa" or "olora",
/// and its B by the parameter name "B"): "loraplus.A" (every LoRA A and any other trainable matrix: lr,
/// weight_decay), "loraplus.B" (every LoRA B: ratio x lr, weight_decay), "loraplus.B_no_decay"
/// (1-D trainable parameters such as biases: ratio x lr, decay 0). Empty groups are left out.
/// The authors recommend ratio = 16 (and about half of vanilla LoRA's lr).
template <class T>
std::vector<nn::ParamGroup<T>> loraplus_param_groups(nn::Module<T>& model, double lr, double ratio,
                                                     double weight_decay = 0.0) {
  const char* fn = "peft::loraplus_param_groups";
  WEFT_CHECK(lr >= 0 && std::isfinite(lr) && weight_decay >= 0 && std::isfinite(weight_decay), value, fn,
             "expected finite lr >= 0 and weight_decay >= 0, got ", lr, " and ", weight_decay);
  WEFT_CHECK(ratio >= 1 && std::isfinite(ratio), value, fn, "expected a finite lr ratio >= 1, got ", ratio);
  std::vector<Parameter<T>> bs;
  std::vector<std::pair<std::string, Parameter<T>>> ps;
  for (auto& l : find_linears(model))
    for (auto& s : l.second->side_paths()) {
      const std::string n = s->name();
      if (n != "lora" && n != "pissa" && n != "olora") continue;
      ps.clear();
      s->parameters(ps);
      for (auto& p : ps)
        if (p.first == "B") bs.push_back(p.second);
    }
  nn::ParamGroup<T> ga, gb, gbn;
  ga.name = "loraplus.A";
  ga.lr = lr;
  ga.weight_decay = weight_decay;
  gb.name = "loraplus.B";
  gb.lr = lr * ratio;
  gb.weight_decay = weight_decay;
  gbn.name = "loraplus.B_no_decay";
  gbn.lr = lr * ratio;
  gbn.weight_decay = 0.0;
  for (auto& np : model.named_parameters()) {
    const Parameter<T>& p = np.second;
    if (!p.requires_grad()) continue;
    bool is_b = false;
    for (auto& b : bs) is_b = is_b || b == p;
    (is_b ? gb : (p.shape().rank() == 1 ? gbn : ga)).params.push_back(p);
  }
  std::vector<nn::ParamGroup<T>> out;
  for (auto* g : {&ga, &gb, &gbn})
    if (!g->params.empty()) out.push_back(std::move(*g));
  WEFT_CHECK(!out.empty(), config, fn, "expected trainable parameters in the model, got none");
  return out;
}

}  // namespace peft
WEFT_NAMESPACE_END
