// weft/incremental/model.hpp - a feature extractor with an expandable head: the model shape that
// class-incremental learning with Weight Aligning expects.
//
// IncrementalNet<T, Backbone> = Backbone (any nn::Module with forward(Var) -> features h) followed
// by an ExpandableHead: logits = head(backbone(x)). Weight Aligning reads the head's row norms as
// a measure of bias towards new classes, which needs h >= 0 (features after a ReLU): the norm of
// a row then bounds how large that class's logits get. ReluFeatures<T> is such a backbone: Linear
// layers with a ReLU after every one, He-initialised (W ~ N(0, 2/fan_in), b = 0).
//
// The learner (learner.hpp) accepts any Model type with this interface:
//   Var<T> features(const Var<T>& x);   // h, shape (N, d)
//   Var<T> forward(const Var<T>& x);    // logits, shape (N, classes)
//   ExpandableHead<T>& head();
// deriving from nn::Module<T> (so nn::copy_parameters builds its frozen teacher).
#pragma once

#include <cmath>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/unary.hpp"
#include "weft/incremental/head.hpp"
#include "weft/nn/linear.hpp"

WEFT_NAMESPACE_BEGIN
namespace incremental {

/// Linear layers of the given sizes with a ReLU after every one (so the features are >= 0).
/// sizes = {64, 64} is one layer 64 -> 64. Weights ~ N(0, 2 / fan_in) (He), biases 0.
template <class T>
class ReluFeatures : public nn::Module<T> {
 public:
  std::vector<nn::Linear<T>> layers;

  ReluFeatures() = default;
  ReluFeatures(const std::vector<index_t>& sizes, Rng& rng, bool bias = true) {
    WEFT_CHECK(sizes.size() >= 2, shape, "incremental::ReluFeatures", "expected at least two sizes (in, out), got ",
               sizes.size());
    for (std::size_t i = 0; i < sizes.size(); ++i)
      WEFT_CHECK(sizes[i] > 0, shape, "incremental::ReluFeatures", "expected positive sizes, got ", sizes[i],
                 " at position ", i);
    layers.reserve(sizes.size() - 1);
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
      layers.emplace_back(sizes[i], sizes[i + 1], rng, bias);
      Tensor<T>& w = layers.back().weight.value();
      init::normal(w, 0.0, std::sqrt(2.0 / double(sizes[i])), rng);
      if (bias) layers.back().bias.value().set_zero();
    }
  }
  index_t in_features() const { return layers.front().in_features(); }
  index_t out_features() const { return layers.back().out_features(); }

  Var<T> forward(const Var<T>& x) {
    WEFT_CHECK(!layers.empty(), config, "incremental::ReluFeatures::forward",
               "expected a constructed backbone, got an empty one");
    Var<T> h = x;
    for (auto& l : layers) h = relu(l(h));
    return h;
  }
  Var<T> operator()(const Var<T>& x) { return forward(x); }

  void visit(nn::Members<T>& m) override {
    for (std::size_t i = 0; i < layers.size(); ++i) m.child("layers." + std::to_string(i), layers[i]);
  }
};

/// Backbone + ExpandableHead. Parameters are named "backbone.*" and "head.weight" / "head.bias".
template <class T, class Backbone>
class IncrementalNet : public nn::Module<T> {
  static_assert(std::is_base_of_v<nn::Module<T>, Backbone>,
                "incremental::IncrementalNet needs a Backbone derived from nn::Module<T>");

 public:
  Backbone backbone;
  ExpandableHead<T> classifier;

  IncrementalNet() = default;
  /// A model over `backbone`, whose features have `feature_dim` entries, with a head of no classes.
  IncrementalNet(Backbone b, index_t feature_dim, const HeadOptions& o = {})
      : backbone(std::move(b)), classifier(feature_dim, o) {}

  Var<T> features(const Var<T>& x) { return backbone.forward(x); }
  Var<T> forward(const Var<T>& x) { return classifier.forward(features(x)); }
  Var<T> operator()(const Var<T>& x) { return forward(x); }
  ExpandableHead<T>& head() noexcept { return classifier; }
  const ExpandableHead<T>& head() const noexcept { return classifier; }

  void visit(nn::Members<T>& m) override {
    m.child("backbone", backbone);
    m.child("head", classifier);
  }
};

/// IncrementalNet over ReluFeatures(sizes): features of sizes.back() entries.
template <class T>
IncrementalNet<T, ReluFeatures<T>> make_relu_net(const std::vector<index_t>& sizes, Rng& rng,
                                                 const HeadOptions& o = {}) {
  ReluFeatures<T> b(sizes, rng);
  const index_t d = b.out_features();
  return IncrementalNet<T, ReluFeatures<T>>(std::move(b), d, o);
}

}  // namespace incremental
WEFT_NAMESPACE_END
