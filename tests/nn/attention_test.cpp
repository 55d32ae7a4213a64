// Tests of weft/nn/attention.hpp and vit.hpp: attention against a loop reference, the
// transformer block's residual structure, patchify's pixel layout, the tiny ViT's size and
// gradients, and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/nn/attention.hpp"
#include "weft/nn/vit.hpp"

namespace weft_unit_nn_attention_test {

using namespace weft;
using weft::nn_test::contract;
using weft::nn_test::param_grad_check;

namespace {

/// softmax(Q_h K_h^T / sqrt(d)) V_h for every sample and head, with plain loops in double.
Tensor<double> attention_reference(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                                   index_t H) {
  const index_t B = q.dim(0), N = q.dim(1), D = q.dim(2), d = D / H;
  Tensor<double> out(q.shape());
  std::vector<double> s(static_cast<std::size_t>(N));
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t i = 0; i < N; ++i) {
        double mx = -1e300;
        for (index_t j = 0; j < N; ++j) {
          double dot = 0;
          for (index_t c = 0; c < d; ++c) dot += q(b, i, h * d + c) * k(b, j, h * d + c);
          s[std::size_t(j)] = dot / std::sqrt(double(d));
          mx = std::max(mx, s[std::size_t(j)]);
        }
        double z = 0;
        for (auto& e : s) z += (e = std::exp(e - mx));
        for (index_t c = 0; c < d; ++c) {
          double acc = 0;
          for (index_t j = 0; j < N; ++j) acc += s[std::size_t(j)] / z * v(b, j, h * d + c);
          out(b, i, h * d + c) = acc;
        }
      }
  return out;
}

/// x W^T + b over the last axis, with loops.
Tensor<double> affine_reference(const Tensor<double>& x, const nn::Linear<double>& l) {
  const index_t in = l.weight.shape()[1], out = l.weight.shape()[0], rows = x.numel() / in;
  Tensor<double> y(x.shape().with(-1, out));
  for (index_t r = 0; r < rows; ++r)
    for (index_t o = 0; o < out; ++o) {
      double acc = l.has_bias() ? l.bias.value()(o) : 0.0;
      for (index_t i = 0; i < in; ++i) acc += x.flat(r * in + i) * l.weight.value()(o, i);
      y.flat(r * out + o) = acc;
    }
  return y;
}

template <class T>
void zero_module(nn::Module<T>& m) {
  for (auto& p : m.parameters()) p.value().set_zero();
}

}  // namespace

TEST_CASE("nn/attention: attention_core matches a per-sample, per-head reference") {
  Rng rng(1);
  for (index_t H : {1, 2, 3}) {
    CAPTURE(H);
    const Tensor<double> q = test::randn<double>({2, 4, 6}, rng), k = test::randn<double>({2, 4, 6}, rng),
                         v = test::randn<double>({2, 4, 6}, rng);
    Tape<double> tape;
    Var<double> o = nn::attention_core(tape.constant(q), tape.constant(k), tape.constant(v), H);
    CHECK(o.shape() == Shape{2, 4, 6});
    WEFT_CHECK_CLOSE(o.value(), attention_reference(q, k, v, H), 1e-12);
  }
  // float agrees with the double reference to float precision
  const Tensor<double> q = test::randn<double>({3, 5, 8}, rng), k = test::randn<double>({3, 5, 8}, rng),
                       v = test::randn<double>({3, 5, 8}, rng);
  Tape<float> tf;
  Var<float> of = nn::attention_core(tf.constant(q.cast<float>()), tf.constant(k.cast<float>()),
                                     tf.constant(v.cast<float>()), index_t(4));
  WEFT_CHECK_CLOSE(of.value().cast<double>(), attention_reference(q, k, v, 4), 1e-5);
}

TEST_CASE("nn/attention: attention_core gradients of q, k and v") {
  Rng rng(2);
  const Tensor<double> q = test::randn<double>({2, 3, 4}, rng), k = test::randn<double>({2, 3, 4}, rng),
                       v = test::randn<double>({2, 3, 4}, rng);
  WEFT_CHECK_GRAD(grad_check(
      [](Tape<double>&, const std::vector<Var<double>>& x) { return nn::attention_core(x[0], x[1], x[2], index_t(2)); },
      {q, k, v}));
}

