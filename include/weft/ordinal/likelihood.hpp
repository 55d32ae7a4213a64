// weft/ordinal/likelihood.hpp - the negative log-likelihood of the cumulative-logit model in
// PRESTO's coordinates, its closed-form gradient and Hessian, and the same NLL as an autograd
// op (cumulative_nll) so it can sit in any weft graph and be checked by grad_check.
//
//   f(alpha, psi) = -(1 / W) sum_i w_i log pi_{y_i}(x_i),   W = sum_i w_i,
//   eta_ik = alpha_k + x_i^T beta_k,  beta_k = psi_0 + ... + psi_k.
// f is convex on the convex set where every row's eta are ordered and +inf outside it (a
// negative class probability); evaluate() returns +inf there. With g_ik = df/deta_ik:
//   df/dalpha_k = sum_i g_ik,  df/dbeta_k = sum_i g_ik x_i,  df/dpsi_j = sum_{k >= j} df/dbeta_k.
// Only the two boundaries around y_i enter row i (kernels.hpp), so each row adds to at most
// three (p+1) x (p+1) blocks of the Hessian; rows are kept sorted by class so each block is one
// weighted Gram matrix X_c^T diag(d) X_c over a contiguous range, through ops::gemm.
//
// Coefficient layout used by the solvers ("theta"): K-1 blocks of p+1, block k = (alpha_k,
// psi_k); as a column-major (p+1) x (K-1) matrix, column k is block k.
//
// The feasible set is a polyhedron: s_ik = eta_{i,k+1} - eta_ik >= 0 is linear in theta. Rows
// whose class is not next to a crossing keep a finite likelihood as eta_k and eta_{k+1} cross,
// so at small lambda the minimiser can sit on this boundary (pi_{k+1}(x_i) = 0 for some row of
// another class). The solvers then add the log-barrier mu B(theta), B = -sum_i w_i sum_k
// log s_ik, and drive mu to 0 (solver.hpp); evaluate/gradient/hessian take mu (0 = off).
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "weft/core/autograd/tape.hpp"
#include "weft/core/ops/matmul.hpp"
#include "weft/ordinal/kernels.hpp"

