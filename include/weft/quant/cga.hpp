// weft/quant/cga.hpp - confidence-guided annealing (CGA), OFQ's fine-tuning phase, as an
// optimiser-side hook.
//
// The confidence of a StatsQ weight is the distance, in quantisation steps, of x n to the nearest
// decision threshold m in {-n + 1, ..., n - 1} (spec quantization_ofq.md, Sec. 4; the clip edges
// are not thresholds). Weights with confidence <= BR (boundary_range, default 0.005) stay
// trainable; all others are frozen. Each optimiser step, for every managed weight:
//   before the update: the mask from the current (pre-step) W, computed by the StatsQ kernel of
//                      the layer's own quantiser (same bit width and grouping); the gradient is
//                      zeroed where frozen and the frozen values are saved;
//   after the update:  the saved values are written back, so Adam's moments and decoupled
//                      weight decay cannot move a frozen weight (its bits are unchanged).
// The mask is recomputed from scratch each step (the reference); cumulative = true ANDs it with
// the previous one (descriptions of the paper's Algorithm 1; unverified). The trainable set
// shrinks as frozen weights stop moving ("annealing"). Not managed: LSQ scales, shifts, norms,
// biases and QKR's latent W_q, W_k (as the reference).
//
//   quant::CgaController<float> cga;           // BR 0.005, non-cumulative
//   auto q = quant::statsq<2, float>();  model.layers[0].add_transform(q);
//   cga.manage(model.layers[0], q);            // a Linear and the StatsQ attached to it
//   cga.attach(opt);                           // pre/post-step hooks; active from the start
//   cga.set_active(false); ... cga.set_active(true);   // e.g. only in the last epochs
//   double f = cga.mean_frozen_fraction();
// The controller and the managed layers must stay at their addresses while attached.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/nn/hooks.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/optim.hpp"
#include "weft/quant/statsq.hpp"

WEFT_NAMESPACE_BEGIN
namespace quant {

struct CgaOptions {
  double boundary_range = 0.005;  ///< BR, in quantisation steps
  bool cumulative = false;        ///< AND the mask with the previous step's
};

template <class T>
class CgaController {
 public:
  explicit CgaController(const CgaOptions& o = {}) : o_(o) {
    WEFT_CHECK(o.boundary_range >= 0 && o.boundary_range <= 0.5, value, "quant::CgaController",
               "expected boundary_range in [0, 0.5], got ", o.boundary_range);
  }
  /// Moving keeps the hooks of attach() working: they reach the controller through a shared cell
  /// that the move points at the new object. Not copyable (hooks have one owner).
  CgaController(CgaController&& o) noexcept
      : o_(o.o_), items_(std::move(o.items_)), active_(o.active_), pending_(o.pending_), steps_(o.steps_),
        fraction_sum_(o.fraction_sum_), last_fraction_(o.last_fraction_), self_(std::move(o.self_)),
        hooks_(std::move(o.hooks_)) {
    if (self_) *self_ = this;
  }
  CgaController& operator=(CgaController&& o) noexcept {
    if (this != &o) {
      hooks_ = std::move(o.hooks_);  // removes this controller's own hooks first
      self_ = std::move(o.self_);
      o_ = o.o_;
      items_ = std::move(o.items_);
      active_ = o.active_;
      pending_ = o.pending_;
      steps_ = o.steps_;
      fraction_sum_ = o.fraction_sum_;
      last_fraction_ = o.last_fraction_;
      if (self_) *self_ = this;
    }
    return *this;
  }
  CgaController(const CgaController&) = delete;
  CgaController& operator=(const CgaController&) = delete;

  /// Manages the parameter w, quantised by q (q's input must be w itself).
  void manage(Parameter<T> w, std::shared_ptr<StatsQuantizerBase<T>> q, std::string name = {}) {
    WEFT_CHECK(w.defined() && q != nullptr, config, "quant::CgaController::manage",
               "expected a defined parameter and a StatsQ quantiser");
    Parameter<T> wc = w;
    add(w, q, std::move(name), [wc]() { return wc.value(); });
  }
  /// Manages a Linear's weight, quantised by the StatsQ transform q attached to it (the object
  /// the caller attached: the controller never looks a quantiser up by type). Transforms before q
  /// must be element-wise maps (a compander): the mask is computed on their output and applied
  /// element by element to the stored weight. (A pruning mask sits after the quantiser.)
  void manage(nn::Linear<T>& layer, std::shared_ptr<StatsQuantizerBase<T>> q, std::string name = {}) {
    const char* fn = "quant::CgaController::manage";
    WEFT_CHECK(layer.weight.defined(), config, fn, "expected a constructed Linear, got an empty one");
    WEFT_CHECK(q != nullptr, config, fn, "expected a StatsQ quantiser, got none");
    WEFT_CHECK(layer.holds(q.get()), config, fn, "expected the StatsQ quantiser attached to the layer, got one it does not carry (",
               layer.transforms().size(), " transforms)");
    nn::Linear<T>* lp = &layer;
    const nn::WeightTransform<T>* qt = q.get();
    add(layer.weight, q, std::move(name), [lp, qt]() {  // the quantiser's place is looked up each time:
      Tensor<T> w = lp->weight.value();                 // a compander attached later goes before it
      for (auto& t : lp->transforms()) {
        if (t.get() == qt) break;
        w = t->fold(w);
      }
      return w;
    });
  }
  std::size_t size() const noexcept { return items_.size(); }