TEST_CASE("nn/attention: MultiHeadAttention forward equals the reference with its projections") {
  Rng rng(3);
  nn::MultiHeadAttention<double> mha(6, 3, rng);
  CHECK(mha.heads() == 3);
  CHECK(mha.dim() == 6);
  CHECK(mha.head_dim() == 2);
  CHECK(mha.num_parameters() == 4 * (36 + 6));
  const Tensor<double> x = test::randn<double>({2, 5, 6}, rng);
  Tape<double> tape;
  Var<double> y = mha(tape.constant(x));
  CHECK(y.shape() == Shape{2, 5, 6});
  const Tensor<double> ref = affine_reference(
      attention_reference(affine_reference(x, mha.q_proj), affine_reference(x, mha.k_proj),
                          affine_reference(x, mha.v_proj), 3),
      mha.out_proj);
  WEFT_CHECK_CLOSE(y.value(), ref, 1e-12);

  // without biases
  nn::MultiHeadAttention<double> nb(6, 2, rng, false);
  CHECK(nb.num_parameters() == 4 * 36);
  Tape<double> t2;
  const Tensor<double> ref2 = affine_reference(
      attention_reference(affine_reference(x, nb.q_proj), affine_reference(x, nb.k_proj),
                          affine_reference(x, nb.v_proj), 2),
      nb.out_proj);
  WEFT_CHECK_CLOSE(nb(t2.constant(x)).value(), ref2, 1e-12);
}

TEST_CASE("nn/attention: MultiHeadAttention gradients of parameters and input (float64)") {
  Rng rng(4);
  nn::MultiHeadAttention<double> mha(4, 2, rng);
  const Tensor<double> x = test::randn<double>({2, 3, 4}, rng);
  const Tensor<double> R = test::randn<double>({2, 3, 4}, rng);
  WEFT_CHECK_GRAD(param_grad_check(mha.parameters(), [&](Tape<double>& t) { return contract(mha(t.constant(x)), R); }));
  WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return mha(v[0]); }, {x}));
  // the same computation written with the functional ops and every weight as an input
  std::vector<Tensor<double>> inputs = {x};
  for (auto& p : mha.parameters()) inputs.push_back(p.value().clone());
  WEFT_CHECK_GRAD(grad_check(
      [](Tape<double>&, const std::vector<Var<double>>& v) {
        return linear(nn::attention_core(linear(v[0], v[1], v[2]), linear(v[0], v[3], v[4]), linear(v[0], v[5], v[6]),
                                         index_t(2)),
                      v[7], v[8]);
      },
      inputs));
}

TEST_CASE("nn/attention: TransformerBlock is pre-LN with two residual branches") {
  Rng rng(5);
  const Tensor<double> x = test::randn<double>({2, 3, 4}, rng);
  SUBCASE("attention and MLP zeroed (biases too): the block is the identity") {
    nn::TransformerBlock<double> block(4, 2, 2, rng);
    zero_module(block.attn);
    zero_module(block.mlp);
    Tape<double> tape;
    CHECK(test::identical(block(tape.constant(x)).value(), x));
  }
  SUBCASE("attention zeroed: y = x + mlp(ln2(x))") {
    nn::TransformerBlock<double> block(4, 2, 2, rng);
    zero_module(block.attn);
    Tape<double> tape;
    Var<double> xv = tape.constant(x);
    Tensor<double> ref = (xv + block.mlp(block.ln2(xv))).value();
    WEFT_CHECK_CLOSE(block(xv).value(), ref, 1e-14);
    CHECK_FALSE(test::identical(ref, x));
  }
  SUBCASE("MLP zeroed: y = x + attn(ln1(x))") {
    nn::TransformerBlock<double> block(4, 2, 2, rng);
    zero_module(block.mlp);
    block.ln1.gamma.value() = test::randn<double>({4}, rng);
    Tape<double> tape;
    Var<double> xv = tape.constant(x);
    Tensor<double> ref = (xv + block.attn(block.ln1(xv))).value();
    WEFT_CHECK_CLOSE(block(xv).value(), ref, 1e-14);
  }
  SUBCASE("the MLP is D -> ratio D -> D with GELU") {
    nn::TransformerBlock<double> block(4, 2, 3, rng);
    REQUIRE(block.mlp.layers.size() == 2);
    CHECK(block.mlp.layers[0].weight.shape() == Shape{12, 4});
    CHECK(block.mlp.layers[1].weight.shape() == Shape{4, 12});
    CHECK(block.mlp.activation == nn::Activation::gelu);
  }
  SUBCASE("gradients of parameters and input") {
    nn::TransformerBlock<double> block(4, 2, 2, rng);
    for (auto& p : block.parameters()) p.value() = test::randn<double>(p.shape(), rng, 0.0, 0.5);
    const Tensor<double> R = test::randn<double>({2, 3, 4}, rng);
    WEFT_CHECK_GRAD(
        param_grad_check(block.parameters(), [&](Tape<double>& t) { return contract(block(t.constant(x)), R); }));
    WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return block(v[0]); }, {x}));
  }
}

