// Tests of weft/reparam/compander.hpp on one nn::Linear: the bound (spec assertion 1), step-0
// equivalence after the inverse (2), folding (3), float64 gradients of v, a and b against
// central differences (4), parameter names, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nn/nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/core/autograd/grad_check.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/linear.hpp"
#include "weft/reparam/compander.hpp"

namespace weft_unit_reparam_compander_test {

using namespace weft;
using namespace weft::reparam;
using weft::nn_test::contract;
using weft::nn_test::param_grad_check;

namespace {

template <class T>
Tensor<T> forward_value(nn::Linear<T>& lin, const Tensor<T>& x) {
  Tape<T> tape;
  return lin(tape.constant(x)).value().clone();
}

/// A Linear with a compander whose v starts at inverse(w0).
template <class T, class Psi = AtanPsi>
std::shared_ptr<Compander<T, Psi>> compand(nn::Linear<T>& lin, const CompanderOptions& o) {
  auto c = std::make_shared<Compander<T, Psi>>(o);
  InverseResult<T> r = c->inverse(lin.weight.value());
  lin.weight.value().copy_from(r.v);
  lin.add_transform(c);
  return c;
}

GradCheckOptions tight() {
  GradCheckOptions o;
  o.rtol = 1e-6;  // spec assertion 4: relative error <= 1e-6
  o.atol = 1e-9;
  return o;
}

template <class Psi>
void check_gradients(const CompanderOptions& o) {
  Rng rng(3);
  nn::Linear<double> lin(5, 4, rng);
  auto c = compand<double, Psi>(lin, o);
  const Tensor<double> x = test::randn<double>({6, 5}, rng), R = test::randn<double>({6, 4}, rng);
  // v, a, b and the bias through the layer, by perturbing the parameters in place
  WEFT_CHECK_GRAD(param_grad_check(lin.parameters(), [&](Tape<double>& t) { return contract(lin(t.constant(x)), R); },
                                   1e-9, 1e-6));
  // the transform alone, v as a tape variable
  WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return c->apply(v[0]); },
                             {test::randn<double>({3, 4}, rng, 0.0, 1.5)}, tight()));
}

}  // namespace

TEST_CASE("reparam/compander: |Psi(v)| < a pi/2 for any v, also far out (assertion 1)") {
  for (double a : {0.5, 0.7, 1.3}) {
    CompanderOptions o;
    o.a = a;
    o.b = 0.6;
    Compander<double> c(o);
    Tensor<double> v = Tensor<double>::vector_of({-1e300, -1e6, -3.0, -1e-8, 0.0, 2.0, 1e6, 1e300});
    Tensor<double> w = c.fold(v);
    for (index_t i = 0; i < w.numel(); ++i) CHECK(std::abs(w.flat(i)) <= a * AtanPsi::limit);
    CHECK(c.bound() == doctest::Approx(a * 1.5707963267948966));
    // within the bound strictly while v / b stays below ~1e7 (atan rounds to pi/2 beyond)
    for (index_t i = 1; i < 7; ++i) CHECK(std::abs(w.flat(i)) < a * AtanPsi::limit);
    // float too
    Compander<float> cf(o);
    Tensor<float> wf = cf.fold(Tensor<float>::vector_of({-1e3f, -2.f, 0.f, 5.f, 1e3f}));
    for (index_t i = 0; i < wf.numel(); ++i) CHECK(double(std::abs(wf.flat(i))) < a * AtanPsi::limit);
  }
  Compander<double, ErfPsi> e;
  CHECK(e.bound() == doctest::Approx(0.7));
  Compander<double, AsinhPsi> s;
  CHECK(std::isinf(s.bound()));
}

TEST_CASE_TEMPLATE("reparam/compander: after v = inverse(w0) the layer computes the same outputs (assertion 2)", T,
                   float, double) {
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  for (bool learnable : {false, true}) {
    Rng rng(5), rng2(5);
    nn::MLP<T> base({64, 128, 128, 10}, rng), comp({64, 128, 128, 10}, rng2);
    const Tensor<T> x = test::rand_uniform<T>({20, 64}, rng, 0, 1);
    CompanderOptions o = learnable ? CompanderOptions::learnable_defaults() : CompanderOptions{};
    if (!learnable) o.a = o.b = 0.5;  // arm B of the spec's protocol
    for (auto& l : comp.layers) compand<T>(l, o);
    Tape<T> tape;
    Tensor<T> y0 = base(tape.constant(x)).value().clone();
    Tensor<T> y1 = comp(tape.constant(x)).value().clone();
    const double diff = (y0.array() - y1.array()).abs().maxCoeff();
    CHECK_MESSAGE(diff <= tol, "learnable ", learnable, ": max |logit diff| ", diff);
  }
}

