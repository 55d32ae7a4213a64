// weft/nn/layers.hpp - LayerNorm, activations and the MLP.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/nn/linear.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

enum class Activation { relu, gelu, tanh, sigmoid, identity };

template <class T>
Var<T> activate(const Var<T>& x, Activation a) {
  switch (a) {
    case Activation::relu: return relu(x);
    case Activation::gelu: return gelu(x);
    case Activation::tanh: return tanh(x);
    case Activation::sigmoid: return sigmoid(x);
    default: return x;
  }
}

/// Layer normalisation over the last axis: (x - mean) / sqrt(var + eps) * gamma + beta, with
/// gamma = 1 and beta = 0 at initialisation (biased variance, as PyTorch).
template <class T>
class LayerNorm : public Module<T> {
 public:
  Parameter<T> gamma, beta;  ///< (dim)
  real_t<T> eps = real_t<T>(1e-5);

  LayerNorm() = default;
  explicit LayerNorm(index_t dim, real_t<T> eps_ = real_t<T>(1e-5)) : eps(eps_) {
    WEFT_CHECK(dim > 0, shape, "nn::LayerNorm", "expected dim > 0, got ", dim);
    WEFT_CHECK(eps_ >= 0 && std::isfinite(eps_), value, "nn::LayerNorm", "expected a finite eps >= 0, got ", eps_);
    gamma = Parameter<T>(Tensor<T>::ones(Shape{dim}), "gamma");
    beta = Parameter<T>(Tensor<T>(Shape{dim}), "beta");
  }
  index_t dim() const { return gamma.shape()[0]; }

  Var<T> forward(const Var<T>& x) {
    WEFT_CHECK(gamma.defined(), config, "nn::LayerNorm::forward", "expected a constructed layer, got an empty LayerNorm");
    Tape<T>& t = x.tape();
    return layer_norm(x, t.param(gamma), t.param(beta), eps);
  }
  Var<T> operator()(const Var<T>& x) { return forward(x); }

  void visit(Members<T>& m) override {
    m.param("gamma", gamma);
    m.param("beta", beta);
  }
};

/// A multilayer perceptron: Linear layers of the given sizes with an activation between them
/// (none after the last). sizes = {64, 128, 10} is 64 -> 128 -> 10.
template <class T>
class MLP : public Module<T> {
 public:
  std::vector<Linear<T>> layers;
  Activation activation = Activation::relu;

  MLP() = default;
  MLP(const std::vector<index_t>& sizes, Rng& rng, Activation act = Activation::relu, bool bias = true)
      : activation(act) {
    WEFT_CHECK(sizes.size() >= 2, shape, "nn::MLP", "expected at least two sizes (in, out), got ", sizes.size());
    layers.reserve(sizes.size() - 1);
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i) layers.emplace_back(sizes[i], sizes[i + 1], rng, bias);
  }

  Var<T> forward(const Var<T>& x) {
    WEFT_CHECK(!layers.empty(), config, "nn::MLP::forward", "expected a constructed MLP, got an empty one");
    Var<T> h = x;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      h = layers[i](h);
      if (i + 1 < layers.size()) h = activate(h, activation);
    }
    return h;
  }
  Var<T> operator()(const Var<T>& x) { return forward(x); }

  void visit(Members<T>& m) override {
    for (std::size_t i = 0; i < layers.size(); ++i) m.child("layers." + std::to_string(i), layers[i]);
  }
};

}  // namespace nn
WEFT_NAMESPACE_END
