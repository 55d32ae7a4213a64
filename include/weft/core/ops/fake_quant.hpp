// weft/core/ops/fake_quant.hpp - fake-quantisation kernels on raw arrays (no autograd): the
// common types and the statistical quantiser StatsQ. LSQ / LSQ+ are in fake_quant_lsq.hpp.
//
// These are the quantiser's hot path, shared by every family that composes with quantisers
// (quant/ builds its WeightTransforms on them; pruning masks and the compander chain before
// them). One pass per group of elements that share a scale computes the statistic (StatsQ)
// or reads the scale (LSQ), the quantised values, the integer codes (for oscillation
// tracking and export) and, on request, the confidence mask of confidence-guided annealing.
//
// Layout. A tensor is seen as (outer, groups, inner) (FqGeometry): group m holds, for every
// a < outer, the `inner` contiguous elements starting at (a groups + m) inner. Per-row
// quantisation of an (O, I) matrix is (1, O, I), per-tensor is (1, 1, O I), and the OFQ
// reference's 3-D case (one scale per middle index) is (d0, d1, d2).
//
// StatsQ with b bits, n = 2^(b-1), eps = 1e-6 (spec quantization_ofq.md, Sec. 1):
//   s = 2 mean_group |w|                                  (no gradient flows into s)
//   x = clamp(w / s, -1, 1 - eps),  t = x n,  k = clamp(floor(t), -n, n - 1)
//   q = (k + 1/2) (s / n)                                 (2^b symmetric levels, no zero level)
//   near = |t - clamp(round(t), -n + 1, n - 1)| <= BR    (within BR steps of a threshold)
// A group with s == 0 (all zeros) gives q = 0, k = 0, near = 1; a group whose statistic is not
// finite (a NaN or Inf entry, or mean |w| > max / 2 so that s overflows) gives q = NaN, k = 0,
// near = 0.
// Range: any finite group with mean |w| <= max / 2 (float 1.7e38, double 9e307). When the
// canonical sum of |w| overflows although s does not (a few weights near the maximum), a cold
// pass recomputes the mean as a (sum |w| / a) / N with a = max |w|; ordinary groups never take
// it (one branch per group) and keep their bits.
//
// Determinism. Sums run over 16 canonical partial sums (element j of a segment goes to partial
// j mod 16, in ascending j, segments in order), added in index order at the end. The xsimd
// body keeps exactly these partials in its lanes, so the vector and scalar paths give the same
// bits, and as every group is processed whole by one thread, so do 1 and N threads. Element
// maps use the same operations in the same order in both bodies (IEEE division, floor,
// round-half-even), and -0 is normalised, so outputs match bit for bit too. The division w / s
// is kept as the spec writes it (a per-group reciprocal n / s would round twice and can move an
// element lying exactly on a threshold m s / n one code down); the vector body stores codes and
// flags with one narrowing store per vector (store_narrow), which made it bandwidth-bound.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

/// Integer code type of the fake quantisers (codes of b <= 8 bits, signed or unsigned, fit).
using qcode_t = std::int16_t;

/// Number of canonical partial sums (a multiple of every SIMD width).
inline constexpr index_t fq_partials = 16;

/// StatsQ's clip margin: x is clipped to [-1, 1 - statsq_eps].
inline constexpr double statsq_eps = 1e-6;

/// A tensor seen as (outer, groups, inner); one scale per group (see the file comment).
struct FqGeometry {
  index_t outer = 1, groups = 1, inner = 1;
  index_t numel() const noexcept { return outer * groups * inner; }
  index_t group_size() const noexcept { return outer * inner; }
  /// Start of segment a of group m.
  index_t segment(index_t a, index_t m) const noexcept { return (a * groups + m) * inner; }
};

/// Optional fixed codes (Nagel et al.'s iterative freezing): where mask[i] != 0 the code of
/// element i is codes[i] whatever the weight. Both null when nothing is frozen.
struct FrozenCodes {
  const std::uint8_t* mask = nullptr;
  const qcode_t* codes = nullptr;
  explicit operator bool() const noexcept { return mask != nullptr; }
};

/// Outputs of statsq_forward; any may be null (not computed).
template <class T>
struct StatsqOut {
  T* q = nullptr;                ///< quantised values (numel)
  qcode_t* codes = nullptr;      ///< integer codes k (numel)
  std::uint8_t* near = nullptr;  ///< 1 where within BR steps of a decision threshold (numel)
  T* scales = nullptr;           ///< s per group (groups)
};

