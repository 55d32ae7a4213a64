// weft/nn/schedule.hpp - learning-rate schedules as factors of the base learning rate.
//
// A Schedule maps the step index (0-based, the step about to be taken) to a factor; the trainer
// (or your loop) calls optimizer.set_lr_factor(schedule(step)) before each step.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>

#include "weft/core/error.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

using Schedule = std::function<double(std::int64_t step)>;

/// Factor 1 throughout.
inline Schedule constant_schedule() {
  return [](std::int64_t) { return 1.0; };
}

/// Factor gamma^(floor(step / step_size)).
inline Schedule step_schedule(std::int64_t step_size, double gamma) {
  WEFT_CHECK(step_size > 0 && gamma > 0, value, "nn::step_schedule", "expected step_size > 0 and gamma > 0, got ",
             step_size, " and ", gamma);
  return [=](std::int64_t s) { return std::pow(gamma, double(s / step_size)); };
}

/// Linear warm-up over the first `warmup` steps (factors 1/warmup, 2/warmup, ..., 1), then half a
/// cosine from 1 at step `warmup` down to min_factor at `total` (constant min_factor after).
inline Schedule cosine_schedule(std::int64_t total, std::int64_t warmup = 0, double min_factor = 0.0) {
  WEFT_CHECK(total > 0 && warmup >= 0 && warmup < total && min_factor >= 0 && min_factor <= 1, value,
             "nn::cosine_schedule", "expected total > warmup >= 0 and min_factor in [0, 1], got total ", total,
             ", warmup ", warmup, ", min_factor ", min_factor);
  return [=](std::int64_t s) {
    if (s < warmup) return double(s + 1) / double(warmup);
    if (s >= total) return min_factor;
    const double p = double(s - warmup) / double(total - warmup);
    return min_factor + (1 - min_factor) * 0.5 * (1 + std::cos(3.141592653589793 * p));
  };
}

/// One-cycle (Smith & Topin 2019) with cosine phases, as a factor of the peak rate: from
/// 1/div_factor at step 0 up to 1 at step pct_start * (total - 1), then down to 1/(div_factor *
/// final_div_factor) at step total - 1. (PyTorch's OneCycleLR peaks at pct_start * total - 1.)
inline Schedule one_cycle_schedule(std::int64_t total, double pct_start = 0.3, double div_factor = 25.0,
                                   double final_div_factor = 1e4) {
  WEFT_CHECK(total > 1 && pct_start > 0 && pct_start < 1 && div_factor >= 1 && final_div_factor >= 1, value,
             "nn::one_cycle_schedule", "expected total > 1, pct_start in (0, 1) and div factors >= 1, got total ",
             total, ", pct_start ", pct_start, ", div ", div_factor, ", final div ", final_div_factor);
  const double lo = 1.0 / div_factor, end = lo / final_div_factor;
  const double up = pct_start * double(total - 1);
  return [=](std::int64_t s) {
    auto cos_interp = [](double a, double b, double p) { return b + (a - b) * 0.5 * (1 + std::cos(3.141592653589793 * p)); };
    const double x = double(s < total ? s : total - 1);
    if (x <= up) return cos_interp(lo, 1.0, up > 0 ? x / up : 1.0);
    return cos_interp(1.0, end, (x - up) / (double(total - 1) - up));
  };
}

}  // namespace nn
WEFT_NAMESPACE_END
