// weft/phm/functional.hpp - the PHM products as differentiable ops on a Tape.
//
// A PHM ("parameterised hypercomplex multiplication", Zhang et al., ICLR 2021) layer maps
// x in R^k to y = x H + b in R^d with H = sum_{i<n} A_i (x) B_i (k = n p, d = n q). Compacter
// (Karimi Mahabadi et al., NeurIPS 2021) makes B_i = s_i t_i low-rank ("LPHM") and shares the
// A_i between all layers. Shapes (the reference code's layouts, row vectors, H stored in x out):
//   x [..., n p]   A [n, n, n]   B [n, p, q]   s [n, p, r]   t [n, r, q]   b [n q]
//   H[a p + u][c q + v] = sum_i A[i][a][c] B[i][u][v]
//
//   kron_sum(A, B)                 H itself (differentiable; the dense fallback and tests)
//   phm_product(x, A, B[, b])      x H + b without forming H (core/ops/kron_product.hpp)
//   lphm_product(x, A, s, t[, b])  the same with B_i = s_i t_i, O(N n r (k + n^2 + d))
//   phm_product_dense / lphm_product_dense   materialise H, then x H + b (weft's matmul)
// Every op checks its shapes first and raises ShapeError naming itself. Gradients reach every
// input that needs one (x, A, B or s and t, b); an A used by several products gets the sum of
// their contributions, as any tape value does.
#pragma once

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/core/autograd/tape.hpp"
#include "weft/core/ops/kron_product.hpp"

