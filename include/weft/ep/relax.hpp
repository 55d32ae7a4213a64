// weft/ep/relax.hpp - relaxing a batch to its fixed point: the free phase and nudged phases at
// a real or complex beta.
//
//   free_phase(net, X, u0, opts)         u0 <- u*(0) from u = 0 (a fixed count T1 in the paper)
//   relax(net, X, y, beta, u, opts)      u <- u*(beta) from the given u (y: labels or real targets,
//                                        targets.hpp); S = Real (real beta) or
//                                        std::complex<Real> (complex beta, complex states)
// Both return a RelaxReport: per-column iterations and residual ||F||_inf of the returned
// state, and the columns whose state became NaN or Inf (divergence is reported, never hidden:
// those columns hold the non-finite state). Inputs are checked before anything is touched.
// Threads: column blocks run in parallel (see engine.hpp); results do not depend on the count.
#pragma once

#include <complex>
#include <vector>

#include "weft/ep/engine.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep {

namespace detail {

/// Blocks for `batch` samples at each beta of `betas` (phase-major columns): real betas go to
/// real blocks of block_rows columns, complex ones (or all, with force_complex) to complex
/// blocks of block_rows / 2 columns. Blocks never mix kinds, so the block list follows the
/// phase order within each kind; block_of/col_of map a (phase, sample) column to its place.
template <class Real>
struct BlockSet {
  std::vector<Block<Real>> blocks;
  std::vector<index_t> block_of, col_of;  // per phase-major column

  BlockSet(const NetView<Real>& net, index_t batch, const std::vector<std::complex<Real>>& betas, index_t block_rows,
           bool force_complex = false) {
    const index_t P = index_t(betas.size());
    block_of.assign(std::size_t(P * batch), 0);
    col_of = block_of;
    for (int kind = 0; kind < 2; ++kind) {
      const bool cplx = kind == 1;
      const index_t cap = std::max<index_t>(1, cplx ? block_rows / 2 : block_rows);
      std::vector<index_t> samples, cols;
      std::vector<std::complex<Real>> bs;
      auto flush = [&] {
        if (samples.empty()) return;
        for (std::size_t i = 0; i < cols.size(); ++i) {
          block_of[std::size_t(cols[i])] = index_t(blocks.size());
          col_of[std::size_t(cols[i])] = index_t(i);
        }
        blocks.emplace_back(net, cplx, samples, bs);
        samples.clear();
        cols.clear();
        bs.clear();
      };
      for (index_t k = 0; k < P; ++k) {
        const bool is_c = force_complex || betas[std::size_t(k)].imag() != Real(0);
        if (is_c != cplx) continue;
        for (index_t bi = 0; bi < batch; ++bi) {
          samples.push_back(bi);
          cols.push_back(k * batch + bi);
          bs.push_back(betas[std::size_t(k)]);
          if (index_t(samples.size()) == cap) flush();
        }
      }
      flush();
    }
  }

  /// Runs every block (in parallel over blocks).
  void run(const RelaxOptions& o) {
    parallel_for(0, index_t(blocks.size()), 1, [&](index_t lo, index_t hi) {
      for (index_t i = lo; i < hi; ++i) blocks[std::size_t(i)].run(o);
    });
  }
  /// n plain updates of every block (benchmarks; see Block::iterate).
  void iterate(index_t n, const RelaxOptions& o) {
    parallel_for(0, index_t(blocks.size()), 1, [&](index_t lo, index_t hi) {
      for (index_t i = lo; i < hi; ++i) blocks[std::size_t(i)].iterate(n, o);
    });
  }
  void compute_phi(bool vectorize) {
    parallel_for(0, index_t(blocks.size()), 1, [&](index_t lo, index_t hi) {
      for (index_t i = lo; i < hi; ++i) blocks[std::size_t(i)].compute_phi(vectorize);
    });
  }
  Block<Real>& block(index_t column) { return blocks[std::size_t(block_of[std::size_t(column)])]; }
  index_t col(index_t column) const { return col_of[std::size_t(column)]; }

  /// The report over all columns (phase-major), with tol for the converged count.
  RelaxReport report(double tol) const {
    RelaxReport r;
    r.columns = index_t(block_of.size());
    for (index_t c = 0; c < r.columns; ++c) {
      const Block<Real>& b = blocks[std::size_t(block_of[std::size_t(c)])];
      const std::size_t j = std::size_t(col_of[std::size_t(c)]);
      r.column_iterations.push_back(b.iters[j]);
      r.column_residual.push_back(b.residual[j]);
      r.column_diverged.push_back(b.diverged[j]);
      r.iterations = std::max(r.iterations, b.iters[j]);
      if (b.diverged[j]) ++r.diverged;
      else {
        r.max_residual = std::max(r.max_residual, b.residual[j]);
        if (tol > 0 && b.residual[j] <= tol) ++r.converged;
      }
    }
    return r;
  }
};

/// Relaxes `batch` samples at every beta of `betas` from `start` (per sample, real; nullptr =
/// zero), returning the blocks with the final states (and phi, when with_phi).
template <class Real>
BlockSet<Real> relax_phases(const NetView<Real>& view, index_t batch, const std::vector<std::complex<Real>>& betas,
                            const State<Real>* start, const RelaxOptions& o, bool force_complex = false,
                            bool with_phi = false) {
  BlockSet<Real> set(view, batch, betas, o.block_rows, force_complex);
  if (start) {
    for (auto& blk : set.blocks)
      for (index_t j = 0; j < blk.columns(); ++j)
        for (index_t l = 1; l <= view.K; ++l) {
          const index_t w = view.s[std::size_t(l)];
          std::memcpy(blk.re(l, j), start->layers[std::size_t(l - 1)].data() + blk.sample(j) * w,
                      sizeof(Real) * std::size_t(w));
        }
  }
  set.run(o);
  if (with_phi) set.compute_phi(o.vectorize);
  return set;
}

}  // namespace detail

