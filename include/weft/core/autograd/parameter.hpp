// weft/core/autograd/parameter.hpp - Parameter<T>: a named, trainable tensor with its gradient.
//
// A Parameter is a handle (copies share the same value and gradient), so modules can be moved
// and optimisers, hooks and adapters can hold parameters without dangling pointers. The
// gradient has the value's shape, is allocated with it and only ever accumulated into
// (tape backward adds to it; Optimizer::zero_grad clears it).
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN

template <class T>
class Parameter {
 public:
  /// An undefined parameter (defined() is false).
  Parameter() = default;
  /// Takes `value` (the handle, no copy) and allocates a zero gradient of the same shape.
  explicit Parameter(Tensor<T> value, std::string name = {}, bool requires_grad = true)
      : s_(std::make_shared<State>()) {
    WEFT_CHECK(value.defined(), shape, "Parameter", "expected a defined tensor, got an undefined one");
    s_->grad = Tensor<T>(value.shape());
    s_->value = std::move(value);
    s_->name = std::move(name);
    s_->requires_grad = requires_grad;
  }

  bool defined() const noexcept { return s_ != nullptr; }
  Tensor<T>& value() { return state("value").value; }
  const Tensor<T>& value() const { return state("value").value; }
  Tensor<T>& grad() { return state("grad").grad; }
  const Tensor<T>& grad() const { return state("grad").grad; }
  const Shape& shape() const { return state("shape").value.shape(); }
  index_t numel() const { return state("numel").value.numel(); }
  const std::string& name() const { return state("name").name; }
  void set_name(std::string n) { state("set_name").name = std::move(n); }
  bool requires_grad() const { return state("requires_grad").requires_grad; }
  void set_requires_grad(bool r) { state("set_requires_grad").requires_grad = r; }
  void zero_grad() { state("zero_grad").grad.set_zero(); }

  /// Replaces the value by `v` (any shape); the gradient is reallocated as zeros when the
  /// shape changes. Every handle sees the new value.
  void set_value(Tensor<T> v) {
    State& s = state("set_value");
    WEFT_CHECK(v.defined(), shape, "Parameter::set_value", "expected a defined tensor, got an undefined one");
    if (v.shape() != s.value.shape()) s.grad = Tensor<T>(v.shape());
    s.value = std::move(v);
  }

  /// Identity of the shared state (equal for copies of the same parameter).
  const void* id() const noexcept { return s_.get(); }
  friend bool operator==(const Parameter& a, const Parameter& b) noexcept { return a.s_ == b.s_; }
  friend bool operator!=(const Parameter& a, const Parameter& b) noexcept { return a.s_ != b.s_; }

 private:
  struct State {
    Tensor<T> value, grad;
    std::string name;
    bool requires_grad = true;
  };
  State& state(const char* what) const {
    WEFT_CHECK(s_ != nullptr, config, "Parameter", "expected a defined parameter in ", what,
               "(), got an undefined (default-constructed) one");
    return *s_;
  }
  std::shared_ptr<State> s_;
};

WEFT_NAMESPACE_END
