// weft/core/ops/isotonic.hpp - monotone rows: isotonic regression (PAVA) and stable row sorting.
//
// isotonic_row(q, out, m, counts) is the unweighted least-squares projection of q onto
// non-decreasing vectors, argmin_{t_1 <= ... <= t_m} sum_k (t_k - q_k)^2, by the
// pool-adjacent-violators algorithm: scan left to right keeping a stack of blocks (mean, size);
// each new value is pooled with the block before it while that block's mean is higher. Every
// element is pushed once and pooled at most once, so a row costs O(m). Blocks are pooled only
// on a strict violation, so ties stay as they are and an already non-decreasing row comes back
// bit for bit. The stack lives in `out` itself (block b's mean sits in out[b], b <= the current
// index) plus `counts`, caller-provided scratch of m indices: no allocation.
// isotonic_row_weighted minimises sum_k w_k (t_k - q_k)^2 (w_k > 0) the same way, with block
// means merged as weighted averages and the weight sums in caller scratch.
//
// sort_row is a stable sort (insertion sort up to 32 elements, a bottom-up merge sort with
// caller scratch above), so equal values (+0 and -0 too) keep their order and the output is
// fully determined by the input. sort_row_perm also returns the permutation (backward passes).
//
// Row drivers (isotonic_rows, isotonic_rows_weighted, sort_rows) run rows in parallel through
// parallel_for with per-chunk scratch (on the stack for m <= 128): no allocation per row. Each
// row's arithmetic is the scalar reference's, so results are bit-identical for any thread
// count. The vector path (simd::active<T>) tests each row with an xsimd comparison and copies
// rows that are already non-decreasing; PAVA and the sort leave such rows unchanged, so both
// paths give the same bits (tested). The *_scalar drivers always run the plain algorithms.
// Inputs must be free of NaN (the checked tensor functions at the end raise ValueError).
// Range: any finite input. A pooled mean is first formed as (c1 m1 + c2 m2) / (c1 + c2), the
// fast form whose bits the tests pin; only when that overflows (values beyond about max / c,
// e.g. [1.7e308, 1.6e308]) is it recomputed as the convex combination m1 (c1 / c) + m2 (c2 / c),
// which cannot overflow. The extra branch is never taken on ordinary data (cost: none measured).
// Weighted PAVA needs the weight sums to stay finite.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

// ---------------------------------------------------------------------------------------------
// monotonicity test

/// True when x[0] <= x[1] <= ... <= x[m-1] (false as soon as a NaN is met).
template <class T>
bool is_nondecreasing_scalar(const T* x, index_t m) noexcept {
  for (index_t k = 1; k < m; ++k)
    if (!(x[k - 1] <= x[k])) return false;
  return true;
}

/// is_nondecreasing_scalar with an xsimd body for float and double.
template <class T>
bool is_nondecreasing(const T* x, index_t m) noexcept {
#if WEFT_USE_XSIMD
  if constexpr (simd::active<T>) {
    constexpr index_t W = simd::width<T>;
    const index_t pairs = m > 0 ? m - 1 : 0;
    const index_t full = pairs - pairs % W;
    for (index_t k = 0; k < full; k += W)
      if (!simd::all(simd::load(x + k) <= simd::load(x + k + 1))) return false;
    for (index_t k = full; k < pairs; ++k)
      if (!(x[k] <= x[k + 1])) return false;
    return true;
  }
#endif
  return is_nondecreasing_scalar(x, m);
}

// ---------------------------------------------------------------------------------------------
// PAVA on one row

namespace detail {
/// The mean of two blocks (mean a over weight ca, mean b over weight cb) as a convex
/// combination: the overflow-free fallback of the pooled means below (cold: values near max).
template <class T, class W>
WEFT_COLD T pooled_mean_scaled(T a, W ca, T b, W cb) noexcept {
  const W c = ca + cb;
  return a * T(ca / c) + b * T(cb / c);
}
}  // namespace detail

