// Tests of weft/prune/mask.hpp: exact zero counts per matrix, row, column block and N:M group;
// the stable tie-break; the reference rules (numpy percentile, sorted index) against a full
// sort; the thresholds select_mask_with_thresholds reports against the mask; 1 vs 2 threads;
// bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "prune_test_util.hpp"
#include "weft/prune/mask.hpp"

namespace weft_unit_prune_mask_test {

using namespace weft;
using namespace weft::prune;
using weft::prune_test::ThreadCountGuard;

namespace {

/// The exact_count mask by a full stable sort of (score, index): the definition.
std::vector<std::uint8_t> exact_by_sort(const std::vector<float>& v, index_t k) {
  std::vector<index_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), index_t(0));
  std::stable_sort(idx.begin(), idx.end(), [&](index_t a, index_t b) { return v[std::size_t(a)] < v[std::size_t(b)]; });
  std::vector<std::uint8_t> keep(v.size(), 1);
  for (index_t i = 0; i < k; ++i) keep[std::size_t(idx[std::size_t(i)])] = 0;
  return keep;
}

/// numpy.percentile(v, 100 q) with linear interpolation, by a full sort.
double numpy_percentile(std::vector<float> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const std::size_t lo = std::size_t(std::floor(pos));
  const double a = v[lo], b = v[std::min(lo + 1, v.size() - 1)], f = pos - double(lo);
  return f >= 0.5 ? b - (b - a) * (1 - f) : a + (b - a) * f;
}

/// Scores with many ties: integers in [0, levels).
std::vector<float> tied_scores(index_t n, int levels, Rng& rng) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = float(rng.below(std::uint64_t(levels)));
  return v;
}

/// Checks a MaskSelection against the scores: same mask as select_mask; threshold_at(r, c) is
/// the threshold of the group (r, c) belongs to; every pruned score <= t;
/// every kept one >= t (exact_count: ties at t on both sides) or > t (the _le rules, ties pruned);
/// for exact_count t is a pruned score of its group (the k-th smallest) or -inf with none pruned.
void check_thresholds(const std::vector<float>& v, index_t rows, index_t cols, const MaskOptions& o) {
  const MaskSelection sel = select_mask_with_thresholds(v.data(), rows, cols, o);
  CHECK(sel.mask == select_mask(v.data(), rows, cols, o));
  std::vector<int> attained(sel.thresholds.size(), 0), pruned(sel.thresholds.size(), 0);
  index_t bad = 0;
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) {
      const double x = v[std::size_t(r * cols + c)], t = sel.threshold_at(r, c);
      const bool exact = o.rule == threshold_rule::exact_count;
      bad += sel.mask.kept(r, c) ? (exact ? x < t : x <= t) : x > t;
      const std::size_t g = std::size_t(o.group == mask_group::row            ? r
                                        : o.group == mask_group::column_block ? c / o.block_cols
                                        : o.group == mask_group::n_of_m       ? r * (cols / o.m) + c / o.m
                                                                              : 0);
      bad += t != sel.thresholds[g];
      if (!sel.mask.kept(r, c)) pruned[g] = 1, attained[g] |= x == t;
    }
  CHECK(bad == 0);
  if (o.rule != threshold_rule::exact_count) return;
  for (std::size_t g = 0; g < sel.thresholds.size(); ++g)
    CHECK((pruned[g] ? attained[g] == 1 : sel.thresholds[g] == -std::numeric_limits<double>::infinity()));
}

}  // namespace

TEST_CASE("prune/mask: exact_count prunes floor(s n) per matrix, ties by lower index") {
  Rng rng(1);
  for (double s : {0.0, 0.1, 0.5, 0.52, 0.9, 0.999}) {
    for (int levels : {3, 50, 1 << 30}) {
      const index_t rows = 37, cols = 53;
      std::vector<float> v = tied_scores(rows * cols, levels, rng);
      MaskOptions o;
      o.sparsity = s;
      Mask m = select_mask(v.data(), rows, cols, o);
      CHECK(m.zeros() == index_t(std::floor(s * double(rows * cols))));
      CHECK(m.keep == exact_by_sort(v, prune_count(s, rows * cols)));
    }
  }
}

