// weft/nn/attachment.hpp - the record every attach function returns, and named attachments.
//
// Every family's attach_* (peft::attach_lora / attach_bone_*, phm::add_adapters,
// quant::quantize_linears with weight and activation quantisers, reparam::attach_compander,
// prune::apply_masks) returns an nn::Attachment<T> (or a family record derived from it that adds
// typed views): the technique, an optional name, and one entry per attached object with the
// layer's dotted name, the layer, where the object sits (weight transform, side path, input
// transform, output adapter) and, when attaching rewrote the stored weight (PiSSA / OLoRA
// residual, the compander's v = Psi^-1(w), a pruning mask writing W * M), a copy of the weight
// (and bias) as it was plus a fingerprint of what attach left.
//
//   auto lora = peft::attach_lora(model, lo, rng, {"q_proj", "v_proj"});
//   auto q    = quant::quantize_linears(model, quant::statsq_factory<float>(so));
//   std::vector<nn::Attachment<float>> all{lora, q};  // any family's record
//   q.detach();     // undo: objects removed by identity, snapshots restored, bit for bit
//   lora.detach();
//
// detach = undo; nn::fold (fold.hpp) = bake. detach() restores the model exactly (stored
// weights and forward output bit-identical to before attach), provided nothing changed the
// stored weights it rewrote: if the fingerprint differs (the weight was trained, or a later
// attachment still attached rewrote it) detach throws a ConfigError naming the layer and changes
// nothing: detach the later attachments first (reverse order), or fold() to keep trained weights.
// An object no longer attached (folded, unloaded) is an error as well.
//
// Attachments<T> holds records by name, as PEFT's set_adapter / disable_adapter /
// delete_adapter: set_active(name) enables that record's adapters and disables every other
// adapter record (quantisers, masks and companders are never switched); disable() returns a
// guard under which every adapter is off (the model computes its stored base bit for bit: note
// PiSSA / OLoRA bases hold W_res) and which restores the previous states; remove(name) detaches
// and forgets. Records hold raw pointers to the model's layers: do not move the model.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/nn/linear.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

namespace detail {
/// FNV-1a over the bytes of a tensor and its shape: a cheap check that a weight is unchanged.
template <class T>
std::uint64_t fingerprint(const Tensor<T>& t) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const unsigned char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  if (!t.defined()) return h;
  for (int i = 0; i < t.rank(); ++i) {
    const index_t d = t.shape()[i];
    mix(reinterpret_cast<const unsigned char*>(&d), sizeof d);
  }
  mix(reinterpret_cast<const unsigned char*>(t.data()), std::size_t(t.numel()) * sizeof(T));
  return h;
}
}  // namespace detail

/// One attached object of a record: at most one of transform / side / input / output is set (none:
/// a pure edit of the stored weight, e.g. masks applied without a transform).
template <class T>
struct AttachedObject {
  std::string layer_name;  ///< dotted name in the model ("" for the model itself)
  Linear<T>* layer = nullptr;
  Slot slot = Slot::transform;
  std::shared_ptr<WeightTransform<T>> transform;
  std::shared_ptr<SidePath<T>> side;
  std::shared_ptr<InputTransform<T>> input;
  std::shared_ptr<OutputAdapter<T>> output;
  Tensor<T> weight_before;  ///< the stored weight before attach rewrote it (undefined: untouched)
  Tensor<T> bias_before;    ///< the bias before attach rewrote it (undefined: untouched)
  std::uint64_t weight_after = 0, bias_after = 0;  ///< fingerprints of what attach left

  Attachable* object() const noexcept {
    switch (slot) {
      case Slot::transform: return transform.get();
      case Slot::side: return side.get();
      case Slot::input: return input.get();
      case Slot::output: return output.get();
    }
    return nullptr;
  }
  std::string object_name() const {
    if (!object()) return "weight edit";
    switch (slot) {
      case Slot::transform: return transform->name();
      case Slot::side: return side->name();
      case Slot::input: return input->name();
      case Slot::output: return output->name();
    }
    return "?";
  }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) const {
    if (!object()) return;
    switch (slot) {
      case Slot::transform: transform->parameters(out); break;
      case Slot::side: side->parameters(out); break;
      case Slot::input: input->parameters(out); break;
      case Slot::output: output->parameters(out); break;
    }
  }
};

