// weft/ordinal/presto.hpp - PRESTO: cumulative-logit regression shrunk towards proportional
// odds (G. Faletto, J. Bien, "Predicting Rare Events by Shrinking Towards Proportional Odds",
// ICML 2023), with its lambda path and cross-validated choice of lambda.
//
// Estimator (features standardised by default, intercepts unpenalised):
//   min  -(1/W) sum_i w_i log pi_{y_i}(x_i)
//        + lambda sum_k ||psi_k||_1-type penalty,  psi_0 = beta_0, psi_k = beta_k - beta_{k-1},
// with the elastic-net form lambda sum_j [a |psi_j| + (1 - a) / 2 psi_j^2] (a = l1_ratio = 1 by
// default; a = 0 is the paper's PRESTO-L2). Writing eta_k = alpha_k + x^T (psi_0 + ... + psi_k)
// turns the fused penalty on adjacent differences into a plain lasso on psi: the design of
// boundary k repeats x in the first k+1 blocks. So lambda large pulls every boundary onto the
// proportional-odds hyperplane (and psi_0 to 0 when penalize_first); a small lambda lets the
// rare boundary tilt away from it where the data say so.
//
// Defaults follow the authors' presto_func.R and ordinalNet 2.12: 20 lambdas log-spaced from
// lambda_max (the smallest lambda with psi = 0, divided by max(a, 0.01) when a < 1) down to
// 0.01 lambda_max, warm starts down the path, the stop rule of ordinalNet (relative change of
// the log-likelihood < 1e-8 between consecutive lambdas: the last fit is reused for the rest),
// 5-fold CV on the out-of-fold Brier score, lambda* = the largest lambda attaining the minimum
// of the fold-averaged score, then a refit on all rows from the intercept-only point.
// Threads: CV folds run through parallel_for; results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <vector>

#include "weft/core/parallel.hpp"
#include "weft/core/rng.hpp"
#include "weft/ordinal/model.hpp"
#include "weft/ordinal/solver.hpp"

