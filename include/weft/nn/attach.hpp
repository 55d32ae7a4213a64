// weft/nn/attach.hpp - how techniques attach to a layer without copying it.
//
// Most techniques change how a layer sees its weight, or add a path beside it. Linear (and
// through it every attention projection) carries, in the order forward() applies them:
//   - a chain of InputTransforms: the input x goes through them before the product (activation
//     quantisers x -> Q(x));
//   - a chain of WeightTransforms: the stored parameter W goes through t1, t2, ... before the
//     product, each differentiable (quantisers W -> Q(W) with a custom backward, the compander
//     v -> a atan(v / b), pruning masks W -> W * M, block-affine Bone W -> W (I + B) + B).
//     The chain has a canonical order by TransformStage, whatever order they are attached in:
//     reparam (compander) -> weight (general maps, BoneAffine) -> quantizer -> mask, stable
//     within a stage; so a pruned weight stays exactly zero after quantisation;
//   - a list of SidePaths: each adds f(x) to the layer output, x being the layer's original
//     input (LoRA, shared-shard Bone);
//   - a chain of OutputAdapters: y -> g(y) on the output (bottleneck adapters placed after a
//     projection: Houlsby-style and Compacter adapters after attention and feed-forward);
//   - forward hooks that observe the values the product saw and produced (calibration
//     statistics): the transformed input and the final output.
// Every attached object is an Attachable: it can be switched off (set_enabled(false); Linear
// then skips it entirely, so with every attachment of a layer disabled its output is the base
// output bit for bit) and says whether it is an adapter (a trainable PEFT / PHM add-on, which
// nn::Attachments switches by name) or a transform of the model itself (quantiser, mask,
// compander). What attach functions return, how to detach and how to fold: nn/attachment.hpp.
// Families implement these interfaces; nn never needs to know them. Compositions come for free:
// a quantiser after a compander, a LoRA side path over a quantised base.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/parameter.hpp"
#include "weft/core/autograd/tape.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

/// Where a weight transform sits in a layer's chain (nn::Linear::add_transform keeps the chain
/// sorted by stage, stable within a stage).
enum class TransformStage : int {
  reparam = 0,    ///< a reparameterisation of the stored weight (the compander); at most one
  weight = 1,     ///< a general map of the weight (the default; BoneAffine)
  quantizer = 2,  ///< a weight quantiser (StatsQ, LSQ); at most one
  mask = 3,       ///< a pruning mask W -> W * M, last so that pruned entries stay exactly zero
};

inline const char* to_string(TransformStage s) noexcept {
  switch (s) {
    case TransformStage::reparam: return "reparam";
    case TransformStage::weight: return "weight";
    case TransformStage::quantizer: return "quantizer";
    case TransformStage::mask: return "mask";
  }
  return "?";
}

/// What every attached object has: an on/off switch and its kind. Not copyable through the
/// base (attached objects live in shared_ptrs).
class Attachable {
 public:
  virtual ~Attachable() = default;
  /// False while switched off: nn::Linear skips it in forward, effective_weight and fold.
  bool enabled() const noexcept { return enabled_; }
  void set_enabled(bool on) noexcept { enabled_ = on; }
  /// True for adapters (LoRA family, Bone family, PHM / bottleneck adapters), false for
  /// transforms of the model itself (quantisers, masks, the compander).
  virtual bool is_adapter() const { return false; }
  /// True while the object's effect lives in the layer's stored weight (a merged adapter,
  /// peft::merge): it then adds nothing in forward, and the weight already holds it.
  virtual bool in_weight() const { return false; }
  /// Training mode (dropout on or off); a no-op for objects without one.
  virtual void set_training(bool /*on*/) {}

 private:
  bool enabled_ = true;
};

/// Where an attached object sits on its layer.
enum class Slot { transform, side, input, output };

inline const char* to_string(Slot s) noexcept {
  switch (s) {
    case Slot::transform: return "weight transform";
    case Slot::side: return "side path";
    case Slot::input: return "input transform";
    case Slot::output: return "output adapter";
  }
  return "?";
}

/// A differentiable map from the stored weight to the weight a layer uses.
template <class T>
class WeightTransform : public Attachable {
 public:
  /// Short name, used in parameter names and error messages ("statsq", "compander").
  virtual std::string name() const = 0;
  /// Its place in the canonical order (TransformStage::weight unless overridden).
  virtual TransformStage stage() const { return TransformStage::weight; }
  /// True for a transform that reads or merges into the stored weight itself (BoneAffine's merge
  /// writes W (I + B) + B into it): only transforms of the same kind may come before it.
  virtual bool needs_plain_weight() const { return false; }
  /// The transformed weight, recorded on w's tape (use Tape::record for custom backwards).
  virtual Var<T> apply(const Var<T>& w) = 0;
  /// The transform's own parameters (learnable scales, ...), with names relative to it.
  virtual void parameters(std::vector<std::pair<std::string, Parameter<T>>>& /*out*/) {}
  /// The transformed weight as a plain tensor, for deployment. The default runs apply() on a
  /// scratch tape without recording gradients and copies the result.
  virtual Tensor<T> fold(const Tensor<T>& w) {
    Tape<T> tape;
    no_grad ng;
    return apply(tape.constant(w)).value().clone();
  }
};

/// A path that adds f(x) to a layer's output, x being the layer's input.
template <class T>
class SidePath : public Attachable {
 public:
  virtual std::string name() const = 0;
  /// f(x), of the layer's output shape.
  virtual Var<T> forward(const Var<T>& x) = 0;
  virtual void parameters(std::vector<std::pair<std::string, Parameter<T>>>& /*out*/) {}
  /// True when f(x) = x dW^T for a weight-shaped dW (a linear path, without dropout at
  /// inference): nn::fold can then merge it into the layer's weight.
  virtual bool is_linear() const { return false; }
  /// The (out, in) dW of a linear path as it contributes now (zeros while it contributes
  /// nothing, e.g. a merged LoRA). Only called when is_linear().
  virtual Tensor<T> linear_delta() const { return Tensor<T>(); }
};

/// A differentiable map of a layer's input, applied before the product (shape preserved).
template <class T>
class InputTransform : public Attachable {
 public:
  virtual std::string name() const = 0;
  virtual Var<T> apply(const Var<T>& x) = 0;
  virtual void parameters(std::vector<std::pair<std::string, Parameter<T>>>& /*out*/) {}
};

/// A differentiable map of a layer's output, applied after the product and the side paths
/// (shape preserved). An adapter with a residual returns y + f(y) itself.
template <class T>
class OutputAdapter : public Attachable {
 public:
  virtual std::string name() const = 0;
  virtual Var<T> forward(const Var<T>& y) = 0;
  virtual void parameters(std::vector<std::pair<std::string, Parameter<T>>>& /*out*/) {}
};

/// A forward hook: sees the input the product used (after input transforms) and the output.
template <class T>
using ForwardHook = std::function<void(const Tensor<T>& input, const Tensor<T>& output)>;

}  // namespace nn
WEFT_NAMESPACE_END
