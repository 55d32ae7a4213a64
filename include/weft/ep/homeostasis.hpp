// weft/ep/homeostasis.hpp - Jacobian homeostasis (Laborieux & Zenke, ICLR 2024): a penalty on
// the antisymmetric part of the vector-field Jacobian, which is what makes EP's error vector e
// differ from the true delta when the weights are not symmetric.
//
// With J = dF/dr at r0 with the activation bypassed, J = H' - I (for the dense net it does not
// depend on r0; x is not a state), and eps ~ N(0, I_n) over all n dynamical neurons (spec 5):
//   L_homeo = E[ |J eps|^2 - eps^T J^2 eps ] = |J|_F^2 - tr(J^2) = |J - J^T|_F^2 / 2
//   estimate per draw: v = J eps, l_h = (|v|^2 - <J^T eps, v>) / n   (the authors divide by n)
//   dl_h/dJ = (2 v eps^T - eps v^T - (J^T eps) eps^T) / n, chained to the blocks of J:
//   dl_h/dW_l = [2 v_l eps_{l-1}^T - eps_l v_{l-1}^T - (J^T eps)_l eps_{l-1}^T] / n      (l >= 2)
//   dl_h/dB_l = [2 v_{l-1} eps_l^T - eps_{l-1} v_l^T - (J^T eps)_{l-1} eps_l^T] / n
// with (J eps)_l = W_l eps_{l-1} + B_{l+1} eps_{l+1} - eps_l and (J^T eps)_l = W_{l+1}^T
// eps_{l+1} + B_l^T eps_{l-1} - eps_l. For a batch of D draws (rows) every term is one GEMM.
// Expectation: E l_h = sum_l |B_l - W_l^T|_F^2 / n, E grad_B_l = 2 (B_l - W_l^T) / n,
// E grad_W_l = 2 (W_l - B_l^T) / n (homeostasis_expected_gradient returns these exactly, the
// gradient of the closed form sum_l |B_l - W_l^T|_F^2 / n). The gradient is taken with r0 held
// constant. W_1, b, V and c get no homeostatic gradient.
#pragma once

#include <cmath>
#include <utility>
#include <vector>

#include "weft/core/ops/matmul.hpp"
#include "weft/core/rng.hpp"
#include "weft/ep/net.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep {

template <class Real>
struct HomeostasisGradient {
  double loss = 0;              ///< mean l_h over the draws
  std::vector<Tensor<Real>> W;  ///< W[l - 2] = dl/dW_l, l = 2..K (mean over draws)
  std::vector<Tensor<Real>> B;  ///< B[l - 2] = dl/dB_l, l = 2..K
};

