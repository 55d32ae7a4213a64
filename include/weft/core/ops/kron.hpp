// weft/core/ops/kron.hpp - Kronecker-sum kernels on raw row-major buffers (no autograd): the
// weight H = sum_i A_i (x) B_i of a PHM layer, its adjoint, and the small "mixing" contractions
// with the A_i that the factored products (kron_product.hpp) are built from.
//
// Layouts (n Kronecker terms, B_i of p x q, so H is k x d with k = n p, d = n q):
//   A  [n, n, n]   A[i][a][c] = (A_i)_{a c}
//   B  [n, p, q]   B[i][u][v] = (B_i)_{u v}
//   H  [k, d]      H[a p + u][c q + v] = sum_i A[i][a][c] B[i][u][v]   (the index rule of
//                  Compacter's reference code: H = sum_i kron(A_i, B_i))
//
//   kron_sum           H = sum_i A_i (x) B_i                          (n k d multiply-adds)
//   kron_sum_backward  dA[i][a][c] += <dH_(a,c), B_i>_F,  dB_i += sum_{a,c} A[i][a][c] dH_(a,c)
//                      with dH_(a,c) the p x q block of dH at rows a p.., columns c q..
//   kron_mix           out[s][x][i][:] (+)= sum_y coef_i(x, y) in[s][y][i][:]   over samples s,
//                      coef_i(x, y) = A[i][y][x] (A_i^T: transposed) or A[i][x][y] (A_i); an
//                      axis stride of 0 drops the term axis i (out: summed over i; in: shared)
//   kron_mix_grad      dA[i][x][y] += sum_s <left[s][x][i][:], right[s][y][i][:]>
// Each has a scalar body (the reference; WEFT_DONT_VECTORIZE selects it) and an xsimd body over
// the contiguous innermost run; the *_scalar variants always take the scalar one (tests compare
// the two). Work is split with parallel_for so that every output element is written by one
// thread in a fixed order: results are bit-identical for any thread count.
#pragma once

#include <algorithm>
#include <utility>

#include "weft/core/ops/matmul.hpp"
#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

/// Element strides of the (sample, row, term) axes of a buffer seen as [samples][n][terms][L]
/// with the innermost L elements contiguous. term == 0: the buffer has no term axis.
struct MixStrides {
  index_t sample = 0, row = 0, term = 0;
};

namespace kron_detail {

/// y[0..L) += a x[0..L).
template <bool Vec, class T>
inline void axpy(T a, const T* x, T* y, index_t L) {
  index_t i = 0;
#if WEFT_USE_XSIMD
  if constexpr (Vec) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    const index_t full = L - L % W;  // not `i + W <= L`: see simd::map
    const B va(a);
    for (; i < full; i += W) simd::store(y + i, simd::fma(va, simd::load(x + i), simd::load(y + i)));
  }
#endif
  for (; i < L; ++i) y[i] += a * x[i];
}

/// y[0..L) = a x[0..L).
template <bool Vec, class T>
inline void scale(T a, const T* x, T* y, index_t L) {
  index_t i = 0;
#if WEFT_USE_XSIMD
  if constexpr (Vec) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    const index_t full = L - L % W;
    const B va(a);
    for (; i < full; i += W) simd::store(y + i, va * simd::load(x + i));
  }
#endif
  for (; i < L; ++i) y[i] = a * x[i];
}

/// sum_l x[l] y[l] (per SIMD lane, then the lanes, then the scalar tail on the vector path).
template <bool Vec, class T>
inline T dot(const T* x, const T* y, index_t L) {
  T s(0);
  index_t i = 0;
#if WEFT_USE_XSIMD
  if constexpr (Vec) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    const index_t full = L - L % W;
    if (full > 0) {
      B acc(T(0));
      for (; i < full; i += W) acc = simd::fma(simd::load(x + i), simd::load(y + i), acc);
      s = simd::hadd(acc);
    }
  }
#endif
  for (; i < L; ++i) s += x[i] * y[i];
  return s;
}

/// A parallel_for grain giving each chunk about 64k multiply-adds when one index costs `work`.
inline index_t grain_for(double work) {
  const double g = 65536.0 / std::max(work, 1.0);
  return g < 1 ? 1 : index_t(g);
}

