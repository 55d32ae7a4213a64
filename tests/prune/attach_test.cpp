// Tests of weft/prune/attach.hpp and calibration.hpp: the masked op's gradient (float64
// grad_check), the mask transform on a Linear, apply_masks with the original weights, masks that
// survive Adam with weight decay, calibration hooks against direct statistics, the sparsity
// report, bad input.
#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "prune_test_util.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/grad_check.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/prune/attach.hpp"
#include "weft/prune/calibration.hpp"
#include "weft/prune/mask.hpp"
#include "weft/prune/scores.hpp"

namespace weft_unit_prune_attach_test {

using namespace weft;
using namespace weft::prune;

namespace {

Mask random_mask(index_t rows, index_t cols, Rng& rng) {
  Mask m(rows, cols);
  for (auto& k : m.keep) k = rng.uniform() < 0.5 ? 0 : 1;
  return m;
}

}  // namespace

TEST_CASE("prune/attach: the masked op: forward zeroes, backward is keep * grad (grad_check)") {
  Rng rng(31);
  Tensor<double> w = test::randn<double>(Shape{4, 5}, rng);
  Tensor<double> keep = random_mask(4, 5, rng).as_tensor<double>();
  auto f = [keep](Tape<double>&, const std::vector<Var<double>>& v) { return tanh(masked(v[0], keep)); };
  WEFT_CHECK_GRAD(grad_check(f, {w}));
  Tape<double> tape;
  Var<double> x = tape.variable(w);
  Var<double> y = masked(x, keep);
  tape.backward(sum(y * 3.0));
  for (index_t i = 0; i < w.numel(); ++i) {
    CHECK(y.value().flat(i) == (keep.flat(i) != 0 ? w.flat(i) : 0.0));
    CHECK(x.grad().flat(i) == (keep.flat(i) != 0 ? 3.0 : 0.0));
  }
  WEFT_PRUNE_CHECK_FAILS(masked(x, Tensor<double>(Shape{5, 4})), ShapeError, "prune::masked");
}

TEST_CASE("prune/attach: a MaskTransform on a Linear: forward, gradients and fold") {
  Rng rng(32);
  nn::Linear<double> lin(5, 3, rng);
  const Mask m = random_mask(3, 5, rng);
  auto tr = std::make_shared<MaskTransform<double>>(m);
  lin.add_transform(tr);
  Tensor<double> x = test::randn<double>(Shape{6, 5}, rng);
  Tape<double> tape;
  Var<double> y = lin(tape.constant(x));
  tape.backward(sum(square(y)));
  Tensor<double> wm = lin.folded_weight();
  for (index_t r = 0; r < 3; ++r)
    for (index_t c = 0; c < 5; ++c) {
      CHECK(wm(r, c) == (m.kept(r, c) ? lin.weight.value()(r, c) : 0.0));
      if (!m.kept(r, c)) CHECK(lin.weight.grad()(r, c) == 0.0);
    }
  const Eigen::MatrixXd expect = (x.matrix() * wm.matrix().transpose()).rowwise() + lin.bias.value().vector().transpose();
  CHECK((Eigen::MatrixXd(y.value().matrix()) - expect).cwiseAbs().maxCoeff() < 1e-12);
  CHECK(tr->mask() == m);
  WEFT_PRUNE_CHECK_FAILS(tr->fold(Tensor<double>(Shape{5, 3})), ShapeError, "prune::MaskTransform::fold");
}

TEST_CASE("prune/attach: apply_masks zeroes the original weights; masks survive Adam with weight decay") {
  Rng rng(33);
  nn::MLP<float> model({6, 8, 4}, rng);
  auto layers = linear_layers(model);
  REQUIRE(layers.size() == 2);
  CHECK(layers[0].first == "layers.0");
  Tensor<float> x = test::randn<float>(Shape{32, 6}, rng);
  std::vector<int> y(32);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = int(i % 4);
  nn::AdamOptions ao;
  ao.lr = 0.05;
  ao.weight_decay = 0.1;
  auto train = [&](nn::Optimizer<float>& opt, int steps) {
    Tape<float> tape;
    for (int s = 0; s < steps; ++s) {
      opt.zero_grad();
      Var<float> loss = cross_entropy(model(tape.constant(x)), y);
      tape.backward(loss);
      opt.step();
      tape.reset();
    }
  };
  // the masks come from the pretrained weights; the optimiser already has moments for them
  std::vector<Tensor<float>> originals;
  std::vector<Mask> masks;
  for (auto& l : layers) {
    originals.push_back(l.second->weight.value().clone());
    masks.push_back(select_mask(magnitude_scores(l.second->weight.value())));
  }
  nn::Adam<float> opt(model.parameters(), ao);
  train(opt, 5);  // the weights moved away from the originals; Adam holds momentum
  auto pruned = apply_masks(model, {}, masks, originals);
  REQUIRE(pruned.size() == 2);
  for (std::size_t i = 0; i < layers.size(); ++i)
    for (index_t j = 0; j < originals[i].numel(); ++j)
      CHECK(layers[i].second->weight.value().flat(j) == (masks[i].keep[std::size_t(j)] ? originals[i].flat(j) : 0.0f));
  SparsityReport rep = sparsity_report(layers);
  CHECK(rep.layers[0].zeros == 24);
  CHECK(rep.layers[1].zeros == 16);
  CHECK(rep.zeros == 40);
  CHECK(rep.numel == 80);
  CHECK(rep.sparsity() == doctest::Approx(0.5));
  CHECK(rep.to_string().find("total") != std::string::npos);

  SUBCASE("without enforcement, stale Adam moments move masked weights") {
    train(opt, 3);
    CHECK(sparsity_report(layers).zeros == 40);  // the transform still masks the product ...
    index_t moved = 0;                           // ... but stored masked weights drift
    for (std::size_t i = 0; i < layers.size(); ++i)
      for (index_t j = 0; j < originals[i].numel(); ++j)
        moved += !masks[i].keep[std::size_t(j)] && layers[i].second->weight.value().flat(j) != 0.0f;
    CHECK(moved > 0);
  }
  SUBCASE("with enforcement, masked weights stay exactly +0 and the others train") {
    nn::HookHandle keep = enforce_masks(opt, pruned);
    const Tensor<float> before = layers[0].second->weight.value().clone();
    train(opt, 20);
    for (std::size_t i = 0; i < layers.size(); ++i)
      for (index_t j = 0; j < originals[i].numel(); ++j)
        if (!masks[i].keep[std::size_t(j)]) {
          CHECK(layers[i].second->weight.value().flat(j) == 0.0f);
          CHECK(!std::signbit(layers[i].second->weight.value().flat(j)));
        }
    index_t changed = 0;
    for (index_t j = 0; j < before.numel(); ++j) changed += before.flat(j) != layers[0].second->weight.value().flat(j);
    CHECK(changed > 20);
    layers[0].second->clear_transforms();
    layers[1].second->clear_transforms();
    CHECK(sparsity_report(layers).zeros == 40);  // the stored weights themselves are sparse
  }
}

TEST_CASE("prune/attach: bad input to apply_masks and enforce_masks leaves the model unchanged") {
  Rng rng(34);
  nn::MLP<float> model({6, 8, 4}, rng);
  auto layers = linear_layers(model);
  const Tensor<float> w0 = layers[0].second->weight.value().clone();
  std::vector<Mask> masks = {Mask(8, 6), Mask(4, 7)};
  WEFT_PRUNE_CHECK_FAILS(apply_masks<float>(model, {}, masks), ShapeError, "prune::apply_masks");
  WEFT_PRUNE_CHECK_FAILS(apply_masks<float>(model, {}, std::vector<Mask>{Mask(8, 6)}), ShapeError, "prune::apply_masks");
  masks[1] = Mask(4, 8);
  WEFT_PRUNE_CHECK_FAILS(apply_masks<float>(model, {}, masks, std::vector<Tensor<float>>{w0}), ShapeError,
                         "prune::apply_masks");
  // a selector that picks no layer names the model's layers
  CHECK_THROWS_WITH_AS(apply_masks<float>(model, {"head"}, masks), doctest::Contains("{layers.0, layers.1}"), ConfigError);
  CHECK(test::identical(layers[0].second->weight.value(), w0));
  CHECK(layers[0].second->transforms().empty());
  // one layer by name: its mask only
  auto one = apply_masks<float>(model, {"layers.1"}, std::vector<Mask>{masks[1]});
  REQUIRE(one.size() == 1);
  CHECK(one[0].name == "layers.1");
  CHECK(layers[0].second->transforms().empty());
  CHECK(layers[1].second->transforms().size() == 1);
  CHECK(linear_layers<float>(model, {"layers.1"}).size() == 1);
  nn::SGD<float> opt(model.parameters());
  PrunedWeight<float> bad{"x", layers[0].second->weight, std::make_shared<MaskTransform<float>>(Mask(2, 2))};
  WEFT_PRUNE_CHECK_FAILS(enforce_masks(opt, std::vector<PrunedWeight<float>>{bad}), ConfigError, "prune::enforce_masks");
}

TEST_CASE("prune/calibration: hooks collect the inputs each Linear's product saw") {
  Rng rng(35);
  nn::MLP<double> model({5, 7, 3}, rng);
  auto layers = linear_layers(model);
  Tensor<double> x1 = test::randn<double>(Shape{10, 5}, rng), x2 = test::randn<double>(Shape{6, 5}, rng);
  {
    Calibration<double> cal(layers);
    Tape<double> tape;
    no_grad ng;
    model(tape.constant(x1));
    model(tape.constant(x2));
    CHECK(cal.size() == 2);
    CHECK(cal.name(1) == "layers.1");
    const HessianStats<double>& s0 = cal.stats("layers.0");
    CHECK(s0.samples() == 16);
    Eigen::MatrixXd xx(16, 5);
    xx << x1.matrix(), x2.matrix();
    CHECK((s0.hessian() - 2.0 / 16 * xx.transpose() * xx).cwiseAbs().maxCoeff() < 1e-12);
    // the second layer sees relu(x W0^T + b0)
    Eigen::MatrixXd h1 = ((xx * model.layers[0].weight.value().matrix().transpose()).rowwise() +
                          model.layers[0].bias.value().vector().transpose())
                             .cwiseMax(0.0);
    CHECK((cal.stats(1).hessian() - 2.0 / 16 * h1.transpose() * h1).cwiseAbs().maxCoeff() < 1e-12);
    CHECK(cal.stats(1).column_norms().flat(2) == doctest::Approx(h1.col(2).norm()));
    WEFT_PRUNE_CHECK_FAILS(cal.stats("nope"), ConfigError, "prune::Calibration::stats");
    cal.detach();
    model(tape.constant(x1));  // no longer collected
    CHECK(cal.stats(0).samples() == 16);
  }
  Tape<double> tape;
  model(tape.constant(x1));  // hooks are gone after the scope
  {
    Calibration<double> one(model, {"layers.1"});  // a selector instead of a list
    no_grad ng;
    model(tape.constant(x2));
    REQUIRE(one.size() == 1);
    CHECK(one.name(0) == "layers.1");
    CHECK(one.stats(0).samples() == 6);
    CHECK(model.layers[0].num_forward_hooks() == 0);
    CHECK(model.layers[1].num_forward_hooks() == 1);
  }
  CHECK(model.layers[1].num_forward_hooks() == 0);
  WEFT_PRUNE_CHECK_FAILS(Calibration<double>(std::vector<NamedLinear<double>>{}), ConfigError, "prune::Calibration");
  HessianStats<double> empty(5);
  WEFT_PRUNE_CHECK_FAILS(obs_diag_importance(model.layers[0].weight.value(), empty), ShapeError, "prune::HessianStats::hessian");
}

}  // namespace weft_unit_prune_attach_test
