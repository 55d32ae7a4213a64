// Tests of weft/core/shape.hpp and weft/core/rng.hpp: Shape arithmetic and checks; the Rng
// against an independent xoshiro256** / splitmix64, its distributions and streams; and the
// init:: weight initialisers (formulas, fans, errors).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "core/core_test_helpers.hpp"
#include "support/test_util.hpp"
#include "weft/core/rng.hpp"
#include "weft/core/shape.hpp"

namespace weft_unit_core_shape_rng_test {

using weft::index_t;
using weft::Rng;
using weft::Shape;
using weft::Tensor;

// ---------------------------------------------------------------------------------------------
// Shape

TEST_CASE("core/shape: numel, rank, strides and extents") {
  const Shape scalar;
  CHECK(scalar.rank() == 0);
  CHECK(scalar.numel() == 1);
  CHECK(scalar.last() == 1);
  CHECK(scalar.leading() == 1);
  CHECK(Shape{}.numel() == 1);

  const Shape s{2, 3, 4};
  CHECK(s.rank() == 3);
  CHECK(s.numel() == 24);
  CHECK(s[0] == 2);
  CHECK(s[2] == 4);
  CHECK(s[-1] == 4);
  CHECK(s[-3] == 2);
  CHECK(s.stride(0) == 12);
  CHECK(s.stride(1) == 4);
  CHECK(s.stride(2) == 1);
  CHECK(s.stride(-1) == 1);
  CHECK(s.stride(-3) == 12);
  CHECK(s.last() == 4);
  CHECK(s.leading() == 6);
  CHECK(s.normalize_axis(-1, "f") == 2);
  CHECK(s.normalize_axis(1, "f") == 1);
  CHECK(s.normalize_axis(-3, "f") == 0);

  CHECK(Shape{5}.leading() == 1);
  CHECK(Shape{2, 0, 3}.numel() == 0);
  CHECK(Shape{2, 0, 3}.leading() == 0);
  CHECK(Shape{3, 0}.leading() == 3);  // rows of an empty-column matrix
  CHECK(Shape{3, 0}.last() == 0);
  CHECK(Shape{1, 2, 3, 4}.numel() == 24);
  CHECK(Shape{1, 2, 3, 4}.stride(0) == 24);

  const index_t d[] = {7, 1, 2};
  CHECK(Shape::from(d, 3) == Shape{7, 1, 2});
  CHECK(Shape::from(d, 0) == Shape{});
  CHECK(Shape::from(d, 3).data()[0] == 7);
}

TEST_CASE("core/shape: with, to_string and equality") {
  const Shape s{2, 3, 4};
  CHECK(s.with(1, 7) == Shape{2, 7, 4});
  CHECK(s.with(-1, 0) == Shape{2, 3, 0});
  CHECK(s == Shape{2, 3, 4});  // with() returns a copy
  CHECK(s.to_string() == "(2, 3, 4)");
  CHECK(Shape{}.to_string() == "()");
  CHECK(Shape{5}.to_string() == "(5)");
  CHECK(Shape{2, 3} != Shape{3, 2});
  CHECK(Shape{2, 3} != Shape{2, 3, 1});
  CHECK(Shape{1} != Shape{});
  CHECK(Shape{} == Shape());
  CHECK_FALSE(Shape{2, 3} != Shape{2, 3});
}

TEST_CASE("core/shape: bad dims and axes raise ShapeError naming the function") {
  WEFT_CHECK_FAILS((Shape{1, 2, 3, 4, 5}), weft::ShapeError, "Shape");
  CHECK_THROWS_WITH((Shape{1, 2, 3, 4, 5}), "weft::Shape: expected at most 4 dimensions, got 5");
  WEFT_CHECK_FAILS((Shape{2, -3}), weft::ShapeError, "Shape");
  CHECK_THROWS_WITH((Shape{2, -3}), "weft::Shape: expected non-negative extents, got -3");
  const index_t d5[] = {1, 2, 3, 4, 5};
  WEFT_CHECK_FAILS(Shape::from(d5, 5), weft::ShapeError, "Shape::from");
  WEFT_CHECK_FAILS(Shape::from(d5, -1), weft::ShapeError, "Shape::from");
  const index_t dn[] = {2, -1};
  WEFT_CHECK_FAILS(Shape::from(dn, 2), weft::ShapeError, "Shape::from");

  const Shape s{2, 3};
  WEFT_CHECK_FAILS(s[2], weft::ShapeError, "Shape::operator[]");
  WEFT_CHECK_FAILS(s[-3], weft::ShapeError, "Shape::operator[]");
  WEFT_CHECK_FAILS(s.stride(2), weft::ShapeError, "Shape::stride");
  WEFT_CHECK_FAILS(s.with(-3, 1), weft::ShapeError, "Shape::with");
  WEFT_CHECK_FAILS(s.with(0, -1), weft::ShapeError, "Shape::with");
  WEFT_CHECK_FAILS(s.normalize_axis(5, "my_op"), weft::ShapeError, "my_op");
  CHECK_THROWS_WITH(s.normalize_axis(5, "my_op"),
                    "weft::my_op: expected an axis in [-2, 2) for shape (2, 3), got 5");
  WEFT_CHECK_FAILS(Shape{}[0], weft::ShapeError, "Shape::operator[]");
  CHECK(s == Shape{2, 3});
}

// ---------------------------------------------------------------------------------------------
// Rng

namespace {

/// xoshiro256** 1.0 seeded with four consecutive splitmix64 outputs, written from the
/// reference C code at https://prng.di.unimi.it/ independently of weft's implementation.
struct ReferenceXoshiro {
  std::uint64_t s[4];
  explicit ReferenceXoshiro(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (int i = 0; i < 4; ++i) s[i] = splitmix64_next(x);
  }
  static std::uint64_t splitmix64_next(std::uint64_t& x) {
    x += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
    const std::uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
};

double mean_of(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}
double var_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / double(v.size() - 1);
}

}  // namespace

TEST_CASE("core/rng: matches an independent xoshiro256** with splitmix64 seeding") {
  // the reference's splitmix64 gives the published first output for state 0
  std::uint64_t x = 0;
  CHECK(ReferenceXoshiro::splitmix64_next(x) == 0xe220a8397b1dcdafULL);
  CHECK(ReferenceXoshiro::splitmix64_next(x) == 0x6e789e6aa1b965f4ULL);

  // golden values for seed 0 (computed with the reference above, kept as literals so that a
  // change to either implementation is caught)
  const std::uint64_t golden[] = {0x99ec5f36cb75f2b4ULL, 0xbf6e1f784956452aULL, 0x1a5f849d4933e6e0ULL,
                                  0x6aa594f1262d2d2cULL, 0xbba5ad4a1f842e59ULL, 0xffef8375d9ebcacaULL};
  Rng rng(0);
  ReferenceXoshiro ref(0);
  for (std::uint64_t g : golden) {
    const std::uint64_t r = ref.next();
    CHECK(r == g);
    CHECK(rng.next_u64() == g);
  }
  for (std::uint64_t seed : {1ULL, 42ULL, 0xdeadbeefULL, ~0ULL}) {
    Rng a(seed);
    ReferenceXoshiro b(seed);
    CHECK(a.seed() == seed);
    bool same = true;
    for (int i = 0; i < 1000; ++i) same = same && (a.next_u64() == b.next());
    CHECK(same);
  }
}

TEST_CASE("core/rng: the same seed gives the same sequence, reseed restarts it") {
  Rng a(7), b(7), c(8);
  std::vector<std::uint64_t> sa, sb, sc;
  for (int i = 0; i < 100; ++i) {
    sa.push_back(a.next_u64());
    sb.push_back(b.next_u64());
    sc.push_back(c.next_u64());
  }
  CHECK(sa == sb);
  CHECK(sa != sc);

  // mixed draws are deterministic too (the normal() spare is part of the state)
  Rng d(3), e(3);
  std::vector<double> vd, ve;
  for (int i = 0; i < 50; ++i) {
    vd.push_back(d.normal() + d.uniform() + double(d.below(10)));
    ve.push_back(e.normal() + e.uniform() + double(e.below(10)));
  }
  CHECK(vd == ve);

  a.reseed(7);
  std::vector<std::uint64_t> again;
  for (int i = 0; i < 100; ++i) again.push_back(a.next_u64());
  CHECK(again == sa);
  (void)d.normal();  // leaves a spare behind
  d.reseed(3);
  Rng f(3);
  CHECK(d.normal() == f.normal());  // reseed drops the spare
  CHECK(Rng().seed() == 0);
}

TEST_CASE("core/rng: uniform() lies in [0, 1) with the right moments") {
  Rng rng(11);
  const int n = 100000;
  std::vector<double> u(n);
  double lo = 1, hi = 0;
  for (auto& x : u) {
    x = rng.uniform();
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  CHECK(lo >= 0.0);
  CHECK(hi < 1.0);
  CHECK(lo < 1e-3);
  CHECK(hi > 1 - 1e-3);
  CHECK(std::abs(mean_of(u) - 0.5) < 0.005);         // sd of the mean: 0.0009
  CHECK(std::abs(var_of(u) - 1.0 / 12.0) < 0.002);   // sd: 0.0002
  // 53 random bits: every draw is a multiple of 2^-53
  for (int i = 0; i < 100; ++i) {
    const double x = rng.uniform() * 0x1.0p53;
    CHECK(x == std::floor(x));
  }
  for (int i = 0; i < 1000; ++i) {
    const double x = rng.uniform(-3.0, 5.0);
    CHECK(x >= -3.0);
    CHECK(x < 5.0);
  }
}

TEST_CASE("core/rng: below(n) stays in [0, n) and is roughly uniform") {
  Rng rng(5);
  for (std::uint64_t n : {1ULL, 2ULL, 3ULL, 7ULL, 10ULL, 1000ULL, (1ULL << 63) + 1, ~0ULL}) {
    bool in_range = true;
    for (int i = 0; i < 2000; ++i) in_range = in_range && rng.below(n) < n;
    CAPTURE(n);
    CHECK(in_range);
  }
  CHECK(rng.below(1) == 0);

  // 10 buckets, 1e5 draws: each count has sd ~95; a chi-square with 9 dof stays below 40
  // with probability 1 - 5e-6.
  const int n = 100000;
  std::vector<int> counts(10, 0);
  for (int i = 0; i < n; ++i) ++counts[std::size_t(rng.below(10))];
  double chi2 = 0;
  for (int c : counts) {
    CHECK(std::abs(c - n / 10) < 600);
    chi2 += double(c - n / 10) * double(c - n / 10) / (n / 10.0);
  }
  CHECK(chi2 < 40);

  // no modulo bias for a large bound: with n = 3 * 2^62, x % n on raw draws would give
  // P(r < 2^62) = 1/2; the unbiased answer is 1/3 (sd of the count: 67)
  int low = 0;
  for (int i = 0; i < 20000; ++i) low += rng.below(3ULL << 62) < (1ULL << 62);
  CHECK(std::abs(low - 6667) < 400);

  WEFT_CHECK_FAILS(rng.below(0), weft::ValueError, "Rng::below");
}

TEST_CASE("core/rng: normal() has mean 0 and variance 1") {
  Rng rng(2024);
  const int n = 100000;
  std::vector<double> z(n);
  for (auto& x : z) x = rng.normal();
  // sd of the mean 0.0032, of the variance 0.0045: bounds are ~6 sd
  CHECK(std::abs(mean_of(z)) < 0.02);
  CHECK(std::abs(var_of(z) - 1.0) < 0.03);
  int beyond2 = 0;
  for (double x : z) beyond2 += std::abs(x) > 2.0;
  CHECK(std::abs(beyond2 / double(n) - 0.0455) < 0.005);  // P(|Z| > 2) = 0.0455

  std::vector<double> w(n);
  for (auto& x : w) x = rng.normal(3.0, 0.5);
  CHECK(std::abs(mean_of(w) - 3.0) < 0.01);
  CHECK(std::abs(std::sqrt(var_of(w)) - 0.5) < 0.01);
}

TEST_CASE("core/rng: stream(k) depends on the seed and k only") {
  Rng base(99);
  Rng s3 = base.stream(3);
  std::vector<std::uint64_t> before;
  for (int i = 0; i < 20; ++i) before.push_back(s3.next_u64());
  for (int i = 0; i < 1000; ++i) (void)base.next_u64();
  (void)base.normal();
  Rng s3b = base.stream(3);
  std::vector<std::uint64_t> after;
  for (int i = 0; i < 20; ++i) after.push_back(s3b.next_u64());
  CHECK(before == after);

  // distinct streams, distinct from the parent, and different for another seed
  std::vector<std::vector<std::uint64_t>> seqs;
  for (std::uint64_t k = 0; k < 8; ++k) {
    Rng s = Rng(99).stream(k);
    std::vector<std::uint64_t> v;
    for (int i = 0; i < 4; ++i) v.push_back(s.next_u64());
    seqs.push_back(v);
  }
  Rng parent(99);
  std::vector<std::uint64_t> pv;
  for (int i = 0; i < 4; ++i) pv.push_back(parent.next_u64());
  seqs.push_back(pv);
  Rng other = Rng(100).stream(3);
  std::vector<std::uint64_t> ov;
  for (int i = 0; i < 4; ++i) ov.push_back(other.next_u64());
  seqs.push_back(ov);
  for (std::size_t i = 0; i < seqs.size(); ++i)
    for (std::size_t j = i + 1; j < seqs.size(); ++j) CHECK(seqs[i] != seqs[j]);

  // streams are not correlated: the mean of products of paired uniforms is ~1/4
  Rng a = Rng(1).stream(0), b = Rng(1).stream(1);
  double acc = 0;
  for (int i = 0; i < 100000; ++i) acc += (a.uniform() - 0.5) * (b.uniform() - 0.5);
  CHECK(std::abs(acc / 100000) < 0.002);  // sd 0.00026
}

TEST_CASE("core/rng: permutation and shuffle give permutations") {
  Rng rng(17);
  for (index_t n : {0, 1, 2, 10, 1000}) {
    std::vector<index_t> p = rng.permutation(n);
    CHECK(index_t(p.size()) == n);
    std::vector<index_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    std::vector<index_t> iota(std::size_t(n > 0 ? n : 0));
    std::iota(iota.begin(), iota.end(), index_t(0));
    CHECK(sorted == iota);
    if (n == 1000) CHECK(p != iota);
  }
  CHECK(rng.permutation(-3).empty());
  CHECK(Rng(1).permutation(50) == Rng(1).permutation(50));
  CHECK(Rng(1).permutation(50) != Rng(2).permutation(50));

  // every position is equally likely: element 0 of a shuffled 4-vector
  std::vector<int> first(4, 0);
  for (int i = 0; i < 40000; ++i) ++first[std::size_t(rng.permutation(4)[0])];
  for (int c : first) CHECK(std::abs(c - 10000) < 500);

  std::vector<double> v = {1, 2, 3, 4, 5};
  rng.shuffle(v.begin(), v.end());
  std::sort(v.begin(), v.end());
  CHECK(v == std::vector<double>{1, 2, 3, 4, 5});
}

// ---------------------------------------------------------------------------------------------
// init

namespace {
template <class T>
double max_abs(const Tensor<T>& t) {
  double m = 0;
  for (T x : t) m = std::max(m, std::abs(double(x)));
  return m;
}
template <class T>
std::vector<double> values_of(const Tensor<T>& t) {
  std::vector<double> v;
  for (T x : t) v.push_back(double(x));
  return v;
}
}  // namespace

TEST_CASE("core/init: fans of rank-2 and rank-4 weights") {
  const auto f2 = weft::init::fans(Tensor<double>(Shape{8, 3}));
  CHECK(f2.fan_in == 3);
  CHECK(f2.fan_out == 8);
  const auto f4 = weft::init::fans(Tensor<float>(Shape{16, 4, 3, 5}));
  CHECK(f4.fan_in == 4 * 15);
  CHECK(f4.fan_out == 16 * 15);
  const auto f3 = weft::init::fans(Tensor<double>(Shape{6, 2, 7}));
  CHECK(f3.fan_in == 14);
  CHECK(f3.fan_out == 42);
}

TEST_CASE_TEMPLATE("core/init: uniform initialisers respect the formula bounds", T, float, double) {
  Rng rng(3);
  {  // kaiming_uniform, ReLU gain: b = sqrt(2) sqrt(3 / fan_in)
    Tensor<T> w(Shape{64, 32});
    weft::init::kaiming_uniform(w, rng);
    const double b = std::sqrt(2.0) * std::sqrt(3.0 / 32.0);
    CHECK(max_abs(w) <= b * (1 + 1e-6));
    CHECK(max_abs(w) > 0.99 * b);
    CHECK(std::abs(mean_of(values_of(w))) < 0.07 * b);                  // sd 0.013 b
    CHECK(std::abs(var_of(values_of(w)) - b * b / 3) < 0.1 * b * b / 3);  // sd 2%
  }
  {  // a = sqrt(5): PyTorch's nn.Linear default, b = 1 / sqrt(fan_in)
    Tensor<T> w(Shape{40, 25});
    weft::init::kaiming_uniform(w, rng, std::sqrt(5.0));
    const double b = 1.0 / std::sqrt(25.0);
    CHECK(max_abs(w) <= b * (1 + 1e-6));
    CHECK(max_abs(w) > 0.99 * b);
  }
  {  // rank 4: fan_in = 4 * 3 * 3
    Tensor<T> w(Shape{8, 4, 3, 3});
    weft::init::kaiming_uniform(w, rng);
    const double b = std::sqrt(2.0) * std::sqrt(3.0 / 36.0);
    CHECK(max_abs(w) <= b * (1 + 1e-6));
    CHECK(max_abs(w) > 0.97 * b);
  }
  {  // xavier_uniform: b = gain sqrt(6 / (fan_in + fan_out))
    Tensor<T> w(Shape{30, 50});
    weft::init::xavier_uniform(w, rng, 2.0);
    const double b = 2.0 * std::sqrt(6.0 / 80.0);
    CHECK(max_abs(w) <= b * (1 + 1e-6));
    CHECK(max_abs(w) > 0.99 * b);
    Tensor<T> c(Shape{8, 4, 3, 3});
    weft::init::xavier_uniform(c, rng);
    CHECK(max_abs(c) <= std::sqrt(6.0 / (36.0 + 72.0)) * (1 + 1e-6));
  }
  {  // plain uniform
    Tensor<T> w(Shape{1000});
    weft::init::uniform(w, -0.25, 0.75, rng);
    double lo = 1, hi = -1;
    for (T x : w) {
      lo = std::min(lo, double(x));
      hi = std::max(hi, double(x));
    }
    CHECK(lo >= -0.25);
    CHECK(hi <= 0.75);
    CHECK(lo < -0.2);
    CHECK(hi > 0.7);
  }
}

TEST_CASE_TEMPLATE("core/init: normal initialisers have the formula standard deviation", T, float, double) {
  Rng rng(4);
  // 32768 draws: the sample sd is within 0.4% (1 sd) of the truth; the bound is 3%
  {
    Tensor<T> w(Shape{256, 128});
    weft::init::kaiming_normal(w, rng);
    const double sd = std::sqrt(2.0) / std::sqrt(128.0);
    const auto v = values_of(w);
    CHECK(std::abs(std::sqrt(var_of(v)) / sd - 1) < 0.03);
    CHECK(std::abs(mean_of(v)) < 0.03 * sd);
  }
  {
    Tensor<T> w(Shape{32, 16, 8, 8});  // fan_in 1024, fan_out 2048
    weft::init::xavier_normal(w, rng, 0.5);
    const double sd = 0.5 * std::sqrt(2.0 / (1024.0 + 2048.0));
    CHECK(std::abs(std::sqrt(var_of(values_of(w))) / sd - 1) < 0.03);
  }
  {
    Tensor<T> w(Shape{20000});
    weft::init::normal(w, 1.5, 0.25, rng);
    const auto v = values_of(w);
    CHECK(std::abs(mean_of(v) - 1.5) < 0.01);
    CHECK(std::abs(std::sqrt(var_of(v)) / 0.25 - 1) < 0.03);
    Tensor<T> zero_sd(Shape{4});
    weft::init::normal(zero_sd, 2.0, 0.0, rng);
    for (T x : zero_sd) CHECK(x == T(2));
  }
  // deterministic for a seed
  Tensor<T> a(Shape{5, 4}), b(Shape{5, 4});
  Rng ra(77), rb(77);
  weft::init::kaiming_uniform(a, ra);
  weft::init::kaiming_uniform(b, rb);
  CHECK(weft::test::identical(a, b));
}

TEST_CASE_TEMPLATE("core/init: bad weights and arguments raise errors and leave the tensor", T, float, double) {
  Rng rng(1);
  Tensor<T> v = Tensor<T>::full(Shape{5}, T(0.5));
  Tensor<T> w = Tensor<T>::full(Shape{3, 4}, T(0.5));
  weft::test::Snapshot<T> snap({v, w});
  WEFT_CHECK_FAILS(weft::init::fans(v), weft::ShapeError, "init::fans");
  CHECK_THROWS_AS(weft::init::kaiming_uniform(v, rng), weft::ShapeError);
  CHECK_THROWS_AS(weft::init::kaiming_normal(v, rng), weft::ShapeError);
  CHECK_THROWS_AS(weft::init::xavier_uniform(v, rng), weft::ShapeError);
  CHECK_THROWS_AS(weft::init::xavier_normal(v, rng), weft::ShapeError);
  Tensor<T> s = Tensor<T>::scalar(T(1));
  CHECK_THROWS_AS(weft::init::kaiming_uniform(s, rng), weft::ShapeError);
  Tensor<T> no_in(Shape{3, 0});
  WEFT_CHECK_FAILS(weft::init::kaiming_uniform(no_in, rng), weft::ShapeError, "init::kaiming_uniform");
  WEFT_CHECK_FAILS(weft::init::kaiming_normal(no_in, rng), weft::ShapeError, "init::kaiming_normal");
  Tensor<T> no_fans(Shape{0, 0});
  WEFT_CHECK_FAILS(weft::init::xavier_uniform(no_fans, rng), weft::ShapeError, "init::xavier_uniform");
  WEFT_CHECK_FAILS(weft::init::xavier_normal(no_fans, rng), weft::ShapeError, "init::xavier_normal");

  WEFT_CHECK_FAILS(weft::init::uniform(w, 1.0, -1.0, rng), weft::ValueError, "init::uniform");
  WEFT_CHECK_FAILS(weft::init::uniform(w, 0.0, std::numeric_limits<double>::infinity(), rng), weft::ValueError,
                   "init::uniform");
  WEFT_CHECK_FAILS(weft::init::uniform(w, std::nan(""), 1.0, rng), weft::ValueError, "init::uniform");
  WEFT_CHECK_FAILS(weft::init::normal(w, 0.0, -1.0, rng), weft::ValueError, "init::normal");
  WEFT_CHECK_FAILS(weft::init::normal(w, 0.0, std::nan(""), rng), weft::ValueError, "init::normal");
  WEFT_CHECK_FAILS(weft::init::normal(w, std::numeric_limits<double>::infinity(), 1.0, rng), weft::ValueError,
                   "init::normal");
  Tensor<T> undef;
  WEFT_CHECK_FAILS(weft::init::uniform(undef, 0.0, 1.0, rng), weft::ShapeError, "init::uniform");
  WEFT_CHECK_FAILS(weft::init::normal(undef, 0.0, 1.0, rng), weft::ShapeError, "init::normal");
  CHECK(snap.unchanged());
}

TEST_CASE("core/shape: extents whose product overflows are a ShapeError") {
  const weft::index_t big = weft::index_t(1) << 40;
  CHECK_THROWS_AS(weft::Shape({big, big}), weft::ShapeError);
  CHECK_THROWS_AS(weft::Shape({2, 3}).with(0, PTRDIFF_MAX / 2), weft::ShapeError);
  const weft::index_t dims[2] = {big, big};
  CHECK_THROWS_AS(weft::Shape::from(dims, 2), weft::ShapeError);
  CHECK(weft::Shape({0, big, big}).numel() == 0);  // a zero extent keeps the product at 0
  // 2^61 elements fit an index but not a byte count: a ValueError before allocating
  CHECK_THROWS_AS(weft::Tensor<double>(weft::Shape{weft::index_t(1) << 61}), weft::ValueError);
}

}  // namespace weft_unit_core_shape_rng_test
