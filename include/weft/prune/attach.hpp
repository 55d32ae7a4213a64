// weft/prune/attach.hpp - masks on a model: the frozen mask transform W -> W * M, applying masks
// to the original weights, keeping pruned weights at zero through further training, and the
// sparsity report.
//
//   auto layers = prune::linear_layers(model, sel);    // the layers an nn::Selector picks (all: {})
//   ... masks[i] for layers[i] ...
//   auto pruned = prune::apply_masks(model, sel, masks);  // W <- W * M in place, MaskTransform attached
//   nn::Adam<float> opt(model.parameters(), ao);
//   auto keep = prune::enforce_masks(opt, pruned);     // post-step: masked entries set to exactly 0
//   ... train ...
//   std::cout << prune::sparsity_report(model, sel).to_string();
// apply_masks returns a MaskAttachment: an nn::Attachment (nn/attachment.hpp; detach() removes
// the transforms and restores the unpruned weights bit for bit, as long as they were not trained
// since) that is also the list of PrunedWeights (size, [], iteration, conversion).
//
// The transform's backward is dL/dW = M * dL/dW' (frozen mask: masked entries get no gradient),
// so plain SGD keeps them at 0 by itself; optimisers that move a weight without its gradient
// (Adam's coupled or AdamW's decoupled weight decay acting through stale moments, momentum
// carried over from before pruning) are why the post-step hook exists. It writes +0.
// The mask transform sits at the mask stage, last in the layer's chain (nn::TransformStage):
// with a quantiser on the same weight the effective weight is Q(W) * M, so pruned entries stay
// exactly zero although StatsQ has no zero level.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/tape.hpp"
#include "weft/nn/attach.hpp"
#include "weft/nn/attachment.hpp"
#include "weft/nn/select.hpp"
#include "weft/nn/optim.hpp"
#include "weft/prune/calibration.hpp"
#include "weft/prune/kernels.hpp"
#include "weft/prune/mask.hpp"

namespace weft::prune {

/// y = keep != 0 ? w : 0, with dL/dw = keep * dL/dy. keep is a 0/1 tensor of w's shape that
/// must stay alive until the tape is reset.
template <class T>
Var<T> masked(const Var<T>& w, const Tensor<T>& keep) {
  WEFT_CHECK(keep.shape() == w.shape(), shape, "prune::masked", "expected a mask of the weight's shape ", w.shape(),
             ", got ", keep.shape());
  Tape<T>& t = w.tape();
  Tensor<T> y = t.alloc_uninit(w.shape());
  masked_copy(w.value().data(), keep.data(), y.data(), y.numel());
  return t.record(y, {w}, [w, keep](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gw = tp.grad_sink(w)) {
      const index_t n = g.numel();
      T* out = gw->data();
      const T* gi = g.data();
      const T* k = keep.data();
      parallel_for(0, n, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) out[i] += k[i] != T(0) ? gi[i] : T(0);
      });
    }
  });
}

/// The frozen keep-mask as a weight transform: W -> W * M.
template <class T>
class MaskTransform : public nn::WeightTransform<T> {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "prune::MaskTransform needs float or double");

 public:
  explicit MaskTransform(Mask m) : mask_(std::move(m)) {
    mask_.validate("prune::MaskTransform");
    WEFT_CHECK(mask_.numel() > 0, shape, "prune::MaskTransform", "expected a non-empty mask, got ", mask_.rows, " x ",
               mask_.cols);
    keep_ = mask_.template as_tensor<T>();
  }
  std::string name() const override { return "mask"; }
  /// Last in the chain, so pruned entries stay exactly zero after a quantiser.
  nn::TransformStage stage() const override { return nn::TransformStage::mask; }
  Var<T> apply(const Var<T>& w) override { return masked(w, keep_); }
  Tensor<T> fold(const Tensor<T>& w) override {
    WEFT_CHECK(w.shape() == keep_.shape(), shape, "prune::MaskTransform::fold", "expected a weight of shape ",
               keep_.shape(), ", got ", w.shape());
    Tensor<T> out(w.shape());
    masked_copy(w.data(), keep_.data(), out.data(), w.numel());
    return out;
  }
  const Mask& mask() const noexcept { return mask_; }
  /// The mask as a 0/1 tensor.
  const Tensor<T>& keep() const noexcept { return keep_; }

 private:
  Mask mask_;
  Tensor<T> keep_;
};

