// Tests of weft/prune/kernels.hpp and scores.hpp: every kernel against a double reference, the
// vector path against the scalar path (lengths covering tails), 1 vs 2 threads bit for bit, and
// the score functions' checks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "prune_test_util.hpp"
#include "weft/prune/kernels.hpp"
#include "weft/prune/scores.hpp"

namespace weft_unit_prune_kernels_test {

using namespace weft;
using namespace weft::prune;
using weft::prune_test::ThreadCountGuard;

namespace {

using weft::test::same_bits;
using weft::test::uniform_vector;

template <class T>
bool close(const std::vector<T>& a, const std::vector<double>& ref, double rtol) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::abs(double(a[i]) - ref[i]) <= rtol * std::max(1.0, std::abs(ref[i])))) return false;
  return true;
}

template <class T>
double tol() {
  return std::is_same_v<T, float> ? 4e-6 : 1e-14;
}

/// Runs every kernel through the dispatching driver and the scalar body; checks both against
/// double references.
template <class T>
void check_kernels(index_t n, Rng& rng) {
  const std::vector<T> w = uniform_vector<T>(n, -2, 2, rng), g = uniform_vector<T>(n, -1, 1, rng),
                       h = uniform_vector<T>(n, 0, 3, rng);
  std::vector<T> keep(w.size());
  for (auto& k : keep) k = rng.uniform() < 0.5 ? T(0) : T(1);
  std::vector<T> a(w.size()), b(w.size());
  std::vector<double> ref(w.size());

  abs_scores(w.data(), a.data(), n);
  abs_scores_scalar(w.data(), b.data(), n);
  for (std::size_t i = 0; i < w.size(); ++i) ref[i] = std::abs(double(w[i]));
  CHECK(close(a, ref, 0));
  CHECK(same_bits(a, b));

  taylor_first(w.data(), g.data(), a.data(), n);
  taylor_first_scalar(w.data(), g.data(), b.data(), n);
  for (std::size_t i = 0; i < w.size(); ++i) ref[i] = std::abs(double(w[i]) * double(g[i]));
  CHECK(close(a, ref, tol<T>()));
  CHECK(close(b, ref, tol<T>()));

  taylor_mix(w.data(), g.data(), h.data(), a.data(), n);
  taylor_mix_scalar(w.data(), g.data(), h.data(), b.data(), n);
  for (std::size_t i = 0; i < w.size(); ++i)
    ref[i] = std::abs(double(w[i]) * double(g[i]) - 0.5 * double(w[i]) * double(h[i]) * double(w[i]));
  CHECK(close(a, ref, 4 * tol<T>()));
  CHECK(close(b, ref, 4 * tol<T>()));

  const T kappa = T(0.7);
  couple<coupling_form::scaled>(g.data(), h.data(), a.data(), n, kappa);
  couple_scalar<coupling_form::scaled>(g.data(), h.data(), b.data(), n, kappa);
  for (std::size_t i = 0; i < w.size(); ++i) ref[i] = double(g[i]) * (1 + double(kappa) * double(h[i]));
  CHECK(close(a, ref, 4 * tol<T>()));
  CHECK(close(b, ref, 4 * tol<T>()));
  couple<coupling_form::cubic>(g.data(), h.data(), a.data(), n, kappa);
  couple_scalar<coupling_form::cubic>(g.data(), h.data(), b.data(), n, kappa);
  for (std::size_t i = 0; i < w.size(); ++i) ref[i] = double(g[i]) + double(kappa) * double(h[i]) * std::pow(double(g[i]), 3);
  CHECK(close(a, ref, 4 * tol<T>()));
  CHECK(close(b, ref, 4 * tol<T>()));
  couple<coupling_form::square>(g.data(), h.data(), a.data(), n, kappa);
  couple_scalar<coupling_form::square>(g.data(), h.data(), b.data(), n, kappa);
  for (std::size_t i = 0; i < w.size(); ++i) ref[i] = double(g[i]) + double(kappa) * double(h[i]) * double(g[i]) * double(g[i]);
  CHECK(close(a, ref, 4 * tol<T>()));
  CHECK(close(b, ref, 4 * tol<T>()));

  for (bool cubic : {false, true}) {
    std::vector<T> ia(w.size(), T(0.5)), ib(w.size(), T(0.5));
    const T sign = T(-1), sa = T(0.5), gs = T(1.25);
    accumulate_dual(ia.data(), g.data(), w.data(), n, sign, sa, gs, cubic);
    accumulate_dual_scalar(ib.data(), g.data(), w.data(), n, sign, sa, gs, cubic);
    for (std::size_t i = 0; i < w.size(); ++i) {
      const double u = 1.25 * double(g[i]) * double(w[i]);
      ref[i] = 0.5 + std::abs(-u + 0.5 * u * u + (cubic ? std::pow(double(w[i]), 3) : 0.0));
    }
    CHECK(close(ia, ref, 8 * tol<T>()));
    CHECK(close(ib, ref, 8 * tol<T>()));
  }

  masked_copy(w.data(), keep.data(), a.data(), n);
  masked_copy_scalar(w.data(), keep.data(), b.data(), n);
  for (std::size_t i = 0; i < w.size(); ++i) ref[i] = keep[i] != T(0) ? double(w[i]) : 0.0;
  CHECK(close(a, ref, 0));
  CHECK(same_bits(a, b));
  for (std::size_t i = 0; i < w.size(); ++i)
    if (keep[i] == T(0)) CHECK(!std::signbit(a[i]));  // +0, never -0

  // row-broadcast kernels on a (rows x cols) view of the first rows * cols elements
  const index_t cols = 7 + n % 13, rows = n / cols;
  if (rows > 0) {
    const std::vector<T> c = uniform_vector<T>(cols, 0, 2, rng);
    std::vector<T> sa(std::size_t(rows * cols)), sb(sa.size());
    col_scaled_abs(w.data(), c.data(), sa.data(), rows, cols);
    for (index_t r = 0; r < rows; ++r) col_scaled_abs_scalar(w.data() + r * cols, c.data(), sb.data() + r * cols, cols);
    std::vector<double> rr(sa.size());
    for (index_t i = 0; i < rows * cols; ++i) rr[std::size_t(i)] = std::abs(double(w[std::size_t(i)])) * double(c[std::size_t(i % cols)]);
    CHECK(close(sa, rr, tol<T>()));
    CHECK(close(sb, rr, tol<T>()));
    col_scaled_sq(w.data(), c.data(), sa.data(), rows, cols);
    for (index_t r = 0; r < rows; ++r) col_scaled_sq_scalar(w.data() + r * cols, c.data(), sb.data() + r * cols, cols);
    for (index_t i = 0; i < rows * cols; ++i)
      rr[std::size_t(i)] = double(w[std::size_t(i)]) * double(w[std::size_t(i)]) * double(c[std::size_t(i % cols)]);
    CHECK(close(sa, rr, 2 * tol<T>()));
    CHECK(close(sb, rr, 2 * tol<T>()));
  }
}

}  // namespace

