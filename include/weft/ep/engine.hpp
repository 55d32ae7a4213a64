// weft/ep/engine.hpp - the batched fixed-point solver behind every relaxation: RelaxOptions,
// RelaxReport and the column-block engine (detail).
//
// A column is one sample relaxed at one nudge beta (a phase of a Cauchy estimator). Columns are
// grouped into blocks of one kind: real columns (real beta, real states) or complex columns
// (complex beta) whose states are split planes, the real parts of the block's columns in the
// first rows and the imaginary parts below. As every weight is real, one real GEMM per
// connection and step, over all rows of a block, serves every phase and both planes:
//   H_l = R_{l-1} W_l^T + R_{l+1} B_{l+1}^T       (rows = columns, then imaginary parts)
// The input drive X W_1^T + b_1 is computed once per call and shared by all phases; phi runs on
// the planes with xsimd (activation.hpp), the readout nudge beta G is formed per column, and one
// fused pass computes F = H + drive - U (+ beta G) with each column's residual max_j |F_j|.
//
// Solver (spec 2): u <- u + gamma F. Before each update every column's residual is measured;
// with tol > 0 a column whose residual is <= tol stops there (its rows leave the block, so later
// GEMMs are smaller), and a column with a non-finite F stops as diverged. The residual is
// ||F(u)||_inf for a real column. A complex column at beta holds the free state plus O(|beta|^2)
// in its real plane, but only the response to the nudge, of size O(|Im beta|), in its imaginary
// plane; so its residual is max(||Re F||_inf, ||Im F||_inf / s) with s = min(1, |Im beta|) (s = 1
// when Im beta = 0). Without the scaling, the complex step (beta = i h, h = 1e-20) would stop
// after 0 updates: its imaginary residual starts at ~h |G|, below any useful tol (issue 21). After
// max_iters updates the remaining columns are evaluated once more, so a reported residual is
// always that of the returned state. Blocks run in parallel through parallel_for; a block's
// columns do not depend on the thread count (the block layout depends only on block_rows).
#pragma once

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <vector>

#include "weft/core/ops/matmul.hpp"
#include "weft/ep/kernels.hpp"
#include "weft/ep/net.hpp"
#include "weft/ep/targets.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep {

struct RelaxOptions {
  double gamma = 1.0;       ///< damping: u <- u + gamma F (the paper: 1; spec tests: 0.5 or 1)
  index_t max_iters = 150;  ///< updates at most (a fixed count when tol == 0)
  double tol = 0.0;         ///< stop a column once ||F||_inf <= tol; 0 = fixed count
  index_t block_rows = 64;  ///< real rows per column block (a complex column takes two)
  bool vectorize = true;    ///< false: scalar kernel bodies (for tests and benchmarks)
};

/// Outcome of a relaxation. Columns are listed phase-major: column k * batch + b is sample b
/// relaxed at the k-th beta of the call.
struct RelaxReport {
  index_t columns = 0;
  index_t iterations = 0;     ///< largest number of updates of any column
  double max_residual = 0;    ///< largest ||F||_inf of a returned (finite) state
  index_t converged = 0;      ///< columns with residual <= tol (0 when tol == 0)
  index_t diverged = 0;       ///< columns whose state became NaN or Inf
  std::vector<index_t> column_iterations;
  /// Residual of the returned state (Inf if diverged): ||F||_inf for real columns; for complex
  /// ones max(||Re F||_inf, ||Im F||_inf / min(1, |Im beta|)), what the stopping rule compares.
  std::vector<double> column_residual;
  std::vector<char> column_diverged;
  bool ok() const { return diverged == 0; }
};

