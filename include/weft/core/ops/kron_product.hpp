// weft/core/ops/kron_product.hpp - y = x H + b with H = sum_i A_i (x) B_i, forward and
// backward, without forming H (raw row-major buffers, no autograd).
//
// Rows x_s (s < N) of x [N, k] are read as n x p matrices X_s (X_s[a][u] = x_s[a p + u]) and
// rows of y [N, d] as n x q matrices Y_s; then (the PHM identity, Compacter spec Sec. 7)
//   Y_s = sum_i A_i^T X_s B_i,          y_s = vec_row(Y_s) + b    (equals x_s H + b)
// Full B_i [n, p, q] (phm_forward / phm_backward):
//   Z[s][a][i][:] = X_s[a][:] B_i       n GEMMs (N n x p)(p x q) into the columns i q.. of Z
//   y[s][c][:]    = b + sum_{a,i} A_i[a][c] Z[s][a][i][:]          (kron_mix)
//   backward, with G_s the n x q view of the output gradient g_s:
//   W[s][a][i][:] = sum_c A_i[a][c] G_s[c][:]                     (= dL/dZ, kron_mix)
//   dA_i[a][c]   += sum_s <Z[s][a][i][:], G_s[c][:]>               (kron_mix_grad)
//   dB_i         += X^T W_i   (p x N n)(N n x q)
//   dX           += sum_i W_i B_i^T
//   N k d (forward) and 2 N k d (backward) multiply-adds as a dense layer, plus 3 N n^2 d for the
//   mixing, instead of n k d to form H and n k d more for its adjoint.
// Low-rank B_i = s_i t_i with s [n, p, r], t [n, r, q] (lphm_forward / lphm_backward; the
// Compacter "LPHM"): S^T [n r, p] with S^T[i r + j][u] = s[i][u][j], then
//   U = X S       (N n x p)(p x n r)      U[s][a][i][j] = (X_s s_i)[a][j]
//   V[s][c][i][:] = sum_a A_i[a][c] U[s][a][i][:]                  (kron_mix)
//   Y = V t       (N n x n r)(n r x q)    t read as [n r, q]
//   backward: P = G t^T; dt += V^T G; dA_i[a][c] += sum_s <U[s][a][i][:], P[s][c][i][:]>;
//   Q[s][a][i][:] = sum_c A_i[a][c] P[s][c][i][:]; ds += (X^T Q) scattered back; dX += Q S^T.
//   N n r (k + n^2 + d) multiply-adds forward instead of N k d. The products with n r columns
//   run as thin products (thin_gemm.hpp) for n r <= 16 (a GEMM would pack the big operand for a
//   few multiply-adds per element), as Eigen GEMMs above.
// The intermediate buffers (Z, or S, U, V) are written by the forward and read by the backward.
// Threads: the GEMMs run through Eigen (large products split into blocks of rows with ops::gemm's
// shape-only layout), the mixing through kron_mix; results do not depend on the thread count.
#pragma once

#include "weft/core/ops/kron.hpp"
#include "weft/core/ops/matmul.hpp"
#include "weft/core/ops/thin_gemm.hpp"

