// weft/ep/net.hpp - dense layered vector-field networks for equilibrium propagation, their
// initialisation (LeCun truncated normal, feedback mixing angle alpha) and batched states.
//
// Model (Laborieux & Zenke, ICLR 2024, arXiv:2309.02214; spec equilibrium_propagation.md 1):
// K dynamical layers of sizes s_1..s_K driven by a static input x of size s_0. With states u_l
// (pre-activations), activities r_l = phi(u_l) and r_0 = x,
//   H_l(r) = W_l r_{l-1} + b_l + B_{l+1} r_{l+1}          (no B term for l = K)
//   F_beta(u) = H(phi(u)) - u + beta G(phi(u), y),        G = d loss / d r, on layer K only
// with feedforward W_l (s_l x s_{l-1}), biases b_l and feedback B_l (s_{l-1} x s_l, l >= 2, no
// bias). W and B are separate trainable parameters: weight symmetry (B_l = W_l^T) holds at
// init only for alpha = 0 and is never enforced. The loss is read out from r_K by a linear
// softmax layer (V: C x s_K, c: C), l = -log softmax(V r_K + c)_y, so G_K = V^T (p - y); it is
// not part of the dynamics. Readout::mse instead uses l = |r_K - t|^2 / 2 (no V, c), with t the
// one-hot label or a row of real targets (targets.hpp). The activation phi is a built-in or a
// user functor (activation.hpp).
//
// Init (as the authors' Flax code): every kernel LeCun truncated normal (z ~ N(0, 1) truncated
// to |z| <= 2, times 1 / (0.8796 sqrt(fan_in))), biases zero; then B_l <- sin(alpha) B_l +
// cos(alpha) W_l^T. A batch of states is a State<S>: one (batch x s_l) tensor per layer, S real
// or complex.
#pragma once

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/parameter.hpp"
#include "weft/core/rng.hpp"
#include "weft/ep/activation.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep {

/// How the loss is read out from the output layer r_K.
enum class Readout {
  softmax,  ///< linear layer V r_K + c, softmax cross entropy ("xent" in the authors' code)
  mse       ///< l = |r_K - t|^2 / 2 on the output layer itself (t one-hot or real targets)
};

struct NetOptions {
  Activation activation = Activation::sigmoid;
  Readout readout = Readout::softmax;
  index_t num_classes = 10;  ///< classes C of the softmax readout (mse: must equal s_K)
  double alpha_deg = 0.0;    ///< mixing angle: 0 = symmetric init (B_l = W_l^T), 90 = independent
};

/// A batch of states (or of neuron-indexed error vectors): layers[l - 1] is (batch x s_l).
template <class S>
struct State {
  std::vector<Tensor<S>> layers;
  index_t batch() const { return layers.empty() ? 0 : layers[0].dim(0); }
  State clone() const {
    State s;
    for (const auto& t : layers) s.layers.push_back(t.clone());
    return s;
  }
};

template <class Real>
struct DenseNet {
  static_assert(std::is_same_v<Real, float> || std::is_same_v<Real, double>,
                "weft::ep::DenseNet<Real> needs Real = float or double (complex states use std::complex<Real>)");
  std::vector<index_t> sizes;  ///< s_0 (input), s_1, ..., s_K
  Activation activation = Activation::sigmoid;
  Readout readout = Readout::softmax;
  std::vector<Parameter<Real>> W;  ///< W[l - 1] = W_l, (s_l x s_{l-1}), l = 1..K
  std::vector<Parameter<Real>> b;  ///< b[l - 1] = b_l, (s_l)
  std::vector<Parameter<Real>> B;  ///< B[l - 2] = B_l, (s_{l-1} x s_l), l = 2..K
  Parameter<Real> V, c;            ///< softmax readout (C x s_K) and (C); undefined for mse