TEST_CASE("prune/mask: all-equal scores prune the first k entries in row-major order") {
  std::vector<double> v(4 * 5, 0.25);
  MaskOptions o;
  o.sparsity = 0.5;
  Mask m = select_mask(v.data(), 4, 5, o);
  for (index_t i = 0; i < 20; ++i) CHECK(m.keep[std::size_t(i)] == (i < 10 ? 0 : 1));
  o.group = mask_group::row;  // per row: the first floor(0.5 * 5) = 2 of each row
  m = select_mask(v.data(), 4, 5, o);
  for (index_t r = 0; r < 4; ++r)
    for (index_t c = 0; c < 5; ++c) CHECK(m.kept(r, c) == (c >= 2));
}

TEST_CASE("prune/mask: per-row exact counts (Wanda's rule) and per-column-block counts") {
  Rng rng(2);
  const index_t rows = 64, cols = 300;
  std::vector<float> v = tied_scores(rows * cols, 7, rng);
  MaskOptions o;
  o.sparsity = 0.5;
  o.group = mask_group::row;
  Mask m = select_mask(v.data(), rows, cols, o);
  for (index_t r = 0; r < rows; ++r) {
    CHECK(m.zeros_in_row(r) == 150);
    std::vector<float> row(v.begin() + r * cols, v.begin() + (r + 1) * cols);
    std::vector<std::uint8_t> ref = exact_by_sort(row, 150);
    CHECK(std::equal(ref.begin(), ref.end(), m.keep.begin() + r * cols));
  }
  o.group = mask_group::column_block;
  o.block_cols = 128;  // blocks of 128, 128 and 44 columns
  m = select_mask(v.data(), rows, cols, o);
  for (index_t b = 0; b < 3; ++b) {
    const index_t c0 = b * 128, w = std::min<index_t>(cols, c0 + 128) - c0;
    std::vector<float> blk;
    index_t z = 0;
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = c0; c < c0 + w; ++c) {
        blk.push_back(v[std::size_t(r * cols + c)]);
        z += !m.kept(r, c);
      }
    CHECK(z == prune_count(0.5, rows * w));
    std::vector<std::uint8_t> ref = exact_by_sort(blk, prune_count(0.5, rows * w));
    std::size_t i = 0;
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = c0; c < c0 + w; ++c) CHECK(m.kept(r, c) == (ref[i++] != 0));
  }
}

TEST_CASE("prune/mask: N:M prunes exactly n of every m consecutive inputs (2:4, 4:8)") {
  Rng rng(3);
  const index_t rows = 10, cols = 64;
  std::vector<float> v = tied_scores(rows * cols, 4, rng);
  for (auto nm : {std::pair<index_t, index_t>{2, 4}, std::pair<index_t, index_t>{4, 8}}) {
    MaskOptions o;
    o.group = mask_group::n_of_m;
    o.n = nm.first;
    o.m = nm.second;
    Mask m = select_mask(v.data(), rows, cols, o);
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; c += o.m) {
        std::vector<float> g(v.begin() + r * cols + c, v.begin() + r * cols + c + o.m);
        std::vector<std::uint8_t> ref = exact_by_sort(g, o.n);
        for (index_t j = 0; j < o.m; ++j) CHECK(m.kept(r, c + j) == (ref[std::size_t(j)] != 0));
      }
    CHECK(m.zeros() == rows * cols * o.n / o.m);
  }
}

TEST_CASE("prune/mask: percentile_le reproduces numpy.percentile and prunes everything <= t") {
  Rng rng(4);
  for (double s : {0.0, 0.3, 0.5, 0.52, 0.97}) {
    for (int levels : {5, 1 << 30}) {
      std::vector<float> v = tied_scores(23 * 31, levels, rng);
      for (auto& x : v) x = x / 7.0f - 3.0f;  // negative scores too
      MaskOptions o;
      o.sparsity = s;
      o.rule = threshold_rule::percentile_le;
      Mask m = select_mask(v.data(), 23, 31, o);
      const double t = numpy_percentile(v, s);
      for (std::size_t i = 0; i < v.size(); ++i) CHECK((m.keep[i] == 0) == (double(v[i]) <= t));
      if (levels > 1000) CHECK(m.zeros() == index_t(std::floor(s * double(v.size() - 1))) + 1);  // distinct
    }
  }
  // a hand-computed case: percentile([1, 2, 3, 4], 50) = 2.5 prunes 1 and 2
  std::vector<double> h = {4, 1, 3, 2};
  MaskOptions o;
  o.rule = threshold_rule::percentile_le;
  Mask m = select_mask(h.data(), 1, 4, o);
  CHECK(m.keep == std::vector<std::uint8_t>{1, 0, 1, 0});
}

