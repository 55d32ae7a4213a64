// weft/ep/reference.hpp - the scalar reference of the batched relaxation: one sample at one
// (complex) beta at a time, in std::complex with complex matrix-vector products.
//
// This is the straightforward way to write holomorphic EP, kept as the reference the batched
// split-plane engine is tested against and as the benchmark's baseline ("a loop of per-sample,
// per-phase complex GEMVs"). Same solver contract as engine.hpp: the residual of the state
// before each update (per plane, the imaginary one relative to min(1, |Im beta|)), stop at tol
// (or on a non-finite F), max_iters updates at most, the reported residual is that of the
// returned state.
#pragma once

#include <cmath>
#include <complex>
#include <vector>

#include "weft/ep/estimators.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep::reference {

template <class Real>
using CVector = Eigen::Matrix<std::complex<Real>, Eigen::Dynamic, 1>;
template <class Real>
using CMatrix = Eigen::Matrix<std::complex<Real>, Eigen::Dynamic, Eigen::Dynamic>;

/// The network's weights as complex matrices (built once, reused for every sample and phase).
template <class Real>
struct ComplexNet {
  std::vector<CMatrix<Real>> W, B;  // W[l], B[l] as in NetView (index by l)
  std::vector<CVector<Real>> b;
  CMatrix<Real> V;
  CVector<Real> c;
  explicit ComplexNet(const DenseNet<Real>& net) {
    detail::check_net(net, "ep::reference::ComplexNet");
    const index_t K = net.layers();
    W.resize(std::size_t(K + 1));
    B.resize(std::size_t(K + 1));
    b.resize(std::size_t(K + 1));
    for (index_t l = 1; l <= K; ++l) {
      W[std::size_t(l)] = net.W[std::size_t(l - 1)].value().matrix().template cast<std::complex<Real>>();
      b[std::size_t(l)] = net.b[std::size_t(l - 1)].value().vector().template cast<std::complex<Real>>();
      if (l >= 2) B[std::size_t(l)] = net.B[std::size_t(l - 2)].value().matrix().template cast<std::complex<Real>>();
    }
    if (net.readout == Readout::softmax) {
      V = net.V.value().matrix().template cast<std::complex<Real>>();
      c = net.c.value().vector().template cast<std::complex<Real>>();
    }
  }
};

struct SampleReport {
  index_t iterations = 0;
  double residual = 0;
  bool diverged = false;
};

/// Relaxes one sample (input x, target row of length C; nullptr when beta = 0) at beta from
/// u (per layer, complex), in place.
template <class Real>
SampleReport relax_sample(const DenseNet<Real>& net, const ComplexNet<Real>& cn, const Real* x, const Real* target,
                          std::complex<Real> beta, std::vector<CVector<Real>>& u, const RelaxOptions& o) {
  using C = std::complex<Real>;
  const index_t K = net.layers();
  CVector<Real> xin = CVector<Real>(net.size(0));
  for (index_t i = 0; i < net.size(0); ++i) xin(i) = C(x[i]);
  const CVector<Real> drive = cn.W[1] * xin + cn.b[1];
  std::vector<CVector<Real>> r(std::size_t(K + 1)), F(std::size_t(K + 1));
  SampleReport rep;
  for (index_t t = 0;; ++t) {
    for (index_t l = 1; l <= K; ++l) r[std::size_t(l)] = u[std::size_t(l)].unaryExpr([&](C z) { return phi(net.activation, z); });
    CVector<Real> G;
    if (beta != C(0)) {
      if (net.readout == Readout::softmax) {
        CVector<Real> z = cn.V * r[std::size_t(K)] + cn.c;
        index_t jm = 0;
        for (index_t j = 1; j < z.size(); ++j)
          if (z(j).real() > z(jm).real()) jm = j;
        const C m = z(jm);
        for (index_t j = 0; j < z.size(); ++j) z(j) = std::exp(z(j) - m);
        z /= z.sum();
        for (index_t j = 0; j < z.size(); ++j) z(j) -= C(target[j]);
        G = cn.V.transpose() * z;
      } else {
        G = r[std::size_t(K)];
        for (index_t j = 0; j < G.size(); ++j) G(j) -= C(target[j]);
      }
      G *= beta;
    }
    double res2 = 0, res2_im = 0;  // the residual of engine.hpp: per plane, Im scaled by min(1, |Im beta|)
    bool fin = true;
    for (index_t l = 1; l <= K; ++l) {
      CVector<Real> h = l == 1 ? drive : cn.b[std::size_t(l)];
      if (l >= 2) h.noalias() += cn.W[std::size_t(l)] * r[std::size_t(l - 1)];
      if (l < K) h.noalias() += cn.B[std::size_t(l + 1)] * r[std::size_t(l + 1)];
      F[std::size_t(l)] = h - u[std::size_t(l)];
      if (l == K && beta != C(0)) F[std::size_t(l)] += G;
      for (index_t j = 0; j < F[std::size_t(l)].size(); ++j) {
        const std::complex<double> f(F[std::size_t(l)](j));
        if (!is_finite(F[std::size_t(l)](j)) || !(std::norm(f) <= 1e300)) {
          fin = false;
          continue;
        }
        res2 = std::max(res2, f.real() * f.real());
        res2_im = std::max(res2_im, f.imag() * f.imag());
      }
    }
    const double bi = std::abs(double(beta.imag()));
    const double res = std::max(std::sqrt(res2), std::sqrt(res2_im) / (bi > 0 ? std::min(1.0, bi) : 1.0));
    if (!fin || t == o.max_iters || (o.tol > 0 && res <= o.tol)) {
      rep.iterations = t;
      rep.diverged = !fin;
      rep.residual = fin ? res : HUGE_VAL;
      return rep;
    }
    for (index_t l = 1; l <= K; ++l) u[std::size_t(l)] += Real(o.gamma) * F[std::size_t(l)];
  }
}