/// The explicit homeostatic loss and gradient for the draws eps (rows of each layer).
template <class Real>
HomeostasisGradient<Real> homeostasis_gradient(const DenseNet<Real>& net, const State<Real>& eps) {
  const char* fn = "ep::homeostasis_gradient";
  detail::check_net(net, fn);
  const index_t D = eps.batch(), K = net.layers();
  WEFT_CHECK(D >= 1, shape, fn, "expected at least one draw, got none");
  detail::check_state(net, eps, D, fn, "draws eps");
  const double n = double(net.neurons());
  State<Real> Jv = zero_state<Real>(net, D), Jt = zero_state<Real>(net, D);  // J eps and J^T eps
  for (index_t l = 1; l <= K; ++l) {
    const index_t s = net.size(l);
    const Real* e_l = eps.layers[std::size_t(l - 1)].data();
    Real* v = Jv.layers[std::size_t(l - 1)].data();
    Real* t = Jt.layers[std::size_t(l - 1)].data();
    bool av = false, at = false;
    if (l >= 2) {  // v += eps_{l-1} W_l^T; t += eps_{l-1} B_l
      ops::gemm(false, true, eps.layers[std::size_t(l - 2)].data(), net.W[std::size_t(l - 1)].value().data(), v, D, s,
                net.size(l - 1), false);
      ops::gemm(false, false, eps.layers[std::size_t(l - 2)].data(), net.B[std::size_t(l - 2)].value().data(), t, D, s,
                net.size(l - 1), false);
      av = at = true;
    }
    if (l < K) {  // v += eps_{l+1} B_{l+1}^T; t += eps_{l+1} W_{l+1}
      ops::gemm(false, true, eps.layers[std::size_t(l)].data(), net.B[std::size_t(l - 1)].value().data(), v, D, s,
                net.size(l + 1), av);
      ops::gemm(false, false, eps.layers[std::size_t(l)].data(), net.W[std::size_t(l)].value().data(), t, D, s,
                net.size(l + 1), at);
      av = at = true;
    }
    auto vm = Jv.layers[std::size_t(l - 1)].array();
    auto tm = Jt.layers[std::size_t(l - 1)].array();
    const auto em = ConstArrayMap<Real>(e_l, D * s);
    if (!av) vm.setZero();
    if (!at) tm.setZero();
    vm -= em;
    tm -= em;
  }
  HomeostasisGradient<Real> g;
  double loss = 0;
  for (index_t l = 1; l <= K; ++l) {
    const auto vm = Jv.layers[std::size_t(l - 1)].array().template cast<double>();
    const auto tm = Jt.layers[std::size_t(l - 1)].array().template cast<double>();
    loss += (vm * vm - tm * vm).sum();
  }
  g.loss = loss / (n * double(D));
  const Real scale = Real(1.0 / (n * double(D)));
  for (index_t l = 2; l <= K; ++l) {
    const index_t s = net.size(l), sp = net.size(l - 1);
    // P_l = 2 v_l - (J^T eps)_l, rows
    Tensor<Real> Pl(Shape{D, s}), Pp(Shape{D, sp});
    Pl.array() = Real(2) * Jv.layers[std::size_t(l - 1)].array() - Jt.layers[std::size_t(l - 1)].array();
    Pp.array() = Real(2) * Jv.layers[std::size_t(l - 2)].array() - Jt.layers[std::size_t(l - 2)].array();
    const Real* e_l = eps.layers[std::size_t(l - 1)].data();
    const Real* e_p = eps.layers[std::size_t(l - 2)].data();
    Tensor<Real> gw(Shape{s, sp}), gb(Shape{sp, s}), tmp_w(Shape{s, sp}), tmp_b(Shape{sp, s});
    ops::gemm(true, false, Pl.data(), e_p, gw.data(), s, sp, D, false);  // (2v_l - t_l)^T eps_{l-1}
    ops::gemm(true, false, e_l, Jv.layers[std::size_t(l - 2)].data(), tmp_w.data(), s, sp, D, false);  // eps_l^T v_{l-1}
    gw.array() = (gw.array() - tmp_w.array()) * scale;
    ops::gemm(true, false, Pp.data(), e_l, gb.data(), sp, s, D, false);  // (2v_{l-1} - t_{l-1})^T eps_l
    ops::gemm(true, false, e_p, Jv.layers[std::size_t(l - 1)].data(), tmp_b.data(), sp, s, D, false);  // eps_{l-1}^T v_l
    gb.array() = (gb.array() - tmp_b.array()) * scale;
    g.W.push_back(gw);
    g.B.push_back(gb);
  }
  return g;
}

namespace detail {
/// W_l.grad() += lambda g.W, B_l.grad() += lambda g.B (l >= 2), NaN and Inf entries as 0.
template <class Real>
void add_homeostasis(DenseNet<Real>& net, const HomeostasisGradient<Real>& g, double lambda) {
  const Real lam = Real(lambda);
  auto add = [lam](Tensor<Real>& dst, const Tensor<Real>& src) {
    for (index_t i = 0; i < dst.numel(); ++i) {
      const Real v = lam * src.flat(i);
      if (std::isfinite(v)) dst.flat(i) += v;
    }
  };
  for (index_t l = 2; l <= net.layers(); ++l) {
    add(net.W[std::size_t(l - 1)].grad(), g.W[std::size_t(l - 2)]);
    add(net.B[std::size_t(l - 2)].grad(), g.B[std::size_t(l - 2)]);
  }
}
}  // namespace detail

