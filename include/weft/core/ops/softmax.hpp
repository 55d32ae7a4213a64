// weft/core/ops/softmax.hpp - row-wise softmax, log-softmax and layer normalisation kernels.
//
// All work on `rows` contiguous rows of length n (the last axis). Softmax subtracts the row
// maximum (by real part) before exponentiating. Rows are independent and run in parallel for
// large inputs; each row's arithmetic is sequential, so results do not depend on threads.
//
// Range (real types). A row whose maximum is +inf gets the limit of softmax as that entry
// grows: the +inf entries share the mass equally, the rest get 0 (log_softmax: log(1/c) and
// -inf); a row of only -inf entries or with a NaN stays NaN. Layer norm accepts finite rows
// whose deviations x - mean are finite (max |x| <= max / 2 is enough): when the sum or the sum
// of squares overflows (float rows beyond about 1e19, double beyond
// 1e154), a cold second pass recomputes mean and 1/std with the row scaled by its largest
// |x - mean|. Both checks are one branch per row; ordinary rows keep their bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "weft/core/parallel.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

namespace detail {
template <class T>
T row_max(const T* x, index_t n) {
  T m = x[0];
  for (index_t j = 1; j < n; ++j)
    if (real_part(x[j]) > real_part(m)) m = x[j];
  return m;
}
inline index_t row_grain(index_t n) { return n > 0 ? (WEFT_PARALLEL_GRAIN + n - 1) / n : 1; }

/// True when m (a row maximum) is +inf: the row takes the limit below instead of exp(x - m).
template <class T>
bool is_pos_inf(const T& m) noexcept {
  if constexpr (is_complex_v<T>) return false;
  else return m == std::numeric_limits<T>::infinity();
}

/// The limit of softmax on a row whose maximum is +inf: 1/c on the c entries equal to +inf, 0
/// elsewhere. With log_out, log of that (log(1/c) and -inf). Returns c.
template <class T>
WEFT_COLD index_t softmax_row_at_inf(const T* x, T* y, index_t n, bool log_out) {
  index_t c = 0;
  for (index_t j = 0; j < n; ++j) c += is_pos_inf(x[j]) ? 1 : 0;
  const T share = T(1) / T(real_t<T>(c)), zero = log_out ? -std::numeric_limits<real_t<T>>::infinity() : T(0);
  const T top = log_out ? std::log(share) : share;
  for (index_t j = 0; j < n; ++j) y[j] = is_pos_inf(x[j]) ? top : zero;
  return c;
}
}  // namespace detail

/// y = softmax(x) along rows.
template <class T>
void softmax_rows(const T* x, T* y, index_t rows, index_t n) {
  parallel_for(0, rows, detail::row_grain(n), [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) {
      const T* xr = x + r * n;
      T* yr = y + r * n;
      T m = detail::row_max(xr, n), s(0);
      if (WEFT_UNLIKELY(detail::is_pos_inf(m))) {
        detail::softmax_row_at_inf(xr, yr, n, false);
        continue;
      }
      for (index_t j = 0; j < n; ++j) s += (yr[j] = std::exp(xr[j] - m));
      T inv = T(1) / s;
      for (index_t j = 0; j < n; ++j) yr[j] *= inv;
    }
  });
}

/// y = log_softmax(x) along rows.
template <class T>
void log_softmax_rows(const T* x, T* y, index_t rows, index_t n) {
  parallel_for(0, rows, detail::row_grain(n), [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) {
      const T* xr = x + r * n;
      T* yr = y + r * n;
      T m = detail::row_max(xr, n), s(0);
      if (WEFT_UNLIKELY(detail::is_pos_inf(m))) {
        detail::softmax_row_at_inf(xr, yr, n, true);
        continue;
      }
      for (index_t j = 0; j < n; ++j) s += std::exp(xr[j] - m);
      // (x - m) - log(s), not x - (m + log(s)): when |m| >> log(s) the sum rounds log(s) away
      const T ls = std::log(s);
      for (index_t j = 0; j < n; ++j) yr[j] = (xr[j] - m) - ls;
    }
  });
}

/// Softmax cross entropy against integer labels, per row of z scaled by `scale`:
/// prob = softmax(scale z) and loss = log(sum exp(scale z - m)) - (scale z_label - m), with one
/// exp per element (the backward pass reuses prob).
template <class T>
void softmax_xent_rows(const T* z, T scale, const int* labels, T* prob, T* loss, index_t rows, index_t n) {
  parallel_for(0, rows, detail::row_grain(n), [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) {
      const T* zr = z + r * n;
      T* pr = prob + r * n;
      for (index_t j = 0; j < n; ++j) pr[j] = scale * zr[j];
      const T m = detail::row_max(pr, n), label_logit = pr[labels[r]];
      if (WEFT_UNLIKELY(detail::is_pos_inf(m))) {  // the limit: -log(1/c) on a +inf label, else +inf
        const index_t c = detail::softmax_row_at_inf(pr, pr, n, false);
        loss[r] = detail::is_pos_inf(label_logit) ? std::log(T(real_t<T>(c))) : T(std::numeric_limits<real_t<T>>::infinity());
        continue;
      }
      T s(0);
      for (index_t j = 0; j < n; ++j) s += (pr[j] = std::exp(pr[j] - m));
      const T inv = T(1) / s;
      for (index_t j = 0; j < n; ++j) pr[j] *= inv;
      loss[r] = std::log(s) - (label_logit - m);
    }
  });
}

