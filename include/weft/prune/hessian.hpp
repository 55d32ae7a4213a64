// weft/prune/hessian.hpp - calibration statistics of one Linear and the inverse-Hessian quantities
// of optimal brain surgeon (OBS) pruning.
//
// For a layer y = x W^T + b with calibration inputs X (N tokens x din), the layer-wise
// reconstruction error ||X W^T - X Wp^T||^2 has the Hessian proxy (SparseGPT, D-Pruner's
// general.py)
//     H = (2 / n) sum_s X_s^T X_s,        n = number of calibration sequences.
// HessianStats accumulates S = sum X^T X in double (the reference keeps a running mean instead,
// H <- H n_old / (n_old + b) + (2 / n) X^T X; the two agree up to rounding), plus the column
// sums of squares ||X_j||^2 that Wanda needs. What counts as a sequence: the leading axis of a
// rank >= 3 input (batch, seq, din); each row of a rank-2 input (N, din) (library choice: the
// reference counts a 2-D input as one sequence; only H's overall scale depends on this).
//
// Before inverting (general.py / sparsegpt.py fasterprune):
//   dead inputs  H_jj == 0: set H_jj = 1 and treat column j of W as 0 (its importance is 0);
//   damping      H <- H + percdamp * mean(diag H) * I   (percdamp = 0.01; mean after the dead fix).
// Then
//   inverse_hessian_diag  d_j = [H^-1]_jj, from the Cholesky factor H = L L^T and
//                         d_j = ||column j of L^-1||^2 (no full inverse; ObsDiag needs only this);
//   obs_factor            U, the upper Cholesky factor of H^-1 (H^-1 = U^T U), for the sequential
//                         SparseGPT path (sparsegpt.hpp).
//   obs_diag_importance   G = W^2 / diag(H^-1) on the unmodified W (dead columns 0): twice the OBS
//                         saliency w^2 / (2 [H^-1]_jj), so the same ranking.
// A Hessian that is not positive definite after damping (NaN inputs, percdamp 0 with a rank
// deficient H) is a ValueError.
#pragma once

#include "weft/core/tensor.hpp"  // first: GCC 12 -march=native false warnings in <Eigen/Cholesky>

#include <Eigen/Cholesky>

#include <cmath>
#include <vector>

#include "weft/prune/kernels.hpp"

namespace weft::prune {

/// Running calibration statistics of one layer's inputs: S = sum X^T X (optional) and the
/// column sums of squares, in double.
template <class T>
class HessianStats {
 public:
  HessianStats() = default;
  /// Statistics of a layer with `din` inputs; with_hessian = false keeps only column norms.
  explicit HessianStats(index_t din, bool with_hessian = true) : din_(din), with_h_(with_hessian) {
    WEFT_CHECK(din > 0, shape, "prune::HessianStats", "expected din > 0, got ", din);
    if (with_h_) s_ = RowMatrix<double>::Zero(din, din);
    sq_.assign(std::size_t(din), 0.0);
  }

  /// Adds a batch of inputs x of shape (..., din). Rank >= 3 counts dim(0) sequences, rank 2
  /// counts one sequence per row.
  void add_batch(const Tensor<T>& x) {
    const char* fn = "prune::HessianStats::add_batch";
    WEFT_CHECK(din_ > 0, config, fn, "expected constructed statistics, got an empty HessianStats");
    WEFT_CHECK(x.rank() >= 2 && x.shape().last() == din_, shape, fn, "expected inputs of shape (..., ", din_,
               "), got ", x.shape());
    WEFT_CHECK(x.numel() > 0, shape, fn, "expected a non-empty batch, got shape ", x.shape());
    WEFT_CHECK(x.all_finite(), value, fn, "expected finite calibration inputs, got NaN or Inf");
    const index_t rows = x.numel() / din_;
    const Eigen::MatrixXd xd = x.matrix(rows, din_).template cast<double>();
    if (with_h_) s_.template selfadjointView<Eigen::Lower>().rankUpdate(xd.transpose());
    for (index_t r = 0; r < rows; ++r)
      for (index_t j = 0; j < din_; ++j) sq_[std::size_t(j)] += xd(r, j) * xd(r, j);
    samples_ += x.rank() >= 3 ? x.dim(0) : rows;
    tokens_ += rows;
  }

