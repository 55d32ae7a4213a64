// weft/nn/module.hpp - Module<T>: the base of every layer, and parameter utilities.
//
// A module lists its parameters and child modules in one method, visit(Members&). Everything
// generic is built on it: parameters() and named_parameters() in a stable order with dotted
// names ("blocks.0.attn.q_proj.weight"), train()/eval() propagated to children, parameter
// counts, and copy_parameters() between two modules of the same architecture (e.g. the frozen
// teacher of a distillation loss).
//
// Modules own their parameters (Parameter is a handle, so moving a module is safe and an
// optimiser built from parameters() keeps working). Copying a module shares its parameters;
// build a second module and copy_parameters() into it for an independent copy.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/parameter.hpp"
#include "weft/core/autograd/tape.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

template <class T>
class Module;

/// What Module::visit reports to: each parameter and each child module, with its name.
template <class T>
class Members {
 public:
  virtual ~Members() = default;
  virtual void param(const std::string& name, Parameter<T>& p) = 0;
  virtual void child(const std::string& name, Module<T>& m) = 0;
};

template <class T>
class Module {
 public:
  using scalar_type = T;
  virtual ~Module() = default;

  /// Reports every parameter (undefined ones are skipped by the helpers) and child module.
  virtual void visit(Members<T>& m) = 0;

  /// All parameters, depth first in declaration order, each once.
  std::vector<Parameter<T>> parameters() {
    std::vector<Parameter<T>> out;
    for (auto& np : named_parameters()) out.push_back(np.second);
    return out;
  }
  /// Parameters with dotted names, depth first in declaration order, each once.
  std::vector<std::pair<std::string, Parameter<T>>> named_parameters() {
    struct Collect : Members<T> {
      std::string prefix;
      std::vector<std::pair<std::string, Parameter<T>>> out;
      void param(const std::string& name, Parameter<T>& p) override {
        if (!p.defined()) return;
        for (auto& e : out)
          if (e.second == p) return;  // shared parameters appear once
        out.emplace_back(prefix + name, p);
      }
      void child(const std::string& name, Module<T>& m) override {
        std::string saved = prefix;
        prefix += name + ".";
        m.visit(*this);
        prefix = saved;
      }
    } c;
    visit(c);
    return std::move(c.out);
  }
  /// Number of scalar parameters (only those with requires_grad when trainable_only).
  index_t num_parameters(bool trainable_only = false) {
    index_t n = 0;
    for (auto& p : parameters())
      if (!trainable_only || p.requires_grad()) n += p.numel();
    return n;
  }
  /// Sets requires_grad on every parameter (freeze with false).
  void set_requires_grad(bool on) {
    for (auto& p : parameters()) p.set_requires_grad(on);
  }
  void zero_grad() {
    for (auto& p : parameters()) p.zero_grad();
  }

  /// Training mode (the default) or evaluation mode, for this module and all children.
  void train(bool on = true) {
    struct Mode : Members<T> {
      bool on;
      explicit Mode(bool o) : on(o) {}
      void param(const std::string&, Parameter<T>&) override {}
      void child(const std::string&, Module<T>& m) override { m.train(on); }
    } md(on);
    training_ = on;
    visit(md);
  }
  void eval() { train(false); }
  bool is_training() const noexcept { return training_; }

 protected:
  Module() = default;
  Module(const Module&) = default;
  Module(Module&&) noexcept = default;
  Module& operator=(const Module&) = default;
  Module& operator=(Module&&) noexcept = default;

 private:
  bool training_ = true;
};

/// Copies every parameter value of `src` into `dst` (same architecture: equal names and shapes).
template <class T>
void copy_parameters(Module<T>& src, Module<T>& dst) {
  auto s = src.named_parameters();
  auto d = dst.named_parameters();
  WEFT_CHECK(s.size() == d.size(), shape, "nn::copy_parameters", "expected modules with equal parameter lists, got ",
             s.size(), " and ", d.size(), " parameters");
  for (std::size_t i = 0; i < s.size(); ++i) {
    WEFT_CHECK(s[i].first == d[i].first && s[i].second.shape() == d[i].second.shape(), shape,
               "nn::copy_parameters", "expected parameter ", i, " to match, got ", s[i].first, " ",
               s[i].second.shape(), " and ", d[i].first, " ", d[i].second.shape());
  }
  for (std::size_t i = 0; i < s.size(); ++i) d[i].second.value().copy_from(s[i].second.value());
}

}  // namespace nn
WEFT_NAMESPACE_END