/// Draws `draws` eps ~ N(0, I_n) (the spec: batch x M, M = 5), computes the estimate, and adds
/// lambda times its gradient (NaN and Inf entries as 0) into W_l.grad() and B_l.grad(), l >= 2.
/// Returns the (unscaled) estimate of L_homeo.
template <class Real>
double add_homeostasis_gradient(DenseNet<Real>& net, index_t draws, double lambda, Rng& rng) {
  const char* fn = "ep::add_homeostasis_gradient";
  detail::check_net(net, fn);
  WEFT_CHECK(draws >= 1, value, fn, "expected draws >= 1, got ", draws);
  WEFT_CHECK(lambda >= 0 && std::isfinite(lambda), value, fn, "expected a finite lambda >= 0, got ", lambda);
  State<Real> eps = zero_state<Real>(net, draws);
  for (auto& t : eps.layers)
    for (auto& x : t) x = Real(rng.normal());
  const HomeostasisGradient<Real> g = homeostasis_gradient(net, eps);
  detail::add_homeostasis(net, g, lambda);
  return g.loss;
}

/// The expectation E L_homeo = sum_l |B_l - W_l^T|_F^2 / n (per the authors' scaling).
template <class Real>
double homeostasis_expectation(const DenseNet<Real>& net) {
  detail::check_net(net, "ep::homeostasis_expectation");
  double s = 0;
  for (index_t l = 2; l <= net.layers(); ++l)
    s += (net.B[std::size_t(l - 2)].value().matrix().template cast<double>() -
          net.W[std::size_t(l - 1)].value().matrix().transpose().template cast<double>())
             .squaredNorm();
  return s / double(net.neurons());
}

/// The exact expectation of the homeostatic loss and gradient over eps (no draws): loss
/// sum_l |B_l - W_l^T|_F^2 / n, dl/dW_l = 2 (W_l - B_l^T) / n, dl/dB_l = 2 (B_l - W_l^T) / n,
/// the gradient of that loss (the mean of homeostasis_gradient over infinitely many draws).
template <class Real>
HomeostasisGradient<Real> homeostasis_expected_gradient(const DenseNet<Real>& net) {
  detail::check_net(net, "ep::homeostasis_expected_gradient");
  HomeostasisGradient<Real> g;
  g.loss = homeostasis_expectation(net);
  const Real s = Real(2.0 / double(net.neurons()));
  for (index_t l = 2; l <= net.layers(); ++l) {
    const auto Wm = net.W[std::size_t(l - 1)].value().matrix();
    const auto Bm = net.B[std::size_t(l - 2)].value().matrix();
    Tensor<Real> gw(net.W[std::size_t(l - 1)].shape()), gb(net.B[std::size_t(l - 2)].shape());
    gw.matrix() = s * (Wm - Bm.transpose());
    gb.matrix() = s * (Bm - Wm.transpose());
    g.W.push_back(std::move(gw));
    g.B.push_back(std::move(gb));
  }
  return g;
}

/// Adds lambda times homeostasis_expected_gradient into W_l.grad() and B_l.grad(), l >= 2;
/// returns the exact L_homeo (the deterministic counterpart of add_homeostasis_gradient).
template <class Real>
double add_expected_homeostasis_gradient(DenseNet<Real>& net, double lambda) {
  const char* fn = "ep::add_expected_homeostasis_gradient";
  WEFT_CHECK(lambda >= 0 && std::isfinite(lambda), value, fn, "expected a finite lambda >= 0, got ", lambda);
  const HomeostasisGradient<Real> g = homeostasis_expected_gradient(net);
  detail::add_homeostasis(net, g, lambda);
  return g.loss;
}

}  // namespace ep
WEFT_NAMESPACE_END
