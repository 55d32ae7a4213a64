// weft/core/ops/softmax.hpp - row-wise softmax, log-softmax and layer normalisation kernels.
//
// All work on `rows` contiguous rows of length n (the last axis). Softmax subtracts the row
// maximum (by real part) before exponentiating. Rows are independent and run in parallel for
// large inputs; each row's arithmetic is sequential, so results do not depend on threads.
#pragma once

#include <cmath>

#include "weft/core/parallel.hpp"
#include "weft/core/tensor.hpp"

namespace weft::ops {

namespace detail {
template <class T>
T row_max(const T* x, index_t n) {
  T m = x[0];
  for (index_t j = 1; j < n; ++j)
    if (real_part(x[j]) > real_part(m)) m = x[j];
  return m;
}
inline index_t row_grain(index_t n) { return n > 0 ? (WEFT_PARALLEL_GRAIN + n - 1) / n : 1; }
}  // namespace detail

/// y = softmax(x) along rows.
template <class T>
void softmax_rows(const T* x, T* y, index_t rows, index_t n) {
  parallel_for(0, rows, detail::row_grain(n), [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r) {
      const T* xr = x + r * n;
      T* yr = y + r * n;
      T m = detail::row_max(xr, n), s(0);
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

}  // namespace weft::ops
