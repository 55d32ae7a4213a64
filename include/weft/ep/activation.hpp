// weft/ep/activation.hpp - the activations of equilibrium propagation, evaluated for real states
// and for complex states stored as split planes (scalar and xsimd bodies), and user activations.
//
//   sigmoid       phi(z) = 1 / (1 + e^-(4z - 2)),  phi' = 4 phi (1 - phi)  (max 1; poles at
//                 z = 1/2 + i(2k+1)pi/4). The MLP activation of Laborieux & Zenke (2022, 2024).
//   dsilu         phi(z) = z/2 s(z) + (1 - z/2) s(z - 2), s the logistic sigmoid: a smooth
//                 clip(z/2, 0, 1); phi' = s(z)/2 + z/2 s(z)(1 - s(z)) - s(z - 2)/2
//                 + (1 - z/2) s(z - 2)(1 - s(z - 2)) (about 0.43 at most). The CNN activation.
//   identity      phi(z) = z, phi' = 1: a linear network, for closed-form cases.
//   tanh          phi(z) = tanh z = 2 s(2z) - 1, phi' = 1 - tanh^2 (poles at z = i pi (k + 1/2)).
//                 Complex values come from the overflow-safe split sigmoid, real values and
//                 phi' from e^-2|u| (no overflow, no cancellation near 0).
//   hard_sigmoid  phi(u) = clip(u, 0, 1) (the hard sigmoid of Scellier & Bengio 2017), phi' = 1
//                 on [0, 1], 0 outside. NOT holomorphic: its complex extension is piecewise in
//                 Re z, phi(z) = z for 0 <= Re z <= 1 (linear, hence holomorphic) and the
//                 constant 0 or 1 outside. The complex step (N = 0) gives the exact derivative
//                 away from the kinks Re z = 0, 1; the Cauchy estimators (N >= 1, finite |beta|)
//                 are biased when a contour's states cross a kink, as r*(beta) is not analytic
//                 there, and shrinking |beta| does not remove that bias on the kink itself.
// The holomorphic ones have no abs, max or clip on the state path, which the Cauchy estimators
// need. Every built-in body is one generic function over V = scalar or simd::batch, so the
// scalar and vector paths compute the same formula.
//
// ep::Activation is a small value type: Activation::sigmoid etc. are constants, == compares,
// to_string names it, and Activation::custom(f, "name") wraps a user functor. It holds a table
// of ARRAY-level function pointers for float and double (phi, phi', phi on split planes), so a
// dispatch costs one indirect call per array, never per element.
//
// The concept of a user activation F (a copyable functor; it is stored by value, so it may
// carry parameters such as a gain). For T = double, and T = float to use it in float nets:
//   T real(T u) const                               phi(u)
//   T deriv(T u) const                              phi'(u)
//   split_complex<T> cplx(split_complex<T> z) const phi(z), the holomorphic extension (or
//   std::complex<T> cplx(std::complex<T> z) const   the same with std::complex)
// Optional batch form, used by the vector path when it is present: the same three members for
// V = simd::batch<T> (cplx on split_complex<V>), typically one member template over V as the
// built-ins below. The batch form is detected from the declarations; a member template
// declared for every V must therefore compile for batches (use ops::rsigmoid, ops::csigmoid,
// ops::cexp, xsimd functions), or else provide plain overloads for T only. Without a batch
// form the scalar loop runs. phi must be holomorphic (or piecewise so) for the estimators to
// be exact; phi' must be its derivative (tests check it against the complex step).
#pragma once

#include <complex>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "weft/core/error.hpp"
#include "weft/core/ops/complex.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep {

using ops::split_complex;