  index_t columns() const noexcept { return din_; }
  bool has_hessian() const noexcept { return with_h_; }
  /// Number of calibration sequences seen (n in H = (2 / n) sum X^T X).
  index_t samples() const noexcept { return samples_; }
  /// Number of input rows (tokens) seen.
  index_t tokens() const noexcept { return tokens_; }

  /// Calls f(double* data, std::size_t n) on each running sum (sum X^T X when kept, the column
  /// sums of squares, then the sequence and token counts as two doubles, exact below 2^53) and
  /// keeps what f leaves there. Summing them elementwise over several HessianStats of the same
  /// layer (dist::allreduce over MPI ranks) gives the statistics of all their batches.
  template <class F>
  void visit_sums(F&& f) {
    if (with_h_) f(s_.data(), std::size_t(s_.size()));
    f(sq_.data(), sq_.size());
    double counts[2] = {double(samples_), double(tokens_)};
    f(counts, std::size_t(2));
    samples_ = index_t(counts[0]);
    tokens_ = index_t(counts[1]);
  }

  /// H = (2 / n) sum X^T X (dense, symmetric).
  RowMatrix<double> hessian() const {
    check_ready("prune::HessianStats::hessian");
    WEFT_CHECK(with_h_, config, "prune::HessianStats::hessian", "expected statistics built with_hessian, got column norms only");
    RowMatrix<double> h = s_.template selfadjointView<Eigen::Lower>();
    h *= 2.0 / double(samples_);
    return h;
  }
  /// ||X_j||_2 over every calibration token (Wanda's input norm), as a rank-1 tensor.
  Tensor<T> column_norms() const {
    check_ready("prune::HessianStats::column_norms");
    Tensor<T> out(Shape{din_});
    for (index_t j = 0; j < din_; ++j) out.flat(j) = T(std::sqrt(sq_[std::size_t(j)]));
    return out;
  }