WEFT_NAMESPACE_BEGIN
namespace ops {

/// Extents of a PHM product: N rows of x [N, n p] mapped to y [N, n q]; r > 0: B_i = s_i t_i of
/// rank r, r == 0: full B_i.
struct KronDims {
  index_t rows = 0, n = 1, p = 1, q = 1, r = 0;
  index_t k() const noexcept { return n * p; }
  index_t d() const noexcept { return n * q; }
};

/// Elements of Z (phm_forward) and of W (phm_backward): N n n q each.
inline index_t phm_workspace(const KronDims& m) { return m.rows * m.n * m.n * m.q; }
/// Elements of each of U, V (lphm_forward) and P, Q (lphm_backward): N n n r each.
inline index_t lphm_workspace(const KronDims& m) { return m.rows * m.n * m.n * m.r; }
/// Elements of S^T (lphm_forward) and of dS^T (lphm_backward): p n r each.
inline index_t lphm_factor_workspace(const KronDims& m) { return m.p * m.n * m.r; }

namespace kron_detail {

template <class T>
void init_rows(T* y, const T* bias, index_t rows, index_t d) {
  if (bias)
    for (index_t s = 0; s < rows; ++s) std::copy(bias, bias + d, y + s * d);
}

template <bool Vec, class T>
void bias_grad(const T* g, T* db, index_t rows, index_t d) {
  for (index_t s = 0; s < rows; ++s) axpy<Vec>(T(1), g + s * d, db, d);
}

template <bool Vec, class T>
void phm_forward(const KronDims& m, const T* x, const T* A, const T* B, const T* bias, T* y, T* Z) {
  const index_t n = m.n, p = m.p, q = m.q, R = m.rows * n;
  ops::detail::own_eigen_threads();
  for_row_blocks(R, double(R) * double(p) * double(q * n), [&](index_t lo, index_t hi) {
    for (index_t i = 0; i < n; ++i)
      ops::detail::gemm_strided(false, false, x + lo * p, p, B + i * p * q, q, Z + lo * n * q + i * q, n * q, hi - lo,
                                q, p, false);
  });
  init_rows(y, bias, m.rows, m.d());
  kron_mix<Vec>(m.rows, n, q, A, true, Z, MixStrides{n * n * q, n * q, q}, y, MixStrides{n * q, q, 0},
                bias != nullptr);
}

template <bool Vec, class T>
void phm_backward(const KronDims& m, const T* g, const T* x, const T* A, const T* B, const T* Z, T* W, T* dx, T* dA,
                  T* dB, T* db) {
  const index_t n = m.n, p = m.p, q = m.q, R = m.rows * n;
  const MixStrides zs{n * n * q, n * q, q}, gs{n * q, q, 0};
  ops::detail::own_eigen_threads();
  if (dA) kron_mix_grad<Vec>(m.rows, n, q, Z, zs, g, gs, dA);
  if (dx || dB) {
    kron_mix<Vec>(m.rows, n, q, A, false, g, gs, W, zs, false);
    const double work = double(R) * double(p) * double(q * n);
    if (dB)
      for_row_blocks(p, work, [&](index_t lo, index_t hi) {
        for (index_t i = 0; i < n; ++i)
          ops::detail::gemm_strided(true, false, x + lo, p, W + i * q, n * q, dB + i * p * q + lo * q, q, hi - lo, q,
                                    R, true);
      });
    if (dx)
      for_row_blocks(R, work, [&](index_t lo, index_t hi) {
        for (index_t i = 0; i < n; ++i)
          ops::detail::gemm_strided(false, true, W + lo * n * q + i * q, n * q, B + i * p * q, q, dx + lo * p, p,
                                    hi - lo, p, q, true);
      });
  }
  if (db) bias_grad<Vec>(g, db, m.rows, m.d());
}

/// Products with the n r columns of the factors run as thin products up to this width.
inline constexpr index_t thin_rank_max = 16;

template <bool Vec, class T>
void lphm_forward(const KronDims& m, const T* x, const T* A, const T* s, const T* t, const T* bias, T* y, T* ST,
                  T* U, T* V) {
  const index_t n = m.n, p = m.p, q = m.q, r = m.r, R = m.rows * n, nr = n * r;
  const bool thin = nr <= thin_rank_max;
  for (index_t i = 0; i < n; ++i)  // ST[i r + j][u] = s[i][u][j]
    for (index_t u = 0; u < p; ++u)
      for (index_t j = 0; j < r; ++j) ST[(i * r + j) * p + u] = s[(i * p + u) * r + j];
  if (thin) thin_detail::thin_dots<Vec>(R, p, nr, x, ST, U, false);  // U = X ST^T
  else ops::gemm(false, true, x, ST, U, R, nr, p, false);
  const MixStrides us{n * nr, nr, r};
  kron_mix<Vec>(m.rows, n, r, A, true, U, us, V, us, false);
  init_rows(y, bias, m.rows, m.d());
  if (thin) thin_detail::thin_combine<Vec>(R, q, nr, V, t, y, bias != nullptr);  // Y (+)= V t
  else ops::gemm(false, false, V, t, y, R, q, nr, bias != nullptr);
}

template <bool Vec, class T>
void lphm_backward(const KronDims& m, const T* g, const T* x, const T* A, const T* ST, const T* t, const T* U,
                   const T* V, T* P, T* Q, T* dST, T* dx, T* dA, T* ds, T* dt, T* db) {
  const index_t n = m.n, p = m.p, q = m.q, r = m.r, R = m.rows * n, nr = n * r;
  const bool thin = nr <= thin_rank_max;
  const MixStrides us{n * nr, nr, r};
  if (thin) thin_detail::thin_dots<Vec>(R, q, nr, g, t, P, false);  // P = G t^T
  else ops::gemm(false, true, g, t, P, R, nr, q, false);
  if (dt) {  // dt += V^T G
    if (thin) thin_detail::thin_accumulate<Vec>(R, q, nr, V, g, dt);
    else ops::gemm(true, false, V, g, dt, nr, q, R, true);
  }
  if (dA) kron_mix_grad<Vec>(m.rows, n, r, U, us, P, us, dA);
  if (dx || ds) {
    kron_mix<Vec>(m.rows, n, r, A, false, P, us, Q, us, false);
    if (ds) {  // dST = Q^T X, then ds[i][u][j] += dST[i r + j][u]
      if (thin) {
        std::fill_n(dST, nr * p, T(0));
        thin_detail::thin_accumulate<Vec>(R, p, nr, Q, x, dST);
      } else {
        ops::gemm(true, false, Q, x, dST, nr, p, R, false);
      }
      for (index_t i = 0; i < n; ++i)
        for (index_t u = 0; u < p; ++u)
          for (index_t j = 0; j < r; ++j) ds[(i * p + u) * r + j] += dST[(i * r + j) * p + u];
    }
    if (dx) {  // dX += Q ST
      if (thin) thin_detail::thin_combine<Vec>(R, p, nr, Q, ST, dx, true);
      else ops::gemm(false, false, Q, ST, dx, R, p, nr, true);
    }
  }
  if (db) bias_grad<Vec>(g, db, m.rows, m.d());
}

}  // namespace kron_detail

/// y = x H + bias (bias may be nullptr) with full B_i; writes Z [phm_workspace(m)] for the
/// backward. `vectorize = false` takes the scalar mixing bodies.
template <class T>
void phm_forward(const KronDims& m, const T* x, const T* A, const T* B, const T* bias, T* y, T* Z,
                 bool vectorize = true) {
  if (vectorize) kron_detail::phm_forward<simd::active<T>>(m, x, A, B, bias, y, Z);
  else kron_detail::phm_forward<false>(m, x, A, B, bias, y, Z);
}

/// Accumulates dx, dA, dB, db (each may be nullptr) from the output gradient g and the Z of
/// phm_forward; W is scratch of phm_workspace(m) elements.
template <class T>
void phm_backward(const KronDims& m, const T* g, const T* x, const T* A, const T* B, const T* Z, T* W, T* dx, T* dA,
                  T* dB, T* db, bool vectorize = true) {
  if (vectorize) kron_detail::phm_backward<simd::active<T>>(m, g, x, A, B, Z, W, dx, dA, dB, db);
  else kron_detail::phm_backward<false>(m, g, x, A, B, Z, W, dx, dA, dB, db);
}

/// y = x H + bias with B_i = s_i t_i (m.r >= 1); writes S^T [lphm_factor_workspace(m)] and U, V
/// [lphm_workspace(m) each] for the backward.
template <class T>
void lphm_forward(const KronDims& m, const T* x, const T* A, const T* s, const T* t, const T* bias, T* y, T* S, T* U,
                  T* V, bool vectorize = true) {
  if (vectorize) kron_detail::lphm_forward<simd::active<T>>(m, x, A, s, t, bias, y, S, U, V);
  else kron_detail::lphm_forward<false>(m, x, A, s, t, bias, y, S, U, V);
}

/// Accumulates dx, dA, ds, dt, db (each may be nullptr) from g and the S^T, U, V of lphm_forward;
/// P, Q [lphm_workspace(m)] and dS [lphm_factor_workspace(m)] are scratch.
template <class T>
void lphm_backward(const KronDims& m, const T* g, const T* x, const T* A, const T* S, const T* t, const T* U,
                   const T* V, T* P, T* Q, T* dS, T* dx, T* dA, T* ds, T* dt, T* db, bool vectorize = true) {
  if (vectorize) kron_detail::lphm_backward<simd::active<T>>(m, g, x, A, S, t, U, V, P, Q, dS, dx, dA, ds, dt, db);
  else kron_detail::lphm_backward<false>(m, g, x, A, S, t, U, V, P, Q, dS, dx, dA, ds, dt, db);
}

}  // namespace ops
WEFT_NAMESPACE_END
