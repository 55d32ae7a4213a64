// weft/ordinal/inference.hpp - Wald inference for the proportional-odds MLE, as summary(polr)
// prints it: the observed-information covariance, standard errors, z values and two-sided
// normal p-values of every coefficient and cut point, on the user's original feature scale.
//
// The fit runs on standardised features, phi~ = (alpha~ (K-1), beta~ (p)). There the observed
// information is I~ = W H~, H~ the Hessian of the mean NLL (W = sum of the frequency weights,
// so W H~ is the Hessian of -sum_i w_i log pi_{y_i}). The original-scale parameters are a
// linear map of phi~ (no refit):
//   beta_j = beta~_j / s_j,   alpha_k = alpha~_k - sum_j beta~_j m_j / s_j,
// phi = J phi~ with J constant, so Cov(phi) = J I~^{-1} J^T, which is the inverse of the
// Hessian of the NLL in the original coordinates (that Hessian is J^{-T} I~ J^{-1}).
// I~ is inverted by a Cholesky factorisation after Jacobi scaling (D I~ D, D = diag(I~)^{-1/2}).
// Singularity test: lambda_min, the smallest eigenvalue of the mean-NLL Hessian with respect to
// the parameters of standardised features (free of units and of W). It is 0 for a constant or
// duplicated feature, and for separated classes (no finite MLE) it decays with the gradient:
// such fits stop with lambda_min about the gradient tolerance (1e-10). A well-posed fit has
// lambda_min of the order of pi (1 - pi) of its rarest class times the smallest variance of a
// standardised feature combination. When lambda_min <= singular_tol (default 1e-8 in double,
// 1e-4 in float) or the factorisation fails the status is `singular`, and every entry of the
// covariance, SEs, z and p is NaN, as it is for a fit that did not converge (not an optimum).
//
// Order of every vector and of the covariance's rows: beta_0..beta_{p-1}, alpha_0..alpha_{K-2}
// (polr's order: coefficients, then zeta). Signs: polr has c = -beta, zeta = alpha, so its
// vcov equals this covariance with the beta-alpha blocks negated; standard errors and
// p-values agree, z(beta_j) = -t(c_j), z(alpha_k) = t(zeta_k).
#pragma once

#include "weft/core/detail/eigen.hpp"  // first: it guards <immintrin.h> (GCC 12 AVX-512 warnings)

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <cmath>
#include <limits>
#include <vector>

#include "weft/ordinal/likelihood.hpp"

