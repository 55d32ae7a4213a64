// weft/nn/optim.hpp - optimisers with parameter groups and step hooks: SGD, Adam, AdamW; and
// gradient clipping by global norm.
//
// Parameters are organised in groups; a group may override the learning rate and the weight
// decay (LoRA+ trains B with a larger rate than A this way). The effective learning rate of a
// group is its base rate times the optimiser's lr_factor, which a schedule sets each step, so
// ratios between groups survive any schedule.
//
// Hooks: pre-step hooks run before the update (after gradients are final), post-step hooks
// after it. Optimiser-side techniques plug in here: confidence-guided freezing zeroes
// gradients before and restores frozen values after the step, weight clipping and mask
// enforcement run after it. Parameters with requires_grad == false are not updated.
// add_pre_step_hook / add_post_step_hook return an nn::HookHandle (hooks.hpp) that removes the
// hook when destroyed: keep it as long as the hook should run (or release() it for a hook that
// captures only values). Optimisers move (their hooks and handles stay valid) but do not copy:
// a copy would run hooks whose owners only know the original.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "weft/core/autograd/parameter.hpp"
#include "weft/core/ops/optim.hpp"
#include "weft/nn/hooks.hpp"

namespace weft::nn {

template <class T>
struct ParamGroup {
  std::vector<Parameter<T>> params;
  std::optional<double> lr;            ///< overrides the optimiser's learning rate
  std::optional<double> weight_decay;  ///< overrides the optimiser's weight decay
  std::string name;
};

template <class T>
class Optimizer {
 public:
  using Hook = std::function<void(Optimizer&)>;
  virtual ~Optimizer() = default;

  /// One update of every trainable parameter from its current gradient.
  void step() {
    pre_hooks_.run(*this);
    update();
    ++steps_;
    post_hooks_.run(*this);
  }
  /// Clears the gradients of every parameter in every group.
  void zero_grad() {
    for (auto& g : groups_)
      for (auto& p : g.params) p.zero_grad();
  }

  std::vector<ParamGroup<T>>& groups() noexcept { return groups_; }
  const std::vector<ParamGroup<T>>& groups() const noexcept { return groups_; }
  /// Every parameter of every group.
  std::vector<Parameter<T>> parameters() const {
    std::vector<Parameter<T>> out;
    for (auto& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
    return out;
  }
  std::int64_t steps() const noexcept { return steps_; }

  double base_lr() const noexcept { return lr_; }
  void set_base_lr(double lr) {
    check_lr(lr, "nn::Optimizer::set_base_lr");
    lr_ = lr;
  }
  /// Multiplier applied to every group's learning rate (set by schedules; default 1).
  double lr_factor() const noexcept { return factor_; }
  void set_lr_factor(double f) {
    WEFT_CHECK(f >= 0 && std::isfinite(f), value, "nn::Optimizer::set_lr_factor", "expected a finite factor >= 0, got ", f);
    factor_ = f;
  }
  /// The learning rate group g uses in the next step.
  double group_lr(std::size_t g) const { return groups_.at(g).lr.value_or(lr_) * factor_; }
  double group_weight_decay(std::size_t g) const { return groups_.at(g).weight_decay.value_or(weight_decay_); }

  /// Runs h before every update (gradients are final); the handle removes it.
  [[nodiscard]] HookHandle add_pre_step_hook(Hook h) { return pre_hooks_.add(std::move(h)); }
  /// Runs h before every update and before the pre-step hooks installed so far (for a hook
  /// that makes the gradients final, as dist::DataParallel's all-reduce); the handle removes it.
  [[nodiscard]] HookHandle add_pre_step_hook_first(Hook h) { return pre_hooks_.add_front(std::move(h)); }
  /// Runs h after every update; the handle removes it.
  [[nodiscard]] HookHandle add_post_step_hook(Hook h) { return post_hooks_.add(std::move(h)); }
  std::size_t num_pre_step_hooks() const noexcept { return pre_hooks_.size(); }
  std::size_t num_post_step_hooks() const noexcept { return post_hooks_.size(); }

 protected:
  Optimizer(std::vector<ParamGroup<T>> groups, double lr, double weight_decay, const char* who)
      : groups_(std::move(groups)), lr_(lr), weight_decay_(weight_decay) {
    check_lr(lr, who);
    WEFT_CHECK(weight_decay >= 0 && std::isfinite(weight_decay), value, who,
               "expected a finite weight decay >= 0, got ", weight_decay);
    WEFT_CHECK(!groups_.empty(), config, who, "expected at least one parameter group, got none");
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      if (groups_[g].lr) check_lr(*groups_[g].lr, who);
      if (groups_[g].weight_decay)
        WEFT_CHECK(*groups_[g].weight_decay >= 0 && std::isfinite(*groups_[g].weight_decay), value, who,
                   "expected a finite weight decay >= 0 in group ", g, ", got ", *groups_[g].weight_decay);
      for (auto& p : groups_[g].params)
        WEFT_CHECK(p.defined(), config, who, "expected defined parameters, got an undefined one in group ", g);
    }
    check_distinct(who);
  }
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  Optimizer(Optimizer&&) = default;
  Optimizer& operator=(Optimizer&&) = default;
  virtual void update() = 0;