 private:
  void check_ready(const char* fn) const {
    WEFT_CHECK(samples_ > 0, shape, fn, "expected calibration data, got an empty calibration set (no batch added)");
  }
  index_t din_ = 0;
  bool with_h_ = true;
  RowMatrix<double> s_;  // lower triangle holds sum X^T X
  std::vector<double> sq_;
  index_t samples_ = 0, tokens_ = 0;
};

/// H prepared for inversion: dead inputs fixed, damping added.
struct PreparedHessian {
  RowMatrix<double> h;
  std::vector<std::uint8_t> dead;  ///< 1 where H_jj was 0
  double damp = 0;                 ///< the value added to the diagonal
};

// The functions below are templates (on nothing a caller writes: `int = 0`) so that Eigen's
// LLT compiles only in translation units that call them, not in every one that includes this
// header (issue 22: header compile time).

/// Dead-input fix and damping of a square symmetric H (see the file comment).
template <int = 0>
PreparedHessian prepare_hessian(const RowMatrix<double>& h, double percdamp) {
  const char* fn = "prune::prepare_hessian";
  WEFT_CHECK(h.rows() > 0 && h.rows() == h.cols(), shape, fn, "expected a non-empty square Hessian, got ", h.rows(),
             " x ", h.cols());
  WEFT_CHECK(percdamp >= 0 && std::isfinite(percdamp), value, fn, "expected a finite percdamp >= 0, got ", percdamp);
  WEFT_CHECK(h.allFinite(), value, fn, "expected a finite Hessian, got NaN or Inf");
  PreparedHessian p;
  p.h = h;
  const index_t n = index_t(h.rows());
  p.dead.assign(std::size_t(n), 0);
  for (index_t j = 0; j < n; ++j)
    if (p.h(j, j) == 0) {
      p.h(j, j) = 1;
      p.dead[std::size_t(j)] = 1;
    }
  p.damp = percdamp * p.h.diagonal().mean();
  p.h.diagonal().array() += p.damp;
  return p;
}

namespace detail {
template <int = 0>
Eigen::LLT<Eigen::MatrixXd> cholesky(const Eigen::MatrixXd& a, const char* fn, const char* what) {
  Eigen::LLT<Eigen::MatrixXd> llt(a);
  WEFT_CHECK(llt.info() == Eigen::Success, value, fn, "expected ", what,
             " to be positive definite (Cholesky failed); raise percdamp or check the calibration data");
  return llt;
}
}  // namespace detail

/// d_j = [H^-1]_jj of the prepared H (dead inputs and damping applied with percdamp).
template <int = 0>
std::vector<double> inverse_hessian_diag(const RowMatrix<double>& h, double percdamp = 0.01) {
  const char* fn = "prune::inverse_hessian_diag";
  PreparedHessian p = prepare_hessian(h, percdamp);
  const Eigen::MatrixXd a = p.h;
  auto llt = detail::cholesky(a, fn, "the damped Hessian");
  const index_t n = index_t(a.rows());
  Eigen::MatrixXd linv = Eigen::MatrixXd::Identity(n, n);
  llt.matrixL().solveInPlace(linv);  // L^-1 (lower triangular)
  std::vector<double> d(static_cast<std::size_t>(n));
  for (index_t j = 0; j < n; ++j) d[std::size_t(j)] = linv.col(j).tail(n - j).squaredNorm();
  return d;
}

/// The inverse-Hessian factor of the sequential OBS path.
struct ObsFactor {
  RowMatrix<double> u;             ///< upper triangular, H^-1 = U^T U
  std::vector<std::uint8_t> dead;  ///< 1 where H_jj was 0 (those columns of W count as 0)
  double damp = 0;
};

/// U = upper Cholesky factor of H^-1 (H prepared with percdamp), as general.py / sparsegpt.py.
template <int = 0>
ObsFactor obs_factor(const RowMatrix<double>& h, double percdamp = 0.01) {
  const char* fn = "prune::obs_factor";
  PreparedHessian p = prepare_hessian(h, percdamp);
  const Eigen::MatrixXd a = p.h;
  auto llt = detail::cholesky(a, fn, "the damped Hessian");
  const index_t n = index_t(a.rows());
  Eigen::MatrixXd hinv = Eigen::MatrixXd::Identity(n, n);
  llt.solveInPlace(hinv);
  hinv = (0.5 * (hinv + hinv.transpose())).eval();  // exact symmetry for the second factorisation
  auto llt2 = detail::cholesky(hinv, fn, "the inverse Hessian");
  ObsFactor f;
  f.u = llt2.matrixU();
  f.dead = std::move(p.dead);
  f.damp = p.damp;
  return f;
}

/// G_ij = W_ij^2 / [H^-1]_jj (ObsDiag general importance), 0 on dead input columns.
template <class T>
Tensor<T> obs_diag_importance(const Tensor<T>& w, const RowMatrix<double>& h, double percdamp = 0.01) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "prune::obs_diag_importance needs float or double");
  const char* fn = "prune::obs_diag_importance";
  WEFT_CHECK(w.rank() == 2 && w.numel() > 0, shape, fn, "expected a non-empty (out, in) weight, got ", w.shape());
  WEFT_CHECK(index_t(h.rows()) == w.dim(1) && h.rows() == h.cols(), shape, fn, "expected a ", w.dim(1), " x ",
             w.dim(1), " Hessian for a weight of shape ", w.shape(), ", got ", h.rows(), " x ", h.cols());
  WEFT_CHECK(w.all_finite(), value, fn, "expected a finite weight, got NaN or Inf");
  const std::vector<double> d = inverse_hessian_diag(h, percdamp);
  Tensor<T> inv(Shape{w.dim(1)});
  for (index_t j = 0; j < w.dim(1); ++j) inv.flat(j) = h(j, j) == 0 ? T(0) : T(1.0 / d[std::size_t(j)]);
  Tensor<T> g(w.shape());
  col_scaled_sq(w.data(), inv.data(), g.data(), w.dim(0), w.dim(1));
  return g;
}

/// obs_diag_importance from a layer's calibration statistics.
template <class T>
Tensor<T> obs_diag_importance(const Tensor<T>& w, const HessianStats<T>& stats, double percdamp = 0.01) {
  WEFT_CHECK(stats.columns() == (w.rank() == 2 ? w.dim(1) : -1), shape, "prune::obs_diag_importance",
             "expected statistics of ", (w.rank() == 2 ? w.dim(1) : -1), " inputs for a weight of shape ", w.shape(),
             ", got ", stats.columns());
  return obs_diag_importance(w, stats.hessian(), percdamp);
}

}  // namespace weft::prune
