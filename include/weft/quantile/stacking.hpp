// weft/quantile/stacking.hpp - out-of-fold base predictions for training aggregators.
//
// An aggregator must be trained on base predictions the base models did not see: weights
// fitted on in-sample predictions favour over-fitted models. out_of_fold() splits the training
// rows into K folds, fits a fresh copy of every base model on K - 1 folds and predicts the
// held-out fold, giving G (n, p, m) with G_ijk = g_j(x_i; tau_k). fit_all() then fits the
// models on all training rows; stack_predictions() gives their (n', p, m) predictions for the
// calibration and test rows.
#pragma once

#include <memory>
#include <vector>

#include "weft/core/rng.hpp"
#include "weft/quantile/models.hpp"

WEFT_NAMESPACE_BEGIN
namespace quantile {

template <class T>
using ModelList = std::vector<std::unique_ptr<QuantileModel<T>>>;

/// Fold of each of n rows: a seeded random permutation cut into k contiguous parts whose sizes
/// differ by at most one.
inline std::vector<index_t> fold_assignment(index_t n, index_t k, std::uint64_t seed) {
  WEFT_CHECK(k >= 2 && n >= k, value, "quantile::fold_assignment", "expected 2 <= k <= n, got k = ", k, ", n = ", n);
  Rng rng(seed);
  const std::vector<index_t> perm = rng.permutation(n);
  std::vector<index_t> fold(static_cast<std::size_t>(n));
  for (index_t r = 0; r < n; ++r) fold[std::size_t(perm[std::size_t(r)])] = r * k / n;
  return fold;
}

namespace detail {
template <class T>
Tensor<T> take_rows(const Tensor<T>& a, const std::vector<index_t>& rows) {
  const index_t w = a.rank() >= 2 ? a.numel() / a.dim(0) : 1;
  Tensor<T> out(a.shape().with(0, index_t(rows.size())));
  for (std::size_t r = 0; r < rows.size(); ++r)
    std::copy(a.data() + rows[r] * w, a.data() + (rows[r] + 1) * w, out.data() + index_t(r) * w);
  return out;
}
template <class T>
void check_models(const ModelList<T>& models, const char* func) {
  WEFT_CHECK(!models.empty(), shape, func, "expected at least one base model, got none");
  for (std::size_t j = 0; j < models.size(); ++j)
    WEFT_CHECK(models[j] != nullptr, config, func, "expected base models, got nullptr at position ", j);
}
}  // namespace detail

/// Predictions of every model for X, stacked as (n, p, m).
template <class T>
Tensor<T> stack_predictions(const ModelList<T>& models, const Tensor<T>& X) {
  detail::check_models(models, "quantile::stack_predictions");
  std::vector<Tensor<T>> preds;
  for (auto& mdl : models) preds.push_back(mdl->predict(X));
  const index_t n = preds[0].dim(0), m = preds[0].dim(1), p = index_t(models.size());
  Tensor<T> G(Shape{n, p, m});
  for (index_t j = 0; j < p; ++j) {
    WEFT_CHECK(preds[std::size_t(j)].shape() == preds[0].shape(), shape, "quantile::stack_predictions",
               "expected every model to predict shape ", preds[0].shape(), ", got ", preds[std::size_t(j)].shape(),
               " from model ", j);
    for (index_t i = 0; i < n; ++i)
      std::copy(preds[std::size_t(j)].data() + i * m, preds[std::size_t(j)].data() + (i + 1) * m,
                G.data() + (i * p + j) * m);
  }
  return G;
}

/// Out-of-fold predictions (n, p, m): each row predicted by copies of the models fitted on the
/// other folds. `folds` from fold_assignment (or your own, values 0..K-1, each fold non-empty).
template <class T>
Tensor<T> out_of_fold(const ModelList<T>& models, const Tensor<T>& X, const Tensor<T>& y,
                      const std::vector<double>& levels, const std::vector<index_t>& folds) {
  const char* fn = "quantile::out_of_fold";
  detail::check_models(models, fn);
  check_levels(levels, fn);
  WEFT_CHECK(X.defined() && X.rank() == 2 && index_t(folds.size()) == X.dim(0), shape, fn,
             "expected one fold id per row of X, got ", folds.size(), " ids for shape ",
             X.defined() ? X.shape() : Shape{});
  index_t k = 0;
  for (index_t f : folds) {
    WEFT_CHECK(f >= 0, value, fn, "expected fold ids >= 0, got ", f);
    k = std::max(k, f + 1);
  }
  const index_t n = X.dim(0), p = index_t(models.size()), m = index_t(levels.size());
  Tensor<T> G(Shape{n, p, m});
  for (index_t f = 0; f < k; ++f) {
    std::vector<index_t> in, out;
    for (index_t i = 0; i < n; ++i) (folds[std::size_t(i)] == f ? out : in).push_back(i);
    WEFT_CHECK(!out.empty() && !in.empty(), value, fn, "expected every fold 0..", k - 1,
               " to hold some but not all rows, got fold ", f, " with ", out.size());
    const Tensor<T> Xin = detail::take_rows(X, in), yin = detail::take_rows(y, in), Xout = detail::take_rows(X, out);
    ModelList<T> fold_models;
    for (auto& mdl : models) {
      fold_models.push_back(mdl->clone_unfitted());
      fold_models.back()->fit(Xin, yin, levels);
    }
    const Tensor<T> Gf = stack_predictions(fold_models, Xout);
    for (std::size_t r = 0; r < out.size(); ++r)
      std::copy(Gf.data() + index_t(r) * p * m, Gf.data() + index_t(r + 1) * p * m, G.data() + out[r] * p * m);
  }
  return G;
}

/// Fits every model on all of (X, y).
template <class T>
void fit_all(ModelList<T>& models, const Tensor<T>& X, const Tensor<T>& y, const std::vector<double>& levels) {
  detail::check_models(models, "quantile::fit_all");
  for (auto& mdl : models) mdl->fit(X, y, levels);
}

/// Column j of G (n, p, m): the predictions (n, m) of base model j.
template <class T>
Tensor<T> base_predictions(const Tensor<T>& G, index_t j) {
  WEFT_CHECK(G.defined() && G.rank() == 3 && j >= 0 && j < G.dim(1), shape, "quantile::base_predictions",
             "expected G of shape (n, p, m) and 0 <= j < p, got shape ", G.defined() ? G.shape() : Shape{},
             " and j = ", j);
  const index_t n = G.dim(0), p = G.dim(1), m = G.dim(2);
  Tensor<T> Q(Shape{n, m});
  for (index_t i = 0; i < n; ++i) std::copy(G.data() + (i * p + j) * m, G.data() + (i * p + j + 1) * m, Q.data() + i * m);
  return Q;
}

}  // namespace quantile
WEFT_NAMESPACE_END
