// weft/incremental/memory.hpp - exemplar memory with a fixed total budget: herding selection
// (iCaRL, Rebuffi et al. 2017) in two variants, random selection, and shrinking in priority order.
//
// Budget M is fixed; after a task with C_tot classes seen, each class keeps m = floor(M / C_tot)
// exemplars. Old classes are cut to their first m (herding order is a priority order), each new
// class gets m selected on the current model's features.
//
// Herding works on phi = h / ||h||_2 (rows of features; an all-zero row stays zero), with
// mu = mean of the phi (not renormalised):
//   argmin (PyCIL, the default): for k = 1..m pick i = argmin over unpicked rows of
//            ||mu - (S + phi_i) / k||_2, then S += phi_i (no repeats; ties -> lowest index).
//   argmax (official WA code, Welling's herding): w = mu; repeat: i = argmax_i <w, phi_i>,
//            w += mu - phi_i, keep i if not yet picked; stop at m picks or after ceil(1.5 m)
//            iterations, so it can return fewer than m. (The official code compares a class-local
//            index with stored global ones, so it can keep repeats; we keep the intended rule.)
//   random:  the first m entries of a random permutation.
// A class with fewer than m rows keeps all of them (in herding order). herding(phi, m, variant)
// also returns, per pick k, the distance ||mu - (S_k / k)||_2 the running mean reached.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "weft/core/data.hpp"
#include "weft/core/rng.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace incremental {

enum class HerdingVariant {
  argmin,  ///< iCaRL as in PyCIL: argmin ||mu - (S + phi_i)/k||, no repeats (default)
  argmax   ///< Welling herding as in the official WA code: argmax <w, phi_i>, <= ceil(1.5 m) steps
};

struct MemoryOptions {
  bool enabled = true;       ///< false: no exemplars (plain fine-tuning on the new classes)
  index_t budget = 2000;     ///< total number of exemplars M over all classes
  HerdingVariant herding_variant = HerdingVariant::argmin;
  bool random_replay = false;  ///< select at random instead of by herding (the official ablation)
};

/// m = floor(budget / classes); raises ValueError when the budget cannot hold one exemplar per class.
inline index_t exemplars_per_class(index_t budget, index_t classes) {
  WEFT_CHECK(classes > 0, value, "incremental::exemplars_per_class", "expected at least one class, got ", classes);
  WEFT_CHECK(budget >= classes, value, "incremental::exemplars_per_class",
             "expected a memory budget >= the number of classes (", classes, ") so every class keeps an exemplar, got ",
             budget);
  return budget / classes;
}

/// Rows of h divided by their L2 norm (computed in double); an all-zero row stays zero.
template <class T>
Tensor<T> normalize_rows(const Tensor<T>& h) {
  WEFT_CHECK(h.rank() == 2, shape, "incremental::normalize_rows", "expected features of shape (n, d), got ",
             h.shape());
  Tensor<T> phi(h.shape());
  for (index_t i = 0; i < h.dim(0); ++i) {
    double s = 0;
    for (index_t j = 0; j < h.dim(1); ++j) s += double(h(i, j)) * double(h(i, j));
    const double inv = s > 0 ? 1.0 / std::sqrt(s) : 0.0;
    for (index_t j = 0; j < h.dim(1); ++j) phi(i, j) = T(double(h(i, j)) * inv);
  }
  return phi;
}

namespace detail {
template <class T>
std::vector<double> row_mean(const Tensor<T>& phi) {
  std::vector<double> mu(std::size_t(phi.dim(1)), 0.0);
  for (index_t i = 0; i < phi.dim(0); ++i)
    for (index_t j = 0; j < phi.dim(1); ++j) mu[std::size_t(j)] += double(phi(i, j));
  for (double& v : mu) v /= double(phi.dim(0));
  return mu;
}
template <class T>
void check_herding(const char* func, const Tensor<T>& phi, index_t m) {
  WEFT_CHECK(phi.rank() == 2 && phi.dim(0) > 0 && phi.dim(1) > 0, shape, func,
             "expected non-empty normalised features of shape (n, d), got ", phi.shape());
  WEFT_CHECK(m > 0, value, func, "expected m > 0 exemplars to select, got ", m);
  WEFT_CHECK(phi.all_finite(), value, func, "expected finite features, got non-finite values");
  // the distances compare squared norms of means of rows: bounded by 4 max ||phi_i||^2
  double max_sq = 0;
  for (index_t i = 0; i < phi.dim(0); ++i) {
    double s = 0;
    for (index_t j = 0; j < phi.dim(1); ++j) s += double(phi(i, j)) * double(phi(i, j));
    max_sq = std::max(max_sq, s);
  }
  WEFT_CHECK(4 * max_sq <= std::numeric_limits<double>::max(), value, func,
             "expected features whose squared row norms stay finite in double (normalised rows, see "
             "normalize_rows), got a squared norm of ", max_sq);
}
}  // namespace detail