TEST_CASE("prune/mask: sorted_index_le prunes scores <= sort(s)[floor(s n)] (k + 1 for distinct)") {
  Rng rng(5);
  for (int levels : {6, 1 << 30}) {
    std::vector<float> v = tied_scores(40 * 25, levels, rng);
    MaskOptions o;
    o.sparsity = 0.5;
    o.rule = threshold_rule::sorted_index_le;
    Mask m = select_mask(v.data(), 40, 25, o);
    std::vector<float> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    const float t = sorted[500];
    for (std::size_t i = 0; i < v.size(); ++i) CHECK((m.keep[i] == 0) == (v[i] <= t));
    if (levels > 1000) CHECK(m.zeros() == 501);
  }
}

TEST_CASE("prune/mask: select_mask_with_thresholds: kept >= t >= pruned for every rule and group") {
  Rng rng(11);
  const index_t rows = 12, cols = 40;
  for (int levels : {4, 1 << 30}) {
    const std::vector<float> v = tied_scores(rows * cols, levels, rng);
    for (auto g : {mask_group::matrix, mask_group::row, mask_group::column_block})
      for (auto rule : {threshold_rule::exact_count, threshold_rule::percentile_le, threshold_rule::sorted_index_le})
        for (double s : {0.0, 0.3, 0.5}) {
          MaskOptions o;
          o.group = g;
          o.rule = rule;
          o.sparsity = s;
          o.block_cols = 16;  // blocks of 16, 16 and 8 columns
          check_thresholds(v, rows, cols, o);
        }
    MaskOptions nm;
    nm.group = mask_group::n_of_m;
    for (index_t n : {0, 1, 2}) {
      nm.n = n;
      check_thresholds(v, rows, cols, nm);
    }
  }
  // a large group (the radix select) and the group counts
  const std::vector<float> big = tied_scores(300 * 300, 1000, rng);
  MaskOptions o;
  check_thresholds(big, 300, 300, o);
  CHECK(select_mask_with_thresholds(big.data(), 300, 300, o).thresholds.size() == 1);
  o.group = mask_group::column_block;
  CHECK(select_mask_with_thresholds(big.data(), 300, 300, o).thresholds.size() == 3);
  o.group = mask_group::n_of_m;
  CHECK(select_mask_with_thresholds(big.data(), 300, 300, o).thresholds.size() == 300 * 75);
  // the reference rules' t is the one they define
  const std::vector<float> v = tied_scores(rows * cols, 1 << 30, rng);
  o = MaskOptions{};
  o.rule = threshold_rule::percentile_le;
  o.sparsity = 0.52;
  CHECK(select_mask_with_thresholds(v.data(), rows, cols, o).thresholds[0] == numpy_percentile(v, 0.52));
  o.rule = threshold_rule::sorted_index_le;
  std::vector<float> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  CHECK(select_mask_with_thresholds(v.data(), rows, cols, o).thresholds[0] ==
        double(sorted[std::size_t(prune_count(0.52, rows * cols))]));
  // the tensor overload, and a bad position
  const Tensor<double> t = Tensor<double>::from_values({3, 1, 2, 0, 5, 4}, Shape{2, 3});
  const MaskSelection sel = select_mask_with_thresholds(t);  // k = 3: scores 0, 1, 2
  CHECK(sel.thresholds == std::vector<double>{2.0});
  WEFT_PRUNE_CHECK_FAILS(sel.threshold_at(2, 0), ShapeError, "prune::MaskSelection::threshold_at");
}