template <bool Vec, class T>
void kron_sum(const T* A, const T* B, T* H, index_t n, index_t p, index_t q) {
  const index_t k = n * p, d = n * q;
  parallel_for(0, k, grain_for(double(n) * double(d)), [&](index_t lo, index_t hi) {
    for (index_t row = lo; row < hi; ++row) {
      const index_t a = row / p, u = row % p;
      for (index_t c = 0; c < n; ++c) {
        T* h = H + row * d + c * q;
        scale<Vec>(A[a * n + c], B + u * q, h, q);
        for (index_t i = 1; i < n; ++i) axpy<Vec>(A[(i * n + a) * n + c], B + (i * p + u) * q, h, q);
      }
    }
  });
}

template <bool Vec, class T>
void kron_sum_backward(const T* dH, const T* A, const T* B, T* dA, T* dB, index_t n, index_t p, index_t q) {
  const index_t d = n * q;
  if (dA)  // one (a, c) block per index: dA[i][a][c] for every i
    parallel_for(0, n * n, grain_for(double(n) * double(p * q)), [&](index_t lo, index_t hi) {
      for (index_t ac = lo; ac < hi; ++ac) {
        const index_t a = ac / n, c = ac % n;
        for (index_t i = 0; i < n; ++i) {
          T acc(0);
          for (index_t u = 0; u < p; ++u) acc += dot<Vec>(dH + (a * p + u) * d + c * q, B + (i * p + u) * q, q);
          dA[(i * n + a) * n + c] += acc;
        }
      }
    });
  if (dB)  // one row (i, u) of dB per index
    parallel_for(0, n * p, grain_for(double(n * n) * double(q)), [&](index_t lo, index_t hi) {
      for (index_t iu = lo; iu < hi; ++iu) {
        const index_t i = iu / p, u = iu % p;
        for (index_t a = 0; a < n; ++a)
          for (index_t c = 0; c < n; ++c) axpy<Vec>(A[(i * n + a) * n + c], dH + (a * p + u) * d + c * q, dB + iu * q, q);
      }
    });
}

/// kron_mix for short rows (L below a SIMD width) when both buffers have a term axis: one
/// register accumulator per output element instead of calls over rows of L.
template <class T>
void kron_mix_short(index_t s, index_t n, index_t L, const T* A, bool transposed, const T* in, MixStrides is, T* out,
                    MixStrides os, bool accumulate) {
  const T* is0 = in + s * is.sample;
  T* os0 = out + s * os.sample;
  for (index_t i = 0; i < n; ++i) {
    const T* Ai = A + i * n * n;
    for (index_t x = 0; x < n; ++x)
      for (index_t l = 0; l < L; ++l) {
        T* o = os0 + x * os.row + i * os.term + l;
        T acc = accumulate ? *o : T(0);
        for (index_t y = 0; y < n; ++y) acc += (transposed ? Ai[y * n + x] : Ai[x * n + y]) * is0[y * is.row + i * is.term + l];
        *o = acc;
      }
  }
}

template <bool Vec, class T>
void kron_mix(index_t N, index_t n, index_t L, const T* A, bool transposed, const T* in, MixStrides is, T* out,
              MixStrides os, bool accumulate) {
  const index_t out_terms = os.term ? n : 1;
  const bool short_rows = L < 8 && is.term && os.term;
  parallel_for(0, N, grain_for(double(n * n * n) * double(L)), [&](index_t lo, index_t hi) {
    for (index_t s = lo; s < hi; ++s) {
      if (short_rows) {
        kron_mix_short(s, n, L, A, transposed, in, is, out, os, accumulate);
        continue;
      }
      if (!accumulate)
        for (index_t x = 0; x < n; ++x)
          for (index_t i = 0; i < out_terms; ++i) std::fill_n(out + s * os.sample + x * os.row + i * os.term, L, T(0));
      for (index_t i = 0; i < n; ++i) {
        const T* Ai = A + i * n * n;
        for (index_t x = 0; x < n; ++x) {
          T* o = out + s * os.sample + x * os.row + i * os.term;
          for (index_t y = 0; y < n; ++y)
            axpy<Vec>(transposed ? Ai[y * n + x] : Ai[x * n + y], in + s * is.sample + y * is.row + i * is.term, o, L);
        }
      }
    }
  });
}

