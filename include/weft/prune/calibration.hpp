// weft/prune/calibration.hpp - finding the prunable Linears of a model and collecting their
// calibration statistics through forward hooks.
//
//   auto layers = prune::linear_layers(model);                 // every nn::Linear, dotted names
//   {
//     prune::Calibration<float> cal(layers);                   // hooks attached
//     for (auto& batch : calib) model.forward(...);            // under no_grad
//     auto h0 = cal.stats(0).hessian();                        // H = (2/n) sum X^T X
//     auto norms = cal.stats(0).column_norms();                // ||X_j|| (Wanda)
//   }                                                          // hooks removed
//
// A hook sees the input the layer's product used (after its input transforms), as the
// reference's register_forward_hook does. A Calibration must not outlive the layers it watches
// (its destructor removes the hooks); it cannot be copied or moved.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/nn/hooks.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/select.hpp"
#include "weft/nn/module.hpp"
#include "weft/prune/hessian.hpp"

namespace weft::prune {

/// A named Linear of a model (the pointer stays valid as long as the model is not moved).
template <class T>
using NamedLinear = std::pair<std::string, nn::Linear<T>*>;

/// The nn::Linears of `model` that `select` picks (nn/select.hpp; every Linear by default, the
/// model itself included), depth first in declaration order, with dotted names ("" for the model
/// itself); each layer once. An empty selection is an error listing the model's layers.
template <class T>
std::vector<NamedLinear<T>> linear_layers(nn::Module<T>& model, const nn::SelectorArg<T>& select = {}) {
  return select.resolve(model, "prune::linear_layers");
}

struct CalibrationOptions {
  bool hessian = true;  ///< accumulate sum X^T X (din^2 doubles per layer); false: column norms only
};

/// Forward hooks on a set of Linears that accumulate HessianStats of their inputs. The hooks are
/// owned (nn::HookHandle): destroying the Calibration removes them, and is safe after the layers.
template <class T>
class Calibration {
 public:
  /// The Linears of `model` that `select` picks (all by default), in linear_layers order.
  Calibration(nn::Module<T>& model, const nn::SelectorArg<T>& select, const CalibrationOptions& o = {})
      : Calibration(linear_layers(model, select), o) {}
  /// An explicit list of layers (e.g. one layer of linear_layers(model), calibrated on its own).
  explicit Calibration(std::vector<NamedLinear<T>> layers, const CalibrationOptions& o = {}) {
    const char* fn = "prune::Calibration";
    WEFT_CHECK(!layers.empty(), config, fn, "expected at least one layer to calibrate, got none");
    for (auto& l : layers)
      WEFT_CHECK(l.second != nullptr && l.second->weight.defined(), config, fn,
                 "expected constructed Linear layers, got an empty one at '", l.first, "'");
    for (auto& l : layers) {
      auto st = std::make_shared<HessianStats<T>>(l.second->in_features(), o.hessian);
      entries_.push_back(Entry{l.first, l.second, l.second->add_forward_hook([st](const Tensor<T>& x, const Tensor<T>&) {
                                 st->add_batch(x);
                               }),
                               st});
    }
  }
  Calibration(const Calibration&) = delete;
  Calibration& operator=(const Calibration&) = delete;
  ~Calibration() { detach(); }

  /// Removes the hooks (statistics stay readable). Called by the destructor.
  void detach() {
    for (auto& e : entries_) e.hook.remove();
  }
  std::size_t size() const noexcept { return entries_.size(); }
  /// HessianStats::visit_sums over every layer's statistics, in layer order.
  template <class F>
  void visit_sums(F&& f) {
    for (auto& e : entries_) e.stats->visit_sums(f);
  }
  const std::string& name(std::size_t i) const { return entries_.at(i).name; }
  const HessianStats<T>& stats(std::size_t i) const { return *entries_.at(i).stats; }
  /// Statistics of the layer called `name`.
  const HessianStats<T>& stats(const std::string& name) const {
    for (auto& e : entries_)
      if (e.name == name) return *e.stats;
    WEFT_CHECK(false, config, "prune::Calibration::stats", "expected the name of a calibrated layer, got '", name, "'");
    return *entries_.front().stats;  // not reached
  }

 private:
  struct Entry {
    std::string name;
    nn::Linear<T>* layer;
    nn::HookHandle hook;  // removes itself; safe when the layer is gone first
    std::shared_ptr<HessianStats<T>> stats;
  };
  std::vector<Entry> entries_;
};

}  // namespace weft::prune
