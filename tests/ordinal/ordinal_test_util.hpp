// tests/ordinal/ordinal_test_util.hpp - small data sets shared by the ordinal tests, drawn with
// weft::Rng so every platform sees the same numbers (reference values computed from them with R
// are quoted in the tests).
#pragma once

#include <cmath>
#include <vector>

#include "weft/core/parallel.hpp"
#include "weft/core/rng.hpp"
#include "weft/ordinal/model.hpp"

namespace weft::ordinal_test {

/// Restores the thread count on scope exit.
struct ThreadGuard {
  int saved = num_threads();
  explicit ThreadGuard(int n) { set_num_threads(n); }
  ~ThreadGuard() { set_num_threads(saved); }
  ThreadGuard(const ThreadGuard&) = delete;
  ThreadGuard& operator=(const ThreadGuard&) = delete;
};

struct Data {
  Tensor<double> x;
  std::vector<int> y;
};

/// n rows, p features x_j ~ N(0, (j + 1)^2) (unequal scales exercise standardisation), classes
/// from a non-parallel cumulative-logit model with K - 1 boundaries.
inline Data random_ordinal(index_t n, index_t p, index_t K, std::uint64_t seed) {
  Rng rng(seed);
  Data d;
  d.x = Tensor<double>(Shape{n, p});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < p; ++j) d.x(i, j) = rng.normal() * double(j + 1);
  ordinal::CumulativeLogit<double> m;
  m.intercepts = Tensor<double>(Shape{K - 1});
  m.coef = Tensor<double>(Shape{p, K - 1});
  for (index_t k = 0; k < K - 1; ++k) m.intercepts(k) = -1.0 + 2.0 * double(k);
  for (index_t j = 0; j < p; ++j) {
    m.coef(j, 0) = rng.uniform(-0.6, 0.6) / double(j + 1);
    for (index_t k = 1; k < K - 1; ++k) m.coef(j, k) = m.coef(j, k - 1) + 0.1 * rng.uniform(-1, 1) / double(j + 1);
  }
  const auto pr = ordinal::predict_proba(m, d.x).probs;
  for (index_t i = 0; i < n; ++i) {
    double u = rng.uniform(), c = 0;
    int cls = int(K - 1);
    for (index_t k = 0; k + 1 < K; ++k)
      if (u < (c += pr(i, k))) {
        cls = int(k);
        break;
      }
    d.y.push_back(cls);
  }
  return d;
}

}  // namespace weft::ordinal_test
