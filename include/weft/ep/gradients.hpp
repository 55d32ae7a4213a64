// weft/ep/gradients.hpp - the readout at the free state and weight gradients from any
// neuron-indexed error vector.
//
// For per-sample error vectors xi_b (spec 3):
//   g = (1/B) sum_b (dF/dtheta (u0_b))^T xi_b + dL/dtheta_readout      (a VJP at the free state)
// which for the dense network is
//   g_W_l = mean_b xi_l r_{l-1}^T,  g_b_l = mean xi_l,  g_B_{l+1} = mean xi_l r_{l+1}^T
//   g_V = mean (p - t) r_K^T,       g_c = mean (p - t)                  (r = phi(u0), r_0 = x)
// with t the one-hot label or the real target row (targets.hpp).
// xi = delta (RBP) gives the exact gradient of L = mean loss at the fixed point; xi = e gives
// (generalised) EP. Each is one GEMM per connection. Update: theta <- theta - lr g.
#pragma once

#include <cmath>
#include <vector>

#include "weft/core/ops/matmul.hpp"
#include "weft/ep/targets.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep {

/// The readout at a state: mean loss, accuracy, and per sample G = dl/dr_K (batch x s_K) and
/// the output error p - t (batch x C; r_K - t for mse), t the one-hot label or the real target.
/// predictions is the argmax of the output (p or r_K); accuracy is NaN for real targets.
template <class Real>
struct ReadoutResult {
  double loss = 0, accuracy = 0;
  Tensor<Real> G, err;
  std::vector<int> predictions;
};

namespace detail {

/// Row i of the readout: z holds the logits (softmax) or r_K (mse) on entry and p - t (or
/// r_K - t) on exit; adds the row's loss to `loss` term by term (the summation order of the
/// label-only version, so labels give the same bits as before).
template <class Real>
void readout_row(Readout ro, const Targets<Real>& y, index_t i, Real* z, index_t C, index_t arg, double& loss) {
  double acc = loss;  // local, as before: &loss could alias z, which would change the codegen
  if (ro == Readout::softmax) {
    const double m = double(z[arg]);
    double s = 0, tz = 0;
    for (index_t j = 0; j < C; ++j) s += std::exp(double(z[j]) - m);
    if (y.has_labels()) tz = double(z[y.label(i)]);
    else
      for (index_t j = 0; j < C; ++j) tz += double(y.row(i)[j]) * double(z[j]);
    acc += std::log(s) + m - tz;
    for (index_t j = 0; j < C; ++j) z[j] = Real(std::exp(double(z[j]) - m) / s);
  } else if (y.has_labels()) {
    const int yi = y.label(i);
    for (index_t j = 0; j < C; ++j) {
      const double d = double(z[j]) - (j == yi ? 1.0 : 0.0);
      acc += 0.5 * d * d;
    }
  } else {
    for (index_t j = 0; j < C; ++j) {
      const double d = double(z[j]) - double(y.row(i)[j]);
      acc += 0.5 * d * d;
    }
  }
  loss = acc;
  if (y.has_labels()) z[y.label(i)] -= Real(1);
  else
    for (index_t j = 0; j < C; ++j) z[j] -= y.row(i)[j];
}

}  // namespace detail

/// The readout of the free state u0 (real): softmax cross entropy or mse, against labels or
/// real targets (targets.hpp).
template <class Real>
ReadoutResult<Real> readout(const DenseNet<Real>& net, const State<Real>& u0, const TargetsArg<Real>& y) {
  const char* fn = "ep::readout";
  detail::check_net(net, fn);
  const index_t batch = u0.batch(), K = net.layers(), sK = net.size(K), C = net.classes();
  WEFT_CHECK(batch >= 1, shape, fn, "expected a state with at least one sample, got ", batch);
  detail::check_targets(net, y, batch, fn);
  detail::check_state(net, u0, batch, fn, "state u0");
  ReadoutResult<Real> r;
  Tensor<Real> RK(Shape{batch, sK});
  activate(net.activation, u0.layers[std::size_t(K - 1)].data(), RK.data(), RK.numel());
  r.err = Tensor<Real>(Shape{batch, C});
  r.predictions.resize(std::size_t(batch));
  double loss = 0, correct = 0;
  if (net.readout == Readout::softmax) {
    ops::gemm(false, true, RK.data(), net.V.value().data(), r.err.data(), batch, C, sK, false);
    r.err.matrix().rowwise() += net.c.value().vector().transpose();
  } else {
    r.err.copy_from(RK);
  }
  for (index_t i = 0; i < batch; ++i) {
    Real* z = r.err.data() + i * C;
    index_t arg = 0;
    for (index_t j = 1; j < C; ++j)
      if (z[j] > z[arg]) arg = j;
    r.predictions[std::size_t(i)] = int(arg);
    if (y.has_labels()) correct += arg == y.label(i) ? 1 : 0;
    detail::readout_row(net.readout, y, i, z, C, arg, loss);
  }
  if (net.readout == Readout::softmax) {
    r.G = Tensor<Real>(Shape{batch, sK});
    ops::gemm(false, false, r.err.data(), net.V.value().data(), r.G.data(), batch, sK, C, false);
  } else {
    r.G = r.err.clone();
  }
  r.loss = loss / double(batch);
  r.accuracy = y.has_labels() ? correct / double(batch) : std::nan("");
  return r;
}

