// weft/peft/ops.hpp - the differentiable building blocks of the adapters (custom backwards).
//
//   chunk_sum(x, r)        (..., din) -> (..., r): S[n, j] = sum_k x[n, k r + j] (x zero-padded
//                          to a multiple of r). Backward: dx[n, j] += dS[n, j mod r].
//   tile(z, width)         (..., r) -> (..., width): out[n, j] = z[n, j mod r]. Backward:
//                          dz = chunk_sum(d out, r). (The adjoint of chunk_sum.)
//   dropout(x, p, rng)     x * mask / (1 - p) with mask ~ Bernoulli(1 - p) drawn from rng;
//                          p = 0 returns x itself (no op recorded).
//   block_affine(w, b)     w (dout, din), b (dout / r, r, r): the block-affine map of Bone /
//                          Bat, W'_{a,c} = W_{a,c} (I + B_a) + B_a for every r x r block (a, c).
//                          Forward: one batched GEMM over the output blocks (each block row of
//                          W, read as a (din, r) matrix of chunks, times B_a) plus a tile add.
//                          Backward ("weight guide"): dB_a = sum_c (W_{a,c} + I)^T G_{a,c}
//                          (a batched GEMM plus a chunk sum of G); dW = G + G_{a,c} B_a^T only
//                          when w needs a gradient (a frozen base gets none).
// All ops work on rank >= 1 inputs with the leading axes flattened into rows, and check their
// arguments (ShapeError / ValueError naming the op) before computing anything.
#pragma once

#include <cmath>
#include <type_traits>

#include "weft/core/autograd/tape.hpp"
#include "weft/core/ops/matmul.hpp"
#include "weft/core/rng.hpp"
#include "weft/peft/kernels.hpp"

WEFT_NAMESPACE_BEGIN
namespace peft {

namespace detail {
template <class T>
inline constexpr bool real_float_v = std::is_same_v<T, float> || std::is_same_v<T, double>;

inline index_t rows_of(const Shape& s) { return s.rank() == 1 ? 1 : s.leading(); }
}  // namespace detail

/// Chunk sums of the last axis with chunk length r: (..., din) -> (..., r).
template <class T>
Var<T> chunk_sum(const Var<T>& x, index_t r) {
  static_assert(detail::real_float_v<T>, "peft::chunk_sum is defined for float and double tensors");
  WEFT_CHECK(r >= 1, value, "peft::chunk_sum", "expected a chunk length r >= 1, got ", r);
  WEFT_CHECK(x.rank() >= 1, shape, "peft::chunk_sum", "expected an input of rank >= 1, got a scalar");
  Tape<T>& t = x.tape();
  const index_t rows = detail::rows_of(x.shape()), din = x.shape().last();
  Tensor<T> out = t.alloc_uninit(x.shape().with(-1, r));
  chunk_sum(x.value().data(), out.data(), rows, din, r, false);
  return t.record(out, {x}, [x, rows, din, r](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gx = tp.grad_sink(x)) tile_add(g.data(), gx->data(), rows, din, r, T(1));
  });
}

/// The last axis repeated to `width` entries (the last repetition truncated): (..., r) ->
/// (..., width), out[..., j] = z[..., j mod r].
template <class T>
Var<T> tile(const Var<T>& z, index_t width) {
  static_assert(detail::real_float_v<T>, "peft::tile is defined for float and double tensors");
  WEFT_CHECK(width >= 1, value, "peft::tile", "expected a width >= 1, got ", width);
  WEFT_CHECK(z.rank() >= 1 && z.shape().last() >= 1, shape, "peft::tile",
             "expected an input of rank >= 1 with a non-empty last axis, got shape ", z.shape());
  Tape<T>& t = z.tape();
  const index_t rows = detail::rows_of(z.shape()), r = z.shape().last();
  Tensor<T> out = t.alloc(z.shape().with(-1, width));
  tile_add(z.value().data(), out.data(), rows, width, r, T(1));
  return t.record(out, {z}, [z, rows, width, r](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gz = tp.grad_sink(z)) chunk_sum(g.data(), gz->data(), rows, width, r, true);
  });
}

