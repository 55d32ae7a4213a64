// weft/core/autograd/functions/attention.hpp - causal (masked) scaled dot-product attention as
// one differentiable op.
//
// causal_attention(q, k, v, heads) with q, k, v of shape (B, N, H d) computes, for every sample
// b and head h (columns h d .. h d + d - 1 of the last axis):
//   S_ij = (Q_i . K_j) / sqrt(d)            for j <= i
//   P_ij = exp(S_ij) / sum_{j' <= i} exp(S_ij')   (0 for j > i: token i sees tokens 0..i)
//   O_i  = sum_j P_ij V_j
// and returns O in the layout of q: (B, N, H d). It equals attention_core (nn/attention.hpp)
// with -inf added above the diagonal, but no mask tensor is ever built and the heads are read
// in place (strided), without the reshape/transpose copies. The products run in row blocks of
// kCausalBlock tokens that only touch columns up to the block's last row, so the masked upper
// triangle costs about one block of work per row block instead of half the products.
//
// Backward (per sample and head, dO the incoming gradient):
//   dV = P^T dO,   dP = dO V^T,   dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij'),
//   dQ = dS K / sqrt(d),   dK = dS^T Q / sqrt(d).
// The probabilities P (B H N N floats) are kept on the tape for the backward pass.
//
// Range: finite q, k, v (an infinite score makes its row NaN).
//
// Threads: (sample, head) pairs run through parallel_for; each pair writes only its own
// columns of the outputs and gradients, so results are the same at any thread count.
#pragma once

#include <algorithm>
#include <cmath>

#include "weft/core/autograd/tape.hpp"
#include "weft/core/ops/elementwise.hpp"
#include "weft/core/ops/matmul.hpp"
#include "weft/core/parallel.hpp"

WEFT_NAMESPACE_BEGIN

namespace detail {

/// Rows per block of the causal products.
inline constexpr index_t kCausalBlock = 32;

/// Forward of one (sample, head): P (n x n, row-major, zero above the diagonal) and O (strided).
template <class T>
void causal_attention_forward_one(const T* q, const T* k, const T* v, T* o, T* p, index_t n, index_t d,
                                  index_t ld, real_t<T> scale) {
  for (index_t r0 = 0; r0 < n; r0 += kCausalBlock) {
    const index_t r1 = std::min(n, r0 + kCausalBlock);
    // S[r0:r1, 0:r1] = Q[r0:r1] K[0:r1]^T
    ops::detail::gemm_strided(false, true, q + r0 * ld, ld, k, ld, p + r0 * n, n, r1 - r0, r1, d, false);
    for (index_t i = r0; i < r1; ++i) {
      T* row = p + i * n;
      T mx = row[0];
      for (index_t j = 1; j <= i; ++j) mx = std::max(mx, row[j]);
      mx *= scale;  // scale > 0: the maximum of the scaled row
      for (index_t j = 0; j <= i; ++j) row[j] = row[j] * scale - mx;
      ops::unary_forward<ops::exp_op>(row, row, i + 1);  // the SIMD exp (serial inside parallel_for)
      T z(0);
      for (index_t j = 0; j <= i; ++j) z += row[j];
      const T inv = T(1) / z;
      for (index_t j = 0; j <= i; ++j) row[j] *= inv;
      for (index_t j = i + 1; j < n; ++j) row[j] = T(0);
    }
    // O[r0:r1] = P[r0:r1, 0:r1] V[0:r1]
    ops::detail::gemm_strided(false, false, p + r0 * n, n, v, ld, o + r0 * ld, ld, r1 - r0, d, r1, false);
  }
}

/// Backward of one (sample, head). ds is n x n scratch; gq, gk, gv may be null (accumulated).
template <class T>
void causal_attention_backward_one(const T* q, const T* k, const T* v, const T* p, const T* go, T* ds, T* gq,
                                   T* gk, T* gv, index_t n, index_t d, index_t ld, real_t<T> scale) {
  for (index_t r0 = 0; r0 < n; r0 += kCausalBlock) {
    const index_t r1 = std::min(n, r0 + kCausalBlock), m = r1 - r0;
    // dV[0:r1] += P[r0:r1, 0:r1]^T dO[r0:r1]
    if (gv) ops::detail::gemm_strided(true, false, p + r0 * n, n, go + r0 * ld, ld, gv, ld, r1, d, m, true);
    if (!gq && !gk) continue;
    // dP[r0:r1, 0:r1] = dO[r0:r1] V[0:r1]^T, then dS in place (scaled by 1/sqrt(d))
    ops::detail::gemm_strided(false, true, go + r0 * ld, ld, v, ld, ds + r0 * n, n, m, r1, d, false);
    for (index_t i = r0; i < r1; ++i) {
      const T* pr = p + i * n;
      T* dr = ds + i * n;
      T dot(0);
      for (index_t j = 0; j <= i; ++j) dot += pr[j] * dr[j];
      for (index_t j = 0; j <= i; ++j) dr[j] = pr[j] * (dr[j] - dot) * scale;
      for (index_t j = i + 1; j < r1; ++j) dr[j] = T(0);
    }
    // dQ[r0:r1] += dS[r0:r1, 0:r1] K[0:r1];  dK[0:r1] += dS[r0:r1, 0:r1]^T Q[r0:r1]
    if (gq) ops::detail::gemm_strided(false, false, ds + r0 * n, n, k, ld, gq + r0 * ld, ld, m, d, r1, true);
    if (gk) ops::detail::gemm_strided(true, false, ds + r0 * n, n, q + r0 * ld, ld, gk, ld, r1, d, m, true);
  }
}

}  // namespace detail

