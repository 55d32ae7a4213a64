// weft/core/ops/fake_quant_lsq.hpp - LSQ / LSQ+ fake-quantisation kernels on raw arrays (no
// autograd): forward (values and codes) and the fused backward (STE mask, scale and offset
// gradients). Common types and StatsQ: fake_quant.hpp.
//
// LSQ (Esser et al., ICLR 2020) with code range [lo, hi] (signed b bits: [-2^(b-1), 2^(b-1)-1];
// unsigned: [0, 2^b - 1]) and LSQ+ (Bhalgat et al., 2020) with an offset beta; spec
// quantization_ofq.md, Sec. 2. For an element x with scale s and offset beta (0 for LSQ):
//   se = max(s, 1e-5)   (the floor; the gradient reaches s unchanged)
//   v  = (x - beta) / se,  r = round_half_even(clamp(v, lo, hi)),  q = r se + beta
//   signed 1 bit (sign mode): r = sign(v) in {-1, +1} with sign(0) = +1, STE mask |v| <= 1
//   dq/dx    = 1 if lo <= v <= hi else 0                       (inclusive, as torch.clamp)
//   dq/ds    = r - v inside, lo below, hi above                (times the gradient scale g)
//   dq/dbeta = 0 inside, 1 outside
// The input is a (rows, cols) matrix; row r uses scale index r % count (per-row weights:
// count = rows; per-tensor: 1; per-token activations (B N, C): count = N). NaN inputs give NaN
// outputs with code 0; in the backward they count as clipped above (mask 0, dq/ds = hi).
//
// The backward returns one scale-gradient sum (and one offset sum) per row, formed over the
// 16 canonical partials of fake_quant.hpp; the caller adds them per scale in row order, so
// results do not depend on the thread count. Values and codes of the vector body equal the
// scalar body's bit for bit; with an offset (LSQ+) and in the scale sums the compiler may fuse
// a multiply-add in one body and not the other, so those agree to rounding (tests state it).
#pragma once

#include "weft/core/ops/fake_quant.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

/// Code range of an LSQ quantiser: codes clip to [lo, hi]; sign: the signed 1-bit case.
struct LsqRange {
  double lo = -2, hi = 1;
  bool sign = false;
};

/// The range for `bits` (1..8): signed [-2^(b-1), 2^(b-1) - 1], except b = 1 (sign codes
/// {-1, +1}, lo = -1, hi = 1); unsigned [0, 2^b - 1].
inline LsqRange lsq_range(int bits, bool is_signed) {
  WEFT_CHECK(bits >= 1 && bits <= 8, value, "ops::lsq_range", "expected bits in 1..8, got ", bits);
  LsqRange r;
  if (!is_signed) {
    r.lo = 0;
    r.hi = double((1 << bits) - 1);
  } else if (bits == 1) {
    r.lo = -1;
    r.hi = 1;
    r.sign = true;
  } else {
    r.lo = -double(1 << (bits - 1));
    r.hi = double((1 << (bits - 1)) - 1);
  }
  return r;
}

/// LSQ's floor on the scale in the forward pass.
inline constexpr double lsq_min_scale = 1e-5;

/// The largest scale at which every code value r s (|r| <= max(|lo|, hi)) is finite in T, with a
/// 1e-6 margin for rounding. The quantisers clamp their initial scales to it: a weight near T's
/// maximum would otherwise get an infinite scale and q = 0 * inf = NaN. (A user scale above it
/// gives q = +-inf for the outermost codes; LSQ+ also needs |beta| + hi s finite.)
template <class T>
double lsq_max_scale(const LsqRange& r) {
  return double(std::numeric_limits<T>::max()) / std::max(-r.lo, r.hi) * (1 - 1e-6);
}

/// Scales and optional offsets (LSQ+) of a call: row r uses index r % count.
template <class T>
struct LsqParams {
  const T* s = nullptr;     ///< count scales
  const T* beta = nullptr;  ///< count offsets, or null (LSQ: beta = 0)
  index_t count = 1;
};