  /// Number of dynamical layers K.
  index_t layers() const { return index_t(sizes.size()) - 1; }
  /// Size s_l (l = 0 is the input).
  index_t size(index_t l) const { return sizes[std::size_t(l)]; }
  /// Total number of dynamical neurons n = s_1 + ... + s_K.
  index_t neurons() const {
    index_t n = 0;
    for (index_t l = 1; l <= layers(); ++l) n += size(l);
    return n;
  }
  /// Offset of layer l (1-based) in the stacked neuron vector.
  index_t offset(index_t l) const {
    index_t o = 0;
    for (index_t k = 1; k < l; ++k) o += size(k);
    return o;
  }
  /// Number of classes: C for the softmax readout, s_K for mse.
  index_t classes() const { return readout == Readout::softmax ? V.shape()[0] : size(layers()); }
  /// W_1..W_K, b_1..b_K, B_2..B_K, then V and c (softmax readout). Optimisers train these.
  std::vector<Parameter<Real>> parameters() const {
    std::vector<Parameter<Real>> p(W.begin(), W.end());
    p.insert(p.end(), b.begin(), b.end());
    p.insert(p.end(), B.begin(), B.end());
    if (readout == Readout::softmax) {
      p.push_back(V);
      p.push_back(c);
    }
    return p;
  }
  /// Number of leading entries of parameters() that belong to the dynamics (not the readout).
  std::size_t dynamics_parameters() const { return W.size() + b.size() + B.size(); }
};

namespace detail {

template <class Real>
void check_net(const DenseNet<Real>& net, const char* func) {
  const index_t K = net.layers();
  WEFT_CHECK(K >= 1, config, func, "expected a network with sizes s_0..s_K, K >= 1, got ", net.sizes.size(),
             " sizes");
  for (index_t l = 0; l <= K; ++l)
    WEFT_CHECK(net.size(l) >= 1, config, func, "expected layer sizes >= 1, got s_", l, " = ", net.size(l));
  WEFT_CHECK(index_t(net.W.size()) == K && index_t(net.b.size()) == K && index_t(net.B.size()) == K - 1, config,
             func, "expected K = ", K, " W, K b and K - 1 B parameters, got ", net.W.size(), ", ", net.b.size(),
             " and ", net.B.size());
  for (index_t l = 1; l <= K; ++l) {
    const Shape ws{net.size(l), net.size(l - 1)}, bs{net.size(l)};
    WEFT_CHECK(net.W[std::size_t(l - 1)].defined() && net.W[std::size_t(l - 1)].shape() == ws, shape, func,
               "expected W_", l, " of shape ", ws);
    WEFT_CHECK(net.b[std::size_t(l - 1)].defined() && net.b[std::size_t(l - 1)].shape() == bs, shape, func,
               "expected b_", l, " of shape ", bs);
    if (l >= 2) {
      const Shape fs{net.size(l - 1), net.size(l)};
      WEFT_CHECK(net.B[std::size_t(l - 2)].defined() && net.B[std::size_t(l - 2)].shape() == fs, shape, func,
                 "expected B_", l, " of shape ", fs);
    }
  }
  WEFT_CHECK(net.activation.template supports<Real>(), config, func, "expected an activation with a ",
             std::is_same_v<Real, float> ? "float" : "double", " form, got '", net.activation.name(), "'");
  if (net.readout == Readout::softmax) {
    WEFT_CHECK(net.V.defined() && net.c.defined() && net.V.value().rank() == 2 && net.V.shape()[0] >= 1 &&
                   net.V.shape()[1] == net.size(K) && net.c.shape() == Shape{net.V.shape()[0]},
               shape, func, "expected a readout V of shape (C, ", net.size(K), ") and c of shape (C)");
  }
  for (const Parameter<Real>& p : net.parameters())
    WEFT_CHECK(p.value().all_finite(), value, func, "expected finite parameters, got NaN or Inf in ", p.name());
}

/// Checks a state or error field: K layers of shape (batch x s_l), finite when `finite`.
template <class Real, class S>
void check_state(const DenseNet<Real>& net, const State<S>& u, index_t batch, const char* func, const char* what,
                 bool finite = true) {
  WEFT_CHECK(index_t(u.layers.size()) == net.layers(), shape, func, "expected ", what, " with ", net.layers(),
             " layers, got ", u.layers.size());
  for (index_t l = 1; l <= net.layers(); ++l) {
    const Tensor<S>& t = u.layers[std::size_t(l - 1)];
    WEFT_CHECK(t.defined() && t.shape() == Shape({batch, net.size(l)}), shape, func, "expected ", what,
               " layer ", l, " of shape ", Shape({batch, net.size(l)}), ", got ", t.shape());
    if (finite)
      WEFT_CHECK(t.all_finite(), value, func, "expected a finite ", what, ", got NaN or Inf in layer ", l);
  }
}

}  // namespace detail