namespace detail {

// ---------------------------------------------------------------------------------------------
// helpers over V = scalar or batch

template <class T>
inline T vselect(bool m, T a, T b) {
  return m ? a : b;
}
template <class T>
inline T vexpm1(T x) {
  return std::expm1(x);
}
#if WEFT_USE_XSIMD
template <class T, class A>
inline simd::batch<T, A> vselect(const simd::batch_bool<T, A>& m, const simd::batch<T, A>& a,
                                  const simd::batch<T, A>& b) {
  return simd::select(m, a, b);
}
template <class T, class A>
inline simd::batch<T, A> vexpm1(const simd::batch<T, A>& x) {
  return simd::expm1(x);
}
#endif

// ---------------------------------------------------------------------------------------------
// built-in activations (each one generic over V)

/// phi(z) = sigmoid(4z - 2).
struct sigmoid_act {
  template <class V>
  static V real(const V& u) {
    return ops::rsigmoid(V(4) * u - V(2));
  }
  template <class V>
  static split_complex<V> cplx(const split_complex<V>& z) {
    return ops::csigmoid(split_complex<V>{V(4) * z.re - V(2), V(4) * z.im});
  }
  template <class V>
  static V deriv(const V& u) {
    const V p = real(u);
    return V(4) * p * (V(1) - p);
  }
};

/// phi(z) = z/2 s(z) + (1 - z/2) s(z - 2).
struct dsilu_act {
  template <class V>
  static V real(const V& u) {
    const V h = V(0.5) * u;
    return h * ops::rsigmoid(u) + (V(1) - h) * ops::rsigmoid(u - V(2));
  }
  template <class V>
  static split_complex<V> cplx(const split_complex<V>& z) {
    const split_complex<V> h{V(0.5) * z.re, V(0.5) * z.im};
    const split_complex<V> s1 = ops::csigmoid(z);
    const split_complex<V> s2 = ops::csigmoid(split_complex<V>{z.re - V(2), z.im});
    return h * s1 + split_complex<V>{V(1) - h.re, -h.im} * s2;
  }
  template <class V>
  static V deriv(const V& u) {
    const V h = V(0.5) * u, s1 = ops::rsigmoid(u), s2 = ops::rsigmoid(u - V(2));
    return V(0.5) * s1 + h * s1 * (V(1) - s1) - V(0.5) * s2 + (V(1) - h) * s2 * (V(1) - s2);
  }
};

/// phi(z) = z.
struct identity_act {
  template <class V>
  static V real(const V& u) {
    return u;
  }
  template <class V>
  static split_complex<V> cplx(const split_complex<V>& z) {
    return z;
  }
  template <class V>
  static V deriv(const V&) {
    return V(1);
  }
};

/// phi(z) = tanh z. Real: with m = expm1(-2|u|) in (-1, 0], tanh|u| = -m / (2 + m), sign
/// restored; phi' = 4w / (1 + w)^2 with w = e^-2|u|. Complex: 2 sigmoid(2z) - 1.
struct tanh_act {
  template <class V>
  static V real(const V& u) {
    const V m = vexpm1(V(-2) * ops::detail::vabs(u));
    const V t = -m / (V(2) + m);
    return ops::detail::select_nonneg(u, t, -t);
  }
  template <class V>
  static split_complex<V> cplx(const split_complex<V>& z) {
    const split_complex<V> s = ops::csigmoid(split_complex<V>{V(2) * z.re, V(2) * z.im});
    return {V(2) * s.re - V(1), V(2) * s.im};
  }
  template <class V>
  static V deriv(const V& u) {
    const V w = ops::detail::vexp(V(-2) * ops::detail::vabs(u)), d = V(1) + w;
    return V(4) * w / (d * d);
  }
};

/// phi(u) = clip(u, 0, 1); complex: z on 0 <= Re z <= 1, the constants 0 and 1 outside.
/// NaN propagates (every comparison with NaN is false).
struct hard_sigmoid_act {
  template <class V>
  static V real(const V& u) {
    return vselect(u < V(0), V(0), vselect(u > V(1), V(1), u));
  }
  template <class V>
  static split_complex<V> cplx(const split_complex<V>& z) {
    return {real(z.re), vselect((z.re < V(0)) || (z.re > V(1)), V(0), z.im)};
  }
  template <class V>
  static V deriv(const V& u) {
    return vselect((u < V(0)) || (u > V(1)), V(0), V(1));
  }
};

// ---------------------------------------------------------------------------------------------
// detection of the functor concept

template <class F, class T>
using real_result = decltype(std::declval<const F&>().real(std::declval<const T&>()));
template <class F, class T>
using deriv_result = decltype(std::declval<const F&>().deriv(std::declval<const T&>()));
template <class F, class Z>
using cplx_result = decltype(std::declval<const F&>().cplx(std::declval<const Z&>()));

template <class R, class Void, template <class...> class Op, class... A>
struct detect_to : std::false_type {};
template <class R, template <class...> class Op, class... A>
struct detect_to<R, std::void_t<Op<A...>>, Op, A...> : std::is_convertible<Op<A...>, R> {};
/// Op<A...> is well formed and converts to R.
template <class R, template <class...> class Op, class... A>
inline constexpr bool returns = detect_to<R, void, Op, A...>::value;

/// cplx on split_complex<T> (else std::complex<T> is used).
template <class F, class T>
inline constexpr bool has_split_cplx = returns<split_complex<T>, cplx_result, F, split_complex<T>>;
/// The scalar form for T: real, deriv and a complex cplx.
template <class F, class T>
inline constexpr bool has_scalar_form = returns<T, real_result, F, T> && returns<T, deriv_result, F, T> &&
                                        (has_split_cplx<F, T> ||
                                         returns<std::complex<T>, cplx_result, F, std::complex<T>>);
/// The batch form for T (always false without a vector path).
template <class F, class T, bool = simd::active<T>>
inline constexpr bool has_batch_form = false;
#if WEFT_USE_XSIMD
template <class F, class T>
inline constexpr bool has_batch_form<F, T, true> =
    returns<simd::batch<T>, real_result, F, simd::batch<T>> &&
    returns<simd::batch<T>, deriv_result, F, simd::batch<T>> &&
    returns<split_complex<simd::batch<T>>, cplx_result, F, split_complex<simd::batch<T>>>;
#endif

template <class F, class T>
split_complex<T> cplx_scalar(const F& f, const split_complex<T>& z) {
  if constexpr (has_split_cplx<F, T>) {
    return f.cplx(z);
  } else {
    const std::complex<T> r(f.cplx(std::complex<T>(z.re, z.im)));
    return {r.real(), r.imag()};
  }
}

// ---------------------------------------------------------------------------------------------
// array kernels of one functor (self points at the functor)

template <class F, class T>
void kernel_real(const void* self, const T* u, T* r, index_t n, bool vectorize) {
  const F& f = *static_cast<const F*>(self);
#if WEFT_USE_XSIMD
  if constexpr (has_batch_form<F, T>) {
    if (vectorize) {
      using B = simd::batch<T>;
      simd::map(u, r, n, [&f](const B& x) { return B(f.real(x)); }, [&f](T x) { return T(f.real(x)); });
      return;
    }
  }
#endif
  (void)vectorize;
  for (index_t i = 0; i < n; ++i) r[i] = T(f.real(u[i]));
}

template <class F, class T>
void kernel_deriv(const void* self, const T* u, T* d, index_t n, bool vectorize) {
  const F& f = *static_cast<const F*>(self);
#if WEFT_USE_XSIMD
  if constexpr (has_batch_form<F, T>) {
    if (vectorize) {
      using B = simd::batch<T>;
      simd::map(u, d, n, [&f](const B& x) { return B(f.deriv(x)); }, [&f](T x) { return T(f.deriv(x)); });
      return;
    }
  }
#endif
  (void)vectorize;
  for (index_t i = 0; i < n; ++i) d[i] = T(f.deriv(u[i]));
}

template <class F, class T>
void kernel_planes(const void* self, const T* re, const T* im, T* ore, T* oim, index_t n, bool vectorize) {
  const F& f = *static_cast<const F*>(self);
  auto fs = [&f](const split_complex<T>& z) { return cplx_scalar(f, z); };
#if WEFT_USE_XSIMD
  if constexpr (has_batch_form<F, T>) {
    using B = simd::batch<T>;
    ops::map_planes(
        re, im, ore, oim, n, [&f](const split_complex<B>& z) { return split_complex<B>(f.cplx(z)); }, fs, vectorize);
    return;
  }
#endif
  (void)vectorize;
  ops::map_planes_scalar(re, im, ore, oim, n, fs);
}

/// The array kernels of one scalar type; all null when the functor has no form for T.
template <class T>
struct ActKernels {
  void (*real)(const void*, const T*, T*, index_t, bool) = nullptr;
  void (*deriv)(const void*, const T*, T*, index_t, bool) = nullptr;
  void (*planes)(const void*, const T*, const T*, T*, T*, index_t, bool) = nullptr;
  bool batch = false;  ///< the vector path exists
};

template <class F, class T>
constexpr ActKernels<T> make_kernels() {
  ActKernels<T> k;
  if constexpr (has_scalar_form<F, T>) {
    k.real = &kernel_real<F, T>;
    k.deriv = &kernel_deriv<F, T>;
    k.planes = &kernel_planes<F, T>;
    k.batch = has_batch_form<F, T>;
  }
  return k;
}

struct ActTable {
  ActKernels<float> f;
  ActKernels<double> d;
};

template <class F>
inline constexpr ActTable act_table{make_kernels<F, float>(), make_kernels<F, double>()};
template <class F>
inline constexpr F act_instance{};

}  // namespace detail

