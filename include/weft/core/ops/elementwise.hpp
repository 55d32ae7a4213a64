// weft/core/ops/elementwise.hpp - element-wise kernels on raw tensors (no autograd).
//
// Unary ops are small descriptor structs with a scalar body `f(x)` and derivative
// `df(x, y)` (y = f(x)), plus vector bodies `fv`/`dfv` over simd::batch when xsimd is
// available. unary_forward / unary_backward run the vector body on float and double when
// simd::active, else the scalar one; the *_scalar variants always run the scalar body, so
// tests can compare the two. Complex scalars always take the scalar body; comparisons (relu)
// use the real part.
//
// Binary ops broadcast NumPy-style over ranks 0..4 (shapes aligned at the trailing axis, an
// extent of 1 stretches). BroadcastPlan describes the iteration once; for_each_broadcast
// visits (out, a, b) offsets with the innermost axis as a tight loop.
#pragma once

#include <cmath>
#include <complex>

#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

// ---------------------------------------------------------------------------------------------
// unary op descriptors

struct neg_op {
  static constexpr const char* name = "neg";
  template <class T> static T f(T x) { return -x; }
  template <class T> static T df(T, T) { return T(-1); }
#if WEFT_USE_XSIMD
  // flip the sign bit: xsimd 8.1's AVX-512 negation computes 0 - x, which maps -0 to +0
  template <class B> static B fv(B x) { return simd::bitwise_xor(x, B(typename B::value_type(-0.0))); }
  template <class B> static B dfv(B, B) { return B(-1); }
#endif
};
struct square_op {
  static constexpr const char* name = "square";
  template <class T> static T f(T x) { return x * x; }
  template <class T> static T df(T x, T) { return T(2) * x; }
#if WEFT_USE_XSIMD
  template <class B> static B fv(B x) { return x * x; }
  template <class B> static B dfv(B x, B) { return B(2) * x; }
#endif
};
struct exp_op {
  static constexpr const char* name = "exp";
  template <class T> static T f(T x) { using std::exp; return exp(x); }
  template <class T> static T df(T, T y) { return y; }
#if WEFT_USE_XSIMD
  template <class B> static B fv(B x) { return simd::exp(x); }
  template <class B> static B dfv(B, B y) { return y; }
#endif
};
struct log_op {
  static constexpr const char* name = "log";
  template <class T> static T f(T x) { using std::log; return log(x); }
  template <class T> static T df(T x, T) { return T(1) / x; }
#if WEFT_USE_XSIMD
  template <class B> static B fv(B x) { return simd::log(x); }
  template <class B> static B dfv(B x, B) { return B(1) / x; }
#endif
};
struct sqrt_op {
  static constexpr const char* name = "sqrt";
  template <class T> static T f(T x) { using std::sqrt; return sqrt(x); }
  template <class T> static T df(T, T y) { return T(0.5) / y; }
#if WEFT_USE_XSIMD
  template <class B> static B fv(B x) { return simd::sqrt(x); }
  template <class B> static B dfv(B, B y) { return B(0.5) / y; }
#endif
};
struct tanh_op {
  static constexpr const char* name = "tanh";
  template <class T> static T f(T x) { using std::tanh; return tanh(x); }
  template <class T> static T df(T, T y) { return T(1) - y * y; }
#if WEFT_USE_XSIMD
  template <class B> static B fv(B x) { return simd::tanh(x); }
  template <class B> static B dfv(B, B y) { return B(1) - y * y; }
#endif
};
/// sigmoid(x) = 1 / (1 + exp(-x)).
struct sigmoid_op {
  static constexpr const char* name = "sigmoid";
  template <class T> static T f(T x) { using std::exp; return T(1) / (T(1) + exp(-x)); }
  template <class T> static T df(T, T y) { return y * (T(1) - y); }
#if WEFT_USE_XSIMD
  template <class B> static B fv(B x) { return B(1) / (B(1) + simd::exp(-x)); }
  template <class B> static B dfv(B, B y) { return y * (B(1) - y); }
#endif
};
/// relu(x) = x if Re x > 0 else 0; the derivative at 0 is taken as 0. NaN maps to 0.
struct relu_op {
  static constexpr const char* name = "relu";
  template <class T> static T f(T x) { return real_part(x) > 0 ? x : T(0); }
  template <class T> static T df(T x, T) { return real_part(x) > 0 ? T(1) : T(0); }
#if WEFT_USE_XSIMD
  template <class B> static B fv(B x) { return simd::select(x > B(0), x, B(0)); }
  template <class B> static B dfv(B x, B) { return simd::select(x > B(0), B(1), B(0)); }
#endif
};
/// GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
struct gelu_op {
  static constexpr const char* name = "gelu";
  static constexpr double c = 0.7978845608028654;  // sqrt(2/pi)
  static constexpr double k = 0.044715;
  template <class T> static T f(T x) {
    using std::tanh;
    return T(0.5) * x * (T(1) + tanh(T(c) * (x + T(k) * x * x * x)));
  }
  template <class T> static T df(T x, T) {
    using std::tanh;
    T t = tanh(T(c) * (x + T(k) * x * x * x));
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * T(c) * (T(1) + T(3 * k) * x * x);
  }
#if WEFT_USE_XSIMD
  template <class B> static B fv(B x) {
    using S = typename B::value_type;
    return B(S(0.5)) * x * (B(S(1)) + simd::tanh(B(S(c)) * (x + B(S(k)) * x * x * x)));
  }
  template <class B> static B dfv(B x, B) {
    using S = typename B::value_type;
    B t = simd::tanh(B(S(c)) * (x + B(S(k)) * x * x * x));
    return B(S(0.5)) * (B(S(1)) + t) +
           B(S(0.5)) * x * (B(S(1)) - t * t) * B(S(c)) * (B(S(1)) + B(S(3 * k)) * x * x);
  }
#endif
};
/// |x| for real x; the derivative at 0 is taken as 0.
struct abs_op {
  static constexpr const char* name = "abs";
  template <class T> static T f(T x) {
    static_assert(!is_complex_v<T>, "weft::abs is not holomorphic; it is defined for real tensors only");
    return std::abs(x);
  }
  template <class T> static T df(T x, T) { return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0)); }