/// The gradients g (see the file comment) for the error field xi at the free state u0, in the
/// order of net.parameters(). The readout part is exact whatever xi is.
template <class Real>
std::vector<Tensor<Real>> error_gradients(const DenseNet<Real>& net, const Tensor<Real>& X, const TargetsArg<Real>& y,
                                          const State<Real>& u0, const State<Real>& xi) {
  const char* fn = "ep::error_gradients";
  detail::check_net(net, fn);
  detail::check_batch(net, X, y, fn);
  const index_t batch = X.dim(0), K = net.layers();
  detail::check_state(net, u0, batch, fn, "free state u0");
  detail::check_state(net, xi, batch, fn, "error field xi");
  const ReadoutResult<Real> ro = readout(net, u0, y);
  std::vector<Tensor<Real>> r(std::size_t(K + 1));
  r[0] = X;
  for (index_t l = 1; l <= K; ++l) {
    r[std::size_t(l)] = Tensor<Real>(Shape{batch, net.size(l)});
    activate(net.activation, u0.layers[std::size_t(l - 1)].data(), r[std::size_t(l)].data(), batch * net.size(l));
  }
  const Real inv_b = Real(1.0 / double(batch));
  auto outer = [&](const Tensor<Real>& a, const Tensor<Real>& b) {  // a^T b / batch
    Tensor<Real> g(Shape{a.dim(1), b.dim(1)});
    ops::gemm(true, false, a.data(), b.data(), g.data(), a.dim(1), b.dim(1), batch, false);
    g.array() *= inv_b;
    return g;
  };
  auto colmean = [&](const Tensor<Real>& a) {
    Tensor<Real> g(Shape{a.dim(1)});
    g.vector() = a.matrix().colwise().sum().transpose() * inv_b;
    return g;
  };
  std::vector<Tensor<Real>> g;
  for (index_t l = 1; l <= K; ++l) g.push_back(outer(xi.layers[std::size_t(l - 1)], r[std::size_t(l - 1)]));
  for (index_t l = 1; l <= K; ++l) g.push_back(colmean(xi.layers[std::size_t(l - 1)]));
  for (index_t l = 2; l <= K; ++l) g.push_back(outer(xi.layers[std::size_t(l - 2)], r[std::size_t(l)]));
  if (net.readout == Readout::softmax) {
    g.push_back(outer(ro.err, r[std::size_t(K)]));
    g.push_back(colmean(ro.err));
  }
  return g;
}

/// Adds error_gradients(...) into the parameters' grad() (net.parameters() order) and returns
/// the readout at u0 (loss and accuracy of the batch).
template <class Real>
ReadoutResult<Real> accumulate_gradients(DenseNet<Real>& net, const Tensor<Real>& X, const TargetsArg<Real>& y,
                                         const State<Real>& u0, const State<Real>& xi) {
  std::vector<Tensor<Real>> g = error_gradients(net, X, y, u0, xi);
  std::vector<Parameter<Real>> p = net.parameters();
  for (std::size_t i = 0; i < p.size(); ++i) p[i].grad().array() += g[i].array();
  return readout(net, u0, y);
}

/// Cosine between two gradient lists over their first `count` entries (all when count = 0),
/// e.g. net.dynamics_parameters() to leave the readout out. 0 if either is zero.
template <class Real>
double gradient_cosine(const std::vector<Tensor<Real>>& a, const std::vector<Tensor<Real>>& b, std::size_t count = 0) {
  WEFT_CHECK(a.size() == b.size(), shape, "ep::gradient_cosine", "expected lists of equal length, got ", a.size(),
             " and ", b.size());
  const std::size_t n = count == 0 ? a.size() : std::min(count, a.size());
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    WEFT_CHECK(a[i].shape() == b[i].shape(), shape, "ep::gradient_cosine", "expected equal shapes at entry ", i,
               ", got ", a[i].shape(), " and ", b[i].shape());
    for (index_t k = 0; k < a[i].numel(); ++k) {
      const double x = double(a[i].flat(k)), z = double(b[i].flat(k));
      ab += x * z;
      aa += x * x;
      bb += z * z;
    }
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

}  // namespace ep
WEFT_NAMESPACE_END
