// Compositions of issue 16 (the small instances behind examples/compose_qlora.cpp): a frozen
// 2-bit StatsQ base with a LoRA or BoneShared side path. Checked: the model's output is the
// product from the exported integer codes plus the adapter's path; training the adapter moves
// neither the stored weights nor the codes; the trainable count is the adapter's (equal budget
// for BoneShared); and on a small shifted-teacher task the adapter on the 2-bit base closes at
// least half of the gap between the 2-bit base and the float base with the same adapter.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/peft.hpp"
#include "weft/quant/wrap.hpp"

namespace weft_unit_compose_qlora_test {

using namespace weft;

/// 2-bit StatsQ (per row) on every Linear of m; the exported codes of each layer.
template <class T>
std::vector<quant::QuantizedWeights<T>> quantize_2bit(nn::MLP<T>& m, quant::QuantAttachment<T>& att) {
  quant::StatsQOptions so;
  so.bits = 2;
  att = quant::quantize_linears(m, quant::statsq_factory<T>(so));
  std::vector<quant::QuantizedWeights<T>> out;
  for (auto& q : att.layers) out.push_back(quant::export_weights(q));
  return out;
}

template <class T>
T mse_loss_step(nn::MLP<T>& m, nn::Optimizer<T>& opt, const Tensor<T>& x, const Tensor<T>& y) {
  opt.zero_grad();
  Tape<T> t;
  Var<T> d = m(t.constant(x)) - t.constant(y);
  Var<T> loss = sum(d * d) * T(1.0 / double(x.dim(0)));
  const T v = loss.value().flat(0);
  t.backward(loss);
  opt.step();
  return v;
}

template <class T>
T mse_of(nn::MLP<T>& m, const Tensor<T>& x, const Tensor<T>& y) {
  Tape<T> t;
  no_grad ng;
  const Tensor<T> p = m(t.constant(x)).value();
  return T((p.array() - y.array()).square().sum() / double(x.dim(0)));
}

/// The adapter's parameters after attaching it (kind 0: LoRA r 4, 1: BoneShared at LoRA's budget).
template <class T>
std::vector<Parameter<T>> attach(nn::MLP<T>& m, int kind, Rng& rng) {
  if (kind == 0) {
    peft::LoraOptions lo;
    lo.r = 4;
    lo.alpha = 4;
    auto att = peft::attach_lora(m, lo, rng);
    return att.parameters();
  }
  std::vector<peft::LayerShape> shapes;
  for (auto& l : m.layers) shapes.push_back({l.in_features(), l.out_features()});
  peft::BoneOptions bo;
  bo.r = peft::equal_budget_rank(shapes, peft::Method::lora, 4, peft::Method::bone_shared);
  auto att = peft::attach_bone_shared(m, bo, rng);
  return att.parameters();
}

TEST_CASE_TEMPLATE("compose/qlora: a frozen 2-bit StatsQ base plus LoRA or BoneShared computes codes + side path",
                   T, float, double) {
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  for (int kind = 0; kind < 2; ++kind) {
    CAPTURE(kind);
    Rng rng(1600 + std::uint64_t(kind));
    nn::MLP<T> m({12, 20, 6}, rng, nn::Activation::tanh);
    quant::QuantAttachment<T> att;
    const auto codes = quantize_2bit(m, att);
    std::vector<Tensor<T>> stored;
    for (std::size_t i = 0; i < m.layers.size(); ++i) {
      stored.push_back(m.layers[i].weight.value().clone());
      // the codes are what the product uses
      CHECK(test::identical(quant::export_weights(att.layers[i]).dequantize(), m.layers[i].folded_weight()));
    }
    const std::vector<Parameter<T>> params = attach(m, kind, rng);
    const index_t trainable = peft::freeze_base(m);
    index_t n = 0;
    for (auto& p : params) n += p.numel();
    CHECK(trainable == n);  // only the adapter trains: weights and biases of the base are frozen
    std::vector<peft::LayerShape> shapes = {{12, 20}, {20, 6}};
    if (kind == 0) CHECK(trainable == peft::param_count(shapes, peft::Method::lora, 4));
    else CHECK(std::abs(double(trainable - peft::param_count(shapes, peft::Method::lora, 4))) <= 26.0);  // r out steps

    nn::AdamOptions ao;
    ao.lr = 1e-2;
    nn::Adam<T> opt(params, ao);
    const Tensor<T> x = test::randn<T>(Shape{16, 12}, rng), y = test::randn<T>(Shape{16, 6}, rng);
    const T first = mse_loss_step(m, opt, x, y);
    T last = first;
    for (int s = 0; s < 30; ++s) last = mse_loss_step(m, opt, x, y);
    CHECK(last < T(0.9) * first);  // the adapter learns on the quantised base

    for (std::size_t i = 0; i < m.layers.size(); ++i) {
      nn::Linear<T>& l = m.layers[i];
      CHECK(test::identical(l.weight.value(), stored[i]));  // the float shadow never moved
      const auto now = quant::export_weights(att.layers[i]);
      CHECK(now.codes == codes[i].codes);  // nor did the codes and steps
      CHECK(test::same_bits(now.step, codes[i].step));
      // the layer's output = the integer product from the codes (+ bias) + the adapter's path
      REQUIRE(l.side_paths().size() == 1);
      const Tensor<T> xi = test::randn<T>(Shape{5, l.in_features()}, rng);
      Tape<T> t;
      no_grad ng;
      const Tensor<T> got = l(t.constant(xi)).value();
      const Tensor<T> side = l.side_paths()[0]->forward(t.constant(xi)).value();
      Tensor<T> expect = quant::quantized_linear(codes[i], xi, &l.bias.value());
      expect.array() += side.array();
      CHECK(side.array().abs().maxCoeff() > T(1e-3));  // the trained adapter contributes
      WEFT_CHECK_CLOSE(got, expect, tol);
    }
  }
}

TEST_CASE("compose/qlora: on a small shifted teacher, LoRA on the 2-bit base recovers >= half the gap to float + LoRA") {
  // teacher 8-16-4 (tanh, no biases), shifted by a rank-2 change per layer; student pretrained on
  // the teacher, then 2-bit StatsQ after training, frozen; LoRA r 2 fine-tuned on the shifted one
  Rng rng(1616);
  auto teacher = [](const std::vector<Tensor<double>>& w, const Tensor<double>& x) {
    const Eigen::MatrixXd h = (x.matrix() * w[0].matrix().transpose()).array().tanh().matrix();
    return Tensor<double>::from(Eigen::MatrixXd(h * w[1].matrix().transpose()));
  };
  std::vector<Tensor<double>> t1 = {test::randn<double>(Shape{16, 8}, rng, 0, 1 / std::sqrt(8.0)),
                                    test::randn<double>(Shape{4, 16}, rng, 0, 1 / std::sqrt(16.0))};
  std::vector<Tensor<double>> t2;
  for (auto& w : t1) {
    const Tensor<double> u = test::randn<double>(Shape{w.dim(0), 2}, rng), v = test::randn<double>(Shape{2, w.dim(1)}, rng);
    Tensor<double> d(w.shape());
    d.matrix() = u.matrix() * v.matrix();
    Tensor<double> s = w.clone();
    s.array() += 0.5 * (w.matrix().norm() / d.matrix().norm()) * d.array();
    t2.push_back(std::move(s));
  }
  nn::MLP<double> base({8, 16, 4}, rng, nn::Activation::tanh, false);
  {
    nn::AdamOptions ao;
    ao.lr = 1e-2;
    nn::Adam<double> opt(base.parameters(), ao);
    for (int s = 0; s < 300; ++s) {
      const Tensor<double> x = test::randn<double>(Shape{32, 8}, rng);
      mse_loss_step(base, opt, x, teacher(t1, x));
    }
  }
  const Tensor<double> bx = test::randn<double>(Shape{256, 8}, rng), by = teacher(t2, bx);
  const Tensor<double> tx = test::randn<double>(Shape{512, 8}, rng), ty = teacher(t2, tx);
  double quant_base = 0, adapted[2] = {0, 0};
  for (int quantized = 0; quantized < 2; ++quantized) {
    Rng arng(77);
    nn::MLP<double> m({8, 16, 4}, arng, nn::Activation::tanh, false);
    nn::copy_parameters(base, m);
    if (quantized) {
      quant::QuantAttachment<double> att;
      (void)quantize_2bit(m, att);
      quant_base = mse_of(m, tx, ty);
    }
    peft::LoraOptions lo;
    lo.r = 2;
    lo.alpha = 2;
    auto att = peft::attach_lora(m, lo, arng);
    peft::freeze_base(m);
    nn::AdamOptions ao;
    ao.lr = 1e-2;
    nn::Adam<double> opt(att.parameters(), ao);
    for (int s = 0; s < 200; ++s) mse_loss_step(m, opt, bx, by);
    adapted[quantized] = mse_of(m, tx, ty);
  }
  MESSAGE("2-bit base ", quant_base, ", 2-bit + LoRA ", adapted[1], ", float + LoRA ", adapted[0]);
  REQUIRE(quant_base > adapted[0]);  // there is a gap to recover
  const double recovered = (quant_base - adapted[1]) / (quant_base - adapted[0]);
  CHECK(recovered >= 0.5);
}

}  // namespace weft_unit_compose_qlora_test
