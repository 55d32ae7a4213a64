// weft/peft/merge.hpp - folding adapters into their base weights and back, and the
// PiSSA/OLoRA -> LoRA conversion, over a whole model (a single nn::Linear is a model too).
//
//   peft::merge(model);              // W <- W' for every unmerged adapter; merged adapters add nothing
//   peft::merge(model, {true});      // safe: refuse (ValueError) if any merged weight has NaN/Inf
//   peft::unmerge(model);            // back, exact up to rounding
//   peft::merge_and_unload(model);   // = nn::fold(model, all, adapters_only): bake and remove
//   peft::unload(model);             // remove every adapter without merging (PiSSA/OLoRA leave W_res!)
//   peft::convert_to_lora(model);    // PiSSA/OLoRA -> rank-2r LoRA on the restored original W
// To undo an attachment exactly (PiSSA/OLoRA bases restored too), detach its record
// (nn::Attachment::detach); to bake it, merge_and_unload or nn::fold.
// merge / unmerge are the reversible merge (PEFT's merge_adapter / unmerge_adapter): the adapter
// stays attached, adds nothing while merged, and keeps the typed look-up of peft adapters.
// Unmerge before detaching a record: a merged adapter's delta lives in the weight, and a plain
// LoRA's record has no snapshot of the weight to restore (only PiSSA / OLoRA records do).
// merge_and_unload is a thin wrapper over the one fold (nn/fold.hpp) with adapters_only: on a
// quantised base the delta goes into the stored float weight, the quantiser stays and
// re-quantises (nn::fold's report gives the re-quantisation error); only a compander or another
// general weight map under the adapter still makes it a ConfigError.
// Order within a layer: merge() folds the BoneAffine transforms in chain order (each needs only
// merged adapters before it in the chain), then the side paths in order (these need every
// transform of the layer to be a merged adapter: a LoRA delta cannot be folded under a quantiser
// or a compander); unmerge() goes in reverse. Several adapters on a layer merge into one weight.
// Every function plans all layers on copies first and changes the model only when nothing
// failed: a throwing call (ConfigError, ValueError for a refused safe merge or a singular
// BoneAffine block) leaves every weight and adapter as it was. Merging computes in the weight's
// type (float or double); BoneAffine's unmerge inverts I + B_a in double.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/nn/fold.hpp"
#include "weft/peft/model.hpp"

