// weft/ep/estimators.hpp - holomorphic EP estimators of the error vector e = dr*/dbeta at 0.
//
// With the nudged fixed points u*(beta_k) at beta_k = |beta| e^(2 pi i k / N) (spec 4):
//   N >= 2  e_N = Re[(1/N) sum_k phi(u*(beta_k)) / beta_k]   (Cauchy / Fourier; no free term;
//           bias O(|beta|^N)). For real networks u*(conj beta) = conj u*(beta), so only
//           k = 0..floor(N/2) are relaxed, with weight 2 for 0 < k < N/2: N = 2 is symmetric
//           nudging (two real phases), N = 4 two real phases and one complex.
//   N = 1   e_1 = (phi(u*(|beta|)) - phi(u0)) / |beta|   (classic one-sided EP; bias O(|beta|))
//   N = 0   the "true" e by complex step: e = Im phi(u*(i h)) / h, h = 1e-20 (no cancellation;
//           the authors use forward-mode AD of the unrolled nudged phase instead)
// Every phase and sample is relaxed in one batch (engine.hpp) from the free fixed point u0.
//   online_hep   the continuous-time estimator (P1 Table 1): no separate free phase; from u = 0,
//                for block i = 0..q-1 relax T2 steps at beta_i = |beta| e^(2 pi i i / N) from the
//                current state, then u_mean += u, e += phi(u) / beta_i; finally the real parts / q.
// A phase whose state becomes non-finite raises ValueError (divergence is never hidden), unless
// allow_divergence: then the errors of the affected samples are set to 0 (the authors'
// nan_to_num) and the report counts the diverged columns.
#pragma once

#include <cmath>
#include <complex>
#include <cstring>
#include <sstream>
#include <vector>

#include "weft/ep/relax.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep {

/// Nudged-phase defaults: T2 = 20 updates, gamma 1 (the paper's MLP setting).
inline RelaxOptions nudged_defaults() {
  RelaxOptions o;
  o.max_iters = 20;
  return o;
}

struct HepOptions {
  int N = 2;                           ///< 0: complex step, 1: one-sided, >= 2: Cauchy over N phases
  double abs_beta = 0.5;               ///< |beta| (N >= 1)
  RelaxOptions relax = nudged_defaults();  ///< the nudged phases, started from u0
  double h = 1e-20;                    ///< complex step (N = 0)
  bool conjugate_symmetry = true;      ///< relax k = 0..N/2 only; false: all N phases
  bool allow_divergence = false;       ///< false: ValueError on a non-finite phase; true: zero its e
};

template <class Real>
struct ErrorEstimate {
  State<Real> e;       ///< (batch x s_l) per layer
  RelaxReport report;  ///< over all relaxed (phase, sample) columns, phase-major
};

namespace detail {

template <class Real>
std::vector<std::complex<Real>> cauchy_phases(int N, double abs_beta, bool conj, std::vector<double>& weight) {
  std::vector<std::complex<Real>> b;
  const int last = conj ? N / 2 : N - 1;
  for (int k = 0; k <= last; ++k) {
    std::complex<double> z;
    if (k == 0) z = {abs_beta, 0.0};
    else if (2 * k == N) z = {-abs_beta, 0.0};
    else z = std::polar(abs_beta, 2.0 * 3.14159265358979323846 * k / N);
    b.emplace_back(Real(z.real()), Real(z.imag()));
    weight.push_back((conj && k > 0 && 2 * k < N) ? 2.0 : 1.0);
  }
  return b;
}

/// Raises on diverged columns unless allowed; returns per-sample "affected" flags.
inline std::vector<char> divergence(const RelaxReport& r, index_t batch, bool allow, const char* fn) {
  std::vector<char> bad(std::size_t(batch), 0);
  index_t first = -1;
  for (index_t c = 0; c < r.columns; ++c)
    if (r.column_diverged[std::size_t(c)]) {
      bad[std::size_t(c % batch)] = 1;
      if (first < 0) first = c;
    }
  if (!allow && first >= 0)
    ::weft::detail::fail(ErrorKind::value, fn, "expected the nudged relaxations to stay finite, got ", r.diverged, " of ",
                 r.columns, " columns diverging (first: sample ", first % batch, " in phase ", first / batch,
                 "); lower |beta| or gamma, or set allow_divergence");
  return bad;
}

inline void check_hep_options(const HepOptions& o, const char* fn) {
  WEFT_CHECK(o.N >= 0, value, fn, "expected N >= 0 (0 = complex step), got ", o.N);
  if (o.N >= 1)
    WEFT_CHECK(o.abs_beta > 0 && std::isfinite(o.abs_beta), value, fn, "expected a finite |beta| > 0, got ",
               o.abs_beta);
  else
    WEFT_CHECK(o.h > 0 && std::isfinite(o.h), value, fn, "expected a finite complex step h > 0, got ", o.h);
  check_relax_options(o.relax, fn);
}

}  // namespace detail