  /// Installs pre_step() and post_step() as hooks of opt. The controller owns them: destroying
  /// it (or detach()) removes them, so it may die before the optimiser.
  void attach(nn::Optimizer<T>& opt) {
    if (!self_) self_ = std::make_shared<CgaController*>(this);
    std::shared_ptr<CgaController*> self = self_;
    hooks_.add(opt.add_pre_step_hook([self](nn::Optimizer<T>&) { (*self)->pre_step(); }));
    hooks_.add(opt.add_post_step_hook([self](nn::Optimizer<T>&) { (*self)->post_step(); }));
  }
  /// Removes the hooks of every attach().
  void detach() noexcept { hooks_.remove(); }
  /// Switches freezing on or off (on by default). Switching on starts a fresh cumulative mask.
  void set_active(bool on) {
    if (on && !active_)
      for (auto& it : items_) it.has_prev = false;
    active_ = on;
  }
  bool active() const noexcept { return active_; }

  /// Computes the masks, zeroes the gradients of frozen weights and saves their values.
  void pre_step() {
    pending_ = false;
    if (!active_) return;
    for (auto& it : items_) {  // every mask first: a failed check leaves all gradients untouched
      if (!it.w.requires_grad()) continue;
      it.q->confidence_mask(it.input(), o_.boundary_range, it.near);
      WEFT_CHECK(index_t(it.near.size()) == it.w.numel(), shape, "quant::CgaController::pre_step",
                 "expected the quantiser's input to have ", it.w.numel(), " elements like the weight, got ",
                 it.near.size());
    }
    index_t frozen = 0, total = 0;
    for (auto& it : items_) {
      if (!it.w.requires_grad()) continue;
      const std::size_t n = it.near.size();
      if (o_.cumulative && it.has_prev)
        for (std::size_t i = 0; i < n; ++i) it.trainable[i] = std::uint8_t(it.trainable[i] & it.near[i]);
      else
        it.trainable = it.near;
      it.has_prev = true;
      it.saved.resize(n);
      const T* wv = it.w.value().data();
      T* g = it.w.grad().data();
      for (std::size_t i = 0; i < n; ++i) {
        it.saved[i] = wv[i];
        if (!it.trainable[i]) {
          g[i] = T(0);
          ++frozen;
        }
      }
      total += index_t(n);
    }
    last_fraction_ = total > 0 ? double(frozen) / double(total) : 0.0;
    fraction_sum_ += last_fraction_;
    ++steps_;
    pending_ = true;
  }
  /// Writes the saved values back into the frozen positions.
  void post_step() {
    if (!pending_) return;
    pending_ = false;
    for (auto& it : items_) {
      if (!it.w.requires_grad() || it.saved.size() != std::size_t(it.w.numel())) continue;
      T* wv = it.w.value().data();
      for (std::size_t i = 0; i < it.saved.size(); ++i)
        if (!it.trainable[i]) wv[i] = it.saved[i];
    }
  }

  /// Frozen fraction of the managed weights in the latest active step.
  double frozen_fraction() const noexcept { return last_fraction_; }
  /// Mean frozen fraction over the active steps so far.
  double mean_frozen_fraction() const noexcept { return steps_ > 0 ? fraction_sum_ / double(steps_) : 0.0; }
  /// Active steps so far.
  std::int64_t steps() const noexcept { return steps_; }
  /// 1 where the i-th managed weight was trainable in the latest active step.
  const std::vector<std::uint8_t>& trainable_mask(std::size_t i) const { return item(i).trainable; }
  /// The i-th managed parameter.
  const Parameter<T>& parameter(std::size_t i) const { return item(i).w; }
  const std::string& name(std::size_t i) const { return item(i).name; }
  /// Clears statistics and cumulative masks.
  void reset() {
    steps_ = 0;
    fraction_sum_ = last_fraction_ = 0;
    for (auto& it : items_) it.has_prev = false;
  }

 private:
  struct Item {
    Parameter<T> w;
    std::shared_ptr<StatsQuantizerBase<T>> q;
    std::string name;
    std::function<Tensor<T>()> input;
    std::vector<std::uint8_t> near, trainable;
    std::vector<T> saved;
    bool has_prev = false;
  };
  void add(Parameter<T> w, std::shared_ptr<StatsQuantizerBase<T>> q, std::string name, std::function<Tensor<T>()> in) {
    for (auto& it : items_)
      WEFT_CHECK(it.w != w, config, "quant::CgaController::manage", "expected each weight once, got '", name,
                 "' twice");
    Item it;
    it.w = std::move(w);
    it.q = std::move(q);
    it.name = std::move(name);
    it.input = std::move(in);
    items_.push_back(std::move(it));
  }
  const Item& item(std::size_t i) const {
    WEFT_CHECK(i < items_.size(), shape, "quant::CgaController", "expected an index below ", items_.size(), ", got ", i);
    return items_[i];
  }

  CgaOptions o_;
  std::vector<Item> items_;
  bool active_ = true, pending_ = false;
  std::int64_t steps_ = 0;
  double fraction_sum_ = 0, last_fraction_ = 0;
  // (the move operations list every member above)
  std::shared_ptr<CgaController*> self_;  // what the hooks call through; follows moves
  nn::HookGroup hooks_;                   // declared last: removed first on destruction
};

}  // namespace quant
WEFT_NAMESPACE_END
