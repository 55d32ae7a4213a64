// weft/quantile/conformal.hpp - split conformal calibration of quantile predictions (CQR:
// Y. Romano, E. Patterson, E. Candes, "Conformalized Quantile Regression", NeurIPS 2019),
// applied to every symmetric pair of levels.
//
// For each pair (tau_k, tau_{m+1-k}) with tau_k < 0.5, alpha_k = 2 tau_k (nominal coverage
// 1 - alpha_k), on calibration rows (n of them, disjoint from every row that trained the base
// models or the aggregator):
//   1. scores E_i = max(q_lo(x_i) - y_i, y_i - q_hi(x_i))   (negative when y is inside)
//   2. r = ceil((1 - alpha)(n + 1)); Qhat = the r-th smallest E_i if r <= n, else +inf
//   3. new interval [q_lo - Qhat, q_hi + Qhat] (Qhat < 0 shrinks it); the median is unchanged
//   4. each calibrated row is re-sorted (pairs are calibrated separately and may cross; sorting
//      never increases the pinball score, see monotone.hpp).
// Guarantee for exchangeable data: 1 - alpha <= P(y in interval) <= 1 - alpha + 1/(n + 1) (the
// upper bound needs continuous scores). r is computed with ceil_count (levels.hpp), so
// (1 - 0.1) * 10 counts as 9, not 10. When n < 1/alpha - 1, r > n and the interval is infinite:
// not an error; pairs()[k].infinite says so and report() prints it.
// Asymmetric variant (symmetric = false): the lower scores q_lo - y and the upper scores
// y - q_hi are calibrated separately, each at alpha / 2.
#pragma once

#include <algorithm>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "weft/core/ops/isotonic.hpp"
#include "weft/core/parallel.hpp"
#include "weft/quantile/scores.hpp"

WEFT_NAMESPACE_BEGIN
namespace quantile {

struct ConformalOptions {
  bool symmetric = true;  ///< one score per pair; false: lower and upper ends calibrated apart
  bool resort = true;     ///< sort every calibrated row
};

/// The calibration of one symmetric pair of levels.
struct ConformalPair {
  index_t lower = 0, upper = 0;  ///< level indices
  double alpha = 0;              ///< 2 tau_lower: nominal coverage 1 - alpha
  index_t n = 0;                 ///< calibration rows
  index_t rank = 0;              ///< r (for each end, in the asymmetric variant)
  double shift_lower = 0;        ///< the lower end moves to q_lo - shift_lower
  double shift_upper = 0;        ///< the upper end moves to q_hi + shift_upper
  bool infinite = false;         ///< r > n: the interval is (-inf, inf)
};

/// r = ceil(level (n + 1)), the finite-sample index of split conformal prediction.
inline index_t conformal_rank(index_t n, double level) { return ceil_count(level * double(n + 1)); }

template <class T>
class ConformalCalibrator {
 public:
  explicit ConformalCalibrator(const ConformalOptions& o = {}) : o_(o) {}

