// Tests of weft/reparam/optim.hpp: CompanderAdam against a hand-written double reference of the
// spec's update (Adam moments on g_w = dL/dw, step multiplied by Psi'(v)), plain Adam for the
// other parameters, the builder with its hooks, and bad options.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "nn/nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/reparam/optim.hpp"

namespace weft_unit_reparam_optim_test {

using namespace weft;
using namespace weft::reparam;

TEST_CASE("reparam/optim: CompanderAdam follows v -= lr Psi'(v) mhat / (sqrt(shat) + eps) with moments on g_w") {
  Rng rng(1);
  nn::Linear<double> lin(4, 3, rng);
  CompanderOptions co;
  co.a = 0.6;
  co.b = 0.5;
  auto att = attach_compander(lin, co);
  nn::AdamOptions ao;
  ao.lr = 0.01;
  ao.weight_decay = 0.0;
  CompanderAdam<double> opt(lin.parameters(), att, ao);
  CHECK(opt.companded() == 1);
  // a twin bias trained by nn::Adam must move identically (non-companded parameters)
  Parameter<double> twin(lin.bias.value().clone(), "twin");
  nn::Adam<double> ref_opt(std::vector<Parameter<double>>{twin}, ao);

  Tensor<double> v = lin.weight.value().clone(), m(v.shape()), s(v.shape());
  for (int t = 1; t <= 4; ++t) {
    const Tensor<double> gv = test::randn<double>({3, 4}, rng), gb = test::randn<double>({3}, rng);
    lin.weight.grad().copy_from(gv);
    lin.bias.grad().copy_from(gb);
    twin.grad().copy_from(gb);
    opt.step();
    ref_opt.step();
    for (index_t i = 0; i < v.numel(); ++i) {
      const double u = v.flat(i) / 0.5, d = 0.6 / 0.5 / (1 + u * u);
      const double gw = gv.flat(i) / d;
      m.flat(i) = 0.9 * m.flat(i) + 0.1 * gw;
      s.flat(i) = 0.999 * s.flat(i) + 0.001 * gw * gw;
      const double mh = m.flat(i) / (1 - std::pow(0.9, t)), sh = s.flat(i) / (1 - std::pow(0.999, t));
      v.flat(i) -= 0.01 * d * mh / (std::sqrt(sh) + 1e-8);
    }
    WEFT_CHECK_CLOSE(lin.weight.value(), v, 1e-13);
    CHECK(test::identical(lin.bias.value(), twin.value()));
  }
}

TEST_CASE("reparam/optim: a frozen v is not touched; L2 decay joins the gradient before the division") {
  Rng rng(2);
  nn::Linear<double> lin(3, 2, rng, false);
  auto att = attach_compander(lin);
  nn::AdamOptions ao;
  ao.lr = 0.1;
  ao.weight_decay = 0.5;
  CompanderAdam<double> opt(lin.parameters(), att, ao);
  const Tensor<double> v0 = lin.weight.value().clone();
  lin.weight.set_requires_grad(false);
  lin.weight.grad().fill(1.0);
  opt.step();
  CHECK(test::identical(lin.weight.value(), v0));
  lin.weight.set_requires_grad(true);
  lin.weight.grad().set_zero();
  opt.step();  // first step of v: g_w = 0.5 v / Psi'(v), the step is lr Psi'(v) sign(v)
  for (index_t i = 0; i < v0.numel(); ++i) {
    const double u = v0.flat(i) / 0.7, d = 1.0 / (1 + u * u);
    const double gw = 0.5 * v0.flat(i) / d;
    CHECK(lin.weight.value().flat(i) == doctest::Approx(v0.flat(i) - 0.1 * d * gw / (std::abs(gw) + 1e-8)));
  }
}

TEST_CASE("reparam/optim: compander_adam trains a small model and keeps (a, b) above the floor") {
  Rng rng(3);
  nn::MLP<float> mlp({4, 16, 3}, rng);
  CompanderOptions co = CompanderOptions::learnable_defaults();
  co.floor = 0.3;
  auto att = attach_compander(mlp, co);
  nn::AdamOptions ao;
  ao.lr = 0.05;
  ao.weight_decay = 1e-4;
  CompanderAdam<float> opt = compander_adam(mlp, att, ao);
  CHECK(opt.groups().size() == 4);  // v, (a, b) x 2, biases
  const Tensor<float> x = test::randn<float>({24, 4}, rng);
  std::vector<int> y;
  for (index_t i = 0; i < 24; ++i) y.push_back(x(i, 0) > 0 ? 0 : (x(i, 1) > 0 ? 1 : 2));
  float first = 0, last = 0;
  for (int s = 0; s < 60; ++s) {
    Tape<float> tape;
    opt.zero_grad();
    Var<float> loss = cross_entropy(mlp(tape.constant(x)), y);
    if (s == 0) first = loss.item();
    last = loss.item();
    tape.backward(loss);
    opt.step();
    for (auto& l : att.layers) {
      CHECK(l.compander->a() >= 0.3f);
      CHECK(l.compander->b() >= 0.3f);
    }
  }
  CHECK(last < 0.5f * first);
}

TEST_CASE("reparam/optim: bad Adam options") {
  Rng rng(4);
  nn::Linear<double> lin(3, 2, rng);
  auto att = attach_compander(lin);
  nn::AdamOptions ao;
  ao.beta1 = 1.0;
  WEFT_NN_CHECK_FAILS(CompanderAdam<double>(lin.parameters(), att, ao), ValueError, "reparam::CompanderAdam");
  ao = nn::AdamOptions{};
  ao.eps = 0;
  WEFT_NN_CHECK_FAILS(CompanderAdam<double>(lin.parameters(), att, ao), ValueError, "reparam::CompanderAdam");
  ao = nn::AdamOptions{};
  ao.lr = -1;
  WEFT_NN_CHECK_FAILS(CompanderAdam<double>(lin.parameters(), att, ao), ValueError, "reparam::CompanderAdam");
}

}  // namespace weft_unit_reparam_optim_test
