// Tests of weft/phm/functional.hpp: the index rule of kron_sum (spec V2), the factored products
// against the materialised path and an independent loop reference, forward and every gradient
// (spec V1: 1e-12 in double, 1e-5 max|Y| in float), central differences (1e-6 absolute), and
// bad shapes.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "phm_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/grad_check.hpp"
#include "weft/phm/functional.hpp"

namespace weft_unit_phm_functional_test {

using namespace weft;
using weft::phm_test::check_scaled;
using weft::phm_test::reference_kron_sum;
using weft::phm_test::reference_low_rank;

namespace {

struct Case {
  index_t k, d, n, r;
};
// the spec's V1 shapes (k, d, n, r)
const std::vector<Case> v1_cases = {{8, 4, 2, 1},  {24, 12, 4, 2}, {768, 24, 4, 1}, {24, 768, 4, 1},
                                    {12, 8, 4, 3}, {6, 6, 1, 1},   {6, 6, 6, 1}};

template <class T>
struct Factors {
  Tensor<T> x, A, B, s, t, b;
};

template <class T>
Factors<T> random_factors(const Case& c, index_t N, Rng& rng) {
  const index_t n = c.n, p = c.k / n, q = c.d / n;
  Factors<T> f;
  f.x = test::randn<T>(Shape{N, c.k}, rng);
  f.A = test::randn<T>(Shape{n, n, n}, rng);
  f.B = test::randn<T>(Shape{n, p, q}, rng);
  f.s = test::randn<T>(Shape{n, p, c.r}, rng);
  f.t = test::randn<T>(Shape{n, c.r, q}, rng);
  f.b = test::randn<T>(Shape{c.d}, rng);
  return f;
}

/// y = x H + b in double from the reference H.
template <class T>
Tensor<double> reference_product(const Tensor<T>& x, const Tensor<double>& H, const Tensor<T>& b) {
  Tensor<double> y(Shape{x.dim(0), H.dim(1)});
  for (index_t s = 0; s < x.dim(0); ++s)
    for (index_t j = 0; j < H.dim(1); ++j) {
      double acc = double(b(j));
      for (index_t l = 0; l < H.dim(0); ++l) acc += double(x(s, l)) * H(l, j);
      y(s, j) = acc;
    }
  return y;
}

/// Value and gradients (w.r.t. every input, in input order) of sum(R * f(vars)).
template <class T, class F>
std::vector<Tensor<T>> value_and_grads(F&& f, const std::vector<Tensor<T>>& inputs, const Tensor<T>& R) {
  Tape<T> tape;
  std::vector<Var<T>> v;
  for (auto& x : inputs) v.push_back(tape.variable(x));
  Var<T> y = f(v);
  std::vector<Tensor<T>> out{y.value().clone()};
  tape.backward(sum(y * tape.constant(R)));
  for (auto& x : v) out.push_back(x.grad().clone());
  return out;
}

template <class T>
void check_factored_against_dense(const Case& c, index_t N, double tol, Rng& rng) {
  const Factors<T> f = random_factors<T>(c, N, rng);
  const std::string tag = "k=" + std::to_string(c.k) + " d=" + std::to_string(c.d) + " n=" + std::to_string(c.n) +
                          " r=" + std::to_string(c.r) + " N=" + std::to_string(N);
  const Tensor<T> R = test::randn<T>(Shape{N, c.d}, rng);
  {  // full B
    auto fac = value_and_grads<T>([](auto& v) { return phm::phm_product(v[0], v[1], v[2], v[3]); },
                                  {f.x, f.A, f.B, f.b}, R);
    auto den = value_and_grads<T>([](auto& v) { return phm::phm_product_dense(v[0], v[1], v[2], &v[3]); },
                                  {f.x, f.A, f.B, f.b}, R);
    check_scaled(fac[0], reference_product(f.x, reference_kron_sum(f.A, f.B), f.b), tol, "full-B forward vs loops, " + tag);
    const char* names[] = {"y", "dx", "dA", "dB", "db"};
    for (std::size_t i = 0; i < fac.size(); ++i)
      check_scaled(fac[i], den[i], tol, std::string("full-B ") + names[i] + " vs dense, " + tag);
  }
  {  // low-rank B = s t
    auto fac = value_and_grads<T>([](auto& v) { return phm::lphm_product(v[0], v[1], v[2], v[3], v[4]); },
                                  {f.x, f.A, f.s, f.t, f.b}, R);
    auto den = value_and_grads<T>([](auto& v) { return phm::lphm_product_dense(v[0], v[1], v[2], v[3], &v[4]); },
                                  {f.x, f.A, f.s, f.t, f.b}, R);
    check_scaled(fac[0], reference_product(f.x, reference_kron_sum(f.A, reference_low_rank(f.s, f.t)), f.b), tol,
                 "LPHM forward vs loops, " + tag);
    const char* lnames[] = {"y", "dx", "dA", "ds", "dt", "db"};
    for (std::size_t i = 0; i < fac.size(); ++i)
      check_scaled(fac[i], den[i], tol, std::string("LPHM ") + lnames[i] + " vs dense, " + tag);
  }
}

}  // namespace

TEST_CASE("phm/functional: kron_sum follows the reference index rule (n = 2 by hand)") {
  // A_1 = [[1, 2], [3, 4]], A_2 = [[0, 1], [1, 0]], B_1 = [[5, 6]], B_2 = [[7, 8]] (p = 1, q = 2):
  // kron(A_1, B_1) + kron(A_2, B_2) = [[5, 6, 10, 12], [15, 18, 20, 24]] + [[0, 0, 7, 8], [7, 8, 0, 0]]
  Tape<double> tape;
  auto A = tape.constant(Tensor<double>::from_values({1, 2, 3, 4, 0, 1, 1, 0}, Shape{2, 2, 2}));
  auto B = tape.constant(Tensor<double>::from_values({5, 6, 7, 8}, Shape{2, 1, 2}));
  Var<double> H = phm::kron_sum(A, B);
  const Tensor<double> expected = Tensor<double>::from_values({5, 6, 17, 20, 22, 26, 20, 24}, Shape{2, 4});
  CHECK(test::identical(H.value(), expected));
  // and a case with p, q > 1 against the loop reference
  Rng rng(3);
  auto A3 = test::randn<double>(Shape{3, 3, 3}, rng);
  auto B3 = test::randn<double>(Shape{3, 2, 5}, rng);
  check_scaled(phm::kron_sum(tape.constant(A3), tape.constant(B3)).value(), reference_kron_sum(A3, B3), 1e-15,
               "kron_sum n=3 p=2 q=5");
}

TEST_CASE("phm/functional: factored products equal the materialised path in double (spec V1)") {
  Rng rng(11);
  for (const Case& c : v1_cases)
    for (index_t N : {1, 5}) check_factored_against_dense<double>(c, N, 1e-12, rng);
}

TEST_CASE("phm/functional: factored products equal the materialised path in float (spec V1)") {
  Rng rng(12);
  for (const Case& c : v1_cases)
    for (index_t N : {1, 5}) check_factored_against_dense<float>(c, N, 1e-5, rng);
}

TEST_CASE("phm/functional: gradients match central differences (spec V1, 1e-6 absolute)") {
  Rng rng(13);
  GradCheckOptions o;
  o.atol = 1e-6;
  o.rtol = 0;
  for (const Case& c : v1_cases)
    for (index_t N : {1, 5}) {
      // central differences lose about eps |L| / h to rounding, so the factors are drawn at a
      // layer's scale (entries of y of order 1): Var A = 1 / n, Var B = Var t = 1 / k, Var s = 1 / r
      Factors<double> f = random_factors<double>(c, N, rng);
      f.A.array() /= std::sqrt(double(c.n));
      f.B.array() /= std::sqrt(double(c.k));
      f.s.array() /= std::sqrt(double(c.r));
      f.t.array() /= std::sqrt(double(c.k));
      INFO("k=", c.k, " d=", c.d, " n=", c.n, " r=", c.r, " N=", N);
      WEFT_CHECK_GRAD(grad_check([](auto&, const auto& v) { return phm::phm_product(v[0], v[1], v[2], v[3]); },
                                 {f.x, f.A, f.B, f.b}, o));
      WEFT_CHECK_GRAD(grad_check([](auto&, const auto& v) { return phm::lphm_product(v[0], v[1], v[2], v[3], v[4]); },
                                 {f.x, f.A, f.s, f.t, f.b}, o));
      if (c.k * c.d <= 300)  // the materialised ops (kron_sum's own backward) on the small shapes
        WEFT_CHECK_GRAD(grad_check([](auto&, const auto& v) { return phm::kron_sum(v[0], v[1]); }, {f.A, f.B}, o));
    }
}

TEST_CASE("phm/functional: products without bias, on rank-3 inputs, and with inputs that need no gradient") {
  Rng rng(14);
  const Case c{12, 8, 2, 2};
  const Factors<double> f = random_factors<double>(c, 6, rng);
  Tape<double> tape;
  auto x3 = tape.constant(f.x.reshape({2, 3, 12}));
  auto A = tape.variable(f.A);
  auto s = tape.constant(f.s);
  auto t = tape.variable(f.t);
  auto B = tape.constant(f.B);
  Var<double> y1 = phm::lphm_product(x3, A, s, t);
  Var<double> y2 = phm::phm_product(x3, A, B);
  CHECK(y1.shape() == Shape{2, 3, 8});
  CHECK(y2.shape() == Shape{2, 3, 8});
  Tensor<double> zero_bias(Shape{8});
  check_scaled(y1.value().reshape({6, 8}), reference_product(f.x, reference_kron_sum(f.A, reference_low_rank(f.s, f.t)), zero_bias),
               1e-12, "LPHM rank-3 input, no bias");
  check_scaled(y2.value().reshape({6, 8}), reference_product(f.x, reference_kron_sum(f.A, f.B), zero_bias), 1e-12,
               "PHM rank-3 input, no bias");
  tape.backward(sum(y1) + sum(y2));
  CHECK(A.grad().defined());
  CHECK(t.grad().defined());
  CHECK_FALSE(tape.requires_grad(s));
  // a rank-1 input is one row
  Var<double> y1d = phm::phm_product(tape.constant(f.x[0]), tape.constant(f.A), B);
  CHECK(y1d.shape() == Shape{8});
}

TEST_CASE("phm/functional: one A used by several products gets the sum of their gradients") {
  Rng rng(15);
  const Case c{8, 8, 2, 1};
  auto A0 = test::randn<double>(Shape{2, 2, 2}, rng);
  std::vector<Factors<double>> fs;
  for (int l = 0; l < 3; ++l) fs.push_back(random_factors<double>(c, 4, rng));
  Tensor<double> sum_of_parts(Shape{2, 2, 2});
  for (int l = 0; l < 3; ++l) {
    Tape<double> tape;
    auto A = tape.variable(A0);
    tape.backward(sum(phm::lphm_product(tape.constant(fs[l].x), A, tape.constant(fs[l].s), tape.constant(fs[l].t))));
    sum_of_parts.array() += A.grad().array();
  }
  Tape<double> tape;
  auto A = tape.variable(A0);
  Var<double> loss = sum(phm::lphm_product(tape.constant(fs[0].x), A, tape.constant(fs[0].s), tape.constant(fs[0].t)));
  for (int l = 1; l < 3; ++l)
    loss = loss + sum(phm::lphm_product(tape.constant(fs[l].x), A, tape.constant(fs[l].s), tape.constant(fs[l].t)));
  tape.backward(loss);
  check_scaled(A.grad(), sum_of_parts, 1e-12, "dA of a shared rule");
}

TEST_CASE("phm/functional: bad shapes raise ShapeError naming the op, inputs unchanged") {
  Rng rng(16);
  Tape<double> tape;
  auto x = test::randn<double>(Shape{3, 8}, rng);
  auto A = test::randn<double>(Shape{2, 2, 2}, rng);
  auto B = test::randn<double>(Shape{2, 4, 3}, rng);
  auto s = test::randn<double>(Shape{2, 4, 1}, rng);
  auto t = test::randn<double>(Shape{2, 1, 3}, rng);
  auto b = test::randn<double>(Shape{6}, rng);
  test::Snapshot<double> snap({x, A, B, s, t, b});
  auto X = tape.constant(x), VA = tape.constant(A), VB = tape.constant(B), VS = tape.constant(s),
       VT = tape.constant(t), Vb = tape.constant(b);
  auto bad = [&](const Shape& sh) { return tape.constant(Tensor<double>(sh)); };
  WEFT_PHM_CHECK_FAILS(phm::phm_product(bad(Shape{3, 7}), VA, VB), ShapeError, "phm::phm_product");
  WEFT_PHM_CHECK_FAILS(phm::phm_product(X, bad(Shape{2, 2, 3}), VB), ShapeError, "phm::phm_product");
  WEFT_PHM_CHECK_FAILS(phm::phm_product(X, bad(Shape{0, 0, 0}), VB), ShapeError, "phm::phm_product");
  WEFT_PHM_CHECK_FAILS(phm::phm_product(X, VA, bad(Shape{3, 4, 3})), ShapeError, "phm::phm_product");
  WEFT_PHM_CHECK_FAILS(phm::phm_product(X, VA, VB, bad(Shape{5})), ShapeError, "phm::phm_product");
  WEFT_PHM_CHECK_FAILS(phm::lphm_product(X, VA, VS, bad(Shape{2, 2, 3})), ShapeError, "phm::lphm_product");
  WEFT_PHM_CHECK_FAILS(phm::lphm_product(X, VA, bad(Shape{2, 4}), VT), ShapeError, "phm::lphm_product");
  WEFT_PHM_CHECK_FAILS(phm::lphm_product(X, VA, VS, VT, bad(Shape{1, 6})), ShapeError, "phm::lphm_product");
  WEFT_PHM_CHECK_FAILS(phm::kron_sum(VA, bad(Shape{3, 4, 3})), ShapeError, "phm::kron_sum");
  WEFT_PHM_CHECK_FAILS(phm::phm_product_dense(X, VA, bad(Shape{2, 3, 3})), ShapeError, "phm::phm_product_dense");
  WEFT_PHM_CHECK_FAILS(phm::lphm_product_dense(X, VA, VS, bad(Shape{2, 2, 3})), ShapeError, "phm::lphm_product_dense");
  CHECK(snap.unchanged());
  // the valid calls run
  CHECK(phm::phm_product(X, VA, VB, Vb).shape() == Shape{3, 6});
  CHECK(phm::lphm_product(X, VA, VS, VT, Vb).shape() == Shape{3, 6});
}

}  // namespace weft_unit_phm_functional_test
