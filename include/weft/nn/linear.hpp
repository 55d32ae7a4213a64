// weft/nn/linear.hpp - Linear<T>: y = x W^T + b, with attachable weight transforms, side paths
// and forward hooks (see attach.hpp).
//
// W has shape (out, in) as in PyTorch, so specs written against PyTorch read directly. The
// default initialisation is PyTorch's nn.Linear: W ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming
// uniform with a = sqrt(5)) and b ~ U(-1/sqrt(in), 1/sqrt(in)).
//
// forward(x): x' = in_m(...in_1(x)); W' = t_k(...t_1(W)); y = x' W'^T + b + sum_j side_j(x);
// y = out_l(...out_1(y)); hooks see (x', y). Every attachment keeps the shapes it is given.
// A disabled attachment (Attachable::set_enabled(false)) is skipped everywhere (forward,
// effective_weight, folded_weight, fold), so with all of them disabled the layer computes its base
// output bit for bit. remove(obj) takes any attached object off by identity (nn/attachment.hpp's
// records detach through it).
// The weight transforms t_1..t_k are kept in the canonical order of TransformStage (attach.hpp):
// reparam -> weight -> quantizer -> mask, stable within a stage, whatever order they were added
// in. add_transform refuses compositions that cannot work (a second quantiser or compander,
// anything before a transform that needs the plain weight) and leaves the chain unchanged.
#pragma once

#include <cmath>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/rng.hpp"
#include "weft/nn/attach.hpp"
#include "weft/nn/hooks.hpp"
#include "weft/nn/module.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

template <class T>
class Linear : public Module<T> {
 public:
  Parameter<T> weight;  ///< (out, in)
  Parameter<T> bias;    ///< (out), undefined when built without bias

  /// An empty layer (no parameters); assign a constructed one before use.
  Linear() = default;
  Linear(index_t in_features, index_t out_features, Rng& rng, bool with_bias = true) {
    WEFT_CHECK(in_features > 0 && out_features > 0, shape, "nn::Linear",
               "expected positive in and out features, got in = ", in_features, ", out = ", out_features);
    Tensor<T> w(Shape{out_features, in_features});
    const double bound = 1.0 / std::sqrt(double(in_features));
    init::uniform(w, -bound, bound, rng);
    weight = Parameter<T>(w, "weight");
    if (with_bias) {
      Tensor<T> b(Shape{out_features});
      init::uniform(b, -bound, bound, rng);
      bias = Parameter<T>(b, "bias");
    }
  }

  index_t in_features() const { return weight.shape()[1]; }
  index_t out_features() const { return weight.shape()[0]; }
  bool has_bias() const noexcept { return bias.defined(); }

  Var<T> forward(const Var<T>& x) {
    WEFT_CHECK(weight.defined(), config, "nn::Linear::forward", "expected a constructed layer, got an empty Linear");
    WEFT_CHECK(x.rank() >= 1 && x.shape().last() == in_features(), shape, "nn::Linear::forward",
               "expected input of shape (..., ", in_features(), "), got ", x.shape());
    Tape<T>& t = x.tape();
    Var<T> xin = x;
    for (auto& it : input_transforms_) {
      if (!it->enabled()) continue;
      Var<T> nx = it->apply(xin);
      WEFT_CHECK(nx.shape() == xin.shape(), shape, "nn::Linear::forward", "expected input transform '", it->name(),
                 "' to keep the shape ", xin.shape(), ", got ", nx.shape());
      xin = nx;
    }
    Var<T> w = effective_weight(t);
    Var<T> y = bias.defined() ? linear(xin, w, t.param(bias)) : linear(xin, w);
    for (auto& s : side_paths_) {
      if (!s->enabled()) continue;
      Var<T> d = s->forward(x);
      WEFT_CHECK(d.shape() == y.shape(), shape, "nn::Linear::forward", "expected side path '", s->name(),
                 "' to return shape ", y.shape(), ", got ", d.shape());
      y = y + d;
    }
    for (auto& a : output_adapters_) {
      if (!a->enabled()) continue;
      Var<T> ny = a->forward(y);
      WEFT_CHECK(ny.shape() == y.shape(), shape, "nn::Linear::forward", "expected output adapter '", a->name(),
                 "' to keep the shape ", y.shape(), ", got ", ny.shape());
      y = ny;
    }
    hooks_.run(xin.value(), y.value());
    return y;
  }
  Var<T> operator()(const Var<T>& x) { return forward(x); }

