// weft/ordinal/simulate.hpp - the synthetic designs of the PRESTO paper (section 4.1 sparse
// differences, 4.2 dense differences), drawn with weft::Rng so a seed (or Rng::stream(k) per
// replication) gives the same data on every platform and thread count.
//
//   x_ij ~ U(-1, 1) (n x p); y_i ~ Categorical(pi(x_i)) under the cumulative-logit model with
//   intercepts alpha and beta_k = beta_{k-1} + d_k:
//   sparse: beta_0j = 0.5 with probability pi_d else 0; d_kj = +-0.5 (random sign) with
//           probability pi_d else 0;
//   dense:  beta_0j ~ U(-0.5, 0.5); d_kj ~ U(-0.5, 0.5).
// As in the authors' sim_data(): a draw of beta is rejected when some row of x gets a negative
// class probability (up to 100 draws of beta), and x and y are redrawn when some class is
// absent (up to 10 times per beta). Failing all tries raises ValueError.
#pragma once

#include <cmath>
#include <vector>

#include "weft/core/rng.hpp"
#include "weft/ordinal/model.hpp"

WEFT_NAMESPACE_BEGIN
namespace ordinal {

/// Parameters of the simulated designs (defaults: the P7 setting, sparse, alpha = (0, 3.5, 5.5)).
struct SimulationOptions {
  index_t n = 2500;
  index_t p = 10;
  std::vector<double> intercepts = {0.0, 3.5, 5.5};  ///< K-1 increasing values
  double pi_d = 0.5;                                 ///< sparse design: probability of a nonzero entry
  double size = 0.5;                                 ///< entry size (sparse) / half-width (dense)
  bool dense = false;
};

/// One simulated data set with the truth it was drawn from.
template <class T>
struct SimulatedData {
  Tensor<T> x;                    ///< (n, p)
  std::vector<int> y;             ///< classes 0..K-1
  Tensor<double> probs;           ///< (n, K) true class probabilities
  CumulativeLogit<double> truth;  ///< true alpha and beta
  int beta_draws = 0, data_draws = 0;
};

template <class T>
SimulatedData<T> simulate(const SimulationOptions& o, Rng& rng) {
  const char* fn = "ordinal::simulate";
  const index_t n = o.n, p = o.p, km1 = index_t(o.intercepts.size()), K = km1 + 1;
  WEFT_CHECK(n >= 1 && p >= 1, config, fn, "expected n >= 1 and p >= 1, got ", n, " and ", p);
  WEFT_CHECK(km1 >= 1, config, fn, "expected at least one intercept (K >= 2), got none");
  for (index_t k = 1; k < km1; ++k)
    WEFT_CHECK(o.intercepts[std::size_t(k)] >= o.intercepts[std::size_t(k - 1)], config, fn,
               "expected non-decreasing intercepts, got ", o.intercepts[std::size_t(k - 1)], " then ",
               o.intercepts[std::size_t(k)]);
  WEFT_CHECK(o.pi_d >= 0 && o.pi_d <= 1 && o.size >= 0, config, fn, "expected pi_d in [0, 1] and size >= 0, got ",
             o.pi_d, " and ", o.size);
  SimulatedData<T> d;
  d.truth.intercepts = Tensor<double>(Shape{km1});
  for (index_t k = 0; k < km1; ++k) d.truth.intercepts(k) = o.intercepts[std::size_t(k)];
  d.truth.coef = Tensor<double>(Shape{p, km1});
  Tensor<double> x(Shape{n, p});
  for (d.beta_draws = 1; d.beta_draws <= 100; ++d.beta_draws) {
    auto B = d.truth.coef.matrix();
    for (index_t j = 0; j < p; ++j)
      B(j, 0) = o.dense ? rng.uniform(-o.size, o.size) : (rng.uniform() < o.pi_d ? o.size : 0.0);
    for (index_t k = 1; k < km1; ++k)
      for (index_t j = 0; j < p; ++j) {
        double dk;
        if (o.dense) dk = rng.uniform(-o.size, o.size);
        else dk = rng.uniform() < o.pi_d ? o.size : 0.0;
        if (!o.dense && rng.uniform() < 0.5) dk = -dk;
        B(j, k) = B(j, k - 1) + dk;
      }
    for (d.data_draws = 1; d.data_draws <= 10; ++d.data_draws) {
      for (auto& v : x) v = rng.uniform(-1.0, 1.0);
      d.probs = predict_proba(d.truth, x).probs;
      const auto eta = linear_predictor(d.truth, x);
      bool valid = true;
      for (index_t i = 0; i < n && valid; ++i)
        for (index_t k = 0; k + 1 < km1; ++k) valid = valid && eta(i, k) <= eta(i, k + 1);
      if (!valid) break;  // this beta gives negative probabilities: draw another
      d.y.assign(std::size_t(n), 0);
      std::vector<index_t> count(std::size_t(K), 0);
      for (index_t i = 0; i < n; ++i) {
        double u = rng.uniform(), c = 0;
        int cls = int(K - 1);
        for (index_t k = 0; k + 1 < K; ++k)
          if (u < (c += d.probs(i, k))) {
            cls = int(k);
            break;
          }
        d.y[std::size_t(i)] = cls;
        ++count[std::size_t(cls)];
      }
      bool all = true;
      for (index_t c2 : count) all = all && c2 > 0;
      if (all) {
        d.x = x.template cast<T>();
        return d;
      }
    }
  }
  ::weft::detail::fail(ErrorKind::value, fn, "expected a beta with valid probabilities and every class observed, got none in ",
               "100 draws of beta (10 draws of x and y each)");
}

}  // namespace ordinal
WEFT_NAMESPACE_END