/// What every attach function returns (see the file comment). Copies share the attached objects.
template <class T>
class Attachment {
 public:
  Attachment() = default;
  explicit Attachment(std::string technique, std::string name = {}) : technique_(std::move(technique)), name_(std::move(name)) {}

  /// "lora", "statsq", "compander", "mask", "phm_adapter", ... (set by the attach function).
  const std::string& technique() const noexcept { return technique_; }
  /// The attachment's name (empty unless set; Attachments::add sets it).
  const std::string& name() const noexcept { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }
  const std::vector<AttachedObject<T>>& entries() const noexcept { return entries_; }
  /// True until detach() succeeds.
  bool attached() const noexcept { return attached_; }

  /// The dotted names of the layers it touches, each once, in attach order.
  std::vector<std::string> layer_names() const {
    std::vector<std::string> out;
    for (auto& e : entries_) {
      bool seen = false;
      for (auto& n : out) seen = seen || n == e.layer_name;
      if (!seen) out.push_back(e.layer_name);
    }
    return out;
  }
  /// The attached objects' own parameters (adapter factors, learnable scales; not the layers'),
  /// each once.
  std::vector<Parameter<T>> parameters() const {
    std::vector<std::pair<std::string, Parameter<T>>> named;
    for (auto& e : entries_) e.parameters(named);
    std::vector<Parameter<T>> out;
    for (auto& p : named) {
      bool seen = false;  // a shared parameter (a PHM rule) once
      for (auto& q : out) seen = seen || q == p.second;
      if (!seen) out.push_back(p.second);
    }
    return out;
  }
  /// Scalars in parameters().
  index_t num_trainable() const {
    index_t n = 0;
    for (auto& p : parameters()) n += p.numel();
    return n;
  }
  /// True when any attached object is an adapter (Attachable::is_adapter).
  bool is_adapter() const {
    for (auto& e : entries_)
      if (e.object() && e.object()->is_adapter()) return true;
    return false;
  }
  /// Switches every attached object on or off (a disabled object is skipped by nn::Linear).
  void set_enabled(bool on) {
    for (auto& e : entries_)
      if (e.object()) e.object()->set_enabled(on);
  }
  /// True when every attached object is enabled.
  bool enabled() const {
    for (auto& e : entries_)
      if (e.object() && !e.object()->enabled()) return false;
    return true;
  }

