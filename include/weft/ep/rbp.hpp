// weft/ep/rbp.hpp - recurrent backpropagation (implicit differentiation): the exact error vector
// delta, the dense Jacobians, and the exact EP error e for small networks.
//
// At the free fixed point u0 with D = diag phi'(u0) and H' = dH/dr (spec 3):
//   J_u = H' D - I  (u coordinates),   J_r = H' - D^-1  (activity coordinates, P1's J_F)
//   delta = -J_u^-T dl/du = -J_r^-T G           (RBP; g(delta) is the true gradient)
//   e     = dr*/dbeta = -J_r^-1 G = -D J_u^-1 G (what EP estimates; e = J_r^-1 J_r^T delta)
// rbp_error: iteratively delta <- delta + gamma (J_u^T delta + dl/du) from 0 (the authors' VJP
// loop, T2 steps; per-sample residual, converged samples stop when tol > 0), or by a dense LU
// solve per sample (method dense, O(n^3): small networks). exact_errors gives delta and e by
// dense LU. For the dense net (H'^T delta)_m = W_{m+1}^T delta_{m+1} + B_m^T delta_{m-1}.
#pragma once

#include <cmath>
#include <vector>

#include "weft/core/ops/matmul.hpp"
#include "weft/ep/gradients.hpp"

#include <Eigen/LU>