#if WEFT_USE_XSIMD
  template <class B> static B fv(B x) { return simd::abs(x); }
  template <class B> static B dfv(B x, B) {
    return simd::select(x > B(0), B(1), simd::select(x < B(0), B(-1), B(0)));
  }
#endif
};

// ---------------------------------------------------------------------------------------------
// unary drivers

/// out[i] = Op::f(in[i]) with the scalar body.
template <class Op, class T>
void unary_forward_scalar(const T* in, T* out, index_t n) {
  for (index_t i = 0; i < n; ++i) out[i] = Op::f(in[i]);
}
/// gx[i] += gy[i] * Op::df(x[i], y[i]) with the scalar body.
template <class Op, class T>
void unary_backward_scalar(const T* x, const T* y, const T* gy, T* gx, index_t n) {
  for (index_t i = 0; i < n; ++i) gx[i] += gy[i] * Op::df(x[i], y[i]);
}

#if WEFT_USE_XSIMD
template <class Op, class T>
void unary_forward_simd(const T* in, T* out, index_t n) {
  simd::map(in, out, n, [](auto v) { return Op::fv(v); }, [](T v) { return Op::f(v); });
}
template <class Op, class T>
void unary_backward_simd(const T* x, const T* y, const T* gy, T* gx, index_t n) {
  constexpr index_t W = simd::width<T>;
  const index_t full = n - n % W;  // not `i + W <= n`: see simd::map
  index_t i = 0;
  for (; i < full; i += W) {
    auto g = simd::load(gx + i) + simd::load(gy + i) * Op::dfv(simd::load(x + i), simd::load(y + i));
    simd::store(gx + i, g);
  }
  for (; i < n; ++i) gx[i] += gy[i] * Op::df(x[i], y[i]);
}
#endif

/// out = Op(in), element-wise over n elements; chunks run in parallel for large n.
template <class Op, class T>
void unary_forward(const T* in, T* out, index_t n) {
  parallel_for(0, n, [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      unary_forward_simd<Op>(in + lo, out + lo, hi - lo);
      return;
    }
#endif
    unary_forward_scalar<Op>(in + lo, out + lo, hi - lo);
  });
}
/// gx += gy * Op'(x) (y = Op(x) is passed so derivatives can reuse it).
template <class Op, class T>
void unary_backward(const T* x, const T* y, const T* gy, T* gx, index_t n) {
  parallel_for(0, n, [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      unary_backward_simd<Op>(x + lo, y + lo, gy + lo, gx + lo, hi - lo);
      return;
    }
#endif
    unary_backward_scalar<Op>(x + lo, y + lo, gy + lo, gx + lo, hi - lo);
  });
}