/// Herding picks with the distance each pick achieved (incremental::herding).
struct HerdingResult {
  std::vector<index_t> indices;  ///< distinct row indices in selection (priority) order
  /// distances[k - 1] = ||mu - (1/k) sum of the first k picked phi||_2: for argmin the minimum
  /// over the unpicked rows at step k (what the greedy pick minimised); for argmax the same
  /// quantity after each kept pick (reported, not what argmax maximises).
  std::vector<double> distances;
};

namespace detail {
/// ||mu - S / k||_2.
inline double mean_distance(const std::vector<double>& mu, const std::vector<double>& S, index_t k) {
  double d = 0;
  for (std::size_t j = 0; j < mu.size(); ++j) d += (mu[j] - S[j] / double(k)) * (mu[j] - S[j] / double(k));
  return std::sqrt(d);
}

template <class T>
HerdingResult herding_argmin(const char* fn, const Tensor<T>& phi, index_t m) {
  check_herding(fn, phi, m);
  const index_t n = phi.dim(0), d = phi.dim(1);
  const std::vector<double> mu = row_mean(phi);
  std::vector<double> S(std::size_t(d), 0.0);
  std::vector<char> picked(std::size_t(n), 0);
  HerdingResult r;
  for (index_t k = 1; k <= std::min(m, n); ++k) {
    index_t best = -1;
    double best_d = std::numeric_limits<double>::infinity();
    for (index_t i = 0; i < n; ++i) {
      if (picked[std::size_t(i)]) continue;
      double dist = 0;  // squared distance: same argmin as the distance
      for (index_t j = 0; j < d; ++j) {
        const double e = mu[std::size_t(j)] - (S[std::size_t(j)] + double(phi(i, j))) / double(k);
        dist += e * e;
      }
      if (best < 0 || dist < best_d) best_d = dist, best = i;  // the first unpicked row is always a candidate
    }
    picked[std::size_t(best)] = 1;
    for (index_t j = 0; j < d; ++j) S[std::size_t(j)] += double(phi(best, j));
    r.indices.push_back(best);
    r.distances.push_back(std::sqrt(best_d));
  }
  return r;
}

template <class T>
HerdingResult herding_argmax(const char* fn, const Tensor<T>& phi, index_t m) {
  check_herding(fn, phi, m);
  const index_t n = phi.dim(0), d = phi.dim(1);
  const std::vector<double> mu = row_mean(phi);
  std::vector<double> w = mu, S(std::size_t(d), 0.0);
  std::vector<char> picked(std::size_t(n), 0);
  HerdingResult r;
  for (index_t step = 0; index_t(r.indices.size()) < m && double(step) < 1.5 * double(m); ++step) {
    index_t best = 0;
    double best_v = -std::numeric_limits<double>::infinity();
    for (index_t i = 0; i < n; ++i) {
      double v = 0;
      for (index_t j = 0; j < d; ++j) v += w[std::size_t(j)] * double(phi(i, j));
      if (v > best_v) best_v = v, best = i;
    }
    for (index_t j = 0; j < d; ++j) w[std::size_t(j)] += mu[std::size_t(j)] - double(phi(best, j));
    if (picked[std::size_t(best)]) continue;
    picked[std::size_t(best)] = 1;
    for (index_t j = 0; j < d; ++j) S[std::size_t(j)] += double(phi(best, j));
    r.indices.push_back(best);
    r.distances.push_back(mean_distance(mu, S, index_t(r.indices.size())));
  }
  return r;
}
}  // namespace detail

/// iCaRL herding (argmin variant) on normalised features phi (n, d): min(m, n) distinct row
/// indices in selection (priority) order.
template <class T>
std::vector<index_t> herding_argmin(const Tensor<T>& phi, index_t m) {
  return detail::herding_argmin("incremental::herding_argmin", phi, m).indices;
}

/// Welling herding as in the official WA code: at most m distinct indices, in selection order,
/// from at most ceil(1.5 m) iterations (so possibly fewer than m).
template <class T>
std::vector<index_t> herding_argmax(const Tensor<T>& phi, index_t m) {
  return detail::herding_argmax("incremental::herding_argmax", phi, m).indices;
}

/// Herding of either variant with the distance of the running exemplar mean to the class mean
/// after each pick (HerdingResult); the indices equal herding_argmin / herding_argmax's.
template <class T>
HerdingResult herding(const Tensor<T>& phi, index_t m, HerdingVariant v = HerdingVariant::argmin) {
  return v == HerdingVariant::argmax ? detail::herding_argmax("incremental::herding", phi, m)
                                     : detail::herding_argmin("incremental::herding", phi, m);
}

