// weft/prune/mask.hpp - pruning masks from importance scores: which weights to zero.
//
// A Mask has the shape of a weight matrix W (out x in, row-major as nn::Linear) and holds one
// byte per weight: 1 = kept, 0 = pruned. select_mask(scores, options) thresholds a score matrix
// of the same shape, group by group (never across matrices: "per matrix" means layer-wise):
//
//   groups  (MaskOptions::group)
//     matrix        the whole matrix at once (magnitude, D-Pruner; the default)
//     row           each output row on its own (Wanda's per-output rule)
//     column_block  blocks of block_cols consecutive columns (save_model_iterative.py; SparseGPT's
//                   adaptive mask); the last block may be narrower
//     n_of_m        semi-structured N:M: n of every m consecutive inputs of a row are pruned
//                   (2:4, 4:8); always an exact count
//   rules   (MaskOptions::rule), for a group of n scores and sparsity s in [0, 1)
//     exact_count      prune exactly k = floor(s n): the k smallest scores, ties broken by the
//                      lower flat (row-major) index first. Deterministic and independent of
//                      the thread count. The library default.
//     percentile_le    D-Pruner's save_model.py: t = numpy.percentile(scores, 100 s) with linear
//                      interpolation (at position s (n - 1)), prune every score <= t (ties at t
//                      pruned; for distinct scores floor(s (n - 1)) + 1 of them)
//     sorted_index_le  the Wanda / SparseGPT repositories' rule: t = sort(scores)[floor(s n)],
//                      prune every score <= t (for distinct scores floor(s n) + 1 of them)
//
// Selection never sorts (select.hpp): the threshold t is the k-th smallest score, found by
// std::nth_element (small groups) or a parallel radix select (groups of 65536 or more), then
// one pass prunes every score < t and, in index order, as many scores == t as the count needs.
// Rows and blocks run through parallel_for; the result never depends on the thread count.
// Scores must be finite (NaN would make the order meaningless): a non-finite score is a
// ValueError naming its position. select_mask_with_thresholds also returns the threshold each
// group applied (MaskSelection, which documents what it means per rule and group).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "weft/core/checked.hpp"
#include "weft/core/parallel.hpp"
#include "weft/core/tensor.hpp"
#include "weft/prune/select.hpp"

WEFT_NAMESPACE_BEGIN
namespace prune {

enum class threshold_rule { exact_count, percentile_le, sorted_index_le };
enum class mask_group { matrix, row, column_block, n_of_m };

struct MaskOptions {
  double sparsity = 0.5;                              ///< fraction pruned per group, in [0, 1)
  threshold_rule rule = threshold_rule::exact_count;
  mask_group group = mask_group::matrix;
  index_t block_cols = 128;                           ///< columns per block (column_block)
  index_t n = 2, m = 4;                               ///< n_of_m: prune n of every m (sparsity unused)
};

/// A keep-mask of a rows x cols weight matrix, row-major: keep[r * cols + c] is 1 (kept) or 0.
struct Mask {
  index_t rows = 0, cols = 0;
  std::vector<std::uint8_t> keep;

  Mask() = default;
  /// A mask that keeps everything; ShapeError for negative extents, ValueError when r c overflows.
  Mask(index_t r, index_t c) : rows(r), cols(c), keep(std::size_t(checked_extent(r, c, "prune::Mask")), std::uint8_t(1)) {}

  /// Raises unless rows, cols >= 0, keep holds rows cols entries and each is 0 or 1 (a mask filled
  /// by hand or read from a file may not be). Every function taking a Mask calls it.
  void validate(const char* fn = "prune::Mask::validate") const {
    const index_t n = checked_extent(rows, cols, fn);
    WEFT_CHECK(index_t(keep.size()) == n, shape, fn, "expected ", n, " keep entries for a ", rows, " x ", cols,
               " mask, got ", keep.size());
    for (std::size_t i = 0; i < keep.size(); ++i)
      WEFT_CHECK(keep[i] <= 1, value, fn, "expected keep entries 0 or 1, got ", int(keep[i]), " at ", i);
  }

