// Compositions of issue 16 (the small instances behind examples/compose_prune_quant.cpp):
// D-Pruner masks (dual importance, exact count per matrix) followed by 2-bit StatsQ or LSQ QAT,
// and the weight compander under StatsQ trained end to end. Checked: after quantisation and after
// every Adam step every pruned entry of the effective weight is exactly 0 and the count is the
// target (StatsQ: nothing else is zero); the compander + StatsQ chain trains, stays on the 2-bit
// grid and inside the compander's bound. (tests/quant/prune_compose_test.cpp covers magnitude
// masks in both attach orders.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"
#include "weft/prune.hpp"
#include "weft/quant/wrap.hpp"
#include "weft/reparam.hpp"

namespace weft_unit_compose_prune_quant_test {

using namespace weft;

struct Data {
  Tensor<float> x;
  std::vector<int> y;
};
/// A 4-class problem: the label is the argmax of a fixed linear map of x.
Data make_data(index_t n, Rng& rng) {
  Data d{test::randn<float>(Shape{n, 16}, rng), {}};
  const Tensor<float> a = test::randn<float>(Shape{16, 4}, rng);
  const Tensor<float> s = Tensor<float>::from(Eigen::MatrixXf(d.x.matrix() * a.matrix()));
  for (index_t i = 0; i < n; ++i) {
    index_t best = 0;
    for (index_t k = 1; k < 4; ++k) best = s.matrix()(i, k) > s.matrix()(i, best) ? k : best;
    d.y.push_back(int(best));
  }
  return d;
}

Var<float> batch_loss(nn::MLP<float>& m, const Data& d, Tape<float>& t, const std::vector<index_t>& rows,
                      std::vector<int>& labels) {
  return cross_entropy(m(nn::batch_rows(t, d.x, rows)), nn::batch_labels(d.y, rows, labels));
}

/// 50 % D-Pruner masks (isotropic dual importance, general importance = magnitude^2) of every Linear.
std::vector<prune::Mask> dpruner_masks(nn::MLP<float>& m, const Data& d) {
  std::vector<Parameter<float>> w;
  std::vector<Tensor<float>> general;
  for (auto& l : m.layers) {
    w.push_back(l.weight);
    Tensor<float> g = l.weight.value().clone();
    g.array() = g.array().square();
    general.push_back(std::move(g));
  }
  prune::DomainPassOptions o;
  o.batch_size = 32;
  std::vector<int> labels;
  const auto imp = prune::dual_importance_pass(
      m, w, general, d.x.dim(0), [&](Tape<float>& t, const std::vector<index_t>& rows) { return batch_loss(m, d, t, rows, labels); },
      o);
  prune::MaskOptions mo;
  mo.sparsity = 0.5;
  std::vector<prune::Mask> masks;
  for (auto& s : imp) masks.push_back(prune::select_mask(s, mo));
  return masks;
}

TEST_CASE("compose/prune_quant: D-Pruner 50% masks keep exactly their zeros through 2-bit StatsQ and LSQ QAT") {
  for (int kind = 0; kind < 2; ++kind) {
    CAPTURE(kind);
    Rng rng(1660 + std::uint64_t(kind));
    const Data d = make_data(256, rng);
    nn::MLP<float> m({16, 32, 4}, rng);
    {
      nn::Adam<float> opt(m.parameters());
      std::vector<int> labels;
      std::vector<index_t> rows(256);
      for (index_t i = 0; i < 256; ++i) rows[std::size_t(i)] = i;
      for (int s = 0; s < 20; ++s) {
        opt.zero_grad();
        Tape<float> t;
        t.backward(batch_loss(m, d, t, rows, labels));
        opt.step();
      }
    }
    const std::vector<prune::Mask> masks = dpruner_masks(m, d);
    auto pruned = prune::apply_masks(m, {}, masks);
    (void)quant::quantize_linears(m, kind == 0 ? quant::statsq_factory<float>() : quant::lsq_factory<float>());
    index_t checks = 0;
    auto check = [&](int step) {
      CAPTURE(step);
      for (std::size_t i = 0; i < m.layers.size(); ++i) {
        const Tensor<float> w = m.layers[i].folded_weight();
        const index_t target = prune::prune_count(0.5, w.numel());
        index_t at_pruned = 0, total = 0;
        for (index_t j = 0; j < w.numel(); ++j) {
          total += w.flat(j) == 0.0f;
          at_pruned += w.flat(j) == 0.0f && masks[i].keep[std::size_t(j)] == 0;
        }
        CHECK(masks[i].zeros() == target);
        CHECK(at_pruned == target);
        if (kind == 0) CHECK(total == target);  // StatsQ has no zero level
        ++checks;
      }
    };
    check(0);  // after quantisation
    const Tensor<float> before = m.layers[0].folded_weight();
    nn::AdamOptions ao;
    ao.lr = 1e-2;
    ao.weight_decay = 1e-2;  // L2 in the gradient: masked entries get none through the mask's backward
    nn::Adam<float> opt(m.parameters(), ao);
    nn::HookHandle keep = prune::enforce_masks(opt, pruned);
    nn::TrainerOptions to;
    to.epochs = 2;
    to.batch_size = 32;
    to.seed = 3;
    nn::Trainer<float> tr(opt, to);
    tr.on_step([&](const nn::StepInfo& s) { check(int(s.step) + 1); });
    std::vector<int> labels;
    tr.fit(d.x.dim(0), [&](Tape<float>& t, const std::vector<index_t>& rows) { return batch_loss(m, d, t, rows, labels); });
    CHECK(checks == index_t(m.layers.size()) * (1 + 2 * 8));  // 256 / 32 = 8 steps per epoch
    CHECK_FALSE(test::identical(m.layers[0].folded_weight(), before));  // QAT moved the weights
  }
}

TEST_CASE("compose/compander_statsq: v -> Psi(v) -> 2-bit StatsQ trains end to end on the grid and inside the bound") {
  Rng rng(1670);
  const Data d = make_data(256, rng);
  nn::MLP<float> m({16, 32, 4}, rng);
  const nn::Selector<float> hidden("layers.0");
  (void)quant::quantize_linears(m, quant::statsq_factory<float>(), hidden);
  reparam::CompanderOptions co;
  co.a = 0.5;
  co.b = 0.5;
  auto att = reparam::attach_compander(m, co, hidden);  // attached second, runs first
  nn::Linear<float>& l = m.layers[0];
  REQUIRE(l.transforms().size() == 2);
  CHECK(l.transforms()[0]->name() == "compander");
  CHECK(l.transforms()[1]->name() == "statsq");
  nn::AdamOptions ao;
  ao.lr = 1e-2;
  auto opt = reparam::compander_adam(m, att, ao);
  std::vector<int> labels;
  std::vector<index_t> rows(256);
  for (index_t i = 0; i < 256; ++i) rows[std::size_t(i)] = i;
  auto loss_now = [&] {
    Tape<float> t;
    no_grad ng;
    return batch_loss(m, d, t, rows, labels).item();
  };
  const float first = loss_now();
  const Tensor<float> v0 = l.weight.value().clone();
  for (int s = 0; s < 40; ++s) {
    opt.zero_grad();
    Tape<float> t;
    t.backward(batch_loss(m, d, t, rows, labels));
    opt.step();
  }
  CHECK(loss_now() < 0.8f * first);
  CHECK_FALSE(test::identical(l.weight.value(), v0));
  // Psi(v) within the compander's bound a pi / 2, and the used weight on 4 levels per row
  const Tensor<float> w = l.transforms()[0]->fold(l.weight.value());
  CHECK(double(w.array().abs().maxCoeff()) < 0.5 * std::acos(-1.0) / 2);  // a pi / 2
  const Tensor<float> q = l.folded_weight();
  for (index_t r = 0; r < q.dim(0); ++r) {
    std::set<float> levels;
    for (index_t j = 0; j < q.dim(1); ++j) levels.insert(q.matrix()(r, j));
    CHECK(levels.size() <= 4);
  }
}

}  // namespace weft_unit_compose_prune_quant_test