/// Inverted dropout: each element is kept with probability 1 - p and scaled by 1 / (1 - p).
/// The mask is drawn from `rng` in row-major order. p = 0 returns x unchanged.
template <class T>
Var<T> dropout(const Var<T>& x, double p, Rng& rng) {
  static_assert(detail::real_float_v<T>, "peft::dropout is defined for float and double tensors");
  WEFT_CHECK(p >= 0 && p < 1, value, "peft::dropout", "expected a drop probability 0 <= p < 1, got ", p);
  if (p == 0) return x;
  Tape<T>& t = x.tape();
  const index_t n = x.numel();
  Tensor<T> mask = t.alloc_uninit(x.shape());
  const T keep = T(1.0 / (1.0 - p));
  for (index_t i = 0; i < n; ++i) mask.flat(i) = rng.uniform() < p ? T(0) : keep;
  Tensor<T> out = t.alloc_uninit(x.shape());
  mask_mul(x.value().data(), mask.data(), out.data(), n);
  return t.record(out, {x}, [x, mask, n](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gx = tp.grad_sink(x)) mask_mul_add(g.data(), mask.data(), gx->data(), n);
  });
}

namespace detail {
/// out (dout, din) = W (I + B_a) + B_a block-wise; out must not alias w.
template <class T>
void block_affine_forward(const T* w, const T* b, T* out, index_t dout, index_t din, index_t r) {
  std::copy(w, w + dout * din, out);
  // rows [a r, (a + 1) r) of W are contiguous: din chunks of length r, i.e. a (din, r) matrix
  ops::batched_gemm(dout / r, false, false, w, r * din, b, r * r, out, din, r, r, true);
  tile_add(b, out, dout, din, r, T(1));  // b read as (dout, r): row a r + i is B_a[i, :]
}
}  // namespace detail

/// The block-affine map W'_{a,c} = W_{a,c} (I + B_a) + B_a of BoneAffine (Bat), with w of shape
/// (dout, din) and b of shape (dout / r, r, r); r must divide dout and din.
template <class T>
Var<T> block_affine(const Var<T>& w, const Var<T>& b) {
  static_assert(detail::real_float_v<T>, "peft::block_affine is defined for float and double tensors");
  const char* fn = "peft::block_affine";
  WEFT_CHECK(w.rank() == 2, shape, fn, "expected a weight of shape (out, in), got ", w.shape());
  WEFT_CHECK(b.rank() == 3 && b.dim(1) == b.dim(2) && b.dim(1) >= 1, shape, fn,
             "expected blocks of shape (out / r, r, r), got ", b.shape());
  const index_t dout = w.dim(0), din = w.dim(1), r = b.dim(1);
  WEFT_CHECK(dout % r == 0 && din % r == 0 && b.dim(0) == dout / r, shape, fn, "expected a weight ", w.shape(),
             " fully divisible into [", r, ", ", r, "] blocks and ", dout / r, " blocks B_a, got blocks ", b.shape());
  Tape<T>& t = w.tape();
  Tensor<T> out = t.alloc_uninit(w.shape());
  detail::block_affine_forward(w.value().data(), b.value().data(), out.data(), dout, din, r);
  return t.record(out, {w, b}, [w, b, dout, din, r](Tape<T>& tp, const Tensor<T>& g) {
    const index_t nb = dout / r, blk = r * din;
    if (Tensor<T>* gb = tp.grad_sink(b)) {
      const T* wv = tp.value(w).data();
      for (index_t a = 0; a < nb; ++a)  // dB_a += W_a^T G_a over the (din, r) chunk matrices
        ops::gemm(true, false, wv + a * blk, g.data() + a * blk, gb->data() + a * r * r, r, r, din, true);
      chunk_sum(g.data(), gb->data(), dout, din, r, true);  // + sum_c G_{a,c}
    }
    if (Tensor<T>* gw = tp.grad_sink(w)) {
      gw->array() += g.array();
      const T* bv = tp.value(b).data();
      for (index_t a = 0; a < nb; ++a)  // dW_a += G_a B_a^T
        ops::gemm(false, true, g.data() + a * blk, bv + a * r * r, gw->data() + a * blk, din, r, r, true);
    }
  });
}

}  // namespace peft
WEFT_NAMESPACE_END
