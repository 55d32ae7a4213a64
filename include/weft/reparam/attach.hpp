// weft/reparam/attach.hpp - the compander on a whole model: attach to every Linear, train with
// the spec's weight-decay and (a, b) conventions, report, and fold back to plain weights.
//
//   auto att = reparam::attach_compander(model);              // every Linear; v = inverse(w0)
//   nn::SGDOptions so;  so.lr = 0.05;  so.momentum = 0.9;  so.weight_decay = 1e-4;
//   nn::SGD<float> opt = reparam::compander_sgd(model, att, so);
//   ... train ...
//   reparam::fold_compander(model);                           // plain weights w = Psi(v)
//
// Conventions (spec, Sec. 1-2; CompanderOptions::decay_on = DecayOn::automatic):
// - fixed (a, b): weight decay acts on w = Psi(v): lambda Psi(v) Psi'(v) is added to dL/dv by a
//   pre-step hook (the penalty (lambda / 2) ||Psi(v)||^2, SGD's convention), and v's parameter
//   group has weight decay 0;
// - learnable (a, b): weight decay acts on v only (v's group keeps the optimiser's decay), not
//   on Psi(v) and not on (a, b); (a, b) form a group with learning rate multiplier x base rate
//   and weight decay 0, and a post-step hook clamps them to >= floor;
// - DecayOn::w or DecayOn::v choose the target explicitly for either version;
// - everything else (biases, norms) keeps the optimiser's defaults.
// A compander is the first transform of its layer (it reads the stored v; TransformStage::reparam
// puts it there whatever the order of attachment). Composition with the OFQ quantisers is tested
// in tests/quant/compander_compose_test.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "weft/nn/attachment.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/module.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/select.hpp"
#include "weft/reparam/compander.hpp"
#include "weft/reparam/diagnostics.hpp"

namespace weft::reparam {

/// One Linear with a compander: its stored weight v and the compander.
template <class T>
struct CompandedLayer {
  std::string name;  ///< dotted name of the Linear in the model ("" for the model itself)
  Parameter<T> v;    ///< the Linear's `weight` parameter, now holding v
  std::shared_ptr<CompanderBase<T>> compander;
  index_t clamped = 0;  ///< weights clamped by the initial inverse
};

/// Per-layer diagnostics of a compander (CompanderAttachment::report).
struct CompanderLayerReport {
  std::string name;
  double a = 0, b = 0;
  double bound = 0;     ///< a * limit (a pi/2 for atan)
  index_t clamped = 0;  ///< weights clamped at initialisation
  WeightStats w;        ///< statistics of w = Psi(v)
};

/// What attach_compander returns: an nn::Attachment (technique "compander"; detach() removes
/// the companders and restores the weights w0 bit for bit, refused once v was trained: fold
/// instead) with the typed view `layers`, to build optimisers and reports from. It stays valid
/// until the model is folded (fold_compander).
template <class T>
struct CompanderAttachment : nn::Attachment<T> {
  using nn::Attachment<T>::Attachment;
  using Filter = std::function<bool(const std::string& name, const nn::Linear<T>& layer)>;
  std::vector<CompandedLayer<T>> layers;