/// A pruned weight: the layer's parameter and its mask transform.
template <class T>
struct PrunedWeight {
  std::string name;
  Parameter<T> weight;
  std::shared_ptr<MaskTransform<T>> mask;
};

/// What apply_masks returns: the record (technique "mask") and the pruned weights in layer order.
template <class T>
struct MaskAttachment : nn::Attachment<T> {
  using nn::Attachment<T>::Attachment;
  std::vector<PrunedWeight<T>> weights;
  std::size_t size() const noexcept { return weights.size(); }
  PrunedWeight<T>& operator[](std::size_t i) { return weights[i]; }
  const PrunedWeight<T>& operator[](std::size_t i) const { return weights[i]; }
  auto begin() const { return weights.begin(); }
  auto end() const { return weights.end(); }
  operator const std::vector<PrunedWeight<T>>&() const noexcept { return weights; }
};

namespace detail {
template <class T>
void check_masks(const std::vector<NamedLinear<T>>& layers, const std::vector<Mask>& masks, const char* fn) {
  WEFT_CHECK(!layers.empty() && layers.size() == masks.size(), shape, fn, "expected one mask per layer, got ",
             masks.size(), " masks for ", layers.size(), " layers");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    WEFT_CHECK(layers[i].second != nullptr && layers[i].second->weight.defined(), config, fn,
               "expected constructed layers, got an empty one at '", layers[i].first, "'");
    const Shape& s = layers[i].second->weight.shape();
    masks[i].validate(fn);
    WEFT_CHECK(masks[i].rows == s[0] && masks[i].cols == s[1] && index_t(masks[i].keep.size()) == s.numel(), shape, fn,
               "expected mask ", i, " of shape ", s, " for layer '", layers[i].first, "', got ", masks[i].rows, " x ",
               masks[i].cols);
  }
}
}  // namespace detail

/// For the i-th layer `select` picks in `model` (the order of linear_layers(model, select)), sets
/// the stored weight to originals[i] * masks[i] (originals: the pretrained weights, e.g. saved
/// before a fine-tuning pass; empty: the current weights) and, with attach_transform, adds a
/// MaskTransform (last in the chain) so gradients of pruned entries are 0. Checks everything
/// first: a throwing call leaves the model as it was. The record's detach() restores the weights
/// as they were before the call.
template <class T>
MaskAttachment<T> apply_masks(nn::Module<T>& model, const nn::SelectorArg<T>& select,
                                         const std::vector<Mask>& masks, const std::vector<Tensor<T>>& originals = {},
                                         bool attach_transform = true) {
  const char* fn = "prune::apply_masks";
  const std::vector<NamedLinear<T>> layers = select.resolve(model, fn);
  detail::check_masks(layers, masks, fn);
  WEFT_CHECK(originals.empty() || originals.size() == layers.size(), shape, fn, "expected no originals or one per layer, got ",
             originals.size(), " for ", layers.size(), " layers");
  for (std::size_t i = 0; i < originals.size(); ++i)
    WEFT_CHECK(originals[i].shape() == layers[i].second->weight.shape(), shape, fn, "expected original ", i,
               " of shape ", layers[i].second->weight.shape(), ", got ", originals[i].shape());
  std::vector<std::shared_ptr<MaskTransform<T>>> trs;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    trs.push_back(std::make_shared<MaskTransform<T>>(masks[i]));
    if (attach_transform) layers[i].second->check_transform(*trs.back(), fn);
  }
  MaskAttachment<T> out("mask");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    nn::Linear<T>& lin = *layers[i].second;
    auto tr = trs[i];
    Tensor<T>& w = lin.weight.value();
    Tensor<T> before = w.clone();
    const T* src = originals.empty() ? w.data() : originals[i].data();
    masked_copy(src, tr->keep().data(), w.data(), w.numel());
    if (attach_transform) {
      lin.add_transform(tr);
      out.record(layers[i].first, lin, std::shared_ptr<nn::WeightTransform<T>>(tr), std::move(before));
    } else {
      out.record_edit(layers[i].first, lin, std::move(before));
    }
    out.weights.push_back(PrunedWeight<T>{layers[i].first, lin.weight, tr});
  }
  out.seal();
  return out;
}