namespace weft::peft {

struct MergeOptions {
  bool safe = false;  ///< refuse merges that produce NaN or Inf (no weight changes)
};

namespace detail {
template <class T>
struct LayerPlan {
  nn::Linear<T>* layer = nullptr;
  Tensor<T> w;                      ///< the layer's new weight
  std::vector<Adapter<T>*> changed; ///< adapters whose merge state flips
};

template <class T>
std::vector<std::pair<std::string, nn::Linear<T>*>> unique_linears(nn::Module<T>& model) {
  std::vector<std::pair<std::string, nn::Linear<T>*>> out;
  for (auto& l : find_linears(model)) {
    bool seen = false;
    for (auto& o : out) seen = seen || o.second == l.second;
    if (!seen && l.second->weight.defined()) out.push_back(l);
  }
  return out;
}

/// Name of the first weight transform of `layer` that is not a merged adapter ("" if none).
template <class T>
std::string blocking_transform(nn::Linear<T>& layer) {
  for (auto& t : layer.transforms()) {
    auto* a = dynamic_cast<Adapter<T>*>(t.get());
    if (!a || !a->merged()) return t->name();
  }
  return {};
}

template <class T>
index_t commit(std::vector<LayerPlan<T>>& plans, bool merged) {
  index_t n = 0;
  for (auto& p : plans) {
    p.layer->weight.value().copy_from(p.w);
    for (auto* a : p.changed) {
      MergeAccess<T>::set_merged(*a, merged);
      ++n;
    }
  }
  return n;
}
}  // namespace detail

/// Merges every unmerged adapter of `model` into its layer's weight. Returns how many.
template <class T>
index_t merge(nn::Module<T>& model, const MergeOptions& o = {}) {
  const char* fn = "peft::merge";
  std::vector<detail::LayerPlan<T>> plans;
  for (auto& l : detail::unique_linears(model)) {
    nn::Linear<T>& lin = *l.second;
    detail::LayerPlan<T> p;
    p.layer = &lin;
    std::string blocker;  // the first transform that is neither a merged nor a now-merging adapter
    auto fold = [&](Adapter<T>* a) {
      if (!p.w.defined()) p.w = lin.weight.value().clone();
      a->merge_into(p.w);
      p.changed.push_back(a);
    };
    for (auto& t : lin.transforms()) {
      auto* a = dynamic_cast<Adapter<T>*>(t.get());
      if (a && a->merged()) continue;
      if (!a) {
        if (blocker.empty()) blocker = t->name();
        continue;
      }
      WEFT_CHECK(blocker.empty(), config, fn, "expected only merged adapters before the ", a->method(),
                 " transform of layer '", l.first, "', got the transform '", blocker, "'; nothing was merged");
      fold(a);
    }
    for (auto& s : lin.side_paths()) {
      auto* a = dynamic_cast<Adapter<T>*>(s.get());
      if (!a || a->merged()) continue;
      WEFT_CHECK(blocker.empty(), config, fn, "expected no weight transform other than merged adapters on layer '",
                 l.first, "' to merge its ", a->method(), " side path into, got '", blocker, "'; nothing was merged");
      fold(a);
    }
    if (p.changed.empty()) continue;
    if (o.safe)
      WEFT_CHECK(p.w.all_finite(), value, fn, "refused to merge into layer '", l.first,
                 "': the merged weight has NaN or Inf; no weight was changed");
    plans.push_back(std::move(p));
  }
  return detail::commit(plans, true);
}

/// Unmerges every merged adapter of `model` (side paths in reverse order, then the transforms in
/// reverse chain order). Returns how many.
template <class T>
index_t unmerge(nn::Module<T>& model) {
  std::vector<detail::LayerPlan<T>> plans;
  for (auto& l : detail::unique_linears(model)) {
    nn::Linear<T>& lin = *l.second;
    detail::LayerPlan<T> p;
    p.layer = &lin;
    auto unfold = [&](Adapter<T>* a) {
      if (!a || !a->merged()) return;
      if (!p.w.defined()) p.w = lin.weight.value().clone();
      a->unmerge_from(p.w);  // BoneAffine: ValueError if I + B_a is singular (on the copy)
      p.changed.push_back(a);
    };
    const auto& sp = lin.side_paths();
    for (auto it = sp.rbegin(); it != sp.rend(); ++it) unfold(dynamic_cast<Adapter<T>*>(it->get()));
    const auto& tr = lin.transforms();
    for (auto it = tr.rbegin(); it != tr.rend(); ++it) unfold(dynamic_cast<Adapter<T>*>(it->get()));
    if (!p.changed.empty()) plans.push_back(std::move(p));
  }
  return detail::commit(plans, false);
}

/// Removes every adapter of `model` (every attached object with Attachable::is_adapter: side
/// paths, weight transforms, output adapters) without merging: merged ones stay in the weights,
/// unmerged ones are dropped. PiSSA / OLoRA bases keep W_res (detach the record to restore W).
/// Returns how many were removed.
template <class T>
index_t unload(nn::Module<T>& model) {
  index_t n = 0;
  for (auto& l : detail::unique_linears(model)) {
    std::vector<const nn::Attachable*> gone;
    detail::for_each_adapter(*l.second, [&](nn::Attachable& a, auto&) { gone.push_back(&a); });
    for (auto* a : gone) n += l.second->remove(a) ? 1 : 0;
  }
  return n;
}

/// Bakes every adapter of `model` into its layer's weight and removes it: a thin wrapper over
/// nn::fold(model, all, adapters_only, require_all) (nn/fold.hpp). Merged adapters are removed (their
/// delta is in the weight already); quantisers and masks stay and re-quantise the merged weight.
/// ConfigError (model unchanged) when an adapter cannot be folded (under a compander or another
/// general weight map); ValueError with o.safe for NaN/Inf. Returns the number of adapters folded.
/// Call nn::fold directly for the report (re-quantisation errors).
template <class T>
index_t merge_and_unload(nn::Module<T>& model, const MergeOptions& o = {}) {
  nn::FoldOptions fo;
  fo.adapters_only = true;
  fo.safe = o.safe;
  fo.require_all = true;
  fo.caller = "peft::merge_and_unload";
  return index_t(nn::fold(model, nn::Selector<T>(), fo).folded.size());
}

/// Replaces every unmerged PiSSA / OLoRA adapter of `model` by its plain rank-2r LoRA
/// (Lora::to_plain_lora) and restores the layer's original weight W = W_res + s B0 A0, so the
/// model computes the same function on the pretrained weights. Returns how many were converted.
template <class T>
index_t convert_to_lora(nn::Module<T>& model) {
  const char* fn = "peft::convert_to_lora";
  struct Plan {
    nn::Linear<T>* layer;
    Tensor<T> w;
    std::vector<std::shared_ptr<nn::SidePath<T>>> side;
  };
  std::vector<Plan> plans;
  index_t n = 0;
  for (auto& l : detail::unique_linears(model)) {
    nn::Linear<T>& lin = *l.second;
    Plan p{&lin, Tensor<T>(), lin.side_paths()};
    for (auto& s : p.side) {
      auto* lo = dynamic_cast<Lora<T>*>(s.get());
      if (!lo || !lo->residual_base()) continue;
      WEFT_CHECK(!lo->merged(), config, fn, "expected unmerged adapters, got a merged ", lo->method(), " on layer '",
                 l.first, "'; unmerge first");
      const std::string blocker = detail::blocking_transform(lin);
      WEFT_CHECK(blocker.empty(), config, fn, "expected no weight transform other than merged adapters on layer '",
                 l.first, "', got '", blocker, "'");
      if (!p.w.defined()) p.w = lin.weight.value().clone();
      p.w.array() += detail::lora_delta(lo->initial_A(), lo->initial_B(), lo->scaling()).array();
      s = lo->to_plain_lora();
      ++n;
    }
    if (p.w.defined()) plans.push_back(std::move(p));
  }
  for (auto& p : plans) {
    p.layer->weight.value().copy_from(p.w);
    p.layer->clear_side_paths();
    for (auto& s : p.side) p.layer->add_side_path(s);
  }
  return n;
}

}  // namespace weft::peft