/// Free phase: u0 <- the fixed point at beta = 0 reached from u = 0 (u0 is resized to the batch).
template <class Real>
RelaxReport free_phase(const DenseNet<Real>& net, const Tensor<Real>& X, State<Real>& u0, const RelaxOptions& o = {}) {
  const char* fn = "ep::free_phase";
  detail::check_net(net, fn);
  detail::check_relax_options(o, fn);
  WEFT_CHECK(X.defined() && X.rank() == 2 && X.dim(1) == net.size(0) && X.dim(0) >= 1, shape, fn,
             "expected inputs X of shape (batch >= 1, ", net.size(0), "), got ", X.shape());
  WEFT_CHECK(X.all_finite(), value, fn, "expected finite inputs X, got NaN or Inf");
  const index_t batch = X.dim(0);
  detail::NetView<Real> view(net, X, nullptr);
  auto set = detail::relax_phases<Real>(view, batch, {std::complex<Real>(0)}, nullptr, o);
  State<Real> out = zero_state<Real>(net, batch);
  for (index_t bi = 0; bi < batch; ++bi)
    for (index_t l = 1; l <= net.layers(); ++l)
      std::memcpy(out.layers[std::size_t(l - 1)].data() + bi * net.size(l), set.block(bi).re(l, set.col(bi)),
                  sizeof(Real) * std::size_t(net.size(l)));
  u0 = std::move(out);
  return set.report(o.tol);
}

/// Nudged relaxation u <- u*(beta) from the given u (real S with a real beta, or complex S).
/// The targets y (labels or real values, targets.hpp) are needed when beta != 0; pass an empty
/// std::vector<int>{} otherwise. The paper starts nudged phases from the free fixed point u0.
template <class S, class Real>
RelaxReport relax(const DenseNet<Real>& net, const Tensor<Real>& X, const TargetsArg<Real>& y, S beta, State<S>& u,
                  const RelaxOptions& o = {}) {
  static_assert(std::is_same_v<S, Real> || std::is_same_v<S, std::complex<Real>>,
                "ep::relax needs states of the network's Real type or std::complex<Real>");
  const char* fn = "ep::relax";
  detail::check_net(net, fn);
  detail::check_relax_options(o, fn);
  WEFT_CHECK(is_finite(beta), value, fn, "expected a finite beta, got ", beta);
  if (beta != S(0) || !y.empty()) {
    detail::check_batch(net, X, y, fn);
  } else {
    WEFT_CHECK(X.defined() && X.rank() == 2 && X.dim(1) == net.size(0) && X.dim(0) >= 1, shape, fn,
               "expected inputs X of shape (batch >= 1, ", net.size(0), "), got ", X.shape());
    WEFT_CHECK(X.all_finite(), value, fn, "expected finite inputs X, got NaN or Inf");
  }
  const index_t batch = X.dim(0);
  detail::check_state(net, u, batch, fn, "start state u");
  detail::NetView<Real> view(net, X, y);
  constexpr bool cplx = is_complex_v<S>;
  detail::BlockSet<Real> set(view, batch, {std::complex<Real>(beta)}, o.block_rows, cplx);
  for (index_t bi = 0; bi < batch; ++bi) {
    auto& blk = set.block(bi);
    const index_t j = set.col(bi);
    for (index_t l = 1; l <= net.layers(); ++l) {
      const S* src = u.layers[std::size_t(l - 1)].data() + bi * net.size(l);
      if constexpr (cplx) ops::to_planes(src, blk.re(l, j), blk.im(l, j), net.size(l));
      else std::memcpy(blk.re(l, j), src, sizeof(Real) * std::size_t(net.size(l)));
    }
  }
  set.run(o);
  for (index_t bi = 0; bi < batch; ++bi) {
    auto& blk = set.block(bi);
    const index_t j = set.col(bi);
    for (index_t l = 1; l <= net.layers(); ++l) {
      S* dst = u.layers[std::size_t(l - 1)].data() + bi * net.size(l);
      if constexpr (cplx) ops::from_planes(blk.re(l, j), blk.im(l, j), dst, net.size(l));
      else std::memcpy(dst, blk.re(l, j), sizeof(Real) * std::size_t(net.size(l)));
    }
  }
  return set.report(o.tol);
}

}  // namespace ep
WEFT_NAMESPACE_END