namespace detail {

inline void check_relax_options(const RelaxOptions& o, const char* func) {
  WEFT_CHECK(o.gamma > 0 && o.gamma <= 2 && std::isfinite(o.gamma), value, func,
             "expected a damping gamma in (0, 2], got ", o.gamma);
  WEFT_CHECK(o.max_iters >= 0, value, func, "expected max_iters >= 0, got ", o.max_iters);
  WEFT_CHECK(o.tol >= 0 && std::isfinite(o.tol), value, func, "expected a finite tol >= 0, got ", o.tol);
  WEFT_CHECK(o.block_rows >= 2, value, func, "expected block_rows >= 2, got ", o.block_rows);
}

/// Raw read-only view of a network and the per-call data shared by all blocks.
template <class Real>
struct NetView {
  index_t K = 0, C = 0;
  std::vector<index_t> s;
  Activation act = Activation::sigmoid;
  Readout readout = Readout::softmax;
  std::vector<const Real*> W, b, B;  // W[l], b[l] for l = 1..K (index 0 unused); B[l] for l = 2..K
  const Real* V = nullptr;
  const Real* c = nullptr;
  Tensor<Real> drive1;  // (batch x s_1): X W_1^T + b_1
  const int* labels = nullptr;    // class labels, or
  const Real* targets = nullptr;  // real targets (batch x C), or neither (beta = 0 only)

  /// With labels (or none: nullptr).
  NetView(const DenseNet<Real>& net, const Tensor<Real>& X, const int* y) : NetView(net, X, Targets<Real>()) {
    labels = y;
  }
  NetView(const DenseNet<Real>& net, const Tensor<Real>& X, const Targets<Real>& y) : K(net.layers()), s(net.sizes) {
    act = net.activation;
    readout = net.readout;
    C = net.classes();
    W.assign(std::size_t(K + 1), nullptr);
    b = W;
    B = W;
    for (index_t l = 1; l <= K; ++l) {
      W[std::size_t(l)] = net.W[std::size_t(l - 1)].value().data();
      b[std::size_t(l)] = net.b[std::size_t(l - 1)].value().data();
      if (l >= 2) B[std::size_t(l)] = net.B[std::size_t(l - 2)].value().data();
    }
    if (readout == Readout::softmax) {
      V = net.V.value().data();
      c = net.c.value().data();
    }
    const index_t n = X.dim(0), s1 = s[1];
    drive1 = Tensor<Real>(Shape{n, s1});
    ops::gemm(false, true, X.data(), W[1], drive1.data(), n, s1, s[0], false);
    drive1.matrix().rowwise() += ConstVectorMap<Real>(b[1], s1).transpose();
    labels = y.labels();
    if (y.values()) targets = y.values()->data();
  }
};

/// A block of columns of one kind with its stored states and scratch buffers.
template <class Real>
class Block {
 public:
  Block(const NetView<Real>& net, bool cplx, std::vector<index_t> sample, std::vector<std::complex<Real>> beta)
      : net_(&net), cplx_(cplx), nc_(index_t(sample.size())), sample_(std::move(sample)), beta_(std::move(beta)) {
    const index_t rows = cplx_ ? 2 * nc_ : nc_;
    for (index_t l = 0; l <= net.K; ++l) {
      const index_t s = net.s[std::size_t(l)];
      st_.emplace_back(std::size_t(l == 0 ? 0 : rows * s), Real(0));
    }
    U_ = st_;
    R_ = st_;
    H_ = st_;
    G_.assign(std::size_t(rows * net.s[std::size_t(net.K)]), Real(0));
    Z_.assign(std::size_t(rows * net.C), Real(0));
    iters.assign(std::size_t(nc_), 0);
    residual.assign(std::size_t(nc_), 0.0);
    diverged.assign(std::size_t(nc_), 0);
  }

  bool is_complex() const { return cplx_; }
  index_t columns() const { return nc_; }
  index_t sample(index_t col) const { return sample_[std::size_t(col)]; }
  std::complex<Real> beta(index_t col) const { return beta_[std::size_t(col)]; }
  void set_beta(index_t col, std::complex<Real> b) { beta_[std::size_t(col)] = b; }
  /// Stored state of a column in layer l (1-based): real part, and imaginary part (complex).
  Real* re(index_t l, index_t col) { return st_[std::size_t(l)].data() + col * width(l); }
  Real* im(index_t l, index_t col) { return st_[std::size_t(l)].data() + (nc_ + col) * width(l); }
  /// phi of the stored states, after compute_phi().
  const Real* phi_re(index_t l, index_t col) const { return R_[std::size_t(l)].data() + col * width(l); }
  const Real* phi_im(index_t l, index_t col) const { return R_[std::size_t(l)].data() + (nc_ + col) * width(l); }