  /// Weights clamped by the initial inverse, over all layers.
  index_t clamped() const {
    index_t c = 0;
    for (auto& l : layers) c += l.clamped;
    return c;
  }
  /// a, b, bound, clamps and weight statistics of w = Psi(v) for every layer.
  std::vector<CompanderLayerReport> report(double near_zero = 1e-2) const {
    std::vector<CompanderLayerReport> out;
    for (auto& l : layers) {
      CompanderLayerReport r;
      r.name = l.name;
      r.a = double(l.compander->a());
      r.b = double(l.compander->b());
      r.bound = l.compander->bound();
      r.clamped = l.clamped;
      r.w = weight_stats(l.compander->fold(l.v.value()), near_zero);
      out.push_back(std::move(r));
    }
    return out;
  }
};

/// Attaches a Compander<T, Psi> with options `o` to every nn::Linear of `model` that `select`
/// picks (nn/select.hpp; all by default), setting each stored weight to v = inverse(w0) so the
/// model computes the same function. Biases are not reparameterised. The compander goes first
/// in each layer's transform chain (TransformStage::reparam) whether a quantiser or a mask is
/// attached already or later; a layer with a compander already, or with a transform that needs
/// the plain weight (BoneAffine), is an error. Everything is checked before any layer changes.
template <class Psi = AtanPsi, class T>
CompanderAttachment<T> attach_compander(nn::Module<T>& model, const CompanderOptions& o = {},
                                        const nn::SelectorArg<T>& select = {}) {
  const char* fn = "reparam::attach_compander";
  const auto sel = select.resolve(model, fn);
  std::vector<std::shared_ptr<Compander<T, Psi>>> cs;
  std::vector<InverseResult<T>> inv;
  for (auto& l : sel) {
    nn::Linear<T>& lin = *l.second;
    WEFT_CHECK(lin.weight.defined(), config, fn, "expected constructed layers, got an empty Linear '", l.first, "'");
    cs.push_back(std::make_shared<Compander<T, Psi>>(o));
    lin.check_transform(*cs.back(), fn);
    inv.push_back(cs.back()->inverse(lin.weight.value()));
  }
  CompanderAttachment<T> att("compander");
  for (std::size_t i = 0; i < sel.size(); ++i) {
    nn::Linear<T>& lin = *sel[i].second;
    Tensor<T> before = lin.weight.value().clone();
    lin.weight.value().copy_from(inv[i].v);
    lin.add_transform(cs[i]);
    att.record(sel[i].first, lin, std::shared_ptr<nn::WeightTransform<T>>(cs[i]), std::move(before));
    att.layers.push_back(CompandedLayer<T>{sel[i].first, lin.weight, cs[i], inv[i].clamped});
  }
  att.seal();
  return att;
}

/// Folds every Linear of `model` whose first transform is a compander (TransformStage::reparam;
/// nn::Linear::fold: the whole enabled chain is baked into the stored weight and removed; side
/// paths stay, use nn::fold to bake those too). Returns the number of layers folded. Attachments
/// of the model are stale afterwards.
template <class T>
index_t fold_compander(nn::Module<T>& model) {
  index_t n = 0;
  for (auto& l : find_linears(model)) {
    nn::Linear<T>& lin = *l.second;
    if (!lin.transforms().empty() && lin.transforms()[0]->stage() == nn::TransformStage::reparam) {
      lin.fold();
      ++n;
    }
  }
  return n;
}

/// Parameter groups for an optimiser with base learning rate `lr` and weight decay
/// `weight_decay` (pass the same values to the optimiser): "compander.v.decay_w", the v's whose
/// decay acts on Psi(v), with decay 0 (add_compander_hooks applies theirs); "compander.v.decay_v"
/// with the default decay; "compander.ab.<layer>", each learnable layer's (a, b) with lr x
/// multiplier and decay 0; "rest", every other parameter of the model with the defaults. Empty
/// groups are left out.
template <class T>
std::vector<nn::ParamGroup<T>> compander_param_groups(nn::Module<T>& model, const CompanderAttachment<T>& att,
                                                      double lr, double weight_decay) {
  const char* fn = "reparam::compander_param_groups";
  WEFT_CHECK(lr >= 0 && std::isfinite(lr) && weight_decay >= 0 && std::isfinite(weight_decay), value, fn,
             "expected finite lr >= 0 and weight_decay >= 0, got ", lr, " and ", weight_decay);
  const std::vector<Parameter<T>> all = model.parameters();
  auto in_model = [&](const Parameter<T>& p) {
    for (auto& q : all)
      if (q == p) return true;
    return false;
  };
  nn::ParamGroup<T> decay_w, decay_v, rest;
  decay_w.name = "compander.v.decay_w";
  decay_w.weight_decay = 0.0;
  decay_v.name = "compander.v.decay_v";
  rest.name = "rest";
  std::vector<nn::ParamGroup<T>> ab;
  std::unordered_set<const void*> taken;
  for (auto& l : att.layers) {
    WEFT_CHECK(l.compander && in_model(l.v), config, fn, "expected the attachment's layers to belong to the model, got '",
               l.name, "' outside it");
    (l.compander->decay_on_w() ? decay_w : decay_v).params.push_back(l.v);
    taken.insert(l.v.id());
    if (l.compander->learnable()) {
      nn::ParamGroup<T> g;
      g.name = "compander.ab." + l.name;
      g.params = {l.compander->a_param(), l.compander->b_param()};
      g.lr = lr * l.compander->options().ab_lr_multiplier;
      g.weight_decay = 0.0;
      for (auto& p : g.params) taken.insert(p.id());
      ab.push_back(std::move(g));
    }
  }
  for (auto& p : all)
    if (!taken.count(p.id())) rest.params.push_back(p);
  std::vector<nn::ParamGroup<T>> out;
  for (auto* g : {&decay_w, &decay_v})
    if (!g->params.empty()) out.push_back(std::move(*g));
  for (auto& g : ab) out.push_back(std::move(g));
  if (!rest.params.empty()) out.push_back(std::move(rest));
  return out;
}

/// Installs the compander's optimiser hooks on `opt`: before each step, weight decay
/// `weight_decay` on w = Psi(v) for the layers whose decay acts on w (lambda Psi(v) Psi'(v)
/// added to v's gradient); after each step, the floor clamp of learnable (a, b). The hooks hold
/// copies of the attachment's handles (no reference to `att`); the returned group removes them
/// when destroyed (release() it to keep them for the optimiser's lifetime).
template <class T>
nn::HookGroup add_compander_hooks(nn::Optimizer<T>& opt, const CompanderAttachment<T>& att, double weight_decay) {
  WEFT_CHECK(weight_decay >= 0 && std::isfinite(weight_decay), value, "reparam::add_compander_hooks",
             "expected a finite weight_decay >= 0, got ", weight_decay);
  std::vector<CompandedLayer<T>> on_w, learn;
  for (auto& l : att.layers) {
    if (l.compander->decay_on_w()) on_w.push_back(l);
    if (l.compander->learnable()) learn.push_back(l);
  }
  nn::HookGroup hooks;
  if (!on_w.empty() && weight_decay > 0)
    hooks.add(opt.add_pre_step_hook([on_w, weight_decay](nn::Optimizer<T>&) mutable {  // mutable: grads are written
      for (auto& l : on_w)
        if (l.v.requires_grad())
          l.compander->add_decay_gradient(l.v.value().data(), l.v.grad().data(), l.v.numel(), weight_decay);
    }));
  if (!learn.empty())
    hooks.add(opt.add_post_step_hook([learn](nn::Optimizer<T>&) {
      for (auto& l : learn) l.compander->clamp_to_floor();
    }));
  return hooks;
}

/// SGD over the whole model with the compander's groups and hooks (o.lr, o.weight_decay as the
/// base rate and decay). The hooks capture only copies of handles, so they stay installed for the
/// optimiser's lifetime (released handles).
template <class T>
nn::SGD<T> compander_sgd(nn::Module<T>& model, const CompanderAttachment<T>& att, const nn::SGDOptions& o = {}) {
  nn::SGD<T> opt(compander_param_groups(model, att, o.lr, o.weight_decay), o);
  add_compander_hooks(opt, att, o.weight_decay).release();
  return opt;
}

}  // namespace weft::reparam