template <bool Vec, class T>
void kron_mix_grad(index_t N, index_t n, index_t L, const T* left, MixStrides ls, const T* right, MixStrides rs,
                   T* dA) {
  // one (i, x) pair per index: dA[i][x][y] for every y, summed over samples in order
  parallel_for(0, n * n, grain_for(double(N) * double(n) * double(L)), [&](index_t lo, index_t hi) {
    for (index_t ix = lo; ix < hi; ++ix) {
      const index_t i = ix / n, x = ix % n;
      T* dst = dA + ix * n;
      for (index_t s = 0; s < N; ++s) {
        const T* l = left + s * ls.sample + x * ls.row + i * ls.term;
        for (index_t y = 0; y < n; ++y) dst[y] += dot<Vec>(l, right + s * rs.sample + y * rs.row + i * rs.term, L);
      }
    }
  });
}

/// Runs body(lo, hi) over blocks of `rows` rows of a product with `work` multiply-adds, with
/// ops::gemm's block layout (matmul.hpp): it depends on the shape alone, so the bits do not
/// depend on the thread count.
template <class F>
void for_row_blocks(index_t rows, double work, F&& body) {
  ops::detail::for_gemm_blocks(rows, work, std::forward<F>(body));
}

}  // namespace kron_detail

/// H (n p x n q) = sum_i A_i (x) B_i, with the index rule above.
template <class T>
void kron_sum(const T* A, const T* B, T* H, index_t n, index_t p, index_t q) {
  kron_detail::kron_sum<simd::active<T>>(A, B, H, n, p, q);
}
template <class T>
void kron_sum_scalar(const T* A, const T* B, T* H, index_t n, index_t p, index_t q) {
  kron_detail::kron_sum<false>(A, B, H, n, p, q);
}

/// Adjoint of kron_sum: dA += <dH_(a,c), B_i>, dB_i += sum_{a,c} A_i[a][c] dH_(a,c). dA or dB
/// may be nullptr (not wanted).
template <class T>
void kron_sum_backward(const T* dH, const T* A, const T* B, T* dA, T* dB, index_t n, index_t p, index_t q) {
  kron_detail::kron_sum_backward<simd::active<T>>(dH, A, B, dA, dB, n, p, q);
}
template <class T>
void kron_sum_backward_scalar(const T* dH, const T* A, const T* B, T* dA, T* dB, index_t n, index_t p, index_t q) {
  kron_detail::kron_sum_backward<false>(dH, A, B, dA, dB, n, p, q);
}

/// out[s][x][i][:L] (+)= sum_y coef_i(x, y) in[s][y][i][:L] for s < N, x, i < n, with coef_i(x, y)
/// = A[i][y][x] when `transposed`, else A[i][x][y]. os.term == 0 sums the terms into one row
/// per (s, x); is.term == 0 uses the same input row for every term. accumulate = false zeroes
/// out first. `in` and `out` must not overlap.
template <class T>
void kron_mix(index_t N, index_t n, index_t L, const T* A, bool transposed, const T* in, MixStrides is, T* out,
              MixStrides os, bool accumulate) {
  kron_detail::kron_mix<simd::active<T>>(N, n, L, A, transposed, in, is, out, os, accumulate);
}
template <class T>
void kron_mix_scalar(index_t N, index_t n, index_t L, const T* A, bool transposed, const T* in, MixStrides is,
                     T* out, MixStrides os, bool accumulate) {
  kron_detail::kron_mix<false>(N, n, L, A, transposed, in, is, out, os, accumulate);
}

/// dA[i][x][y] += sum_s <left[s][x][i][:L], right[s][y][i][:L]> (a stride of 0 drops an axis).
template <class T>
void kron_mix_grad(index_t N, index_t n, index_t L, const T* left, MixStrides ls, const T* right, MixStrides rs,
                   T* dA) {
  kron_detail::kron_mix_grad<simd::active<T>>(N, n, L, left, ls, right, rs, dA);
}
template <class T>
void kron_mix_grad_scalar(index_t N, index_t n, index_t L, const T* left, MixStrides ls, const T* right,
                          MixStrides rs, T* dA) {
  kron_detail::kron_mix_grad<false>(N, n, L, left, ls, right, rs, dA);
}

}  // namespace ops
WEFT_NAMESPACE_END