namespace detail {

template <class T>
struct StatsqConst {
  T n, lo, hi, kmin, kmax, mmin, mmax, br;
  StatsqConst(int bits, double boundary) {
    n = T(index_t(1) << (bits - 1));
    lo = T(-1);
    hi = T(1) - T(statsq_eps);
    kmin = -n;
    kmax = n - T(1);
    mmin = -n + T(1);
    mmax = n - T(1);
    br = T(boundary);
  }
};

/// The canonical sum of |w| over group m (scalar body).
template <class T>
T statsq_abs_sum_scalar(const T* w, const FqGeometry& g, index_t m) {
  T p[fq_partials] = {};
  for (index_t a = 0; a < g.outer; ++a) {
    const T* seg = w + g.segment(a, m);
    for (index_t j = 0; j < g.inner; ++j) p[j % fq_partials] += std::abs(seg[j]);
  }
  T sum(0);
  for (index_t k = 0; k < fq_partials; ++k) sum += p[k];
  return sum;
}

/// mean |w| over group m for finite w whose canonical sum overflowed (cold): with a = max |w|,
/// a (sum_j |w_j| / a) / N, which cannot overflow. Non-finite entries give the plain result.
template <class T>
WEFT_COLD T statsq_mean_abs_scaled(const T* w, const FqGeometry& g, index_t m) {
  T a(0);
  for (index_t o = 0; o < g.outer; ++o)
    for (index_t j = 0; j < g.inner; ++j) a = std::max(a, T(std::abs(w[g.segment(o, m) + j])));
  if (!std::isfinite(a)) return std::numeric_limits<T>::infinity();
  T s(0);
  for (index_t o = 0; o < g.outer; ++o)
    for (index_t j = 0; j < g.inner; ++j) s += std::abs(w[g.segment(o, m) + j]) / a;
  return a * (s / T(g.group_size()));
}

/// Quantises one element (scalar body); the vector body mirrors it operation by operation.
template <class T>
inline void statsq_element(T w, T s, T step, const StatsqConst<T>& c, T& q, T& k, T& nearv) {
  T x = std::min(std::max(w / s, c.lo), c.hi);
  const T t = x * c.n;  // exact: n is a power of two
  k = std::min(std::max(std::floor(t), c.kmin), c.kmax) + T(0);  // + 0 maps -0 to +0
  q = (k + T(0.5)) * step;
  const T m = std::min(std::max(std::nearbyint(t), c.mmin), c.mmax);
  nearv = std::abs(t - m) <= c.br ? T(1) : T(0);
}

/// Writes the outputs of a group whose scale is 0 (zeros) or not finite (NaN).
template <class T>
void statsq_special_group(const FqGeometry& g, index_t m, bool zero, const StatsqOut<T>& out) {
  const T qv = zero ? T(0) : std::numeric_limits<T>::quiet_NaN();
  for (index_t a = 0; a < g.outer; ++a) {
    const index_t o = g.segment(a, m);
    for (index_t j = 0; j < g.inner; ++j) {
      if (out.q) out.q[o + j] = qv;
      if (out.codes) out.codes[o + j] = 0;
      if (out.near) out.near[o + j] = zero ? 1 : 0;
    }
  }
}

template <class T>
void statsq_segment_scalar(const T* w, index_t o, index_t len, T s, const StatsqConst<T>& c,
                           const StatsqOut<T>& out, const FrozenCodes& fz) {
  const T step = s / c.n;
  for (index_t j = o; j < o + len; ++j) {
    T q, k, nv;
    statsq_element(w[j], s, step, c, q, k, nv);
    if (fz && fz.mask[j]) {
      k = T(fz.codes[j]);
      q = (k + T(0.5)) * step;
    }
    if (out.q) out.q[j] = q;
    if (out.codes) out.codes[j] = qcode_t(k);
    if (out.near) out.near[j] = std::uint8_t(nv);
  }
}

#if WEFT_USE_XSIMD
/// Stores a vector of whole numbers that fit the destination type (codes, 0/1 flags) with a
/// narrowing store: an exact conversion to the same-width integer vector, then a fixed-size
/// narrowing loop the compiler turns into packs (instead of one float->int conversion per lane).
template <class D, class T>
inline void store_narrow(D* dst, const simd::batch<T>& v) {
  using I = simd::as_integer_t<T>;
  constexpr index_t W = simd::width<T>;
  alignas(64) I t[W];
  simd::batch_cast<I>(v).store_aligned(t);
  for (index_t l = 0; l < W; ++l) dst[l] = D(t[l]);
}

template <class T>
T statsq_abs_sum_simd(const T* w, const FqGeometry& g, index_t m) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>, K = fq_partials / W;
  static_assert(fq_partials % W == 0, "the canonical partial count must be a multiple of the SIMD width");
  alignas(64) T p[fq_partials] = {};
  for (index_t a = 0; a < g.outer; ++a) {
    const T* seg = w + g.segment(a, m);
    const index_t full = g.inner - g.inner % fq_partials;
    B acc[K];
    for (index_t b = 0; b < K; ++b) acc[b] = simd::load(p + b * W);
    for (index_t j = 0; j < full; j += fq_partials)
      for (index_t b = 0; b < K; ++b) acc[b] += simd::abs(simd::load(seg + j + b * W));
    for (index_t b = 0; b < K; ++b) simd::store(p + b * W, acc[b]);
    for (index_t j = full; j < g.inner; ++j) p[j % fq_partials] += std::abs(seg[j]);
  }
  T sum(0);
  for (index_t k = 0; k < fq_partials; ++k) sum += p[k];
  return sum;
}

