// weft/peft/decompose.hpp - the factorisations behind PiSSA and OLoRA, in double precision.
//
//   thin_svd(W, r)                      top-r singular triplets of W (m x n): U (m x r), sigma
//                                       (descending), V (n x r); Eigen's BDCSVD.
//   randomized_svd(W, r, niter, rng)    the same by a randomised range finder with `niter`
//                                       subspace iterations (Halko, Martinsson & Tropp 2011; as
//                                       torch.svd_lowrank, which PEFT's "pissa_niter_K" calls):
//                                       Q = orth(W Omega), then niter x {Q = orth(W^T Q);
//                                       Q = orth(W Q)}, then the SVD of Q^T W. `oversample`
//                                       extra columns (PEFT: 0) improve the estimate.
//   thin_qr(W)                          W = Q R with Q (m x k) orthonormal columns and R (k x n)
//                                       upper trapezoidal, k = min(m, n); Householder QR.
// Inputs are double matrices or expressions (to_double_matrix converts a weight of any type: the
// spec asks for >= float). Signs follow Eigen's conventions (a column of U or Q may be flipped
// together with V or R). The functions are templates on the input expression so that Eigen's
// SVD and QR are instantiated only where they are called: including this header costs a
// translation unit no more than the tensor core (BDCSVD alone takes about 15 s of GCC's time).
#pragma once

// a weft header before Eigen's SVD/QR modules: under GCC 12 with AVX-512 it guards the
// intrinsics against false -Wuninitialized warnings (weft/core/detail/eigen.hpp)
#include "weft/core/rng.hpp"
#include "weft/core/tensor.hpp"

#include <Eigen/QR>
#include <Eigen/SVD>

#include <algorithm>
#include <type_traits>

WEFT_NAMESPACE_BEGIN
namespace peft {

using MatrixXd = Eigen::MatrixXd;
using VectorXd = Eigen::VectorXd;

/// Top-r singular triplets, W ~ U diag(sigma) V^T.
struct SvdFactors {
  MatrixXd U;      ///< (m, r)
  VectorXd sigma;  ///< (r), descending
  MatrixXd V;      ///< (n, r)
};

/// Q (m, k) and R (k, n) of a thin QR decomposition, k = min(m, n).
struct QrFactors {
  MatrixXd Q, R;
};

/// The tensor (rank 2) as a double matrix.
template <class T>
MatrixXd to_double_matrix(const Tensor<T>& w) {
  WEFT_CHECK(w.rank() == 2, shape, "peft::to_double_matrix", "expected a matrix, got shape ", w.shape());
  return w.matrix().template cast<double>();
}

namespace detail {
template <class Derived>
constexpr void check_double_input() {
  static_assert(std::is_same<typename Derived::Scalar, double>::value,
                "weft::peft factorisations work in double: convert the weight with to_double_matrix first");
}
}  // namespace detail

/// Top-r singular triplets of W by a full thin SVD.
template <class Derived>
SvdFactors thin_svd(const Eigen::MatrixBase<Derived>& w, index_t r) {
  detail::check_double_input<Derived>();
  const index_t k = std::min<index_t>(w.rows(), w.cols());
  WEFT_CHECK(r >= 1 && r <= k, value, "peft::thin_svd", "expected 1 <= r <= min(rows, cols) = ", k, ", got ", r);
  WEFT_CHECK(w.allFinite(), value, "peft::thin_svd", "expected a finite matrix, got NaN or Inf");
  Eigen::BDCSVD<MatrixXd> svd(w, Eigen::ComputeThinU | Eigen::ComputeThinV);
  SvdFactors f;
  f.U = svd.matrixU().leftCols(r);
  f.sigma = svd.singularValues().head(r);
  f.V = svd.matrixV().leftCols(r);
  return f;
}

namespace detail {
/// An orthonormal basis of the column space of y (thin Householder Q).
template <class Derived>
MatrixXd orthonormal_basis(const Eigen::MatrixBase<Derived>& y) {
  check_double_input<Derived>();
  Eigen::HouseholderQR<MatrixXd> qr(y);
  return qr.householderQ() * MatrixXd::Identity(y.rows(), std::min(y.rows(), y.cols()));
}
}  // namespace detail

/// Top-r singular triplets of W by a randomised range finder with niter subspace iterations
/// and r + oversample random directions (capped at min(rows, cols)); Omega ~ N(0, 1) from rng.
template <class Derived>
SvdFactors randomized_svd(const Eigen::MatrixBase<Derived>& w, index_t r, int niter, Rng& rng, index_t oversample = 0) {
  detail::check_double_input<Derived>();
  const char* fn = "peft::randomized_svd";
  const index_t k = std::min<index_t>(w.rows(), w.cols());
  WEFT_CHECK(r >= 1 && r <= k, value, fn, "expected 1 <= r <= min(rows, cols) = ", k, ", got ", r);
  WEFT_CHECK(niter >= 0 && oversample >= 0, value, fn, "expected niter >= 0 and oversample >= 0, got ", niter,
             " and ", oversample);
  WEFT_CHECK(w.allFinite(), value, fn, "expected a finite matrix, got NaN or Inf");
  const index_t q = std::min<index_t>(k, r + oversample);
  MatrixXd omega(w.cols(), q);
  for (index_t j = 0; j < q; ++j)
    for (index_t i = 0; i < w.cols(); ++i) omega(i, j) = rng.normal();  // column by column: fixed order
  MatrixXd Q = detail::orthonormal_basis(w * omega);
  for (int it = 0; it < niter; ++it) {
    const MatrixXd Z = detail::orthonormal_basis(w.transpose() * Q);
    Q = detail::orthonormal_basis(w * Z);
  }
  const MatrixXd b = Q.transpose() * w;  // (q, n)
  Eigen::BDCSVD<MatrixXd> svd(b, Eigen::ComputeThinU | Eigen::ComputeThinV);
  SvdFactors f;
  f.U = Q * svd.matrixU().leftCols(r);
  f.sigma = svd.singularValues().head(r);
  f.V = svd.matrixV().leftCols(r);
  return f;
}

/// Thin QR: W = Q R, Q (m, k) with orthonormal columns, R (k, n) upper trapezoidal.
template <class Derived>
QrFactors thin_qr(const Eigen::MatrixBase<Derived>& w) {
  detail::check_double_input<Derived>();
  WEFT_CHECK(w.rows() >= 1 && w.cols() >= 1, shape, "peft::thin_qr", "expected a non-empty matrix, got ", w.rows(),
             " x ", w.cols());
  WEFT_CHECK(w.allFinite(), value, "peft::thin_qr", "expected a finite matrix, got NaN or Inf");
  const index_t k = std::min<index_t>(w.rows(), w.cols());
  Eigen::HouseholderQR<MatrixXd> qr(w);
  QrFactors f;
  f.Q = qr.householderQ() * MatrixXd::Identity(w.rows(), k);
  f.R = qr.matrixQR().topRows(k).template triangularView<Eigen::Upper>();
  return f;
}

}  // namespace peft
WEFT_NAMESPACE_END
