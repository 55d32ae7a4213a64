// weft/prune/scores.hpp - importance scores of the weights of one matrix W (out x in).
//
//   magnitude_scores(W)             |W_ij|                          (Han et al.; wanda prune_magnitude)
//   wanda_scores(W, norms)          |W_ij| ||X_j||_2                (Sun et al. 2024; mask per output row)
//   obs_diag_scores(W, hinv_diag)   W_ij^2 / [H^-1]_jj              (ObsDiag general importance; 0 where
//                                                                    hinv_diag_j is marked dead by 0)
//   param_first_scores(W, g)        |W_ij g_ij|                     (LLM-Pruner element salience)
//   param_mix_scores(W, g, F)       |W_ij g_ij - 1/2 W_ij F_ij W_ij| (F = accumulated per-sample g^2)
// Higher is more important; masks prune the lowest (mask.hpp). Wanda's repository keeps the
// running mean of ||X_j||^2 and takes its square root: the same order as ||X_j||_2. All inputs
// are checked for shape and finiteness before anything is computed.
#pragma once

#include <vector>

#include "weft/prune/kernels.hpp"

WEFT_NAMESPACE_BEGIN
namespace prune {

namespace detail {
template <class T>
void check_weight(const Tensor<T>& w, const char* fn) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "prune scores need float or double weights");
  WEFT_CHECK(w.rank() == 2 && w.numel() > 0, shape, fn, "expected a non-empty (out, in) weight, got ", w.shape());
  WEFT_CHECK(w.all_finite(), value, fn, "expected a finite weight, got NaN or Inf");
}
template <class T>
void check_same(const Tensor<T>& w, const Tensor<T>& x, const char* fn, const char* what) {
  WEFT_CHECK(x.shape() == w.shape(), shape, fn, "expected ", what, " of the weight's shape ", w.shape(), ", got ",
             x.shape());
  WEFT_CHECK(x.all_finite(), value, fn, "expected a finite ", what, ", got NaN or Inf");
}
}  // namespace detail

/// |W|.
template <class T>
Tensor<T> magnitude_scores(const Tensor<T>& w) {
  detail::check_weight(w, "prune::magnitude_scores");
  Tensor<T> s(w.shape());
  abs_scores(w.data(), s.data(), w.numel());
  return s;
}

/// |W_ij| norms_j with norms the input-column norms ||X_j||_2 (rank 1, length in).
template <class T>
Tensor<T> wanda_scores(const Tensor<T>& w, const Tensor<T>& norms) {
  const char* fn = "prune::wanda_scores";
  detail::check_weight(w, fn);
  WEFT_CHECK(norms.rank() == 1 && norms.dim(0) == w.dim(1), shape, fn, "expected ", w.dim(1),
             " input-column norms for a weight of shape ", w.shape(), ", got shape ", norms.shape());
  for (index_t j = 0; j < norms.numel(); ++j)
    WEFT_CHECK(std::isfinite(double(norms.flat(j))) && norms.flat(j) >= 0, value, fn,
               "expected finite norms >= 0, got ", norms.flat(j), " at ", j);
  Tensor<T> s(w.shape());
  col_scaled_abs(w.data(), norms.data(), s.data(), w.dim(0), w.dim(1));
  return s;
}

/// W_ij^2 / d_j with d_j = [H^-1]_jj (inverse_hessian_diag); d_j == 0 marks a dead input (score 0).
template <class T>
Tensor<T> obs_diag_scores(const Tensor<T>& w, const std::vector<double>& hinv_diag) {
  const char* fn = "prune::obs_diag_scores";
  detail::check_weight(w, fn);
  WEFT_CHECK(index_t(hinv_diag.size()) == w.dim(1), shape, fn, "expected ", w.dim(1),
             " inverse-Hessian diagonal entries for a weight of shape ", w.shape(), ", got ", hinv_diag.size());
  Tensor<T> inv(Shape{w.dim(1)});
  for (index_t j = 0; j < w.dim(1); ++j) {
    const double d = hinv_diag[std::size_t(j)];
    WEFT_CHECK(std::isfinite(d) && d >= 0, value, fn, "expected finite diagonal entries >= 0, got ", d, " at ", j);
    inv.flat(j) = d > 0 ? T(1.0 / d) : T(0);
  }
  Tensor<T> s(w.shape());
  col_scaled_sq(w.data(), inv.data(), s.data(), w.dim(0), w.dim(1));
  return s;
}

/// |W g| (g = dL/dW, e.g. accumulated over calibration batches).
template <class T>
Tensor<T> param_first_scores(const Tensor<T>& w, const Tensor<T>& g) {
  const char* fn = "prune::param_first_scores";
  detail::check_weight(w, fn);
  detail::check_same(w, g, fn, "gradient");
  Tensor<T> s(w.shape());
  taylor_first(w.data(), g.data(), s.data(), w.numel());
  return s;
}

/// |W g - 1/2 W F W| with F the accumulated per-sample squared gradients (empirical Fisher diagonal).
template <class T>
Tensor<T> param_mix_scores(const Tensor<T>& w, const Tensor<T>& g, const Tensor<T>& fisher) {
  const char* fn = "prune::param_mix_scores";
  detail::check_weight(w, fn);
  detail::check_same(w, g, fn, "gradient");
  detail::check_same(w, fisher, fn, "Fisher diagonal");
  Tensor<T> s(w.shape());
  taylor_mix(w.data(), g.data(), fisher.data(), s.data(), w.numel());
  return s;
}

}  // namespace prune
WEFT_NAMESPACE_END