TEST_CASE("nn/vit: patchify maps pixel (r, c) to patch (r/p)(S/p) + c/p, position (r%p)p + c%p") {
  Rng rng(6);
  for (index_t p : {1, 2, 3, 6}) {
    CAPTURE(p);
    const index_t S = 6, B = 2, g = S / p;
    const Tensor<double> img = test::randn<double>({B, S * S}, rng);
    Tape<double> tape;
    Var<double> iv = tape.variable(img);
    Var<double> pt = nn::patchify(iv, S, p);
    REQUIRE(pt.shape() == Shape{B, g * g, p * p});
    Tensor<double> ref(pt.shape());
    for (index_t n = 0; n < B; ++n)
      for (index_t r = 0; r < S; ++r)
        for (index_t c = 0; c < S; ++c) ref(n, (r / p) * g + c / p, (r % p) * p + c % p) = img(n, r * S + c);
    CHECK(test::identical(pt.value(), ref));

    // the gradient is the inverse permutation of the upstream gradient
    Tensor<double> seed(pt.shape());
    for (index_t i = 0; i < seed.numel(); ++i) seed.flat(i) = double(i + 1);
    tape.backward(pt, seed);
    const Tensor<double>& gi = iv.grad();
    for (index_t n = 0; n < B; ++n)
      for (index_t r = 0; r < S; ++r)
        for (index_t c = 0; c < S; ++c) CHECK(gi(n, r * S + c) == seed(n, (r / p) * g + c / p, (r % p) * p + c % p));
    std::vector<double> sorted(gi.begin(), gi.end());
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 0; i < sorted.size(); ++i) CHECK(sorted[i] == double(i + 1));
  }
}

TEST_CASE("nn/vit: TinyViT output shape and parameter count of the default config") {
  Rng rng(7);
  nn::ViTConfig c;
  nn::TinyViT<float> vit(c, rng);
  // by hand, for image 8, patch 2, dim 32, depth 2, heads 4, mlp_ratio 2, classes 10:
  const index_t D = 32, tokens = (8 / 2) * (8 / 2) + 1;
  const index_t patch_embed = 2 * 2 * D + D;                        // 160
  const index_t cls = D, pos = tokens * D;                          // 32, 544
  const index_t ln = 2 * D;                                         // 64
  const index_t attn = 4 * (D * D + D);                             // 4224
  const index_t mlp = (D * 2 * D + 2 * D) + (2 * D * D + D);        // 4192
  const index_t block = ln + attn + ln + mlp;                       // 8544
  const index_t head = D * 10 + 10;                                 // 330
  const index_t total = patch_embed + cls + pos + 2 * block + ln + head;
  CHECK(total == 18218);
  CHECK(vit.num_parameters() == total);
  CHECK(vit.cls_token.shape() == Shape{1, 1, D});
  CHECK(vit.pos_embed.shape() == Shape{tokens, D});
  CHECK(vit.blocks.size() == 2);

  auto np = vit.named_parameters();
  CHECK(np.front().first == "patch_embed.weight");
  CHECK(np[2].first == "cls_token");
  CHECK(np[3].first == "pos_embed");
  CHECK(np[4].first == "blocks.0.ln1.gamma");
  CHECK(np[6].first == "blocks.0.attn.q_proj.weight");
  CHECK(np.back().first == "head.bias");

  Tape<float> tape;
  const Tensor<float> x = test::randn<float>({3, 64}, rng);
  Var<float> y = vit(tape.constant(x));
  CHECK(y.shape() == Shape{3, 10});
  CHECK(y.value().all_finite());
  CHECK(vit.features(tape.constant(x)).shape() == Shape{3, tokens, D});
}

TEST_CASE("nn/vit: TinyViT gradients on a tiny config (float64)") {
  Rng rng(8);
  nn::ViTConfig c;
  c.image_size = 4;
  c.patch = 2;
  c.dim = 4;
  c.depth = 1;
  c.heads = 2;
  c.classes = 3;
  nn::TinyViT<double> vit(c, rng);
  // larger cls/pos values so that their gradients are well above the tolerance
  vit.cls_token.value() = test::randn<double>({1, 1, 4}, rng);
  vit.pos_embed.value() = test::randn<double>({5, 4}, rng);
  const Tensor<double> x = test::randn<double>({2, 16}, rng);
  const Tensor<double> R = test::randn<double>({2, 3}, rng);
  WEFT_CHECK_GRAD(param_grad_check(vit.parameters(), [&](Tape<double>& t) { return contract(vit(t.constant(x)), R); }));
  CHECK(vit.cls_token.grad().array().abs().sum() > 0);
  CHECK(vit.pos_embed.grad().array().abs().sum() > 0);
  WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return vit(v[0]); }, {x}));
  // class token broadcast over the batch: the gradient sums the per-sample contributions
  std::vector<int> labels = {0, 2};
  WEFT_CHECK_GRAD(
      param_grad_check({vit.cls_token}, [&](Tape<double>& t) { return cross_entropy(vit(t.constant(x)), labels); }));
}