template <class T>
void statsq_segment_simd(const T* w, index_t o, index_t len, T s, const StatsqConst<T>& c,
                         const StatsqOut<T>& out) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  const T step = s / c.n;
  const B vs(s), vstep(step), vn(c.n), vlo(c.lo), vhi(c.hi), vkmin(c.kmin), vkmax(c.kmax), vmmin(c.mmin),
      vmmax(c.mmax), vbr(c.br), half(T(0.5)), zero(T(0)), one(T(1));
  const index_t full = len - len % W;  // not `i + W <= n`: see simd::map
  index_t i = 0;
  for (; i < full; i += W) {
    const index_t j = o + i;
    const B x = simd::min(simd::max(simd::load(w + j) / vs, vlo), vhi);
    const B t = x * vn;
    const B k = simd::min(simd::max(simd::floor(t), vkmin), vkmax) + zero;
    if (out.q) simd::store(out.q + j, (k + half) * vstep);
    if (out.codes) store_narrow(out.codes + j, k);
    if (out.near) {
      const B mm = simd::min(simd::max(simd::nearbyint(t), vmmin), vmmax);
      store_narrow(out.near + j, simd::select(simd::abs(t - mm) <= vbr, one, zero));
    }
  }
  statsq_segment_scalar(w, o + i, len - i, s, c, out, FrozenCodes{});
}
#endif

/// One group: the statistic, then every segment (scalar or vector body).
template <bool Vector, class T>
void statsq_group(const T* w, const FqGeometry& g, index_t m, const StatsqConst<T>& c, const StatsqOut<T>& out,
                  const FrozenCodes& fz) {
  T sum;
#if WEFT_USE_XSIMD
  if constexpr (Vector) sum = statsq_abs_sum_simd(w, g, m);
  else
#endif
    sum = statsq_abs_sum_scalar(w, g, m);
  T s = T(2) * (sum / T(g.group_size()));
  if (WEFT_UNLIKELY(!std::isfinite(sum))) s = T(2) * statsq_mean_abs_scaled(w, g, m);
  if (out.scales) out.scales[m] = s;
  if (!std::isfinite(s) || s == T(0)) {
    statsq_special_group(g, m, s == T(0), out);
    return;
  }
  for (index_t a = 0; a < g.outer; ++a) {
    const index_t o = g.segment(a, m);
#if WEFT_USE_XSIMD
    if constexpr (Vector) {
      if (!fz) {
        statsq_segment_simd(w, o, g.inner, s, c, out);
        continue;
      }
    }
#endif
    statsq_segment_scalar(w, o, g.inner, s, c, out, fz);
  }
}

template <bool Vector, class T>
void statsq_forward_impl(const T* w, const FqGeometry& g, int bits, const StatsqOut<T>& out, double boundary,
                         const FrozenCodes& fz) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "the fake-quantisation kernels are defined for float and double");
  WEFT_CHECK(bits >= 1 && bits <= 8, value, "ops::statsq_forward", "expected bits in 1..8, got ", bits);
  WEFT_CHECK(g.outer >= 0 && g.groups >= 0 && g.inner >= 0, shape, "ops::statsq_forward",
             "expected a non-negative geometry, got (", g.outer, ", ", g.groups, ", ", g.inner, ")");
  if (g.numel() == 0) return;
  const StatsqConst<T> c(bits, boundary);
  const index_t grain = std::max<index_t>(1, index_t(WEFT_PARALLEL_GRAIN) / std::max<index_t>(1, g.group_size()));
  parallel_for(0, g.groups, grain, [&](index_t lo, index_t hi) {
    for (index_t m = lo; m < hi; ++m) statsq_group<Vector>(w, g, m, c, out, fz);
  });
}

}  // namespace detail

/// StatsQ forward over every group of `w` (see the file comment): writes the requested
/// outputs. `boundary` is BR of the `near` mask (ignored without it). Frozen codes, when given,
/// replace k (and q) where frozen; that path is scalar. Dispatches to the xsimd body when
/// simd::active<T>.
template <class T>
void statsq_forward(const T* w, const FqGeometry& g, int bits, const StatsqOut<T>& out, double boundary = 0.0,
                    const FrozenCodes& fz = {}) {
  detail::statsq_forward_impl<simd::active<T>>(w, g, bits, out, boundary, fz);
}
/// StatsQ forward with the scalar body only (the reference; tests compare the two).
template <class T>
void statsq_forward_scalar(const T* w, const FqGeometry& g, int bits, const StatsqOut<T>& out,
                           double boundary = 0.0, const FrozenCodes& fz = {}) {
  detail::statsq_forward_impl<false>(w, g, bits, out, boundary, fz);
}

}  // namespace ops
WEFT_NAMESPACE_END