  /// State tensors per parameter, created zero on first use.
  Tensor<T>& state(const Parameter<T>& p, int slot) {
    ParamState& st = param_state(p);
    if (st.slots.size() <= std::size_t(slot)) st.slots.resize(std::size_t(slot) + 1);
    Tensor<T>& t = st.slots[std::size_t(slot)];
    if (!t.defined() || t.shape() != p.shape()) t = Tensor<T>(p.shape());
    return t;
  }
  /// Number of updates this parameter has received (0 before its first; PyTorch counts steps
  /// per parameter too, so a parameter unfrozen late starts its bias correction afresh).
  std::int64_t& param_steps(const Parameter<T>& p) { return param_state(p).steps; }

 private:
  /// At least one parameter, and none listed twice (it would be stepped twice per step()).
  void check_distinct(const char* who) const {
    std::unordered_map<const void*, std::size_t> seen;  // parameter -> its group
    for (std::size_t g = 0; g < groups_.size(); ++g)
      for (auto& p : groups_[g].params) {
        auto ins = seen.emplace(p.id(), g);
        WEFT_CHECK(ins.second, config, who, "expected each parameter once, got '", p.name(), "' in group ",
                   ins.first->second, " and again in group ", g);
      }
    WEFT_CHECK(!seen.empty(), config, who, "expected at least one parameter, got an empty list");
  }
  static void check_lr(double lr, const char* who) {
    WEFT_CHECK(lr >= 0 && std::isfinite(lr), value, who, "expected a finite learning rate >= 0, got ", lr);
  }
  std::vector<ParamGroup<T>> groups_;
  double lr_, weight_decay_;
  double factor_ = 1.0;
  std::int64_t steps_ = 0;
  HookList<Hook> pre_hooks_, post_hooks_;
  struct ParamState {
    Parameter<T> param;  // keeps the parameter alive, so its address cannot be reused as a key
    std::vector<Tensor<T>> slots;
    std::int64_t steps = 0;
  };
  ParamState& param_state(const Parameter<T>& p) {
    ParamState& st = state_[p.id()];
    if (!st.param.defined()) st.param = p;
    return st;
  }
  std::unordered_map<const void*, ParamState> state_;
};

/// One group holding `params` with the optimiser's defaults.
template <class T>
std::vector<ParamGroup<T>> single_group(std::vector<Parameter<T>> params) {
  std::vector<ParamGroup<T>> g(1);
  g[0].params = std::move(params);
  return g;
}

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;  ///< L2 added to the gradient
};

/// Stochastic gradient descent with momentum (PyTorch's formulation).
template <class T>
class SGD : public Optimizer<T> {
 public:
  SGD(std::vector<ParamGroup<T>> groups, const SGDOptions& o = {})
      : Optimizer<T>(std::move(groups), o.lr, o.weight_decay, "nn::SGD"), o_(o) {
    WEFT_CHECK(o.momentum >= 0 && o.momentum < 1 && o.dampening >= 0 && o.dampening <= 1, value, "nn::SGD",
               "expected 0 <= momentum < 1 and 0 <= dampening <= 1, got ", o.momentum, " and ", o.dampening);
    WEFT_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), config, "nn::SGD",
               "expected momentum > 0 and dampening 0 with nesterov, got momentum ", o.momentum, ", dampening ",
               o.dampening);
  }
  SGD(std::vector<Parameter<T>> params, const SGDOptions& o = {}) : SGD(single_group(std::move(params)), o) {}

 protected:
  void update() override {
    for (std::size_t g = 0; g < this->groups().size(); ++g)
      for (auto& p : this->groups()[g].params) {
        if (!p.requires_grad()) continue;
        T* buf = o_.momentum > 0 ? this->state(p, 0).data() : nullptr;
        std::int64_t& n = this->param_steps(p);
        ops::sgd_update(p.value().data(), p.grad().data(), buf, p.numel(), this->group_lr(g), o_.momentum,
                        o_.dampening, o_.nesterov, this->group_weight_decay(g), n == 0);
        ++n;
      }
  }

 private:
  SGDOptions o_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  ///< Adam: L2 added to the gradient; AdamW: decoupled decay
};