TEST_CASE("prune/mask: the same mask with 1 and 2 threads, for every group") {
  ThreadCountGuard guard;
  Rng rng(6);
  const index_t rows = 512, cols = 256;
  std::vector<float> v = tied_scores(rows * cols, 100, rng);
  for (mask_group g : {mask_group::matrix, mask_group::row, mask_group::column_block, mask_group::n_of_m}) {
    MaskOptions o;
    o.group = g;
    o.sparsity = 0.6;
    set_num_threads(1);
    Mask a = select_mask(v.data(), rows, cols, o);
    set_num_threads(2);
    Mask b = select_mask(v.data(), rows, cols, o);
    CHECK(a == b);
  }
}

TEST_CASE("prune/mask: a tensor overload and Mask helpers") {
  Tensor<double> s = Tensor<double>::from_values({3, 1, 2, 0, 5, 4}, Shape{2, 3});
  Mask m = select_mask(s);  // k = 3: scores 0, 1, 2
  CHECK(m.keep == std::vector<std::uint8_t>{1, 0, 0, 0, 1, 1});
  CHECK(m.zeros() == 3);
  CHECK(m.zeros_in_row(0) == 2);
  CHECK(m.sparsity() == doctest::Approx(0.5));
  Tensor<float> t = m.as_tensor<float>();
  CHECK(t(0, 0) == 1.0f);
  CHECK(t(0, 1) == 0.0f);
  CHECK(Mask(2, 2).zeros() == 0);
}

TEST_CASE("prune/mask: bad input raises before anything is computed") {
  std::vector<float> v(12, 1.0f);
  MaskOptions o;
  o.sparsity = 1.0;
  WEFT_PRUNE_CHECK_FAILS(select_mask(v.data(), 3, 4, o), ValueError, "prune::select_mask");
  o.sparsity = -0.1;
  WEFT_PRUNE_CHECK_FAILS(select_mask(v.data(), 3, 4, o), ValueError, "prune::select_mask");
  o.sparsity = std::numeric_limits<double>::quiet_NaN();
  WEFT_PRUNE_CHECK_FAILS(select_mask(v.data(), 3, 4, o), ValueError, "prune::select_mask");
  o = MaskOptions{};
  v[5] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(select_mask(v.data(), 3, 4, o), doctest::Contains("at (1, 1)"), ValueError);
  v[5] = std::numeric_limits<float>::infinity();
  WEFT_PRUNE_CHECK_FAILS(select_mask(v.data(), 3, 4, o), ValueError, "prune::select_mask");
  v[5] = 1.0f;
  WEFT_PRUNE_CHECK_FAILS(select_mask(v.data(), 0, 4, o), ShapeError, "prune::select_mask");
  o.group = mask_group::n_of_m;
  o.m = 8;  // 4 columns are not a multiple of 8
  WEFT_PRUNE_CHECK_FAILS(select_mask(v.data(), 3, 4, o), ShapeError, "prune::select_mask");
  o.m = 4;
  o.n = 4;
  WEFT_PRUNE_CHECK_FAILS(select_mask(v.data(), 3, 4, o), ConfigError, "prune::select_mask");
  o.n = 2;
  o.rule = threshold_rule::percentile_le;
  WEFT_PRUNE_CHECK_FAILS(select_mask(v.data(), 3, 4, o), ConfigError, "prune::select_mask");
  o = MaskOptions{};
  o.group = mask_group::column_block;
  o.block_cols = 0;
  WEFT_PRUNE_CHECK_FAILS(select_mask(v.data(), 3, 4, o), ConfigError, "prune::select_mask");
  WEFT_PRUNE_CHECK_FAILS(select_mask_with_thresholds(v.data(), 3, 4, o), ConfigError,
                         "prune::select_mask_with_thresholds");
  Tensor<float> r1(Shape{12});
  WEFT_PRUNE_CHECK_FAILS(select_mask(r1), ShapeError, "prune::select_mask");
  WEFT_PRUNE_CHECK_FAILS(select_mask_with_thresholds(r1), ShapeError, "prune::select_mask_with_thresholds");
  v[3] = std::numeric_limits<float>::quiet_NaN();
  WEFT_PRUNE_CHECK_FAILS(select_mask_with_thresholds(v.data(), 3, 4, MaskOptions{}), ValueError,
                         "prune::select_mask_with_thresholds");
}

