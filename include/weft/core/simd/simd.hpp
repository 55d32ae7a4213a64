// weft/core/simd/simd.hpp - the one bridge between weft and xsimd.
//
// Kernels include this file, never <xsimd/xsimd.hpp> directly. A kernel is written twice:
// a plain scalar loop (always compiled, the reference) and a vector body over
// weft::simd::batch<T> (compiled when WEFT_USE_XSIMD). The map* drivers below run the vector
// body over full batches and the scalar body over the tail. weft::simd::active<T> says which
// path a kernel dispatches to: the vector one only for float/double, when xsimd is available
// and WEFT_DONT_VECTORIZE is not defined. The instruction set is whatever the translation unit
// is compiled for (SSE2 on plain x86-64; -march=native in weft's own tests and benchmarks).
#pragma once

#include <cstdint>
#include <type_traits>

#include "weft/config.hpp"
#include "weft/core/shape.hpp"

#if WEFT_USE_XSIMD
#include "weft/core/detail/intrinsics.hpp"  // before xsimd: GCC 12 AVX-512 false warnings
#include <xsimd/xsimd.hpp>
#endif

WEFT_NAMESPACE_BEGIN
namespace simd {

/// True when T has a vector path at all (xsimd available, T real floating point).
template <class T>
inline constexpr bool available =
    WEFT_USE_XSIMD && (std::is_same_v<T, float> || std::is_same_v<T, double>);

/// True when kernels on T dispatch to the vector path.
template <class T>
inline constexpr bool active = available<T> && WEFT_VECTORIZE;

#if WEFT_USE_XSIMD
template <class T, class A = xsimd::default_arch>
using batch = xsimd::batch<T, A>;
template <class T>
inline constexpr index_t width = index_t(xsimd::batch<T>::size);

template <class T>
inline batch<T> load(const T* p) { return batch<T>::load_unaligned(p); }
template <class T>
inline void store(T* p, const batch<T>& b) { b.store_unaligned(p); }

/// out[i] = fv(in[i]) over full batches, fs(in[i]) over the tail.
template <class T, class FV, class FS>
inline void map(const T* in, T* out, index_t n, FV&& fv, FS&& fs) {
  constexpr index_t W = width<T>;
  // `i < full`, not `i + W <= n`: with the latter GCC 12 falsely warns that the tail loop
  // overflows when n is a compile-time constant (-Waggressive-loop-optimizations)
  const index_t full = n - n % W;
  index_t i = 0;
  for (; i < full; i += W) store(out + i, fv(load(in + i)));
  for (; i < n; ++i) out[i] = fs(in[i]);
}
/// out[i] = f(a[i], b[i]).
template <class T, class FV, class FS>
inline void map2(const T* a, const T* b, T* out, index_t n, FV&& fv, FS&& fs) {
  constexpr index_t W = width<T>;
  const index_t full = n - n % W;  // as in map()
  index_t i = 0;
  for (; i < full; i += W) store(out + i, fv(load(a + i), load(b + i)));
  for (; i < n; ++i) out[i] = fs(a[i], b[i]);
}
/// out[i] = f(a[i], b[i], c[i]).
template <class T, class FV, class FS>
inline void map3(const T* a, const T* b, const T* c, T* out, index_t n, FV&& fv, FS&& fs) {
  constexpr index_t W = width<T>;
  const index_t full = n - n % W;  // as in map()
  index_t i = 0;
  for (; i < full; i += W) store(out + i, fv(load(a + i), load(b + i), load(c + i)));
  for (; i < n; ++i) out[i] = fs(a[i], b[i], c[i]);
}

/// The xsimd vocabulary kernels use, under weft's names: kernels write simd::select,
/// simd::abs, ... and never name xsimd themselves (this file is the one bridge).
template <class T, class A = xsimd::default_arch>
using batch_bool = xsimd::batch_bool<T, A>;
template <class T>
using as_integer_t = xsimd::as_integer_t<T>;
using xsimd::abs;
using xsimd::all;
using xsimd::any;
using xsimd::asinh;
using xsimd::atan;
using xsimd::batch_cast;
using xsimd::bitwise_cast;
using xsimd::bitwise_xor;
using xsimd::erf;
using xsimd::exp;
using xsimd::expm1;
using xsimd::floor;
using xsimd::hadd;
using xsimd::isnan;
using xsimd::log;
using xsimd::max;
using xsimd::min;
using xsimd::nearbyint;
using xsimd::select;
using xsimd::sincos;
using xsimd::sqrt;
using xsimd::tanh;
using xsimd::to_float;

/// a * b + c (fused where the instruction set has it).
template <class T>
inline batch<T> fma(const batch<T>& a, const batch<T>& b, const batch<T>& c) { return xsimd::fma(a, b, c); }
/// The sum of the lanes (the order is xsimd's, fixed for a given instruction set).
template <class T>
inline T reduce_add(const batch<T>& b) { return xsimd::hadd(b); }

/// 32-bit words, as many lanes as batch<float> (the packed low-bit kernels of deploy/).
using word_batch = xsimd::batch<std::uint32_t>;
static_assert(word_batch::size == xsimd::batch<float>::size, "weft: a word batch must have as many lanes as a float batch");
/// width<float> consecutive words from p (no alignment needed).
inline word_batch load_words(const std::uint32_t* p) { return word_batch::load_unaligned(p); }
/// (w >> shift) & mask in every lane, as float: one bit field of each word, exact for a mask
/// below 2^24 (packed codes are at most 8 bits).
inline batch<float> field_to_float(const word_batch& w, int shift, std::uint32_t mask) {
  const word_batch f = (w >> shift) & word_batch(mask);
  return xsimd::to_float(xsimd::bitwise_cast<xsimd::batch<std::int32_t>>(f));
}
/// 32-bit signed integer lanes, as many as batch<float>.
using int_batch = xsimd::batch<std::int32_t>;
/// acc + sum over the 4 bytes k of each 32-bit lane of a_k (unsigned) * b_k (signed), without
/// saturation (exact while the sums fit in int32): VNNI's vpdpbusd on AVX-512 VNNI or AVX-VNNI
/// builds, else shifts and 32-bit multiplies with the same result.
inline int_batch dot_u8s8(const int_batch& acc, const word_batch& a, const word_batch& b) {
#if defined(__AVX512VNNI__) && XSIMD_WITH_AVX512F
  return int_batch(_mm512_dpbusd_epi32(acc, a, b));
#elif defined(__AVXVNNI__) && XSIMD_WITH_AVX2 && !XSIMD_WITH_AVX512F
  return int_batch(_mm256_dpbusd_avx_epi32(acc, a, b));
#else
  const int_batch ai = xsimd::bitwise_cast<int_batch>(a), bi = xsimd::bitwise_cast<int_batch>(b);
  int_batch s = acc;
  for (int k = 0; k < 4; ++k) {
    const int_batch ak = (ai >> (8 * k)) & int_batch(0xff);  // byte k, zero-extended
    const int_batch bk = (bi << (24 - 8 * k)) >> 24;         // byte k, sign-extended
    s = s + ak * bk;
  }
  return s;
#endif
}
#endif

/// Human-readable name of the instruction set the vector path was compiled for.
inline const char* arch_name() {
#if WEFT_USE_XSIMD
  return xsimd::default_arch::name();
#else
  return "scalar (xsimd not available)";
#endif
}

}  // namespace simd
WEFT_NAMESPACE_END