/// Adam (Kingma & Ba 2015), or with decoupled = true AdamW (Loshchilov & Hutter 2019):
/// p <- p (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps).
template <class T>
class Adam : public Optimizer<T> {
 public:
  Adam(std::vector<ParamGroup<T>> groups, const AdamOptions& o = {}, bool decoupled = false)
      : Adam(std::move(groups), o, decoupled, decoupled ? "nn::AdamW" : "nn::Adam") {}
  Adam(std::vector<Parameter<T>> params, const AdamOptions& o = {}, bool decoupled = false)
      : Adam(single_group(std::move(params)), o, decoupled) {}

 protected:
  /// For optimisers built on Adam (reparam::CompanderAdam): `name` is used in error messages.
  Adam(std::vector<ParamGroup<T>> groups, const AdamOptions& o, bool decoupled, const char* name)
      : Optimizer<T>(std::move(groups), o.lr, o.weight_decay, name), o_(o), decoupled_(decoupled) {
    WEFT_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1 && o.eps > 0 && std::isfinite(o.eps), value,
               name, "expected betas in [0, 1) and a finite eps > 0, got ", o.beta1, ", ", o.beta2, ", ", o.eps);
  }
  /// A per-element scale d for parameter p (n = p.numel() values, d > 0; 0 takes no step), or
  /// nullptr for the plain update. With a scale, the moments are those of (g + l2 p) / d and the
  /// step is multiplied by d (ops::adam_update_scaled): reparam::CompanderAdam returns the
  /// compander's Psi'(v) for its v's. Real T only.
  virtual const T* element_scale(Parameter<T>& /*p*/) { return nullptr; }

 protected:
  void update() override {
    for (std::size_t g = 0; g < this->groups().size(); ++g) {
      ops::AdamStep s{};
      s.lr = this->group_lr(g);
      s.beta1 = o_.beta1;
      s.beta2 = o_.beta2;
      s.eps = o_.eps;
      const double wd = this->group_weight_decay(g);
      s.l2 = decoupled_ ? 0.0 : wd;
      s.decoupled = decoupled_ ? wd : 0.0;
      for (auto& p : this->groups()[g].params) {
        if (!p.requires_grad()) continue;
        const double t = double(++this->param_steps(p));  // per-parameter step, as PyTorch
        s.bias1 = 1 - std::pow(o_.beta1, t);
        s.bias2 = 1 - std::pow(o_.beta2, t);
        T* m = this->state(p, 0).data();
        T* v = this->state(p, 1).data();
        if constexpr (!is_complex_v<T>) {
          if (const T* d = element_scale(p)) {
            ops::adam_update_scaled(p.value().data(), p.grad().data(), d, m, v, p.numel(), s);
            continue;
          }
        }
        ops::adam_update(p.value().data(), p.grad().data(), m, v, p.numel(), s);
      }
    }
  }

 private:
  AdamOptions o_;
  bool decoupled_;
};

/// AdamW: Adam with decoupled weight decay (default decay 0.01, as PyTorch).
template <class T>
class AdamW : public Adam<T> {
 public:
  static AdamOptions defaults() {
    AdamOptions o;
    o.weight_decay = 0.01;
    return o;
  }
  AdamW(std::vector<ParamGroup<T>> groups, const AdamOptions& o = defaults()) : Adam<T>(std::move(groups), o, true) {}
  AdamW(std::vector<Parameter<T>> params, const AdamOptions& o = defaults())
      : Adam<T>(single_group(std::move(params)), o, true) {}
};

/// Scales the gradients so that their global L2 norm is at most max_norm; returns the norm
/// before clipping. A non-finite norm leaves the gradients untouched and is returned as is.
template <class T>
double clip_grad_norm(const std::vector<Parameter<T>>& params, double max_norm) {
  WEFT_CHECK(max_norm > 0, value, "nn::clip_grad_norm", "expected max_norm > 0, got ", max_norm);
  double sq = 0;
  // squares summed in double: float gradients above ~1e19 would overflow a float sum of squares
  for (auto& p : params) sq += p.grad().array().abs().template cast<double>().square().sum();
  const double norm = std::sqrt(sq);
  if (std::isfinite(norm) && norm > max_norm) {
    const real_t<T> scale = real_t<T>(max_norm / (norm + 1e-6));
    for (auto p : params) p.grad().array() *= scale;
  }
  return norm;
}

}  // namespace weft::nn