TEST_CASE("reparam/compander: folding gives a plain layer with the same outputs (assertion 3)") {
  Rng rng(6);
  nn::Linear<float> lin(8, 5, rng);
  CompanderOptions o = CompanderOptions::learnable_defaults();
  auto c = compand<float>(lin, o);
  // move away from step 0 so Psi(v) is not just w0
  lin.weight.value().array() *= 3.0f;
  c->a_param().value().flat(0) = 0.8f;
  c->b_param().value().flat(0) = 0.6f;
  const Tensor<float> x = test::randn<float>({7, 8}, rng);
  const Tensor<float> y = forward_value(lin, x);
  const Tensor<float> w = lin.folded_weight();
  WEFT_CHECK_CLOSE(w, c->fold(lin.weight.value()), 0.0);
  lin.fold();
  CHECK(lin.transforms().empty());
  CHECK(test::identical(lin.weight.value(), w));
  CHECK(test::identical(forward_value(lin, x), y));
  CHECK(lin.named_parameters().size() == 2);  // weight and bias only
}

TEST_CASE("reparam/compander: gradients of v, a and b match central differences (assertion 4)") {
  CompanderOptions fixed;
  fixed.a = 0.8;
  fixed.b = 0.5;
  SUBCASE("atan, fixed") { check_gradients<AtanPsi>(fixed); }
  SUBCASE("atan, learnable") { check_gradients<AtanPsi>(CompanderOptions::learnable_defaults()); }
  SUBCASE("erf, learnable") { check_gradients<ErfPsi>(CompanderOptions::learnable_defaults()); }
  SUBCASE("asinh, learnable") { check_gradients<AsinhPsi>(CompanderOptions::learnable_defaults()); }
}

TEST_CASE("reparam/compander: the analytic formulas of dL/dv, dL/da, dL/db") {
  // L = sum(R * Psi(v)): dL/dv = R a b / (b^2 + v^2), dL/da = sum R atan(v / b),
  // dL/db = sum R (-a v / (b^2 + v^2))
  Rng rng(7);
  CompanderOptions o = CompanderOptions::learnable_defaults();
  o.a = 0.9;
  o.b = 0.4;
  Compander<double> c(o);
  const Tensor<double> v = test::randn<double>({4, 3}, rng), R = test::randn<double>({4, 3}, rng);
  Tape<double> tape;
  Var<double> vv = tape.variable(v);
  tape.backward(contract(c.apply(vv), R));
  double ga = 0, gb = 0;
  for (index_t i = 0; i < v.numel(); ++i) {
    const double x = v.flat(i), den = 0.16 + x * x;
    CHECK(vv.grad().flat(i) == doctest::Approx(R.flat(i) * 0.9 * 0.4 / den).epsilon(1e-14));
    ga += R.flat(i) * std::atan(x / 0.4);
    gb += R.flat(i) * (-0.9 * x / den);
  }
  CHECK(c.a_param().grad().flat(0) == doctest::Approx(ga).epsilon(1e-13));
  CHECK(c.b_param().grad().flat(0) == doctest::Approx(gb).epsilon(1e-13));
}

TEST_CASE("reparam/compander: fixed (a, b) have no parameters, learnable ones are named and trained") {
  Rng rng(8);
  nn::Linear<double> fixed(3, 2, rng), learn(3, 2, rng);
  compand<double>(fixed, CompanderOptions{});
  auto c = compand<double>(learn, CompanderOptions::learnable_defaults());
  CHECK(fixed.named_parameters().size() == 2);
  auto np = learn.named_parameters();
  REQUIRE(np.size() == 4);
  CHECK(np[2].first == "transforms.0.compander.a");
  CHECK(np[3].first == "transforms.0.compander.b");
  CHECK(np[2].second == c->a_param());
  CHECK(c->a() == 0.5);
  CHECK(c->b() == 1.0);
  CHECK(std::string(c->psi_name()) == "atan");
  CHECK(c->name() == "compander");
  // the floor clamp
  c->a_param().value().flat(0) = -1.0;
  c->b_param().value().flat(0) = 1e-9;
  c->clamp_to_floor();
  CHECK(c->a() == 1e-3);
  CHECK(c->b() == 1e-3);
}

