// weft/prune/dpruner.hpp - D-Pruner's dual importance (Zhang et al., "Pruning as a
// Domain-specific LLM Extractor", Findings of NAACL 2024).
//
// Pipeline: (1) a general importance G per prunable matrix from open-domain calibration data
// (obs_diag_importance or sparsegpt_prune's scores); (2) a short SGD pass on domain data whose
// gradient is regularised by G, accumulating the dual importance I along the trajectory;
// (3) masks from I per matrix (mask.hpp), applied to the *original* weights (attach.hpp): the
// fine-tuned weights are thrown away.
//
// Regularised gradient g~ of a prunable matrix from its gradient g (coupling):
//   isotropic_fisher (default)  g~ = g (1 + c G / mean(G))
//   paper_fisher                g~ = g (1 + kappa G^ Phi^), Phi^ = g^2 of the minibatch;
//                               normalize: G^ = G / mean(G), Phi^ = g^2 / mean(g^2), kappa = c;
//                               literal:   G^ = G, Phi^ = g^2, kappa = 2 lambda eta^2
//   reference_code              g~ = g + (2 lambda eta^2 / 1000) G g^2   (lomo.py, not sign-symmetric)
// (eta = the current learning rate of the weight's parameter group; means over one matrix; a
// zero mean gives G^ = 0 resp. Phi^ = 0.) g~ replaces g for the update; other parameters keep g.
// The update is clipped to global norm clip_norm over all regularised gradients. After the
// update, with theta the updated weights and u = g~ theta (g~ clipped, or unclipped with
// importance_uses_clipped_grad = false):
//   I += | taylor_sign u + a u^2 (+ theta^3 with cubic_term) |,   a = second_order_scale.
// c = 0 gives the domain-only ablation (plain Taylor/Fisher importance).
//
// DualImportance installs this on any nn::Optimizer as a pre-step hook (coupling, then
// clipping; do not clip again in the trainer) and a post-step hook (accumulation).
// dual_importance_pass() runs the whole domain pass (plain SGD, shuffled mini-batches) and
// restores every parameter of the model afterwards. A non-finite g~ or I is a ValueError raised
// before the gradients are overwritten.
#pragma once

#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "weft/nn/module.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"
#include "weft/prune/kernels.hpp"

WEFT_NAMESPACE_BEGIN
namespace prune {

enum class coupling { isotropic_fisher, paper_fisher, reference_code };

struct DualOptions {
  coupling kind = coupling::isotropic_fisher;
  double c = 10;                          ///< strength (isotropic; paper_fisher normalised)
  bool normalize = true;                  ///< paper_fisher: normalised (c) or literal (2 lambda eta^2)
  double lambda = 0.1;                    ///< paper_fisher literal and reference_code
  double second_order_scale = 0.5;        ///< a (reference code: 1 / 2000)
  double taylor_sign = 1;                 ///< +1 (code and spec) or -1 (exact expansion)
  bool cubic_term = false;                ///< the reference's literal + theta^3
  double clip_norm = 1.0;                 ///< global-norm clip of the regularised grads (0: none)
  bool importance_uses_clipped_grad = true;
};

/// Accumulates the dual importance of a set of weight matrices over optimiser steps.
template <class T>
class DualImportance {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "prune::DualImportance needs float or double");