  /// phi of every stored state into the phi buffers.
  void compute_phi(bool vectorize) {
    for (index_t l = 1; l <= net_->K; ++l) {
      const index_t n = nc_ * width(l);
      if (cplx_)
        activate_planes(net_->act, st_[std::size_t(l)].data(), st_[std::size_t(l)].data() + n, R_[std::size_t(l)].data(),
                        R_[std::size_t(l)].data() + n, n, vectorize);
      else
        activate(net_->act, st_[std::size_t(l)].data(), R_[std::size_t(l)].data(), n, vectorize);
    }
  }

  /// n plain updates u <- u + gamma F(u) of every column from its stored state, without the
  /// stopping checks or stats (for benchmarks: the pure cost of a relaxation step).
  void iterate(index_t n, const RelaxOptions& o) {
    a_ = nc_;
    slot_.resize(std::size_t(nc_));
    for (index_t j = 0; j < nc_; ++j) slot_[std::size_t(j)] = j;
    for (index_t l = 1; l <= net_->K; ++l) std::swap(U_[std::size_t(l)], st_[std::size_t(l)]);
    std::vector<Real> res2(static_cast<std::size_t>(nc_)), res2_im(static_cast<std::size_t>(nc_));
    std::vector<char> fin(static_cast<std::size_t>(nc_));
    for (index_t t = 0; t < n; ++t) {
      evaluate(res2, res2_im, fin, o.vectorize);
      update(Real(o.gamma));
    }
    for (index_t l = 1; l <= net_->K; ++l) std::swap(U_[std::size_t(l)], st_[std::size_t(l)]);
  }

  /// Relaxes every column from its stored state; stores the results and per-column stats.
  void run(const RelaxOptions& o) {
    a_ = nc_;
    slot_.resize(std::size_t(nc_));
    for (index_t j = 0; j < nc_; ++j) slot_[std::size_t(j)] = j;
    for (index_t l = 1; l <= net_->K; ++l) U_[std::size_t(l)] = st_[std::size_t(l)];
    std::vector<Real> res2(static_cast<std::size_t>(nc_)), res2_im(static_cast<std::size_t>(nc_));
    std::vector<char> fin(static_cast<std::size_t>(nc_)), keep(static_cast<std::size_t>(nc_));
    for (index_t t = 0;; ++t) {
      evaluate(res2, res2_im, fin, o.vectorize);
      index_t kept = 0;
      for (index_t j = 0; j < a_; ++j) {
        double r = std::sqrt(double(res2[std::size_t(j)]));
        if (cplx_) r = std::max(r, std::sqrt(double(res2_im[std::size_t(j)])) / imag_scale(slot_[std::size_t(j)]));
        const bool stop = !fin[std::size_t(j)] || t == o.max_iters || (o.tol > 0 && r <= o.tol);
        keep[std::size_t(j)] = !stop;
        if (!stop) {
          ++kept;
          continue;
        }
        const index_t col = slot_[std::size_t(j)];
        iters[std::size_t(col)] = t;
        diverged[std::size_t(col)] = !fin[std::size_t(j)];
        residual[std::size_t(col)] = fin[std::size_t(j)] ? r : HUGE_VAL;
        for (index_t l = 1; l <= net_->K; ++l) {
          const index_t w = width(l);
          std::memcpy(re(l, col), U_[std::size_t(l)].data() + j * w, sizeof(Real) * std::size_t(w));
          if (cplx_) std::memcpy(im(l, col), U_[std::size_t(l)].data() + (a_ + j) * w, sizeof(Real) * std::size_t(w));
        }
      }
      if (kept == 0) break;
      if (kept < a_) compact(keep, kept);
      update(Real(o.gamma));
    }
  }

