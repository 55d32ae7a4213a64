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

namespace weft::reparam {

template <class T>
class CompanderAdam : public nn::Optimizer<T> {
 public:
  /// groups: any parameter groups (e.g. compander_param_groups); the v's of `att`'s layers get
  /// the compander-aware update, every other parameter plain Adam.
  CompanderAdam(std::vector<nn::ParamGroup<T>> groups, const CompanderAttachment<T>& att,
                const nn::AdamOptions& o = {})
      : nn::Optimizer<T>(std::move(groups), o.lr, o.weight_decay, "reparam::CompanderAdam"), o_(o) {
    WEFT_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1 && o.eps > 0, value,
               "reparam::CompanderAdam", "expected betas in [0, 1) and eps > 0, got ", o.beta1, ", ", o.beta2,
               ", ", o.eps);
    for (auto& l : att.layers) companders_[l.v.id()] = Entry{l.v, l.compander};
  }
  CompanderAdam(std::vector<Parameter<T>> params, const CompanderAttachment<T>& att, const nn::AdamOptions& o = {})
      : CompanderAdam(nn::single_group(std::move(params)), att, o) {}

  /// The number of parameters that get the compander-aware update.
  std::size_t companded() const noexcept { return companders_.size(); }

 protected:
  void update() override {
    for (std::size_t g = 0; g < this->groups().size(); ++g) {
      ops::AdamStep s{};
      s.lr = this->group_lr(g);
      s.beta1 = o_.beta1;
      s.beta2 = o_.beta2;
      s.eps = o_.eps;
      s.l2 = this->group_weight_decay(g);
      s.decoupled = 0.0;
      for (auto& p : this->groups()[g].params) {
        if (!p.requires_grad()) continue;
        const double t = double(++this->param_steps(p));
        s.bias1 = 1 - std::pow(o_.beta1, t);
        s.bias2 = 1 - std::pow(o_.beta2, t);
        T* m = this->state(p, 0).data();
        T* v2 = this->state(p, 1).data();
        auto it = companders_.find(p.id());
        if (it == companders_.end()) {
          ops::adam_update(p.value().data(), p.grad().data(), m, v2, p.numel(), s);
          continue;
        }
        scratch_.resize(std::size_t(p.numel()));
        it->second.compander->derivative(p.value().data(), scratch_.data(), p.numel());
        ops::adam_update_scaled(p.value().data(), p.grad().data(), scratch_.data(), m, v2, p.numel(), s);
      }
    }
  }

 private:
  struct Entry {
    Parameter<T> v;  // keeps the key's parameter alive, so its address cannot be reused
    std::shared_ptr<CompanderBase<T>> compander;
  };
  nn::AdamOptions o_;
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

}  // namespace weft::reparam