namespace weft::ordinal {

/// Options of PRESTO fits, paths and cross-validation; defaults as in the paper's code.
struct PrestoOptions {
  double l1_ratio = 1.0;           ///< a in lambda [a |psi| + (1 - a) psi^2 / 2]; in [0, 1]
  bool penalize_first = true;      ///< penalise psi_0 = beta_0 too (as the published results)
  bool proportional_odds = false;  ///< fix psi_1.. at 0: the proportional-odds model
  std::vector<index_t> fixed_differences;  ///< fix these psi_k at 0 (k in [1, K-2], distinct): beta_k =
                                           ///< beta_{k-1}; proportional_odds = true fixes all of them
  bool standardize = true;         ///< centre and scale features (population sd; 0 -> 1)
  index_t num_classes = 0;         ///< K; 0 = max(y) + 1
  index_t num_lambda = 20;         ///< path length
  double lambda_min_ratio = 0.01;  ///< last lambda / lambda_max
  std::vector<double> lambdas;     ///< explicit non-increasing sequence (overrides the two above)
  index_t folds = 5;               ///< K-fold CV
  std::uint64_t seed = 0;          ///< seed of the random CV partition
  Solver solver = Solver::newton;
  double tol = 0;                  ///< KKT tolerance; 0 = default_tol<T>()
  int max_iter = 0;                ///< 0 = 100 (newton) or 100000 (fista)
  double stop_thresh = 1e-8;       ///< path stop rule; 0 turns it off
};

/// One fitted PRESTO model.
template <class T>
struct PrestoFit {
  CumulativeLogit<T> model;  ///< alpha and beta on the original feature scale
  Tensor<T> theta;           ///< solver coordinates on the standardised scale: K-1 blocks (alpha_k, psi_k)
  double lambda = 0;
  double objective = 0;      ///< penalised objective (standardised scale)
  double nll = 0;            ///< mean negative log-likelihood
  double kkt = 0;            ///< KKT violation (see kkt_violation); <= tol for a converged interior fit
  double barrier_mu = 0;     ///< > 0: the minimiser is on the ordering constraints (barrier continuation used)
  int iterations = 0;
  bool converged = false;    ///< KKT <= tol, F at its resolution, or (barrier) the last stage converged
  bool separated = false;    ///< no finite minimiser: the data are (quasi-)separated along an unpenalised
                             ///< slope (lambda = 0 or psi_0 free); converged is then false (solver.hpp)
  /// psi (p, K-1) on the original scale.
  Tensor<T> psi() const { return psi_from_beta(model.coef); }
};

template <class T>
struct PrestoPath {
  std::vector<double> lambdas;
  double lambda_max = 0;
  std::vector<PrestoFit<T>> fits;  ///< one per lambda
  index_t solved = 0;              ///< fits actually solved (the stop rule reuses the last one)
};

template <class T>
struct PrestoCv {
  std::vector<double> lambdas;
  double lambda_max = 0;
  std::vector<std::vector<double>> fold_brier;  ///< [fold][lambda]
  std::vector<double> mean_brier;               ///< averaged over folds
  index_t best = 0;                             ///< index of lambda*
  double lambda_star = 0;
  index_t clamped_rows = 0;                     ///< out-of-fold rows with unordered eta, over all lambdas
  PrestoFit<T> fit;                             ///< refit on all rows at lambda*
};

namespace detail {

template <class T>
void check_presto_options(const PrestoOptions& o, const char* fn) {
  WEFT_CHECK(o.l1_ratio >= 0 && o.l1_ratio <= 1, config, fn, "expected l1_ratio (a) in [0, 1], got ", o.l1_ratio);
  WEFT_CHECK(o.num_lambda >= 1, config, fn, "expected num_lambda >= 1, got ", o.num_lambda);
  WEFT_CHECK(o.lambda_min_ratio > 0 && o.lambda_min_ratio <= 1, config, fn,
             "expected lambda_min_ratio in (0, 1], got ", o.lambda_min_ratio);
  for (std::size_t i = 0; i < o.lambdas.size(); ++i) {
    WEFT_CHECK(std::isfinite(o.lambdas[i]) && o.lambdas[i] >= 0, config, fn,
               "expected finite lambdas >= 0, got ", o.lambdas[i]);
    WEFT_CHECK(i == 0 || o.lambdas[i] <= o.lambdas[i - 1], config, fn,
               "expected a non-increasing lambda sequence, got ", o.lambdas[i - 1], " then ", o.lambdas[i]);
  }
  WEFT_CHECK(o.tol >= 0 && o.max_iter >= 0 && o.stop_thresh >= 0, config, fn,
             "expected tol, max_iter, stop_thresh >= 0, got ", o.tol, ", ", o.max_iter, ", ", o.stop_thresh);
  WEFT_CHECK(o.folds >= 2, config, fn, "expected folds >= 2, got ", o.folds);
}

/// fixed_differences needs K: indices in [1, K-2] (psi_0 = beta_0 is not a difference), distinct.
inline void check_fixed_differences(const PrestoOptions& o, index_t K, const char* fn) {
  const auto& f = o.fixed_differences;
  for (std::size_t i = 0; i < f.size(); ++i) {
    WEFT_CHECK(f[i] >= 1 && f[i] <= K - 2, config, fn, "expected fixed_differences in [1, K-2] with K = ", K,
               ", got ", f[i]);
    for (std::size_t j = 0; j < i; ++j)
      WEFT_CHECK(f[j] != f[i], config, fn, "expected distinct fixed_differences, got ", f[i], " twice");
  }
}

/// Validated options and data of the PRESTO entry points.
template <class T>
Problem<T> presto_problem(const Tensor<T>& x, const std::vector<int>& y, const std::vector<double>& w,
                          const PrestoOptions& o, const char* fn) {
  check_presto_options<T>(o, fn);
  Problem<T> P = make_problem(x, y, w, {}, o.num_classes, o.standardize, true, fn);
  check_fixed_differences(o, P.K, fn);
  return P;
}

template <class T>
SolveControl control(const PrestoOptions& o) {
  SolveControl c;
  c.solver = o.solver;
  c.tol = o.tol > 0 ? o.tol : default_tol<T>();
  c.max_iter = o.max_iter > 0 ? o.max_iter : (o.solver == Solver::fista ? 100000 : 100);
  return c;
}

template <class T>
Penalty make_penalty(const Problem<T>& P, const PrestoOptions& o, double lambda) {
  Penalty pen;
  pen.lambda = lambda;
  pen.l1_ratio = o.l1_ratio;
  const index_t p1 = P.p + 1, d = P.dim();
  pen.factor.assign(std::size_t(d), 1.0);
  pen.fixed.assign(std::size_t(d), 0);
  for (index_t k = 0; k < P.K - 1; ++k) {
    pen.factor[std::size_t(k * p1)] = 0;  // intercepts
    const bool fix = k > 0 && (o.proportional_odds || std::find(o.fixed_differences.begin(),
                                                                 o.fixed_differences.end(), k) != o.fixed_differences.end());
    for (index_t j = 1; j < p1; ++j) {
      if (k == 0 && !o.penalize_first) pen.factor[std::size_t(j)] = 0;
      if (fix) pen.fixed[std::size_t(k * p1 + j)] = 1;
    }
  }
  return pen;
}

/// The start of every path: psi = 0 where penalised, unpenalised coordinates at their MLE.
template <class T>
Vec<T> start_point(const Problem<T>& P, const PrestoOptions& o, Workspace<T>& ws) {
  Vec<T> th = null_point(P);
  if (!o.penalize_first && P.p > 0) {  // psi_0 free: the proportional-odds MLE
    PrestoOptions po = o;
    po.proportional_odds = true;
    newton_solve(P, make_penalty(P, po, 0.0), th, ws, control<T>(o));
  }
  return th;
}

template <class T>
double lambda_max_at(const Problem<T>& P, const PrestoOptions& o, const Vec<T>& th, Workspace<T>& ws) {
  evaluate(P, th.data(), ws, false);
  Vec<T> g;
  gradient(P, ws, g);
  const Penalty pen = make_penalty(P, o, 1.0);
  double m = 0;
  for (index_t j = 0; j < P.dim(); ++j)
    if (pen.factor[std::size_t(j)] > 0 && !pen.fixed[std::size_t(j)]) m = std::max(m, std::abs(double(g(j))));
  return m / std::max(o.l1_ratio, 0.01);
}

/// Standardised solver coordinates -> a fit on the original scale.
template <class T>
PrestoFit<T> to_fit(const Problem<T>& P, const Vec<T>& th, double lambda, const SolveResult& r) {
  const index_t p = P.p, p1 = p + 1, km1 = P.K - 1;
  PrestoFit<T> f;
  f.model.intercepts = Tensor<T>(Shape{km1});
  f.model.coef = Tensor<T>(Shape{p, km1});
  f.theta = Tensor<T>(Shape{km1 * p1});
  for (index_t j = 0; j < km1 * p1; ++j) f.theta(j) = th(j);
  std::vector<double> bt(std::size_t(p), 0.0);
  for (index_t k = 0; k < km1; ++k) {
    double a = double(th(k * p1));
    for (index_t j = 0; j < p; ++j) {
      bt[std::size_t(j)] += double(th(k * p1 + 1 + j));
      f.model.coef(j, k) = T(bt[std::size_t(j)] / P.scale[std::size_t(j)]);
      a -= bt[std::size_t(j)] * P.mean[std::size_t(j)] / P.scale[std::size_t(j)];
    }
    f.model.intercepts(k) = T(a);
  }
  f.lambda = lambda;
  f.objective = r.objective;
  f.nll = r.nll;
  f.kkt = r.kkt;
  f.barrier_mu = r.mu;
  f.iterations = r.iterations;
  f.converged = r.converged;
  f.separated = r.separated;
  return f;
}

template <class T>
std::vector<double> lambda_sequence(const PrestoOptions& o, double lmax) {
  if (!o.lambdas.empty()) return o.lambdas;
  std::vector<double> l(std::size_t(o.num_lambda));
  for (index_t i = 0; i < o.num_lambda; ++i)
    l[std::size_t(i)] = o.num_lambda == 1 ? lmax
                                          : lmax * std::pow(o.lambda_min_ratio, double(i) / double(o.num_lambda - 1));
  return l;
}

/// The path over `lambdas` with warm starts and the stop rule.
template <class T>
PrestoPath<T> path_on(const Problem<T>& P, const PrestoOptions& o, const std::vector<double>& lambdas) {
  Workspace<T> ws(P);
  PrestoPath<T> out;
  Vec<T> th = start_point(P, o, ws);
  out.lambda_max = lambda_max_at(P, o, th, ws);
  out.lambdas = lambdas.empty() ? lambda_sequence<T>(o, out.lambda_max) : lambdas;
  const SolveControl c = control<T>(o);
  double prev_nll = 0;
  for (std::size_t i = 0; i < out.lambdas.size(); ++i) {
    const SolveResult r = solve(P, make_penalty(P, o, out.lambdas[i]), th, ws, c);
    out.fits.push_back(to_fit(P, th, out.lambdas[i], r));
    ++out.solved;
    const bool stop = i > 0 && o.stop_thresh > 0 && std::abs(r.nll - prev_nll) < o.stop_thresh * std::abs(prev_nll);
    prev_nll = r.nll;
    if (stop) {
      for (std::size_t j = i + 1; j < out.lambdas.size(); ++j) out.fits.push_back(out.fits.back());
      break;
    }
  }
  return out;
}

}  // namespace detail

/// lambda_max: the smallest lambda at which every penalised psi is 0 (standardised scale).
template <class T>
double lambda_max(const Tensor<T>& x, const std::vector<int>& y, const PrestoOptions& o = {},
                  const std::vector<double>& w = {}) {
  const auto P = detail::presto_problem(x, y, w, o, "ordinal::lambda_max");
  detail::Workspace<T> ws(P);
  return detail::lambda_max_at(P, o, detail::start_point(P, o, ws), ws);
}

/// PRESTO at one lambda, from the intercept-only point (no warm start). y: classes 0..K-1;
/// w: empty or frequency weights (sum w replaces n everywhere).
template <class T>
PrestoFit<T> fit_presto(const Tensor<T>& x, const std::vector<int>& y, double lambda, const PrestoOptions& o = {},
                        const std::vector<double>& w = {}) {
  const char* fn = "ordinal::fit_presto";
  WEFT_CHECK(std::isfinite(lambda) && lambda >= 0, config, fn, "expected a finite lambda >= 0, got ", lambda);
  const auto P = detail::presto_problem(x, y, w, o, fn);
  detail::Workspace<T> ws(P);
  detail::Vec<T> th = detail::start_point(P, o, ws);
  const auto r = detail::solve(P, detail::make_penalty(P, o, lambda), th, ws, detail::control<T>(o));
  return detail::to_fit(P, th, lambda, r);
}

/// The lambda path (o.lambdas, or o.num_lambda values from lambda_max down), warm-started.
template <class T>
PrestoPath<T> presto_path(const Tensor<T>& x, const std::vector<int>& y, const PrestoOptions& o = {},
                          const std::vector<double>& w = {}) {
  const auto P = detail::presto_problem(x, y, w, o, "ordinal::presto_path");
  return detail::path_on(P, o, o.lambdas);
}

/// The KKT violation of `fit` for the data and options it was fitted with (<= the solver
/// tolerance at a solution): the largest distance of -grad from the penalty's subdifferential
/// over the free coordinates. When ordering constraints are active (fit.barrier_mu > 0) the
/// gradient is the Lagrangian's, with multipliers nu_ik = mu w_i / s_ik >= 0 for the constraints
/// s_ik = eta_{i,k+1} - eta_ik >= 0, and the complementarity max nu_ik s_ik counts too.
template <class T>
double kkt_violation(const Tensor<T>& x, const std::vector<int>& y, const PrestoFit<T>& fit,
                     const PrestoOptions& o = {}, const std::vector<double>& w = {}) {
  const char* fn = "ordinal::kkt_violation";
  const auto P = detail::presto_problem(x, y, w, o, fn);
  WEFT_CHECK(fit.theta.numel() == P.dim(), shape, fn, "expected a fit with ", P.dim(), " coordinates, got ",
             fit.theta.numel());
  detail::Vec<T> th(P.dim()), g;
  for (index_t j = 0; j < P.dim(); ++j) th(j) = fit.theta(j);
  detail::Workspace<T> ws(P);
  return detail::constrained_kkt(P, detail::make_penalty(P, o, fit.lambda), th, ws, fit.barrier_mu);
}

/// PRESTO with lambda chosen by o.folds-fold CV on the Brier score (the paper's presto()).
template <class T>
PrestoCv<T> presto(const Tensor<T>& x, const std::vector<int>& y, const PrestoOptions& o = {},
                   const std::vector<double>& w = {}) {
  const char* fn = "ordinal::presto";
  const auto P = detail::presto_problem(x, y, w, o, fn);
  WEFT_CHECK(o.folds <= P.n, config, fn, "expected folds <= n = ", P.n, ", got ", o.folds);
  PrestoCv<T> cv;
  {
    detail::Workspace<T> ws(P);
    cv.lambda_max = detail::lambda_max_at(P, o, detail::start_point(P, o, ws), ws);
  }
  cv.lambdas = detail::lambda_sequence<T>(o, cv.lambda_max);
  const index_t n = x.dim(0), F = o.folds, L = index_t(cv.lambdas.size());
  std::vector<index_t> fold(static_cast<std::size_t>(n), 0);
  const std::vector<index_t> perm = Rng(o.seed).permutation(n);
  for (index_t i = 0; i < n; ++i) fold[std::size_t(perm[std::size_t(i)])] = i % F;
  cv.fold_brier.assign(std::size_t(F), std::vector<double>(std::size_t(L), 0.0));
  std::vector<index_t> clamped(static_cast<std::size_t>(F), 0);
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(F));
  PrestoOptions fo = o;
  fo.num_classes = P.K;
  parallel_for(0, F, 1, [&](index_t lo, index_t hi) {
    for (index_t f = lo; f < hi; ++f) {
#ifndef WEFT_NO_EXCEPTIONS  // without exceptions a failed check ends in the error handler
      try {
#endif
        std::vector<index_t> train, test;
        for (index_t i = 0; i < n; ++i) (fold[std::size_t(i)] == f ? test : train).push_back(i);
        const auto Pf = detail::make_problem(x, y, w, train, fo.num_classes, fo.standardize, true, fn);
        const PrestoPath<T> path = detail::path_on(Pf, fo, cv.lambdas);
        Tensor<T> xt(Shape{index_t(test.size()), x.dim(1)});
        std::vector<int> yt;
        std::vector<double> wt;
        for (std::size_t r = 0; r < test.size(); ++r) {
          for (index_t j = 0; j < x.dim(1); ++j) xt(index_t(r), j) = x(test[r], j);
          yt.push_back(y[std::size_t(test[r])]);
          if (!w.empty()) wt.push_back(w[std::size_t(test[r])]);
        }
        for (index_t l = 0; l < L; ++l) {
          const Probabilities<T> pr = predict_proba(path.fits[std::size_t(l)].model, xt);
          clamped[std::size_t(f)] += pr.clamped_rows;
          cv.fold_brier[std::size_t(f)][std::size_t(l)] = brier_score(pr.probs, yt, wt);
        }
#ifndef WEFT_NO_EXCEPTIONS
      } catch (...) {
        errors[std::size_t(f)] = std::current_exception();
      }
#endif
    }
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  cv.mean_brier.assign(std::size_t(L), 0.0);
  for (index_t l = 0; l < L; ++l) {
    for (index_t f = 0; f < F; ++f) cv.mean_brier[std::size_t(l)] += cv.fold_brier[std::size_t(f)][std::size_t(l)];
    cv.mean_brier[std::size_t(l)] /= double(F);
  }
  for (index_t l = 1; l < L; ++l)  // strict <: ties keep the larger lambda
    if (cv.mean_brier[std::size_t(l)] < cv.mean_brier[std::size_t(cv.best)]) cv.best = l;
  cv.lambda_star = cv.lambdas[std::size_t(cv.best)];
  for (index_t c : clamped) cv.clamped_rows += c;
  cv.fit = fit_presto(x, y, cv.lambda_star, fo, w);
  return cv;
}

}  // namespace weft::ordinal