  /// Removes every attached object from its layer (by identity) and restores the weights attach
  /// rewrote, in reverse order. Checks everything first: throws a ConfigError naming
  /// "nn::Attachment::detach", model untouched, when already detached, when an object is no longer
  /// on its layer, or when a rewritten weight changed since attach.
  void detach() {
    const char* fn = "nn::Attachment::detach";
    WEFT_CHECK(attached_, config, fn, "expected an attached ", describe(), ", got one detached already");
    for (auto& e : entries_) {
      WEFT_CHECK(!e.object() || e.layer->holds(e.object()), config, fn, "expected the ", to_string(e.slot), " '", e.object_name(),
                 "' of ", describe(), " on layer '", e.layer_name,
                 "', got it no longer attached (folded or unloaded?); nothing was detached");
      const bool w_changed = e.weight_before.defined() && detail::fingerprint(e.layer->weight.value()) != e.weight_after;
      const bool b_changed = e.bias_before.defined() && detail::fingerprint(e.layer->bias.value()) != e.bias_after;
      WEFT_CHECK(!w_changed && !b_changed, config, fn, "expected the stored ", w_changed ? "weight" : "bias", " of layer '",
                 e.layer_name, "' as ", describe(),
                 " left it, got it changed since (trained, or rewritten by a later attachment that is still attached); "
                 "detach the later attachments first, or fold() to keep the trained weights; nothing was detached");
    }
    for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
      if (it->object()) it->layer->remove(it->object());
      if (it->weight_before.defined()) it->layer->weight.value().copy_from(it->weight_before);
      if (it->bias_before.defined()) it->layer->bias.value().copy_from(it->bias_before);
    }
    attached_ = false;
  }

  /// "lora 'a'" or "lora" (for messages).
  std::string describe() const { return technique_ + (name_.empty() ? std::string() : " '" + name_ + "'"); }

  // -- building a record (for attach functions) ----------------------------------------------
  /// Records an attached object; `weight_before` / `bias_before` are the stored values before
  /// attach rewrote them (undefined when untouched). Call seal() when attaching is complete.
  void record(std::string layer_name, Linear<T>& layer, std::shared_ptr<WeightTransform<T>> t, Tensor<T> weight_before = {},
              Tensor<T> bias_before = {}) {
    AttachedObject<T> e = make(std::move(layer_name), layer, Slot::transform, std::move(weight_before), std::move(bias_before));
    e.transform = std::move(t);
    entries_.push_back(std::move(e));
  }
  void record(std::string layer_name, Linear<T>& layer, std::shared_ptr<SidePath<T>> s, Tensor<T> weight_before = {},
              Tensor<T> bias_before = {}) {
    AttachedObject<T> e = make(std::move(layer_name), layer, Slot::side, std::move(weight_before), std::move(bias_before));
    e.side = std::move(s);
    entries_.push_back(std::move(e));
  }
  void record(std::string layer_name, Linear<T>& layer, std::shared_ptr<InputTransform<T>> t) {
    AttachedObject<T> e = make(std::move(layer_name), layer, Slot::input, {}, {});
    e.input = std::move(t);
    entries_.push_back(std::move(e));
  }
  void record(std::string layer_name, Linear<T>& layer, std::shared_ptr<OutputAdapter<T>> a) {
    AttachedObject<T> e = make(std::move(layer_name), layer, Slot::output, {}, {});
    e.output = std::move(a);
    entries_.push_back(std::move(e));
  }
  /// Records an edit of the stored weight (and bias) without an attached object.
  void record_edit(std::string layer_name, Linear<T>& layer, Tensor<T> weight_before, Tensor<T> bias_before = {}) {
    entries_.push_back(make(std::move(layer_name), layer, Slot::transform, std::move(weight_before), std::move(bias_before)));
  }
  /// Swaps the side path `old` of the record for `s` (a family function that replaced the object
  /// on its layer, e.g. peft::convert_to_lora) and takes a new fingerprint of that layer's weight
  /// when the record snapshots it (the function rewrote it). Returns false when `old` is not in
  /// the record.
  bool replace(const Attachable* old, std::shared_ptr<SidePath<T>> s) {
    for (auto& e : entries_)
      if (e.slot == Slot::side && e.side.get() == old) {
        e.side = std::move(s);
        if (e.weight_before.defined()) e.weight_after = detail::fingerprint(e.layer->weight.value());
        if (e.bias_before.defined()) e.bias_after = detail::fingerprint(e.layer->bias.value());
        return true;
      }
    return false;
  }
  /// Takes the fingerprints of the weights attach rewrote (call after the last change).
  void seal() {
    for (auto& e : entries_) {
      if (e.weight_before.defined()) e.weight_after = detail::fingerprint(e.layer->weight.value());
      if (e.bias_before.defined()) e.bias_after = detail::fingerprint(e.layer->bias.value());
    }
  }

 private:
  static AttachedObject<T> make(std::string layer_name, Linear<T>& layer, Slot slot, Tensor<T> wb, Tensor<T> bb) {
    AttachedObject<T> e;
    e.layer_name = std::move(layer_name);
    e.layer = &layer;
    e.slot = slot;
    e.weight_before = std::move(wb);
    e.bias_before = std::move(bb);
    return e;
  }

  std::string technique_;
  std::string name_;
  std::vector<AttachedObject<T>> entries_;
  bool attached_ = true;
};

/// Restores the enabled flags it saved when destroyed (Attachments::disable).
class EnabledStateGuard {
 public:
  EnabledStateGuard() = default;
  explicit EnabledStateGuard(std::vector<std::pair<std::shared_ptr<Attachable>, bool>> saved) : saved_(std::move(saved)) {}
  EnabledStateGuard(EnabledStateGuard&& o) noexcept : saved_(std::move(o.saved_)) { o.saved_.clear(); }
  EnabledStateGuard& operator=(EnabledStateGuard&& o) noexcept {
    if (this != &o) {
      restore();
      saved_ = std::move(o.saved_);
      o.saved_.clear();
    }
    return *this;
  }
  EnabledStateGuard(const EnabledStateGuard&) = delete;
  EnabledStateGuard& operator=(const EnabledStateGuard&) = delete;
  ~EnabledStateGuard() { restore(); }
  /// Restores now (the destructor then does nothing).
  void restore() noexcept {
    for (auto& s : saved_) s.first->set_enabled(s.second);
    saved_.clear();
  }

