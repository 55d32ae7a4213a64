// weft/reparam/kernels.hpp - the compander's kernels on raw arrays (no autograd).
//
// With u = v / b and the policy's f (psi.hpp):
//   compander_forward      w = a f(u)
//   compander_backward     gv += g (a / b) f'(u); optionally the sums S_a = sum g w and
//                          S_b = sum g u f'(u), from which dL/da = S_a / a, dL/db = -(a / b) S_b
//   compander_derivative   d = Psi'(v) = (a / b) f'(u)
//   compander_decay_grad   gv += lambda Psi(v) Psi'(v)   (weight decay on w = Psi(v))
//   compander_inverse      v = b finv(w / a), |w / a| clamped to limit - delta (scalar only)
// (The compander-aware Adam step is ops::adam_update_scaled with d = Psi'(v), core/ops/optim.hpp.)
// The forward divides by b (so Psi(inverse(w)) reproduces w as closely as the division
// allows); the others multiply by 1 / b (one division less per element in the backward).
// Each has a scalar body (the reference, also the path for WEFT_DONT_VECTORIZE) and an xsimd
// body; the drivers dispatch on simd::active<T> and split the work with parallel_for. The
// backward sums are formed per block of compander_block elements (in double on the scalar
// path, in T per SIMD lane on the vector path) and added in block order, so every result is
// the same with 1 and N threads, bit for bit.
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "weft/core/ops/optim.hpp"
#include "weft/core/parallel.hpp"
#include "weft/core/simd/simd.hpp"
#include "weft/reparam/psi.hpp"

WEFT_NAMESPACE_BEGIN
namespace reparam {

/// Elements per reduction block of compander_backward (a multiple of every SIMD width).
inline constexpr index_t compander_block = 4096;

/// The two sums of compander_backward (in double).
struct CompanderGradSums {
  double g_w = 0;     ///< sum_j g_j w_j            (dL/da = g_w / a)
  double g_u_df = 0;  ///< sum_j g_j u_j f'(u_j)    (dL/db = -(a / b) g_u_df)
};

// ---------------------------------------------------------------------------------------------
// scalar bodies

template <class Psi, class T>
void compander_forward_scalar(const T* v, T* w, index_t n, T a, T b) {
  for (index_t i = 0; i < n; ++i) w[i] = a * Psi::f(v[i] / b);
}

/// One block of the backward pass; gv may be nullptr (no gradient for v).
template <class Psi, class T>
CompanderGradSums compander_backward_scalar(const T* v, const T* w, const T* g, T* gv, index_t n, T a, T b,
                                            bool sums) {
  const T s = a / b, rb = T(1) / b;
  CompanderGradSums r;
  for (index_t i = 0; i < n; ++i) {
    const T u = v[i] * rb, df = Psi::df(u);
    if (gv) gv[i] += g[i] * (s * df);
    if (sums) {
      r.g_w += double(g[i]) * double(w[i]);
      r.g_u_df += double(g[i]) * double(u * df);
    }
  }
  return r;
}

template <class Psi, class T>
void compander_derivative_scalar(const T* v, T* d, index_t n, T a, T b) {
  const T s = a / b, rb = T(1) / b;
  for (index_t i = 0; i < n; ++i) d[i] = s * Psi::df(v[i] * rb);
}

template <class Psi, class T>
void compander_decay_grad_scalar(const T* v, T* gv, index_t n, T a, T b, T lambda) {
  const T s = a / b, rb = T(1) / b;
  for (index_t i = 0; i < n; ++i) {
    const T u = v[i] * rb;
    gv[i] += lambda * (a * Psi::f(u)) * (s * Psi::df(u));
  }
}

// ---------------------------------------------------------------------------------------------
// vector bodies

#if WEFT_USE_XSIMD
template <class Psi, class T>
void compander_forward_simd(const T* v, T* w, index_t n, T a, T b) {
  using B = simd::batch<T>;
  const B va(a), vb(b);
  simd::map(v, w, n, [&](const B& x) { return va * Psi::fv(x / vb); }, [&](T x) { return a * Psi::f(x / b); });
}

namespace detail {
// The loop of compander_backward_simd with its two options as template parameters, so that
// no test is left in the loop (GCC unswitches loops only at -O3).
template <class Psi, bool WithGv, bool WithSums, class T>
CompanderGradSums compander_backward_simd_loop(const T* v, const T* w, const T* g, T* gv, index_t n, T a, T b) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  const B vrb(T(1) / b), vs(a / b);
  B sa(T(0)), sb(T(0));
  const index_t full = n - n % W;  // not `i + W <= n`: see simd::map
  for (index_t i = 0; i < full; i += W) {
    const B u = simd::load(v + i) * vrb, df = Psi::dfv(u), gi = simd::load(g + i);
    if constexpr (WithGv) simd::store(gv + i, simd::load(gv + i) + gi * (vs * df));
    if constexpr (WithSums) {
      sa += gi * simd::load(w + i);
      sb += gi * (u * df);
    }
  }
  CompanderGradSums r = compander_backward_scalar<Psi>(v + full, w + full, g + full, WithGv ? gv + full : nullptr,
                                                       n - full, a, b, WithSums);
  if constexpr (WithSums) {
    r.g_w += double(simd::hadd(sa));
    r.g_u_df += double(simd::hadd(sb));
  }
  return r;
}
}  // namespace detail

template <class Psi, class T>
CompanderGradSums compander_backward_simd(const T* v, const T* w, const T* g, T* gv, index_t n, T a, T b,
                                          bool sums) {
  if (gv) {
    return sums ? detail::compander_backward_simd_loop<Psi, true, true>(v, w, g, gv, n, a, b)
                : detail::compander_backward_simd_loop<Psi, true, false>(v, w, g, gv, n, a, b);
  }
  return sums ? detail::compander_backward_simd_loop<Psi, false, true>(v, w, g, gv, n, a, b)
              : CompanderGradSums{};
}

