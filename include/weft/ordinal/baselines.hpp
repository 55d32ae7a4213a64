// weft/ordinal/baselines.hpp - the two baselines of the PRESTO paper, each with its own solver:
//
// fit_proportional_odds  the proportional-odds MLE (MASS::polr's model): one weight vector
//                        beta shared by every boundary, eta_k = alpha_k + x^T beta. Damped
//                        Newton on (alpha, beta) with the exact Hessian and an LDLT solve;
//                        steps that unorder the intercepts are halved away.
// fit_logistic           K-1 separate binary logistic regressions of 1{y <= k} on x (the
//                        reference fits glm on 1{y >= k+1}; same model, opposite sign), each
//                        optionally elastic-net penalised with glmnet's objective
//                        -(1/W) sum_i w_i loglik_i + lambda sum_j [a |b_j| + (1 - a) b_j^2 / 2]
//                        on standardised features: IRLS outer loop, coordinate descent inside.
//                        Its last boundary is the paper's "Logit" (rare class vs the rest).
// Both return a CumulativeLogit on the original feature scale; fit_proportional_odds also
// returns the Wald inference of summary(polr) (inference.hpp). The logistic fits are not
// constrained to be ordered, so predict_proba may clamp rows (rare_probability never needs to).
// Unpenalised fits on (quasi-)separated data have no finite MLE: the gradient decays like
// e^-|eta| and falls under tol with coefficients set by tol. After convergence both fits probe
// for this (two more full Newton steps that each move a standardised coordinate by >= 0.5
// without raising the NLL: unbounded growth) and report separated = true, converged = false,
// and no Wald inference (R's glm and polr warn in the same situation).
#pragma once

#include "weft/core/detail/eigen.hpp"  // first: it guards <immintrin.h> (GCC 12 AVX-512 warnings)

#include <Eigen/Cholesky>
#include <cmath>
#include <limits>
#include <vector>

#include "weft/core/ops/prox.hpp"
#include "weft/ordinal/inference.hpp"
#include "weft/ordinal/likelihood.hpp"
#include "weft/ordinal/model.hpp"

