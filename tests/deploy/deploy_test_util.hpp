// tests/deploy/deploy_test_util.hpp - helpers of the deploy tests: random codes on a grid,
// hand-built QuantizedWeights, a plain double reference of y = x W^T from dequantised weights,
// and a loop over every supported (Bits, GroupSize).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/rng.hpp"
#include "weft/deploy/packed.hpp"

/// CHECK that `expr` throws `type` whose message starts with "weft::<func>: ".
#define WEFT_DEPLOY_CHECK_FAILS(expr, type, func) CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

namespace weft::deploy_test {

using weft::test::same_bits;
using weft::test::ThreadCountGuard;
using weft::test::uniform_vector;

/// The code grid of a scheme: codes lo, lo + scale, ..., lo + scale (2^bits - 1).
struct Grid {
  int lo, scale;
};
inline Grid signed_grid(int bits) { return {-(1 << (bits - 1)), 1}; }
inline Grid unsigned_grid(int) { return {0, 1}; }

/// n codes drawn uniformly from the grid.
inline std::vector<std::int16_t> random_codes(index_t n, int bits, Grid g, Rng& rng) {
  std::vector<std::int16_t> k(static_cast<std::size_t>(n));
  const int levels = 1 << bits;
  for (auto& c : k) c = std::int16_t(g.lo + g.scale * std::min(levels - 1, int(rng.uniform(0.0, double(levels)))));
  return k;
}

/// Calls f(std::integral_constant<int, Bits>, std::integral_constant<int, GroupSize>) for every
/// supported format.
template <class F>
void for_each_format(F&& f) {
  auto per_bits = [&](auto bits) {
    f(bits, std::integral_constant<int, 0>{});
    f(bits, std::integral_constant<int, 32>{});
    f(bits, std::integral_constant<int, 64>{});
    f(bits, std::integral_constant<int, 128>{});
  };
  per_bits(std::integral_constant<int, 1>{});
  per_bits(std::integral_constant<int, 2>{});
  per_bits(std::integral_constant<int, 3>{});
  per_bits(std::integral_constant<int, 4>{});
  per_bits(std::integral_constant<int, 8>{});
}

/// Per-group steps (rows * groups_per_row) in [0.01, 0.1).
template <int Bits, int GroupSize>
std::vector<float> random_steps(index_t rows, index_t cols, Rng& rng) {
  return uniform_vector<float>(rows * deploy::PackedFormat<Bits, GroupSize>::groups_per_row(cols), 0.01, 0.1, rng);
}

/// y (batch, rows) = x W^T + bias in double from the dequantised weight w.value(r, c), and the
/// scale sum_c |x_c| |w_rc| + |b_r| of each output: the magnitude of the terms the float
/// kernels sum, the unit of their summation-order error.
struct RefOut {
  std::vector<double> y, scale;
};
template <int Bits, int GroupSize>
RefOut reference_gemm(const deploy::PackedView<Bits, GroupSize>& w, const float* x, index_t batch, const float* bias) {
  const index_t rows = w.rows, cols = w.cols;
  RefOut o;
  o.y.assign(std::size_t(batch * rows), 0.0);
  o.scale.assign(std::size_t(batch * rows), 0.0);
  for (index_t b = 0; b < batch; ++b)
    for (index_t r = 0; r < rows; ++r) {
      double s = bias ? double(bias[r]) : 0.0, a = bias ? std::abs(double(bias[r])) : 0.0;
      for (index_t c = 0; c < cols; ++c) {
        const double xv = x[b * cols + c];
        s += xv * double(w.value(r, c));
        a += std::abs(xv * double(w.value(r, c)));
      }
      o.y[std::size_t(b * rows + r)] = s;
      o.scale[std::size_t(b * rows + r)] = a;
    }
  return o;
}

/// The largest |y - ref| / scale (scale floored at 1e-30).
inline double max_scaled_error(const std::vector<float>& y, const RefOut& ref) {
  double e = 0;
  for (std::size_t i = 0; i < y.size(); ++i) e = std::max(e, std::abs(double(y[i]) - ref.y[i]) / std::max(ref.scale[i], 1e-30));
  return e;
}

}  // namespace weft::deploy_test