 private:
  index_t width(index_t l) const { return net_->s[std::size_t(l)]; }
  index_t rows() const { return cplx_ ? 2 * a_ : a_; }
  /// min(1, |Im beta|) of a column (1 when Im beta = 0): the size of its imaginary plane.
  double imag_scale(index_t col) const {
    const double b = std::abs(double(beta_[std::size_t(col)].imag()));
    return b > 0 ? std::min(1.0, b) : 1.0;
  }

  /// U += gamma F for the active rows (F is in H).
  void update(Real g) {
    for (index_t l = 1; l <= net_->K; ++l) {
      const index_t n = rows() * width(l);
      ArrayMap<Real>(U_[std::size_t(l)].data(), n) += g * ArrayMap<Real>(H_[std::size_t(l)].data(), n);
    }
  }

  /// F(U) of the active columns into H, with per-slot max (Re F)^2, max (Im F)^2 and finiteness.
  void evaluate(std::vector<Real>& res2, std::vector<Real>& res2_im, std::vector<char>& fin, bool vec) {
    const NetView<Real>& n = *net_;
    const index_t K = n.K, rows_ = rows();
    for (index_t l = 1; l <= K; ++l) {
      const index_t m = a_ * width(l);
      if (cplx_)
        activate_planes(n.act, U_[std::size_t(l)].data(), U_[std::size_t(l)].data() + m, R_[std::size_t(l)].data(),
                        R_[std::size_t(l)].data() + m, m, vec);
      else
        activate(n.act, U_[std::size_t(l)].data(), R_[std::size_t(l)].data(), m, vec);
    }
    bool nudged = false;
    for (index_t j = 0; j < a_; ++j) nudged = nudged || beta_[std::size_t(slot_[std::size_t(j)])] != std::complex<Real>(0);
    if (nudged) nudge();
    for (index_t l = 1; l <= K; ++l) {
      Real* h = H_[std::size_t(l)].data();
      bool any = false;
      if (l >= 2) {
        ops::gemm(false, true, R_[std::size_t(l - 1)].data(), n.W[std::size_t(l)], h, rows_, width(l), width(l - 1), false);
        any = true;
      }
      if (l < K) {
        ops::gemm(false, true, R_[std::size_t(l + 1)].data(), n.B[std::size_t(l + 1)], h, rows_, width(l), width(l + 1),
                  any);
        any = true;
      }
      if (!any) std::fill(h, h + rows_ * width(l), Real(0));
    }
    for (index_t j = 0; j < a_; ++j) {
      res2[std::size_t(j)] = res2_im[std::size_t(j)] = Real(0);
      fin[std::size_t(j)] = 1;
    }
    for (index_t l = 1; l <= K; ++l) {
      const index_t w = width(l);
      Real* h = H_[std::size_t(l)].data();
      const Real* u = U_[std::size_t(l)].data();
      const bool with_g = nudged && l == K;
      for (index_t j = 0; j < a_; ++j) {
        const Real* d = l == 1 ? n.drive1.data() + sample_[std::size_t(slot_[std::size_t(j)])] * w : n.b[std::size_t(l)];
        const index_t jr = j * w, ji = (a_ + j) * w;
        const RowResidual<Real> r =
            residual_row(h + jr, u + jr, d, with_g ? G_.data() + jr : nullptr, cplx_ ? h + ji : nullptr,
                         cplx_ ? u + ji : nullptr, (cplx_ && with_g) ? G_.data() + ji : nullptr, w, vec);
        if (!r.finite) fin[std::size_t(j)] = 0;
        res2[std::size_t(j)] = std::max(res2[std::size_t(j)], r.max2);
        res2_im[std::size_t(j)] = std::max(res2_im[std::size_t(j)], r.max2_im);
      }
    }
  }

