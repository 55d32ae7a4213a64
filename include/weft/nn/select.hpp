// weft/nn/select.hpp - Selector<T>: which Linear layers of a model a technique attaches to.
//
// Every family's attach function takes one (peft::attach_*, quant::quantize_linears,
// reparam::attach_compander, prune::apply_masks / linear_layers). A selector picks layers by
//   - names:     Selector<T>({"q_proj", "v_proj"}) or just {"q_proj", "v_proj"}: a layer whose
//                dotted name (as in named_parameters, "blocks.0.attn.q_proj") equals an entry or
//                ends with "." + entry (PEFT's target_modules list rule); every entry must match
//                at least one layer, else an error names it;
//   - a regex:   Selector<T>::regex("blocks\\.[01]\\..*_proj"), matched against the whole dotted
//                name (std::regex_match, ECMAScript; PEFT's target_modules string rule);
//   - a predicate on (name, layer): any callable bool(const std::string&, const nn::Linear<T>&),
//                e.g. [](const std::string& n, const nn::Linear<float>&) { return n != "head"; };
//   - all:       Selector<T>() or {} (the default everywhere): every Linear.
// resolve(model, fn) lists the selected layers with their names in the model's stable order
// (find_linears: depth first in the order of named_parameters, each layer once). An empty
// selection is a ConfigError naming fn and listing the model's layer names. The pointers are
// valid while the model is not moved.
//
// The attach functions take `const nn::SelectorArg<T>&` (a non-deduced Selector<T>), so a list
// of names or a lambda converts implicitly while T is deduced from the model.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <regex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/module.hpp"

namespace weft::nn {

/// A layer chosen by a selector: its dotted name and the layer.
template <class T>
using NamedLinearRef = std::pair<std::string, Linear<T>*>;

template <class T>
class Selector {
 public:
  using Predicate = std::function<bool(const std::string& name, const Linear<T>& layer)>;
  enum class Kind { all, names, regex, predicate };

  /// Every Linear.
  Selector() = default;
  /// Layers by name (equal, or a dotted suffix); an empty list selects every Linear.
  Selector(std::vector<std::string> names) : kind_(names.empty() ? Kind::all : Kind::names), names_(std::move(names)) {}
  Selector(std::initializer_list<std::string> names) : Selector(std::vector<std::string>(names)) {}
  /// One layer by name (equal, or a dotted suffix).
  Selector(const std::string& name) : Selector(std::vector<std::string>{name}) {}
  Selector(const char* name) : Selector(std::vector<std::string>{std::string(name)}) {}
  /// Layers for which pred(name, layer) is true; an empty std::function selects every Linear.
  template <class F, class = std::enable_if_t<std::is_invocable_r_v<bool, F&, const std::string&, const Linear<T>&> &&
                                             !std::is_convertible_v<F, std::string>>>
  Selector(F pred) : pred_(std::move(pred)) {
    kind_ = pred_ ? Kind::predicate : Kind::all;
  }

  static Selector all() { return Selector(); }
  static Selector names(std::vector<std::string> n) { return Selector(std::move(n)); }
  /// Layers whose whole dotted name matches the ECMAScript regular expression `pattern`.
  static Selector regex(const std::string& pattern) {
    Selector s;
#ifdef WEFT_NO_EXCEPTIONS  // the standard library reports an invalid pattern itself (and aborts)
    s.re_ = std::make_shared<std::regex>(pattern, std::regex::ECMAScript);
#else
    try {
      s.re_ = std::make_shared<std::regex>(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      WEFT_CHECK(false, config, "nn::Selector::regex", "expected a valid regular expression, got '", pattern, "' (",
                 e.what(), ")");
    }
#endif
    s.kind_ = Kind::regex;
    s.pattern_ = pattern;
    return s;
  }
  static Selector where(Predicate p) { return Selector(std::move(p)); }

  Kind kind() const noexcept { return kind_; }
  /// A short description for messages: "all Linears", "names {q_proj, v_proj}", "regex '...'".
  std::string describe() const {
    switch (kind_) {
      case Kind::all: return "all Linears";
      case Kind::names: {
        std::string s = "names {";
        for (std::size_t i = 0; i < names_.size(); ++i) s += (i ? ", " : "") + names_[i];
        return s + "}";
      }
      case Kind::regex: return "regex '" + pattern_ + "'";
      case Kind::predicate: return "a predicate";
    }
    return "?";
  }

  /// Whether the layer called `name` is selected (names: equal or a dotted suffix).
  bool matches(const std::string& name, const Linear<T>& layer) const {
    switch (kind_) {
      case Kind::all: return true;
      case Kind::names:
        for (const auto& n : names_)
          if (name_matches(name, n)) return true;
        return false;
      case Kind::regex: return std::regex_match(name, *re_);
      case Kind::predicate: return pred_(name, layer);
    }
    return false;
  }

  /// The selected Linears of `model` with their dotted names, in the model's stable order. Throws
  /// a ConfigError naming fn when a name matches no layer or nothing is selected.
  std::vector<NamedLinearRef<T>> resolve(Module<T>& model, const char* fn) const {
    const auto all = find_linears(model);
    if (kind_ == Kind::names)
      for (const auto& n : names_) {
        bool found = false;
        for (const auto& l : all) found = found || name_matches(l.first, n);
        WEFT_CHECK(found, config, fn, "expected every selected name to match a Linear, got '", n,
                   "' matching none; the model's Linears are ", layer_list(all));
      }
    std::vector<NamedLinearRef<T>> out;
    for (const auto& l : all)
      if (matches(l.first, *l.second)) out.push_back(l);
    WEFT_CHECK(!out.empty(), config, fn, "expected the selector (", describe(),
               ") to pick at least one nn::Linear, got none; the model's Linears are ", layer_list(all));
    return out;
  }

  /// "{a, b, c}" with at most `max` names ("... and k more" after them); "" is shown as "(model)".
  static std::string layer_list(const std::vector<NamedLinearRef<T>>& ls, std::size_t max = 16) {
    if (ls.empty()) return "{} (the model has no nn::Linear)";
    std::string s = "{";
    for (std::size_t i = 0; i < ls.size() && i < max; ++i) s += (i ? ", " : "") + (ls[i].first.empty() ? std::string("(model)") : ls[i].first);
    if (ls.size() > max) s += ", ... and " + std::to_string(ls.size() - max) + " more";
    return s + "}";
  }

  /// The name rule: `name` equals n or ends with "." + n.
  static bool name_matches(const std::string& name, const std::string& n) {
    if (name == n) return true;
    return name.size() > n.size() && name.compare(name.size() - n.size(), n.size(), n) == 0 &&
           name[name.size() - n.size() - 1] == '.';
  }

 private:
  Kind kind_ = Kind::all;
  std::vector<std::string> names_;
  std::shared_ptr<std::regex> re_;
  std::string pattern_;
  Predicate pred_;
};

/// Selector<T> in a non-deduced context, for function parameters: T comes from the model, and
/// a list of names or a lambda converts to the selector.
template <class T>
using SelectorArg = non_deduced_t<Selector<T>>;

/// The Linears of `model` chosen by `sel` (Selector::resolve under the name nn::select_linears).
template <class T>
std::vector<NamedLinearRef<T>> select_linears(Module<T>& model, const SelectorArg<T>& sel = {},
                                              const char* fn = "nn::select_linears") {
  return sel.resolve(model, fn);
}

}  // namespace weft::nn