/// The same with a class label y (a one-hot target row).
template <class Real>
SampleReport relax_sample(const DenseNet<Real>& net, const ComplexNet<Real>& cn, const Real* x, int y,
                          std::complex<Real> beta, std::vector<CVector<Real>>& u, const RelaxOptions& o) {
  std::vector<Real> t(std::size_t(net.classes()), Real(0));
  t[std::size_t(y)] = Real(1);
  return relax_sample(net, cn, x, t.data(), beta, u, o);
}

/// hep_error computed sample by sample and phase by phase with relax_sample (N >= 1; the same
/// phases and weights as ep::hep_error, including conjugate symmetry).
template <class Real>
State<Real> hep_error(const DenseNet<Real>& net, const Tensor<Real>& X, const TargetsArg<Real>& y,
                      const State<Real>& u0, const HepOptions& o) {
  const char* fn = "ep::reference::hep_error";
  detail::check_net(net, fn);
  detail::check_hep_options(o, fn);
  WEFT_CHECK(o.N >= 1, value, fn, "expected N >= 1, got ", o.N);
  detail::check_batch(net, X, y, fn);
  const index_t batch = X.dim(0), K = net.layers();
  detail::check_state(net, u0, batch, fn, "free state u0");
  const ComplexNet<Real> cn(net);
  std::vector<double> weight;
  std::vector<std::complex<Real>> betas;
  if (o.N == 1) {
    betas = {std::complex<Real>(Real(o.abs_beta), Real(0))};
    weight = {1.0};
  } else {
    betas = detail::cauchy_phases<Real>(o.N, o.abs_beta, o.conjugate_symmetry, weight);
  }
  State<Real> e = zero_state<Real>(net, batch);
  const double norm = o.N == 1 ? 1.0 : double(o.N);
  const index_t C = net.classes();
  std::vector<Real> t(static_cast<std::size_t>(C));
  for (index_t b = 0; b < batch; ++b) {
    for (index_t j = 0; j < C; ++j) t[std::size_t(j)] = Real(y.at(b, j));
    for (std::size_t k = 0; k < betas.size(); ++k) {
      std::vector<CVector<Real>> u(std::size_t(K + 1));
      for (index_t l = 1; l <= K; ++l)
        u[std::size_t(l)] = ConstVectorMap<Real>(u0.layers[std::size_t(l - 1)].data() + b * net.size(l), net.size(l))
                                .template cast<std::complex<Real>>();
      relax_sample(net, cn, X.data() + b * net.size(0), t.data(), betas[k], u, o.relax);
      for (index_t l = 1; l <= K; ++l)
        for (index_t i = 0; i < net.size(l); ++i) {
          const std::complex<Real> p = phi(net.activation, u[std::size_t(l)](i)) / betas[k];
          e.layers[std::size_t(l - 1)](b, i) += Real(weight[k] / norm) * p.real();
        }
    }
    if (o.N == 1)
      for (index_t l = 1; l <= K; ++l)
        for (index_t i = 0; i < net.size(l); ++i)
          e.layers[std::size_t(l - 1)](b, i) -= phi(net.activation, u0.layers[std::size_t(l - 1)](b, i)) / Real(o.abs_beta);
  }
  return e;
}

}  // namespace ep::reference
WEFT_NAMESPACE_END
