// Tests of the QKR attention in deploy::Model (deploy/attention.hpp, deploy/model.hpp) and of
// its packer (deploy/from_quant.hpp): a tiny ViT trained with 2-bit QKR (quantised query-key
// product, v/out projections and MLPs at 2 bits), packed and run on caller buffers, gives the QAT
// model's eval logits (1e-6 relative) and predictions, batch 1 giving the batch's bits; the token
// operations against nn's; bad input. The zero-allocation proof is tests/deploy/no_heap_test.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "deploy_test_util.hpp"
#include "weft/core/data.hpp"
#include "weft/deploy/from_quant.hpp"
#include "weft/deploy/model.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"
#include "weft/nn/vit.hpp"
#include "weft/quant/qkr.hpp"
#include "weft/quant/statsq.hpp"

namespace weft_unit_deploy_vit_test {

using namespace weft;

/// max_i |a_i - e_i| / max(1, max_j |e_j|) over each row, maximised over rows.
double max_row_relative(const float* a, const Tensor<float>& e) {
  double worst = 0;
  const index_t cols = e.dim(1);
  for (index_t i = 0; i < e.dim(0); ++i) {
    double m = 1, d = 0;
    for (index_t j = 0; j < cols; ++j) m = std::max(m, std::abs(double(e(i, j))));
    for (index_t j = 0; j < cols; ++j) d = std::max(d, std::abs(double(a[i * cols + j]) - double(e(i, j))));
    worst = std::max(worst, d / m);
  }
  return worst;
}

/// A TinyViT whose blocks run through QKR with 2-bit StatsQ on the product, v_proj, out_proj and
/// the MLPs (q_proj and k_proj stay float: QKR quantises their product). Block 0 keeps the
/// query bias exactly (QkBias::exact), block 1 drops it (the reference's choice).
struct QkrViT {
  nn::TinyViT<float> vit;
  std::vector<std::unique_ptr<quant::QkrTransformerBlock<float>>> qkr;

