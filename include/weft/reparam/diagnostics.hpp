// weft/reparam/diagnostics.hpp - weight statistics that show what a reparameterisation does to
// the weight distribution: max |w|, kurtosis, and the fraction of weights near zero.
//
//   WeightStats s = reparam::weight_stats(layer.folded_weight());    // any tensor of weights
//   auto per_layer = reparam::linear_weight_stats(model);             // every Linear of a model
//
// The compander bounds |w| (max_abs < a pi/2) and moves weights away from zero (fewer near
// zero, often a lower kurtosis; the paper's Figs. 3-4). Statistics are computed in double,
// two-pass; NaN weights give NaN statistics (nothing throws on a diverged model).
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/tensor.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/module.hpp"

WEFT_NAMESPACE_BEGIN
namespace reparam {

struct WeightStats {
  index_t count = 0;
  double max_abs = 0;         ///< max |w|
  double mean = 0;
  double stddev = 0;          ///< population standard deviation
  double kurtosis = 0;        ///< Pearson's m4 / m2^2 (3 for a normal, 1.8 for a uniform); NaN if all equal
  double frac_near_zero = 0;  ///< fraction with |w| < near_zero
};

/// Statistics of the elements of w (any shape, real, non-empty); near_zero >= 0 is the
/// threshold of frac_near_zero.
template <class T>
WeightStats weight_stats(const Tensor<T>& w, double near_zero = 1e-2) {
  static_assert(!is_complex_v<T>, "weight_stats is defined for real weights");
  const char* fn = "reparam::weight_stats";
  WEFT_CHECK(w.defined() && w.numel() > 0, shape, fn, "expected a non-empty tensor, got ",
             w.defined() ? "an empty one" : "an undefined one");
  WEFT_CHECK(near_zero >= 0, value, fn, "expected near_zero >= 0, got ", near_zero);
  WeightStats s;
  s.count = w.numel();
  const double n = double(s.count);
  double sum = 0;
  index_t near = 0;
  bool nan = false;
  for (index_t i = 0; i < s.count; ++i) {
    const double x = double(w.flat(i));
    nan = nan || std::isnan(x);
    sum += x;
    s.max_abs = std::max(s.max_abs, std::abs(x));
    near += std::abs(x) < near_zero;
  }
  s.mean = sum / n;
  double m2 = 0, m4 = 0;
  for (index_t i = 0; i < s.count; ++i) {
    const double d = double(w.flat(i)) - s.mean, d2 = d * d;
    m2 += d2;
    m4 += d2 * d2;
  }
  m2 /= n;
  m4 /= n;
  s.stddev = std::sqrt(m2);
  s.kurtosis = m2 > 0 ? m4 / (m2 * m2) : std::numeric_limits<double>::quiet_NaN();
  s.frac_near_zero = double(near) / n;
  if (nan) s.max_abs = s.kurtosis = std::numeric_limits<double>::quiet_NaN();
  return s;
}

using nn::find_linears;  // every Linear of a model with its dotted name (nn/linear.hpp)

/// weight_stats of the effective weight (every transform applied) of each Linear of the model.
template <class T>
std::vector<std::pair<std::string, WeightStats>> linear_weight_stats(nn::Module<T>& model, double near_zero = 1e-2) {
  std::vector<std::pair<std::string, WeightStats>> out;
  for (auto& l : find_linears(model)) out.emplace_back(l.first, weight_stats(l.second->folded_weight(), near_zero));
  return out;
}

}  // namespace reparam
WEFT_NAMESPACE_END