WEFT_NAMESPACE_BEGIN
namespace ordinal {

/// What the Wald inference of a fit could deliver.
enum class InferenceStatus {
  not_computed,   ///< the fit has no inference (fit_logistic)
  ok,             ///< covariance, standard errors, z and p are finite
  not_converged,  ///< the fit stopped before an optimum: all entries NaN
  singular        ///< the information is singular or not positive definite: all entries NaN
};

/// Wald inference of a proportional-odds fit (see the header comment for order and signs).
template <class T>
struct Inference {
  InferenceStatus status = InferenceStatus::not_computed;
  Tensor<T> covariance;  ///< (p + K-1, p + K-1): the inverse observed information, original scale
  Tensor<T> estimate;    ///< (p + K-1): beta, then alpha
  Tensor<T> std_errors;  ///< sqrt of the covariance's diagonal
  Tensor<T> z_values;    ///< estimate / std_errors
  Tensor<T> p_values;    ///< 2 Phi(-|z|) = erfc(|z| / sqrt 2)
  double min_eigenvalue = 0;  ///< the singularity test: smallest eigenvalue of the mean-NLL Hessian
                              ///< w.r.t. standardised-feature parameters (NaN-free fits only; else 0)
};

namespace detail {

/// A: (alpha~, beta~) -> (alpha, beta) with beta_j = beta~_j / s_j, alpha_k = alpha~_k -
/// sum_j beta~_j m_j / s_j (the map from standardised to unstandardised parameters).
template <int = 0>
Mat<double> unstandardise_map(const std::vector<double>& m, const std::vector<double>& s, index_t km1) {
  const index_t p = index_t(m.size());
  Mat<double> A = Mat<double>::Identity(km1 + p, km1 + p);
  for (index_t j = 0; j < p; ++j) {
    A(km1 + j, km1 + j) = 1 / s[std::size_t(j)];
    for (index_t k = 0; k < km1; ++k) A(k, km1 + j) = -m[std::size_t(j)] / s[std::size_t(j)];
  }
  return A;
}

/// J: the problem's (alpha~, beta~) -> (beta, alpha) on the original scale (polr's order).
template <class T>
Mat<double> standardisation_jacobian(const Problem<T>& P) {
  const index_t km1 = P.K - 1, d = km1 + P.p;
  const Mat<double> A = unstandardise_map(P.mean, P.scale, km1);
  Mat<double> J(d, d);
  J.topRows(P.p) = A.bottomRows(P.p);
  J.bottomRows(km1) = A.topRows(km1);
  return J;
}

/// Smallest eigenvalue of the mean-NLL Hessian H (problem coordinates (alpha, beta)) taken
/// with respect to parameters of standardised features, so that it does not depend on units
/// or on BaselineOptions::standardize: weighted means and population sds of the problem's own
/// columns (1 for a constant column, whose row and column of H are then 0).
template <class T>
double standardised_min_eigenvalue(const Problem<T>& P, const Mat<double>& H) {
  std::vector<double> m(std::size_t(P.p), 0.0), s(std::size_t(P.p), 1.0);
  for (index_t j = 0; j < P.p; ++j) {
    const Vec<double> c = P.X1.col(j + 1).template cast<double>(), w = P.w.template cast<double>();
    const double mj = w.dot(c), vj = w.dot((c.array() - mj).square().matrix());
    m[std::size_t(j)] = mj;
    if (vj > 0) s[std::size_t(j)] = std::sqrt(vj);
  }
  const Mat<double> A = unstandardise_map(m, s, P.K - 1);  // standardised -> problem coordinates
  const Mat<double> Hz = A.transpose() * H * A;
  return Eigen::SelfAdjointEigenSolver<Mat<double>>(Hz, Eigen::EigenvaluesOnly).eigenvalues()(0);
}

/// Inference from the mean-NLL Hessian H in the problem's coordinates (alpha~, beta~) at the
/// fit's optimum; `estimate` is (beta, alpha) on the original scale.
template <class T>
Inference<T> wald_inference(const Problem<T>& P, const Mat<double>& H, const Vec<double>& estimate, bool converged,
                            double singular_tol) {
  const index_t d = H.rows();
  Inference<T> out;
  out.estimate = Tensor<T>(Shape{d});
  for (index_t i = 0; i < d; ++i) out.estimate(i) = T(estimate(i));
  out.status = converged ? InferenceStatus::ok : InferenceStatus::not_converged;
  Mat<double> cov = Mat<double>::Constant(d, d, std::numeric_limits<double>::quiet_NaN());
  if (converged && H.allFinite()) out.min_eigenvalue = standardised_min_eigenvalue(P, H);
  if (converged && !(out.min_eigenvalue > singular_tol)) out.status = InferenceStatus::singular;
  if (out.status == InferenceStatus::ok) {  // invert W H after Jacobi scaling (unit diagonal)
    const Mat<double> I = P.total_weight * H;
    const Vec<double> D = I.diagonal().cwiseSqrt().cwiseInverse();
    const Eigen::LLT<Mat<double>> llt(D.asDiagonal() * I * D.asDiagonal());
    if (llt.info() != Eigen::Success) {
      out.status = InferenceStatus::singular;
    } else {
      const Mat<double> J = standardisation_jacobian(P) * D.asDiagonal();
      const Mat<double> c = J * llt.solve(J.transpose());
      cov = 0.5 * (c + c.transpose());  // exactly symmetric
    }
  }
  out.covariance = Tensor<T>(Shape{d, d});
  out.std_errors = Tensor<T>(Shape{d});
  out.z_values = Tensor<T>(Shape{d});
  out.p_values = Tensor<T>(Shape{d});
  for (index_t i = 0; i < d; ++i) {
    for (index_t j = 0; j < d; ++j) out.covariance(i, j) = T(cov(i, j));
    const double se = std::sqrt(cov(i, i)), z = estimate(i) / se;
    out.std_errors(i) = T(se);
    out.z_values(i) = T(z);
    out.p_values(i) = T(std::erfc(std::abs(z) / std::sqrt(2.0)));
  }
  return out;
}

}  // namespace detail
}  // namespace ordinal
WEFT_NAMESPACE_END