TEST_CASE("nn/attention: bad configurations and input shapes are errors naming the function") {
  Rng rng(9);
  WEFT_NN_CHECK_FAILS(nn::MultiHeadAttention<double>(6, 4, rng), ShapeError, "nn::MultiHeadAttention");
  WEFT_NN_CHECK_FAILS(nn::MultiHeadAttention<double>(4, 0, rng), ShapeError, "nn::MultiHeadAttention");
  WEFT_NN_CHECK_FAILS(nn::MultiHeadAttention<double>(0, 1, rng), ShapeError, "nn::MultiHeadAttention");
  WEFT_NN_CHECK_FAILS(nn::TransformerBlock<double>(6, 4, 2, rng), ShapeError, "nn::MultiHeadAttention");
  WEFT_NN_CHECK_FAILS(nn::TransformerBlock<double>(4, 2, 0, rng), ValueError, "nn::TransformerBlock");

  Tape<double> tape;
  Var<double> q = tape.constant(test::randn<double>({2, 3, 6}, rng));
  Var<double> q4 = tape.constant(test::randn<double>({2, 4, 6}, rng));
  WEFT_NN_CHECK_FAILS(nn::attention_core(q, q, q, index_t(4)), ShapeError, "nn::attention_core");
  WEFT_NN_CHECK_FAILS(nn::attention_core(q, q, q, index_t(0)), ShapeError, "nn::attention_core");
  WEFT_NN_CHECK_FAILS(nn::attention_core(q, q4, q, index_t(2)), ShapeError, "nn::attention_core");
  Var<double> flat = tape.constant(test::randn<double>({3, 6}, rng));
  WEFT_NN_CHECK_FAILS(nn::attention_core(flat, flat, flat, index_t(2)), ShapeError, "nn::attention_core");

  nn::MultiHeadAttention<double> mha(6, 2, rng);
  WEFT_NN_CHECK_FAILS(mha(flat), ShapeError, "nn::MultiHeadAttention::forward");
  WEFT_NN_CHECK_FAILS(mha(tape.constant(test::randn<double>({2, 3, 4}, rng))), ShapeError,
                      "nn::MultiHeadAttention::forward");
  nn::MultiHeadAttention<double> empty;
  WEFT_NN_CHECK_FAILS(empty(q), ConfigError, "nn::MultiHeadAttention::forward");
  nn::TransformerBlock<double> empty_block;
  CHECK_THROWS_AS(empty_block(q), ConfigError);
}

TEST_CASE("nn/vit: bad configurations and input shapes are errors naming the function") {
  Rng rng(10);
  Tape<double> tape;
  Var<double> img = tape.constant(test::randn<double>({2, 16}, rng));
  WEFT_NN_CHECK_FAILS(nn::patchify(img, index_t(4), index_t(3)), ShapeError, "nn::patchify");
  WEFT_NN_CHECK_FAILS(nn::patchify(img, index_t(4), index_t(0)), ShapeError, "nn::patchify");
  WEFT_NN_CHECK_FAILS(nn::patchify(img, index_t(5), index_t(1)), ShapeError, "nn::patchify");
  WEFT_NN_CHECK_FAILS(nn::patchify(tape.constant(test::randn<double>({2, 4, 4}, rng)), index_t(4), index_t(2)),
                      ShapeError, "nn::patchify");

  nn::ViTConfig c;
  c.image_size = 4;
  c.patch = 3;
  WEFT_NN_CHECK_FAILS(nn::TinyViT<double>(c, rng), ShapeError, "nn::TinyViT");
  c.patch = 2;
  c.dim = 6;
  c.heads = 4;
  WEFT_NN_CHECK_FAILS(nn::TinyViT<double>(c, rng), ShapeError, "nn::TinyViT");
  c.heads = 2;
  c.classes = 0;
  WEFT_NN_CHECK_FAILS(nn::TinyViT<double>(c, rng), ValueError, "nn::TinyViT");
  c.classes = 3;
  c.depth = -1;
  WEFT_NN_CHECK_FAILS(nn::TinyViT<double>(c, rng), ValueError, "nn::TinyViT");
  c.depth = 0;
  nn::TinyViT<double> vit(c, rng);  // depth 0 is allowed: embed, norm, head
  CHECK(vit.blocks.empty());
  CHECK(vit(img).shape() == Shape{2, 3});
  WEFT_NN_CHECK_FAILS(vit(tape.constant(test::randn<double>({2, 15}, rng))), ShapeError, "nn::TinyViT::forward");
  WEFT_NN_CHECK_FAILS(vit(tape.constant(test::randn<double>({16}, rng))), ShapeError, "nn::TinyViT::forward");
  nn::TinyViT<double> empty;
  WEFT_NN_CHECK_FAILS(empty(img), ConfigError, "nn::TinyViT::forward");
}

}  // namespace weft_unit_nn_attention_test