template <class Psi, class T>
void compander_derivative_simd(const T* v, T* d, index_t n, T a, T b) {
  using B = simd::batch<T>;
  const T s = a / b, rb = T(1) / b;
  const B vrb(rb), vs(s);
  simd::map(v, d, n, [&](const B& x) { return vs * Psi::dfv(x * vrb); }, [&](T x) { return s * Psi::df(x * rb); });
}

template <class Psi, class T>
void compander_decay_grad_simd(const T* v, T* gv, index_t n, T a, T b, T lambda) {
  using B = simd::batch<T>;
  constexpr index_t W = simd::width<T>;
  const B va(a), vrb(T(1) / b), vs(a / b), vl(lambda);
  const index_t full = n - n % W;
  for (index_t i = 0; i < full; i += W) {
    const B u = simd::load(v + i) * vrb;
    simd::store(gv + i, simd::load(gv + i) + vl * (va * Psi::fv(u)) * (vs * Psi::dfv(u)));
  }
  compander_decay_grad_scalar<Psi>(v + full, gv + full, n - full, a, b, lambda);
}

#endif

// ---------------------------------------------------------------------------------------------
// drivers

/// w = a f(v / b) over n elements.
template <class Psi, class T>
void compander_forward(const T* v, T* w, index_t n, T a, T b) {
  parallel_for(0, n, [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      compander_forward_simd<Psi>(v + lo, w + lo, hi - lo, a, b);
      return;
    }
#endif
    compander_forward_scalar<Psi>(v + lo, w + lo, hi - lo, a, b);
  });
}

/// gv += g Psi'(v) (skipped when gv is nullptr); with sums, also returns S_a and S_b (see
/// CompanderGradSums), added block by block in a fixed order. w is the forward output.
template <class Psi, class T>
CompanderGradSums compander_backward(const T* v, const T* w, const T* g, T* gv, index_t n, T a, T b, bool sums) {
  const index_t blocks = (n + compander_block - 1) / compander_block;
  thread_local std::vector<CompanderGradSums> partial;  // reused: no allocation per step
  partial.assign(std::size_t(blocks), CompanderGradSums{});
  CompanderGradSums* part = partial.data();
  const index_t grain = index_t(WEFT_PARALLEL_GRAIN) / compander_block > 0 ? index_t(WEFT_PARALLEL_GRAIN) / compander_block : 1;
  parallel_for(0, blocks, grain, [&](index_t lo, index_t hi) {
    for (index_t k = lo; k < hi; ++k) {
      const index_t o = k * compander_block, len = (k + 1 == blocks) ? n - o : compander_block;
      T* gvo = gv ? gv + o : nullptr;
#if WEFT_USE_XSIMD
      if constexpr (simd::active<T>) {
        part[k] = compander_backward_simd<Psi>(v + o, w + o, g + o, gvo, len, a, b, sums);
        continue;
      }
#endif
      part[k] = compander_backward_scalar<Psi>(v + o, w + o, g + o, gvo, len, a, b, sums);
    }
  });
  CompanderGradSums r;
  for (index_t k = 0; k < blocks; ++k) {
    r.g_w += part[k].g_w;
    r.g_u_df += part[k].g_u_df;
  }
  return r;
}

/// d = Psi'(v) = (a / b) f'(v / b).
template <class Psi, class T>
void compander_derivative(const T* v, T* d, index_t n, T a, T b) {
  parallel_for(0, n, [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      compander_derivative_simd<Psi>(v + lo, d + lo, hi - lo, a, b);
      return;
    }
#endif
    compander_derivative_scalar<Psi>(v + lo, d + lo, hi - lo, a, b);
  });
}

/// gv += lambda Psi(v) Psi'(v): the gradient of (lambda / 2) ||Psi(v)||^2 with respect to v.
template <class Psi, class T>
void compander_decay_grad(const T* v, T* gv, index_t n, T a, T b, T lambda) {
  parallel_for(0, n, [&](index_t lo, index_t hi) {
#if WEFT_USE_XSIMD
    if constexpr (simd::active<T>) {
      compander_decay_grad_simd<Psi>(v + lo, gv + lo, hi - lo, a, b, lambda);
      return;
    }
#endif
    compander_decay_grad_scalar<Psi>(v + lo, gv + lo, hi - lo, a, b, lambda);
  });
}

/// The compander-aware Adam step (see CompanderAdam in reparam/optim.hpp) given d = Psi'(p).
/// The number of elements with |w / a| >= Psi::limit - delta (those compander_inverse clamps).
template <class Psi, class T>
index_t compander_clamp_count(const T* w, index_t n, double a, double delta) {
  const double edge = Psi::limit - delta;
  index_t c = 0;
  for (index_t i = 0; i < n; ++i) c += std::abs(double(w[i]) / a) >= edge;
  return c;
}

/// v = b finv(w / a) in double, with w / a clamped to +-(limit - delta) (sign kept, so v stays
/// finite); returns the number of clamped elements. Scalar: it runs once, at initialisation.
template <class Psi, class T>
index_t compander_inverse(const T* w, T* v, index_t n, double a, double b, double delta) {
  const double edge = Psi::limit - delta;
  index_t c = 0;
  for (index_t i = 0; i < n; ++i) {
    double r = double(w[i]) / a;
    if (std::abs(r) >= edge) {
      r = std::copysign(edge, r);
      ++c;
    }
    v[i] = T(b * Psi::finv(r));
  }
  return c;
}

}  // namespace reparam
WEFT_NAMESPACE_END