  index_t numel() const noexcept { return rows * cols; }
  bool kept(index_t r, index_t c) const { return keep[std::size_t(r * cols + c)] != 0; }
  /// Number of pruned entries.
  index_t zeros() const {
    index_t z = 0;
    for (std::uint8_t k : keep) z += k == 0;
    return z;
  }
  /// Number of pruned entries of row r.
  index_t zeros_in_row(index_t r) const {
    index_t z = 0;
    for (index_t c = 0; c < cols; ++c) z += keep[std::size_t(r * cols + c)] == 0;
    return z;
  }
  double sparsity() const { return numel() ? double(zeros()) / double(numel()) : 0.0; }
  /// The mask as a 0/1 tensor of shape (rows, cols).
  template <class T>
  Tensor<T> as_tensor() const {
    Tensor<T> t(Shape{rows, cols});
    for (index_t i = 0; i < numel(); ++i) t.flat(i) = keep[std::size_t(i)] ? T(1) : T(0);
    return t;
  }
  friend bool operator==(const Mask& a, const Mask& b) {
    return a.rows == b.rows && a.cols == b.cols && a.keep == b.keep;
  }
  friend bool operator!=(const Mask& a, const Mask& b) { return !(a == b); }

 private:
  static index_t checked_extent(index_t r, index_t c, const char* fn) {
    WEFT_CHECK(r >= 0 && c >= 0, shape, fn, "expected non-negative extents, got ", r, " x ", c);
    return checked_mul(r, c, fn);
  }
};

/// Number of entries a group of n loses under exact_count / sorted_index_le's index: floor(s n).
inline index_t prune_count(double sparsity, index_t n) { return index_t(std::floor(sparsity * double(n))); }

namespace detail {

/// numpy.percentile's linear interpolation between order statistics a <= b at fraction f.
inline double numpy_lerp(double a, double b, double f) {
  const double d = b - a;
  return f >= 0.5 ? b - d * (1 - f) : a + d * f;
}

/// Small groups (n <= 16, e.g. N:M): prune the k smallest (score, index) by counting ranks.
template <class S>
void select_exact_small(const S* v, index_t n, index_t k, std::uint8_t* keep) {
  for (index_t i = 0; i < n; ++i) {
    index_t rank = 0;
    for (index_t j = 0; j < n; ++j) rank += v[j] < v[i] || (v[j] == v[i] && j < i);
    keep[i] = rank < k ? 0 : 1;
  }
}

/// The largest pruned score of a group (-inf when nothing is pruned): exact_count's threshold.
template <class S>
double largest_pruned(const S* v, index_t n, const std::uint8_t* keep) {
  double t = -std::numeric_limits<double>::infinity();
  for (index_t i = 0; i < n; ++i)
    if (!keep[i]) t = std::max(t, double(v[i]));
  return t;
}

/// Marks the pruned entries of one group of n scores (group order = flat index order) and
/// returns the threshold applied (see MaskSelection). tmp is scratch reused between calls.
template <class S>
double select_group(const S* v, index_t n, const MaskOptions& o, std::uint8_t* keep, std::vector<S>& tmp) {
  if (n == 0) return -std::numeric_limits<double>::infinity();
  index_t below = 0;
  if (o.rule == threshold_rule::exact_count) {
    const index_t k = prune_count(o.sparsity, n);
    if (k == 0) {
      std::fill(keep, keep + n, std::uint8_t(1));
      return -std::numeric_limits<double>::infinity();
    }
    if (n <= 16) {
      select_exact_small(v, n, k, keep);
      return largest_pruned(v, n, keep);
    }
    const S t = kth_smallest(v, n, k, tmp, &below);
    mark_exact(v, n, t, k - below, keep);
    return double(t);
  }
  double t;
  if (o.rule == threshold_rule::sorted_index_le) {
    t = double(kth_smallest(v, n, prune_count(o.sparsity, n) + 1, tmp, &below));  // sort(v)[floor(s n)]
  } else {  // percentile_le
    const double pos = o.sparsity * double(n - 1);
    const index_t lo = std::min<index_t>(index_t(std::floor(pos)), n - 1);
    const double a = double(kth_smallest(v, n, lo + 1, tmp, &below));
    const double b = lo + 1 < n ? double(kth_smallest(v, n, lo + 2, tmp, &below)) : a;
    t = numpy_lerp(a, b, pos - double(lo));
  }
  mark_le(v, n, t, keep);
  return t;
}

inline void check_mask_options(const MaskOptions& o, index_t cols, const char* fn) {
  WEFT_CHECK(o.sparsity >= 0 && o.sparsity < 1, value, fn, "expected sparsity in [0, 1), got ", o.sparsity);
  WEFT_CHECK(o.group != mask_group::column_block || o.block_cols > 0, config, fn,
             "expected block_cols > 0 for column_block masks, got ", o.block_cols);
  if (o.group == mask_group::n_of_m) {
    WEFT_CHECK(o.m > 0 && o.n >= 0 && o.n < o.m, config, fn, "expected 0 <= n < m for an N:M mask, got ", o.n,
               ":", o.m);
    WEFT_CHECK(cols % o.m == 0, shape, fn, "expected the column count to be a multiple of m = ", o.m,
               " for an N:M mask, got ", cols, " columns");
    WEFT_CHECK(o.rule == threshold_rule::exact_count, config, fn,
               "expected rule exact_count for an N:M mask (it always prunes exactly n of m)");
  }
}

template <class S>
void check_finite_scores(const S* s, index_t rows, index_t cols, const char* fn) {
  const index_t i = first_non_finite(s, rows * cols);
  WEFT_CHECK(i < 0, value, fn, "expected finite scores, got ", double(i < 0 ? S(0) : s[i]), " at (", i / cols, ", ",
             i % cols, ")");
}

}  // namespace detail

namespace detail {

/// Number of groups of a rows x cols matrix under o (the size of MaskSelection::thresholds).
inline index_t mask_group_count(index_t rows, index_t cols, const MaskOptions& o) {
  switch (o.group) {
    case mask_group::row: return rows;
    case mask_group::column_block: return (cols + o.block_cols - 1) / o.block_cols;
    case mask_group::n_of_m: return rows * (cols / o.m);
    default: return 1;
  }
}

/// select_mask's work; thr (one per group, or null) receives the thresholds.
template <class S>
Mask select_into(const S* scores, index_t rows, index_t cols, const MaskOptions& o, double* thr, const char* fn) {
  WEFT_CHECK(rows > 0 && cols > 0, shape, fn, "expected a non-empty score matrix, got ", rows, " x ", cols);
  check_mask_options(o, cols, fn);
  check_finite_scores(scores, rows, cols, fn);
  Mask mask(rows, cols);
  std::uint8_t* keep = mask.keep.data();
  auto put = [thr](index_t g, double t) {
    if (thr) thr[g] = t;
  };
  switch (o.group) {
    case mask_group::matrix: {
      std::vector<S> tmp;
      put(0, select_group(scores, rows * cols, o, keep, tmp));
      break;
    }
    case mask_group::row:
      parallel_for(0, rows, std::max<index_t>(1, 4096 / cols), [&](index_t lo, index_t hi) {
        std::vector<S> tmp;
        for (index_t r = lo; r < hi; ++r) put(r, select_group(scores + r * cols, cols, o, keep + r * cols, tmp));
      });
      break;
    case mask_group::column_block: {
      const index_t blocks = mask_group_count(rows, cols, o);
      parallel_for(0, blocks, 1, [&](index_t lo, index_t hi) {
        std::vector<S> vals, tmp;
        std::vector<std::uint8_t> kb;
        for (index_t b = lo; b < hi; ++b) {
          const index_t c0 = b * o.block_cols, w = std::min(cols, c0 + o.block_cols) - c0;
          vals.resize(std::size_t(rows * w));
          kb.resize(vals.size());
          for (index_t r = 0; r < rows; ++r) std::copy(scores + r * cols + c0, scores + r * cols + c0 + w, &vals[std::size_t(r * w)]);
          put(b, select_group(vals.data(), rows * w, o, kb.data(), tmp));
          for (index_t r = 0; r < rows; ++r) std::copy(&kb[std::size_t(r * w)], &kb[std::size_t(r * w)] + w, keep + r * cols + c0);
        }
      });
      break;
    }
    case mask_group::n_of_m:
      parallel_for(0, rows, std::max<index_t>(1, 4096 / cols), [&](index_t lo, index_t hi) {
        for (index_t r = lo; r < hi; ++r)
          for (index_t c = 0; c < cols; c += o.m) {
            const S* v = scores + r * cols + c;
            std::uint8_t* k = keep + r * cols + c;
            select_exact_small(v, o.m, o.n, k);
            if (thr) thr[r * (cols / o.m) + c / o.m] = largest_pruned(v, o.m, k);
          }
      });
      break;
  }
  return mask;
}

}  // namespace detail

/// The keep-mask of a rows x cols score matrix (row-major, raw pointer) under options o.
/// Checks sparsity, options and finiteness before doing anything.
template <class S>
Mask select_mask(const S* scores, index_t rows, index_t cols, const MaskOptions& o = {}) {
  return detail::select_into(scores, rows, cols, o, static_cast<double*>(nullptr), "prune::select_mask");
}

/// A keep-mask with the threshold t each group applied (select_mask_with_thresholds). Per rule:
///   exact_count      t = the k-th smallest score of the group, the largest pruned one: every
///                    pruned score <= t <= every kept score. Scores equal to t can fall on both
///                    sides (the lower flat indices pruned first). k = 0: t = -inf.
///   percentile_le,   the computed t: every pruned score <= t < every kept score (ties at t
///   sorted_index_le  pruned).
/// Groups, in order: matrix one; row one per row; column_block one per block, left to right;
/// n_of_m one per run of m inputs, row by row (t = the n-th smallest of the m, the largest
/// pruned; -inf for n = 0).
struct MaskSelection {
  Mask mask;
  std::vector<double> thresholds;
  mask_group group = mask_group::matrix;
  index_t group_cols = 0;  ///< columns per group: block_cols (column_block), m (n_of_m), else cols