  /// The weight as the product sees it: the stored parameter through every transform.
  Var<T> effective_weight(Tape<T>& t) {
    Var<T> w = t.param(weight);
    for (auto& tr : transforms_) {
      if (!tr->enabled()) continue;
      Var<T> nw = tr->apply(w);
      WEFT_CHECK(nw.shape() == w.shape(), shape, "nn::Linear", "expected weight transform '", tr->name(),
                 "' to keep the weight shape ", w.shape(), ", got ", nw.shape());
      w = nw;
    }
    return w;
  }
  /// The effective weight as a plain tensor (every enabled transform folded in order).
  Tensor<T> folded_weight() {
    Tensor<T> w = weight.value().clone();
    for (auto& tr : transforms_)
      if (tr->enabled()) w = tr->fold(w);
    return w;
  }
  /// Bakes the enabled transforms into the stored weight and removes them (disabled ones stay).
  /// Only the transform chain: nn::fold (attachment.hpp) also merges linear side paths.
  void fold() {
    Tensor<T> w = folded_weight();
    weight.value().copy_from(w);
    std::vector<std::shared_ptr<WeightTransform<T>>> keep;
    for (auto& tr : transforms_)
      if (!tr->enabled()) keep.push_back(tr);
    transforms_ = std::move(keep);
  }

  /// Inserts a weight transform at its stage's place in the chain (after the transforms of the
  /// same or an earlier stage, before those of a later one). Throws, chain unchanged, when
  /// check_transform does.
  void add_transform(std::shared_ptr<WeightTransform<T>> t) {
    WEFT_CHECK(t != nullptr, config, "nn::Linear::add_transform", "expected a transform, got nullptr");
    check_transform(*t, "nn::Linear::add_transform");
    transforms_.insert(transforms_.begin() + std::ptrdiff_t(insert_position(t->stage())), std::move(t));
  }
  /// Throws a ConfigError naming `fn` when t cannot join this layer's chain: a second transform
  /// of an exclusive stage (reparam, quantizer), or a chain in which a transform that needs the
  /// plain weight (needs_plain_weight) would follow one that does not. Changes nothing. Families
  /// call it on every layer before attaching to any.
  void check_transform(const WeightTransform<T>& t, const char* fn) const {
    const TransformStage st = t.stage();
    if (st == TransformStage::reparam || st == TransformStage::quantizer)
      for (auto& e : transforms_)
        WEFT_CHECK(e->stage() != st, config, fn, "expected at most one ", to_string(st), " transform per weight, got '",
                   t.name(), "' on a weight that already carries '", e->name(), "'");
    const std::size_t at = insert_position(st);
    if (t.needs_plain_weight())  // only transforms of the same kind before it (they merge in order)
      for (std::size_t i = 0; i < at; ++i)
        WEFT_CHECK(transforms_[i]->needs_plain_weight(), config, fn, "expected '", t.name(),
                   "' to act on the plain stored weight, got it after '", transforms_[i]->name(), "' (",
                   to_string(transforms_[i]->stage()), " stage)");
    else
      for (std::size_t i = at; i < transforms_.size(); ++i)
        WEFT_CHECK(!transforms_[i]->needs_plain_weight(), config, fn, "expected no transform before '",
                   transforms_[i]->name(), "' (it acts on the plain stored weight), got '", t.name(), "' (",
                   to_string(st), " stage)");
  }
  const std::vector<std::shared_ptr<WeightTransform<T>>>& transforms() const noexcept { return transforms_; }
  void clear_transforms() { transforms_.clear(); }
  /// Removes the transform `t` (by identity); returns whether it was attached.
  bool remove_transform(const WeightTransform<T>* t) { return erase_one(transforms_, t); }

