// Tests of deploy::Model (deploy/model.hpp): a trained 2-bit StatsQ MLP, packed and run on
// caller buffers, gives the QAT model's eval logits (1e-6 relative) and predictions, for the
// whole test set at once and row by row; LayerNorm, GELU and float linear operations against
// nn's layers; bad input raises before anything is written. The zero-allocation proof is a
// separate executable (tests/deploy/no_heap_test.cpp: it replaces operator new).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "deploy_test_util.hpp"
#include "weft/core/data.hpp"
#include "weft/deploy/from_quant.hpp"
#include "weft/deploy/model.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"
#include "weft/quant/wrap.hpp"

namespace weft_unit_deploy_model_test {

using namespace weft;

/// max_i |a_i - e_i| / max(1, max_j |e_j|) over each row, maximised over rows.
double max_row_relative(const Tensor<float>& a, const Tensor<float>& e) {
  double worst = 0;
  for (index_t i = 0; i < e.dim(0); ++i) {
    double m = 1, d = 0;
    for (index_t j = 0; j < e.dim(1); ++j) m = std::max(m, std::abs(double(e(i, j))));
    for (index_t j = 0; j < e.dim(1); ++j) d = std::max(d, std::abs(double(a(i, j)) - double(e(i, j))));
    worst = std::max(worst, d / m);
  }
  return worst;
}

Tensor<float> eval(nn::MLP<float>& mlp, const Tensor<float>& x) {
  Tape<float> t;
  no_grad ng;
  return mlp(t.constant(x)).value().clone();
}

TEST_CASE("deploy/model: a trained 2-bit StatsQ MLP on caller buffers gives the QAT eval logits and predictions") {
  auto [train_set, test_set] = split_mod(load_digits<float>(), 5, 0);
  for (auto* d : {&train_set, &test_set})
    for (auto& v : d->x) v /= 16.0f;
  Rng rng(41);
  nn::MLP<float> mlp({64, 128, 10}, rng);
  quant::StatsQOptions so;
  so.bits = 2;
  const auto att = quant::quantize_linears<float>(mlp, quant::statsq_factory<float>(so));
  {
    nn::AdamOptions ao;
    ao.lr = 3e-3;
    nn::Adam<float> opt(mlp.parameters(), ao);
    Tape<float> t;
    std::vector<int> labels;
    for (int s = 0; s < 60; ++s) {
      std::vector<index_t> rows(64);
      for (auto& r : rows) r = index_t(rng.uniform(0.0, double(train_set.size()))) % train_set.size();
      t.reset();
      opt.zero_grad();
      t.backward(cross_entropy(mlp(nn::batch_rows(t, train_set.x, rows)), nn::batch_labels(train_set.y, rows, labels)));
      opt.step();
    }
  }
  const Tensor<float> qat = eval(mlp, test_set.x);
  const auto w1 = deploy::pack<2, 0>(quant::export_weights(att.layers[0]));
  const auto w2 = deploy::pack<2, 0>(quant::export_weights(att.layers[1]));
  deploy::Model<2, 0> m(64);
  m.linear(w1.view(), mlp.layers[0].bias.value().data()).relu().linear(w2.view(), mlp.layers[1].bias.value().data());
  CHECK(m.size() == 3);
  CHECK(m.in_features() == 64);
  CHECK(m.out_features() == 10);
  // 128 x (4 words + 1 step) + 10 x (8 words + 1 step), 4 B each, plus 138 float biases
  CHECK(m.parameter_bytes() == std::size_t(128 * 5 * 4 + 10 * 9 * 4 + 138 * 4));

  const index_t n = test_set.size();
  std::vector<float> ws(std::size_t(m.workspace_size(n)));
  Tensor<float> dep(Shape{n, 10});
  m.forward({test_set.x.data(), n * 64}, n, {dep.data(), n * 10}, ws);
  const double err = max_row_relative(dep, qat);
  MESSAGE("deploy::Model vs QAT logits, max row-relative error ", err);
  CHECK(err <= 1e-6);
  CHECK(nn::argmax_rows(dep) == nn::argmax_rows(qat));

  // row by row (batch 1, a smaller workspace): the same bits as the batch
  std::vector<float> ws1(std::size_t(m.workspace_size(1)));
  CHECK(ws1.size() < ws.size());
  bool same = true;
  for (index_t i = 0; i < n; ++i) {
    float y[10];
    m.forward({test_set.x.data() + i * 64, 64}, 1, y, ws1);
    same = same && std::memcmp(y, dep.data() + i * 10, sizeof y) == 0;
  }
  CHECK(same);
}

TEST_CASE("deploy/model: LayerNorm, GELU and float linear operations equal nn's layers") {
  Rng rng(7);
  const index_t batch = 5, d = 24, h = 40, out = 7;
  nn::LayerNorm<float> ln(d);
  ln.gamma.value().copy_from(test::rand_uniform<float>(Shape{d}, rng, 0.5, 1.5));
  ln.beta.value().copy_from(test::rand_uniform<float>(Shape{d}, rng, -0.5, 0.5));
  nn::MLP<float> mlp({d, h, out}, rng, nn::Activation::gelu);
  const auto q1 = quant::quantize_linear<float>(mlp.layers[0], quant::statsq<4, float>());  // the first layer 4-bit, the head float
  const Tensor<float> x = test::rand_uniform<float>(Shape{batch, d}, rng, -2, 2);
  Tensor<float> expected;
  {
    Tape<float> t;
    no_grad ng;
    expected = mlp(ln(t.constant(x))).value().clone();
  }
  const auto w1 = deploy::pack<4, 0>(quant::export_weights(q1));
  deploy::Model<4, 0> m(d);
  m.layer_norm(ln.gamma.value().data(), ln.beta.value().data(), 1e-5f)
      .linear(w1.view(), mlp.layers[0].bias.value().data())
      .gelu()
      .linear(out, mlp.layers[1].weight.value().data(), mlp.layers[1].bias.value().data());
  CHECK(m.kind(0) == deploy::OpKind::layer_norm);
  CHECK(m.kind(3) == deploy::OpKind::float_linear);
  std::vector<float> ws(std::size_t(m.workspace_size(batch))), y(std::size_t(batch * out));
  m.forward({x.data(), batch * d}, batch, y, ws);
  Tensor<float> yt(Shape{batch, out});
  std::copy(y.begin(), y.end(), yt.data());
  WEFT_CHECK_CLOSE(yt, expected, 1e-5);

  // the layer norm alone: the same sums in the same order as nn's, so the same bits
  deploy::Model<4, 0> only_ln(d);
  only_ln.layer_norm(ln.gamma.value().data(), ln.beta.value().data());
  std::vector<float> yl(std::size_t(batch * d)), wl(std::size_t(only_ln.workspace_size(batch)));
  only_ln.forward({x.data(), batch * d}, batch, yl, wl);
  Tensor<float> ln_nn;
  {
    Tape<float> t;
    no_grad ng;
    ln_nn = ln(t.constant(x)).value().clone();
  }
  CHECK(std::memcmp(yl.data(), ln_nn.data(), sizeof(float) * yl.size()) == 0);
}

TEST_CASE("deploy/model: bad input raises naming the function, before anything is written") {
  const deploy::word_t words[2] = {0x2Cu, 0x1Fu};  // 2 x 3, 2 bits (no_exceptions_test.cpp)
  const float steps[2] = {0.5f, 0.25f};
  deploy::PackedView<2, 0> v;
  v.rows = 2;
  v.cols = 3;
  v.words = words;
  v.steps = steps;
  v.offset = 0.5f;
  v.code_min = -2;
  using M = deploy::Model<2, 0>;
  deploy::Model<2, 0, 2> m(3);
  WEFT_DEPLOY_CHECK_FAILS(M(0), ShapeError, "deploy::Model");
  WEFT_DEPLOY_CHECK_FAILS(m.relu().linear(v, nullptr).relu(), ConfigError, "deploy::Model::relu");  // MaxOps 2
  CHECK(m.size() == 2);
  CHECK(m.out_features() == 2);
  M m2(4);
  WEFT_DEPLOY_CHECK_FAILS(m2.linear(v, nullptr), ShapeError, "deploy::Model::linear");  // 4 inputs, W has 3
  deploy::PackedView<2, 0> bad = v;
  bad.steps = nullptr;
  WEFT_DEPLOY_CHECK_FAILS(M(3).linear(bad, nullptr), ValueError, "deploy::Model::linear");
  WEFT_DEPLOY_CHECK_FAILS(m2.layer_norm(nullptr, nullptr, -1.0f), ValueError, "deploy::Model::layer_norm");

  float x[6] = {1, 2, 4, 1, 2, 4}, y[4] = {9, 9, 9, 9}, ws[64];
  REQUIRE(m.workspace_size(2) <= 64);
  m.forward({x, 6}, 2, y, {ws, 64});
  CHECK(y[0] == 1.75f);  // relu(x) W^T: (1.75, 0.625) per row
  CHECK(y[1] == 0.625f);
  CHECK(y[3] == 0.625f);
  const float y0[4] = {y[0], y[1], y[2], y[3]};
  auto untouched = [&] { return std::memcmp(y, y0, sizeof y) == 0; };
  WEFT_DEPLOY_CHECK_FAILS(m.forward({x, 5}, 2, y, {ws, 64}), ShapeError, "deploy::Model::forward");
  WEFT_DEPLOY_CHECK_FAILS(m.forward({x, 6}, 2, {y, 3}, {ws, 64}), ShapeError, "deploy::Model::forward");
  WEFT_DEPLOY_CHECK_FAILS(m.forward({x, 6}, 2, y, {ws, m.workspace_size(2) - 1}), ShapeError, "deploy::Model::forward");
  WEFT_DEPLOY_CHECK_FAILS(m.forward({x, 6}, 0, y, {ws, 64}), ShapeError, "deploy::Model::forward");
  WEFT_DEPLOY_CHECK_FAILS(m.forward({x, 6}, 2, y, {nullptr, 64}), ValueError, "deploy::Model::forward");
  x[4] = std::nanf("");
  WEFT_DEPLOY_CHECK_FAILS(m.forward({x, 6}, 2, y, {ws, 64}), ValueError, "deploy::Model::forward");
  CHECK(untouched());
}

}  // namespace weft_unit_deploy_model_test