  /// G_ = beta (dl/dr_K) for the active columns (labels or real targets; targets.hpp).
  void nudge() {
    const NetView<Real>& n = *net_;
    const index_t sK = width(n.K), C = n.C, rows_ = rows();
    const Real* RK = R_[std::size_t(n.K)].data();
    Real* G = G_.data();
    if (n.readout == Readout::softmax) {
      Real* Z = Z_.data();
      ops::gemm(false, true, RK, n.V, Z, rows_, C, sK, false);
      for (index_t j = 0; j < a_; ++j) {
        const index_t smp = sample_[std::size_t(slot_[std::size_t(j)])];
        const Real* t = n.targets ? n.targets + smp * C : nullptr;
        Real* zr = Z + j * C;
        for (index_t k = 0; k < C; ++k) zr[k] += n.c[k];
        if (cplx_) {
          Real* zi = Z + (a_ + j) * C;
          ops::softmax_rows_planes(zr, zi, zr, zi, 1, C);
        } else {
          softmax_row(zr, C);
        }
        if (t)  // p - t; the imaginary plane of p needs no target
          for (index_t k = 0; k < C; ++k) zr[k] -= t[k];
        else
          zr[n.labels[smp]] -= Real(1);
      }
      ops::gemm(false, false, Z, n.V, G, rows_, sK, C, false);
    } else {
      std::memcpy(G, RK, sizeof(Real) * std::size_t(rows_ * sK));
      for (index_t j = 0; j < a_; ++j) {
        const index_t smp = sample_[std::size_t(slot_[std::size_t(j)])];
        if (!n.targets) {
          G[j * sK + n.labels[smp]] -= Real(1);
          continue;
        }
        for (index_t k = 0; k < sK; ++k) G[j * sK + k] -= n.targets[smp * sK + k];
      }
    }
    for (index_t j = 0; j < a_; ++j) {
      const std::complex<Real> bt = beta_[std::size_t(slot_[std::size_t(j)])];
      Real* gr = G + j * sK;
      if (!cplx_) {
        for (index_t k = 0; k < sK; ++k) gr[k] *= bt.real();
        continue;
      }
      Real* gi = G + (a_ + j) * sK;
      for (index_t k = 0; k < sK; ++k) {
        const Real x = gr[k], v = gi[k];
        gr[k] = bt.real() * x - bt.imag() * v;
        gi[k] = bt.real() * v + bt.imag() * x;
      }
    }
  }

  /// Keeps the slots with keep[j] (stable), in U and H (which holds F) and the slot map.
  void compact(const std::vector<char>& keep, index_t kept) {
    for (index_t l = 1; l <= net_->K; ++l) {
      const index_t w = width(l);
      for (Real* buf : {U_[std::size_t(l)].data(), H_[std::size_t(l)].data()}) {
        index_t i = 0;
        for (index_t j = 0; j < a_; ++j)
          if (keep[std::size_t(j)]) std::memmove(buf + (i++) * w, buf + j * w, sizeof(Real) * std::size_t(w));
        if (!cplx_) continue;
        i = 0;
        for (index_t j = 0; j < a_; ++j)
          if (keep[std::size_t(j)])
            std::memmove(buf + (kept + i++) * w, buf + (a_ + j) * w, sizeof(Real) * std::size_t(w));
      }
    }
    index_t i = 0;
    for (index_t j = 0; j < a_; ++j)
      if (keep[std::size_t(j)]) slot_[std::size_t(i++)] = slot_[std::size_t(j)];
    a_ = kept;
  }

  const NetView<Real>* net_;
  bool cplx_;
  index_t nc_, a_ = 0;
  std::vector<index_t> sample_;
  std::vector<std::complex<Real>> beta_;
  std::vector<index_t> slot_;  // active slot -> column
  std::vector<std::vector<Real>> st_, U_, R_, H_;
  std::vector<Real> G_, Z_;

 public:
  std::vector<index_t> iters;
  std::vector<double> residual;
  std::vector<char> diverged;
};

}  // namespace detail
}  // namespace ep
WEFT_NAMESPACE_END