WEFT_NAMESPACE_BEGIN
namespace ep {

enum class RbpMethod { iterative, dense };

struct RbpOptions {
  RbpMethod method = RbpMethod::iterative;
  index_t max_iters = 20;  ///< iterations of the VJP loop (the paper's T2)
  double tol = 0.0;        ///< per-sample stop at max |update| <= tol; 0 = fixed count
  double gamma = 1.0;      ///< damping of the VJP loop
};

template <class Real>
struct RbpResult {
  State<Real> delta;
  index_t iterations = 0;   ///< largest number of updates of a sample
  double max_residual = 0;  ///< largest max |J_u^T delta + dl/du| of the returned delta
  index_t diverged = 0;     ///< samples whose delta became non-finite (their delta is NaN)
};

/// The dense n x n Jacobian J_u = H'(r0) D - I at sample `row` of the free state u0.
template <class Real>
RowMatrix<Real> jacobian_u(const DenseNet<Real>& net, const State<Real>& u0, index_t row) {
  const char* fn = "ep::jacobian_u";
  detail::check_net(net, fn);
  detail::check_state(net, u0, u0.batch(), fn, "free state u0");
  WEFT_CHECK(row >= 0 && row < u0.batch(), shape, fn, "expected a row in [0, ", u0.batch(), "), got ", row);
  const index_t n = net.neurons(), K = net.layers();
  WEFT_CHECK(n <= 8192, config, fn, "expected at most 8192 neurons for a dense Jacobian, got ", n);
  RowMatrix<Real> J = -RowMatrix<Real>::Identity(n, n);
  std::vector<Real> d(static_cast<std::size_t>(n));
  for (index_t l = 1; l <= K; ++l)
    activate_derivative(net.activation, u0.layers[std::size_t(l - 1)].data() + row * net.size(l),
                        d.data() + net.offset(l), net.size(l));
  for (index_t l = 1; l <= K; ++l) {
    const index_t o = net.offset(l), s = net.size(l);
    if (l >= 2) J.block(o, net.offset(l - 1), s, net.size(l - 1)) += net.W[std::size_t(l - 1)].value().matrix();
    if (l < K) J.block(o, net.offset(l + 1), s, net.size(l + 1)) += net.B[std::size_t(l - 1)].value().matrix();
  }
  for (index_t j = 0; j < n; ++j)
    for (index_t i = 0; i < n; ++i)
      if (i != j) J(i, j) *= d[std::size_t(j)];
      else J(i, j) = (J(i, j) + 1) * d[std::size_t(j)] - 1;
  return J;
}

/// The activity-space vector-field Jacobian with the activation bypassed, J = H' - I (n x n):
/// the matrix Jacobian homeostasis symmetrises (for the dense net it does not depend on r0).
template <class Real>
RowMatrix<Real> jacobian_vf(const DenseNet<Real>& net) {
  const char* fn = "ep::jacobian_vf";
  detail::check_net(net, fn);
  const index_t n = net.neurons(), K = net.layers();
  WEFT_CHECK(n <= 8192, config, fn, "expected at most 8192 neurons for a dense Jacobian, got ", n);
  RowMatrix<Real> J = -RowMatrix<Real>::Identity(n, n);
  for (index_t l = 1; l <= K; ++l) {
    const index_t o = net.offset(l), s = net.size(l);
    if (l >= 2) J.block(o, net.offset(l - 1), s, net.size(l - 1)) += net.W[std::size_t(l - 1)].value().matrix();
    if (l < K) J.block(o, net.offset(l + 1), s, net.size(l + 1)) += net.B[std::size_t(l - 1)].value().matrix();
  }
  return J;
}

template <class Real>
struct ExactErrors {
  State<Real> delta, e;
};

/// delta and e by a dense LU solve of J_u per sample (small networks; samples in parallel).
template <class Real>
ExactErrors<Real> exact_errors(const DenseNet<Real>& net, const Tensor<Real>& X, const TargetsArg<Real>& y,
                               const State<Real>& u0) {
  const char* fn = "ep::exact_errors";
  detail::check_net(net, fn);
  detail::check_batch(net, X, y, fn);
  const index_t batch = X.dim(0), K = net.layers(), n = net.neurons(), sK = net.size(K);
  detail::check_state(net, u0, batch, fn, "free state u0");
  WEFT_CHECK(n <= 8192, config, fn, "expected at most 8192 neurons for a dense solve, got ", n);
  const ReadoutResult<Real> ro = readout(net, u0, y);
  ExactErrors<Real> out{zero_state<Real>(net, batch), zero_state<Real>(net, batch)};
  std::vector<RowMatrix<Real>> J;
  for (index_t b = 0; b < batch; ++b) J.push_back(jacobian_u(net, u0, b));  // checks before the parallel part
  ops::detail::own_eigen_threads();
  parallel_for(0, batch, 1, [&](index_t lo, index_t hi) {
    for (index_t b = lo; b < hi; ++b) {
      Eigen::Matrix<Real, Eigen::Dynamic, 1> g = Eigen::Matrix<Real, Eigen::Dynamic, 1>::Zero(n), d(n);
      for (index_t l = 1; l <= K; ++l)
        activate_derivative(net.activation, u0.layers[std::size_t(l - 1)].data() + b * net.size(l),
                            d.data() + net.offset(l), net.size(l));
      for (index_t i = 0; i < sK; ++i) g(net.offset(K) + i) = ro.G(b, i);
      using Mat = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic>;
      const Eigen::PartialPivLU<Mat> lu(J[std::size_t(b)]);
      const Eigen::PartialPivLU<Mat> lut(J[std::size_t(b)].transpose());
      const Eigen::Matrix<Real, Eigen::Dynamic, 1> delta = -lut.solve(d.cwiseProduct(g));
      const Eigen::Matrix<Real, Eigen::Dynamic, 1> e = -d.cwiseProduct(lu.solve(g));
      for (index_t l = 1; l <= K; ++l)
        for (index_t i = 0; i < net.size(l); ++i) {
          out.delta.layers[std::size_t(l - 1)](b, i) = delta(net.offset(l) + i);
          out.e.layers[std::size_t(l - 1)](b, i) = e(net.offset(l) + i);
        }
    }
  });
  return out;
}

/// The RBP error vector delta at the free state u0 (see the file comment).
template <class Real>
RbpResult<Real> rbp_error(const DenseNet<Real>& net, const Tensor<Real>& X, const TargetsArg<Real>& y,
                          const State<Real>& u0, const RbpOptions& o = {}) {
  const char* fn = "ep::rbp_error";
  detail::check_net(net, fn);
  WEFT_CHECK(o.max_iters >= 0, value, fn, "expected max_iters >= 0, got ", o.max_iters);
  WEFT_CHECK(o.tol >= 0 && std::isfinite(o.tol), value, fn, "expected a finite tol >= 0, got ", o.tol);
  WEFT_CHECK(o.gamma > 0 && o.gamma <= 2, value, fn, "expected gamma in (0, 2], got ", o.gamma);
  RbpResult<Real> res;
  if (o.method == RbpMethod::dense) {
    res.delta = exact_errors(net, X, y, u0).delta;
    for (const auto& t : res.delta.layers)
      for (index_t b = 0; b < t.dim(0); ++b)
        if (!t[b].all_finite()) ++res.diverged;
    return res;
  }
  detail::check_batch(net, X, y, fn);
  const index_t batch = X.dim(0), K = net.layers();
  detail::check_state(net, u0, batch, fn, "free state u0");
  const ReadoutResult<Real> ro = readout(net, u0, y);
  State<Real> D = zero_state<Real>(net, batch), A = zero_state<Real>(net, batch), delta = zero_state<Real>(net, batch);
  for (index_t l = 1; l <= K; ++l)
    activate_derivative(net.activation, u0.layers[std::size_t(l - 1)].data(), D.layers[std::size_t(l - 1)].data(),
                        batch * net.size(l));
  std::vector<char> active(static_cast<std::size_t>(batch), 1), fin(static_cast<std::size_t>(batch));
  std::vector<double> r2(static_cast<std::size_t>(batch));
  std::vector<index_t> its(std::size_t(batch), 0);
  for (index_t t = 0;; ++t) {
    // A = D (H'^T delta) - delta + dl/du
    for (index_t m = 1; m <= K; ++m) {
      Real* a = A.layers[std::size_t(m - 1)].data();
      bool any = false;
      if (m < K) {
        ops::gemm(false, false, delta.layers[std::size_t(m)].data(), net.W[std::size_t(m)].value().data(), a, batch,
                  net.size(m), net.size(m + 1), false);
        any = true;
      }
      if (m >= 2) {
        ops::gemm(false, false, delta.layers[std::size_t(m - 2)].data(), net.B[std::size_t(m - 2)].value().data(), a,
                  batch, net.size(m), net.size(m - 1), any);
        any = true;
      }
      auto am = A.layers[std::size_t(m - 1)].array();
      if (!any) am.setZero();
      am = D.layers[std::size_t(m - 1)].array() * am - delta.layers[std::size_t(m - 1)].array();
      if (m == K) am += D.layers[std::size_t(K - 1)].array() * ro.G.array();
    }
    std::fill(r2.begin(), r2.end(), 0.0);
    std::fill(fin.begin(), fin.end(), 1);
    for (index_t m = 1; m <= K; ++m)
      for (index_t b = 0; b < batch; ++b) {
        const auto row = A.layers[std::size_t(m - 1)].matrix().row(b);
        if (!row.allFinite()) fin[std::size_t(b)] = 0;
        else r2[std::size_t(b)] = std::max(r2[std::size_t(b)], double(row.cwiseAbs().maxCoeff()));
      }
    bool any_active = false;
    for (index_t b = 0; b < batch; ++b) {
      if (!active[std::size_t(b)]) continue;
      if (!fin[std::size_t(b)] || t == o.max_iters || (o.tol > 0 && r2[std::size_t(b)] <= o.tol)) {
        active[std::size_t(b)] = 0;
        its[std::size_t(b)] = t;
        if (!fin[std::size_t(b)]) ++res.diverged;
        else res.max_residual = std::max(res.max_residual, r2[std::size_t(b)]);
        continue;
      }
      any_active = true;
      for (index_t m = 1; m <= K; ++m)
        delta.layers[std::size_t(m - 1)].matrix().row(b) += Real(o.gamma) * A.layers[std::size_t(m - 1)].matrix().row(b);
    }
    if (!any_active) break;
  }
  for (index_t v : its) res.iterations = std::max(res.iterations, v);
  res.delta = std::move(delta);
  return res;
}

}  // namespace ep
WEFT_NAMESPACE_END