/// The activation phi of a network: a built-in constant or a user functor (see the file
/// comment). Cheap to copy. Default: sigmoid.
class Activation {
 public:
  static const Activation sigmoid, dsilu, identity, tanh, hard_sigmoid;

  constexpr Activation() noexcept : Activation(&detail::act_table<detail::sigmoid_act>,
                                               &detail::act_instance<detail::sigmoid_act>, "sigmoid") {}

  /// Wraps a copy of the functor f (the concept in the file comment) under `name`.
  template <class F>
  static Activation custom(F f, std::string name) {
    static_assert(detail::has_scalar_form<F, double> || detail::has_scalar_form<F, float>,
                  "ep::Activation::custom(f, name): f needs real(T), deriv(T) and cplx(split_complex<T>) or "
                  "cplx(std::complex<T>) members for T = double or float (see weft/ep/activation.hpp)");
    auto h = std::make_shared<const Holder<F>>(Holder<F>{std::move(f), std::move(name)});
    Activation a(&detail::act_table<F>, &h->f, h->name.c_str());
    a.hold_ = std::move(h);
    return a;
  }

  /// The name given at construction ("sigmoid", ... or the custom name); valid while this
  /// activation (or a copy) lives.
  const char* name() const noexcept { return name_; }
  bool is_custom() const noexcept { return hold_ != nullptr; }
  /// Whether there is a form for T (float or double).
  template <class T>
  bool supports() const noexcept {
    return kernels<T>().real != nullptr;
  }
  /// Whether the T arrays run on the vector path (a batch form and simd::active<T>).
  template <class T>
  bool vectorized() const noexcept {
    return kernels<T>().batch;
  }

