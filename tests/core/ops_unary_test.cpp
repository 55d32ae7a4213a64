// Tests of weft/core/autograd/functions/unary.hpp (neg, square, exp, log, sqrt, tanh, sigmoid,
// relu, gelu, abs) and their kernels in weft/core/ops/elementwise.hpp (vector and scalar paths).
#include <doctest/doctest.h>

#include <cmath>
#include <complex>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <string>
#include <vector>

#include "core/ops_common.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/unary.hpp"

namespace weft_unit_core_ops_unary_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace wt = weft::test;

namespace {

constexpr double pi = 3.14159265358979323846;

enum class Fn { neg, square, exp, log, sqrt, tanh, sigmoid, relu, gelu, abs };
const Fn all_fns[] = {Fn::neg, Fn::square, Fn::exp, Fn::log, Fn::sqrt, Fn::tanh, Fn::sigmoid, Fn::relu, Fn::gelu, Fn::abs};

const char* name(Fn f) {
  switch (f) {
    case Fn::neg: return "neg";
    case Fn::square: return "square";
    case Fn::exp: return "exp";
    case Fn::log: return "log";
    case Fn::sqrt: return "sqrt";
    case Fn::tanh: return "tanh";
    case Fn::sigmoid: return "sigmoid";
    case Fn::relu: return "relu";
    case Fn::gelu: return "gelu";
    default: return "abs";
  }
}
bool holomorphic(Fn f) { return f != Fn::relu && f != Fn::abs; }

template <class V>
V apply(Fn f, const V& a) {
  switch (f) {
    case Fn::neg: return weft::neg(a);
    case Fn::square: return weft::square(a);
    case Fn::exp: return weft::exp(a);
    case Fn::log: return weft::log(a);
    case Fn::sqrt: return weft::sqrt(a);
    case Fn::tanh: return weft::tanh(a);
    case Fn::sigmoid: return weft::sigmoid(a);
    case Fn::relu: return weft::relu(a);
    case Fn::gelu: return weft::gelu(a);
    default:
      if constexpr (weft::is_complex_v<typename std::decay_t<decltype(a.value())>::value_type>)
        throw std::logic_error("abs is not holomorphic");  // never called: abs has no complex form
      else return weft::abs(a);
  }
}

// Independent references in double, written from the definitions.
double ref_f(Fn f, double x) {
  const double c = std::sqrt(2.0 / pi);
  switch (f) {
    case Fn::neg: return -x;
    case Fn::square: return x * x;
    case Fn::exp: return std::exp(x);
    case Fn::log: return std::log(x);
    case Fn::sqrt: return std::sqrt(x);
    case Fn::tanh: return std::tanh(x);
    case Fn::sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case Fn::relu: return x > 0 ? x : 0.0;
    case Fn::gelu: return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
    default: return std::fabs(x);
  }
}
double ref_df(Fn f, double x) {
  const double c = std::sqrt(2.0 / pi);
  switch (f) {
    case Fn::neg: return -1.0;
    case Fn::square: return 2.0 * x;
    case Fn::exp: return std::exp(x);
    case Fn::log: return 1.0 / x;
    case Fn::sqrt: return 0.5 / std::sqrt(x);
    case Fn::tanh: return 1.0 / (std::cosh(x) * std::cosh(x));
    case Fn::sigmoid: return std::exp(-x) / ((1.0 + std::exp(-x)) * (1.0 + std::exp(-x)));
    case Fn::relu: return x > 0 ? 1.0 : 0.0;
    case Fn::gelu: {
      const double u = c * (x + 0.044715 * x * x * x), du = c * (1.0 + 3 * 0.044715 * x * x);
      const double sech2 = 1.0 / (std::cosh(u) * std::cosh(u));
      return 0.5 * (1.0 + std::tanh(u)) + 0.5 * x * sech2 * du;
    }
    default: return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0);
  }
}

