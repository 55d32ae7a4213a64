// Tests of weft/peft/kernels.hpp: the chunk sum and tile add (against naive loops, scalar vs
// SIMD bodies, 1 vs 2 threads, adjointness) and the dropout mask product.
#include <doctest/doctest.h>

#include <vector>

#include "support/test_util.hpp"
#include "weft/core/parallel.hpp"
#include "weft/peft/kernels.hpp"

namespace weft_unit_peft_kernels_test {

using namespace weft;

namespace {

template <class T>
Tensor<T> naive_chunk_sum(const Tensor<T>& x, index_t r) {
  const index_t rows = x.dim(0), din = x.dim(1);
  Tensor<T> s(Shape{rows, r});
  for (index_t n = 0; n < rows; ++n)
    for (index_t j = 0; j < din; ++j) s(n, j % r) += x(n, j);
  return s;
}

template <class T>
Tensor<T> naive_tile_add(const Tensor<T>& s, Tensor<T> x, T c) {
  const index_t r = s.dim(1);
  for (index_t n = 0; n < x.dim(0); ++n)
    for (index_t j = 0; j < x.dim(1); ++j) x(n, j) += c * s(n, j % r);
  return x;
}

// shard sizes below, equal to, above and not dividing the SIMD widths (4, 8, 16 lanes)
const index_t kRanks[] = {1, 2, 3, 4, 5, 7, 8, 12, 16, 17, 32, 33, 64};
const index_t kWidths[] = {1, 7, 10, 64, 100, 257};

}  // namespace

TEST_CASE_TEMPLATE("peft/kernels: chunk_sum and tile_add match naive loops", T, float, double) {
  Rng rng(11);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
  for (index_t din : kWidths)
    for (index_t r : kRanks) {
      CAPTURE(din);
      CAPTURE(r);
      const Tensor<T> x = test::randn<T>({5, din}, rng);
      Tensor<T> s(Shape{5, r});
      peft::chunk_sum(x.data(), s.data(), 5, din, r);
      WEFT_CHECK_CLOSE(s, naive_chunk_sum(x, r), tol);
      Tensor<T> s2 = s.clone();  // accumulate adds onto what is there
      peft::chunk_sum(x.data(), s2.data(), 5, din, r, true);
      Tensor<T> twice = s.clone();
      twice.array() *= T(2);
      WEFT_CHECK_CLOSE(s2, twice, tol);

      const Tensor<T> src = test::randn<T>({5, r}, rng);
      Tensor<T> y = x.clone();
      peft::tile_add(src.data(), y.data(), 5, din, r, T(-0.5));
      WEFT_CHECK_CLOSE(y, naive_tile_add(src, x.clone(), T(-0.5)), tol);
    }
}

TEST_CASE_TEMPLATE("peft/kernels: scalar and SIMD bodies agree (tile_add bit for bit)", T, float, double) {
#if WEFT_USE_XSIMD
  Rng rng(12);
  constexpr index_t W = simd::width<T>;
  for (index_t din : kWidths)
    for (index_t r : kRanks) {
      CAPTURE(din);
      CAPTURE(r);
      const Tensor<T> x = test::randn<T>({3, din}, rng);
      Tensor<T> a(Shape{3, r}), b(Shape{3, r});
      peft::chunk_sum_scalar(x.data(), a.data(), 3, din, r, false);
      peft::chunk_sum_simd(x.data(), b.data(), 3, din, r, false);
      if (r >= W || W % r != 0) CHECK(test::identical(a, b));  // the scalar body's order
      else WEFT_CHECK_CLOSE(b, a, (std::is_same_v<T, float> ? 1e-5 : 1e-13));
      Tensor<T> ya = x.clone(), yb = x.clone();
      peft::tile_add_scalar(a.data(), ya.data(), 3, din, r, T(1.5));
      peft::tile_add_simd(a.data(), yb.data(), 3, din, r, T(1.5));
      CHECK(test::identical(ya, yb));
    }
  const Tensor<T> g = test::randn<T>({1, 1000}, rng), m = test::randn<T>({1, 1000}, rng);
  Tensor<T> o1(Shape{1, 1000}), o2(Shape{1, 1000});
  peft::mask_mul_scalar(g.data(), m.data(), o1.data(), 1000);
  peft::mask_mul_simd(g.data(), m.data(), o2.data(), 1000);
  CHECK(test::identical(o1, o2));
  peft::mask_mul_add_scalar(g.data(), m.data(), o1.data(), 1000);
  peft::mask_mul_add_simd(g.data(), m.data(), o2.data(), 1000);
  CHECK(test::identical(o1, o2));
#else
  MESSAGE("xsimd not available: only the scalar bodies exist");
#endif
}

TEST_CASE("peft/kernels: 1 and 2 threads give the same bits") {
  Rng rng(13);
  const index_t rows = 512, din = 768, r = 8;
  const Tensor<float> x = test::randn<float>({rows, din}, rng), s0 = test::randn<float>({rows, r}, rng);
  Tensor<float> s1(Shape{rows, r}), s2(Shape{rows, r}), y1 = x.clone(), y2 = x.clone();
  const int saved = num_threads();
  set_num_threads(1);
  peft::chunk_sum(x.data(), s1.data(), rows, din, r);
  peft::tile_add(s0.data(), y1.data(), rows, din, r, 2.0f);
  set_num_threads(2);
  peft::chunk_sum(x.data(), s2.data(), rows, din, r);
  peft::tile_add(s0.data(), y2.data(), rows, din, r, 2.0f);
  set_num_threads(saved);
  CHECK(test::identical(s1, s2));
  CHECK(test::identical(y1, y2));
}

TEST_CASE("peft/kernels: tile_add is the adjoint of chunk_sum") {
  // <chunk_sum(x), s> == <x, tile(s)> for every x, s
  Rng rng(14);
  for (index_t r : {3, 4, 9}) {
    const Tensor<double> x = test::randn<double>({4, 22}, rng), s = test::randn<double>({4, r}, rng);
    Tensor<double> cs(Shape{4, r}), ts(Shape{4, 22});
    peft::chunk_sum(x.data(), cs.data(), 4, 22, r);
    peft::tile_add(s.data(), ts.data(), 4, 22, r, 1.0);
    CHECK((cs.array() * s.array()).sum() == doctest::Approx((x.array() * ts.array()).sum()).epsilon(1e-12));
  }
}

}  // namespace weft_unit_peft_kernels_test