namespace detail {
/// PAVA, the one implementation behind isotonic_row and isotonic_row_weighted. A stack of
/// blocks (mean out[b], size counts[b], weight sum wsum[b] when Weighted) grows left to right;
/// each new value starts a block that is pooled with the blocks before it while their mean is
/// higher. Unweighted, a block's weight is its size and a pooled mean is the sum times a
/// reciprocal of the sizes alone (keeps the division off the dependency chain); weighted, it is
/// the weighted sum over the weight sum. Then the block means are expanded into out.
template <class T, bool Weighted>
index_t pava_row(const T* q, const T* w, T* out, index_t m, index_t* counts, T* wsum) noexcept {
  if (m <= 0) return 0;
  // the mean of a block over weight wa pooled with one over weight wb
  const auto pool = [](T a, T wa, T b, T wb) {
    T pooled;
    if constexpr (Weighted) pooled = (wa * a + wb * b) / (wa + wb);
    else pooled = (wa * a + wb * b) * (T(1) / (wa + wb));  // sizes: exact sums, one reciprocal
    if (WEFT_UNLIKELY(!std::isfinite(pooled))) pooled = pooled_mean_scaled(a, wa, b, wb);
    return pooled;
  };
  // the last block lives in registers (tv, tw, tc); blocks 0..top-1 are on the stack
  // out/wsum/counts (unweighted, a block's weight is its size and wsum is not used)
  T tv = q[0], tw = Weighted ? w[0] : T(1);
  index_t tc = 1, top = 0;
  for (index_t i = 1; i < m; ++i) {
    const T v = q[i];  // read before the stack writes out[top] (top < i), which may be q[i]'s slot
    const T vw = Weighted ? w[i] : T(1);
    if (!(v < tv)) {  // no violation: the last block goes onto the stack, v starts a new one
      out[top] = tv;
      if constexpr (Weighted) wsum[top] = tw;
      counts[top++] = tc;
      tv = v;
      tw = vw;
      tc = 1;
      continue;
    }
    // pool v into the last block, then the last block with those before it while they are higher
    tv = pool(tv, tw, v, vw);
    tw = Weighted ? tw + vw : T(real_t<T>(tc + 1));
    ++tc;
    while (top > 0 && tv < out[top - 1]) {
      const index_t pc = counts[top - 1];
      const T pw = Weighted ? wsum[top - 1] : T(real_t<T>(pc));
      tv = pool(out[top - 1], pw, tv, tw);
      tw = Weighted ? pw + tw : T(real_t<T>(pc + tc));
      tc += pc;
      --top;
    }
  }
  out[top] = tv;
  counts[top] = tc;
  // expand from the last block down: block b starts at a position >= b, so the means of
  // blocks 0..b (in out[0..b]) are intact when they are read
  index_t end = m;
  for (index_t b = top; b >= 0; --b) {
    const T val = out[b];
    const index_t lo = end - counts[b];
    for (index_t k = lo; k < end; ++k) out[k] = val;
    end = lo;
  }
  return top + 1;
}
}  // namespace detail

/// Unweighted isotonic regression of q[0..m) into out (may alias q). `counts` is scratch for m
/// indices; on return counts[0..blocks) are the block sizes, left to right. Returns the number
/// of blocks. O(m), no allocation.
template <class T>
index_t isotonic_row(const T* q, T* out, index_t m, index_t* counts) noexcept {
  return detail::pava_row<T, false>(q, nullptr, out, m, counts, nullptr);
}

/// Weighted isotonic regression: argmin sum_k w[k] (t_k - q_k)^2 over non-decreasing t. Weights
/// must be positive. `counts` (m indices) and `wsum` (m values) are scratch; counts as in
/// isotonic_row. Singleton blocks keep q exactly. Returns the number of blocks.
template <class T>
index_t isotonic_row_weighted(const T* q, const T* w, T* out, index_t m, index_t* counts, T* wsum) noexcept {
  return detail::pava_row<T, true>(q, w, out, m, counts, wsum);
}

// ---------------------------------------------------------------------------------------------
// stable sorting of one row

namespace detail {
/// Stable sort of a[0..m) by `less` with scratch s[0..m): insertion sort for m <= 32, else
/// insertion-sorted runs of 32 merged bottom-up (ping-pong between a and s, copied back).
template <class V, class Less>
void stable_sort_with_scratch(V* a, V* s, index_t m, Less less) {
  constexpr index_t run = 32;
  for (index_t b = 0; b < m; b += run) {
    const index_t e = std::min(m, b + run);
    for (index_t i = b + 1; i < e; ++i) {
      V v = a[i];
      index_t j = i;
      for (; j > b && less(v, a[j - 1]); --j) a[j] = a[j - 1];
      a[j] = v;
    }
  }
  V *src = a, *dst = s;
  for (index_t width = run; width < m; width *= 2) {
    for (index_t lo = 0; lo < m; lo += 2 * width) {
      const index_t mid = std::min(m, lo + width), hi = std::min(m, lo + 2 * width);
      index_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) dst[k++] = less(src[j], src[i]) ? src[j++] : src[i++];
      while (i < mid) dst[k++] = src[i++];
      while (j < hi) dst[k++] = src[j++];
    }
    std::swap(src, dst);
  }
  if (src != a) std::copy(src, src + m, a);
}
}  // namespace detail