  /// Raises unless the fields fit together: group_cols >= 1 (dividing cols for n_of_m) and one
  /// threshold per group (the mask's entries are not read; see Mask::validate).
  void validate(const char* fn = "prune::MaskSelection::validate") const {
    WEFT_CHECK(mask.rows >= 0 && mask.cols >= 0 && group_cols >= 1 &&
                   (group != mask_group::n_of_m || mask.cols % group_cols == 0),
               shape, fn, "expected a ", mask.rows, " x ", mask.cols, " mask and group_cols >= 1 (dividing cols for n_of_m), got ",
               group_cols);
    const index_t groups = group == mask_group::row            ? mask.rows
                           : group == mask_group::column_block ? (mask.cols + group_cols - 1) / group_cols
                           : group == mask_group::n_of_m       ? checked_mul(mask.rows, mask.cols / group_cols, fn)
                                                               : 1;
    WEFT_CHECK(index_t(thresholds.size()) == groups, shape, fn, "expected ", groups, " thresholds (one per group), got ",
               thresholds.size());
  }

  /// The threshold of the group holding weight (r, c).
  double threshold_at(index_t r, index_t c) const {
    validate("prune::MaskSelection::threshold_at");
    WEFT_CHECK(r >= 0 && r < mask.rows && c >= 0 && c < mask.cols, shape, "prune::MaskSelection::threshold_at",
               "expected a position inside ", mask.rows, " x ", mask.cols, ", got (", r, ", ", c, ")");
    switch (group) {
      case mask_group::row: return thresholds[std::size_t(r)];
      case mask_group::column_block: return thresholds[std::size_t(c / group_cols)];
      case mask_group::n_of_m: return thresholds[std::size_t(r * (mask.cols / group_cols) + c / group_cols)];
      default: return thresholds[0];
    }
  }
};

/// select_mask, also returning the threshold of every group (MaskSelection). Same mask, same checks.
template <class S>
MaskSelection select_mask_with_thresholds(const S* scores, index_t rows, index_t cols, const MaskOptions& o = {}) {
  const char* fn = "prune::select_mask_with_thresholds";
  WEFT_CHECK(rows > 0 && cols > 0, shape, fn, "expected a non-empty score matrix, got ", rows, " x ", cols);
  detail::check_mask_options(o, cols, fn);
  MaskSelection r;
  r.thresholds.resize(std::size_t(detail::mask_group_count(rows, cols, o)));
  r.mask = detail::select_into(scores, rows, cols, o, r.thresholds.data(), fn);
  r.group = o.group;
  r.group_cols = o.group == mask_group::column_block ? o.block_cols : o.group == mask_group::n_of_m ? o.m : cols;
  return r;
}

/// select_mask on a rank-2 score tensor (out x in, as the weight it scores).
template <class T>
Mask select_mask(const Tensor<T>& scores, const MaskOptions& o = {}) {
  static_assert(!is_complex_v<T>, "prune::select_mask needs real scores");
  WEFT_CHECK(scores.rank() == 2, shape, "prune::select_mask", "expected a rank-2 score matrix, got shape ",
             scores.shape());
  return select_mask(scores.data(), scores.dim(0), scores.dim(1), o);
}

/// select_mask_with_thresholds on a rank-2 score tensor.
template <class T>
MaskSelection select_mask_with_thresholds(const Tensor<T>& scores, const MaskOptions& o = {}) {
  static_assert(!is_complex_v<T>, "prune::select_mask_with_thresholds needs real scores");
  WEFT_CHECK(scores.rank() == 2, shape, "prune::select_mask_with_thresholds", "expected a rank-2 score matrix, got shape ",
             scores.shape());
  return select_mask_with_thresholds(scores.data(), scores.dim(0), scores.dim(1), o);
}

}  // namespace prune
WEFT_NAMESPACE_END