/// Inputs inside each function's domain and away from kinks (relu and abs at 0).
Tensor<double> inputs(Fn f, const Shape& s, weft::Rng& rng) {
  switch (f) {
    case Fn::log:
    case Fn::sqrt: return wt::rand_uniform<double>(s, rng, 0.2, 3.0);
    case Fn::relu:
    case Fn::abs: return wt::away_from_zero(wt::rand_uniform<double>(s, rng, -2.0, 2.0), 0.05);
    default: return wt::rand_uniform<double>(s, rng, -2.5, 2.5);
  }
}

Tensor<double> map(const Tensor<double>& x, double (*g)(Fn, double), Fn f) {
  Tensor<double> y(x.shape());
  for (index_t i = 0; i < x.numel(); ++i) y.flat(i) = g(f, x.flat(i));
  return y;
}

// shapes: a scalar, a short vector (all tail), a length that has full SIMD batches and a tail,
// and higher ranks
const Shape shapes[] = {Shape{}, Shape{3}, Shape{37}, Shape{3, 5}, Shape{2, 3, 4}, Shape{2, 1, 3, 2}};

}  // namespace

TEST_CASE("core/ops/unary: every function matches a float64 reference with its derivative") {
  weft::Rng rng(21);
  for (Fn fn : all_fns)
    for (const Shape& s : shapes) {
      CAPTURE(name(fn));
      CAPTURE(s);
      const Tensor<double> x = inputs(fn, s, rng);
      auto f = [fn](auto&, const auto& v) { return apply(fn, v[0]); };
      const Tensor<double> y = wt::forward(f, {x});
      CHECK(y.shape() == s);
      WEFT_CHECK_CLOSE(y, map(x, ref_f, fn), 1e-14);
      WEFT_CHECK_CLOSE(wt::gradients(f, {x}, Tensor<double>::ones(s))[0], map(x, ref_df, fn), 1e-13);
    }
}

TEST_CASE("core/ops/unary: known values") {
  auto val = [](Fn fn, double x) {
    weft::Tape<double> tape;
    return apply(fn, tape.variable(Tensor<double>::scalar(x))).item();
  };
  CHECK(val(Fn::gelu, 1.0) == doctest::Approx(0.8411919906082768).epsilon(1e-14));  // PyTorch, tanh form
  CHECK(val(Fn::gelu, -1.0) == doctest::Approx(-0.15880800939172324).epsilon(1e-14));
  CHECK(val(Fn::gelu, 0.0) == 0.0);
  CHECK(val(Fn::sigmoid, 0.0) == 0.5);
  CHECK(val(Fn::tanh, 0.0) == 0.0);
  CHECK(val(Fn::exp, 0.0) == 1.0);
  CHECK(val(Fn::log, 1.0) == 0.0);
  CHECK(val(Fn::sqrt, 4.0) == 2.0);
  CHECK(val(Fn::relu, -3.0) == 0.0);
  CHECK(val(Fn::abs, -3.0) == 3.0);
}

TEST_CASE("core/ops/unary: float32 spot checks on the vector path and its scalar tail") {
  weft::Rng rng(22);
  for (Fn fn : all_fns) {
    CAPTURE(name(fn));
    const Tensor<float> xf = inputs(fn, Shape{67}, rng).cast<float>();
    const Tensor<double> x = xf.cast<double>();  // the reference sees the rounded inputs
    weft::Tape<float> tape;
    auto v = tape.variable(xf);
    auto y = apply(fn, v);
    tape.backward(y, Tensor<float>::ones(x.shape()));
    WEFT_CHECK_CLOSE(y.value().cast<double>(), map(x, ref_f, fn), 3e-6);
    WEFT_CHECK_CLOSE(v.grad().cast<double>(), map(x, ref_df, fn), 3e-6);
  }
}