/// min(m, n) distinct indices of [0, n): the start of a random permutation.
inline std::vector<index_t> random_selection(index_t n, index_t m, Rng& rng) {
  WEFT_CHECK(n > 0 && m > 0, value, "incremental::random_selection", "expected n > 0 rows and m > 0, got n = ", n,
             ", m = ", m);
  std::vector<index_t> p = rng.permutation(n);
  p.resize(std::size_t(std::min(m, n)));
  return p;
}

/// Selects up to m exemplars of one class from its features h (n, d) (raw; normalised here for
/// herding) as the options say. rng is used by random selection only.
template <class T>
std::vector<index_t> select_exemplars(const Tensor<T>& h, index_t m, const MemoryOptions& o, Rng& rng) {
  WEFT_CHECK(h.rank() == 2 && h.dim(0) > 0, shape, "incremental::select_exemplars",
             "expected the features of a non-empty class, shape (n, d), got ", h.shape());
  if (o.random_replay) return random_selection(h.dim(0), m, rng);
  const Tensor<T> phi = normalize_rows(h);
  return o.herding_variant == HerdingVariant::argmax ? herding_argmax(phi, m) : herding_argmin(phi, m);
}

/// Exemplars per class (input rows in priority order) under a fixed total budget.
template <class T>
class ExemplarMemory {
 public:
  ExemplarMemory() = default;
  explicit ExemplarMemory(index_t budget) : budget_(budget) {
    WEFT_CHECK(budget > 0, value, "incremental::ExemplarMemory", "expected a budget > 0, got ", budget);
  }

  index_t budget() const noexcept { return budget_; }
  index_t classes() const noexcept { return index_t(order_.size()); }
  /// Class labels in the order they were added.
  const std::vector<int>& labels() const noexcept { return order_; }
  bool contains(int label) const { return store_.count(label) != 0; }
  /// Total number of stored exemplars.
  index_t size() const {
    index_t n = 0;
    for (auto& e : store_) n += e.second.dim(0);
    return n;
  }
  /// The exemplars of `label`, one row each, in priority order.
  const Tensor<T>& exemplars(int label) const {
    auto it = store_.find(label);
    WEFT_CHECK(it != store_.end(), value, "incremental::ExemplarMemory::exemplars", "expected a stored class, got ",
               label);
    return it->second;
  }

  /// Cuts every class to its first m exemplars (classes with fewer keep theirs).
  void reduce(index_t m) {
    WEFT_CHECK(m >= 0, value, "incremental::ExemplarMemory::reduce", "expected m >= 0, got ", m);
    for (auto& e : store_)
      if (e.second.dim(0) > m) e.second = e.second.rows(0, m).clone();
  }

  /// Stores `rows` (one exemplar per row, priority order) for a class not stored yet.
  void add(int label, const Tensor<T>& rows) {
    WEFT_CHECK(!contains(label), value, "incremental::ExemplarMemory::add", "expected a class not stored yet, got ",
               label, " (already stored)");
    WEFT_CHECK(rows.rank() >= 1 && rows.dim(0) > 0, shape, "incremental::ExemplarMemory::add",
               "expected at least one exemplar row, got shape ", rows.shape());
    WEFT_CHECK(store_.empty() || rows.shape().with(0, 1) == store_.begin()->second.shape().with(0, 1), shape,
               "incremental::ExemplarMemory::add", "expected exemplar rows of shape ",
               store_.empty() ? rows.shape() : store_.begin()->second.shape().with(0, rows.dim(0)), ", got ",
               rows.shape());
    WEFT_CHECK(size() + rows.dim(0) <= budget_, value, "incremental::ExemplarMemory::add",
               "expected at most ", budget_ - size(), " more exemplars (budget ", budget_, "), got ", rows.dim(0),
               "; reduce() the memory first");
    store_[label] = rows.clone();
    order_.push_back(label);
  }

  /// Every exemplar with its label, class by class in insertion order.
  Dataset<T> dataset() const {
    Dataset<T> d;
    if (store_.empty()) return d;
    const Shape row = store_.begin()->second.shape();
    d.x = Tensor<T>(row.with(0, size()));
    index_t at = 0;
    for (int c : order_) {
      const Tensor<T>& e = store_.at(c);
      d.x.rows(at, at + e.dim(0)).copy_from(e);
      for (index_t i = 0; i < e.dim(0); ++i) d.y.push_back(c);
      at += e.dim(0);
    }
    return d;
  }

 private:
  index_t budget_ = 0;
  std::map<int, Tensor<T>> store_;
  std::vector<int> order_;
};

}  // namespace incremental
WEFT_NAMESPACE_END