WEFT_NAMESPACE_BEGIN
namespace phm {

namespace detail {

/// Checks A [n, n, n] and returns n.
inline index_t check_rule_shape(const char* fn, const Shape& A) {
  WEFT_CHECK(A.rank() == 3 && A[0] >= 1 && A[1] == A[0] && A[2] == A[0], shape, fn,
             "expected a rule A of shape (n, n, n) with n >= 1, got ", A);
  return A[0];
}

/// Checks the shapes of a product and returns its extents. `t` is nullptr for full B (then
/// `B` is B [n, p, q]), else `B` is s [n, p, r] and `t` is t [n, r, q].
inline ops::KronDims product_dims(const char* fn, const Shape& x, const Shape& A, const Shape& B, const Shape* t,
                                  const Shape* b) {
  ops::KronDims m;
  m.n = check_rule_shape(fn, A);
  if (!t) {
    WEFT_CHECK(B.rank() == 3 && B[0] == m.n && B[1] >= 1 && B[2] >= 1, shape, fn, "expected B of shape (", m.n,
               ", p, q) with p, q >= 1 for a rule with n = ", m.n, ", got ", B);
    m.p = B[1];
    m.q = B[2];
  } else {
    WEFT_CHECK(B.rank() == 3 && B[0] == m.n && B[1] >= 1 && B[2] >= 1, shape, fn, "expected s of shape (", m.n,
               ", p, r) with p, r >= 1 for a rule with n = ", m.n, ", got ", B);
    WEFT_CHECK(t->rank() == 3 && (*t)[0] == m.n && (*t)[1] == B[2] && (*t)[2] >= 1, shape, fn, "expected t of shape (",
               m.n, ", ", B[2], ", q) with q >= 1 to match s of shape ", B, ", got ", *t);
    m.p = B[1];
    m.r = B[2];
    m.q = (*t)[2];
  }
  WEFT_CHECK(x.rank() >= 1 && x.last() == m.k(), shape, fn, "expected x of shape (..., ", m.k(), ") (n p = ", m.n,
             " x ", m.p, "), got ", x);
  if (b)
    WEFT_CHECK(*b == Shape{m.d()}, shape, fn, "expected a bias of shape (", m.d(), "), got ", *b);
  m.rows = x.rank() == 1 ? 1 : x.leading();
  return m;
}

template <class T>
const T* data_or_null(const Var<T>* v) {
  return v ? v->value().data() : nullptr;
}
template <class T>
T* sink_data(Tensor<T>* g) {
  return g ? g->data() : nullptr;
}

template <class T>
Var<T> phm_product_impl(const Var<T>& x, const Var<T>& A, const Var<T>& B, const Var<T>* b) {
  Tape<T>& tp = x.tape();
  const ops::KronDims m =
      product_dims("phm::phm_product", x.shape(), A.shape(), B.shape(), nullptr, b ? &b->shape() : nullptr);
  Tensor<T> y = tp.alloc_uninit(x.shape().with(-1, m.d()));
  Tensor<T> Z = tp.alloc_uninit(Shape{ops::phm_workspace(m)});
  ops::phm_forward(m, x.value().data(), A.value().data(), B.value().data(), data_or_null(b), y.data(), Z.data());
  const Var<T> bv = b ? *b : Var<T>();
  auto backward = [=](Tape<T>& t, const Tensor<T>& g) {
    Tensor<T>* gx = t.grad_sink(x);
    Tensor<T>* gA = t.grad_sink(A);
    Tensor<T>* gB = t.grad_sink(B);
    Tensor<T>* gb = bv.defined() ? t.grad_sink(bv) : nullptr;
    Tensor<T> W = (gx || gB) ? t.alloc_uninit(Shape{ops::phm_workspace(m)}) : Tensor<T>();
    ops::phm_backward(m, g.data(), t.value(x).data(), t.value(A).data(), t.value(B).data(), Z.data(), W.data(),
                      sink_data(gx), sink_data(gA), sink_data(gB), sink_data(gb));
  };
  return b ? tp.record(y, {x, A, B, bv}, backward) : tp.record(y, {x, A, B}, backward);
}

template <class T>
Var<T> lphm_product_impl(const Var<T>& x, const Var<T>& A, const Var<T>& s, const Var<T>& t, const Var<T>* b) {
  Tape<T>& tp = x.tape();
  const ops::KronDims m =
      product_dims("phm::lphm_product", x.shape(), A.shape(), s.shape(), &t.shape(), b ? &b->shape() : nullptr);
  Tensor<T> y = tp.alloc_uninit(x.shape().with(-1, m.d()));
  Tensor<T> S = tp.alloc_uninit(Shape{ops::lphm_factor_workspace(m)});
  Tensor<T> U = tp.alloc_uninit(Shape{ops::lphm_workspace(m)});
  Tensor<T> V = tp.alloc_uninit(Shape{ops::lphm_workspace(m)});
  ops::lphm_forward(m, x.value().data(), A.value().data(), s.value().data(), t.value().data(), data_or_null(b),
                    y.data(), S.data(), U.data(), V.data());
  const Var<T> bv = b ? *b : Var<T>();
  auto backward = [=](Tape<T>& tap, const Tensor<T>& g) {
    Tensor<T>* gx = tap.grad_sink(x);
    Tensor<T>* gA = tap.grad_sink(A);
    Tensor<T>* gs = tap.grad_sink(s);
    Tensor<T>* gt = tap.grad_sink(t);
    Tensor<T>* gb = bv.defined() ? tap.grad_sink(bv) : nullptr;
    const Shape ws{ops::lphm_workspace(m)};
    Tensor<T> P = tap.alloc_uninit(ws);
    Tensor<T> Q = (gx || gs) ? tap.alloc_uninit(ws) : Tensor<T>();
    Tensor<T> dS = gs ? tap.alloc_uninit(Shape{ops::lphm_factor_workspace(m)}) : Tensor<T>();
    ops::lphm_backward(m, g.data(), tap.value(x).data(), tap.value(A).data(), S.data(), tap.value(t).data(), U.data(),
                       V.data(), P.data(), Q.data(), dS.data(), sink_data(gx), sink_data(gA), sink_data(gs),
                       sink_data(gt), sink_data(gb));
  };
  return b ? tp.record(y, {x, A, s, t, bv}, backward) : tp.record(y, {x, A, s, t}, backward);
}

/// x H + b through weft's matmul, x of any rank >= 1.
template <class T>
Var<T> dense_apply(const Var<T>& x, const Var<T>& H, const Var<T>* b, index_t rows) {
  const Shape out = x.shape().with(-1, H.shape()[1]);
  Var<T> y = matmul(reshape(x, Shape{rows, x.shape().last()}), H);
  if (b) y = y + *b;
  return reshape(y, out);
}

}  // namespace detail

/// H = sum_i A_i (x) B_i as a differentiable op: A [n, n, n], B [n, p, q] -> H [n p, n q].
template <class T>
Var<T> kron_sum(const Var<T>& A, const Var<T>& B) {
  Tape<T>& tp = A.tape();
  const index_t n = detail::check_rule_shape("phm::kron_sum", A.shape());
  const Shape& sb = B.shape();
  WEFT_CHECK(sb.rank() == 3 && sb[0] == n && sb[1] >= 1 && sb[2] >= 1, shape, "phm::kron_sum", "expected B of shape (",
             n, ", p, q) with p, q >= 1 for a rule with n = ", n, ", got ", sb);
  const index_t p = sb[1], q = sb[2];
  Tensor<T> H = tp.alloc_uninit(Shape{n * p, n * q});
  ops::kron_sum(A.value().data(), B.value().data(), H.data(), n, p, q);
  return tp.record(H, {A, B}, [=](Tape<T>& t, const Tensor<T>& g) {
    Tensor<T>* gA = t.grad_sink(A);
    Tensor<T>* gB = t.grad_sink(B);
    ops::kron_sum_backward(g.data(), t.value(A).data(), t.value(B).data(), detail::sink_data(gA),
                           detail::sink_data(gB), n, p, q);
  });
}

/// y = x H + b with H = sum_i A_i (x) B_i, never formed (cost of a dense layer, no k x d buffer).
template <class T>
Var<T> phm_product(const Var<T>& x, const Var<T>& A, const Var<T>& B, const Var<T>& b) {
  return detail::phm_product_impl(x, A, B, &b);
}
template <class T>
Var<T> phm_product(const Var<T>& x, const Var<T>& A, const Var<T>& B) {
  return detail::phm_product_impl<T>(x, A, B, nullptr);
}

/// y = x H + b with H = sum_i A_i (x) (s_i t_i), never formed.
template <class T>
Var<T> lphm_product(const Var<T>& x, const Var<T>& A, const Var<T>& s, const Var<T>& t, const Var<T>& b) {
  return detail::lphm_product_impl(x, A, s, t, &b);
}
template <class T>
Var<T> lphm_product(const Var<T>& x, const Var<T>& A, const Var<T>& s, const Var<T>& t) {
  return detail::lphm_product_impl<T>(x, A, s, t, nullptr);
}

/// The materialised path: H = kron_sum(A, B), then x H (+ b).
template <class T>
Var<T> phm_product_dense(const Var<T>& x, const Var<T>& A, const Var<T>& B, const Var<T>* b = nullptr) {
  const ops::KronDims m =
      detail::product_dims("phm::phm_product_dense", x.shape(), A.shape(), B.shape(), nullptr, b ? &b->shape() : nullptr);
  return detail::dense_apply(x, kron_sum(A, B), b, m.rows);
}
/// The materialised path with B_i = s_i t_i (a batched matmul), then kron_sum and x H (+ b).
template <class T>
Var<T> lphm_product_dense(const Var<T>& x, const Var<T>& A, const Var<T>& s, const Var<T>& t,
                          const Var<T>* b = nullptr) {
  const ops::KronDims m = detail::product_dims("phm::lphm_product_dense", x.shape(), A.shape(), s.shape(), &t.shape(),
                                               b ? &b->shape() : nullptr);
  return detail::dense_apply(x, kron_sum(A, matmul(s, t)), b, m.rows);
}

}  // namespace phm
WEFT_NAMESPACE_END
