// weft/incremental/align.hpp - weight clipping and Weight Aligning on a classifier head
// (Zhao et al., "Maintaining Discrimination and Fairness in Class Incremental Learning", CVPR 2020).
//
// Clipping ("restriction"): after every optimiser step, W <- max(W, 0) on the head weight only
// (bias and backbone untouched). With features h >= 0 (after a ReLU) and W >= 0 a larger row norm
// means larger logits, so the row norms measure the bias towards new classes. add_weight_clipping
// registers it as an nn::Optimizer post-step hook.
//
// Weight Aligning, after training a task t >= 2 (before evaluating it, and before the model
// becomes the next teacher): with n_c = ||W_c||_p,
//   gamma = mean_{c < C_old} n_c / mean_{C_old <= c < C_tot} n_c,   W_c <- gamma W_c (new rows only)
// Old rows and every bias are unchanged. Without a bias this equals multiplying the new-class
// logits by gamma at test time (how the official code applies it). Afterwards the mean-norm ratio
// rho = mean n_new / mean n_old is 1. Defaults: p = 2 and no clamp (PyCIL); the official code uses
// p = 1 and gamma <= 1 (AlignOptions::norm_p, clamp_gamma_le_1).
//
// Idempotence: a second call finds gamma = 1 up to rounding. When |gamma - 1| <= 16 eps(T) the
// head counts as aligned: gamma is reported as exactly 1 and W is left bit-for-bit unchanged.
#pragma once

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "weft/core/autograd/parameter.hpp"
#include "weft/incremental/head.hpp"
#include "weft/nn/optim.hpp"