 public:
  /// weights[i] gets general importance general[i] (same shape, finite, >= 0).
  DualImportance(std::vector<Parameter<T>> weights, std::vector<Tensor<T>> general, const DualOptions& o = {})
      : s_(std::make_shared<State>()) {
    const char* fn = "prune::DualImportance";
    WEFT_CHECK(!weights.empty() && weights.size() == general.size(), shape, fn,
               "expected one general importance per weight, got ", general.size(), " for ", weights.size(), " weights");
    WEFT_CHECK(std::isfinite(o.c) && o.c >= 0 && std::isfinite(o.lambda) && o.lambda >= 0, value, fn,
               "expected finite c >= 0 and lambda >= 0, got ", o.c, " and ", o.lambda);
    WEFT_CHECK(std::isfinite(o.second_order_scale) && (o.taylor_sign == 1 || o.taylor_sign == -1), value, fn,
               "expected a finite second_order_scale and taylor_sign +1 or -1, got ", o.second_order_scale, " and ",
               o.taylor_sign);
    WEFT_CHECK(o.clip_norm >= 0 && std::isfinite(o.clip_norm), value, fn, "expected clip_norm >= 0, got ", o.clip_norm);
    for (std::size_t i = 0; i < weights.size(); ++i) {
      WEFT_CHECK(weights[i].defined() && general[i].shape() == weights[i].shape(), shape, fn, "expected general importance ",
                 i, " of shape ", weights[i].defined() ? weights[i].shape() : Shape{}, ", got ", general[i].shape());
      for (index_t j = 0; j < general[i].numel(); ++j)
        WEFT_CHECK(std::isfinite(double(general[i].flat(j))) && general[i].flat(j) >= 0, value, fn,
                   "expected finite general importance >= 0, got ", general[i].flat(j), " in matrix ", i, " at ", j);
    }
    s_->o = o;
    for (std::size_t i = 0; i < weights.size(); ++i) {
      Slot sl;
      sl.w = weights[i];
      sl.general = general[i].clone();
      double mean = 0;
      for (index_t j = 0; j < sl.general.numel(); ++j) mean += double(sl.general.flat(j));
      mean /= double(sl.general.numel());
      sl.g_hat = sl.general.clone();  // G / mean(G), or 0 for a zero mean
      for (index_t j = 0; j < sl.g_hat.numel(); ++j) sl.g_hat.flat(j) = mean > 0 ? T(double(sl.general.flat(j)) / mean) : T(0);
      sl.importance = Tensor<T>(weights[i].shape());
      sl.scratch = Tensor<T>(weights[i].shape());
      s_->slots.push_back(std::move(sl));
    }
  }

  /// Installs the pre-step (coupling + clipping) and post-step (accumulation) hooks on opt. Each
  /// weight must be one of opt's parameters. The object owns the hooks (they share its state, so
  /// moving it is safe): destroying it or detach() removes them.
  void attach(nn::Optimizer<T>& opt) {
    const char* fn = "prune::DualImportance::attach";
    std::vector<std::size_t> group(s_->slots.size());
    for (std::size_t i = 0; i < s_->slots.size(); ++i) {
      bool found = false;
      for (std::size_t g = 0; g < opt.groups().size() && !found; ++g)
        for (auto& p : opt.groups()[g].params)
          if (p == s_->slots[i].w) {
            group[i] = g;
            found = true;
          }
      WEFT_CHECK(found, config, fn, "expected every weight to be a parameter of the optimiser, weight ", i, " is not");
    }
    std::shared_ptr<State> s = s_;
    hooks_.add(opt.add_pre_step_hook([s, group](nn::Optimizer<T>& op) { couple_and_clip(*s, op, group); }));
    hooks_.add(opt.add_post_step_hook([s](nn::Optimizer<T>&) { accumulate(*s); }));
  }
  /// Removes the hooks of every attach().
  void detach() noexcept { hooks_.remove(); }

  /// I of weight i (accumulated so far).
  const Tensor<T>& importance(std::size_t i) const { return s_->slots.at(i).importance; }
  std::vector<Tensor<T>> importances() const {
    std::vector<Tensor<T>> out;
    for (auto& sl : s_->slots) out.push_back(sl.importance.clone());
    return out;
  }
  /// Steps accumulated so far.
  std::int64_t steps() const noexcept { return s_->steps; }
  /// The last clip coefficient (1 when the norm was within clip_norm).
  double last_clip_coefficient() const noexcept { return s_->clip_coef; }

 private:
  struct Slot {
    Parameter<T> w;
    Tensor<T> general, g_hat, importance, scratch;
  };
  struct State {
    DualOptions o;
    std::vector<Slot> slots;
    double clip_coef = 1;
    std::int64_t steps = 0;
  };