/// Adds a post-step hook to `opt` that sets every masked entry of the pruned weights to +0. The
/// hook holds copies of the handles in `pruned`; the returned handle removes it.
template <class T>
[[nodiscard]] nn::HookHandle enforce_masks(nn::Optimizer<T>& opt, const std::vector<PrunedWeight<T>>& pruned) {
  for (auto& p : pruned)
    WEFT_CHECK(p.weight.defined() && p.mask && p.weight.shape() == p.mask->keep().shape(), config,
               "prune::enforce_masks", "expected pruned weights with matching masks, got a mismatch at '", p.name, "'");
  return opt.add_post_step_hook([pruned](nn::Optimizer<T>&) {
    for (auto p : pruned) masked_copy(p.weight.value().data(), p.mask->keep().data(), p.weight.value().data(), p.weight.numel());
  });
}

/// enforce_masks over the pruned weights of a MaskAttachment.
template <class T>
[[nodiscard]] nn::HookHandle enforce_masks(nn::Optimizer<T>& opt, const MaskAttachment<T>& pruned) {
  return enforce_masks(opt, pruned.weights);
}

/// Exact zeros of one matrix and in total.
struct SparsityEntry {
  std::string name;
  index_t zeros = 0, numel = 0;
  double sparsity() const { return numel ? double(zeros) / double(numel) : 0.0; }
};
struct SparsityReport {
  std::vector<SparsityEntry> layers;
  index_t zeros = 0, numel = 0;
  double sparsity() const { return numel ? double(zeros) / double(numel) : 0.0; }
  /// One line per matrix and a total line.
  std::string to_string() const {
    std::string s;
    char buf[256];
    for (auto& e : layers) {
      std::snprintf(buf, sizeof buf, "%-24s %9lld / %9lld zeros  %6.2f%%\n", e.name.c_str(), (long long)e.zeros,
                    (long long)e.numel, 100.0 * e.sparsity());
      s += buf;
    }
    std::snprintf(buf, sizeof buf, "%-24s %9lld / %9lld zeros  %6.2f%%\n", "total", (long long)zeros, (long long)numel,
                  100.0 * sparsity());
    return s + buf;
  }
};

/// Exact zeros of each layer's effective weight (every enabled transform folded in) and in total,
/// over the layers `select` picks (all by default).
template <class T>
SparsityReport sparsity_report(nn::Module<T>& model, const nn::SelectorArg<T>& select = {});

/// The same over a list of layers (as linear_layers returns): a thin wrapper kept for callers
/// that already hold the list.
template <class T>
SparsityReport sparsity_report(const std::vector<NamedLinear<T>>& layers) {
  SparsityReport r;
  for (auto& l : layers) {
    WEFT_CHECK(l.second != nullptr && l.second->weight.defined(), config, "prune::sparsity_report",
               "expected constructed layers, got an empty one at '", l.first, "'");
    const Tensor<T> w = l.second->folded_weight();
    SparsityEntry e;
    e.name = l.first;
    e.numel = w.numel();
    for (index_t i = 0; i < w.numel(); ++i) e.zeros += w.flat(i) == T(0);
    r.zeros += e.zeros;
    r.numel += e.numel;
    r.layers.push_back(std::move(e));
  }
  return r;
}

template <class T>
SparsityReport sparsity_report(nn::Module<T>& model, const nn::SelectorArg<T>& select) {
  return sparsity_report(select.resolve(model, "prune::sparsity_report"));
}

}  // namespace weft::prune