/// Causal multi-head attention: q, k, v of shape (B, N, heads * d) -> (B, N, heads * d), token i
/// attending to tokens 0..i of its own sample (see the file comment). Real T only.
template <class T>
Var<T> causal_attention(const Var<T>& q, const Var<T>& k, const Var<T>& v, index_t heads) {
  static_assert(!is_complex_v<T>, "weft::causal_attention: expected a real scalar type (float or double)");
  WEFT_CHECK(q.rank() == 3 && k.shape() == q.shape() && v.shape() == q.shape(), shape, "causal_attention",
             "expected q, k, v of one shape (B, N, D), got ", q.shape(), ", ", k.shape(), ", ", v.shape());
  const index_t B = q.dim(0), N = q.dim(1), D = q.dim(2);
  WEFT_CHECK(B > 0 && N > 0 && heads > 0 && D % heads == 0 && D > 0, shape, "causal_attention",
             "expected non-empty inputs with D divisible by heads, got shape ", q.shape(), ", heads = ", heads);
  Tape<T>& t = q.tape();
  const index_t d = D / heads, pairs = B * heads;
  const real_t<T> scale = real_t<T>(1) / std::sqrt(real_t<T>(d));
  Tensor<T> out = t.alloc_uninit(q.shape());
  Tensor<T> prob = t.alloc_uninit(Shape{pairs, N, N});
  ops::detail::own_eigen_threads();
  {
    const T *qv = q.value().data(), *kv = k.value().data(), *vv = v.value().data();
    T *ov = out.data(), *pv = prob.data();
    parallel_for(0, pairs, 1, [&](index_t lo, index_t hi) {
      for (index_t bh = lo; bh < hi; ++bh) {
        const index_t off = (bh / heads) * N * D + (bh % heads) * d;
        detail::causal_attention_forward_one(qv + off, kv + off, vv + off, ov + off, pv + bh * N * N, N, d, D, scale);
      }
    });
  }
  return t.record(out, {q, k, v}, [=](Tape<T>& tp, const Tensor<T>& g) {
    Tensor<T>* gq = tp.grad_sink(q);
    Tensor<T>* gk = tp.grad_sink(k);
    Tensor<T>* gv = tp.grad_sink(v);
    Tensor<T> ds = tp.alloc_uninit(Shape{pairs, N, N});
    const T *qv = tp.value(q).data(), *kv = tp.value(k).data(), *vv = tp.value(v).data();
    const T *pv = prob.data(), *gov = g.data();
    T* dsv = ds.data();
    parallel_for(0, pairs, 1, [&](index_t lo, index_t hi) {
      for (index_t bh = lo; bh < hi; ++bh) {
        const index_t off = (bh / heads) * N * D + (bh % heads) * d;
        detail::causal_attention_backward_one(qv + off, kv + off, vv + off, pv + bh * N * N, gov + off,
                                              dsv + bh * N * N, gq ? gq->data() + off : nullptr,
                                              gk ? gk->data() + off : nullptr, gv ? gv->data() + off : nullptr, N, d,
                                              D, scale);
      }
    });
  });
}

WEFT_NAMESPACE_END