TEST_CASE_TEMPLATE("prune/kernels: vector and scalar paths agree with a double reference", T, float, double) {
  Rng rng(11);
  for (index_t n : {1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 257})
    check_kernels<T>(n, rng);
}

TEST_CASE("prune/kernels: 1 and 2 threads give the same bits") {
  ThreadCountGuard guard;
  Rng rng(12);
  const index_t n = 300001;
  const std::vector<float> w = uniform_vector<float>(n, -2, 2, rng), g = uniform_vector<float>(n, -1, 1, rng),
                           h = uniform_vector<float>(n, 0, 1, rng);
  auto run = [&](int threads) {
    set_num_threads(threads);
    std::vector<float> s(w.size()), imp(w.size(), 0.0f), gt(w.size());
    couple<coupling_form::cubic>(g.data(), h.data(), gt.data(), n, 0.3f);
    accumulate_dual(imp.data(), gt.data(), w.data(), n, 1.0f, 0.5f, 1.0f, false);
    col_scaled_sq(w.data(), h.data(), s.data(), 1000, 300);
    imp.insert(imp.end(), s.begin(), s.end());
    return imp;
  };
  CHECK(same_bits(run(1), run(2)));
}

TEST_CASE("prune/scores: magnitude, Wanda, ObsDiag and Taylor scores") {
  Tensor<double> w = Tensor<double>::from_values({1, -2, 3, -4, 0.5, 6}, Shape{2, 3});
  Tensor<double> norms = Tensor<double>::vector_of({2, 0, 1});
  Tensor<double> s = magnitude_scores(w);
  CHECK(s(0, 1) == 2);
  CHECK(s(1, 0) == 4);
  s = wanda_scores(w, norms);
  CHECK(s(0, 0) == 2);
  CHECK(s(0, 1) == 0);
  CHECK(s(1, 2) == 6);
  s = obs_diag_scores(w, std::vector<double>{0.5, 0.0, 2.0});  // d = 0: dead input
  CHECK(s(0, 0) == doctest::Approx(2.0));
  CHECK(s(1, 1) == 0.0);
  CHECK(s(1, 2) == doctest::Approx(18.0));
  Tensor<double> g = Tensor<double>::from_values({0.5, 0.5, -1, 1, 2, 0}, Shape{2, 3});
  Tensor<double> f = Tensor<double>::from_values({1, 1, 1, 0.5, 0, 2}, Shape{2, 3});
  s = param_first_scores(w, g);
  CHECK(s(0, 2) == 3);
  CHECK(s(1, 0) == 4);
  s = param_mix_scores(w, g, f);
  CHECK(s(0, 0) == doctest::Approx(0.0));    // 0.5 - 0.5 * 1 * 1 * 1
  CHECK(s(1, 0) == doctest::Approx(8.0));    // |-4 - 0.5 * 16 * 0.5|
  CHECK(s(1, 2) == doctest::Approx(36.0));   // |0 - 0.5 * 36 * 2|
}