TEST_CASE("core/ops/unary: the vector path agrees with the scalar path") {
  weft::Rng rng(23);
  const index_t n = 1003;  // full batches and a tail on every instruction set
  auto check = [&](auto tag) {
    using T = decltype(tag);
    const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-14;
    for (Fn fn : all_fns) {
      CAPTURE(name(fn));
      const Tensor<T> x = inputs(fn, Shape{n}, rng).template cast<T>();
      Tensor<T> y1(Shape{n}), y2(Shape{n}), g1(Shape{n}, T(0.5)), g2(Shape{n}, T(0.5));
      const Tensor<T> gy = wt::randn<T>(Shape{n}, rng);
      auto run = [&](auto op) {
        using Op = decltype(op);
        weft::ops::unary_forward<Op>(x.data(), y1.data(), n);
        weft::ops::unary_forward_scalar<Op>(x.data(), y2.data(), n);
        weft::ops::unary_backward<Op>(x.data(), y1.data(), gy.data(), g1.data(), n);
        weft::ops::unary_backward_scalar<Op>(x.data(), y2.data(), gy.data(), g2.data(), n);
      };
      switch (fn) {
        case Fn::neg: run(weft::ops::neg_op{}); break;
        case Fn::square: run(weft::ops::square_op{}); break;
        case Fn::exp: run(weft::ops::exp_op{}); break;
        case Fn::log: run(weft::ops::log_op{}); break;
        case Fn::sqrt: run(weft::ops::sqrt_op{}); break;
        case Fn::tanh: run(weft::ops::tanh_op{}); break;
        case Fn::sigmoid: run(weft::ops::sigmoid_op{}); break;
        case Fn::relu: run(weft::ops::relu_op{}); break;
        case Fn::gelu: run(weft::ops::gelu_op{}); break;
        case Fn::abs: run(weft::ops::abs_op{}); break;
      }
      WEFT_CHECK_CLOSE(y1, y2, tol);
      WEFT_CHECK_CLOSE(g1, g2, tol);
    }
  };
  check(float{});
  check(double{});
}

TEST_CASE("core/ops/unary: large inputs run in parallel chunks and match the reference") {
  weft::Rng rng(24);
  const Shape s{3 * WEFT_PARALLEL_GRAIN + 17};
  for (Fn fn : {Fn::exp, Fn::tanh, Fn::gelu, Fn::relu}) {
    CAPTURE(name(fn));
    const Tensor<double> x = inputs(fn, s, rng);
    weft::Tape<double> tape;
    auto y = apply(fn, tape.variable(x));
    tape.backward(y, Tensor<double>::ones(s));
    WEFT_CHECK_CLOSE(y.value(), map(x, ref_f, fn), 1e-14);
  }
}

TEST_CASE("core/ops/unary: gradients (central differences, and complex step where holomorphic)") {
  weft::Rng rng(25);
  for (Fn fn : all_fns)
    for (const Shape& s : {Shape{}, Shape{3, 5}, Shape{2, 1, 3, 2}}) {
      CAPTURE(name(fn));
      CAPTURE(s);
      const Tensor<double> x = inputs(fn, s, rng);
      auto f = [fn](auto&, const auto& v) { return apply(fn, v[0]); };
      WEFT_CHECK_GRAD(weft::grad_check(f, {x}));
      if (holomorphic(fn)) WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {x}));
    }
}

TEST_CASE("core/ops/unary: relu and abs take derivative 0 at 0; relu maps NaN to 0") {
  weft::Tape<double> tape;
  auto x = tape.variable(Tensor<double>::vector_of({-1.0, 0.0, 2.0}));
  auto y = weft::relu(x) + weft::abs(x);
  tape.backward(y, Tensor<double>::ones({3}));
  WEFT_CHECK_CLOSE(y.value(), Tensor<double>::vector_of({1.0, 0.0, 4.0}), 0.0);
  WEFT_CHECK_CLOSE(x.grad(), Tensor<double>::vector_of({-1.0, 0.0, 2.0}), 0.0);
  for (index_t n : {index_t(3), index_t(41)}) {  // scalar tail and vector path
    CAPTURE(n);
    Tensor<float> xf(Shape{n}, std::numeric_limits<float>::quiet_NaN());
    weft::Tape<float> tf;
    auto r = weft::relu(tf.variable(xf));
    CHECK(r.value().array().isNaN().count() == 0);
    CHECK(r.value().array().abs().maxCoeff() == 0.0f);
  }
}