WEFT_NAMESPACE_BEGIN
namespace ordinal {

namespace detail {

template <class T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

/// Data prepared for fitting: rows sorted by class, [1, standardised x], normalised weights.
template <class T>
struct Problem {
  index_t n = 0, p = 0, K = 0;
  RowMatrix<T> X1;                  ///< n x (p+1), column 0 = 1
  Vec<T> w;                         ///< weights / W, sorted like X1
  std::vector<index_t> start;       ///< class c occupies rows [start[c], start[c+1])
  std::vector<double> mean, scale;  ///< standardisation (0 and 1 when off)
  double total_weight = 0;          ///< W
  index_t dim() const { return (p + 1) * (K - 1); }
};

/// Validates and prepares (x, y, w) restricted to `rows` (empty: all rows). K = num_classes or,
/// when 0, max(y) + 1. Every class must carry positive weight when require_all_classes.
template <class T>
Problem<T> make_problem(const Tensor<T>& x, const std::vector<int>& y, const std::vector<double>& w,
                        const std::vector<index_t>& rows, index_t num_classes, bool standardize,
                        bool require_all_classes, const char* func) {
  WEFT_CHECK(x.rank() == 2 && x.dim(0) >= 1, shape, func, "expected x of shape (n, p) with n >= 1, got ", x.shape());
  const index_t N = x.dim(0), p = x.dim(1);
  WEFT_CHECK(index_t(y.size()) == N, shape, func, "expected one class per row (", N, "), got ", y.size());
  WEFT_CHECK(w.empty() || index_t(w.size()) == N, shape, func, "expected ", N, " weights or none, got ", w.size());
  WEFT_CHECK(x.all_finite(), value, func, "expected finite features, got NaN or Inf in x");
  WEFT_CHECK(num_classes >= 0, config, func, "expected num_classes >= 0 (0 infers it), got ", num_classes);
  std::vector<index_t> idx = rows;
  if (idx.empty())
    for (index_t i = 0; i < N; ++i) idx.push_back(i);
  int ymax = -1;
  for (index_t r : idx) {
    WEFT_CHECK(r >= 0 && r < N, shape, func, "expected row indices in [0, ", N, "), got ", r);
    const int c = y[std::size_t(r)];
    WEFT_CHECK(c >= 0, value, func, "expected classes 0, 1, ..., K-1, got ", c, " in row ", r);
    ymax = std::max(ymax, c);
    if (!w.empty())
      WEFT_CHECK(std::isfinite(w[std::size_t(r)]) && w[std::size_t(r)] >= 0, value, func,
                 "expected finite weights >= 0, got ", w[std::size_t(r)], " in row ", r);
  }
  const index_t K = num_classes > 0 ? num_classes : index_t(ymax) + 1;
  WEFT_CHECK(K >= 2, value, func, "expected at least 2 ordered classes, got K = ", K);
  WEFT_CHECK(index_t(ymax) < K, value, func, "expected classes below num_classes = ", K, ", got ", ymax);
  std::vector<double> cw(std::size_t(K), 0.0);
  std::vector<index_t> count(std::size_t(K), 0);
  for (index_t r : idx) {
    const std::size_t c = std::size_t(y[std::size_t(r)]);
    cw[c] += w.empty() ? 1.0 : w[std::size_t(r)];
    ++count[c];
  }
  double W = 0;
  for (index_t c = 0; c < K; ++c) {
    W += cw[std::size_t(c)];
    if (require_all_classes)
      WEFT_CHECK(cw[std::size_t(c)] > 0, value, func, "expected every class 0..", K - 1,
                 " in the training data, got none of class ", c, " (its intercept would be infinite)");
  }
  WEFT_CHECK(W > 0, value, func, "expected a positive total weight, got ", W);

  Problem<T> P;
  P.n = index_t(idx.size());
  P.p = p;
  P.K = K;
  P.total_weight = W;
  P.start.assign(std::size_t(K + 1), 0);
  for (index_t c = 0; c < K; ++c) P.start[std::size_t(c + 1)] = P.start[std::size_t(c)] + count[std::size_t(c)];
  std::vector<index_t> sorted(idx.size()), next(P.start.begin(), P.start.end() - 1);
  for (index_t r : idx) sorted[std::size_t(next[std::size_t(y[std::size_t(r)])]++)] = r;  // stable

  P.mean.assign(std::size_t(p), 0.0);
  P.scale.assign(std::size_t(p), 1.0);
  if (standardize)
    for (index_t j = 0; j < p; ++j) {
      double s = 0, lo = double(x(sorted[0], j)), hi = lo;
      for (index_t r : sorted) {
        const double v = double(x(r, j));
        s += (w.empty() ? 1.0 : w[std::size_t(r)]) * v;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      if (lo == hi) {  // constant column: centred exactly to 0, sd taken as 1
        P.mean[std::size_t(j)] = lo;
        continue;
      }
      const double m = s / W;
      double ss = 0;
      for (index_t r : sorted) ss += (w.empty() ? 1.0 : w[std::size_t(r)]) * (double(x(r, j)) - m) * (double(x(r, j)) - m);
      P.mean[std::size_t(j)] = m;
      P.scale[std::size_t(j)] = ss > 0 ? std::sqrt(ss / W) : 1.0;
    }
  P.X1.resize(P.n, p + 1);
  P.w.resize(P.n);
  for (index_t i = 0; i < P.n; ++i) {
    const index_t r = sorted[std::size_t(i)];
    P.X1(i, 0) = T(1);
    for (index_t j = 0; j < p; ++j)
      P.X1(i, j + 1) = T((double(x(r, j)) - P.mean[std::size_t(j)]) / P.scale[std::size_t(j)]);
    P.w(i) = T((w.empty() ? 1.0 : w[std::size_t(r)]) / W);
  }
  return P;
}

/// The intercept-only MLE: alpha_k = logit(cumulative weighted frequency), clipped to +-100.
template <class T>
Vec<T> null_point(const Problem<T>& P) {
  Vec<T> th = Vec<T>::Zero(P.dim());
  double cum = 0;
  for (index_t k = 0; k + 1 < P.K; ++k) {
    for (index_t i = P.start[std::size_t(k)]; i < P.start[std::size_t(k + 1)]; ++i) cum += double(P.w(i));
    const double F = std::min(cum, 1.0);
    th(k * (P.p + 1)) = T(std::max(-100.0, std::min(100.0, std::log(F / (1 - F)))));
  }
  return th;
}

/// Buffers reused across evaluations of one problem.
template <class T>
struct Workspace {
  RowMatrix<T> B1, eta, tmp;
  Mat<T> slack;  ///< n x (K-2): eta_{i,k+1} - eta_ik
  Vec<T> a, b, logp, u, v, haa, hab, hbb, q;
  explicit Workspace(const Problem<T>& P)
      : B1(P.p + 1, P.K - 1), eta(P.n, P.K - 1), tmp(P.n, P.p + 1), slack(P.n, std::max<index_t>(P.K - 2, 0)),
        a(P.n), b(P.n), logp(P.n), u(P.n), v(P.n), haa(P.n), hab(P.n), hbb(P.n), q(P.n) {}
};

/// f(theta) + mu B(theta) (mean NLL plus barrier), or +inf where some row's eta are unordered
/// (with mu > 0: not strictly ordered) or a probability is 0. Leaves eta, the slacks and the
/// per-row terms in ws for gradient() and hessian().
template <class T>
double evaluate(const Problem<T>& P, const T* theta, Workspace<T>& ws, bool hessian_terms, double mu = 0) {
  const index_t p1 = P.p + 1, km1 = P.K - 1, n = P.n;
  for (index_t r = 0; r < p1; ++r) {
    T acc = T(0);
    for (index_t k = 0; k < km1; ++k) {
      const T t = theta[k * p1 + r];
      ws.B1(r, k) = r == 0 ? t : (acc += t);
    }
  }
  ops::gemm(false, false, P.X1.data(), ws.B1.data(), ws.eta.data(), n, km1, p1, false);
  double barrier = 0;
  for (index_t i = 0; i < n; ++i)
    for (index_t k = 0; k + 1 < km1; ++k) {
      const T sl = ws.eta(i, k + 1) - ws.eta(i, k);
      if (!(sl >= T(0)) || (mu > 0 && !(sl > T(0)))) return std::numeric_limits<double>::infinity();
      ws.slack(i, k) = sl;
      if (mu > 0) barrier -= double(P.w(i)) * std::log(double(sl));
    }
  constexpr T inf = std::numeric_limits<T>::infinity();
  for (index_t c = 0; c < P.K; ++c)
    for (index_t i = P.start[std::size_t(c)]; i < P.start[std::size_t(c + 1)]; ++i) {
      ws.a(i) = c > 0 ? ws.eta(i, c - 1) : -inf;
      ws.b(i) = c < km1 ? ws.eta(i, c) : inf;
    }
  BoundaryTerms<T> o{ws.logp.data(), ws.u.data(), ws.v.data(), nullptr, nullptr, nullptr};
  if (hessian_terms) {
    o.haa = ws.haa.data();
    o.hab = ws.hab.data();
    o.hbb = ws.hbb.data();
  }
  boundary_terms(ws.a.data(), ws.b.data(), n, o);
  double s = 0;
  for (index_t i = 0; i < n; ++i) s += double(P.w(i)) * double(ws.logp(i));
  const double f = -s + mu * barrier;
  return std::isfinite(f) ? f : std::numeric_limits<double>::infinity();
}

/// d(f + mu B)/dtheta at the point of the last evaluate() (which must have been finite).
template <class T>
void gradient(const Problem<T>& P, Workspace<T>& ws, Vec<T>& g, double mu = 0) {
  const index_t p1 = P.p + 1, km1 = P.K - 1;
  g.setZero(P.dim());
  Eigen::Map<Mat<T>> G(g.data(), p1, km1);
  for (index_t c = 0; c < P.K; ++c) {
    const index_t s = P.start[std::size_t(c)], len = P.start[std::size_t(c + 1)] - s;
    if (len == 0) continue;
    const auto X = P.X1.middleRows(s, len);
    if (c < km1) {  // eta_c is the upper boundary b: dl/db = -v
      ws.q.segment(s, len) = -(P.w.segment(s, len).cwiseProduct(ws.v.segment(s, len)));
      G.col(c).noalias() += X.transpose() * ws.q.segment(s, len);
    }
    if (c > 0) {  // eta_{c-1} is the lower boundary a: dl/da = u
      ws.q.segment(s, len) = P.w.segment(s, len).cwiseProduct(ws.u.segment(s, len));
      G.col(c - 1).noalias() += X.transpose() * ws.q.segment(s, len);
    }
  }
  for (index_t k = 0; mu > 0 && k + 1 < km1; ++k) {  // barrier: d/deta_k = mu w / s, d/deta_{k+1} = -mu w / s
    ws.q = (T(mu) * P.w).cwiseQuotient(ws.slack.col(k));
    G.col(k).noalias() += P.X1.transpose() * ws.q;
    G.col(k + 1).noalias() -= P.X1.transpose() * ws.q;
  }
  for (index_t k = km1 - 2; k >= 0; --k) G.col(k).tail(P.p) += G.col(k + 1).tail(P.p);
}

/// Adds X_c^T diag(w d) X_c over rows [s, s + len) of X1 to the (p+1) x (p+1) block of H at
/// (r0, c0).
template <class T>
void add_gram(const Problem<T>& P, Workspace<T>& ws, index_t s, index_t len, const Vec<T>& d, Mat<T>& H,
              index_t r0, index_t c0) {
  const index_t p1 = P.p + 1;
  for (index_t i = 0; i < len; ++i) ws.tmp.row(i) = (P.w(s + i) * d(s + i)) * P.X1.row(s + i);
  RowMatrix<T> blk(p1, p1);
  ops::gemm(true, false, P.X1.data() + s * p1, ws.tmp.data(), blk.data(), p1, p1, len, false);
  H.block(r0, c0, p1, p1) += blk;
}

/// d2(f + mu B)/dtheta2 at the point of the last evaluate(..., hessian_terms = true, mu).
template <class T>
void hessian(const Problem<T>& P, Workspace<T>& ws, Mat<T>& H, double mu = 0) {
  const index_t p1 = P.p + 1, km1 = P.K - 1, d = P.dim();
  H.setZero(d, d);
  for (index_t c = 0; c < P.K; ++c) {
    const index_t s = P.start[std::size_t(c)], len = P.start[std::size_t(c + 1)] - s;
    if (len == 0) continue;
    if (c < km1) add_gram(P, ws, s, len, ws.hbb, H, c * p1, c * p1);
    if (c > 0) add_gram(P, ws, s, len, ws.haa, H, (c - 1) * p1, (c - 1) * p1);
    if (c > 0 && c < km1) {
      add_gram(P, ws, s, len, ws.hab, H, (c - 1) * p1, c * p1);
    }
  }
  for (index_t k = 0; mu > 0 && k + 1 < km1; ++k) {  // barrier: mu w / s^2 (e_{k+1} - e_k)(e_{k+1} - e_k)^T
    ws.q = T(mu) * ws.slack.col(k).cwiseAbs2().cwiseInverse();  // add_gram multiplies by w
    Mat<T> G = Mat<T>::Zero(p1, p1);
    add_gram(P, ws, 0, P.n, ws.q, G, 0, 0);
    H.block(k * p1, k * p1, p1, p1) += G;
    H.block((k + 1) * p1, (k + 1) * p1, p1, p1) += G;
    H.block(k * p1, (k + 1) * p1, p1, p1) -= G;
  }
  for (index_t k = 0; k + 1 < km1; ++k)
    H.block((k + 1) * p1, k * p1, p1, p1) = H.block(k * p1, (k + 1) * p1, p1, p1).transpose();
  // from (alpha, beta) blocks to (alpha, psi): reverse cumulative sums over the psi rows/cols
  for (index_t k = km1 - 2; k >= 0; --k) H.middleRows(k * p1 + 1, P.p) += H.middleRows((k + 1) * p1 + 1, P.p);
  for (index_t k = km1 - 2; k >= 0; --k) H.middleCols(k * p1 + 1, P.p) += H.middleCols((k + 1) * p1 + 1, P.p);
}

}  // namespace detail

/// The mean negative log-likelihood -(1/W) sum_i w_i log pi_{y_i}(x_i) of the cumulative-logit
/// model with intercepts alpha (K-1) and differences psi (p, K-1) (beta = cumulative sums of
/// psi's columns), as a rank-0 Var. x is used as given (no standardisation); y holds classes
/// 0..K-1 (absent classes are allowed); w is empty (all 1) or one weight >= 0 per row. The
/// value is +inf, and the gradient NaN, where some row's eta are unordered. The gradient is
/// the closed form of this header (checked against finite differences in the tests).
template <class T>
Var<T> cumulative_nll(const Var<T>& alpha, const Var<T>& psi, const Tensor<T>& x, const std::vector<int>& y,
                      const std::vector<double>& w = {}) {
  const char* fn = "ordinal::cumulative_nll";
  WEFT_CHECK(alpha.rank() == 1 && alpha.numel() >= 1, shape, fn, "expected alpha of shape (K-1), got ", alpha.shape());
  const index_t km1 = alpha.numel();
  WEFT_CHECK(psi.rank() == 2 && psi.dim(1) == km1, shape, fn, "expected psi of shape (p, ", km1, "), got ", psi.shape());
  WEFT_CHECK(x.rank() == 2 && x.dim(1) == psi.dim(0), shape, fn, "expected x of shape (n, ", psi.dim(0), "), got ",
             x.shape());
  const detail::Problem<T> P = detail::make_problem(x, y, w, {}, km1 + 1, false, false, fn);
  const index_t p1 = P.p + 1;
  detail::Vec<T> theta(P.dim());
  for (index_t k = 0; k < km1; ++k) {
    theta(k * p1) = alpha.value()(k);
    for (index_t j = 0; j < P.p; ++j) theta(k * p1 + 1 + j) = psi.value()(j, k);
  }
  detail::Workspace<T> ws(P);
  const double f = detail::evaluate(P, theta.data(), ws, false);
  Tape<T>& tape = alpha.tape();
  Tensor<T> ga = tape.alloc(alpha.shape()), gp = tape.alloc(psi.shape());
  if (std::isfinite(f)) {
    detail::Vec<T> g;
    detail::gradient(P, ws, g);
    for (index_t k = 0; k < km1; ++k) {
      ga(k) = g(k * p1);
      for (index_t j = 0; j < P.p; ++j) gp(j, k) = g(k * p1 + 1 + j);
    }
  } else {
    ga.fill(std::numeric_limits<T>::quiet_NaN());
    gp.fill(std::numeric_limits<T>::quiet_NaN());
  }
  Tensor<T> out = tape.alloc_uninit(Shape{});
  out.flat(0) = T(f);
  return tape.record(out, {alpha, psi}, [alpha, psi, ga, gp](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* d = tp.grad_sink(alpha)) d->array() += g.flat(0) * ga.array();
    if (Tensor<T>* d = tp.grad_sink(psi)) d->array() += g.flat(0) * gp.array();
  });
}

}  // namespace ordinal
WEFT_NAMESPACE_END
