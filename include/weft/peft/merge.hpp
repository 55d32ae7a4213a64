// weft/peft/merge.hpp - folding the adapters of an attachment record into their base weights and
// back, the PiSSA/OLoRA -> LoRA conversion, and removing every adapter of a model.
//
//   auto att = peft::attach_lora(model, lo, rng, {"q_proj", "v_proj"});
//   peft::merge(att);                // W <- W' for every unmerged adapter of att; merged ones add nothing
//   peft::merge(att, {true});        // safe: refuse (ValueError) if any merged weight has NaN/Inf
//   peft::unmerge(att);              // back, exact up to rounding
//   peft::convert_to_lora(pissa);    // PiSSA/OLoRA -> rank-2r LoRA on the restored original W
//   peft::merge_and_unload(model);   // = nn::fold(model, all, adapters_only): bake and remove
//   peft::unload(model);             // remove every adapter without merging (PiSSA/OLoRA leave W_res!)
// merge / unmerge / convert_to_lora act on the adapters of one record (what attach_* returned:
// its typed view `adapters`), never on objects found by type. To undo an attachment exactly
// (PiSSA/OLoRA bases restored too), detach its record (nn::Attachment::detach); to bake it,
// merge_and_unload or nn::fold.
// merge / unmerge are the reversible merge (PEFT's merge_adapter / unmerge_adapter): the adapter
// stays attached and adds nothing while merged (nn::Attachable::in_weight). Unmerge before
// detaching a record: a merged adapter's delta lives in the weight, and a plain LoRA's record has
// no snapshot of the weight to restore (only PiSSA / OLoRA records do).
// merge_and_unload is a thin wrapper over the one fold (nn/fold.hpp) with adapters_only: on a
// quantised base the delta goes into the stored float weight, the quantiser stays and
// re-quantises (nn::fold's report gives the re-quantisation error); only a compander or another
// general weight map under the adapter still makes it a ConfigError.
// Order within a layer (several records may adapt one layer): a BoneAffine transform merges only
// when every transform before it in the chain is a merged adapter and no side path of the layer
// is merged; a side path (LoRA family, BoneShared, MissMini) merges only when every weight
// transform of the layer is a merged adapter (a delta cannot be folded under a quantiser or a
// compander) and the layer has no input transform (the path reads the raw input). unmerge goes
// the other way: a BoneAffine unmerges only when no side path and no later transform of its layer
// is merged. So merge the BoneAffine records first and unmerge them last.
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

