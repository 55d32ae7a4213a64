// weft/peft/kernels.hpp - the shared-shard kernels of Bone/MiSS on raw row-major arrays (no
// autograd), and the dropout mask product.
//
//   chunk_sum(x, s, rows, din, r)    s[n, j] (+)= sum_k x[n, k r + j]  over k r + j < din
//                                    (x zero-padded to a multiple of r: the last chunk may be
//                                    short); s is (rows, r)
//   tile_add(s, x, rows, din, r, c)  x[n, j] += c s[n, j mod r]  for j < din
// They are each other's adjoint. BoneShared's forward is a chunk sum of the input, its input
// gradient a tile add; its merge is a tile add of M^T into W; MissMini tiles S M0 across the
// output; BoneAffine's gradient of the additive term is a chunk sum of dL/dW'.
//   mask_mul(x, m, out, n)           out = x * m       (dropout with a precomputed mask)
//   mask_mul_add(g, m, gx, n)        gx += g * m
//
// Each kernel has a scalar body (the reference, and the path of WEFT_DONT_VECTORIZE) and an
// xsimd body; the drivers dispatch on simd::active<T> and split rows with parallel_for. Rows are
// independent, so results do not depend on the thread count. The vector chunk sum vectorises
// over j when r >= the SIMD width and then adds in the scalar body's order (bit-identical);
// for r < width with width % r == 0 it folds whole vectors and sums the lanes afterwards
// (another summation order: equal to rounding). tile_add is bit-identical to its scalar body.
#pragma once

#include <algorithm>
#include <vector>

#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace peft {

namespace detail {
/// Rows per parallel chunk so that a chunk touches about WEFT_PARALLEL_GRAIN elements.
inline index_t row_grain(index_t row_len) {
  return std::max<index_t>(1, index_t(WEFT_PARALLEL_GRAIN) / std::max<index_t>(row_len, 1));
}
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// scalar bodies

/// One row of chunk_sum: s[j] (+)= sum of the chunks of x (length din) at offset j.
template <class T>
void chunk_sum_row_scalar(const T* x, T* s, index_t din, index_t r, bool accumulate) {
  const index_t full = din / r, tail = din % r;
  for (index_t j = 0; j < r; ++j) {
    T acc(0);
    for (index_t k = 0; k < full; ++k) acc += x[k * r + j];
    if (j < tail) acc += x[full * r + j];
    s[j] = accumulate ? s[j] + acc : acc;
  }
}

template <class T>
void chunk_sum_scalar(const T* x, T* s, index_t rows, index_t din, index_t r, bool accumulate) {
  for (index_t n = 0; n < rows; ++n) chunk_sum_row_scalar(x + n * din, s + n * r, din, r, accumulate);
}

/// One row of tile_add with the (already scaled) row s: x[j] += s[j mod r] for j < din.
template <class T>
void tile_add_row_scalar(const T* s, T* x, index_t din, index_t r) {
  for (index_t j = 0; j < din; ++j) x[j] += s[j % r];
}

namespace detail {
/// The rows of tile_add: each row of s is scaled by c into a buffer first (c != 1), so both
/// bodies add the same rounded c s[k] (no fused multiply-add in one and not the other).
template <class T, class Row>
void tile_add_rows(const T* s, T* x, index_t rows, index_t din, index_t r, T c, Row row) {
  std::vector<T> buf(c == T(1) ? 0 : std::size_t(r));
  for (index_t n = 0; n < rows; ++n) {
    const T* sr = s + n * r;
    if (c != T(1)) {
      for (index_t k = 0; k < r; ++k) buf[std::size_t(k)] = c * sr[k];
      sr = buf.data();
    }
    row(sr, x + n * din, din, r);
  }
}
}  // namespace detail

template <class T>
void tile_add_scalar(const T* s, T* x, index_t rows, index_t din, index_t r, T c) {
  detail::tile_add_rows(s, x, rows, din, r, c, tile_add_row_scalar<T>);
}

template <class T>
void mask_mul_scalar(const T* x, const T* m, T* out, index_t n) {
  for (index_t i = 0; i < n; ++i) out[i] = x[i] * m[i];
}
template <class T>
void mask_mul_add_scalar(const T* g, const T* m, T* gx, index_t n) {
  for (index_t i = 0; i < n; ++i) gx[i] += g[i] * m[i];
}

// ---------------------------------------------------------------------------------------------
// vector bodies

#if WEFT_USE_XSIMD
template <class T>
void chunk_sum_row_simd(const T* x, T* s, index_t din, index_t r, bool accumulate) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  const index_t full = din / r, tail = din % r;
  alignas(64) T buf[W];
  if (r >= W) {  // lanes over j: the scalar body's order, element for element
    const index_t jfull = r - r % W;
    for (index_t j0 = 0; j0 < jfull; j0 += W) {
      B acc(T(0));
      for (index_t k = 0; k < full; ++k) acc += simd::load(x + k * r + j0);
      acc.store_aligned(buf);
      for (index_t l = 0; l < W; ++l) {
        const index_t j = j0 + l;
        T v = buf[l];
        if (j < tail) v += x[full * r + j];
        s[j] = accumulate ? s[j] + v : v;
      }
    }
    for (index_t j = jfull; j < r; ++j) {  // the last r % W offsets
      T acc(0);
      for (index_t k = 0; k < full; ++k) acc += x[k * r + j];
      if (j < tail) acc += x[full * r + j];
      s[j] = accumulate ? s[j] + acc : acc;
    }
    return;
  }
  if (W % r != 0) {
    chunk_sum_row_scalar(x, s, din, r, accumulate);
    return;
  }
  // r divides the width: each vector holds W / r whole chunks; lanes l and l + r share offset j
  const index_t covered = full * r, vec_end = covered - covered % W;
  B acc(T(0));
  for (index_t i = 0; i < vec_end; i += W) acc += simd::load(x + i);
  acc.store_aligned(buf);
  for (index_t j = 0; j < r; ++j) {
    T v(0);
    for (index_t l = j; l < W; l += r) v += buf[l];
    for (index_t i = vec_end + j; i < covered; i += r) v += x[i];
    if (j < tail) v += x[covered + j];
    s[j] = accumulate ? s[j] + v : v;
  }
}