  /// Adds a side path whose output is added to the layer's.
  void add_side_path(std::shared_ptr<SidePath<T>> s) {
    WEFT_CHECK(s != nullptr, config, "nn::Linear::add_side_path", "expected a side path, got nullptr");
    side_paths_.push_back(std::move(s));
  }
  const std::vector<std::shared_ptr<SidePath<T>>>& side_paths() const noexcept { return side_paths_; }
  /// Removes the side path `s` (compared by identity); returns whether it was attached.
  bool remove_side_path(const SidePath<T>* s) { return erase_one(side_paths_, s); }
  void clear_side_paths() { side_paths_.clear(); }

  /// Appends an input transform (applied after those already attached).
  void add_input_transform(std::shared_ptr<InputTransform<T>> t) {
    WEFT_CHECK(t != nullptr, config, "nn::Linear::add_input_transform", "expected a transform, got nullptr");
    input_transforms_.push_back(std::move(t));
  }
  const std::vector<std::shared_ptr<InputTransform<T>>>& input_transforms() const noexcept { return input_transforms_; }
  void clear_input_transforms() { input_transforms_.clear(); }
  /// Removes the input transform `t` (by identity); returns whether it was attached.
  bool remove_input_transform(const InputTransform<T>* t) { return erase_one(input_transforms_, t); }

  /// Appends an output adapter (applied after those already attached).
  void add_output_adapter(std::shared_ptr<OutputAdapter<T>> a) {
    WEFT_CHECK(a != nullptr, config, "nn::Linear::add_output_adapter", "expected an adapter, got nullptr");
    output_adapters_.push_back(std::move(a));
  }
  const std::vector<std::shared_ptr<OutputAdapter<T>>>& output_adapters() const noexcept { return output_adapters_; }
  void clear_output_adapters() { output_adapters_.clear(); }
  /// Removes the output adapter `a` (by identity); returns whether it was attached.
  bool remove_output_adapter(const OutputAdapter<T>* a) { return erase_one(output_adapters_, a); }

  /// Whether `a` is attached to this layer in any of the four places (by identity).
  bool holds(const Attachable* a) const noexcept {
    return find_in(transforms_, a) || find_in(side_paths_, a) || find_in(input_transforms_, a) ||
           find_in(output_adapters_, a);
  }
  /// Removes `a` from whichever place holds it (by identity); returns whether it was attached.
  bool remove(const Attachable* a) {
    return erase_any(transforms_, a) || erase_any(side_paths_, a) || erase_any(input_transforms_, a) ||
           erase_any(output_adapters_, a);
  }

  /// Registers a hook called with (input, output) values after each forward; the handle
  /// removes it (hooks.hpp). A copy of the layer runs copies of its hooks, not owned by handles.
  [[nodiscard]] HookHandle add_forward_hook(ForwardHook<T> h) { return hooks_.add(std::move(h)); }
  std::size_t num_forward_hooks() const noexcept { return hooks_.size(); }

