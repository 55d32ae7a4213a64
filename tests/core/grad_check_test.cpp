// Tests of weft/core/autograd/grad_check.hpp: it passes on correct gradients, fails loudly on a
// wrong custom backward, the complex-step mode agrees to ~1e-12, and bad inputs are errors.
#include <doctest/doctest.h>

#include <cmath>
#include <complex>
#include <limits>
#include <string>
#include <vector>

#include "core/core_test_helpers.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd.hpp"

namespace weft_unit_core_grad_check_test {

using weft::index_t;
using weft::Shape;
using weft::Tape;
using weft::Tensor;
using weft::Var;

namespace {

/// y = x^2 with a backward that returns 4x instead of 2x (a deliberate bug).
template <class T>
Var<T> wrong_square(const Var<T>& x) {
  Tape<T>& t = x.tape();
  Tensor<T> out = t.alloc_uninit(x.shape());
  out.array() = x.value().array() * x.value().array();
  return t.record(out, {x}, [x](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gx = tp.grad_sink(x)) gx->array() += T(2) * T(2) * g.array() * tp.value(x).array();
  });
}

/// y = x^2 with the right backward, written through Tape::record.
template <class T>
Var<T> custom_square(const Var<T>& x) {
  Tape<T>& t = x.tape();
  Tensor<T> out = t.alloc_uninit(x.shape());
  out.array() = x.value().array() * x.value().array();
  return t.record(out, {x}, [x](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gx = tp.grad_sink(x)) gx->array() += T(2) * g.array() * tp.value(x).array();
  });
}

/// y = x * m for a fixed mask m (a frozen mask as a custom op).
template <class T>
Var<T> masked(const Var<T>& x, const Tensor<double>& mask) {
  Tape<T>& t = x.tape();
  Tensor<T> m = mask.template cast<T>();
  Tensor<T> out = t.alloc_uninit(x.shape());
  out.array() = x.value().array() * m.array();
  return t.record(out, {x}, [x, m](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gx = tp.grad_sink(x)) gx->array() += g.array() * m.array();
  });
}

bool says(const weft::GradCheckResult& r, const char* what) { return r.message.find(what) != std::string::npos; }

}  // namespace

TEST_CASE("core/autograd/grad_check: passes on correct gradients") {
  weft::Rng rng(12);
  const Tensor<double> a = weft::test::randn<double>(Shape{3, 4}, rng);
  const Tensor<double> b = weft::test::randn<double>(Shape{3, 4}, rng);
  const Tensor<double> m = weft::test::randn<double>(Shape{4, 2}, rng);
  weft::test::Snapshot<double> snap({a, b, m});

  auto f = [](auto&, const auto& x) { return weft::sum(weft::tanh(x[0]) * x[1]); };
  const weft::GradCheckResult r = weft::grad_check(f, {a, b});
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.checked == 24);
  CHECK(says(r, "central differences"));
  CHECK(says(r, ": ok;"));
  CHECK(r.max_abs_error < 1e-8);

  // non-scalar outputs are contracted with a random tensor, so every element counts
  auto g = [](auto&, const auto& x) { return weft::matmul(weft::exp(x[0] * 0.5) + x[1], x[2]); };
  WEFT_CHECK_GRAD(weft::grad_check(g, {a, b, m}));
  auto h = [](auto&, const auto& x) { return custom_square(x[0]) * x[1]; };
  WEFT_CHECK_GRAD(weft::grad_check(h, {a, b}));
  const Tensor<double> mask = Tensor<double>::from_values({1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0}, Shape{3, 4});
  auto fm = [&mask](auto&, const auto& x) { return weft::square(masked(x[0], mask)); };
  WEFT_CHECK_GRAD(weft::grad_check(fm, {a}));

  // an input the output does not depend on has gradient 0, numerically too
  auto ignore = [](auto&, const auto& x) { return weft::sum(x[0] * x[0]); };
  WEFT_CHECK_GRAD(weft::grad_check(ignore, {a, b}));

  // works inside a no_grad scope (it enables recording for itself)
  {
    weft::no_grad ng;
    WEFT_CHECK_GRAD(weft::grad_check(f, {a, b}));
    CHECK_FALSE(weft::is_grad_enabled());
  }
  CHECK(snap.unchanged());  // inputs are never modified
}