/// gx += y * (gy - <gy, y>) per row, y = softmax(x).
template <class T>
void softmax_backward_rows(const T* y, const T* gy, T* gx, index_t rows, index_t n) {
  parallel_for(0, rows, detail::row_grain(n), [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) {
      const T *yr = y + r * n, *gr = gy + r * n;
      T* dr = gx + r * n;
      T dot(0);
      for (index_t j = 0; j < n; ++j) dot += gr[j] * yr[j];
      for (index_t j = 0; j < n; ++j) dr[j] += yr[j] * (gr[j] - dot);
    }
  });
}

/// gx += gy - exp(y) * sum(gy) per row, y = log_softmax(x).
template <class T>
void log_softmax_backward_rows(const T* y, const T* gy, T* gx, index_t rows, index_t n) {
  parallel_for(0, rows, detail::row_grain(n), [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) {
      const T *yr = y + r * n, *gr = gy + r * n;
      T* dr = gx + r * n;
      T s(0);
      for (index_t j = 0; j < n; ++j) s += gr[j];
      for (index_t j = 0; j < n; ++j) dr[j] += gr[j] - std::exp(yr[j]) * s;
    }
  });
}

namespace detail {
/// Mean and 1 / sqrt(var + eps) of a finite row whose plain sums overflowed: the row is scaled
/// by 1/a (a = max |x|, then max |x - mean|) so that no sum can overflow.
template <class T>
WEFT_COLD void layer_norm_stats_scaled(const T* xr, index_t n, real_t<T> eps, T& mean, T& rs) {
  using R = real_t<T>;
  R a(0);
  for (index_t j = 0; j < n; ++j) a = std::max(a, R(std::abs(xr[j])));
  if (!(a > R(0)) || !std::isfinite(a)) return;  // zero, Inf or NaN: keep the plain result
  mean = T(0);
  for (index_t j = 0; j < n; ++j) mean += (xr[j] / a) / T(R(n));
  mean *= a;
  R d(0);
  for (index_t j = 0; j < n; ++j) d = std::max(d, R(std::abs(xr[j] - mean)));
  if (!std::isfinite(d)) return;  // x - mean itself overflows: outside the documented range
  if (!(d > R(0))) {
    rs = T(R(1) / std::sqrt(eps));
    return;
  }
  T v(0);
  for (index_t j = 0; j < n; ++j) v += ((xr[j] - mean) / d) * ((xr[j] - mean) / d);
  v /= T(R(n));
  rs = T(R(1) / d) / std::sqrt(v + T(eps / d / d));  // 1 / sqrt(d^2 v + eps)
}
}  // namespace detail

/// Layer norm per row: xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) with the biased
/// variance, y = xhat * gamma + beta (gamma/beta may be null: no affine part). Stores xhat and
/// rstd for the backward pass.
template <class T>
void layer_norm_rows(const T* x, const T* gamma, const T* beta, T* y, T* xhat, T* rstd,
                     index_t rows, index_t n, real_t<T> eps) {
  parallel_for(0, rows, detail::row_grain(n), [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) {
      const T* xr = x + r * n;
      T mean(0), var(0);
      for (index_t j = 0; j < n; ++j) mean += xr[j];
      mean /= T(real_t<T>(n));
      for (index_t j = 0; j < n; ++j) var += (xr[j] - mean) * (xr[j] - mean);
      var /= T(real_t<T>(n));
      T rs = T(1) / std::sqrt(var + T(eps));
      if (WEFT_UNLIKELY(!std::isfinite(real_part(mean)) || !std::isfinite(real_part(var))))
        detail::layer_norm_stats_scaled(xr, n, eps, mean, rs);
      rstd[r] = rs;
      for (index_t j = 0; j < n; ++j) {
        T h = (xr[j] - mean) * rs;
        xhat[r * n + j] = h;
        y[r * n + j] = (gamma ? h * gamma[j] : h) + (beta ? beta[j] : T(0));
      }
    }
  });
}

/// Backward of layer_norm_rows: gx += rstd * (gh - mean(gh) - xhat * mean(gh * xhat)) with
/// gh = gy * gamma; ggamma += sum_rows gy * xhat; gbeta += sum_rows gy (null sinks skipped).
template <class T>
void layer_norm_backward_rows(const T* gy, const T* gamma, const T* xhat, const T* rstd, T* gx,
                              T* ggamma, T* gbeta, index_t rows, index_t n) {
  if (gx) {
    parallel_for(0, rows, detail::row_grain(n), [&](index_t lo, index_t hi) {
      for (index_t r = lo; r < hi; ++r) {
        const T *gr = gy + r * n, *hr = xhat + r * n;
        T m1(0), m2(0);
        for (index_t j = 0; j < n; ++j) {
          T gh = gamma ? gr[j] * gamma[j] : gr[j];
          m1 += gh;
          m2 += gh * hr[j];
        }
        m1 /= T(real_t<T>(n));
        m2 /= T(real_t<T>(n));
        for (index_t j = 0; j < n; ++j) {
          T gh = gamma ? gr[j] * gamma[j] : gr[j];
          gx[r * n + j] += rstd[r] * (gh - m1 - hr[j] * m2);
        }
      }
    });
  }
  // parameter gradients: a fixed row order, so the sums do not depend on threads
  for (index_t r = 0; r < rows; ++r)
    for (index_t j = 0; j < n; ++j) {
      if (ggamma) ggamma[j] += gy[r * n + j] * xhat[r * n + j];
      if (gbeta) gbeta[j] += gy[r * n + j];
    }
}

}  // namespace ops
WEFT_NAMESPACE_END