namespace detail {

template <class T>
struct LsqConst {
  T lo, hi, min_scale;
  bool sign;
  explicit LsqConst(const LsqRange& r) : lo(T(r.lo)), hi(T(r.hi)), min_scale(T(lsq_min_scale)), sign(r.sign) {}
};

template <class T>
inline T lsq_floor_scale(T s, const LsqConst<T>& c) { return s < c.min_scale ? c.min_scale : s; }  // NaN stays

template <class T>
inline T lsq_code(T v, const LsqConst<T>& c) {
  if (c.sign) return v >= T(0) ? T(1) : T(-1);
  return std::nearbyint(std::min(std::max(v, c.lo), c.hi)) + T(0);  // + 0 maps -0 to +0
}

template <class T>
void lsq_forward_row_scalar(const T* x, index_t cols, T se, T b, bool has_b, const LsqConst<T>& c, T* q,
                            qcode_t* codes, const std::uint8_t* fmask, const qcode_t* fcodes) {
  for (index_t j = 0; j < cols; ++j) {
    const T v = (x[j] - b) / se;
    T r = lsq_code(v, c);
    if (fmask && fmask[j]) r = T(fcodes[j]);
    const bool nan = std::isnan(v) && !(fmask && fmask[j]);
    if (q) q[j] = nan ? std::numeric_limits<T>::quiet_NaN() : (has_b ? r * se + b : r * se);
    if (codes) codes[j] = nan ? qcode_t(0) : qcode_t(r);
  }
}

/// One row of the backward; p and pb are the 16 canonical partials (pb may be null).
template <class T>
void lsq_backward_row_scalar(const T* x, const T* g, index_t cols, T se, T b, const LsqConst<T>& c, T* gx, T* p,
                             T* pb, const std::uint8_t* fmask, const qcode_t* fcodes) {
  for (index_t j = 0; j < cols; ++j) {
    const T v = (x[j] - b) / se;
    const bool frozen = fmask && fmask[j];
    const bool inside = !frozen && v >= c.lo && v <= c.hi;
    T e;
    if (frozen) e = T(fcodes[j]);
    else if (inside) e = lsq_code(v, c) - v;
    else e = v < c.lo ? c.lo : c.hi;
    if (gx) gx[j] += inside ? g[j] : T(0);
    p[j % fq_partials] += g[j] * e;
    if (pb) pb[j % fq_partials] += inside ? T(0) : g[j];
  }
}

#if WEFT_USE_XSIMD
template <class T>
void lsq_forward_row_simd(const T* x, index_t cols, T se, T b, bool has_b, const LsqConst<T>& c, T* q,
                          qcode_t* codes) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  const B vse(se), vb(b), vlo(c.lo), vhi(c.hi), zero(T(0)), one(T(1)), nan(std::numeric_limits<T>::quiet_NaN());
  const index_t full = cols - cols % W;
  index_t j = 0;
  for (; j < full; j += W) {
    const B v = (simd::load(x + j) - vb) / vse;
    const B r = c.sign ? simd::select(v >= zero, one, -one) : simd::nearbyint(simd::min(simd::max(v, vlo), vhi)) + zero;
    const auto isnan = simd::isnan(v);
    if (q) simd::store(q + j, simd::select(isnan, nan, has_b ? r * vse + vb : r * vse));
    if (codes) store_narrow(codes + j, simd::select(isnan, zero, r));
  }
  lsq_forward_row_scalar(x + j, cols - j, se, b, has_b, c, q ? q + j : nullptr, codes ? codes + j : nullptr, nullptr,
                         nullptr);
}

template <class T>
void lsq_backward_row_simd(const T* x, const T* g, index_t cols, T se, T b, const LsqConst<T>& c, T* gx, T* p, T* pb) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>, K = fq_partials / W;
  static_assert(fq_partials % W == 0, "the canonical partial count must be a multiple of the SIMD width");
  const B vse(se), vb(b), vlo(c.lo), vhi(c.hi), zero(T(0)), one(T(1));
  B acc[K], accb[K];
  for (index_t k = 0; k < K; ++k) {
    acc[k] = simd::load(p + k * W);
    accb[k] = pb ? simd::load(pb + k * W) : zero;
  }
  const index_t full = cols - cols % fq_partials;
  for (index_t j = 0; j < full; j += fq_partials)
    for (index_t k = 0; k < K; ++k) {
      const index_t o = j + k * W;
      const B v = (simd::load(x + o) - vb) / vse;
      const auto inside = (v >= vlo) & (v <= vhi);
      const B r = c.sign ? simd::select(v >= zero, one, -one) : simd::nearbyint(simd::min(simd::max(v, vlo), vhi)) + zero;
      const B e = simd::select(inside, r - v, simd::select(v < vlo, vlo, vhi));
      const B gj = simd::load(g + o);
      if (gx) simd::store(gx + o, simd::load(gx + o) + simd::select(inside, gj, zero));
      acc[k] += gj * e;
      if (pb) accb[k] += simd::select(inside, zero, gj);
    }
  for (index_t k = 0; k < K; ++k) {
    simd::store(p + k * W, acc[k]);
    if (pb) simd::store(pb + k * W, accb[k]);
  }
  // the tail continues the same partials (index j % 16 with j counted from the row start)
  for (index_t j = full; j < cols; ++j) {
    const T v = (x[j] - b) / se;
    const bool inside = v >= c.lo && v <= c.hi;
    const T e = inside ? lsq_code(v, c) - v : (v < c.lo ? c.lo : c.hi);
    if (gx) gx[j] += inside ? g[j] : T(0);
    p[j % fq_partials] += g[j] * e;
    if (pb) pb[j % fq_partials] += inside ? T(0) : g[j];
  }
}
#endif

template <class T>
T lsq_sum_partials(const T* p) {
  T s(0);
  for (index_t k = 0; k < fq_partials; ++k) s += p[k];
  return s;
}

template <class T>
void lsq_check(index_t rows, index_t cols, const LsqParams<T>& ps, const char* fn) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "the fake-quantisation kernels are defined for float and double");
  WEFT_CHECK(rows >= 0 && cols >= 0, shape, fn, "expected non-negative extents, got ", rows, " x ", cols);
  WEFT_CHECK(ps.s != nullptr && ps.count >= 1, value, fn, "expected scales and count >= 1, got count ", ps.count);
}

