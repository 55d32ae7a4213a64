// weft/nn/fold.hpp - nn::fold: bake attachments into plain weights (one folding path for every
// family; peft::merge_and_unload and reparam::fold_compander are wrappers of it).
//
//   nn::FoldReport r = nn::fold(model);             // every selected Linear, everything foldable
//   std::cout << r.to_string();                     // what was folded, what stays and why
//   nn::FoldOptions fo;  fo.adapters_only = true;
//   nn::fold(model, {}, fo);                        // merge adapters only, keep quantisers / masks
//
// Per selected layer (its enabled attachments; disabled ones stay attached and are listed):
//   - weight transforms are folded through their fold() in chain order (a quantiser becomes
//     its quantised values, a compander Psi(v), a mask W * M, BoneAffine W (I + B) + B);
//   - linear side paths (SidePath::is_linear: the LoRA family, BoneShared, MissMini) add their
//     linear_delta() dW to the folded weight: y = x W'^T + x dW^T = x (W' + dW)^T;
//   - input transforms (activation quantisers), output adapters (PHM / bottleneck adapters) and
//     non-linear side paths cannot be folded: they stay and the report says why. A side path on
//     a layer that transforms its input stays too (it reads the raw input, the product the
//     transformed one).
// With adapters_only, only adapters (Attachable::is_adapter) are folded; the layer's other
// transforms stay. Side-path deltas are then added to the stored ("float shadow") weight under
// a kept quantiser or mask, which re-quantises: the report gives, per layer, the relative
// Frobenius error ||K(W + dW) - (K(W) + dW)||_F / ||K(W) + dW||_F, K being the kept chain. Under a
// kept compander or general weight map (the stored weight is not the weight) an adapter cannot be
// merged: it stays, with that reason (or a ConfigError with require_all).
// Every layer is planned on copies first; the model changes only when nothing threw. Records of
// folded objects are stale afterwards (their detach() refuses). detach = undo, fold = bake.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/select.hpp"