TEST_CASE("prune/scores: bad input") {
  Tensor<float> w(Shape{2, 3}, 1.0f);
  WEFT_PRUNE_CHECK_FAILS(wanda_scores(w, Tensor<float>(Shape{2})), ShapeError, "prune::wanda_scores");
  WEFT_PRUNE_CHECK_FAILS(wanda_scores(w, Tensor<float>::vector_of({1, -1, 1})), ValueError, "prune::wanda_scores");
  WEFT_PRUNE_CHECK_FAILS(obs_diag_scores(w, std::vector<double>{1, 1}), ShapeError, "prune::obs_diag_scores");
  WEFT_PRUNE_CHECK_FAILS(obs_diag_scores(w, std::vector<double>{1, std::nan(""), 1}), ValueError, "prune::obs_diag_scores");
  WEFT_PRUNE_CHECK_FAILS(param_first_scores(w, Tensor<float>(Shape{3, 2})), ShapeError, "prune::param_first_scores");
  Tensor<float> bad = w.clone();
  bad(1, 1) = std::numeric_limits<float>::infinity();
  WEFT_PRUNE_CHECK_FAILS(magnitude_scores(bad), ValueError, "prune::magnitude_scores");
  WEFT_PRUNE_CHECK_FAILS(param_mix_scores(w, w, bad), ValueError, "prune::param_mix_scores");
  WEFT_PRUNE_CHECK_FAILS(magnitude_scores(Tensor<float>(Shape{4})), ShapeError, "prune::magnitude_scores");
}

}  // namespace weft_unit_prune_kernels_test
