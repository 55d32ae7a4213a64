// Tests of weft/incremental/memory.hpp: herding picks on hand-made examples (argmin and the
// official argmax variant, ties, fewer picks than asked), the distances herding() reports against
// a brute-force recomputation, random selection, normalisation, the
// per-class quota, the memory's shrinking in priority order, and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "support/test_util.hpp"
#include "weft/incremental/memory.hpp"

namespace weft_unit_incremental_memory_test {

using namespace weft;
using incremental::ExemplarMemory;

#define WEFT_INC_FAILS(expr, type, func) CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

namespace {
using V = std::vector<index_t>;
// Dyadic values, so every distance below is computed exactly.
// mu = (0.5625, 0.5625). argmin, k = 1: rows 2 and 3 tie at 0.0390625 (rows 0, 1: 0.5), pick 2;
// k = 2: (S + phi_i)/2 is (0.75, 0.375), (0.25, 0.875), (0.625, 0.625): row 3 (0.0078125);
// k = 3: rows 0 and 1 are mirror images (equal distances): pick 0; k = 4: row 1.
Tensor<double> four() { return Tensor<double>::from_values({1, 0, 0, 1, 0.5, 0.75, 0.75, 0.5}, Shape{4, 2}); }
// Seven copies of (1, 0) and one (0, 1): mu = (0.875, 0.125).
Tensor<double> repeats() {
  Tensor<double> t(Shape{8, 2});
  for (index_t i = 0; i < 7; ++i) t(i, 0) = 1;
  t(7, 1) = 1;
  return t;
}
}  // namespace

TEST_CASE("incremental/memory: herding argmin picks on a hand-made example, ties to the lowest index") {
  CHECK(incremental::herding_argmin(four(), 1) == V{2});
  CHECK(incremental::herding_argmin(four(), 2) == V{2, 3});
  CHECK(incremental::herding_argmin(four(), 4) == V{2, 3, 0, 1});
  CHECK(incremental::herding_argmin(four(), 10) == V{2, 3, 0, 1});  // fewer rows than m: all of them
  CHECK(incremental::herding_argmin(four().cast<float>(), 4) == V{2, 3, 0, 1});
  // identical rows are distinct exemplars: k = 1 takes row 0, k = 2 a copy (0.125^2 * 2 < 0.375^2 * 2)
  CHECK(incremental::herding_argmin(repeats(), 2) == V{0, 1});
}

TEST_CASE("incremental/memory: herding argmax (official) picks, repeats and the ceil(1.5 m) step limit") {
  // w = mu: rows 2, 3 tie at 0.703125 -> 2; w = (0.625, 0.375): row 3 (0.65625); w = (0.4375, 0.4375):
  // row 2 again (a repeat, not kept); w = (0.5, 0.25): rows 0 and 3 tie at 0.5 -> 0; w = (0.0625,
  // 0.8125): row 1.
  CHECK(incremental::herding_argmax(four(), 2) == V{2, 3});
  CHECK(incremental::herding_argmax(four(), 3) == V{2, 3, 0});     // 4 steps (< 4.5)
  CHECK(incremental::herding_argmax(four(), 4) == V{2, 3, 0, 1});  // 5 steps (< 6)
  // m = 2 allows 3 steps; w = (0.875, 0.125) -> 0, then (0.75, 0.25) -> 0, (0.625, 0.375) -> 0:
  // one distinct pick only. argmin returns two.
  CHECK(incremental::herding_argmax(repeats(), 2) == V{0});
  CHECK(incremental::herding_argmax(repeats(), 8).size() < 8);
}

namespace {
/// ||mu - mean of phi's rows idx[0, k)||_2, recomputed from scratch.
double brute_distance(const Tensor<double>& phi, const V& idx, std::size_t k) {
  double d2 = 0;
  for (index_t j = 0; j < phi.dim(1); ++j) {
    double mu = 0, mean = 0;
    for (index_t i = 0; i < phi.dim(0); ++i) mu += phi(i, j);
    for (std::size_t p = 0; p < k; ++p) mean += phi(idx[p], j);
    const double e = mu / double(phi.dim(0)) - mean / double(k);
    d2 += e * e;
  }
  return std::sqrt(d2);
}
}  // namespace

TEST_CASE("incremental/memory: herding() reports the distance each pick achieved (brute force)") {
  // the dyadic example: k = 1 and k = 2 as in the comment at four(); all rows: the mean itself
  const incremental::HerdingResult h = incremental::herding(four(), 4);
  CHECK(h.indices == V{2, 3, 0, 1});
  REQUIRE(h.distances.size() == 4);
  CHECK(h.distances[0] == std::sqrt(0.0390625));
  CHECK(h.distances[1] == std::sqrt(0.0078125));
  CHECK(h.distances[3] <= 1e-15);
  Rng rng(3);
  const Tensor<double> phi = incremental::normalize_rows(test::randn<double>(Shape{30, 5}, rng));
  for (auto v : {incremental::HerdingVariant::argmin, incremental::HerdingVariant::argmax}) {
    const incremental::HerdingResult r = incremental::herding(phi, 12, v);
    CHECK(r.indices == (v == incremental::HerdingVariant::argmin ? incremental::herding_argmin(phi, 12)
                                                                  : incremental::herding_argmax(phi, 12)));
    REQUIRE(r.distances.size() == r.indices.size());
    for (std::size_t k = 1; k <= r.indices.size(); ++k)
      CHECK(std::abs(r.distances[k - 1] - brute_distance(phi, r.indices, k)) <= 1e-12);
  }
  // argmin: no unpicked row would have brought the mean closer at any step
  const incremental::HerdingResult r = incremental::herding(phi, 12);
  for (std::size_t k = 1; k <= r.indices.size(); ++k)
    for (index_t c = 0; c < phi.dim(0); ++c) {
      V alt(r.indices.begin(), r.indices.begin() + std::ptrdiff_t(k - 1));
      if (std::find(alt.begin(), alt.end(), c) != alt.end()) continue;
      alt.push_back(c);
      CHECK(brute_distance(phi, alt, k) >= r.distances[k - 1] - 1e-12);
    }
}

TEST_CASE("incremental/memory: select_exemplars normalises, random selection is distinct and seeded") {
  // scaling a row does not change herding: features are normalised first
  Tensor<double> h = four();
  for (index_t j = 0; j < 2; ++j) h(0, j) *= 7, h(2, j) *= 0.25;
  const Tensor<double> phi = incremental::normalize_rows(h);
  for (index_t i = 0; i < 4; ++i) CHECK(phi(i, 0) * phi(i, 0) + phi(i, 1) * phi(i, 1) == doctest::Approx(1.0));
  incremental::MemoryOptions o;
  Rng rng(1);
  CHECK(incremental::select_exemplars(h, 3, o, rng) == incremental::herding_argmin(phi, 3));
  o.herding_variant = incremental::HerdingVariant::argmax;
  CHECK(incremental::select_exemplars(h, 3, o, rng) == incremental::herding_argmax(phi, 3));
  // an all-zero feature row stays zero
  Tensor<double> z(Shape{2, 3});
  z(1, 2) = 2;
  const Tensor<double> pz = incremental::normalize_rows(z);
  CHECK(pz(0, 0) == 0);
  CHECK(pz(1, 2) == 1);

  o.random_replay = true;
  Rng a(5), b(5);
  const Tensor<double> big(Shape{50, 2});
  const V r1 = incremental::select_exemplars(big, 10, o, a), r2 = incremental::select_exemplars(big, 10, o, b);
  CHECK(r1 == r2);
  CHECK(std::set<index_t>(r1.begin(), r1.end()).size() == 10);
  for (index_t i : r1) CHECK((i >= 0 && i < 50));
  CHECK(incremental::random_selection(3, 10, a).size() == 3);
}

TEST_CASE("incremental/memory: per-class quota and shrinking in priority order under a fixed budget") {
  // M = 20 over 2, 4, ..., 10 classes: 10, 5, 3, 2, 2 (spec Sec. 9)
  CHECK(incremental::exemplars_per_class(20, 2) == 10);
  CHECK(incremental::exemplars_per_class(20, 4) == 5);
  CHECK(incremental::exemplars_per_class(20, 6) == 3);
  CHECK(incremental::exemplars_per_class(20, 8) == 2);
  CHECK(incremental::exemplars_per_class(20, 10) == 2);

  ExemplarMemory<float> mem(20);
  Tensor<float> a(Shape{10, 3}), b(Shape{10, 3});
  for (index_t i = 0; i < 10; ++i) a(i, 0) = float(i), b(i, 0) = float(100 + i);
  mem.add(7, a);
  mem.add(2, b);
  CHECK(mem.size() == 20);
  CHECK(mem.labels() == std::vector<int>{7, 2});
  mem.reduce(5);
  CHECK(mem.size() == 10);
  CHECK(mem.exemplars(7).dim(0) == 5);
  for (index_t i = 0; i < 5; ++i) CHECK(mem.exemplars(2)(i, 0) == float(100 + i));  // the first 5, in order
  Dataset<float> d = mem.dataset();
  CHECK(d.size() == 10);
  CHECK(d.y == std::vector<int>{7, 7, 7, 7, 7, 2, 2, 2, 2, 2});
  CHECK(d.x(5, 0) == 100.0f);
  mem.reduce(8);  // classes with fewer keep theirs
  CHECK(mem.size() == 10);
}

TEST_CASE("incremental/memory: bad input") {
  WEFT_INC_FAILS(incremental::exemplars_per_class(5, 6), ValueError, "incremental::exemplars_per_class");
  WEFT_INC_FAILS(incremental::exemplars_per_class(5, 0), ValueError, "incremental::exemplars_per_class");
  WEFT_INC_FAILS(ExemplarMemory<float>(0), ValueError, "incremental::ExemplarMemory");
  WEFT_INC_FAILS(incremental::herding_argmin(Tensor<double>(Shape{0, 2}), 1), ShapeError,
                 "incremental::herding_argmin");
  WEFT_INC_FAILS(incremental::herding_argmin(four(), 0), ValueError, "incremental::herding_argmin");
  Tensor<double> nan = four();
  nan(1, 1) = std::nan("");
  WEFT_INC_FAILS(incremental::herding_argmax(nan, 2), ValueError, "incremental::herding_argmax");
  WEFT_INC_FAILS(incremental::herding(nan, 2), ValueError, "incremental::herding");
  WEFT_INC_FAILS(incremental::herding(four(), 0, incremental::HerdingVariant::argmax), ValueError, "incremental::herding");
  WEFT_INC_FAILS(incremental::normalize_rows(Tensor<double>(Shape{3})), ShapeError, "incremental::normalize_rows");
  Rng rng(1);
  incremental::MemoryOptions o;
  WEFT_INC_FAILS(incremental::select_exemplars(Tensor<double>(Shape{0, 2}), 2, o, rng), ShapeError,
                 "incremental::select_exemplars");
  WEFT_INC_FAILS(incremental::random_selection(0, 2, rng), ValueError, "incremental::random_selection");

  ExemplarMemory<float> mem(6);
  mem.add(1, Tensor<float>(Shape{4, 3}));
  WEFT_INC_FAILS(mem.add(1, Tensor<float>(Shape{1, 3})), ValueError, "incremental::ExemplarMemory::add");
  WEFT_INC_FAILS(mem.add(2, Tensor<float>(Shape{3, 3})), ValueError, "incremental::ExemplarMemory::add");
  WEFT_INC_FAILS(mem.add(2, Tensor<float>(Shape{1, 4})), ShapeError, "incremental::ExemplarMemory::add");
  WEFT_INC_FAILS(mem.add(2, Tensor<float>(Shape{0, 3})), ShapeError, "incremental::ExemplarMemory::add");
  WEFT_INC_FAILS(mem.exemplars(9), ValueError, "incremental::ExemplarMemory::exemplars");
  WEFT_INC_FAILS(mem.reduce(-1), ValueError, "incremental::ExemplarMemory::reduce");
  CHECK(mem.size() == 4);
  CHECK(mem.classes() == 1);
}

TEST_CASE("incremental/memory: finite features whose squared distances overflow are a ValueError, not a wild write") {
  Tensor<double> phi(Shape{3, 2});
  for (index_t i = 0; i < 3; ++i) {
    phi(i, 0) = 1e200 * double(i + 1);
    phi(i, 1) = -1e200;
  }
  WEFT_INC_FAILS(incremental::herding_argmin(phi, 2), ValueError, "incremental::herding_argmin");
  WEFT_INC_FAILS(incremental::herding_argmax(phi, 2), ValueError, "incremental::herding_argmax");
  WEFT_INC_FAILS(incremental::herding(phi, 2), ValueError, "incremental::herding");
  // normalised, the same features are fine: every pick is a distinct valid row
  const V picks = incremental::herding_argmin(incremental::normalize_rows(phi), 3);
  CHECK(std::set<index_t>(picks.begin(), picks.end()) == std::set<index_t>{0, 1, 2});
  // float features near the float limit are accepted (the distances are computed in double)
  Tensor<float> big(Shape{2, 2}, 3e38f);
  big(1, 1) = -3e38f;
  CHECK(incremental::herding_argmin(big, 2).size() == 2);
}

}  // namespace weft_unit_incremental_memory_test