TEST_CASE("reparam/compander: bad options, a or b <= 0, and weights outside the bound") {
  auto opts = [](double a, double b) {
    CompanderOptions o;
    o.a = a;
    o.b = b;
    return o;
  };
  WEFT_NN_CHECK_FAILS(Compander<float>(opts(0.0, 0.7)), ValueError, "reparam::Compander");
  WEFT_NN_CHECK_FAILS(Compander<float>(opts(0.7, -1.0)), ValueError, "reparam::Compander");
  WEFT_NN_CHECK_FAILS(Compander<float>(opts(NAN, 0.7)), ValueError, "reparam::Compander");
  WEFT_NN_CHECK_FAILS(Compander<float>(opts(0.7, INFINITY)), ValueError, "reparam::Compander");
  CompanderOptions o = CompanderOptions::learnable_defaults();
  o.floor = 0.0;
  WEFT_NN_CHECK_FAILS(Compander<float>{o}, ValueError, "reparam::Compander");
  o = CompanderOptions::learnable_defaults();
  o.floor = 0.6;  // above the initial a = 0.5
  WEFT_NN_CHECK_FAILS(Compander<float>{o}, ValueError, "reparam::Compander");
  o = CompanderOptions{};
  o.ab_lr_multiplier = -1;
  WEFT_NN_CHECK_FAILS(Compander<float>{o}, ValueError, "reparam::Compander");
  o = CompanderOptions{};
  o.init_delta = 2.0;  // >= pi/2
  WEFT_NN_CHECK_FAILS(Compander<float>{o}, ValueError, "reparam::Compander");
  WEFT_NN_CHECK_FAILS((Compander<float, ErfPsi>{o}), ValueError, "reparam::Compander");  // >= 1 for erf

  // the inverse: non-finite weights throw, out-of-bound ones are clamped (and counted) or,
  // with clamp_init = false, throw; the input is never modified
  Compander<double> c(opts(0.5, 0.7));
  Tensor<double> w = Tensor<double>::vector_of({0.1, -0.9, 0.8, 0.2});  // bound 0.785
  test::Snapshot<double> snap({w});
  InverseResult<double> r = c.inverse(w);
  CHECK(r.clamped == 2);
  CHECK(std::isfinite(r.v.flat(1)));
  CHECK(r.v.flat(1) < 0);
  CHECK(snap.unchanged());
  Tensor<double> bad = Tensor<double>::vector_of({0.1, NAN});
  WEFT_NN_CHECK_FAILS(c.inverse(bad), ValueError, "reparam::Compander::inverse");
  CompanderOptions strict = opts(0.5, 0.7);
  strict.clamp_init = false;
  Compander<double> cs(strict);
  CHECK_THROWS_WITH_AS(cs.inverse(w), doctest::Contains("got 2 outside"), ValueError);
  CHECK(snap.unchanged());
  CHECK(cs.inverse(Tensor<double>::vector_of({0.1, -0.7})).clamped == 0);

  // a learnable a driven to <= 0 (no floor hook) is refused at the next forward and fold
  Rng rng(9);
  nn::Linear<double> lin(3, 2, rng);
  auto cl = compand<double>(lin, CompanderOptions::learnable_defaults());
  cl->a_param().value().flat(0) = -0.1;
  const Tensor<double> x = test::randn<double>({2, 3}, rng);
  test::Snapshot<double> vsnap({lin.weight.value()});
  WEFT_NN_CHECK_FAILS(forward_value(lin, x), ValueError, "reparam::Compander::apply");
  WEFT_NN_CHECK_FAILS(lin.fold(), ValueError, "reparam::Compander::fold");
  CHECK(vsnap.unchanged());
  CHECK(lin.transforms().size() == 1);
  cl->b_param().value().flat(0) = NAN;
  cl->a_param().value().flat(0) = 0.5;
  WEFT_NN_CHECK_FAILS(forward_value(lin, x), ValueError, "reparam::Compander::apply");
}

TEST_CASE("reparam/compander: a, b and floor must be normal non-zero numbers of the weight type") {
  CompanderOptions o;
  o.a = 1e-300;  // 0 in float
  CHECK_THROWS_WITH_AS((void)Compander<float>(o), doctest::Contains("weft::reparam::Compander: "), ValueError);
  CHECK(Compander<double>(o).a() == 1e-300);
  o = CompanderOptions{};
  o.b = 1e39;  // inf in float
  CHECK_THROWS_WITH_AS((void)Compander<float>(o), doctest::Contains("weft::reparam::Compander: "), ValueError);
  o = CompanderOptions{};
  o.floor = 1e-50;
  CHECK_THROWS_WITH_AS((void)Compander<float>(o), doctest::Contains("weft::reparam::Compander: "), ValueError);
}

}  // namespace weft_unit_reparam_compander_test
