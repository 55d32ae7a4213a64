// weft/prune/select.hpp - order statistics and threshold passes behind the masks (mask.hpp).
//
//   kth_smallest(v, n, k)      the k-th smallest value (1-based) and how many values lie below it
//   mark_exact(v, n, t, ties)  keep = 0 for v < t and for the first `ties` entries with v == t
//   mark_le(v, n, t)           keep = 0 for v <= t
// Selection never sorts. Small groups use std::nth_element on a scratch copy (expected O(n)).
// Groups of at least radix_min values use an MSB radix select on the order-preserving integer
// keys of the floats (11 bits per pass: 3 passes for float, 6 for double), with the histograms
// counted over fixed chunks through parallel_for: counts are integers, so the result does not
// depend on the thread count. The marking passes also run over fixed chunks (the ties are handed
// out in index order from per-chunk counts). -0 and +0 are the same value. Values must be finite.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/core/parallel.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace prune::detail {

/// Groups with at least this many values use the radix select.
inline constexpr index_t radix_min = index_t(1) << 16;
/// Values per chunk of the parallel passes.
inline constexpr index_t select_chunk = index_t(1) << 18;

template <class S>
struct radix_key {
  static_assert(std::is_same_v<S, float> || std::is_same_v<S, double>, "prune selection needs float or double scores");
  using U = std::conditional_t<std::is_same_v<S, float>, std::uint32_t, std::uint64_t>;
  static constexpr U top = U(1) << (8 * sizeof(U) - 1);
  /// An unsigned key with the order of the values (-0 mapped to +0).
  static U of(S x) {
    if (x == S(0)) x = S(0);
    U b;
    std::memcpy(&b, &x, sizeof b);
    return (b & top) ? U(~b) : U(b | top);
  }
  static S value(U k) {
    const U b = (k & top) ? U(k & ~top) : U(~k);
    S x;
    std::memcpy(&x, &b, sizeof x);
    return x;
  }
};

/// The k-th smallest value (1 <= k <= n) by MSB radix select; *below = #values < it.
template <class S>
S radix_select(const S* v, index_t n, index_t k, index_t* below) {
  using K = radix_key<S>;
  using U = typename K::U;
  constexpr int digit = 11;
  constexpr index_t buckets = index_t(1) << digit;
  const index_t chunks = (n + select_chunk - 1) / select_chunk;
  std::vector<index_t> hist(static_cast<std::size_t>(chunks * buckets)), total(static_cast<std::size_t>(buckets));
  U prefix = 0, prefix_mask = 0;
  index_t rank = k, under = 0;
  for (int shift = int(8 * sizeof(U)); shift > 0;) {
    const int d = std::min(digit, shift);
    shift -= d;
    const U dmask = U((U(1) << d) - 1);
    std::fill(hist.begin(), hist.end(), index_t(0));
    parallel_for(0, chunks, 1, [&](index_t lo, index_t hi) {
      for (index_t c = lo; c < hi; ++c) {
        index_t* h = hist.data() + c * buckets;
        const index_t e = std::min(n, (c + 1) * select_chunk);
        for (index_t i = c * select_chunk; i < e; ++i) {
          const U key = K::of(v[i]);
          if ((key & prefix_mask) == prefix) ++h[(key >> shift) & dmask];
        }
      }
    });
    std::fill(total.begin(), total.end(), index_t(0));
    for (index_t c = 0; c < chunks; ++c)
      for (index_t b = 0; b < buckets; ++b) total[std::size_t(b)] += hist[std::size_t(c * buckets + b)];
    index_t b = 0, cum = 0;
    while (cum + total[std::size_t(b)] < rank) cum += total[std::size_t(b++)];
    under += cum;
    rank -= cum;
    prefix |= U(U(b) << shift);
    prefix_mask |= U(dmask << shift);
  }
  *below = under;
  return K::value(prefix);
}

/// The k-th smallest value (1 <= k <= n); *below = #values < it. tmp is scratch.
template <class S>
S kth_smallest(const S* v, index_t n, index_t k, std::vector<S>& tmp, index_t* below) {
  if (n >= radix_min) return radix_select(v, n, k, below);
  tmp.assign(v, v + n);
  std::nth_element(tmp.begin(), tmp.begin() + (k - 1), tmp.end());
  const S t = tmp[std::size_t(k - 1)];
  index_t b = 0;  // every value < t sits in tmp[0, k - 1)
  for (index_t i = 0; i < k - 1; ++i) b += tmp[std::size_t(i)] < t;
  *below = b;
  return t;
}

/// keep[i] = 0 for v[i] < t and for the first `ties` entries (in index order) with v[i] == t.
template <class S>
void mark_exact(const S* v, index_t n, S t, index_t ties, std::uint8_t* keep) {
  auto mark = [&](index_t lo, index_t hi, index_t budget) {
    for (index_t i = lo; i < hi; ++i) {
      const bool tie = v[i] == t && budget > 0;
      budget -= tie;
      keep[i] = (v[i] < t || tie) ? 0 : 1;
    }
  };
  if (n < radix_min) {
    mark(0, n, ties);
    return;
  }
  const index_t chunks = (n + select_chunk - 1) / select_chunk;
  std::vector<index_t> eq(static_cast<std::size_t>(chunks)), budget(static_cast<std::size_t>(chunks));
  parallel_for(0, chunks, 1, [&](index_t lo, index_t hi) {
    for (index_t c = lo; c < hi; ++c) {
      index_t e = 0;
      for (index_t i = c * select_chunk; i < std::min(n, (c + 1) * select_chunk); ++i) e += v[i] == t;
      eq[std::size_t(c)] = e;
    }
  });
  for (index_t c = 0; c < chunks; ++c) {
    budget[std::size_t(c)] = std::min(ties, eq[std::size_t(c)]);
    ties -= budget[std::size_t(c)];
  }
  parallel_for(0, chunks, 1, [&](index_t lo, index_t hi) {
    for (index_t c = lo; c < hi; ++c) mark(c * select_chunk, std::min(n, (c + 1) * select_chunk), budget[std::size_t(c)]);
  });
}

/// keep[i] = 0 for v[i] <= t (compared in double).
template <class S>
void mark_le(const S* v, index_t n, double t, std::uint8_t* keep) {
  parallel_for(0, n, select_chunk, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) keep[i] = double(v[i]) <= t ? 0 : 1;
  });
}

/// Index of the first non-finite value of v[0, n), or -1.
template <class S>
index_t first_non_finite(const S* v, index_t n) {
  using U = typename radix_key<S>::U;
  constexpr U exp_mask = std::is_same_v<S, float> ? U(0x7f800000u) : U(0x7ff0000000000000ull);
  bool bad = false;
  for (index_t i = 0; i < n; ++i) {  // branch-free scan (vectorisable); locate only on failure
    U b;
    std::memcpy(&b, v + i, sizeof b);
    bad |= (b & exp_mask) == exp_mask;
  }
  if (!bad) return -1;
  for (index_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) return i;
  return -1;
}

}  // namespace prune::detail
WEFT_NAMESPACE_END
