// weft/quantile/levels.hpp - quantile levels: validation, lookup, symmetric pairs, and the
// counting rule that keeps finite-sample indices free of floating-point error.
//
// Levels are held as std::vector<double> tau with 0 < tau_1 < ... < tau_m < 1, whatever the
// scalar type of the predictions. A prediction for one row is q in R^m, q_k estimating the
// tau_k-quantile of Y | X = x.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/core/shape.hpp"

WEFT_NAMESPACE_BEGIN
namespace quantile {

/// Raises ValueError unless `levels` is non-empty, finite, strictly increasing and in (0, 1).
inline void check_levels(const std::vector<double>& levels, const char* func) {
  WEFT_CHECK(!levels.empty(), value, func, "expected at least one quantile level, got none");
  for (std::size_t k = 0; k < levels.size(); ++k) {
    const double t = levels[k];
    WEFT_CHECK(std::isfinite(t) && t > 0 && t < 1, value, func, "expected levels in (0, 1), got ", t,
               " at position ", k);
    WEFT_CHECK(k == 0 || levels[k - 1] < t, value, func, "expected strictly increasing levels, got ",
               levels[k - 1], " before ", t, " at position ", k);
  }
}

/// The largest m even_levels() accepts: more levels than this is a caller's mistake (and an
/// allocation of gigabytes), not a quantile model.
inline constexpr index_t max_even_levels = 1000000;

/// The m evenly spaced levels k / (m + 1), k = 1..m (m = 19: 0.05, 0.10, ..., 0.95), each
/// rounded to the nearest multiple of 1e-12 so that 0.05 is the double nearest 0.05.
/// ValueError unless 1 <= m <= max_even_levels.
inline std::vector<double> even_levels(index_t m) {
  WEFT_CHECK(m >= 1 && m <= max_even_levels, value, "quantile::even_levels", "expected 1 <= m <= ", max_even_levels,
             ", got ", m);
  std::vector<double> t(static_cast<std::size_t>(m));
  for (index_t k = 0; k < m; ++k) t[std::size_t(k)] = std::round(1e12 * double(k + 1) / double(m + 1)) / 1e12;
  return t;
}

/// Index of level `tau` in `levels` (matched within 1e-9); ValueError naming tau otherwise.
inline index_t level_index(const std::vector<double>& levels, double tau, const char* func) {
  for (std::size_t k = 0; k < levels.size(); ++k)
    if (std::abs(levels[k] - tau) <= 1e-9) return index_t(k);
  ::weft::detail::fail(ErrorKind::value, func, "expected level ", tau, " among the prediction levels, got none within 1e-9");
}

/// The pairs (k, m-1-k) of levels symmetric about 0.5 (tau_k < 0.5, matched within 1e-9),
/// outermost first. A level 0.5 in the middle is allowed and left out. Raises ValueError naming
/// the first level without a partner.
inline std::vector<std::pair<index_t, index_t>> symmetric_pairs(const std::vector<double>& levels, const char* func) {
  check_levels(levels, func);
  const index_t m = index_t(levels.size());
  std::vector<std::pair<index_t, index_t>> pairs;
  for (index_t k = 0; k < m / 2; ++k) {
    const double lo = levels[std::size_t(k)], hi = levels[std::size_t(m - 1 - k)];
    WEFT_CHECK(std::abs(lo + hi - 1.0) <= 1e-9, value, func, "expected levels symmetric about 0.5, got level ",
               lo, " without a partner ", 1.0 - lo, " (its mirror position holds ", hi, ")");
    pairs.emplace_back(k, m - 1 - k);
  }
  if (m % 2 == 1)
    WEFT_CHECK(std::abs(levels[std::size_t(m / 2)] - 0.5) <= 1e-9, value, func,
               "expected levels symmetric about 0.5, got level ", levels[std::size_t(m / 2)], " without a partner ",
               1.0 - levels[std::size_t(m / 2)]);
  return pairs;
}

/// ceil(x) for counts computed from levels given as decimals: when x is within 1e-9 (relative,
/// at least absolute) of an integer, that integer. (1 - 0.3) * 10 is 6.999999999999999 in
/// binary floating point, but the count meant is 7, not 8.
inline index_t ceil_count(double x) {
  const double r = std::round(x);
  if (std::abs(x - r) <= 1e-9 * std::max(1.0, std::abs(x))) return index_t(r);
  return index_t(std::ceil(x));
}

}  // namespace quantile
WEFT_NAMESPACE_END