  /// r[i] = phi(u[i]).
  template <class T>
  void values(const T* u, T* r, index_t n, bool vectorize = true) const {
    kernels_checked<T>().real(self_, u, r, n, vectorize);
  }
  /// d[i] = phi'(u[i]).
  template <class T>
  void derivatives(const T* u, T* d, index_t n, bool vectorize = true) const {
    kernels_checked<T>().deriv(self_, u, d, n, vectorize);
  }
  /// (ore, oim)[i] = phi(re[i] + i im[i]) (outputs may alias inputs).
  template <class T>
  void planes(const T* re, const T* im, T* ore, T* oim, index_t n, bool vectorize = true) const {
    kernels_checked<T>().planes(self_, re, im, ore, oim, n, vectorize);
  }

  /// Built-ins equal themselves; a custom activation equals its copies only.
  friend bool operator==(const Activation& a, const Activation& b) noexcept {
    return a.table_ == b.table_ && a.self_ == b.self_;
  }
  friend bool operator!=(const Activation& a, const Activation& b) noexcept { return !(a == b); }

 private:
  template <class F>
  struct Holder {
    F f;
    std::string name;
  };
  constexpr Activation(const detail::ActTable* t, const void* self, const char* name) noexcept
      : table_(t), self_(self), name_(name) {}