TEST_CASE("core/autograd/grad_check: fails on a wrong custom backward") {
  weft::Rng rng(13);
  const Tensor<double> a = weft::test::randn<double>(Shape{2, 3}, rng);
  const Tensor<double> b = weft::test::randn<double>(Shape{2, 3}, rng);

  auto bad = [](auto&, const auto& x) { return wrong_square(x[0]); };
  const weft::GradCheckResult r = weft::grad_check(bad, {a});
  CHECK_FALSE(r.ok);
  CHECK(says(r, "MISMATCH"));
  CHECK(r.checked == 6);
  CHECK(r.worst_input == 0);
  CHECK(r.worst_element >= 0);
  CHECK(r.worst_element < 6);
  CHECK(r.analytic == doctest::Approx(2 * r.numeric).epsilon(1e-6));  // twice the true value
  CHECK(r.max_rel_error == doctest::Approx(0.5).epsilon(1e-5));  // |2g - g| / |2g|

  // the wrong op on the second input only: the report points there
  auto bad2 = [](auto&, const auto& x) { return x[0] * wrong_square(x[1]); };
  const weft::GradCheckResult r2 = weft::grad_check(bad2, {a, b});
  CHECK_FALSE(r2.ok);
  CHECK(r2.worst_input == 1);
  CHECK(says(r2, "worst at input 1"));

  // the complex-step mode catches it too
  const weft::GradCheckResult rc = weft::grad_check_complex_step(bad, {a});
  CHECK_FALSE(rc.ok);
  CHECK(says(rc, "MISMATCH"));
  CHECK(says(rc, "complex step"));

}

TEST_CASE("core/autograd/grad_check: complex step agrees to ~1e-12") {
  weft::Rng rng(14);
  const Tensor<double> a = weft::test::rand_uniform<double>(Shape{3, 4}, rng, -1.0, 1.0);
  const Tensor<double> b = weft::test::rand_uniform<double>(Shape{4, 2}, rng, -1.0, 1.0);
  weft::GradCheckOptions tight;
  tight.atol = 1e-12;
  tight.rtol = 1e-12;
  auto g = [](auto&, const auto& x) {
    return weft::sum(weft::matmul(weft::exp(x[0]) * x[0] + weft::tanh(x[0] * x[0]), x[1]));
  };
  const weft::GradCheckResult r = weft::grad_check_complex_step(g, {a, b}, tight);
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.max_abs_error < 1e-12);
  CHECK(r.checked == 20);
  CHECK(says(r, "complex step"));

  auto h = [](auto&, const auto& x) { return weft::sigmoid(x[0]) * weft::sqrt(x[0] * x[0] + 1.0) / (x[0] + 3.0); };
  const weft::GradCheckResult rh = weft::grad_check_complex_step(h, {a}, tight);
  CHECK_MESSAGE(rh.ok, rh.message);

  // central differences cannot reach that accuracy, but pass at their default tolerance
  const weft::GradCheckResult rd = weft::grad_check(g, {a, b});
  CHECK_MESSAGE(rd.ok, rd.message);
  CHECK(rd.max_abs_error > r.max_abs_error);
}

TEST_CASE("core/autograd/grad_check: bad inputs and options are errors") {
  auto f = [](auto&, const auto& x) { return weft::sum(x[0] * x[0]); };
  const Tensor<double> ok = Tensor<double>::vector_of({1.0, 2.0});
  WEFT_CHECK_FAILS(weft::grad_check(f, {}), weft::ShapeError, "grad_check");
  WEFT_CHECK_FAILS(weft::grad_check_complex_step(f, {}), weft::ShapeError, "grad_check_complex_step");

  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  WEFT_CHECK_FAILS(weft::grad_check(f, {Tensor<double>::vector_of({1.0, nan})}), weft::ValueError, "grad_check");
  WEFT_CHECK_FAILS(weft::grad_check(f, {ok, Tensor<double>::vector_of({inf})}), weft::ValueError, "grad_check");
  CHECK_THROWS_WITH(weft::grad_check(f, {ok, Tensor<double>::vector_of({inf})}),
                    doctest::Contains("non-finite values in input 1"));
  WEFT_CHECK_FAILS(weft::grad_check_complex_step(f, {Tensor<double>::vector_of({-inf})}), weft::ValueError,
                   "grad_check_complex_step");
  WEFT_CHECK_FAILS(weft::grad_check(f, {Tensor<double>()}), weft::ValueError, "grad_check");

  weft::GradCheckOptions o;
  o.atol = -1;
  WEFT_CHECK_FAILS(weft::grad_check(f, {ok}, o), weft::ValueError, "grad_check");
  o.atol = 0;
  o.step = -1e-6;
  WEFT_CHECK_FAILS(weft::grad_check(f, {ok}, o), weft::ValueError, "grad_check");

  // f must return the same shape on every call
  int calls = 0;
  auto shifty = [&calls](auto&, const auto& x) { return calls++ == 0 ? x[0] : weft::sum(x[0]); };
  WEFT_CHECK_FAILS(weft::grad_check(shifty, {ok}), weft::ShapeError, "grad_check");
}

}  // namespace weft_unit_core_grad_check_test