TEST_CASE("core/ops/unary: out-of-domain inputs follow IEEE, saturating functions stay finite") {
  weft::Tape<double> tape;
  auto x = tape.variable(Tensor<double>::vector_of({-1.0, 0.0, 4.0}));
  auto l = weft::log(x), r = weft::sqrt(x);
  CHECK(std::isnan(l.value().flat(0)));
  CHECK(l.value().flat(1) == -INFINITY);
  CHECK(l.value().flat(2) == doctest::Approx(std::log(4.0)));
  CHECK(std::isnan(r.value().flat(0)));
  CHECK(r.value().flat(1) == 0.0);
  // sigmoid, tanh and gelu saturate without NaN, and their gradients vanish there
  for (index_t n : {index_t(2), index_t(40)}) {
    CAPTURE(n);
    Tensor<double> big(Shape{n});
    for (index_t i = 0; i < n; ++i) big.flat(i) = i % 2 ? 800.0 : -800.0;
    for (Fn fn : {Fn::sigmoid, Fn::tanh, Fn::gelu}) {
      CAPTURE(name(fn));
      weft::Tape<double> t2;
      auto b = t2.variable(big);
      auto y = apply(fn, b);
      t2.backward(y, Tensor<double>::ones(big.shape()));
      CHECK(y.value().all_finite());
      CHECK(b.grad().all_finite());
      CHECK(y.value().flat(1) == doctest::Approx(fn == Fn::gelu ? 800.0 : 1.0));
      CHECK(std::abs(y.value().flat(0) - (fn == Fn::tanh ? -1.0 : 0.0)) < 1e-300);
    }
  }
}

TEST_CASE("core/ops/unary: an input used twice gets both contributions") {
  weft::Tape<double> tape;
  auto x = tape.variable(Tensor<double>::vector_of({0.5, 1.5}));
  auto y = weft::exp(x) + weft::square(x) + weft::neg(x) + (-x);
  tape.backward(y, Tensor<double>::ones({2}));
  Tensor<double> expected(Shape{2});
  for (index_t i = 0; i < 2; ++i) expected.flat(i) = std::exp(x.value().flat(i)) + 2 * x.value().flat(i) - 2.0;
  WEFT_CHECK_CLOSE(x.grad(), expected, 1e-15);
}

TEST_CASE("core/ops/unary: tape semantics (accumulation, constants, no_grad) of every function") {
  weft::Rng rng(26);
  for (Fn fn : all_fns) {
    CAPTURE(name(fn));
    wt::check_tape_semantics([fn](auto&, const auto& v) { return apply(fn, v[0]); }, {inputs(fn, {3, 4}, rng)});
  }
}

TEST_CASE("core/ops/unary: empty tensors, empty and stale Vars") {
  weft::Tape<double> tape;
  auto e = tape.variable(Tensor<double>(Shape{0, 3}));
  for (Fn fn : all_fns) {
    CAPTURE(name(fn));
    auto y = apply(fn, e);
    CHECK(y.shape() == Shape{0, 3});
    CHECK_THROWS_WITH_AS(apply(fn, weft::Var<double>()), doctest::Contains("weft::Var::tape"), weft::ConfigError);
  }
  const Tensor<double> x = Tensor<double>::vector_of({1.0, 2.0});
  auto v = tape.variable(x);
  tape.reset();
  for (Fn fn : all_fns) {
    CAPTURE(name(fn));
    CHECK_THROWS_WITH_AS(apply(fn, v), doctest::Contains("weft::Tape"), weft::ConfigError);
  }
  CHECK(tape.size() == 0);
  CHECK(wt::identical(x, Tensor<double>::vector_of({1.0, 2.0})));
}

}  // namespace weft_unit_core_ops_unary_test
