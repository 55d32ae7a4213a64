// weft/peft/adapter.hpp - Adapter<T>: what every PEFT adapter of weft has in common.
//
// An adapter is bound to one nn::Linear through the layer's `weight` parameter (a handle: the
// frozen base weight is never copied). The LoRA family, BoneShared and MissMini are also
// nn::SidePaths (they add f(x) to the layer's output); BoneAffine is an nn::WeightTransform
// (the layer multiplies by W(I+B)+B). This base holds the shape, the merge state and the
// training flag, and defines merging as a map of the weight:
//   merge_into(w)    w <- the weight that makes the adapter redundant (W + delta W for the side
//                    paths, W(I + B) + B for BoneAffine); pure: the merge state is unchanged
//   unmerge_from(w)  the inverse (exact up to rounding; BoneAffine needs I + B_a invertible)
// and both check w's shape first ("merging into a base of another shape" is a ShapeError).
// Merging the layer's own weight, with the bookkeeping (a merged adapter contributes nothing
// more to forward), safe merging and multiple adapters, is peft::merge / unmerge /
// merge_and_unload in model.hpp.
//
// Training mode: dropout (LoRA, BoneShared, MissMini) is applied only when the adapter is in
// training mode (the default; peft::set_training(model, false) switches every adapter of a
// model) and gradients are being recorded (never inside a no_grad scope).
#pragma once

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/core/autograd/parameter.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace peft {

template <class T>
class Adapter;

namespace detail {
/// The merge-state bookkeeping of peft::merge / unmerge (model.hpp).
template <class T>
struct MergeAccess {
  static void set_merged(Adapter<T>& a, bool m) noexcept { a.merged_ = m; }
};
}  // namespace detail

template <class T>
class Adapter {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "weft::peft adapters work on real float or double weights");

 public:
  virtual ~Adapter() = default;

  /// "lora", "pissa", "olora", "bone_shared", "miss_mini" or "bone_affine".
  virtual std::string method() const = 0;
  /// True for side paths (a delta W that does not depend on W), false for BoneAffine.
  virtual bool is_side_path() const = 0;
  /// The adapter's own (trainable) parameters with their short names ("A", "B", "M", ...).
  virtual std::vector<std::pair<std::string, Parameter<T>>> adapter_parameters() const = 0;

  index_t in_features() const noexcept { return in_; }
  index_t out_features() const noexcept { return out_; }
  /// The adapter's r (LoRA rank, Bone shard / block size).
  index_t rank() const noexcept { return r_; }
  /// The base weight the adapter is bound to (the layer's `weight` parameter, shared).
  const Parameter<T>& base_weight() const noexcept { return base_; }
  /// True while the adapter is merged into its base weight (it then adds nothing in forward).
  bool merged() const noexcept { return merged_; }

  /// Number of scalars in adapter_parameters().
  index_t num_trainable() const {
    index_t n = 0;
    for (auto& p : adapter_parameters()) n += p.second.numel();
    return n;
  }

  bool training() const noexcept { return training_; }
  void set_training(bool on) noexcept { training_ = on; }

  /// w <- the merged weight (see the file comment). w must have shape (out, in).
  void merge_into(Tensor<T>& w) const {
    check_base_shape(w, "peft::Adapter::merge_into");
    do_merge(w);
  }
  /// w <- the unmerged weight (the inverse of merge_into). w is unchanged if this throws.
  void unmerge_from(Tensor<T>& w) const {
    check_base_shape(w, "peft::Adapter::unmerge_from");
    do_unmerge(w);
  }
  /// The dense weight change merge_into adds to `w` (W' - W), as a new tensor. Side paths
  /// merge into zeros (their delta does not depend on W: exact, no cancellation in W' - W).
  Tensor<T> delta_weight(const Tensor<T>& w) const {
    check_base_shape(w, "peft::Adapter::delta_weight");
    if (is_side_path()) {
      Tensor<T> d(w.shape());
      do_merge(d);
      return d;
    }
    Tensor<T> m = w.clone();
    do_merge(m);
    m.array() -= w.array();
    return m;
  }
  /// delta_weight of the current base weight (for side paths it does not depend on it).
  Tensor<T> delta_weight() const { return delta_weight(base_.value()); }

 protected:
  Adapter(Parameter<T> base, index_t r, const char* who) : base_(std::move(base)), r_(r) {
    WEFT_CHECK(base_.defined() && base_.shape().rank() == 2, shape, who,
               "expected a layer weight of shape (out, in), got ",
               base_.defined() ? base_.shape() : Shape{});
    out_ = base_.shape()[0];
    in_ = base_.shape()[1];
  }
  /// w <- merged weight, in place (w has the base's shape).
  virtual void do_merge(Tensor<T>& w) const = 0;
  /// w <- unmerged weight, in place; must validate (and throw) before writing.
  virtual void do_unmerge(Tensor<T>& w) const = 0;

 private:
  friend struct detail::MergeAccess<T>;
  void check_base_shape(const Tensor<T>& w, const char* who) const {
    WEFT_CHECK(w.defined() && w.shape() == Shape({out_, in_}), shape, who, "expected a base weight of shape (", out_,
               ", ", in_, ") for this ", method(), " adapter, got ", w.defined() ? w.shape() : Shape{});
  }

  Parameter<T> base_;
  index_t in_ = 0, out_ = 0, r_ = 0;
  bool merged_ = false;
  bool training_ = true;
};

}  // namespace peft
WEFT_NAMESPACE_END
