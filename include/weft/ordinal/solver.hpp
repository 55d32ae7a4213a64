// weft/ordinal/solver.hpp - minimisers of the penalised cumulative-logit objective
//   F(theta) = f(theta) + lambda sum_j pf_j [a |theta_j| + (1 - a) / 2 theta_j^2]
// (f: likelihood.hpp; pf_j = 0 for intercepts and other unpenalised coordinates; a = l1_ratio),
// and the KKT check that certifies a solution.
//
// newton  proximal Newton (Lee, Sun & Saunders 2014), the same scheme as ordinalNet's Fisher
//         scoring with an inner coordinate descent, but with the exact Hessian: at theta the
//         quadratic model g^T d + d^T H d / 2 + penalty is minimised by cyclic coordinate
//         descent (soft-thresholding updates), then a backtracking line search on F rejects
//         steps that increase F or leave the feasible set (unordered eta: F = +inf). Converges
//         quadratically near the solution, so tight tolerances cost one or two more steps.
// fista   accelerated proximal gradient (Beck & Teboulle 2009) with backtracking on the local
//         Lipschitz constant, infeasible trial points rejected, and function-value restarts
//         (O'Donoghue & Candes 2015): the plain baseline of the benchmarks.
// Both stop when the KKT violation (kkt_residual below, in units of df/dtheta) is <= tol.
// Coordinates marked `fixed` stay where they are (at 0 for the proportional-odds constraint).
// Ordering constraints: where the minimiser lies on the boundary of the feasible polyhedron
// (likelihood.hpp), newton switches to a log-barrier continuation and certifies the result
// with the barrier's multipliers; fista (the baseline) then stalls at the boundary and reports
// converged = false.
// Separation: where some slope is unpenalised (lambda = 0, or psi_0 free) and the data are
// (quasi-)separated, no finite minimiser exists; the gradient decays like e^-|eta| and falls
// under tol with coefficients set by tol (about -46 at 1e-10). solve() then probes: two more
// full (proximal) Newton steps from the result, each moving some coordinate by >= 0.5 on the
// standardised scale without raising F, mean unbounded growth (at a finite minimiser the step
// is about H^-1 g, far below 0.5 after convergence). Such a fit is reported separated and not
// converged (glm and polr warn in the same situation).
#pragma once

#include "weft/core/detail/eigen.hpp"  // first: it guards <immintrin.h> (GCC 12 AVX-512 warnings)

#include <Eigen/Cholesky>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "weft/core/ops/prox.hpp"
#include "weft/ordinal/likelihood.hpp"

