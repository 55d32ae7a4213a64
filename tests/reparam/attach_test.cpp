// Tests of weft/reparam/attach.hpp: the compander on whole models (MLP, attention), the clamp
// count, atomic failure, parameter groups and hooks (weight decay on Psi(v) or on v, the (a, b)
// learning-rate multiplier and floor), compander_sgd, and fold_compander.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "nn/nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/nn/attention.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/reparam/attach.hpp"

namespace weft_unit_reparam_attach_test {

using namespace weft;
using namespace weft::reparam;

namespace {

template <class M>
Tensor<double> run(M& model, const Tensor<double>& x) {
  Tape<double> tape;
  return model(tape.constant(x)).value().clone();
}

/// A copy of every parameter value of the model (to check that a failed call changed nothing).
std::vector<Tensor<double>> values(nn::Module<double>& m) {
  std::vector<Tensor<double>> out;
  for (auto& p : m.parameters()) out.push_back(p.value().clone());
  return out;
}
bool same_values(nn::Module<double>& m, const std::vector<Tensor<double>>& saved) {
  auto ps = m.parameters();
  if (ps.size() != saved.size()) return false;
  for (std::size_t i = 0; i < ps.size(); ++i)
    if (!test::identical(ps[i].value(), saved[i])) return false;
  return true;
}

const nn::ParamGroup<double>* group(const std::vector<nn::ParamGroup<double>>& gs, const std::string& name) {
  for (auto& g : gs)
    if (g.name == name) return &g;
  return nullptr;
}

}  // namespace

TEST_CASE("reparam/attach: every Linear of an MLP, outputs unchanged, report") {
  Rng rng(1);
  nn::MLP<double> mlp({6, 5, 4, 3}, rng);
  const Tensor<double> x = test::randn<double>({4, 6}, rng);
  const Tensor<double> y = run(mlp, x);
  CompanderAttachment<double> att = attach_compander(mlp);
  REQUIRE(att.layers.size() == 3);
  CHECK(att.layers[0].name == "layers.0");
  CHECK(att.layers[2].name == "layers.2");
  CHECK(att.layers[1].v == mlp.layers[1].weight);
  CHECK(att.clamped() == 0);
  for (auto& l : mlp.layers) CHECK(l.transforms().size() == 1);
  WEFT_CHECK_CLOSE(run(mlp, x), y, 1e-12);
  CHECK(mlp.named_parameters().size() == 6);  // fixed (a, b): no new parameters
  auto rep = att.report();
  REQUIRE(rep.size() == 3);
  CHECK(rep[0].a == 0.7);
  CHECK(rep[0].bound == doctest::Approx(0.7 * 1.5707963267948966));
  CHECK(rep[0].w.max_abs == doctest::Approx(mlp.layers[0].folded_weight().array().abs().maxCoeff()));
  CHECK(rep[0].w.count == 30);
}

TEST_CASE("reparam/attach: a filter, the attention projections, and other functions") {
  Rng rng(2);
  nn::MLP<double> mlp({4, 4, 2}, rng);
  auto att = attach_compander(mlp, CompanderOptions{},
                              [](const std::string& name, const nn::Linear<double>&) { return name == "layers.1"; });
  REQUIRE(att.layers.size() == 1);
  CHECK(mlp.layers[0].transforms().empty());
  CHECK(mlp.layers[1].transforms().size() == 1);

  nn::MultiHeadAttention<double> mha(8, 2, rng);
  const Tensor<double> x = test::randn<double>({2, 3, 8}, rng);
  const Tensor<double> y = run(mha, x);
  auto att2 = attach_compander<ErfPsi>(mha, CompanderOptions::learnable_defaults());
  REQUIRE(att2.layers.size() == 4);
  CHECK(att2.layers[0].name == "q_proj");
  CHECK(att2.layers[3].name == "out_proj");
  CHECK(std::string(att2.layers[0].compander->psi_name()) == "erf");
  WEFT_CHECK_CLOSE(run(mha, x), y, 1e-12);
  CHECK(mha.named_parameters().size() == 8 + 8);  // + (a, b) per projection

  // a Linear on its own is a model too
  nn::Linear<double> lin(3, 2, rng);
  auto att3 = attach_compander<AsinhPsi>(lin);
  REQUIRE(att3.layers.size() == 1);
  CHECK(att3.layers[0].name == "");
}

TEST_CASE("reparam/attach: weights beyond the bound are clamped and counted") {
  Rng rng(3);
  nn::MLP<double> mlp({64, 8, 2}, rng);  // layer 0: |w| < 1/8, layer 1: |w| < 1/sqrt(8)
  CompanderOptions o;
  o.a = 0.05;  // bound 0.0785 (minus delta)
  index_t expect0 = 0, expect1 = 0;
  const double edge = 0.05 * (AtanPsi::limit - o.init_delta);
  for (auto w : mlp.layers[0].weight.value()) expect0 += std::abs(w) >= edge;
  for (auto w : mlp.layers[1].weight.value()) expect1 += std::abs(w) >= edge;
  REQUIRE(expect0 > 0);
  auto att = attach_compander(mlp, o);
  CHECK(att.layers[0].clamped == expect0);
  CHECK(att.layers[1].clamped == expect1);
  CHECK(att.clamped() == expect0 + expect1);
  for (auto& l : mlp.layers) CHECK(l.weight.value().all_finite());
  CHECK(att.report()[0].w.max_abs < 0.05 * AtanPsi::limit);
}

TEST_CASE("reparam/attach: failures leave the model untouched") {
  Rng rng(4);
  nn::MLP<double> mlp({4, 4, 4, 2}, rng);
  const auto saved = values(mlp);
  SUBCASE("a layer whose transform needs the plain weight (BoneAffine-like)") {
    struct Plain : nn::WeightTransform<double> {
      std::string name() const override { return "plain"; }
      bool needs_plain_weight() const override { return true; }
      Var<double> apply(const Var<double>& w) override { return w; }
    };
    mlp.layers[1].add_transform(std::make_shared<Plain>());
    WEFT_NN_CHECK_FAILS(attach_compander(mlp), ConfigError, "reparam::attach_compander");
    CHECK(mlp.layers[0].transforms().empty());
    CHECK(mlp.layers[2].transforms().empty());
    CHECK(mlp.layers[1].transforms().size() == 1);
  }
  SUBCASE("a second compander") {
    attach_compander(mlp);
    const auto after = values(mlp);
    WEFT_NN_CHECK_FAILS(attach_compander(mlp), ConfigError, "reparam::attach_compander");
    CHECK(same_values(mlp, after));
    return;
  }
  SUBCASE("bad options") {
    CompanderOptions o;
    o.b = 0;
    WEFT_NN_CHECK_FAILS(attach_compander(mlp, o), ValueError, "reparam::Compander");
  }
  SUBCASE("a non-finite weight in the last layer") {
    mlp.layers[2].weight.value().flat(3) = NAN;
    WEFT_NN_CHECK_FAILS(attach_compander(mlp), ValueError, "reparam::Compander::inverse");
    mlp.layers[2].weight.value().flat(3) = saved[4].flat(3);
  }
  SUBCASE("out-of-bound weights with clamp_init = false") {
    CompanderOptions o;
    o.a = 0.05;
    o.clamp_init = false;
    WEFT_NN_CHECK_FAILS(attach_compander(mlp, o), ValueError, "reparam::Compander::inverse");
  }
  SUBCASE("no Linear at all") {
    nn::LayerNorm<double> ln(4);
    WEFT_NN_CHECK_FAILS(attach_compander(ln), ConfigError, "reparam::attach_compander");
    WEFT_NN_CHECK_FAILS(attach_compander(mlp, CompanderOptions{},
                                         [](const std::string&, const nn::Linear<double>&) { return false; }),
                        ConfigError, "reparam::attach_compander");
  }
  for (auto& l : mlp.layers)
    if (l.transforms().size() == 1 && l.transforms()[0]->name() == "plain") l.clear_transforms();
  for (auto& l : mlp.layers) CHECK(l.transforms().empty());
  CHECK(same_values(mlp, saved));
}

TEST_CASE("reparam/attach: parameter groups follow the spec's decay and learning-rate conventions") {
  Rng rng(5);
  nn::MLP<double> fixed({3, 4, 2}, rng), learn({3, 4, 2}, rng);
  auto af = attach_compander(fixed);
  CompanderOptions lo = CompanderOptions::learnable_defaults();
  lo.ab_lr_multiplier = 0.01;
  auto al = attach_compander(learn, lo);

  auto gf = compander_param_groups(fixed, af, 0.05, 1e-4);
  REQUIRE(gf.size() == 2);
  const auto* v = group(gf, "compander.v.decay_w");
  REQUIRE(v != nullptr);
  CHECK(v->params.size() == 2);
  CHECK(*v->weight_decay == 0.0);  // decay acts on Psi(v) through the hook
  CHECK(group(gf, "rest")->params.size() == 2);  // biases
  CHECK_FALSE(group(gf, "rest")->weight_decay.has_value());

  auto gl = compander_param_groups(learn, al, 0.05, 1e-4);
  REQUIRE(gl.size() == 4);
  CHECK_FALSE(group(gl, "compander.v.decay_v")->weight_decay.has_value());  // decay on v
  const auto* ab = group(gl, "compander.ab.layers.1");
  REQUIRE(ab != nullptr);
  CHECK(*ab->lr == doctest::Approx(0.05 * 0.01));
  CHECK(*ab->weight_decay == 0.0);
  // every parameter of the model exactly once
  std::set<const void*> ids;
  std::size_t count = 0;
  for (auto& g : gl)
    for (auto& p : g.params) {
      ids.insert(p.id());
      ++count;
    }
  CHECK(count == learn.parameters().size());
  CHECK(ids.size() == count);

  WEFT_NN_CHECK_FAILS(compander_param_groups(fixed, al, 0.05, 1e-4), ConfigError, "reparam::compander_param_groups");
  WEFT_NN_CHECK_FAILS(compander_param_groups(fixed, af, -1.0, 1e-4), ValueError, "reparam::compander_param_groups");
  nn::SGD<double> opt(fixed.parameters());
  WEFT_NN_CHECK_FAILS(add_compander_hooks(opt, af, -1.0), ValueError, "reparam::add_compander_hooks");
}

TEST_CASE("reparam/attach: the compander hooks are owned: the group removes them, compander_sgd keeps them") {
  Rng rng(61);
  nn::MLP<double> mlp({4, 3, 2}, rng);
  CompanderOptions lo;
  lo.learnable = true;
  auto att = attach_compander(mlp, lo, {"layers.0"});
  REQUIRE(att.layers.size() == 1);
  CHECK(mlp.layers[1].transforms().empty());
  nn::SGD<double> opt(mlp.parameters());
  {
    nn::HookGroup g = add_compander_hooks(opt, att, 1e-3);
    CHECK(g.size() == 1);  // learnable (a, b): the floor clamp after each step
    CHECK(opt.num_post_step_hooks() == 1);
  }
  CHECK(opt.num_post_step_hooks() == 0);
  // compander_sgd returns its optimiser by value with the hooks released to it
  auto af = attach_compander(mlp, CompanderOptions{}, {"layers.1"});
  nn::SGDOptions so;
  so.weight_decay = 1e-3;
  nn::SGD<double> own = compander_sgd(mlp, af, so);
  CHECK(own.num_pre_step_hooks() == 1);  // fixed (a, b): decay on Psi(v) before each step
  nn::SGD<double> moved(std::move(own));
  CHECK(moved.num_pre_step_hooks() == 1);
  moved.zero_grad();
  moved.step();  // runs the hook through the moved optimiser
  CHECK(mlp.layers[0].transforms().size() == 1);
}

TEST_CASE("reparam/attach: fixed (a, b): weight decay on Psi(v), the gradient of (lambda / 2) ||Psi(v)||^2") {
  Rng rng(6);
  nn::Linear<double> lin(5, 3, rng, false);
  auto att = attach_compander(lin);
  const double lr = 0.1, lambda = 0.3;
  nn::SGDOptions so;
  so.lr = lr;
  so.weight_decay = lambda;
  nn::SGD<double> opt = compander_sgd(lin, att, so);
  const Tensor<double> v0 = lin.weight.value().clone();
  // the expected decay gradient by autograd: d/dv (lambda / 2) sum Psi(v)^2
  Tensor<double> g;
  {
    Tape<double> tape;
    Var<double> vv = tape.variable(v0);
    Var<double> w = att.layers[0].compander->apply(vv);
    tape.backward(sum(square(w)) * tape.constant(Tensor<double>::scalar(lambda / 2)));
    g = vv.grad().clone();
  }
  opt.zero_grad();  // no data gradient: the step is the decay alone
  opt.step();
  Tensor<double> expect = v0.clone();
  expect.array() -= lr * g.array();
  WEFT_CHECK_CLOSE(lin.weight.value(), expect, 1e-14);
  // and it is not plain L2 on v
  Tensor<double> l2 = v0.clone();
  l2.array() -= lr * lambda * v0.array();
  CHECK((lin.weight.value().array() - l2.array()).abs().maxCoeff() > 1e-4);
}

TEST_CASE("reparam/attach: learnable (a, b): decay on v only, LR multiplier and floor for (a, b)") {
  Rng rng(7);
  nn::Linear<double> lin(4, 3, rng, false);
  CompanderOptions o = CompanderOptions::learnable_defaults();
  o.ab_lr_multiplier = 0.01;
  o.floor = 0.05;
  auto att = attach_compander(lin, o);
  auto& c = *att.layers[0].compander;
  nn::SGDOptions so;
  so.lr = 0.5;
  so.weight_decay = 0.2;
  nn::SGD<double> opt = compander_sgd(lin, att, so);
  const Tensor<double> v0 = lin.weight.value().clone();
  opt.zero_grad();
  c.a_param().grad().flat(0) = 2.0;
  c.b_param().grad().flat(0) = -4.0;
  opt.step();
  Tensor<double> expect = v0.clone();
  expect.array() *= 1 - 0.5 * 0.2;  // plain L2 on v
  WEFT_CHECK_CLOSE(lin.weight.value(), expect, 1e-15);
  CHECK(c.a() == doctest::Approx(0.5 - 0.5 * 0.01 * 2.0).epsilon(1e-15));  // no decay on a
  CHECK(c.b() == doctest::Approx(1.0 + 0.5 * 0.01 * 4.0).epsilon(1e-15));
  // a step that would push a below the floor is clamped after the step
  opt.zero_grad();
  c.a_param().grad().flat(0) = 1000.0;
  opt.step();
  CHECK(c.a() == 0.05);
}

TEST_CASE("reparam/attach: a few SGD steps with compander_sgd lower the loss; fold_compander keeps outputs") {
  Rng rng(8);
  nn::MLP<double> mlp({4, 8, 3}, rng);
  auto att = attach_compander(mlp, CompanderOptions::learnable_defaults());
  nn::SGDOptions so;
  so.lr = 0.1;
  so.momentum = 0.9;
  so.weight_decay = 1e-4;
  nn::SGD<double> opt = compander_sgd(mlp, att, so);
  const Tensor<double> x = test::randn<double>({16, 4}, rng);
  std::vector<int> y;
  for (int i = 0; i < 16; ++i) y.push_back(i % 3);
  double first = 0, last = 0;
  for (int s = 0; s < 30; ++s) {
    Tape<double> tape;
    opt.zero_grad();
    Var<double> loss = cross_entropy(mlp(tape.constant(x)), y);
    if (s == 0) first = loss.item();
    last = loss.item();
    tape.backward(loss);
    opt.step();
    for (auto& l : att.layers) {
      CHECK(std::abs(l.compander->a() - 0.5) > 0);
      CHECK(l.compander->fold(l.v.value()).array().abs().maxCoeff() < l.compander->bound());
    }
  }
  CHECK(last < first);
  const Tensor<double> before = run(mlp, x);
  CHECK(fold_compander(mlp) == 2);
  CHECK(fold_compander(mlp) == 0);
  for (auto& l : mlp.layers) CHECK(l.transforms().empty());
  WEFT_CHECK_CLOSE(run(mlp, x), before, 1e-14);
  CHECK(mlp.named_parameters().size() == 4);
}

TEST_CASE("reparam/attach: DecayOn chooses the decay target for either version") {
  Rng rng(9);
  const double lr = 0.1, lambda = 0.3;
  nn::SGDOptions so;
  so.lr = lr;
  so.weight_decay = lambda;
  for (bool learnable : {false, true})
    for (DecayOn on : {DecayOn::w, DecayOn::v}) {
      nn::Linear<double> lin(4, 3, rng, false);
      CompanderOptions o = learnable ? CompanderOptions::learnable_defaults() : CompanderOptions{};
      o.decay_on = on;
      auto att = attach_compander(lin, o);
      const auto& c = *att.layers[0].compander;
      CHECK(c.decay_on_w() == (on == DecayOn::w));
      auto groups = compander_param_groups(lin, att, lr, lambda);
      CHECK(group(groups, on == DecayOn::w ? "compander.v.decay_w" : "compander.v.decay_v") != nullptr);
      nn::SGD<double> opt = compander_sgd(lin, att, so);
      const Tensor<double> v0 = lin.weight.value().clone();
      opt.zero_grad();
      opt.step();  // the decay alone
      for (index_t i = 0; i < v0.numel(); ++i) {
        const double v = v0.flat(i), a = learnable ? 0.5 : 0.7, b = learnable ? 1.0 : 0.7;
        const double u = v / b, d = a / b / (1 + u * u);
        const double g = on == DecayOn::w ? lambda * a * std::atan(u) * d : lambda * v;
        CHECK(lin.weight.value().flat(i) == doctest::Approx(v - lr * g).epsilon(1e-14));
      }
    }
  // the automatic choice is the spec's
  CompanderOptions fixed, learn = CompanderOptions::learnable_defaults();
  CHECK(Compander<float>(fixed).decay_on_w());
  CHECK_FALSE(Compander<float>(learn).decay_on_w());
}

}  // namespace weft_unit_reparam_attach_test
