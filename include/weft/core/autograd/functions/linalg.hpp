// weft/core/autograd/functions/linalg.hpp - differentiable matrix products and linear().
//
//   matmul(a, b)     a b       (m, k) x (k, n)
//   matmul_nt(a, b)  a b^T     (m, k) x (n, k)
//   matmul_tn(a, b)  a^T b     (k, m) x (k, n)
// Each also takes batches over a leading axis: (B, m, k) x (B, k, n), or a rank-3 a with a
// rank-2 b shared by every batch element (its gradient sums over the batch).
//   linear(x, W, b)  x W^T + b with W of shape (out, in) (PyTorch's layout), x of shape
//                    (..., in): the leading axes are flattened into rows. No copies.
#pragma once

#include "weft/core/autograd/tape.hpp"
#include "weft/core/ops/matmul.hpp"

WEFT_NAMESPACE_BEGIN

namespace detail {

template <class T>
Var<T> matmul_impl(const char* func, const Var<T>& a, const Var<T>& b, bool ta, bool tb) {
  Tape<T>& t = a.tape();
  const Shape &sa = a.shape(), &sb = b.shape();
  WEFT_CHECK((sa.rank() == 2 && sb.rank() == 2) || (sa.rank() == 3 && (sb.rank() == 2 || sb.rank() == 3)),
             shape, func, "expected ranks (2, 2), (3, 2) or (3, 3), got shapes ", sa, " and ", sb);
  const index_t batch = sa.rank() == 3 ? sa[0] : 1;
  WEFT_CHECK(sb.rank() == 2 || sb[0] == batch, shape, func, "expected equal batch extents, got shapes ",
             sa, " and ", sb);
  const index_t m = ta ? sa[-1] : sa[-2], ka = ta ? sa[-2] : sa[-1];
  const index_t kb = tb ? sb[-1] : sb[-2], n = tb ? sb[-2] : sb[-1];
  WEFT_CHECK(ka == kb, shape, func, "expected matching inner extents (", ta ? "a.shape[-2]" : "a.shape[-1]",
             " == ", tb ? "b.shape[-1]" : "b.shape[-2]", "), got shapes ", sa, " and ", sb);
  const index_t k = ka;
  const index_t stride_a = m * k, stride_b = sb.rank() == 3 ? k * n : 0;
  Tensor<T> out = t.alloc_uninit(sa.rank() == 3 ? Shape{batch, m, n} : Shape{m, n});
  ops::batched_gemm(batch, ta, tb, a.value().data(), stride_a, b.value().data(), stride_b, out.data(), m,
                    n, k, false);
  return t.record(out, {a, b}, [=](Tape<T>& tp, const Tensor<T>& g) {
    const T *av = tp.value(a).data(), *bv = tp.value(b).data(), *gv = g.data();
    const index_t sg = m * n;
    if (Tensor<T>* ga = tp.grad_sink(a)) {
      for (index_t i = 0; i < batch; ++i) {
        T* d = ga->data() + i * stride_a;
        if (!ta) ops::gemm(false, !tb, gv + i * sg, bv + i * stride_b, d, m, k, n, true);
        else ops::gemm(tb, true, bv + i * stride_b, gv + i * sg, d, k, m, n, true);
      }
    }
    if (Tensor<T>* gb = tp.grad_sink(b)) {
      for (index_t i = 0; i < batch; ++i) {
        T* d = gb->data() + i * stride_b;
        if (!tb) ops::gemm(!ta, false, av + i * stride_a, gv + i * sg, d, k, n, m, true);
        else ops::gemm(true, ta, gv + i * sg, av + i * stride_a, d, n, k, m, true);
      }
    }
  });
}

}  // namespace detail

/// a b (rank 2, or batched over a leading axis).
template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b) { return detail::matmul_impl("matmul", a, b, false, false); }
/// a b^T (rank 2, or batched over a leading axis).
template <class T>
Var<T> matmul_nt(const Var<T>& a, const Var<T>& b) { return detail::matmul_impl("matmul_nt", a, b, false, true); }
/// a^T b (rank 2, or batched over a leading axis).
template <class T>
Var<T> matmul_tn(const Var<T>& a, const Var<T>& b) { return detail::matmul_impl("matmul_tn", a, b, true, false); }

namespace detail {
template <class T>
Var<T> linear_impl(const Var<T>& x, const Var<T>& w, const Var<T>* bias) {
  Tape<T>& t = x.tape();
  const Shape &sx = x.shape(), &sw = w.shape();
  WEFT_CHECK(sw.rank() == 2, shape, "linear", "expected a weight of shape (out, in), got ", sw);
  WEFT_CHECK(sx.rank() >= 1 && sx[-1] == sw[1], shape, "linear", "expected x of shape (..., ", sw[1],
             ") for a weight of shape ", sw, ", got ", sx);
  if (bias)
    WEFT_CHECK(bias->shape() == Shape{sw[0]}, shape, "linear", "expected a bias of shape (", sw[0],
               "), got ", bias->shape());
  const index_t rows = sx.rank() == 1 ? 1 : sx.leading(), in = sw[1], outn = sw[0];
  Tensor<T> out = t.alloc_uninit(sx.with(-1, outn));
  const Var<T> bv = bias ? *bias : Var<T>();
  const bool has_bias = bias != nullptr;
  if (has_bias) {  // broadcast the bias row, then accumulate the product onto it
    const T* b = bv.value().data();
    for (index_t r = 0; r < rows; ++r) std::copy(b, b + outn, out.data() + r * outn);
  }
  ops::gemm(false, true, x.value().data(), w.value().data(), out.data(), rows, outn, in, has_bias);
  auto backward = [=](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gx = tp.grad_sink(x)) ops::gemm(false, false, g.data(), tp.value(w).data(), gx->data(), rows, in, outn, true);
    if (Tensor<T>* gw = tp.grad_sink(w)) ops::gemm(true, false, g.data(), tp.value(x).data(), gw->data(), outn, in, rows, true);
    if (has_bias)
      if (Tensor<T>* gb = tp.grad_sink(bv)) {  // column sums of g, row by row (contiguous)
        T* d = gb->data();
        for (index_t r = 0; r < rows; ++r) {
          const T* gr = g.data() + r * outn;
          for (index_t j = 0; j < outn; ++j) d[j] += gr[j];
        }
      }
  };
  if (has_bias) return t.record(out, {x, w, bv}, backward);
  return t.record(out, {x, w}, backward);
}
}  // namespace detail

/// x W^T + b, W of shape (out, in), b of shape (out), x of shape (..., in).
template <class T>
Var<T> linear(const Var<T>& x, const Var<T>& w, const Var<T>& b) { return detail::linear_impl(x, w, &b); }
/// x W^T, W of shape (out, in), x of shape (..., in).
template <class T>
Var<T> linear(const Var<T>& x, const Var<T>& w) { return detail::linear_impl<T>(x, w, nullptr); }

WEFT_NAMESPACE_END