WEFT_NAMESPACE_BEGIN
namespace ordinal {

/// Options of the baseline fits.
struct BaselineOptions {
  double lambda = 0;        ///< fit_logistic only: penalty (0 = maximum likelihood)
  double l1_ratio = 1;      ///< fit_logistic only: a of the elastic net
  bool standardize = true;  ///< fit on standardised features (results on the original scale)
  index_t num_classes = 0;  ///< K; 0 = max(y) + 1
  double tol = 0;           ///< stop when the (KKT) gradient max |.| <= tol; 0 = 1e-10 (double), 1e-5 (float)
  int max_iter = 100;       ///< Newton / IRLS iterations per fit
  double singular_tol = 0;  ///< fit_proportional_odds: information singular when Inference::min_eigenvalue
                            ///< is <= this; in [0, 1); 0 = 1e-8 (double), 1e-4 (float)
};

/// A baseline fit: the model, its mean NLL and deviance, and how the solver ended.
template <class T>
struct BaselineFit {
  CumulativeLogit<T> model;
  double nll = 0;       ///< proportional odds: mean NLL; logistic: sum over boundaries of binary mean NLLs
  double deviance = 0;  ///< proportional odds: -2 sum_i w_i log pi_{y_i}; logistic: sum of binary deviances
  int iterations = 0;   ///< total over boundaries
  bool converged = false;
  bool separated = false;  ///< no finite MLE (separated data, see the file comment); converged is then false
  Inference<T> inference;  ///< fit_proportional_odds: covariance, SEs, z, p (inference.hpp); else not_computed
};

namespace detail {

template <class T>
void check_baseline_options(const BaselineOptions& o, const char* fn) {
  WEFT_CHECK(std::isfinite(o.lambda) && o.lambda >= 0, config, fn, "expected a finite lambda >= 0, got ", o.lambda);
  WEFT_CHECK(o.l1_ratio >= 0 && o.l1_ratio <= 1, config, fn, "expected l1_ratio in [0, 1], got ", o.l1_ratio);
  WEFT_CHECK(o.tol >= 0 && o.max_iter >= 1, config, fn, "expected tol >= 0 and max_iter >= 1, got ", o.tol, ", ",
             o.max_iter);
  WEFT_CHECK(o.singular_tol >= 0 && o.singular_tol < 1, config, fn, "expected singular_tol in [0, 1), got ",
             o.singular_tol);
}

template <class T>
double baseline_tol(const BaselineOptions& o) {
  return o.tol > 0 ? o.tol : (sizeof(T) >= 8 ? 1e-10 : 1e-5);
}

/// Writes (alpha_k, beta~) of the standardised problem into column k of m on the original scale.
template <class T>
void unstandardize(const Problem<T>& P, double alpha, const Vec<double>& bt, index_t k, CumulativeLogit<T>& m) {
  for (index_t j = 0; j < P.p; ++j) {
    m.coef(j, k) = T(bt(j) / P.scale[std::size_t(j)]);
    alpha -= bt(j) * P.mean[std::size_t(j)] / P.scale[std::size_t(j)];
  }
  m.intercepts(k) = T(alpha);
}

/// Proportional odds: mean NLL at phi = (alpha (K-1), beta (p)); +inf if alpha is unordered.
template <class T>
double po_evaluate(const Problem<T>& P, const Vec<double>& phi, Workspace<T>& ws) {
  const index_t km1 = P.K - 1;
  for (index_t k = 0; k + 1 < km1; ++k)
    if (!(phi(k) <= phi(k + 1))) return std::numeric_limits<double>::infinity();
  const Vec<T> beta = phi.tail(P.p).template cast<T>();
  ws.q.noalias() = P.X1.rightCols(P.p) * beta;
  constexpr T inf = std::numeric_limits<T>::infinity();
  for (index_t c = 0; c < P.K; ++c)
    for (index_t i = P.start[std::size_t(c)]; i < P.start[std::size_t(c + 1)]; ++i) {
      ws.a(i) = c > 0 ? T(phi(c - 1)) + ws.q(i) : -inf;
      ws.b(i) = c < km1 ? T(phi(c)) + ws.q(i) : inf;
    }
  boundary_terms(ws.a.data(), ws.b.data(), P.n,
                 BoundaryTerms<T>{ws.logp.data(), ws.u.data(), ws.v.data(), ws.haa.data(), ws.hab.data(), ws.hbb.data()});
  double s = 0;
  for (index_t i = 0; i < P.n; ++i) s += double(P.w(i)) * double(ws.logp(i));
  return std::isfinite(s) ? -s : std::numeric_limits<double>::infinity();
}

/// Gradient and Hessian of po_evaluate's NLL at its last point (X: the standardised features).
template <class T>
void po_derivatives(const Problem<T>& P, const Workspace<T>& ws, const Mat<double>& X, Vec<double>& g,
                    Mat<double>& H) {
  const index_t km1 = P.K - 1, p = P.p;
  g.setZero(km1 + p);
  H.setZero(km1 + p, km1 + p);
  const Vec<double> w = P.w.template cast<double>(), u = ws.u.template cast<double>(), v = ws.v.template cast<double>();
  const Vec<double> haa = ws.haa.template cast<double>(), hab = ws.hab.template cast<double>(),
                    hbb = ws.hbb.template cast<double>();
  g.tail(p) = X.transpose() * w.cwiseProduct(u - v);
  H.bottomRightCorner(p, p) = X.transpose() * w.cwiseProduct(haa + 2 * hab + hbb).asDiagonal() * X;
  for (index_t c = 0; c < P.K; ++c) {
    const index_t s = P.start[std::size_t(c)], len = P.start[std::size_t(c + 1)] - s;
    const auto Xc = X.middleRows(s, len);
    const auto wc = w.segment(s, len);
    if (c > 0) {  // alpha_{c-1} is the lower boundary a of these rows
      g(c - 1) += wc.dot(u.segment(s, len));
      H(c - 1, c - 1) += wc.dot(haa.segment(s, len));
      H.row(c - 1).tail(p) += (Xc.transpose() * wc.cwiseProduct(haa.segment(s, len) + hab.segment(s, len))).transpose();
    }
    if (c < km1) {  // alpha_c is the upper boundary b
      g(c) -= wc.dot(v.segment(s, len));
      H(c, c) += wc.dot(hbb.segment(s, len));
      H.row(c).tail(p) += (Xc.transpose() * wc.cwiseProduct(hab.segment(s, len) + hbb.segment(s, len))).transpose();
    }
    if (c > 0 && c < km1) H(c - 1, c) += wc.dot(hab.segment(s, len));
  }
  H.bottomLeftCorner(p, km1) = H.topRightCorner(km1, p).transpose();
  for (index_t k = 0; k + 1 < km1; ++k) H(k + 1, k) = H(k, k + 1);
}

/// Binary logistic of z (0/1 per row) on X1 = [1, standardised x] with normalised weights w:
/// mean NLL and, when asked, its gradient and Hessian. (Templates on nothing a caller writes,
/// `int = 0`, here and below: Eigen's products and LDLT then compile only where a baseline is
/// fitted, not in every translation unit that includes this header.)
template <int = 0>
double logit_evaluate(const Mat<double>& X1, const Vec<double>& w, const Vec<double>& z, const Vec<double>& th,
                      Vec<double>* g, Mat<double>* H) {
  const Vec<double> eta = X1 * th;
  Vec<double> r(eta.size()), hw(eta.size());
  double s = 0;
  for (index_t i = 0; i < eta.size(); ++i) {
    const double e = eta(i);
    s += w(i) * (std::max(e, 0.0) + std::log1p(std::exp(-std::abs(e))) - z(i) * e);  // log(1 + e^eta) - z eta
    const double pr = e >= 0 ? 1 / (1 + std::exp(-e)) : std::exp(e) / (1 + std::exp(e));
    r(i) = w(i) * (pr - z(i));
    hw(i) = w(i) * pr * (1 - pr);
  }
  if (g) *g = X1.transpose() * r;
  if (H) *H = X1.transpose() * hw.asDiagonal() * X1;
  return s;
}

/// The separation probe of fit_proportional_odds from a converged phi (ws is left elsewhere).
template <class T>
bool po_keeps_growing(const Problem<T>& P, const Vec<double>& phi, const Mat<double>& X, Workspace<T>& ws) {
  Vec<double> t = phi, g;
  Mat<double> H;
  bool growing = true;
  for (int round = 0; round < 2 && growing; ++round) {
    const double f = po_evaluate(P, t, ws);
    po_derivatives(P, ws, X, g, H);
    const Vec<double> step = -H.ldlt().solve(g);
    t += step;
    growing = step.cwiseAbs().maxCoeff() >= 0.5 && po_evaluate(P, t, ws) <= f;
  }
  return growing;
}

/// The same probe for one binary logistic fit (lambda = 0) at th.
template <int = 0>
bool logit_keeps_growing(const Mat<double>& X1, const Vec<double>& w, const Vec<double>& z,
                         const Vec<double>& th) {
  Vec<double> t = th, g;
  Mat<double> H;
  bool growing = true;
  for (int round = 0; round < 2 && growing; ++round) {
    const double f = logit_evaluate(X1, w, z, t, &g, &H);
    const Vec<double> step = -H.ldlt().solve(g);
    t += step;
    growing = step.cwiseAbs().maxCoeff() >= 0.5 && logit_evaluate(X1, w, z, t, nullptr, nullptr) <= f;
  }
  return growing;
}

}  // namespace detail

/// The proportional-odds maximum-likelihood fit (MASS::polr's model, weft's signs).
template <class T>
BaselineFit<T> fit_proportional_odds(const Tensor<T>& x, const std::vector<int>& y, const BaselineOptions& o = {},
                                     const std::vector<double>& w = {}) {
  const char* fn = "ordinal::fit_proportional_odds";
  detail::check_baseline_options<T>(o, fn);
  const double tol = detail::baseline_tol<T>(o);
  const auto P = detail::make_problem(x, y, w, {}, o.num_classes, o.standardize, true, fn);
  detail::Workspace<T> ws(P);
  const index_t km1 = P.K - 1;
  const detail::Mat<double> X = P.X1.rightCols(P.p).template cast<double>();
  detail::Vec<double> phi = detail::Vec<double>::Zero(km1 + P.p), g, trial;
  const detail::Vec<T> start = detail::null_point(P);
  for (index_t k = 0; k < km1; ++k) phi(k) = double(start(k * (P.p + 1)));
  detail::Mat<double> H;
  double f = detail::po_evaluate(P, phi, ws);
  BaselineFit<T> out;
  for (;; ++out.iterations) {
    detail::po_derivatives(P, ws, X, g, H);
    if (g.cwiseAbs().maxCoeff() <= tol) {
      out.converged = true;
      break;
    }
    if (out.iterations >= o.max_iter) break;
    const detail::Vec<double> step = -H.ldlt().solve(g);
    bool accepted = false;
    for (int ls = 0; ls < 60; ++ls) {
      trial = phi + std::ldexp(1.0, -ls) * step;
      const double ft = detail::po_evaluate(P, trial, ws);
      if (ft <= f + 1e-4 * std::ldexp(1.0, -ls) * g.dot(step)) {
        phi = trial;
        f = ft;
        accepted = true;
        break;
      }
    }
    if (!accepted) {
      f = detail::po_evaluate(P, phi, ws);
      detail::po_derivatives(P, ws, X, g, H);
      out.converged = g.cwiseAbs().maxCoeff() <= tol;
      break;
    }
  }
  if (out.converged && P.p > 0 && detail::po_keeps_growing(P, phi, X, ws)) {
    out.separated = true;
    out.converged = false;
    detail::po_evaluate(P, phi, ws);  // H back at phi for the inference below
    detail::po_derivatives(P, ws, X, g, H);
  }
  out.model.intercepts = Tensor<T>(Shape{km1});
  out.model.coef = Tensor<T>(Shape{P.p, km1});
  for (index_t k = 0; k < km1; ++k) detail::unstandardize(P, phi(k), detail::Vec<double>(phi.tail(P.p)), k, out.model);
  out.nll = f;
  out.deviance = 2 * P.total_weight * f;
  const double stol = o.singular_tol > 0 ? o.singular_tol : (sizeof(T) >= 8 ? 1e-8 : 1e-4);
  const detail::Vec<double> estimate = detail::standardisation_jacobian(P) * phi;  // H is still at phi
  out.inference = detail::wald_inference(P, H, estimate, out.converged, stol);
  return out;
}

/// K-1 separate (penalised) logistic regressions of 1{y <= k}; the last is the paper's Logit.
template <class T>
BaselineFit<T> fit_logistic(const Tensor<T>& x, const std::vector<int>& y, const BaselineOptions& o = {},
                            const std::vector<double>& w = {}) {
  const char* fn = "ordinal::fit_logistic";
  detail::check_baseline_options<T>(o, fn);
  const double tol = detail::baseline_tol<T>(o);
  const auto P = detail::make_problem(x, y, w, {}, o.num_classes, o.standardize, true, fn);
  const index_t km1 = P.K - 1, p1 = P.p + 1;
  BaselineFit<T> out;
  out.model.intercepts = Tensor<T>(Shape{km1});
  out.model.coef = Tensor<T>(Shape{P.p, km1});
  out.converged = true;
  const double l1 = o.lambda * o.l1_ratio, l2 = o.lambda * (1 - o.l1_ratio);
  auto pen = [&](const detail::Vec<double>& t) { return l1 * t.tail(P.p).template lpNorm<1>() + 0.5 * l2 * t.tail(P.p).squaredNorm(); };
  auto kkt = [&](const detail::Vec<double>& t, const detail::Vec<double>& g) {
    double m = std::abs(g(0));
    for (index_t j = 1; j < p1; ++j)
      m = std::max(m, t(j) != 0 ? std::abs(g(j) + l2 * t(j) + (t(j) > 0 ? l1 : -l1)) : std::max(0.0, std::abs(g(j)) - l1));
    return m;
  };
  const detail::Mat<double> X1 = P.X1.template cast<double>();
  const detail::Vec<double> wd = P.w.template cast<double>();
  for (index_t k = 0; k < km1; ++k) {
    detail::Vec<double> z(P.n);
    double below = 0;
    for (index_t i = 0; i < P.n; ++i) {
      z(i) = i < P.start[std::size_t(k + 1)] ? 1.0 : 0.0;  // rows are sorted by class
      below += wd(i) * z(i);
    }
    detail::Vec<double> th = detail::Vec<double>::Zero(p1), g, nt;
    th(0) = std::log(below / (1 - below));
    detail::Mat<double> H;
    double F = detail::logit_evaluate(X1, wd, z, th, &g, &H) + pen(th);
    bool conv = false;
    for (int it = 0;; ++it, ++out.iterations) {
      if (kkt(th, g) <= tol) {
        conv = true;
        break;
      }
      if (it >= o.max_iter) break;
      if (o.lambda == 0) {
        nt = th - H.ldlt().solve(g);
      } else {  // coordinate descent on the penalised quadratic model (glmnet's inner loop)
        nt = th;
        detail::Vec<double> r = g;
        for (int sweep = 0; sweep < 1000; ++sweep) {
          double change = 0;
          for (index_t j = 0; j < p1; ++j) {
            if (!(H(j, j) > 0)) continue;
            const double zj = H(j, j) * nt(j) - r(j);
            const double nv = j == 0 ? zj / H(j, j) : ops::soft_threshold(zj, l1) / (H(j, j) + l2);
            const double d = nv - nt(j);
            if (d == 0) continue;
            nt(j) = nv;
            r += H.col(j) * d;
            change = std::max(change, H(j, j) * std::abs(d));
          }
          if (change <= 0.01 * tol) break;
        }
      }
      const detail::Vec<double> step = nt - th;
      const double D = g.dot(step) + pen(nt) - pen(th);
      bool accepted = false;
      for (int ls = 0; ls < 60 && D < 0; ++ls) {
        const double t = std::ldexp(1.0, -ls);
        nt = th + t * step;
        const double Ft = detail::logit_evaluate(X1, wd, z, nt, nullptr, nullptr) + pen(nt);
        if (Ft <= F + 1e-4 * t * D) {
          th = nt;
          F = Ft;
          accepted = true;
          break;
        }
      }
      if (!accepted) {
        detail::logit_evaluate(X1, wd, z, th, &g, &H);
        conv = kkt(th, g) <= tol;
        break;
      }
      detail::logit_evaluate(X1, wd, z, th, &g, &H);
    }
    if (conv && o.lambda == 0 && P.p > 0 && detail::logit_keeps_growing(X1, wd, z, th)) {
      out.separated = true;
      conv = false;
    }
    out.converged = out.converged && conv;
    const double nll = F - pen(th);
    out.nll += nll;
    out.deviance += 2 * P.total_weight * nll;
    detail::unstandardize(P, th(0), detail::Vec<double>(th.tail(P.p)), k, out.model);
  }
  return out;
}

}  // namespace ordinal
WEFT_NAMESPACE_END