 private:
  std::vector<std::pair<std::shared_ptr<Attachable>, bool>> saved_;
};

/// Named attachments of one model (see the file comment).
template <class T>
class Attachments {
 public:
  /// Adds `rec` under `name` (also set as the record's name). Its state is kept: add does not
  /// enable or disable anything. An empty or duplicate name, or a detached record, is an error.
  void add(const std::string& name, Attachment<T> rec) {
    const char* fn = "nn::Attachments::add";
    WEFT_CHECK(!name.empty(), config, fn, "expected a non-empty name, got \"\"");
    WEFT_CHECK(find(name) == nullptr, config, fn, "expected a new name, got '", name, "' which is taken; names are ",
               list());
    WEFT_CHECK(rec.attached(), config, fn, "expected an attached record for '", name, "', got a detached one");
    rec.set_name(name);
    items_.push_back(std::move(rec));
  }
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  /// The record called `name` (ConfigError naming the known names otherwise).
  Attachment<T>& get(const std::string& name) { return *at(name, "nn::Attachments::get"); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (auto& r : items_) out.push_back(r.name());
    return out;
  }
  std::size_t size() const noexcept { return items_.size(); }

  /// Enables every object of the adapter record `name` and disables every other adapter record
  /// (non-adapter records are left as they are). `name` must be an adapter record.
  void set_active(const std::string& name) {
    const char* fn = "nn::Attachments::set_active";
    Attachment<T>* r = at(name, fn);
    WEFT_CHECK(r->is_adapter(), config, fn, "expected an adapter record, got '", name, "' (", r->technique(),
               ", not an adapter: enable it with set_enabled)");
    for (auto& o : items_)
      if (o.is_adapter()) o.set_enabled(&o == r);
  }
  /// Disables every adapter record until the guard goes (its destructor restores each object's
  /// previous state). Non-adapter records (quantisers, masks, companders) stay as they are.
  [[nodiscard]] EnabledStateGuard disable() {
    std::vector<std::pair<std::shared_ptr<Attachable>, bool>> saved;
    for (auto& r : items_)
      if (r.is_adapter())
        for (auto& e : r.entries())
          if (e.object()) saved.emplace_back(shared(e), e.object()->enabled());
    for (auto& s : saved) s.first->set_enabled(false);
    return EnabledStateGuard(std::move(saved));
  }
  /// Detaches the record `name` (Attachment::detach, with its checks) and forgets it. A throwing
  /// detach keeps the record.
  void remove(const std::string& name) {
    Attachment<T>* r = at(name, "nn::Attachments::remove");
    r->detach();
    for (std::size_t i = 0; i < items_.size(); ++i)
      if (&items_[i] == r) {
        items_.erase(items_.begin() + std::ptrdiff_t(i));
        break;
      }
  }

 private:
  static std::shared_ptr<Attachable> shared(const AttachedObject<T>& e) {
    switch (e.slot) {
      case Slot::transform: return e.transform;
      case Slot::side: return e.side;
      case Slot::input: return e.input;
      case Slot::output: return e.output;
    }
    return nullptr;
  }
  const Attachment<T>* find(const std::string& name) const {
    for (auto& r : items_)
      if (r.name() == name) return &r;
    return nullptr;
  }
  Attachment<T>* at(const std::string& name, const char* fn) {
    const Attachment<T>* r = find(name);
    WEFT_CHECK(r != nullptr, config, fn, "expected a known attachment name, got '", name, "'; names are ", list());
    return const_cast<Attachment<T>*>(r);
  }
  std::string list() const {
    std::string s = "{";
    for (std::size_t i = 0; i < items_.size(); ++i) s += (i ? ", " : "") + items_[i].name();
    return s + "}";
  }
  std::vector<Attachment<T>> items_;
};

}  // namespace nn
WEFT_NAMESPACE_END