  explicit QkrViT(Rng& rng) : vit(nn::ViTConfig{}, rng) {
    for (std::size_t i = 0; i < vit.blocks.size(); ++i) {
      auto& b = vit.blocks[i];
      quant::QkrOptions o;
      o.qk_bias = i == 0 ? quant::QkBias::exact : quant::QkBias::drop;
      qkr.push_back(std::make_unique<quant::QkrTransformerBlock<float>>(b, o));
      qkr.back()->qkr.product_quantizer = quant::statsq<2, float>();
    }
  }
  // v_proj, out_proj and the MLP layers of every block, 2-bit StatsQ per row (the record pack reads)
  quant::QuantAttachment<float> quantized = quant::quantize_linears<float>(
      vit, [](const std::string&, nn::Linear<float>&) { return quant::statsq<2, float>(); },
      nn::Selector<float>::regex("blocks\\.[0-9]+\\.(attn\\.(v_proj|out_proj)|mlp\\.layers\\.[01])"));
  Var<float> operator()(const Var<float>& x) {
    return vit.forward(x, [this](std::size_t i, const Var<float>& h) { return (*qkr[i])(h); });
  }
  std::vector<quant::QkrTransformerBlock<float>*> blocks() {
    std::vector<quant::QkrTransformerBlock<float>*> v;
    for (auto& q : qkr) v.push_back(q.get());
    return v;
  }
};

TEST_CASE("deploy/vit: a trained 2-bit QKR ViT on caller buffers gives the QAT eval logits and predictions") {
  auto [train_set, test_set] = split_mod(load_digits<float>(), 5, 0);
  for (auto* d : {&train_set, &test_set})
    for (auto& v : d->x) v /= 16.0f;
  Rng rng(43);
  QkrViT m(rng);
  {
    nn::AdamOptions ao;
    ao.lr = 3e-3;
    nn::Adam<float> opt(m.vit.parameters(), ao);
    Tape<float> t;
    std::vector<int> labels;
    for (int s = 0; s < 40; ++s) {
      std::vector<index_t> rows(32);
      for (auto& r : rows) r = index_t(rng.uniform(0.0, double(train_set.size()))) % train_set.size();
      t.reset();
      opt.zero_grad();
      t.backward(cross_entropy(m(nn::batch_rows(t, train_set.x, rows)), nn::batch_labels(train_set.y, rows, labels)));
      opt.step();
    }
  }
  Tensor<float> qat;
  {
    Tape<float> t;
    no_grad ng;
    qat = m(t.constant(test_set.x)).value().clone();
  }
  const auto packed = deploy::pack<2, 0>(m.vit, m.blocks(), m.quantized);
  REQUIRE(packed.blocks.size() == 2);
  CHECK(!packed.blocks[0].attn.key_bias.empty());  // exact: the query bias' key term
  CHECK(packed.blocks[1].attn.key_bias.empty());   // drop
  CHECK(packed.operations() == 27);
  const auto model = packed.model<27>();
  CHECK(model.in_features() == 64);
  CHECK(model.out_features() == 10);
  CHECK(model.out_tokens() == 1);
  CHECK(model.parameter_bytes() == packed.bytes());
  // the product (4 x 32, 32) per block: 128 rows of 2 words and a step, 12 B a row
  CHECK(packed.blocks[0].attn.product.bytes() == std::size_t(128 * 12));

  const index_t n = test_set.size();
  std::vector<float> ws(std::size_t(model.workspace_size(n))), dep(std::size_t(n * 10));
  model.forward({test_set.x.data(), n * 64}, n, dep, ws);
  const double err = max_row_relative(dep.data(), qat);
  MESSAGE("packed QKR ViT vs QAT logits, max row-relative error ", err);
  CHECK(err <= 1e-6);
  Tensor<float> dt(Shape{n, 10});
  std::copy(dep.begin(), dep.end(), dt.data());
  CHECK(nn::argmax_rows(dt) == nn::argmax_rows(qat));

  std::vector<float> ws1(std::size_t(model.workspace_size(1)));
  bool same = true;
  for (index_t i = 0; i < n; ++i) {
    float y[10];
    model.forward({test_set.x.data() + i * 64, 64}, 1, y, ws1);
    same = same && std::memcmp(y, dep.data() + i * 10, sizeof y) == 0;
  }
  CHECK(same);
}

TEST_CASE("deploy/vit: patchify, class token and positions equal TinyViT's token stage") {
  Rng rng(5);
  nn::ViTConfig c;
  c.depth = 0;  // tokens -> final LayerNorm -> head
  nn::TinyViT<float> vit(c, rng);
  const Tensor<float> x = test::rand_uniform<float>(Shape{3, 64}, rng, 0, 1);
  Tensor<float> expected;
  {
    Tape<float> t;
    no_grad ng;
    expected = vit.features(t.constant(x)).value().clone();  // (3, 17, 32)
  }
  deploy::Model<2, 0> m(64);
  m.patchify(8, 2).linear(32, vit.patch_embed.weight.value().data(), vit.patch_embed.bias.value().data());
  m.prepend_token(vit.cls_token.value().data()).add_positions(vit.pos_embed.value().data());
  m.layer_norm(vit.norm.gamma.value().data(), vit.norm.beta.value().data());
  CHECK(m.out_tokens() == 17);
  std::vector<float> ws(std::size_t(m.workspace_size(3))), y(std::size_t(3 * 17 * 32));
  m.forward({x.data(), 3 * 64}, 3, y, ws);
  Tensor<float> yt(Shape{3, 17, 32});
  std::copy(y.begin(), y.end(), yt.data());
  WEFT_CHECK_CLOSE(yt, expected, 1e-5);
}

TEST_CASE("deploy/vit: bad QKR attention, residuals and token operations raise naming the function") {
  Rng rng(9);
  auto make = [&](index_t rows, index_t cols) {
    const auto k = deploy_test::random_codes(rows * cols, 2, deploy_test::signed_grid(2), rng);
    const std::vector<float> s(std::size_t(rows), 0.05f);
    return deploy::pack_codes<2, 0>(rows, cols, k.data(), s.data(), 0.5f, -2);
  };
  const auto prod = make(4 * 8, 8), val = make(8, 8), out = make(8, 8), wide = make(8, 6);
  deploy::QkrAttentionView<2, 0> a;
  a.product = prod.view();
  a.value = val.view();
  a.out = out.view();
  a.heads = 4;
  a.qk_head_dim = 2;
  a.validate();
  using M = deploy::Model<2, 0>;
  WEFT_DEPLOY_CHECK_FAILS(M(6, 3).qkr_attention(a), ShapeError, "deploy::Model::qkr_attention");  // width 6, not 8
  deploy::QkrAttentionView<2, 0> b = a;
  b.heads = 3;  // does not divide 8
  WEFT_DEPLOY_CHECK_FAILS(M(8, 3).qkr_attention(b), ShapeError, "deploy::Model::qkr_attention");
  b = a;
  b.out = wide.view();
  WEFT_DEPLOY_CHECK_FAILS(M(8, 3).qkr_attention(b), ShapeError, "deploy::Model::qkr_attention");
  WEFT_DEPLOY_CHECK_FAILS(M(8, 3).residual_add(), ConfigError, "deploy::Model::residual_add");
  WEFT_DEPLOY_CHECK_FAILS(M(8, 3).residual_begin().residual_begin(), ConfigError, "deploy::Model::residual_begin");
  WEFT_DEPLOY_CHECK_FAILS(M(8, 3).residual_begin().select_token(0).residual_add(), ShapeError, "deploy::Model::residual_add");
  WEFT_DEPLOY_CHECK_FAILS(M(8, 3).select_token(3), ShapeError, "deploy::Model::select_token");
  WEFT_DEPLOY_CHECK_FAILS(M(8, 2).patchify(4, 2), ShapeError, "deploy::Model::patchify");   // two rows per sample
  WEFT_DEPLOY_CHECK_FAILS(M(16).patchify(4, 3), ShapeError, "deploy::Model::patchify");     // 3 does not divide 4
  WEFT_DEPLOY_CHECK_FAILS(M(8).prepend_token(nullptr), ValueError, "deploy::Model::prepend_token");

  M open(8, 3);
  open.residual_begin().qkr_attention(a);
  float x[24] = {}, y[24], ws[4096];
  REQUIRE(open.workspace_size(1) <= 4096);
  WEFT_DEPLOY_CHECK_FAILS(open.forward(x, 1, y, ws), ConfigError, "deploy::Model::forward");
  open.residual_add();
  open.forward(x, 1, y, ws);  // x = 0: V = bv = 0 and y = 0 + attention output (no biases: 0)
  CHECK(std::all_of(y, y + 24, [](float v) { return v == 0.0f; }));
}

}  // namespace weft_unit_deploy_vit_test
