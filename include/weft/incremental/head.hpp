// weft/incremental/head.hpp - ExpandableHead<T>: a linear classifier whose rows grow by task.
//
// Class-incremental learning (Zhao et al., "Maintaining Discrimination and Fairness in Class
// Incremental Learning", CVPR 2020) keeps one classifier row per class seen so far:
// logits o = W h (+ b) with W of shape (classes, in_features), row c = class c. When a task
// brings C_new classes, expand(C_new, rng) appends C_new rows drawn from U(-b, b) (b =
// 1/sqrt(in_features) by default, PyTorch's nn.Linear initialisation) and keeps the old rows
// (PyCIL's `update_fc`), or, with HeadOptions::reinit_head, draws every row afresh (the official
// WA code rebuilds its FC layer at each stage and does not copy the old rows). An optional bias
// (off by default, as in the official code) grows the same way.
//
// The weight and bias are Parameters whose shape changes on expansion; every handle (an
// optimiser, a hook) sees the new value. Build a fresh optimiser after expanding, since its state
// for a reshaped parameter restarts from zero.
#pragma once

#include <cmath>
#include <string>
#include <type_traits>

#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/autograd/parameter.hpp"
#include "weft/core/rng.hpp"
#include "weft/nn/module.hpp"

WEFT_NAMESPACE_BEGIN
namespace incremental {

struct HeadOptions {
  bool bias = false;         ///< one bias per class (PyCIL); the official WA code has none
  bool reinit_head = false;  ///< re-draw every row at each expansion (official code); default keeps old rows
  double init_bound = 0.0;   ///< new rows ~ U(-b, b); 0 picks b = 1/sqrt(in_features)
};

template <class T>
class ExpandableHead : public nn::Module<T> {
  static_assert(std::is_floating_point_v<T>,
                "incremental::ExpandableHead needs a real floating-point scalar type (float or double)");

 public:
  Parameter<T> weight;  ///< (classes, in_features); (0, in_features) before the first expand()
  Parameter<T> bias;    ///< (classes) with HeadOptions::bias, else undefined

  /// An empty head (no parameters); assign a constructed one before use.
  ExpandableHead() = default;
  /// A head over `in_features` features with no classes yet.
  explicit ExpandableHead(index_t in_features, const HeadOptions& o = {}) : o_(o) {
    WEFT_CHECK(in_features > 0, shape, "incremental::ExpandableHead", "expected in_features > 0, got ",
               in_features);
    WEFT_CHECK(o.init_bound >= 0 && std::isfinite(o.init_bound), value, "incremental::ExpandableHead",
               "expected a finite init_bound >= 0, got ", o.init_bound);
    weight = Parameter<T>(Tensor<T>(Shape{0, in_features}), "weight");
    if (o.bias) bias = Parameter<T>(Tensor<T>(Shape{0}), "bias");
  }

  index_t in_features() const { return weight.shape()[1]; }
  index_t classes() const { return weight.defined() ? weight.shape()[0] : 0; }
  bool has_bias() const noexcept { return bias.defined(); }
  const HeadOptions& options() const noexcept { return o_; }
  /// The bound b of the U(-b, b) initialisation of new rows.
  double init_bound() const { return o_.init_bound > 0 ? o_.init_bound : 1.0 / std::sqrt(double(in_features())); }

  /// Appends `new_classes` rows (and bias entries) drawn from U(-b, b). Old rows and bias entries
  /// are kept, or re-drawn too with HeadOptions::reinit_head. Returns the new number of classes.
  index_t expand(index_t new_classes, Rng& rng) {
    check_constructed("incremental::ExpandableHead::expand");
    WEFT_CHECK(new_classes > 0, value, "incremental::ExpandableHead::expand",
               "expected at least one new class, got ", new_classes);
    const index_t old = classes(), total = old + new_classes, d = in_features();
    const double b = init_bound();
    Tensor<T> w(Shape{total, d});
    if (!o_.reinit_head && old > 0) w.rows(0, old).copy_from(weight.value());
    for (index_t i = o_.reinit_head ? 0 : old * d; i < total * d; ++i) w.flat(i) = T(rng.uniform(-b, b));
    weight.set_value(w);
    if (bias.defined()) {
      Tensor<T> nb(Shape{total});
      for (index_t c = 0; c < total; ++c)
        nb.flat(c) = (!o_.reinit_head && c < old) ? bias.value().flat(c) : T(rng.uniform(-b, b));
      bias.set_value(nb);
    }
    return total;
  }

  /// Gives this head the number of classes of `other` (same in_features and bias), with zero
  /// values: the first step of building a frozen copy (then nn::copy_parameters).
  void resize_like(const ExpandableHead& other) {
    check_constructed("incremental::ExpandableHead::resize_like");
    WEFT_CHECK(other.weight.defined() && other.in_features() == in_features() && other.has_bias() == has_bias(),
               shape, "incremental::ExpandableHead::resize_like", "expected a head with ", in_features(),
               " input features and ", has_bias() ? "a" : "no", " bias, got ",
               other.weight.defined() ? other.weight.shape() : Shape{}, other.has_bias() ? " with" : " without",
               " bias");
    weight.set_value(Tensor<T>(other.weight.shape()));
    if (bias.defined()) bias.set_value(Tensor<T>(other.bias.shape()));
  }

  /// Logits h W^T (+ b) for features h of shape (..., in_features).
  Var<T> forward(const Var<T>& h) {
    check_constructed("incremental::ExpandableHead::forward");
    WEFT_CHECK(classes() > 0, config, "incremental::ExpandableHead::forward",
               "expected a head with at least one class (call expand() first), got 0 classes");
    WEFT_CHECK(h.rank() >= 1 && h.shape().last() == in_features(), shape, "incremental::ExpandableHead::forward",
               "expected features of shape (..., ", in_features(), "), got ", h.shape());
    Tape<T>& t = h.tape();
    return bias.defined() ? linear(h, t.param(weight), t.param(bias)) : linear(h, t.param(weight));
  }
  Var<T> operator()(const Var<T>& h) { return forward(h); }

  void visit(nn::Members<T>& m) override {
    m.param("weight", weight);
    m.param("bias", bias);
  }

 private:
  void check_constructed(const char* func) const {
    WEFT_CHECK(weight.defined(), config, func, "expected a constructed head, got an empty ExpandableHead");
  }
  HeadOptions o_;
};

}  // namespace incremental
WEFT_NAMESPACE_END
