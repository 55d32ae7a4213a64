// weft/core/ops/matmul.hpp - matrix products on raw row-major buffers (no autograd).
//
// gemm computes C (+)= op(A) op(B) with op = identity or transpose, through Eigen's GEMM (its
// own blocking and SIMD kernels; a coefficient-wise product for tiny sizes).
//
// Threads: weft owns threading (DESIGN.md: OpenMP through parallel_for only). Eigen's GEMM
// would otherwise open its own OpenMP team for products as small as 32x64x128, which on a
// 2-core machine costs far more than it saves and oversubscribes the cores when weft already
// runs in parallel. So including weft sets Eigen::setNbThreads(1) (core/detail/eigen.hpp;
// define WEFT_KEEP_EIGEN_THREADS to leave Eigen's setting alone), and large products (>= 4M
// multiply-adds) are split by weft into blocks of rows or columns of C run through
// parallel_for. The block layout depends on the shape alone, never on the thread count: Eigen
// computes an element of C differently depending on where its block starts (the remainder
// rows of its micro kernel take another code path), so blocks that followed the thread count
// changed the last bits of ~5% of a 128x256x128 product between 1 and 2 threads.
#pragma once

#include <algorithm>

#include "weft/core/parallel.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

namespace detail {

inline void own_eigen_threads() {
#if WEFT_USE_OPENMP && !defined(WEFT_KEEP_EIGEN_THREADS)
  static const bool once = (Eigen::setNbThreads(1), true);
  (void)once;
#endif
}

template <class T>
using StridedMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstStridedMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// C (m x n, leading dimension ldc) (+)= op(A) op(B) with explicit leading dimensions.
template <class T>
void gemm_strided(bool ta, bool tb, const T* A, index_t lda, const T* B, index_t ldb, T* C, index_t ldc,
                  index_t m, index_t n, index_t k, bool accumulate) {
  StridedMap<T> c(C, m, n, Eigen::OuterStride<>(ldc));
  if (k == 0) {
    if (!accumulate) c.setZero();
    return;
  }
  ConstStridedMap<T> a(A, ta ? k : m, ta ? m : k, Eigen::OuterStride<>(lda));
  ConstStridedMap<T> b(B, tb ? n : k, tb ? k : n, Eigen::OuterStride<>(ldb));
  auto run = [&](const auto& ea, const auto& eb) {
    if (accumulate) c.noalias() += ea * eb;
    else c.noalias() = ea * eb;
  };
  if (!ta && !tb) run(a, b);
  else if (!ta && tb) run(a, b.transpose());
  else if (ta && !tb) run(a.transpose(), b);
  else run(a.transpose(), b.transpose());
}

}  // namespace detail

/// Products with at least this many multiply-adds are split into blocks that threads share.
inline constexpr double gemm_parallel_work = 4.0 * 1024 * 1024;

namespace detail {

/// Width of the blocks that the longer side (`side` long) of a product with `work`
/// multiply-adds is split into: `side` itself (no split) below gemm_parallel_work, else about
/// one block per 1M multiply-adds, at least 256 wide (narrower blocks made a one-thread
/// 64x768x768 product up to 3x slower), rounded up to a multiple of 16. A function of the shape
/// alone, so every element of C comes from the same Eigen call at any thread count.
inline index_t gemm_block_width(index_t side, double work) {
  if (work < gemm_parallel_work) return side;
  const index_t blocks = std::min<index_t>(side / 256, index_t(work / (1024.0 * 1024.0)));
  if (blocks <= 1) return side;
  return ((side + blocks - 1) / blocks + 15) / 16 * 16;
}

/// Calls body(lo, hi) for the consecutive blocks of [0, side) of width gemm_block_width(side,
/// work); the blocks are distributed over the threads by parallel_for.
template <class F>
void for_gemm_blocks(index_t side, double work, F&& body) {
  const index_t bs = gemm_block_width(side, work);
  if (bs >= side) {
    body(index_t(0), side);
    return;
  }
  parallel_for(0, (side + bs - 1) / bs, 1, [&](index_t lo, index_t hi) {
    for (index_t blk = lo; blk < hi; ++blk) body(blk * bs, std::min(side, (blk + 1) * bs));
  });
}

}  // namespace detail

/// C (m x n) = or += op(A) op(B). A is (m x k) or, with ta, (k x m); B is (k x n) or, with tb,
/// (n x k). All buffers row-major and dense.
template <class T>
void gemm(bool ta, bool tb, const T* A, const T* B, T* C, index_t m, index_t n, index_t k, bool accumulate) {
  detail::own_eigen_threads();
  const index_t lda = ta ? m : k, ldb = tb ? k : n;
  const double work = double(m) * double(n) * double(k);
  if (m >= n)  // blocks of rows s.. of C and of op(A)
    detail::for_gemm_blocks(m, work, [&](index_t s, index_t e) {
      detail::gemm_strided(ta, tb, ta ? A + s : A + s * k, lda, B, ldb, C + s * n, n, e - s, n, k, accumulate);
    });
  else  // blocks of columns s.. of C and of op(B)
    detail::for_gemm_blocks(n, work, [&](index_t s, index_t e) {
      detail::gemm_strided(ta, tb, A, lda, tb ? B + s * k : B + s, ldb, C + s, n, m, e - s, k, accumulate);
    });
}

/// For each batch index i: C_i (+)= op(A_i) op(B_i), where X_i = X + i * stride_x (a stride of
/// 0 reuses one matrix for every batch element).
template <class T>
void batched_gemm(index_t batch, bool ta, bool tb, const T* A, index_t stride_a, const T* B, index_t stride_b,
                  T* C, index_t m, index_t n, index_t k, bool accumulate) {
  for (index_t i = 0; i < batch; ++i)
    gemm(ta, tb, A + i * stride_a, B + i * stride_b, C + i * m * n, m, n, k, accumulate);
}

/// Reference triple loop, C (+)= op(A) op(B): the baseline for tests and benchmarks.
template <class T>
void gemm_naive(bool ta, bool tb, const T* A, const T* B, T* C, index_t m, index_t n, index_t k, bool accumulate) {
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      T s = accumulate ? C[i * n + j] : T(0);
      for (index_t l = 0; l < k; ++l) s += (ta ? A[l * m + i] : A[i * k + l]) * (tb ? B[j * k + l] : B[l * n + j]);
      C[i * n + j] = s;
    }
}

}  // namespace ops
WEFT_NAMESPACE_END
