// weft/phm/path.hpp - which way a PHM layer computes x H + b: factored (never forms H), or
// materialised (form H = sum_i A_i (x) B_i, then one GEMM), or from a cached H.
//
// The choice is a cost estimate per call, a roofline model of every kernel the path runs:
//   cost(kernel) = call + max(multiply-adds / rate, bytes moved / bandwidth)
// with the GEMMs at `gemm_rate`, the streaming kernels (the mixing with A, kron_sum and its
// adjoint) at `stream_rate`, and a fixed cost per call. The constants of CostModel are fitted to
// bench/phm_bench on the development machine (docs/compacter.md lists the measured crossover
// points); only ratios matter, and the rule is robust to them: the paths differ by large factors
// except near the crossover, where either choice costs about the same.
//   full B, training:     factored  3 N k d + 3 N n^2 d   vs  materialised  3 N k d + 3 n k d
//                         -> the factored path wins for N below about k / n (times the
//                            ratio of the kernel rates), the materialised one above
//   low-rank B, any N:    factored  N n r (k + n^2 + d) per pass  vs  N k d: factored unless r ~ p
//   no gradients needed:  a cached H costs one GEMM (N k d) plus a check of the parameters
// Path::automatic takes the cheapest; Path::factored and Path::materialized force one.
#pragma once

#include <algorithm>
#include <cmath>

#include "weft/core/ops/kron_product.hpp"

WEFT_NAMESPACE_BEGIN
namespace phm {

enum class Path {
  automatic,     ///< the cheapest by the cost model (the default)
  factored,      ///< never form H (phm_product / lphm_product)
  materialized,  ///< form H, then one GEMM (phm_product_dense / lphm_product_dense)
  cached         ///< reuse a cached H when no gradient of A, B is needed (PhmLinear only)
};

inline const char* to_string(Path p) {
  switch (p) {
    case Path::automatic: return "automatic";
    case Path::factored: return "factored";
    case Path::materialized: return "materialized";
    case Path::cached: return "cached";
  }
  return "?";
}

/// Machine constants of the cost estimate (double precision; float runs the arithmetic at twice
/// the rate and moves half the bytes). Defaults fitted on the 2-core development machine.
struct CostModel {
  double gemm_rate = 2.0e10;    ///< multiply-adds per second in a large GEMM
  double stream_rate = 4.0e9;   ///< multiply-adds per second in the mixing / kron_sum kernels
  double bandwidth = 2.0e10;    ///< bytes per second
  double call = 5.0e-7;         ///< seconds per kernel call
};

/// Estimated seconds of one call of each path on m.rows rows (with the backward pass when
/// `backward`). `cached` assumes H is cached and valid: one GEMM, the parameter check, and with
/// `backward` the GEMM of the input gradient (a cached H serves no parameter gradients).
struct PathCosts {
  double factored = 0, materialized = 0, cached = 0;
};

namespace detail {
inline bool positive_finite(double x) { return x > 0 && std::isfinite(x); }
struct Roofline {
  CostModel c;
  double elem;  // bytes per element
  double speed; // 1 (double) or 2 (float)
  double gemm(double m, double n, double k) const {
    return c.call + std::max(m * n * k / (c.gemm_rate * speed), (m * k + k * n + 2 * m * n) * elem / c.bandwidth);
  }
  double stream(double macs, double elems) const {
    return c.call + std::max(macs / (c.stream_rate * speed), elems * elem / c.bandwidth);
  }
};
}  // namespace detail

/// Cost estimate of the three paths for extents m (m.r == 0: full B) with elements of
/// `elem_bytes` bytes (8: double, 4: float).
inline PathCosts path_costs(const ops::KronDims& m, bool backward, index_t elem_bytes = 8,
                            const CostModel& model = {}) {
  const char* fn = "phm::path_costs";
  WEFT_CHECK(m.rows >= 0 && m.n >= 1 && m.p >= 1 && m.q >= 1 && m.r >= 0, value, fn,
             "expected extents rows >= 0, n, p, q >= 1 and r >= 0, got rows = ", m.rows, ", n = ", m.n, ", p = ", m.p,
             ", q = ", m.q, ", r = ", m.r);
  WEFT_CHECK(elem_bytes >= 1, value, fn, "expected elem_bytes >= 1, got ", elem_bytes);
  WEFT_CHECK(detail::positive_finite(model.gemm_rate) && detail::positive_finite(model.stream_rate) &&
                 detail::positive_finite(model.bandwidth) && model.call >= 0 && std::isfinite(model.call),
             value, fn, "expected finite rates and bandwidth > 0 and a finite call cost >= 0, got ", model.gemm_rate, ", ",
             model.stream_rate, ", ", model.bandwidth, ", ", model.call);
  const detail::Roofline f{model, double(elem_bytes), elem_bytes <= 4 ? 2.0 : 1.0};
  const double N = double(m.rows), n = double(m.n), p = double(m.p), q = double(m.q), r = double(m.r);
  const double k = n * p, d = n * q, R = N * n;
  PathCosts c;
  const double dense_fwd = f.gemm(N, d, k);
  const double dense_bwd = f.gemm(k, d, N) + f.gemm(N, k, d);
  const double kron = f.stream(n * k * d, k * d + n * p * q);          // form H
  const double kron_adj = f.stream(2 * n * k * d, 2 * k * d + n * p * q);  // dA, dB from dH
  if (m.r == 0) {
    const double mix = f.stream(N * n * n * d, N * n * d + N * d);
    c.factored = n * f.gemm(R, q, p) + mix;
    if (backward) c.factored += 2 * mix + 2 * n * f.gemm(R, q, p);
    c.materialized = kron + dense_fwd + (backward ? dense_bwd + kron_adj : 0.0);
    c.cached = dense_fwd + f.stream(0, n * n * n + n * p * q) + (backward ? f.gemm(N, k, d) : 0.0);
  } else {
    const double nr = n * r;
    const double mix = f.stream(N * n * n * nr, 2 * N * n * nr);
    c.factored = f.gemm(R, nr, p) + mix + f.gemm(R, q, nr);
    if (backward) c.factored += f.gemm(R, nr, q) + f.gemm(nr, q, R) + 2 * mix + f.gemm(p, nr, R) + f.gemm(R, p, nr);
    const double low_rank = n * f.gemm(p, q, r);  // B_i = s_i t_i
    c.materialized = low_rank + kron + dense_fwd + (backward ? dense_bwd + kron_adj + 2 * low_rank : 0.0);
    c.cached = dense_fwd + f.stream(0, n * n * n + nr * (p + q)) + (backward ? f.gemm(N, k, d) : 0.0);
  }
  return c;
}

/// The path Path::automatic takes: the cheapest of factored and materialised, or the cached H
/// when `cache_usable` (no parameter gradients needed) and it is cheaper than both.
inline Path choose_path(const ops::KronDims& m, bool backward, bool cache_usable, index_t elem_bytes = 8,
                        const CostModel& model = {}) {
  const PathCosts c = path_costs(m, backward, elem_bytes, model);
  Path best = c.factored <= c.materialized ? Path::factored : Path::materialized;
  const double best_cost = std::min(c.factored, c.materialized);
  if (cache_usable && c.cached < best_cost) best = Path::cached;
  return best;
}

}  // namespace phm
WEFT_NAMESPACE_END