WEFT_NAMESPACE_BEGIN
namespace incremental {

/// W <- max(W, 0) element-wise.
template <class T>
void clip_nonnegative(Tensor<T>& w) {
  static_assert(std::is_floating_point_v<T>, "incremental::clip_nonnegative needs a real floating-point scalar type");
  for (auto& x : w)
    if (x < T(0)) x = T(0);
}

/// Registers W <- max(W, 0) after every step of `opt` (the WA "restriction"). `weight` is a handle:
/// the hook follows the parameter through head expansions. The returned handle removes the hook.
template <class T>
[[nodiscard]] nn::HookHandle add_weight_clipping(nn::Optimizer<T>& opt, Parameter<T> weight) {
  WEFT_CHECK(weight.defined(), config, "incremental::add_weight_clipping",
             "expected a defined weight parameter, got an undefined one");
  return opt.add_post_step_hook([weight](nn::Optimizer<T>&) mutable { clip_nonnegative(weight.value()); });
}
template <class T>
[[nodiscard]] nn::HookHandle add_weight_clipping(nn::Optimizer<T>& opt, ExpandableHead<T>& head) {
  return add_weight_clipping(opt, head.weight);
}

/// ||W_c||_p for every row c (p = 1 or 2), accumulated in double.
template <class T>
std::vector<double> row_norms(const Tensor<T>& w, int p = 2) {
  WEFT_CHECK(w.rank() == 2, shape, "incremental::row_norms", "expected a weight of shape (classes, d), got ",
             w.shape());
  WEFT_CHECK(p == 1 || p == 2, config, "incremental::row_norms", "expected norm p = 1 or 2, got ", p);
  std::vector<double> n(std::size_t(w.dim(0)), 0.0);
  for (index_t c = 0; c < w.dim(0); ++c) {
    double s = 0;
    for (index_t j = 0; j < w.dim(1); ++j) {
      const double v = double(w(c, j));
      s += p == 1 ? std::abs(v) : v * v;
    }
    n[std::size_t(c)] = p == 1 ? s : std::sqrt(s);
  }
  return n;
}

struct AlignOptions {
  int norm_p = 2;                ///< norm of the rows in gamma: 1 (official) or 2 (PyCIL, default)
  bool clamp_gamma_le_1 = false; ///< use min(gamma, 1) (official code)
};

struct AlignResult {
  double gamma = 1;                     ///< factor applied to the new rows (exactly 1: untouched)
  double mean_norm_old = 0, mean_norm_new = 0;  ///< mean row norms before aligning
  double rho_before = 0, rho_after = 0; ///< mean new-row norm / mean old-row norm, before and after
  bool applied = false;                 ///< whether W changed
};

namespace detail {
template <class T>
void check_align(const char* func, const Tensor<T>& w, index_t old_classes, int p) {
  WEFT_CHECK(w.rank() == 2 && w.dim(1) > 0, shape, func, "expected a head weight of shape (classes, d), got ",
             w.shape());
  WEFT_CHECK(old_classes >= 1 && old_classes < w.dim(0), value, func,
             "expected 1 <= old_classes < classes = ", w.dim(0), " (old and new rows both present), got ",
             old_classes);
  WEFT_CHECK(p == 1 || p == 2, config, func, "expected norm p = 1 or 2, got ", p);
  WEFT_CHECK(w.all_finite(), value, func, "expected a finite head weight, got non-finite values");
}
inline void mean_norms(const std::vector<double>& n, index_t old_classes, double& mean_old, double& mean_new) {
  mean_old = mean_new = 0;
  for (std::size_t c = 0; c < n.size(); ++c) (index_t(c) < old_classes ? mean_old : mean_new) += n[c];
  mean_old /= double(old_classes);
  mean_new /= double(index_t(n.size()) - old_classes);
}
}  // namespace detail

/// rho = mean_{new rows} ||W_c||_p / mean_{old rows} ||W_c||_p (the bias WA removes).
template <class T>
double norm_ratio(const Tensor<T>& w, index_t old_classes, int p = 2) {
  detail::check_align("incremental::norm_ratio", w, old_classes, p);
  double mo, mn;
  detail::mean_norms(row_norms(w, p), old_classes, mo, mn);
  WEFT_CHECK(mo > 0, value, "incremental::norm_ratio", "expected old rows with a non-zero mean norm, got 0");
  return mn / mo;
}

/// Weight Aligning of the head weight w (classes, d) whose first old_classes rows are the old
/// classes: scales the new rows by gamma (see the file comment). Throws before touching w when a
/// mean norm is zero (gamma undefined or zero).
template <class T>
AlignResult weight_align(Tensor<T>& w, index_t old_classes, const AlignOptions& o = {}) {
  detail::check_align("incremental::weight_align", w, old_classes, o.norm_p);
  AlignResult r;
  detail::mean_norms(row_norms(w, o.norm_p), old_classes, r.mean_norm_old, r.mean_norm_new);
  WEFT_CHECK(r.mean_norm_old > 0 && r.mean_norm_new > 0, value, "incremental::weight_align",
             "expected non-zero mean row norms of the old and the new classes, got ", r.mean_norm_old, " and ",
             r.mean_norm_new);
  r.rho_before = r.mean_norm_new / r.mean_norm_old;
  double gamma = r.mean_norm_old / r.mean_norm_new;
  if (o.clamp_gamma_le_1 && gamma > 1) gamma = 1;
  if (std::abs(gamma - 1) <= 16 * double(std::numeric_limits<T>::epsilon())) gamma = 1;
  r.gamma = gamma;
  if (gamma != 1) {
    for (index_t c = old_classes; c < w.dim(0); ++c)
      for (index_t j = 0; j < w.dim(1); ++j) w(c, j) = T(double(w(c, j)) * gamma);
    r.applied = true;
  }
  double mo, mn;
  detail::mean_norms(row_norms(w, o.norm_p), old_classes, mo, mn);
  r.rho_after = mn / mo;
  return r;
}

/// Weight Aligning of head.weight (the bias, if any, is left unchanged).
template <class T>
AlignResult weight_align(ExpandableHead<T>& head, index_t old_classes, const AlignOptions& o = {}) {
  WEFT_CHECK(head.weight.defined(), config, "incremental::weight_align",
             "expected a constructed head, got an empty ExpandableHead");
  return weight_align(head.weight.value(), old_classes, o);
}

}  // namespace incremental
WEFT_NAMESPACE_END