WEFT_NAMESPACE_BEGIN
namespace ordinal {

/// Which minimiser fits the penalised model.
enum class Solver { newton, fista };

/// Default KKT tolerance for scalar type T: 1e-10 in double, 1e-5 in float.
template <class T>
constexpr double default_tol() {
  return sizeof(T) >= 8 ? 1e-10 : 1e-5;
}

namespace detail {

/// The penalty of one fit: lambda, the elastic-net mix a, factors pf_j and frozen coordinates.
struct Penalty {
  double lambda = 0, l1_ratio = 1;
  std::vector<double> factor;  ///< per coordinate; 0 = unpenalised
  std::vector<char> fixed;     ///< per coordinate; 1 = not optimised
};

struct SolveControl {
  Solver solver = Solver::newton;
  double tol = 1e-10;
  int max_iter = 100;
};

struct SolveResult {
  double objective = 0, nll = 0, kkt = 0;
  double mu = 0;  ///< final barrier parameter (0: no ordering constraint was active)
  int iterations = 0;
  bool converged = false;
  bool separated = false;  ///< Newton steps keep growing the coefficients (see the file comment)
};

template <class T>
double penalty_value(const Penalty& pen, const Vec<T>& th) {
  double s = 0;
  for (index_t j = 0; j < th.size(); ++j) {
    const double pf = pen.factor[std::size_t(j)], t = double(th(j));
    if (pf > 0) s += pf * (pen.l1_ratio * std::abs(t) + 0.5 * (1 - pen.l1_ratio) * t * t);
  }
  return pen.lambda * s;
}

/// penalty(b) - penalty(a), summed term by term so that a tiny step gives an accurate
/// (tiny) difference instead of the rounding error of two nearly equal sums.
template <class T>
double penalty_change(const Penalty& pen, const Vec<T>& a, const Vec<T>& b) {
  double s = 0;
  for (index_t j = 0; j < a.size(); ++j) {
    const double pf = pen.factor[std::size_t(j)], ta = double(a(j)), tb = double(b(j));
    if (pf > 0) s += pf * (pen.l1_ratio * (std::abs(tb) - std::abs(ta)) + 0.5 * (1 - pen.l1_ratio) * (tb - ta) * (tb + ta));
  }
  return pen.lambda * s;
}

/// max_j of the KKT residual at theta given g = df/dtheta (free coordinates only).
template <class T>
double kkt_residual(const Penalty& pen, const Vec<T>& th, const Vec<T>& g) {
  double worst = 0;
  for (index_t j = 0; j < th.size(); ++j) {
    if (pen.fixed[std::size_t(j)]) continue;
    const double pf = pen.factor[std::size_t(j)], t = double(th(j)), gj = double(g(j));
    const double l1 = pen.lambda * pen.l1_ratio * pf, l2 = pen.lambda * (1 - pen.l1_ratio) * pf;
    double r;
    if (t != 0) r = std::abs(gj + l2 * t + (t > 0 ? l1 : -l1));
    else r = std::max(0.0, std::abs(gj) - l1);
    worst = std::max(worst, r);
  }
  return worst;
}

/// Cyclic coordinate descent on q(t) = g^T (t - th) + (t - th)^T H (t - th) / 2 + penalty(t),
/// starting from `out`, until a sweep changes no gradient coordinate by more than tol.
template <class T>
void quadratic_cd(const Penalty& pen, const Vec<T>& th, const Vec<T>& g, const Mat<T>& H, Vec<T>& out, double tol,
                  int max_sweeps) {
  Vec<T> r = g + H * (out - th);  // gradient of the quadratic part at `out`
  const index_t d = th.size();
  for (int sweep = 0; sweep < max_sweeps; ++sweep) {
    double change = 0;
    for (index_t j = 0; j < d; ++j) {
      const double hjj = double(H(j, j));
      if (pen.fixed[std::size_t(j)] || !(hjj > 0)) continue;
      const double pf = pen.factor[std::size_t(j)];
      const double z = hjj * double(out(j)) - double(r(j));
      const double nv = ops::soft_threshold(z, pen.lambda * pen.l1_ratio * pf) /
                        (hjj + pen.lambda * (1 - pen.l1_ratio) * pf);
      const double delta = nv - double(out(j));
      if (delta == 0) continue;
      out(j) = T(nv);
      r.noalias() += H.col(j) * T(delta);
      change = std::max(change, hjj * std::abs(delta));
    }
    if (change <= tol) break;
  }
}

/// argmin_t q(t) (see quadratic_cd). Coordinate descent finds the sign pattern; an exact solve
/// of the linear system on the nonzero coordinates then removes what coordinate descent leaves
/// when H is ill-conditioned (near-collinear features, or the barrier's mu / s^2 terms near an
/// active ordering constraint), followed by a few sweeps to repair the pattern if it changed.
template <class T>
void quadratic_solve(const Penalty& pen, const Vec<T>& th, const Vec<T>& g, const Mat<T>& H, Vec<T>& out,
                     double tol) {
  out = th;
  quadratic_cd(pen, th, g, H, out, tol, 200);
  const index_t d = th.size();
  auto sub_kkt = [&](const Vec<T>& t) { return kkt_residual(pen, t, Vec<T>(g + H * (t - th))); };
  double best = sub_kkt(out);
  const double l1 = pen.lambda * pen.l1_ratio, l2 = pen.lambda * (1 - pen.l1_ratio);
  for (int round = 0; round < 10 && best > tol; ++round) {
    std::vector<index_t> A;
    for (index_t j = 0; j < d; ++j)
      if (!pen.fixed[std::size_t(j)] && H(j, j) > 0 && (pen.factor[std::size_t(j)] == 0 || out(j) != 0)) A.push_back(j);
    if (A.empty()) break;
    const index_t m = index_t(A.size());
    Mat<T> M(m, m);
    Vec<T> rhs(m);
    const Vec<T> rest = H * (th - out);  // H (th - t) with t_A still the coordinate-descent values
    for (index_t a = 0; a < m; ++a) {
      const index_t j = A[std::size_t(a)];
      const double pf = pen.factor[std::size_t(j)];
      for (index_t b = 0; b < m; ++b) M(a, b) = H(j, A[std::size_t(b)]);
      M(a, a) += T(l2 * pf);
      double sgn = out(j) > 0 ? 1.0 : (out(j) < 0 ? -1.0 : 0.0);
      rhs(a) = T(-double(g(j)) + double(rest(j)) - l1 * pf * sgn);
      for (index_t b = 0; b < m; ++b) rhs(a) += H(j, A[std::size_t(b)]) * out(A[std::size_t(b)]);
    }
    const Vec<T> sol = M.ldlt().solve(rhs);
    Vec<T> cand = out;
    for (index_t a = 0; a < m; ++a) {
      const index_t j = A[std::size_t(a)];
      const bool flipped = pen.factor[std::size_t(j)] > 0 && l1 > 0 && double(sol(a)) * double(out(j)) <= 0;
      cand(j) = flipped ? T(0) : sol(a);  // a coordinate that crossed 0 restarts from 0
    }
    if (!cand.allFinite()) break;
    quadratic_cd(pen, th, g, H, cand, tol, 20);
    const double k = sub_kkt(cand);
    if (!(k < best)) break;
    out = cand;
    best = k;
  }
}

enum class StageEnd { converged, boundary, stalled, max_iter };

/// One proximal Newton run on f + mu B + penalty from theta (feasible; strictly when mu > 0).
/// Ends `converged` when the KKT residual is <= tol, or when the decrease a Newton step
/// predicts is below what F can resolve (100 eps |F|): with mu > 0 always (directions with the
/// barrier's huge curvature keep a gradient long after F stops changing), with mu = 0 only
/// once the line search fails. With detect_boundary it returns `boundary` once two full Newton
/// steps have left the feasible set (the minimiser is on the boundary: see likelihood.hpp).
template <class T>
StageEnd newton_stage(const Problem<T>& P, const Penalty& pen, Vec<T>& theta, Workspace<T>& ws, double tol,
                      int max_iter, double mu, bool detect_boundary, SolveResult& res) {
  double F = evaluate(P, theta.data(), ws, true, mu) + penalty_value(pen, theta);
  Vec<T> g, trial, step;
  Mat<T> H;
  int hits = 0;
  for (;; ++res.iterations) {
    gradient(P, ws, g, mu);
    res.kkt = kkt_residual(pen, theta, g);
    if (res.kkt <= tol) return StageEnd::converged;
    if (res.iterations >= max_iter) return StageEnd::max_iter;
    hessian(P, ws, H, mu);
    quadratic_solve(pen, theta, g, H, trial, 0.01 * std::min(tol, res.kkt));
    step = trial - theta;
    const double D = double(g.dot(step)) + penalty_change(pen, theta, trial);
    const double resolution = 100 * double(std::numeric_limits<T>::epsilon()) * std::max(1.0, std::abs(F));
    if (mu > 0 && -D <= resolution) return StageEnd::converged;
    bool accepted = false, full_infeasible = false;
    for (int ls = 0; ls < 60 && D < 0; ++ls) {
      const double t = std::ldexp(1.0, -ls);
      trial = theta + T(t) * step;
      const double Ft = evaluate(P, trial.data(), ws, true, mu) + penalty_value(pen, trial);
      if (ls == 0 && std::isinf(Ft)) full_infeasible = true;
      // Armijo, with F's rounding (50 eps |F|: a sum of n rounded terms) forgiven: near the solution the full step must
      // not be refused because F can no longer resolve its decrease (halving it instead leaves
      // coordinates that should be exactly 0 at ever smaller nonzero values)
      if (Ft <= F + 1e-4 * t * D + 0.5 * resolution) {
        theta = trial;
        F = Ft;
        accepted = true;
        break;
      }
    }
    if (full_infeasible) ++hits;
    if (!accepted) {  // no decrease left at this precision: restore ws at theta
      evaluate(P, theta.data(), ws, true, mu);
      gradient(P, ws, g, mu);
      res.kkt = kkt_residual(pen, theta, g);
      if (res.kkt <= tol || -D <= resolution) return StageEnd::converged;
      return detect_boundary && hits > 0 ? StageEnd::boundary : StageEnd::stalled;
    }
    if (detect_boundary && hits >= 2) {
      ++res.iterations;
      evaluate(P, theta.data(), ws, true, mu);
      return StageEnd::boundary;
    }
  }
}

/// The KKT residual of a fit that may touch the ordering constraints: multipliers nu >= 0 of
/// the near-active constraints S = {(i, k) : mu w_i / s_ik >= 1e-9} (at most 64, the largest)
/// are fitted by least squares to the stationarity equations on the free nonzero coordinates;
/// the residual is then the largest of: the KKT residual of grad f - sum nu a_ik (a_ik =
/// d s_ik / d theta), max(0, -nu), and max nu_ik s_ik (complementarity). mu = 0: plain KKT.
template <class T>
double constrained_kkt(const Problem<T>& P, const Penalty& pen, const Vec<T>& theta, Workspace<T>& ws, double mu) {
  if (!std::isfinite(evaluate(P, theta.data(), ws, false, 0.0))) return std::numeric_limits<double>::infinity();
  Vec<T> gt;
  gradient(P, ws, gt, 0.0);
  Vec<double> g = gt.template cast<double>();
  const index_t p1 = P.p + 1, km1 = P.K - 1, d = P.dim();
  struct Active { index_t i, k; double nu0; };
  std::vector<Active> S;
  for (index_t k = 0; mu > 0 && k + 1 < km1; ++k)
    for (index_t i = 0; i < P.n; ++i) {
      const double nu0 = mu * double(P.w(i)) / std::max(double(ws.slack(i, k)), 1e-300);
      if (nu0 >= 1e-9) S.push_back({i, k, nu0});
    }
  std::sort(S.begin(), S.end(), [](const Active& a, const Active& b) { return a.nu0 > b.nu0; });
  if (S.size() > 64) S.resize(64);
  if (S.empty()) return kkt_residual(pen, theta, gt);
  const index_t m = index_t(S.size());
  Mat<double> A = Mat<double>::Zero(d, m);  // columns: d s_ik / d theta
  for (index_t c = 0; c < m; ++c) {
    const auto& a = S[std::size_t(c)];
    A(a.k * p1, c) = -1;
    A((a.k + 1) * p1, c) = 1;
    for (index_t j = 0; j < P.p; ++j) A((a.k + 1) * p1 + 1 + j, c) = double(P.X1(a.i, j + 1));
  }
  std::vector<index_t> rows;  // free coordinates where stationarity is an equation
  Vec<double> b(d);
  for (index_t j = 0; j < d; ++j) {
    const double pf = pen.factor[std::size_t(j)], t = double(theta(j));
    b(j) = g(j) + pen.lambda * (1 - pen.l1_ratio) * pf * t + (t > 0 ? 1 : (t < 0 ? -1 : 0)) * pen.lambda * pen.l1_ratio * pf;
    if (!pen.fixed[std::size_t(j)] && (pf == 0 || t != 0)) rows.push_back(j);
  }
  Mat<double> An(index_t(rows.size()), m);
  Vec<double> bn(index_t(rows.size()));
  for (std::size_t r = 0; r < rows.size(); ++r) {
    An.row(index_t(r)) = A.row(rows[r]);
    bn(index_t(r)) = b(rows[r]);
  }
  const Vec<double> nu = An.colPivHouseholderQr().solve(bn);
  const Vec<T> rg = (g - A * nu).template cast<T>();
  double worst = kkt_residual(pen, theta, rg);
  for (index_t c = 0; c < m; ++c) {
    const auto& a = S[std::size_t(c)];
    worst = std::max({worst, -nu(c), std::abs(nu(c)) * double(ws.slack(a.i, a.k))});
  }
  return worst;
}

/// Proximal Newton from theta (feasible); theta holds the solution on return. When the
/// minimiser lies on the boundary of the feasible set, a log-barrier continuation follows:
/// theta is moved slightly into the interior (towards the intercept-only point, which is
/// strictly feasible) and re-solved with mu = 1e-3, 1e-4, ... down to mu_min = max(1e-3 tol,
/// 1e-10), each stage with its own max_iter budget. When the last stage converges, F exceeds
/// its constrained minimum by at most about (K-2) mu_min (the barrier's duality gap); the final
/// mu is returned and res.kkt is the multiplier-fitted KKT residual of constrained_kkt.
template <class T>
SolveResult newton_solve(const Problem<T>& P, const Penalty& pen, Vec<T>& theta, Workspace<T>& ws,
                         const SolveControl& c) {
  SolveResult res;
  StageEnd end = newton_stage(P, pen, theta, ws, c.tol, c.max_iter, 0.0, P.K >= 3, res);
  if (end == StageEnd::boundary) {
    const Vec<T> inner = null_point(P);
    double mu = 1e-3;
    const double mu_min = std::max(1e-3 * c.tol, 1e-10);
    for (double eps = 1e-3; eps <= 1; eps *= 10) {  // strictly feasible start for the barrier
      const Vec<T> cand = theta + T(eps) * (inner - theta);
      if (std::isfinite(evaluate(P, cand.data(), ws, false, mu))) {
        theta = cand;
        break;
      }
    }
    for (;; mu *= 0.1) {
      const bool last = mu <= mu_min * 1.000001;
      end = newton_stage(P, pen, theta, ws, last ? c.tol : std::max(c.tol, mu), res.iterations + c.max_iter, mu,
                         false, res);  // max_iter per stage
      if (last || end == StageEnd::max_iter) break;
    }
    res.mu = mu;
    res.kkt = constrained_kkt(P, pen, theta, ws, mu);
  }
  // on the boundary, convergence means the last barrier stage (mu = mu_min) converged: F is then
  // within about (K-2) mu_min of its constrained minimum; res.kkt (least-squares multipliers)
  // is reported as a diagnostic (1e-10 .. 1e-7 in double, the barrier's stiffness limits it)
  res.converged = end == StageEnd::converged;
  res.nll = evaluate(P, theta.data(), ws, false, 0.0);
  res.objective = res.nll + penalty_value(pen, theta);
  return res;
}

/// FISTA with backtracking and restarts from theta (feasible); theta holds the result.
template <class T>
SolveResult fista_solve(const Problem<T>& P, const Penalty& pen, Vec<T>& theta, Workspace<T>& ws,
                        const SolveControl& c) {
  SolveResult res;
  const index_t d = theta.size();
  Vec<T> pf(d), y = theta, gy, xn(d), g;
  for (index_t j = 0; j < d; ++j) pf(j) = T(pen.fixed[std::size_t(j)] ? 0.0 : pen.factor[std::size_t(j)]);
  double fx = evaluate(P, theta.data(), ws, false), Fx = fx + penalty_value(pen, theta);
  double L = 1e-2, t = 1;
  const T l1 = T(pen.lambda * pen.l1_ratio), l2 = T(pen.lambda * (1 - pen.l1_ratio));
  for (res.iterations = 0;; ++res.iterations) {
    if (res.iterations % 10 == 0) {  // KKT at the current iterate
      evaluate(P, theta.data(), ws, false);
      gradient(P, ws, g);
      res.kkt = kkt_residual(pen, theta, g);
      if (res.kkt <= c.tol) {
        res.converged = true;
        break;
      }
    }
    if (res.iterations >= c.max_iter) break;
    double fy = evaluate(P, y.data(), ws, false);
    if (!std::isfinite(fy)) {  // the extrapolated point left the feasible set: restart there
      y = theta;
      t = 1;
      fy = evaluate(P, y.data(), ws, false);
    }
    gradient(P, ws, gy);
    double fn = 0;
    for (int bt = 0; bt < 100; ++bt) {
      ops::prox_grad_step(y.data(), gy.data(), pf.data(), xn.data(), d, T(1.0 / L), l1, l2);
      for (index_t j = 0; j < d; ++j)
        if (pen.fixed[std::size_t(j)]) xn(j) = y(j);
      fn = evaluate(P, xn.data(), ws, false);
      const Vec<T> diff = xn - y;
      const double slack = 50 * double(std::numeric_limits<T>::epsilon()) * std::max(1.0, std::abs(fy));
      if (std::isfinite(fn) && fn <= fy + double(gy.dot(diff)) + 0.5 * L * double(diff.squaredNorm()) + slack) break;
      L *= 2;
    }
    const double Fn = fn + penalty_value(pen, xn);
    if (!(Fn <= Fx)) {  // function-value restart: drop the momentum, retry from theta
      if (t == 1) break;  // a plain proximal step failed to decrease F: at precision
      y = theta;
      t = 1;
      continue;
    }
    const double tn = 0.5 * (1 + std::sqrt(1 + 4 * t * t));
    y = xn + T((t - 1) / tn) * (xn - theta);
    theta = xn;
    t = tn;
    fx = fn;
    Fx = Fn;
  }
  res.nll = evaluate(P, theta.data(), ws, false);
  gradient(P, ws, g);
  res.kkt = kkt_residual(pen, theta, g);
  res.converged = res.kkt <= c.tol;
  res.objective = res.nll + penalty_value(pen, theta);
  return res;
}

/// Whether some slope (not an intercept, not fixed) is free of the penalty: only then can the
/// coefficients run off to infinity on separated data.
template <class T>
bool has_free_slope(const Problem<T>& P, const Penalty& pen) {
  for (index_t j = 0; j < P.dim(); ++j)
    if (j % (P.p + 1) != 0 && !pen.fixed[std::size_t(j)] && (pen.lambda == 0 || pen.factor[std::size_t(j)] == 0))
      return true;
  return false;
}

/// The separation probe (file comment) from a converged theta; ws is left at theta.
template <class T>
bool keeps_growing(const Problem<T>& P, const Penalty& pen, const Vec<T>& theta, Workspace<T>& ws, double tol) {
  Vec<T> t = theta, g, trial;
  Mat<T> H;
  bool growing = true;
  for (int round = 0; round < 2 && growing; ++round) {
    const double F = evaluate(P, t.data(), ws, true, 0.0) + penalty_value(pen, t);
    gradient(P, ws, g, 0.0);
    hessian(P, ws, H, 0.0);
    quadratic_solve(pen, t, g, H, trial, 0.01 * tol);
    const double move = double((trial - t).cwiseAbs().maxCoeff());
    const double Ft = evaluate(P, trial.data(), ws, false, 0.0) + penalty_value(pen, trial);
    growing = move >= 0.5 && Ft <= F;
    t = trial;
  }
  evaluate(P, theta.data(), ws, false, 0.0);
  return growing;
}

template <class T>
SolveResult solve(const Problem<T>& P, const Penalty& pen, Vec<T>& theta, Workspace<T>& ws, const SolveControl& c) {
  SolveResult r = c.solver == Solver::fista ? fista_solve(P, pen, theta, ws, c) : newton_solve(P, pen, theta, ws, c);
  if (r.converged && r.mu == 0 && has_free_slope(P, pen) && keeps_growing(P, pen, theta, ws, c.tol)) {
    r.separated = true;
    r.converged = false;
  }
  return r;
}

}  // namespace detail
}  // namespace ordinal
WEFT_NAMESPACE_END