/// The holomorphic EP error vector from the free fixed point u0 (see the file comment).
template <class Real>
ErrorEstimate<Real> hep_error(const DenseNet<Real>& net, const Tensor<Real>& X, const TargetsArg<Real>& y,
                              const State<Real>& u0, const HepOptions& o = {}) {
  const char* fn = "ep::hep_error";
  detail::check_net(net, fn);
  detail::check_hep_options(o, fn);
  detail::check_batch(net, X, y, fn);
  const index_t batch = X.dim(0), K = net.layers();
  detail::check_state(net, u0, batch, fn, "free state u0");
  detail::NetView<Real> view(net, X, y);
  std::vector<double> weight;
  std::vector<std::complex<Real>> betas;
  if (o.N == 0) {
    betas = {std::complex<Real>(Real(0), Real(o.h))};
    weight = {1.0};
  } else if (o.N == 1) {
    betas = {std::complex<Real>(Real(o.abs_beta), Real(0))};
    weight = {1.0};
  } else {
    betas = detail::cauchy_phases<Real>(o.N, o.abs_beta, o.conjugate_symmetry, weight);
  }
  auto set = detail::relax_phases(view, batch, betas, &u0, o.relax, o.N == 0, true);
  ErrorEstimate<Real> out;
  out.report = set.report(o.relax.tol);
  const std::vector<char> bad = detail::divergence(out.report, batch, o.allow_divergence, fn);
  out.e = zero_state<Real>(net, batch);
  if (o.N == 1) {  // e = -phi(u0) / beta, then + phi(u*(beta)) / beta below
    for (index_t l = 1; l <= K; ++l) {
      Tensor<Real>& e = out.e.layers[std::size_t(l - 1)];
      activate(net.activation, u0.layers[std::size_t(l - 1)].data(), e.data(), e.numel(), o.relax.vectorize);
      e.array() *= Real(-1.0 / o.abs_beta);
    }
  }
  for (index_t k = 0; k < index_t(betas.size()); ++k) {
    const std::complex<double> bk(betas[std::size_t(k)]);
    const double nb2 = std::norm(bk);
    for (index_t bi = 0; bi < batch; ++bi) {
      auto& blk = set.block(k * batch + bi);
      const index_t j = set.col(k * batch + bi);
      for (index_t l = 1; l <= K; ++l) {
        const index_t w = net.size(l);
        Real* e = out.e.layers[std::size_t(l - 1)].data() + bi * w;
        const Real* pr = blk.phi_re(l, j);
        if (o.N == 0) {
          const Real* pi = blk.phi_im(l, j);
          const Real s = Real(1.0 / o.h);
          for (index_t i = 0; i < w; ++i) e[i] = pi[i] * s;
        } else if (!blk.is_complex()) {  // real phase: w_k phi / (N beta_k)
          const Real s = Real(weight[std::size_t(k)] / (o.N == 1 ? 1.0 : double(o.N)) / bk.real());
          for (index_t i = 0; i < w; ++i) e[i] += pr[i] * s;
        } else {  // w_k Re(phi / beta_k) / N = w_k (phi_r b_r + phi_i b_i) / (|b|^2 N)
          const Real* pi = blk.phi_im(l, j);
          const double s = weight[std::size_t(k)] / (nb2 * double(o.N));
          const Real sr = Real(bk.real() * s), si = Real(bk.imag() * s);
          for (index_t i = 0; i < w; ++i) e[i] += pr[i] * sr + pi[i] * si;
        }
      }
    }
  }
  for (index_t bi = 0; bi < batch; ++bi)
    if (bad[std::size_t(bi)])
      for (index_t l = 1; l <= K; ++l) out.e.layers[std::size_t(l - 1)][bi].set_zero();
  return out;
}

struct OnlineOptions {
  int N = 4;              ///< phases per period
  double abs_beta = 0.5;  ///< |beta|
  index_t blocks = 20;    ///< q: number of blocks of T2 steps (the paper: 1200 / 60)
  RelaxOptions relax = [] {
    RelaxOptions r;
    r.max_iters = 60;  // T2 per block (fixed count: tol is not used)
    return r;
  }();
  bool allow_divergence = false;
};

