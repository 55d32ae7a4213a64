// weft/prune/sparsegpt.hpp - the sequential OBS pruner of SparseGPT (Frantar & Alistarh 2023),
// which D-Pruner's general.py also uses to produce its general importance G.
//
// With U the upper Cholesky factor of H^-1 (hessian.hpp, dead inputs zeroed, damping), columns
// are processed in blocks of B = 128:
//   - at the start of a block [i1, i2), score G[:, j] = W[:, j]^2 / U_jj^2 on the *current* W
//     and choose the block's mask at the given sparsity (MaskOptions rule on the whole block;
//     the library default exact_count, the reference sorted_index_le);
//   - for each column j of the block: q = w_j with masked entries zeroed, e = (w_j - q) / U_jj,
//     W[:, j:i2] -= e U[j, j:i2] (the OBS update of the remaining weights of the block);
//   - after the block, W[:, i2:] -= E U[i1:i2, i2:] (E the block's errors).
// So the scores of later blocks see OBS-updated weights. With an N:M mask (group n_of_m) the
// mask of columns [j, j + m) is chosen when column j (j % m == 0) is reached, from the current
// W (sparsegpt.py's prunen / prunem). Masked entries end exactly 0.
// The importance returned is the concatenation of the block scores (what general.py saves as
// the general importance). Rows are independent in every update, so rows go through
// parallel_for and the result does not depend on the thread count. The arithmetic is in double.
#pragma once

#include <algorithm>
#include <vector>

#include "weft/prune/hessian.hpp"
#include "weft/prune/mask.hpp"

WEFT_NAMESPACE_BEGIN
namespace prune {

struct SparseGPTOptions {
  double sparsity = 0.5;                              ///< fraction pruned per block
  threshold_rule rule = threshold_rule::exact_count;  ///< sparsegpt.py: sorted_index_le
  index_t blocksize = 128;                            ///< columns per block (the mask's group)
  double percdamp = 0.01;
  bool n_of_m = false;                                ///< semi-structured: prune n of every m inputs
  index_t n = 2, m = 4;
};

template <class T>
struct SparseGPTResult {
  Tensor<T> weight;      ///< pruned and OBS-updated weight (exact zeros where mask is 0)
  Mask mask;
  Tensor<T> importance;  ///< W^2 / U_jj^2 as scored (on the current W of each block / N:M group)
};

/// Prunes w (out x in) with the layer Hessian h (in x in). w is not modified.
template <class T>
SparseGPTResult<T> sparsegpt_prune(const Tensor<T>& w, const RowMatrix<double>& h, const SparseGPTOptions& o = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "prune::sparsegpt_prune needs float or double");
  const char* fn = "prune::sparsegpt_prune";
  WEFT_CHECK(w.rank() == 2 && w.numel() > 0, shape, fn, "expected a non-empty (out, in) weight, got ", w.shape());
  const index_t rows = w.dim(0), cols = w.dim(1);
  WEFT_CHECK(index_t(h.rows()) == cols && h.rows() == h.cols(), shape, fn, "expected a ", cols, " x ", cols,
             " Hessian for a weight of shape ", w.shape(), ", got ", h.rows(), " x ", h.cols());
  WEFT_CHECK(o.blocksize > 0, config, fn, "expected blocksize > 0, got ", o.blocksize);
  MaskOptions mo;
  mo.sparsity = o.sparsity;
  mo.rule = o.rule;
  mo.group = o.n_of_m ? mask_group::n_of_m : mask_group::matrix;
  mo.n = o.n;
  mo.m = o.m;
  detail::check_mask_options(mo, cols, fn);
  WEFT_CHECK(!o.n_of_m || o.blocksize % o.m == 0, config, fn, "expected blocksize to be a multiple of m = ", o.m,
             ", got ", o.blocksize);
  WEFT_CHECK(w.all_finite(), value, fn, "expected a finite weight, got NaN or Inf");
  const ObsFactor f = obs_factor(h, o.percdamp);
  const RowMatrix<double>& u = f.u;

  RowMatrix<double> W = w.matrix().template cast<double>();
  for (index_t j = 0; j < cols; ++j)
    if (f.dead[std::size_t(j)]) W.col(j).setZero();
  SparseGPTResult<T> res;
  res.mask = Mask(rows, cols);
  res.importance = Tensor<T>(w.shape());
  RowMatrix<double> score, err;
  const index_t grain = std::max<index_t>(1, 8192 / std::min(cols, o.blocksize));
  for (index_t i1 = 0; i1 < cols; i1 += o.blocksize) {
    const index_t i2 = std::min(cols, i1 + o.blocksize), count = i2 - i1;
    score.resize(rows, count);
    auto score_cols = [&](index_t c0, index_t c1) {  // block-relative columns [c0, c1)
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = c0; c < c1; ++c) {
          const double d = u(i1 + c, i1 + c);
          score(r, c) = W(r, i1 + c) * W(r, i1 + c) / (d * d);
          res.importance(r, i1 + c) = T(score(r, c));
        }
    };
    Mask bm(rows, count);
    if (!o.n_of_m) {
      score_cols(0, count);
      MaskOptions bo = mo;
      bo.group = mask_group::matrix;
      bm = select_mask(score.data(), rows, count, bo);
    }
    err.setZero(rows, count);
    for (index_t c = 0; c < count; ++c) {
      if (o.n_of_m && c % o.m == 0) {
        score_cols(c, c + o.m);
        for (index_t r = 0; r < rows; ++r)
          detail::select_exact_small(&score(r, c), o.m, o.n, &bm.keep[std::size_t(r * count + c)]);
      }
      const index_t j = i1 + c;
      const double d = u(j, j);
      parallel_for(0, rows, grain, [&](index_t lo, index_t hi) {
        for (index_t r = lo; r < hi; ++r) {
          const double wv = W(r, j);
          const double q = bm.keep[std::size_t(r * count + c)] ? wv : 0.0;
          const double e = (wv - q) / d;
          W(r, j) = q;
          err(r, c) = e;
          if (e != 0.0)
            for (index_t k = j + 1; k < i2; ++k) W(r, k) -= e * u(j, k);
        }
      });
    }
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < count; ++c) res.mask.keep[std::size_t(r * cols + i1 + c)] = bm.keep[std::size_t(r * count + c)];
    if (i2 < cols) W.rightCols(cols - i2).noalias() -= err * u.block(i1, i2, count, cols - i2);
  }
  res.weight = Tensor<T>(w.shape());
  res.weight.matrix() = W.template cast<T>();
  return res;
}

}  // namespace prune
WEFT_NAMESPACE_END