  template <class T>
  const detail::ActKernels<T>& kernels() const noexcept {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "ep::Activation: arrays of float or double only");
    if constexpr (std::is_same_v<T, float>) return table_->f;
    else return table_->d;
  }
  template <class T>
  const detail::ActKernels<T>& kernels_checked() const {
    WEFT_CHECK(supports<T>(), config, "ep::Activation", "expected an activation with a ",
               std::is_same_v<T, float> ? "float" : "double", " form, got '", name_, "' without one");
    return kernels<T>();
  }

  const detail::ActTable* table_;
  const void* self_;
  const char* name_;
  std::shared_ptr<const void> hold_;
};

inline const Activation Activation::sigmoid{&detail::act_table<detail::sigmoid_act>,
                                            &detail::act_instance<detail::sigmoid_act>, "sigmoid"};
inline const Activation Activation::dsilu{&detail::act_table<detail::dsilu_act>,
                                          &detail::act_instance<detail::dsilu_act>, "dsilu"};
inline const Activation Activation::identity{&detail::act_table<detail::identity_act>,
                                             &detail::act_instance<detail::identity_act>, "identity"};
inline const Activation Activation::tanh{&detail::act_table<detail::tanh_act>,
                                         &detail::act_instance<detail::tanh_act>, "tanh"};
inline const Activation Activation::hard_sigmoid{&detail::act_table<detail::hard_sigmoid_act>,
                                                 &detail::act_instance<detail::hard_sigmoid_act>, "hard_sigmoid"};

inline const char* to_string(const Activation& a) { return a.name(); }

/// r[i] = phi(u[i]) for real states.
template <class T>
void activate(const Activation& a, const T* u, T* r, index_t n, bool vectorize = true) {
  a.values(u, r, n, vectorize);
}
/// d[i] = phi'(u[i]) for real states.
template <class T>
void activate_derivative(const Activation& a, const T* u, T* d, index_t n, bool vectorize = true) {
  a.derivatives(u, d, n, vectorize);
}
/// (ore, oim)[i] = phi(re[i] + i im[i]) for complex states as planes (outputs may alias inputs).
template <class T>
void activate_planes(const Activation& a, const T* re, const T* im, T* ore, T* oim, index_t n,
                     bool vectorize = true) {
  a.planes(re, im, ore, oim, n, vectorize);
}

/// phi(u) of one real value.
template <class T>
T phi(const Activation& a, T u) {
  T r;
  a.values(&u, &r, 1, false);
  return r;
}
/// phi(z) of one complex value (the same formula as the plane kernels).
template <class T>
std::complex<T> phi(const Activation& a, std::complex<T> z) {
  const T re = z.real(), im = z.imag();
  T ore, oim;
  a.planes(&re, &im, &ore, &oim, 1, false);
  return {ore, oim};
}
/// phi'(u) of one real value.
template <class T>
T phi_derivative(const Activation& a, T u) {
  T d;
  a.derivatives(&u, &d, 1, false);
  return d;
}

}  // namespace ep
WEFT_NAMESPACE_END
