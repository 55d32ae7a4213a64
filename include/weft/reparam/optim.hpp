// weft/reparam/optim.hpp - CompanderAdam: Adam that sees the compander's gradient rescaling.
//
// Adam divides by the root of the second moment, which cancels the factor Psi'(v) in
// dL/dv = dL/dw Psi'(v): plain Adam on v loses what the compander does. The paper (Sec. III)
// therefore uses the modified optimiser of Powerpropagation (Schwarz et al., NeurIPS 2021): the
// adaptive step is computed from the raw gradient g_w = dL/dw (Adam moments on g_w) and then
// multiplied by Psi'(v):
//   g_w = (dL/dv + l2 v) / Psi'(v)
//   m = b1 m + (1 - b1) g_w,   s = b2 s + (1 - b2) g_w^2
//   v -= lr Psi'(v) mhat / (sqrt(shat) + eps)
// (g_w is taken as 0 where Psi'(v) underflows to 0). Parameters that are not the v of a
// compander (biases, learnable (a, b)) get the plain Adam update. Weight decay is L2 added to
// the gradient (AdamOptions::weight_decay, or a group's); with compander_param_groups and
// add_compander_hooks it follows the spec's conventions (on Psi(v) for fixed (a, b): the hook
// adds lambda Psi Psi' to dL/dv, which is lambda w in g_w).
//
//   auto att = reparam::attach_compander(model);
//   reparam::CompanderAdam<float> opt = reparam::compander_adam(model, att, adam_options);
#pragma once

#include <cmath>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "weft/core/ops/optim.hpp"
#include "weft/nn/optim.hpp"
#include "weft/reparam/attach.hpp"
#include "weft/reparam/kernels.hpp"

WEFT_NAMESPACE_BEGIN
namespace reparam {

template <class T>
class CompanderAdam : public nn::Adam<T> {
 public:
  /// groups: any parameter groups (e.g. compander_param_groups); the v's of `att`'s layers get
  /// the compander-aware update, every other parameter plain Adam (L2 weight decay, coupled).
  CompanderAdam(std::vector<nn::ParamGroup<T>> groups, const CompanderAttachment<T>& att,
                const nn::AdamOptions& o = {})
      : nn::Adam<T>(std::move(groups), o, false, "reparam::CompanderAdam") {
    for (auto& l : att.layers) companders_[l.v.id()] = Entry{l.v, l.compander};
  }
  CompanderAdam(std::vector<Parameter<T>> params, const CompanderAttachment<T>& att, const nn::AdamOptions& o = {})
      : CompanderAdam(nn::single_group(std::move(params)), att, o) {}

  /// The number of parameters that get the compander-aware update.
  std::size_t companded() const noexcept { return companders_.size(); }

 protected:
  /// Psi'(v) for a compander's v (nn::Adam then takes the scaled step), nullptr for the rest.
  const T* element_scale(Parameter<T>& p) override {
    auto it = companders_.find(p.id());
    if (it == companders_.end()) return nullptr;
    scratch_.resize(std::size_t(p.numel()));
    it->second.compander->derivative(p.value().data(), scratch_.data(), p.numel());
    return scratch_.data();
  }

 private:
  struct Entry {
    Parameter<T> v;  // keeps the key's parameter alive, so its address cannot be reused
    std::shared_ptr<CompanderBase<T>> compander;
  };
  std::unordered_map<const void*, Entry> companders_;
  std::vector<T> scratch_;
};

/// CompanderAdam over the whole model with the compander's groups and hooks (o.lr,
/// o.weight_decay as the base rate and L2 decay). The hooks capture copies of handles only and
/// stay installed for the optimiser's lifetime.
template <class T>
CompanderAdam<T> compander_adam(nn::Module<T>& model, const CompanderAttachment<T>& att,
                                const nn::AdamOptions& o = {}) {
  CompanderAdam<T> opt(compander_param_groups(model, att, o.lr, o.weight_decay), att, o);
  add_compander_hooks(opt, att, o.weight_decay).release();  // the hooks hold copies only
  return opt;
}

}  // namespace reparam
WEFT_NAMESPACE_END
