// tests/quant/quant_test_util.hpp - helpers of the quant tests: the shared ones of
// support/test_util.hpp (thread-count guard, raw vectors, bitwise comparison) and plain
// double-precision references of StatsQ and LSQ written from the spec's formulas (independent of
// the kernels under test).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/parallel.hpp"
#include "weft/core/rng.hpp"

/// CHECK that `expr` throws `type` whose message starts with "weft::<func>: ".
#define WEFT_QUANT_CHECK_FAILS(expr, type, func) CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

namespace weft::quant_test {

using weft::test::same_bits;
using weft::test::ThreadCountGuard;
using weft::test::uniform_vector;

/// StatsQ of one group of values in double (spec Sec. 1), given the scale s computed by the caller.
struct StatsqRef {
  double q;
  int code;
  bool near;
  double dist;  ///< distance of x n to the nearest inner threshold, in steps
};
inline StatsqRef statsq_ref(double w, double s, int bits, double br = 0.0) {
  const double n = std::ldexp(1.0, bits - 1);
  double x = w / s;
  x = std::min(std::max(x, -1.0), 1.0 - 1e-6);
  const double t = x * n;
  double k = std::floor(t);
  k = std::min(std::max(k, -n), n - 1);
  double best = 1e300;
  for (double m = -n + 1; m <= n - 1; m += 1) best = std::min(best, std::abs(t - m));
  return {s * (k + 0.5) / n, int(k), best <= br, best};
}

/// LSQ of one element in double (spec Sec. 2): value, code, STE mask and dQ/ds (without g).
struct LsqRef {
  double q;
  int code;
  bool inside;
  double dqds;
};
inline LsqRef lsq_ref(double x, double s, double lo, double hi, bool sign_mode, double beta = 0.0) {
  const double se = std::max(s, 1e-5);
  const double v = (x - beta) / se;
  double r;
  if (sign_mode) r = v >= 0 ? 1 : -1;
  else r = std::nearbyint(std::min(std::max(v, lo), hi));
  const bool inside = v >= lo && v <= hi;
  return {r * se + beta, int(r), inside, inside ? r - v : (v < lo ? lo : hi)};
}

}  // namespace weft::quant_test