  static void couple_and_clip(State& s, nn::Optimizer<T>& opt, const std::vector<std::size_t>& group) {
    const DualOptions& o = s.o;
    for (std::size_t i = 0; i < s.slots.size(); ++i) {  // regularised gradients into scratch
      Slot& sl = s.slots[i];
      const T* g = sl.w.grad().data();
      T* gt = sl.scratch.data();
      const index_t n = sl.w.numel();
      const double eta = opt.group_lr(group[i]);
      if (o.kind == coupling::isotropic_fisher) {
        couple<coupling_form::scaled>(g, sl.g_hat.data(), gt, n, T(o.c));
      } else if (o.kind == coupling::paper_fisher) {
        if (o.normalize) {
          double m2 = 0;
          for (index_t j = 0; j < n; ++j) m2 += double(g[j]) * double(g[j]);
          m2 /= double(n);
          couple<coupling_form::cubic>(g, sl.g_hat.data(), gt, n, m2 > 0 ? T(o.c / m2) : T(0));
        } else {
          couple<coupling_form::cubic>(g, sl.general.data(), gt, n, T(2 * o.lambda * eta * eta));
        }
      } else {
        couple<coupling_form::square>(g, sl.general.data(), gt, n, T(2 * o.lambda * eta * eta / 1000));
      }
      WEFT_CHECK(sl.scratch.all_finite(), value, "prune::DualImportance",
                 "expected a finite regularised gradient, got NaN or Inf in weight ", i,
                 " (lower c or lambda, or check the general importance)");
    }
    for (auto& sl : s.slots) sl.w.grad().copy_from(sl.scratch);
    s.clip_coef = 1;
    if (o.clip_norm > 0) {
      const double norm = nn::clip_grad_norm(opt.parameters(), o.clip_norm);
      if (std::isfinite(norm) && norm > o.clip_norm) s.clip_coef = o.clip_norm / (norm + 1e-6);
    }
  }

  static void accumulate(State& s) {
    const DualOptions& o = s.o;
    const T gscale = o.importance_uses_clipped_grad ? T(1) : T(1.0 / s.clip_coef);
    for (std::size_t i = 0; i < s.slots.size(); ++i) {
      Slot& sl = s.slots[i];
      sl.scratch.copy_from(sl.importance);
      accumulate_dual(sl.scratch.data(), sl.w.grad().data(), sl.w.value().data(), sl.w.numel(), T(o.taylor_sign),
                      T(o.second_order_scale), gscale, o.cubic_term);
      WEFT_CHECK(sl.scratch.all_finite(), value, "prune::DualImportance", "expected a finite dual importance, got NaN or Inf in weight ",
                 i);
    }
    for (auto& sl : s.slots) sl.importance.copy_from(sl.scratch);
    ++s.steps;
  }

  std::shared_ptr<State> s_;
  nn::HookGroup hooks_;  // the hooks of attach(); they capture s_, never this
};

/// Options of the domain pass (spec defaults: plain SGD lr 0.03 constant, 1 epoch, batch 64).
struct DomainPassOptions {
  DualOptions dual;
  double lr = 0.03;
  int epochs = 1;
  index_t batch_size = 64;
  std::uint64_t seed = 0;  ///< shuffling seed
};

/// Runs the domain pass on `model`: SGD over all its parameters on n examples, loss_fn(tape,
/// rows) recording the mean loss of the given rows, with the dual coupling on `weights`
/// (general[i] for weights[i]). Returns I per weight. Every parameter of the model is restored
/// to its value before the call (also when the call throws).
template <class T, class LossFn>
std::vector<Tensor<T>> dual_importance_pass(nn::Module<T>& model, const std::vector<Parameter<T>>& weights,
                                            const std::vector<Tensor<T>>& general, index_t n, LossFn&& loss_fn,
                                            const DomainPassOptions& o = {}) {
  const char* fn = "prune::dual_importance_pass";
  WEFT_CHECK(n > 0, shape, fn, "expected a non-empty domain calibration set, got ", n, " examples");
  WEFT_CHECK(o.epochs >= 1 && o.batch_size > 0 && o.lr > 0 && std::isfinite(o.lr), value, fn,
             "expected epochs >= 1, batch_size > 0 and a finite lr > 0, got ", o.epochs, ", ", o.batch_size, ", ", o.lr);
  DualImportance<T> dual(weights, general, o.dual);  // checks shapes and values
  std::vector<Parameter<T>> params = model.parameters();
  std::vector<Tensor<T>> saved;
  for (auto& p : params) saved.push_back(p.value().clone());
  struct Restore {
    std::vector<Parameter<T>>& p;
    std::vector<Tensor<T>>& v;
    ~Restore() {
      for (std::size_t i = 0; i < p.size(); ++i) {
        p[i].value().copy_from(v[i]);
        p[i].zero_grad();
      }
    }
  } restore{params, saved};
  nn::SGDOptions so;
  so.lr = o.lr;
  nn::SGD<T> opt(params, so);
  dual.attach(opt);
  nn::TrainerOptions to;
  to.epochs = o.epochs;
  to.batch_size = o.batch_size;
  to.seed = o.seed;
  nn::Trainer<T> trainer(opt, to);
  trainer.fit(n, std::forward<LossFn>(loss_fn));
  return dual.importances();
}

}  // namespace prune
WEFT_NAMESPACE_END