/// A zero state (or error field) for `batch` samples.
template <class S, class Real>
State<S> zero_state(const DenseNet<Real>& net, index_t batch) {
  State<S> s;
  for (index_t l = 1; l <= net.layers(); ++l) s.layers.emplace_back(Shape{batch, net.size(l)});
  return s;
}

/// Fills w with LeCun truncated-normal draws: z ~ N(0, 1) conditioned on |z| <= 2 (by
/// rejection), times 1 / (0.87962566 sqrt(fan_in)) (unit variance after truncation, as
/// jax.nn.initializers.lecun_normal).
template <class Real>
void lecun_truncated_normal(Tensor<Real>& w, index_t fan_in, Rng& rng) {
  WEFT_CHECK(fan_in >= 1, value, "ep::lecun_truncated_normal", "expected fan_in >= 1, got ", fan_in);
  const double scale = 1.0 / (0.87962566103423978 * std::sqrt(double(fan_in)));
  for (auto& x : w) {
    double z;
    do z = rng.normal(); while (std::abs(z) > 2.0);
    x = Real(z * scale);
  }
}

/// B_l <- sin(alpha) B_l + cos(alpha) W_l^T for l = 2..K (alpha in degrees).
template <class Real>
void mix_feedback(DenseNet<Real>& net, double alpha_deg) {
  detail::check_net(net, "ep::mix_feedback");
  WEFT_CHECK(std::isfinite(alpha_deg), value, "ep::mix_feedback", "expected a finite angle, got ", alpha_deg);
  const double a = alpha_deg * 3.14159265358979323846 / 180.0;
  const Real s = Real(std::sin(a)), co = Real(std::cos(a));
  for (index_t l = 2; l <= net.layers(); ++l) {
    auto Bm = net.B[std::size_t(l - 2)].value().matrix();
    Bm = s * Bm + co * net.W[std::size_t(l - 1)].value().matrix().transpose();
  }
}

/// A dense layered network with sizes s_0 (input), s_1, ..., s_K, initialised as above.
template <class Real>
DenseNet<Real> make_dense_net(const std::vector<index_t>& sizes, Rng& rng, const NetOptions& o = {}) {
  WEFT_CHECK(sizes.size() >= 2, config, "ep::make_dense_net", "expected sizes s_0..s_K with K >= 1, got ",
             sizes.size(), " sizes");
  for (index_t s : sizes)
    WEFT_CHECK(s >= 1, config, "ep::make_dense_net", "expected layer sizes >= 1, got ", s);
  WEFT_CHECK(o.readout == Readout::mse ? o.num_classes == sizes.back() || o.num_classes == 0 : o.num_classes >= 1,
             config, "ep::make_dense_net", "expected num_classes >= 1 (softmax) or equal to s_K (mse), got ",
             o.num_classes);
  WEFT_CHECK(std::isfinite(o.alpha_deg), value, "ep::make_dense_net", "expected a finite alpha, got ", o.alpha_deg);
  DenseNet<Real> net;
  net.sizes = sizes;
  net.activation = o.activation;
  net.readout = o.readout;
  const index_t K = index_t(sizes.size()) - 1;
  for (index_t l = 1; l <= K; ++l) {
    Tensor<Real> w(Shape{sizes[std::size_t(l)], sizes[std::size_t(l - 1)]});
    lecun_truncated_normal(w, sizes[std::size_t(l - 1)], rng);
    net.W.emplace_back(w, "W" + std::to_string(l));
    net.b.emplace_back(Tensor<Real>(Shape{sizes[std::size_t(l)]}), "b" + std::to_string(l));
  }
  for (index_t l = 2; l <= K; ++l) {
    Tensor<Real> fb(Shape{sizes[std::size_t(l - 1)], sizes[std::size_t(l)]});
    lecun_truncated_normal(fb, sizes[std::size_t(l)], rng);
    net.B.emplace_back(fb, "B" + std::to_string(l));
  }
  if (o.readout == Readout::softmax) {
    Tensor<Real> v(Shape{o.num_classes, sizes.back()});
    lecun_truncated_normal(v, sizes.back(), rng);
    net.V = Parameter<Real>(v, "V");
    net.c = Parameter<Real>(Tensor<Real>(Shape{o.num_classes}), "c");
  }
  mix_feedback(net, o.alpha_deg);
  return net;
}

}  // namespace ep
WEFT_NAMESPACE_END