TEST_CASE_TEMPLATE("prune/mask: the radix select equals nth_element; -0 and +0 are one value", S, float, double) {
  Rng rng(7);
  const index_t n = prune::detail::radix_min + 1234;
  std::vector<S> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = S(rng.below(2000)) / S(64) - S(15);  // ties, negatives and exact zeros
  for (std::size_t i = 0; i < v.size(); i += 97) v[i] = S(-0.0);
  std::vector<S> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  for (index_t k : {index_t(1), index_t(2), n / 3, n / 2, n - 1, n}) {
    index_t below = -1;
    const S t = prune::detail::radix_select(v.data(), n, k, &below);
    CHECK(t == sorted[std::size_t(k - 1)]);
    CHECK(below == index_t(std::lower_bound(sorted.begin(), sorted.end(), t) - sorted.begin()));
  }
  // large groups through select_mask, against the full-sort definitions
  std::vector<float> vf(v.begin(), v.end());
  const index_t rows = 256, cols = n / 256;
  vf.resize(std::size_t(rows * cols));
  for (double s : {0.25, 0.5, 0.52}) {
    MaskOptions o;
    o.sparsity = s;
    Mask m = select_mask(vf.data(), rows, cols, o);
    CHECK(m.keep == exact_by_sort(vf, prune_count(s, rows * cols)));
    o.rule = threshold_rule::percentile_le;
    m = select_mask(vf.data(), rows, cols, o);
    const double t = numpy_percentile(vf, s);
    index_t wrong = 0;
    for (std::size_t i = 0; i < vf.size(); ++i) wrong += (m.keep[i] == 0) != (double(vf[i]) <= t);
    CHECK(wrong == 0);
    o.rule = threshold_rule::sorted_index_le;
    m = select_mask(vf.data(), rows, cols, o);
    std::vector<float> sf = vf;
    std::sort(sf.begin(), sf.end());
    const float tk = sf[std::size_t(prune_count(s, rows * cols))];
    wrong = 0;
    for (std::size_t i = 0; i < vf.size(); ++i) wrong += (m.keep[i] == 0) != (vf[i] <= tk);
    CHECK(wrong == 0);
  }
}

TEST_CASE("prune/mask: negative or overflowing extents and inconsistent masks are weft errors") {
  WEFT_PRUNE_CHECK_FAILS(Mask(-1, 2), ShapeError, "prune::Mask");
  WEFT_PRUNE_CHECK_FAILS(Mask(2, -1), ShapeError, "prune::Mask");
  WEFT_PRUNE_CHECK_FAILS(Mask(index_t(1) << 40, index_t(1) << 40), ValueError, "prune::Mask");
  Mask m(2, 3);
  m.validate();
  m.keep.pop_back();  // as a hand-written deserialiser might leave it
  WEFT_PRUNE_CHECK_FAILS(m.validate(), ShapeError, "prune::Mask::validate");
  Mask v(2, 2);
  v.keep[1] = 7;
  WEFT_PRUNE_CHECK_FAILS(v.validate(), ValueError, "prune::Mask::validate");
  Mask neg;
  neg.rows = -2;
  neg.cols = -3;
  neg.keep.assign(6, 1);  // rows * cols = 6, but the extents are negative
  WEFT_PRUNE_CHECK_FAILS(neg.validate(), ShapeError, "prune::Mask::validate");
  // MaskSelection: thresholds and group_cols must fit the groups before threshold_at indexes them
  const std::vector<float> s = {4, 1, 3, 2, 8, 5, 7, 6};
  MaskOptions o;
  o.group = mask_group::n_of_m;
  MaskSelection sel = select_mask_with_thresholds(s.data(), 2, 4, o);
  CHECK(sel.threshold_at(1, 3) == 6.0);
  MaskSelection bad = sel;
  bad.thresholds.pop_back();
  WEFT_PRUNE_CHECK_FAILS(bad.threshold_at(1, 3), ShapeError, "prune::MaskSelection::threshold_at");
  bad = sel;
  bad.group_cols = 0;
  WEFT_PRUNE_CHECK_FAILS(bad.threshold_at(0, 0), ShapeError, "prune::MaskSelection::threshold_at");
}

}  // namespace weft_unit_prune_mask_test
