// weft/core/parallel.hpp - parallel_for, the only way weft uses threads.
//
// With WEFT_USE_OPENMP, parallel_for splits [begin, end) into contiguous chunks of at least
// `grain` indices and runs them on OpenMP threads; otherwise (or for small ranges, or when
// already inside a parallel region) it calls the body once on the calling thread. Chunk
// boundaries depend only on the range, the grain and the thread count, and each index is
// processed by exactly one call, so kernels whose per-index work does not reduce across
// indices give the same bits with 1 and N threads. For a grain >= 64 the grain is rounded up
// to a multiple of 64 and every boundary sits a multiple of 64 indices after `begin`: a SIMD
// kernel then puts its full batches and its scalar tail where a one-thread run does (the
// vector and scalar bodies of an op may round differently).
#pragma once

#include <algorithm>
#include <utility>

#include "weft/config.hpp"
#include "weft/core/shape.hpp"

#if WEFT_USE_OPENMP
#include <omp.h>
#endif

WEFT_NAMESPACE_BEGIN

/// Number of threads parallel_for uses (1 without OpenMP).
inline int num_threads() noexcept {
#if WEFT_USE_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Sets the number of threads parallel_for uses (n >= 1). No effect without OpenMP.
inline void set_num_threads(int n) {
  WEFT_CHECK(n >= 1, value, "set_num_threads", "expected n >= 1, got ", n);
#if WEFT_USE_OPENMP
  omp_set_num_threads(n);
#endif
}

/// Calls body(lo, hi) on disjoint chunks covering [begin, end), possibly in parallel. The body
/// must not throw (an exception cannot leave an OpenMP thread): validate arguments before.
template <class F>
void parallel_for(index_t begin, index_t end, index_t grain, F&& body) {
  if (end <= begin) return;
  grain = std::max<index_t>(grain, 1);
#if WEFT_USE_OPENMP
  const index_t n = end - begin;
  const index_t align = grain >= 64 ? 64 : 1;
  grain = (grain + align - 1) / align * align;
  int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  index_t chunks = std::min<index_t>(threads, n / grain);
  if (chunks > 1) {
    // boundary c is floor(c n / chunks) rounded down to `align`: as grain is a multiple of
    // align and n / chunks >= grain, every chunk (the last one too) has at least grain indices
    auto boundary = [&](index_t c) {
      return c == chunks ? end : begin + (c * n / chunks) / align * align;
    };
#pragma omp parallel for num_threads(int(chunks)) schedule(static, 1)
    for (index_t c = 0; c < chunks; ++c) body(boundary(c), boundary(c + 1));
    return;
  }
#endif
  body(begin, end);
}

/// parallel_for with the default grain WEFT_PARALLEL_GRAIN, at least 64: the element-wise SIMD
/// kernels that use it then keep their vector and scalar parts where one thread puts them.
template <class F>
void parallel_for(index_t begin, index_t end, F&& body) {
  parallel_for(begin, end, std::max<index_t>(WEFT_PARALLEL_GRAIN, 64), std::forward<F>(body));
}

WEFT_NAMESPACE_END