namespace weft::nn {

struct FoldOptions {
  bool adapters_only = false;  ///< fold adapters only; quantisers, masks and companders stay
  bool safe = false;           ///< refuse (ValueError, model unchanged) a folded weight with NaN or Inf
  /// ConfigError (model unchanged) when an enabled candidate weight transform or side path cannot
  /// be folded (input transforms and output adapters are never folded and never make it throw).
  bool require_all = false;
  const char* caller = "nn::fold";  ///< the function named in errors
};

/// One attachment in a fold report.
struct FoldItem {
  std::string layer;   ///< dotted layer name
  std::string object;  ///< the object's name ("lora", "statsq", ...)
  std::string slot;    ///< "weight transform", "side path", "input transform", "output adapter"
  std::string reason;  ///< empty when folded; else why it stayed
};
/// A layer whose adapters were merged under a kept quantiser / mask.
struct RequantError {
  std::string layer;
  double relative_error = 0;  ///< ||K(W + dW) - (K(W) + dW)||_F / ||K(W) + dW||_F
};
struct FoldReport {
  std::vector<FoldItem> folded, kept;
  std::vector<RequantError> requantized;
  /// Every fold and every kept object with its reason, one per line.
  std::string to_string() const {
    std::string s;
    for (auto& f : folded) s += "folded " + f.slot + " '" + f.object + "' of '" + f.layer + "'\n";
    for (auto& k : kept) s += "kept   " + k.slot + " '" + k.object + "' of '" + k.layer + "': " + k.reason + "\n";
    char buf[64];
    for (auto& r : requantized) {
      std::snprintf(buf, sizeof buf, "%.3e", r.relative_error);
      s += "re-quantised '" + r.layer + "': relative error " + buf + "\n";
    }
    return s;
  }
};

namespace detail {
template <class T>
struct FoldPlan {
  Linear<T>* layer = nullptr;
  Tensor<T> w;
  std::vector<const Attachable*> remove;
};

template <class T>
double relative_frobenius(const Tensor<T>& a, const Tensor<T>& b) {
  double num = 0, den = 0;
  for (index_t i = 0; i < a.numel(); ++i) {
    const double d = double(a.flat(i)) - double(b.flat(i));
    num += d * d;
    den += double(b.flat(i)) * double(b.flat(i));
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

/// Plans the fold of one layer into `p` and the report (see the file comment).
template <class T>
void plan_fold(const std::string& name, Linear<T>& l, const FoldOptions& o, FoldPlan<T>& p, FoldReport& rep) {
  auto keep = [&](const std::string& obj, Slot s, std::string why, bool can_throw = true) {
    WEFT_CHECK(!o.require_all || !can_throw, config, o.caller, "expected every ", o.adapters_only ? "adapter" : "attachment",
               " of the selection to be foldable, got the ", to_string(s), " '", obj, "' of layer '", name, "': ", why,
               "; nothing was folded");
    rep.kept.push_back(FoldItem{name, obj, to_string(s), std::move(why)});
  };
  auto done = [&](const std::string& obj, Slot s, const Attachable* a) {
    rep.folded.push_back(FoldItem{name, obj, to_string(s), {}});
    p.remove.push_back(a);
  };
  // weight transforms: a folded prefix (adapters_only: the leading adapters), the rest kept
  Tensor<T> w = l.weight.value().clone();
  std::vector<WeightTransform<T>*> kept_chain;
  std::string blocker;  // a kept transform under which nothing can be merged
  for (auto& t : l.transforms()) {
    if (!t->enabled()) {
      if (t->is_adapter() || !o.adapters_only) keep(t->name(), Slot::transform, "disabled", false);
      continue;
    }
    if (!o.adapters_only || (t->is_adapter() && kept_chain.empty())) {
      w = t->fold(w);
      done(t->name(), Slot::transform, t.get());
      continue;
    }
    if (t->is_adapter()) {
      keep(t->name(), Slot::transform, "it follows '" + kept_chain.back()->name() + "', which stays");
      continue;
    }
    kept_chain.push_back(t.get());
    const TransformStage st = t->stage();
    if (blocker.empty() && st != TransformStage::quantizer && st != TransformStage::mask) blocker = t->name();
  }
  bool any_input = false;
  for (auto& it : l.input_transforms()) {
    if (!it->enabled()) continue;
    any_input = true;
    if (!o.adapters_only || it->is_adapter()) keep(it->name(), Slot::input, "it transforms activations, not the weight", false);
  }
  Tensor<T> delta;
  for (auto& s : l.side_paths()) {
    if (o.adapters_only && !s->is_adapter()) continue;
    if (!s->enabled()) keep(s->name(), Slot::side, "disabled", false);
    else if (!s->is_linear()) keep(s->name(), Slot::side, "not a linear path (no weight-shaped delta)");
    else if (any_input) keep(s->name(), Slot::side, "the layer transforms its input and the path reads the raw input");
    else if (!blocker.empty())
      keep(s->name(), Slot::side, "the stored weight goes through '" + blocker +
                                      "', which stays (not a quantiser or mask); fold the whole chain with nn::fold(model)");
    else {
      Tensor<T> d = s->linear_delta();
      WEFT_CHECK(d.defined() && d.shape() == w.shape(), shape, o.caller, "expected the side path '", s->name(),
                 "' of layer '", name, "' to give a delta of shape ", w.shape(), ", got ", d.defined() ? d.shape() : Shape{});
      if (!delta.defined()) delta = d.clone();
      else delta.array() += d.array();
      done(s->name(), Slot::side, s.get());
    }
  }
  for (auto& a : l.output_adapters())
    if (!o.adapters_only || a->is_adapter())
      keep(a->name(), Slot::output, a->enabled() ? "it maps the layer's output (not linear in the weight)" : "disabled",
           false);
  if (p.remove.empty()) return;
  Tensor<T> merged = w.clone();
  if (delta.defined()) merged.array() += delta.array();
  if (delta.defined() && !kept_chain.empty()) {  // re-quantisation error of the merge under the kept chain
    Tensor<T> kq = merged.clone(), ref = w.clone();
    for (auto* t : kept_chain) {
      kq = t->fold(kq);
      ref = t->fold(ref);
    }
    ref.array() += delta.array();
    rep.requantized.push_back(RequantError{name, relative_frobenius(kq, ref)});
  }
  if (o.safe)
    WEFT_CHECK(merged.all_finite(), value, o.caller, "refused to fold into layer '", name,
               "': the folded weight has NaN or Inf; no weight was changed");
  p.layer = &l;
  p.w = std::move(merged);
}
}  // namespace detail

/// Folds the attachments of the Linears `select` picks (all by default) into their weights; see
/// the file comment. Returns what was folded and what stayed.
template <class T>
FoldReport fold(Module<T>& model, const SelectorArg<T>& select = {}, const FoldOptions& o = {}) {
  FoldReport rep;
  std::vector<detail::FoldPlan<T>> plans;
  for (auto& l : select.resolve(model, o.caller)) {
    if (!l.second->weight.defined()) continue;
    detail::FoldPlan<T> p;
    detail::plan_fold(l.first, *l.second, o, p, rep);
    if (p.layer) plans.push_back(std::move(p));
  }
  for (auto& p : plans) {
    p.layer->weight.value().copy_from(p.w);
    for (auto* a : p.remove) p.layer->remove(a);
  }
  return rep;
}

}  // namespace weft::nn