WEFT_NAMESPACE_BEGIN
namespace peft {

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

/// Name of the first weight transform of `layer` whose effect is not in the stored weight
/// (anything but a merged adapter); "" if none.
template <class T>
std::string blocking_transform(const nn::Linear<T>& layer) {
  for (auto& t : layer.transforms())
    if (!t->in_weight()) return t->name();
  return {};
}

/// The record's adapters grouped by layer, in first-appearance order.
template <class T>
std::vector<std::vector<const AttachedAdapter<T>*>> by_layer(const Attachment<T>& rec) {
  std::vector<std::vector<const AttachedAdapter<T>*>> out;
  for (auto& a : rec.adapters) {
    bool put = false;
    for (auto& g : out)
      if (!put && g.front()->layer == a.layer) {
        g.push_back(&a);
        put = true;
      }
    if (!put) out.push_back({&a});
  }
  return out;
}
/// The record's adapter attached to its layer as `obj` (null when `obj` is not one of them).
template <class T>
const AttachedAdapter<T>* find_in(const std::vector<const AttachedAdapter<T>*>& group, const nn::Attachable* obj) {
  for (auto* a : group)
    if (a->object == obj) return a;
  return nullptr;
}

/// Checks that the record is attached and each of its adapters is still on its layer.
template <class T>
void check_record(const Attachment<T>& rec, const char* fn) {
  WEFT_CHECK(rec.attached(), config, fn, "expected an attached ", rec.describe(), " record, got one detached");
  for (auto& a : rec.adapters)
    WEFT_CHECK(a.layer && a.adapter && a.object && a.layer->holds(a.object), config, fn, "expected the ",
               a.adapter ? a.adapter->method() : std::string("?"), " adapter of ", rec.describe(), " on layer '",
               a.layer_name, "', got it no longer attached (folded or unloaded?)");
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

/// Merges every unmerged adapter of the record `rec` into its layer's weight: per layer, its
/// weight transforms in chain order, then its side paths (see the file comment for the rules).
/// Returns how many.
template <class T>
index_t merge(const Attachment<T>& rec, const MergeOptions& o = {}) {
  const char* fn = "peft::merge";
  detail::check_record(rec, fn);
  std::vector<detail::LayerPlan<T>> plans;
  for (auto& group : detail::by_layer(rec)) {
    nn::Linear<T>& lin = *group.front()->layer;
    const std::string& name = group.front()->layer_name;
    detail::LayerPlan<T> p;
    p.layer = &lin;
    p.w = lin.weight.value().clone();
    std::vector<const nn::Attachable*> now;  // merged by this call
    auto in_weight = [&](const nn::Attachable* a) {
      for (auto* n : now)
        if (n == a) return true;
      return a->in_weight();
    };
    std::string blocker;  // the first transform whose effect is not (or will not be) in the weight
    for (auto& t : lin.transforms()) {
      const AttachedAdapter<T>* aa = detail::find_in(group, t.get());
      if (aa && !aa->adapter->merged()) {
        WEFT_CHECK(blocker.empty(), config, fn, "expected only merged adapters before the ", aa->adapter->method(),
                   " transform of layer '", name, "', got the transform '", blocker, "'; nothing was merged");
        for (auto& s : lin.side_paths())
          WEFT_CHECK(!s->in_weight(), config, fn, "expected no merged side path on layer '", name, "' under its ",
                     aa->adapter->method(), " transform, got the merged '", s->name(), "'; unmerge it first; nothing was merged");
        aa->adapter->merge_into(p.w);
        p.changed.push_back(aa->adapter.get());
        now.push_back(t.get());
      }
      if (blocker.empty() && !in_weight(t.get())) blocker = t->name();
    }
    for (auto& s : lin.side_paths()) {
      const AttachedAdapter<T>* aa = detail::find_in(group, s.get());
      if (!aa || aa->adapter->merged()) continue;
      WEFT_CHECK(blocker.empty(), config, fn, "expected no weight transform other than merged adapters on layer '", name,
                 "' to merge its ", aa->adapter->method(), " side path into, got '", blocker, "'; nothing was merged");
      WEFT_CHECK(lin.input_transforms().empty(), config, fn, "expected no input transform on layer '", name,
                 "' to merge its ", aa->adapter->method(), " side path (it reads the raw input), got '",
                 lin.input_transforms().empty() ? std::string() : lin.input_transforms().front()->name(),
                 "'; nothing was merged");
      aa->adapter->merge_into(p.w);
      p.changed.push_back(aa->adapter.get());
    }
    if (p.changed.empty()) continue;
    if (o.safe)
      WEFT_CHECK(p.w.all_finite(), value, fn, "refused to merge into layer '", name,
                 "': the merged weight has NaN or Inf; no weight was changed");
    plans.push_back(std::move(p));
  }
  return detail::commit(plans, true);
}

/// Unmerges every merged adapter of the record `rec`: per layer, its side paths in reverse
/// order, then its weight transforms in reverse chain order (see the file comment). Returns how
/// many.
template <class T>
index_t unmerge(const Attachment<T>& rec) {
  const char* fn = "peft::unmerge";
  detail::check_record(rec, fn);
  std::vector<detail::LayerPlan<T>> plans;
  for (auto& group : detail::by_layer(rec)) {
    nn::Linear<T>& lin = *group.front()->layer;
    const std::string& name = group.front()->layer_name;
    detail::LayerPlan<T> p;
    p.layer = &lin;
    p.w = lin.weight.value().clone();
    std::vector<const nn::Attachable*> now;  // unmerged by this call
    auto merged_now = [&](const nn::Attachable* a) {
      for (auto* n : now)
        if (n == a) return false;
      return a->in_weight();
    };
    const auto& sp = lin.side_paths();
    for (auto it = sp.rbegin(); it != sp.rend(); ++it) {
      const AttachedAdapter<T>* aa = detail::find_in(group, it->get());
      if (!aa || !aa->adapter->merged()) continue;
      aa->adapter->unmerge_from(p.w);
      p.changed.push_back(aa->adapter.get());
      now.push_back(it->get());
    }
    std::string later;  // the last merged object after the current transform that this call leaves merged
    for (auto& s : sp)
      if (later.empty() && merged_now(s.get())) later = s->name();
    const auto& tr = lin.transforms();
    for (auto it = tr.rbegin(); it != tr.rend(); ++it) {
      const AttachedAdapter<T>* aa = detail::find_in(group, it->get());
      if (aa && aa->adapter->merged()) {
        WEFT_CHECK(later.empty(), config, fn, "expected nothing merged after the ", aa->adapter->method(),
                   " transform of layer '", name, "', got the merged '", later, "'; unmerge it first; nothing was unmerged");
        aa->adapter->unmerge_from(p.w);  // BoneAffine: ValueError if I + B_a is singular (on the copy)
        p.changed.push_back(aa->adapter.get());
        now.push_back(it->get());
      }
      if (later.empty() && merged_now(it->get())) later = (*it)->name();
    }
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

/// Replaces every unmerged PiSSA / OLoRA adapter of the record `rec` by its plain rank-2r LoRA
/// (Lora::to_plain_lora) and restores the layer's original weight W = W_res + s B0 A0, so the
/// model computes the same function on the pretrained weights. The record follows: its adapters
/// (and entries) are the new LoRAs, and detach() still restores the weight as it was before
/// attach, bit for bit. Returns how many were converted.
template <class T>
index_t convert_to_lora(Attachment<T>& rec) {
  const char* fn = "peft::convert_to_lora";
  detail::check_record(rec, fn);
  struct Plan {
    AttachedAdapter<T>* aa;
    Tensor<T> w;
    std::shared_ptr<Lora<T>> plain;
  };
  std::vector<Plan> plans;
  for (auto& aa : rec.adapters) {
    const std::shared_ptr<Lora<T>>& lo = aa.lora;
    if (!lo || !lo->residual_base()) continue;
    WEFT_CHECK(!lo->merged(), config, fn, "expected unmerged adapters, got a merged ", lo->method(), " on layer '",
               aa.layer_name, "'; unmerge first");
    const std::string blocker = detail::blocking_transform(*aa.layer);
    WEFT_CHECK(blocker.empty(), config, fn, "expected no weight transform other than merged adapters on layer '",
               aa.layer_name, "', got '", blocker, "'");
    Tensor<T> w = aa.layer->weight.value().clone();
    w.array() += detail::lora_delta(lo->initial_A(), lo->initial_B(), lo->scaling()).array();
    plans.push_back(Plan{&aa, std::move(w), lo->to_plain_lora()});
  }
  for (auto& p : plans) {
    nn::Linear<T>& lin = *p.aa->layer;
    std::vector<std::shared_ptr<nn::SidePath<T>>> side = lin.side_paths();
    for (auto& s : side)
      if (s.get() == p.aa->object) s = p.plain;
    lin.weight.value().copy_from(p.w);
    lin.clear_side_paths();
    for (auto& s : side) lin.add_side_path(s);
    rec.replace(p.aa->object, p.plain);
    p.aa->adapter = p.plain;
    p.aa->lora = p.plain;
    p.aa->object = p.plain.get();
  }
  return index_t(plans.size());
}

}  // namespace peft
WEFT_NAMESPACE_END