template <class Real>
struct OnlineEstimate {
  State<Real> u_mean;  ///< Re(sum of block-end states) / q, close to u0 by the mean-value property
  State<Real> e;       ///< Re(sum phi(u) / beta_i) / q
  RelaxReport report;  ///< of the last block; iterations = q T2; diverged = any block
};

/// The continuous-time (online) estimator from u = 0 (see the file comment).
template <class Real>
OnlineEstimate<Real> online_hep(const DenseNet<Real>& net, const Tensor<Real>& X, const TargetsArg<Real>& y,
                                const OnlineOptions& o = {}) {
  const char* fn = "ep::online_hep";
  detail::check_net(net, fn);
  WEFT_CHECK(o.N >= 1, value, fn, "expected N >= 1, got ", o.N);
  WEFT_CHECK(o.abs_beta > 0 && std::isfinite(o.abs_beta), value, fn, "expected a finite |beta| > 0, got ", o.abs_beta);
  WEFT_CHECK(o.blocks >= 1, value, fn, "expected blocks >= 1, got ", o.blocks);
  detail::check_relax_options(o.relax, fn);
  detail::check_batch(net, X, y, fn);
  const index_t batch = X.dim(0), K = net.layers();
  detail::NetView<Real> view(net, X, y);
  RelaxOptions ro = o.relax;
  ro.tol = 0;
  detail::BlockSet<Real> set(view, batch, {std::complex<Real>(Real(o.abs_beta), Real(0))}, ro.block_rows, true);
  OnlineEstimate<Real> out;
  out.u_mean = zero_state<Real>(net, batch);
  out.e = zero_state<Real>(net, batch);
  std::vector<char> div(std::size_t(batch), 0);
  for (index_t i = 0; i < o.blocks; ++i) {
    const std::complex<double> bi = std::polar(o.abs_beta, 2.0 * 3.14159265358979323846 * double(i % o.N) / o.N);
    const std::complex<Real> b(Real(bi.real()), Real(bi.imag()));
    for (auto& blk : set.blocks)
      for (index_t j = 0; j < blk.columns(); ++j) blk.set_beta(j, b);
    set.run(ro);
    set.compute_phi(ro.vectorize);
    out.report = set.report(0.0);
    for (index_t c = 0; c < batch; ++c) div[std::size_t(c)] |= out.report.column_diverged[std::size_t(c)];
    const double nb2 = std::norm(bi);
    const Real sr = Real(bi.real() / nb2), si = Real(bi.imag() / nb2);
    for (index_t s = 0; s < batch; ++s) {
      auto& blk = set.block(s);
      const index_t j = set.col(s);
      for (index_t l = 1; l <= K; ++l) {
        const index_t w = net.size(l);
        Real* um = out.u_mean.layers[std::size_t(l - 1)].data() + s * w;
        Real* e = out.e.layers[std::size_t(l - 1)].data() + s * w;
        const Real *ur = blk.re(l, j), *pr = blk.phi_re(l, j), *pi = blk.phi_im(l, j);
        for (index_t k = 0; k < w; ++k) {
          um[k] += ur[k];
          e[k] += pr[k] * sr + pi[k] * si;
        }
      }
    }
  }
  out.report.iterations = o.blocks * ro.max_iters;
  out.report.diverged = 0;
  for (index_t c = 0; c < batch; ++c) {
    out.report.column_diverged[std::size_t(c)] = div[std::size_t(c)];
    out.report.diverged += div[std::size_t(c)] ? 1 : 0;
  }
  const std::vector<char> bad = detail::divergence(out.report, batch, o.allow_divergence, fn);
  const Real inv_q = Real(1.0 / double(o.blocks));
  for (index_t l = 1; l <= K; ++l) {
    out.u_mean.layers[std::size_t(l - 1)].array() *= inv_q;
    out.e.layers[std::size_t(l - 1)].array() *= inv_q;
  }
  for (index_t s = 0; s < batch; ++s)
    if (bad[std::size_t(s)])
      for (index_t l = 1; l <= K; ++l) {
        out.e.layers[std::size_t(l - 1)][s].set_zero();
        out.u_mean.layers[std::size_t(l - 1)][s].set_zero();
      }
  return out;
}

}  // namespace ep
WEFT_NAMESPACE_END