template <class T>
void chunk_sum_simd(const T* x, T* s, index_t rows, index_t din, index_t r, bool accumulate) {
  for (index_t n = 0; n < rows; ++n) chunk_sum_row_simd(x + n * din, s + n * r, din, r, accumulate);
}

template <class T>
void tile_add_row_simd(const T* s, T* x, index_t din, index_t r) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  if (r >= W) {
    const index_t full = din / r, jfull = r - r % W;
    for (index_t k = 0; k < full; ++k) {
      T* xk = x + k * r;
      for (index_t j0 = 0; j0 < jfull; j0 += W) simd::store(xk + j0, simd::load(xk + j0) + simd::load(s + j0));
      for (index_t j = jfull; j < r; ++j) xk[j] += s[j];
    }
    for (index_t j = full * r; j < din; ++j) x[j] += s[j - full * r];
    return;
  }
  if (W % r != 0) {
    tile_add_row_scalar(s, x, din, r);
    return;
  }
  alignas(64) T buf[W];  // s tiled W / r times: every vector of x starts at a multiple of r
  for (index_t l = 0; l < W; ++l) buf[l] = s[l % r];
  const B pat = B::load_aligned(buf);
  const index_t vec_end = din - din % W;
  for (index_t i = 0; i < vec_end; i += W) simd::store(x + i, simd::load(x + i) + pat);
  for (index_t j = vec_end; j < din; ++j) x[j] += s[j % r];
}

template <class T>
void tile_add_simd(const T* s, T* x, index_t rows, index_t din, index_t r, T c) {
  detail::tile_add_rows(s, x, rows, din, r, c, tile_add_row_simd<T>);
}

template <class T>
void mask_mul_simd(const T* x, const T* m, T* out, index_t n) {
  simd::map2(x, m, out, n, [](const auto& a, const auto& b) { return a * b; }, [](T a, T b) { return a * b; });
}
template <class T>
void mask_mul_add_simd(const T* g, const T* m, T* gx, index_t n) {
  constexpr index_t W = simd::width<T>;
  const index_t full = n - n % W;  // not `i + W <= n`: see simd::map
  index_t i = 0;
  for (; i < full; i += W) simd::store(gx + i, simd::load(gx + i) + simd::load(g + i) * simd::load(m + i));
  for (; i < n; ++i) gx[i] += g[i] * m[i];
}
#endif

// ---------------------------------------------------------------------------------------------
// drivers

/// s (rows, r) = or += the chunk sums of x (rows, din) with chunk length r (r >= 1).
template <class T>
void chunk_sum(const T* x, T* s, index_t rows, index_t din, index_t r, bool accumulate = false) {
  parallel_for(0, rows, detail::row_grain(din), [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      chunk_sum_simd(x + lo * din, s + lo * r, hi - lo, din, r, accumulate);
      return;
    }
#endif
    chunk_sum_scalar(x + lo * din, s + lo * r, hi - lo, din, r, accumulate);
  });
}

/// x (rows, din) += c * s (rows, r) tiled along each row (the last tile truncated).
template <class T>
void tile_add(const T* s, T* x, index_t rows, index_t din, index_t r, T c = T(1)) {
  parallel_for(0, rows, detail::row_grain(din), [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      tile_add_simd(s + lo * r, x + lo * din, hi - lo, din, r, c);
      return;
    }
#endif
    tile_add_scalar(s + lo * r, x + lo * din, hi - lo, din, r, c);
  });
}

/// out = x * m over n elements.
template <class T>
void mask_mul(const T* x, const T* m, T* out, index_t n) {
  parallel_for(0, n, [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      mask_mul_simd(x + lo, m + lo, out + lo, hi - lo);
      return;
    }
#endif
    mask_mul_scalar(x + lo, m + lo, out + lo, hi - lo);
  });
}

/// gx += g * m over n elements.
template <class T>
void mask_mul_add(const T* g, const T* m, T* gx, index_t n) {
  parallel_for(0, n, [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      mask_mul_add_simd(g + lo, m + lo, gx + lo, hi - lo);
      return;
    }
#endif
    mask_mul_add_scalar(g + lo, m + lo, gx + lo, hi - lo);
  });
}

}  // namespace peft
WEFT_NAMESPACE_END