/// out = q sorted ascending, stably (out may alias q). `scratch` holds m values (unused for
/// m <= 32; may then be null).
template <class T>
void sort_row(const T* q, T* out, index_t m, T* scratch) noexcept {
  if (out != q) std::copy(q, q + m, out);
  detail::stable_sort_with_scratch(out, scratch, m, [](const T& a, const T& b) { return a < b; });
}

/// out = q sorted ascending and perm with out[k] = q[perm[k]] (stable: ties keep their order).
/// out must not alias q. `scratch` holds m indices (unused for m <= 32).
template <class T>
void sort_row_perm(const T* q, T* out, index_t* perm, index_t m, index_t* scratch) noexcept {
  for (index_t k = 0; k < m; ++k) perm[k] = k;
  detail::stable_sort_with_scratch(perm, scratch, m, [q](index_t a, index_t b) { return q[a] < q[b]; });
  for (index_t k = 0; k < m; ++k) out[k] = q[perm[k]];
}

// ---------------------------------------------------------------------------------------------
// row drivers

namespace detail {
inline index_t monotone_row_grain(index_t m) { return m > 0 ? std::max<index_t>(1, 4096 / m) : 1; }

/// Runs body(lo, hi, counts, tscratch) over row chunks with scratch of m indices and m values:
/// on the stack for m <= 128, else one heap buffer per chunk (never per row).
template <class T, class Body>
void rows_with_scratch(index_t rows, index_t m, Body&& body) {
  parallel_for(0, rows, monotone_row_grain(m), [&](index_t lo, index_t hi) {
    constexpr index_t stack_m = 128;
    if (m <= stack_m) {
      index_t counts[stack_m];
      T vals[stack_m];
      body(lo, hi, counts, vals);
    } else {
      std::vector<index_t> counts(static_cast<std::size_t>(m));
      std::vector<T> vals(static_cast<std::size_t>(m));
      body(lo, hi, counts.data(), vals.data());
    }
  });
}

template <class T, bool Fast>
void isotonic_rows_impl(const T* q, T* out, index_t rows, index_t m) {
  rows_with_scratch<T>(rows, m, [&](index_t lo, index_t hi, index_t* counts, T*) {
    for (index_t r = lo; r < hi; ++r) {
      const T* qr = q + r * m;
      T* orow = out + r * m;
      if (Fast && is_nondecreasing(qr, m)) {
        if (orow != qr) std::copy(qr, qr + m, orow);
      } else {
        isotonic_row(qr, orow, m, counts);
      }
    }
  });
}

template <class T, bool Fast>
void isotonic_rows_weighted_impl(const T* q, const T* w, index_t w_stride, T* out, index_t rows, index_t m) {
  rows_with_scratch<T>(rows, m, [&](index_t lo, index_t hi, index_t* counts, T* wsum) {
    for (index_t r = lo; r < hi; ++r) {
      const T* qr = q + r * m;
      T* orow = out + r * m;
      if (Fast && is_nondecreasing(qr, m)) {
        if (orow != qr) std::copy(qr, qr + m, orow);
      } else {
        isotonic_row_weighted(qr, w + r * w_stride, orow, m, counts, wsum);
      }
    }
  });
}

template <class T, bool Fast>
void sort_rows_impl(const T* q, T* out, index_t rows, index_t m) {
  rows_with_scratch<T>(rows, m, [&](index_t lo, index_t hi, index_t*, T* vals) {
    for (index_t r = lo; r < hi; ++r) {
      const T* qr = q + r * m;
      T* orow = out + r * m;
      if (Fast && is_nondecreasing(qr, m)) {
        if (orow != qr) std::copy(qr, qr + m, orow);
      } else {
        sort_row(qr, orow, m, vals);
      }
    }
  });
}
}  // namespace detail