  /// Computes the corrections from calibration predictions Q (n, m) and targets y (n).
  void fit(const Tensor<T>& Q, const Tensor<T>& y, const std::vector<double>& levels) {
    const char* fn = "quantile::ConformalCalibrator::fit";
    check_levels(levels, fn);
    WEFT_CHECK(levels.size() >= 2, value, fn,
               "expected at least one pair of levels symmetric about 0.5 (m >= 2), got m = ", levels.size(),
               ": there is no interval to calibrate");
    const auto pairs = symmetric_pairs(levels, fn);
    detail::check_scored(Q, y, levels, fn);
    WEFT_CHECK(Q.all_finite(), value, fn, "expected finite calibration predictions, got Inf");
    const index_t n = Q.dim(0);
    std::vector<ConformalPair> out;
    std::vector<double> lo(static_cast<std::size_t>(n)), hi(static_cast<std::size_t>(n));
    for (const auto& pr : pairs) {
      ConformalPair c;
      c.lower = pr.first;
      c.upper = pr.second;
      c.alpha = 2 * levels[std::size_t(pr.first)];
      c.n = n;
      for (index_t i = 0; i < n; ++i) {
        lo[std::size_t(i)] = double(Q(i, c.lower)) - double(y.flat(i));
        hi[std::size_t(i)] = double(y.flat(i)) - double(Q(i, c.upper));
      }
      if (o_.symmetric) {
        for (index_t i = 0; i < n; ++i) lo[std::size_t(i)] = std::max(lo[std::size_t(i)], hi[std::size_t(i)]);
        c.rank = conformal_rank(n, 1 - c.alpha);
        c.shift_lower = c.shift_upper = order_statistic(lo, c.rank);
      } else {
        c.rank = conformal_rank(n, 1 - c.alpha / 2);
        c.shift_lower = order_statistic(lo, c.rank);
        c.shift_upper = order_statistic(hi, c.rank);
      }
      c.infinite = c.rank > n;
      out.push_back(c);
    }
    pairs_ = std::move(out);
    m_ = index_t(levels.size());
    levels_ = levels;
  }

  /// Calibrated predictions (n', m): every pair widened or narrowed, then (by default) each row
  /// sorted. Rows run in parallel; the result does not depend on the thread count.
  Tensor<T> apply(const Tensor<T>& Q) const {
    const char* fn = "quantile::ConformalCalibrator::apply";
    WEFT_CHECK(!pairs_.empty(), config, fn, "expected a fitted calibrator, got one without fit()");
    detail::check_predictions(Q, levels_, fn);
    Tensor<T> out = Q.clone();
    const index_t n = Q.dim(0), m = m_;
    parallel_for(0, n, ops::detail::monotone_row_grain(m), [&](index_t b, index_t e) {
      for (index_t i = b; i < e; ++i)
        for (const auto& c : pairs_) {
          T* row = out.data() + i * m;
          row[c.lower] = T(double(row[c.lower]) - c.shift_lower);
          row[c.upper] = T(double(row[c.upper]) + c.shift_upper);
        }
    });
    if (o_.resort) ops::sort_rows(out.data(), out.data(), n, m);
    return out;
  }

  const std::vector<ConformalPair>& pairs() const noexcept { return pairs_; }
  /// True when some pair got an infinite interval (too few calibration rows for its level).
  bool infinite() const noexcept {
    for (const auto& c : pairs_)
      if (c.infinite) return true;
    return false;
  }
  /// One line per pair: levels, alpha, n, r and the correction (or "infinite interval").
  std::string report() const {
    std::ostringstream os;
    for (const auto& c : pairs_) {
      os << "levels (" << levels_[std::size_t(c.lower)] << ", " << levels_[std::size_t(c.upper)] << "): alpha "
         << c.alpha << ", n " << c.n << ", r " << c.rank;
      if (c.infinite) os << " > n: infinite interval (needs n >= " << min_rows(c) << ")\n";
      else if (o_.symmetric) os << ", correction " << c.shift_lower << "\n";
      else os << ", corrections " << c.shift_lower << " (lower), " << c.shift_upper << " (upper)\n";
    }
    return os.str();
  }

 private:
  /// The r-th smallest value (1-based) of v, +inf when r > v.size(). v is reordered.
  static double order_statistic(std::vector<double>& v, index_t r) {
    if (r > index_t(v.size())) return std::numeric_limits<double>::infinity();
    const index_t k = std::max<index_t>(r, 1) - 1;
    std::nth_element(v.begin(), v.begin() + k, v.end());
    return v[std::size_t(k)];
  }
  index_t min_rows(const ConformalPair& c) const {
    const double level = o_.symmetric ? 1 - c.alpha : 1 - c.alpha / 2;
    index_t n = c.n;
    while (conformal_rank(n, level) > n) ++n;
    return n;
  }

  ConformalOptions o_;
  std::vector<ConformalPair> pairs_;
  std::vector<double> levels_;
  index_t m_ = 0;
};

}  // namespace quantile
WEFT_NAMESPACE_END