  void visit(Members<T>& m) override {
    m.param("weight", weight);
    m.param("bias", bias);
    std::vector<std::pair<std::string, Parameter<T>>> extra;
    for (std::size_t i = 0; i < transforms_.size(); ++i) {
      extra.clear();
      transforms_[i]->parameters(extra);
      for (auto& e : extra) m.param("transforms." + std::to_string(i) + "." + transforms_[i]->name() + "." + e.first, e.second);
    }
    for (std::size_t i = 0; i < side_paths_.size(); ++i) {
      extra.clear();
      side_paths_[i]->parameters(extra);
      for (auto& e : extra) m.param("side." + std::to_string(i) + "." + side_paths_[i]->name() + "." + e.first, e.second);
    }
    for (std::size_t i = 0; i < input_transforms_.size(); ++i) {
      extra.clear();
      input_transforms_[i]->parameters(extra);
      for (auto& e : extra)
        m.param("inputs." + std::to_string(i) + "." + input_transforms_[i]->name() + "." + e.first, e.second);
    }
    for (std::size_t i = 0; i < output_adapters_.size(); ++i) {
      extra.clear();
      output_adapters_[i]->parameters(extra);
      for (auto& e : extra)
        m.param("adapters." + std::to_string(i) + "." + output_adapters_[i]->name() + "." + e.first, e.second);
    }
  }

 private:
  std::vector<std::shared_ptr<WeightTransform<T>>> transforms_;
  std::vector<std::shared_ptr<SidePath<T>>> side_paths_;
  std::vector<std::shared_ptr<InputTransform<T>>> input_transforms_;
  std::vector<std::shared_ptr<OutputAdapter<T>>> output_adapters_;
  HookList<ForwardHook<T>> hooks_;

  template <class P, class Q>
  static bool erase_one(std::vector<std::shared_ptr<P>>& v, const Q* p) {
    for (std::size_t i = 0; i < v.size(); ++i)
      if (v[i].get() == p) {
        v.erase(v.begin() + std::ptrdiff_t(i));
        return true;
      }
    return false;
  }
  template <class P>
  static bool find_in(const std::vector<std::shared_ptr<P>>& v, const Attachable* a) noexcept {
    for (auto& e : v)
      if (static_cast<const Attachable*>(e.get()) == a) return true;
    return false;
  }
  template <class P>
  static bool erase_any(std::vector<std::shared_ptr<P>>& v, const Attachable* a) {
    for (std::size_t i = 0; i < v.size(); ++i)
      if (static_cast<const Attachable*>(v[i].get()) == a) {
        v.erase(v.begin() + std::ptrdiff_t(i));
        return true;
      }
    return false;
  }

  /// Index at which a transform of stage st goes: after every transform of stage <= st.
  std::size_t insert_position(TransformStage st) const noexcept {
    std::size_t at = 0;
    for (std::size_t i = 0; i < transforms_.size(); ++i)
      if (int(transforms_[i]->stage()) <= int(st)) at = i + 1;
    return at;
  }
};

/// Every Linear inside `model` (the model itself included) with its dotted name ("" for the
/// model itself), depth first in the order of named_parameters(); a layer reachable twice is
/// listed once. The pointers stay valid as long as the model is not moved. (The families'
/// `find_linears` / `linear_layers` are this function.)
/// It recognises a Linear by type (dynamic_cast) on purpose: it walks the model itself, whose
/// visit() hands out children as plain Module<T>&, and no record exists yet. It is where every
/// record starts (nn::Selector::resolve); what was attached afterwards is found through the
/// record, never by type.
template <class T>
std::vector<std::pair<std::string, Linear<T>*>> find_linears(Module<T>& model) {
  struct Walk : Members<T> {
    std::string prefix;
    std::vector<std::pair<std::string, Linear<T>*>> out;
    void param(const std::string&, Parameter<T>&) override {}
    void add(const std::string& name, Linear<T>* l) {
      for (const auto& e : out)
        if (e.second == l) return;
      out.emplace_back(name, l);
    }
    void child(const std::string& name, Module<T>& m) override {
      const std::string full = prefix + name;
      if (auto* lin = dynamic_cast<Linear<T>*>(&m)) add(full, lin);
      const std::string saved = prefix;
      prefix = full + ".";
      m.visit(*this);
      prefix = saved;
    }
  } w;
  if (auto* lin = dynamic_cast<Linear<T>*>(&model)) w.add("", lin);
  model.visit(w);
  return std::move(w.out);
}

}  // namespace nn
WEFT_NAMESPACE_END