/// Unweighted isotonic regression of each of `rows` contiguous rows of length m (out may alias
/// q). Vector path: non-decreasing rows are detected with xsimd and copied.
template <class T>
void isotonic_rows(const T* q, T* out, index_t rows, index_t m) {
  detail::isotonic_rows_impl<T, simd::active<T>>(q, out, rows, m);
}
/// isotonic_rows without the vector fast path (the reference).
template <class T>
void isotonic_rows_scalar(const T* q, T* out, index_t rows, index_t m) {
  detail::isotonic_rows_impl<T, false>(q, out, rows, m);
}

/// Weighted isotonic regression per row; row r uses weights w + r * w_stride (w_stride = 0:
/// one weight row shared by all rows, w_stride = m: one weight row per row). Weights > 0.
template <class T>
void isotonic_rows_weighted(const T* q, const T* w, index_t w_stride, T* out, index_t rows, index_t m) {
  detail::isotonic_rows_weighted_impl<T, simd::active<T>>(q, w, w_stride, out, rows, m);
}
template <class T>
void isotonic_rows_weighted_scalar(const T* q, const T* w, index_t w_stride, T* out, index_t rows, index_t m) {
  detail::isotonic_rows_weighted_impl<T, false>(q, w, w_stride, out, rows, m);
}

/// Stable ascending sort of each row (out may alias q). Vector path: sorted rows are copied.
template <class T>
void sort_rows(const T* q, T* out, index_t rows, index_t m) {
  detail::sort_rows_impl<T, simd::active<T>>(q, out, rows, m);
}
template <class T>
void sort_rows_scalar(const T* q, T* out, index_t rows, index_t m) {
  detail::sort_rows_impl<T, false>(q, out, rows, m);
}

// ---------------------------------------------------------------------------------------------
// checked tensor functions (rows = every axis but the last)

namespace detail {
template <class T>
void check_monotone_input(const Tensor<T>& q, const char* func) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "isotonic regression and sorting are defined for real tensors (float or double)");
  WEFT_CHECK(q.defined() && q.rank() >= 1, shape, func, "expected a tensor of rank >= 1, got ",
             q.defined() ? "a scalar" : "an undefined tensor");
  WEFT_CHECK(q.all_finite(), value, func, "expected finite values, got NaN or Inf");
}
}  // namespace detail

/// Isotonic (non-decreasing) least-squares fit of every row of the last axis; a new tensor.
template <class T>
Tensor<T> isotonic(const Tensor<T>& q) {
  detail::check_monotone_input(q, "ops::isotonic");
  Tensor<T> out(q.shape());
  const index_t m = q.shape().last();
  isotonic_rows(q.data(), out.data(), m > 0 ? q.numel() / m : 0, m);
  return out;
}

/// Weighted isotonic fit of every row; w has q's shape or the shape (m) of one row (shared).
template <class T>
Tensor<T> isotonic_weighted(const Tensor<T>& q, const Tensor<T>& w) {
  detail::check_monotone_input(q, "ops::isotonic_weighted");
  const index_t m = q.shape().last();
  WEFT_CHECK(w.defined() && (w.shape() == q.shape() || (w.rank() == 1 && w.numel() == m)), shape,
             "ops::isotonic_weighted", "expected weights of shape ", q.shape(), " or (", m, "), got ",
             w.defined() ? w.shape() : Shape{});
  for (index_t i = 0; i < w.numel(); ++i)
    WEFT_CHECK(w.flat(i) > 0 && is_finite(w.flat(i)), value, "ops::isotonic_weighted",
               "expected positive finite weights, got ", w.flat(i), " at flat index ", i);
  Tensor<T> out(q.shape());
  isotonic_rows_weighted(q.data(), w.data(), w.shape() == q.shape() ? m : 0, out.data(),
                         m > 0 ? q.numel() / m : 0, m);
  return out;
}

/// Every row of the last axis sorted ascending (stable); a new tensor.
template <class T>
Tensor<T> sort_last_axis(const Tensor<T>& q) {
  detail::check_monotone_input(q, "ops::sort_last_axis");
  Tensor<T> out(q.shape());
  const index_t m = q.shape().last();
  sort_rows(q.data(), out.data(), m > 0 ? q.numel() / m : 0, m);
  return out;
}

}  // namespace ops
WEFT_NAMESPACE_END