// ---------------------------------------------------------------------------------------------
// broadcasting

/// The iteration of a broadcast binary op over a 4-d canonical index space.
struct BroadcastPlan {
  Shape out;            ///< result shape
  index_t dims[4];      ///< extents of the result, left-padded with 1 to rank 4
  index_t sa[4], sb[4]; ///< element strides of a and b per canonical axis (0 where broadcast)
  bool same = false;    ///< a, b and out have identical shapes (flat fast path)
};

/// Plans `a op b`; raises ShapeError naming `func` when the shapes do not broadcast.
inline BroadcastPlan broadcast_plan(const Shape& a, const Shape& b, const char* func) {
  BroadcastPlan p;
  int r = a.rank() > b.rank() ? a.rank() : b.rank();
  index_t da[4] = {1, 1, 1, 1}, db[4] = {1, 1, 1, 1};
  for (int k = 0; k < a.rank(); ++k) da[4 - a.rank() + k] = a[k];
  for (int k = 0; k < b.rank(); ++k) db[4 - b.rank() + k] = b[k];
  for (int k = 0; k < 4; ++k) {
    WEFT_CHECK(da[k] == db[k] || da[k] == 1 || db[k] == 1, shape, func,
               "expected broadcastable shapes (equal trailing extents or 1), got ", a, " and ", b);
    p.dims[k] = da[k] == 1 ? db[k] : da[k];
  }
  index_t stra = 1, strb = 1;
  for (int k = 3; k >= 0; --k) {
    p.sa[k] = da[k] == 1 ? 0 : stra;
    p.sb[k] = db[k] == 1 ? 0 : strb;
    stra *= da[k];
    strb *= db[k];
  }
  p.out = Shape::from(p.dims + (4 - r), r);
  p.same = (a == b);
  return p;
}

/// Calls f(i_out, i_a, i_b) for every element of the broadcast result, in row-major order.
template <class F>
inline void for_each_broadcast(const BroadcastPlan& p, F&& f) {
  const index_t n3 = p.dims[3];
  index_t io = 0;
  for (index_t i0 = 0; i0 < p.dims[0]; ++i0)
    for (index_t i1 = 0; i1 < p.dims[1]; ++i1)
      for (index_t i2 = 0; i2 < p.dims[2]; ++i2) {
        index_t ia = i0 * p.sa[0] + i1 * p.sa[1] + i2 * p.sa[2];
        index_t ib = i0 * p.sb[0] + i1 * p.sb[1] + i2 * p.sb[2];
        for (index_t i3 = 0; i3 < n3; ++i3, ++io) f(io, ia + i3 * p.sa[3], ib + i3 * p.sb[3]);
      }
}

/// out = f(a, b) with broadcasting; out must have shape p.out.
template <class T, class F>
void broadcast_apply(const BroadcastPlan& p, const T* a, const T* b, T* out, F&& f) {
  if (p.same) {
    index_t n = p.out.numel();
    for (index_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
    return;
  }
  for_each_broadcast(p, [&](index_t io, index_t ia, index_t ib) { out[io] = f(a[ia], b[ib]); });
}

/// Adds `g` (shape p.out) reduced onto the shape of operand a (which_b = false) or b
/// (which_b = true), after mapping each element with f(g, a_elem, b_elem).
template <class T, class F>
void broadcast_accumulate(const BroadcastPlan& p, bool which_b, const T* g, const T* a, const T* b,
                          T* dst, F&& f) {
  if (p.same) {
    index_t n = p.out.numel();
    for (index_t i = 0; i < n; ++i) dst[i] += f(g[i], a[i], b[i]);
    return;
  }
  if (which_b)
    for_each_broadcast(p, [&](index_t io, index_t ia, index_t ib) { dst[ib] += f(g[io], a[ia], b[ib]); });
  else
    for_each_broadcast(p, [&](index_t io, index_t ia, index_t ib) { dst[ia] += f(g[io], a[ia], b[ib]); });
}

}  // namespace ops
WEFT_NAMESPACE_END