template <bool Vector, class T>
void lsq_forward_impl(const T* x, index_t rows, index_t cols, const LsqParams<T>& ps, const LsqRange& range, T* q,
                      qcode_t* codes, const FrozenCodes& fz) {
  lsq_check(rows, cols, ps, "ops::lsq_forward");
  const LsqConst<T> c(range);
  const index_t grain = std::max<index_t>(1, index_t(WEFT_PARALLEL_GRAIN) / std::max<index_t>(1, cols));
  parallel_for(0, rows, grain, [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) {
      const index_t i = r % ps.count, o = r * cols;
      const T se = lsq_floor_scale(ps.s[i], c), b = ps.beta ? ps.beta[i] : T(0);
      T* qr = q ? q + o : nullptr;
      qcode_t* cr = codes ? codes + o : nullptr;
#if WEFT_USE_XSIMD
      if constexpr (Vector) {
        if (!fz) {
          lsq_forward_row_simd(x + o, cols, se, b, ps.beta != nullptr, c, qr, cr);
          continue;
        }
      }
#endif
      lsq_forward_row_scalar(x + o, cols, se, b, ps.beta != nullptr, c, qr, cr, fz ? fz.mask + o : nullptr,
                             fz ? fz.codes + o : nullptr);
    }
  });
}

template <bool Vector, class T>
void lsq_backward_impl(const T* x, const T* g, index_t rows, index_t cols, const LsqParams<T>& ps,
                       const LsqRange& range, T* gx, T* row_ds, T* row_db, const FrozenCodes& fz) {
  lsq_check(rows, cols, ps, "ops::lsq_backward");
  const LsqConst<T> c(range);
  const index_t grain = std::max<index_t>(1, index_t(WEFT_PARALLEL_GRAIN) / std::max<index_t>(1, cols));
  parallel_for(0, rows, grain, [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) {
      const index_t i = r % ps.count, o = r * cols;
      const T se = lsq_floor_scale(ps.s[i], c), b = ps.beta ? ps.beta[i] : T(0);
      alignas(64) T p[fq_partials] = {};
      alignas(64) T pb[fq_partials] = {};
      T* gxr = gx ? gx + o : nullptr;
      T* pbr = row_db ? pb : nullptr;
      bool done = false;
#if WEFT_USE_XSIMD
      if constexpr (Vector) {
        if (!fz) {
          lsq_backward_row_simd(x + o, g + o, cols, se, b, c, gxr, p, pbr);
          done = true;
        }
      }
#endif
      if (!done)
        lsq_backward_row_scalar(x + o, g + o, cols, se, b, c, gxr, p, pbr, fz ? fz.mask + o : nullptr,
                                fz ? fz.codes + o : nullptr);
      if (row_ds) row_ds[r] = lsq_sum_partials(p);
      if (row_db) row_db[r] = lsq_sum_partials(pb);
    }
  });
}

}  // namespace detail

/// LSQ / LSQ+ forward of a (rows, cols) input: values q and codes (either may be null).
/// Frozen codes replace the code where frozen (scalar path).
template <class T>
void lsq_forward(const T* x, index_t rows, index_t cols, const LsqParams<T>& ps, const LsqRange& range, T* q,
                 qcode_t* codes, const FrozenCodes& fz = {}) {
  detail::lsq_forward_impl<simd::active<T>>(x, rows, cols, ps, range, q, codes, fz);
}
template <class T>
void lsq_forward_scalar(const T* x, index_t rows, index_t cols, const LsqParams<T>& ps, const LsqRange& range, T* q,
                        qcode_t* codes, const FrozenCodes& fz = {}) {
  detail::lsq_forward_impl<false>(x, rows, cols, ps, range, q, codes, fz);
}

/// LSQ / LSQ+ backward given the output gradient g: gx += g * mask (gx may be null), and per
/// row r the sums row_ds[r] = sum_j g dq/ds (without the gradient scale) and row_db[r] = sum_j
/// g dq/dbeta (either may be null). Frozen elements get no input gradient; their dq/ds is the
/// frozen code and dq/dbeta is 1.
template <class T>
void lsq_backward(const T* x, const T* g, index_t rows, index_t cols, const LsqParams<T>& ps, const LsqRange& range,
                  T* gx, T* row_ds, T* row_db, const FrozenCodes& fz = {}) {
  detail::lsq_backward_impl<simd::active<T>>(x, g, rows, cols, ps, range, gx, row_ds, row_db, fz);
}
template <class T>
void lsq_backward_scalar(const T* x, const T* g, index_t rows, index_t cols, const LsqParams<T>& ps,
                         const LsqRange& range, T* gx, T* row_ds, T* row_db, const FrozenCodes& fz = {}) {
  detail::lsq_backward_impl<false>(x, g, rows, cols, ps, range, gx, row_ds, row_db, fz);
}

}  // namespace ops
WEFT_NAMESPACE_END
