// Tests of the workflow QAT -> quant::export_weights -> deploy::pack -> deploy kernels on real
// trained models: a 2-bit StatsQ and a 4-bit LSQ MLP trained a few Adam steps on the digits,
// every layer exported and packed; the packed logits equal the QAT model's eval logits to 1e-6
// relative and the predictions are identical. Per layer, the packed product equals
// quant::quantized_linear and x Q(W)^T, and pack is lossless.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "deploy_test_util.hpp"
#include "weft/core/data.hpp"
#include "weft/deploy/from_quant.hpp"
#include "weft/deploy/kernels.hpp"
#include "weft/deploy/linear.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"
#include "weft/quant/wrap.hpp"

namespace weft_unit_deploy_qat_test {

using namespace weft;

/// Trains `mlp` (quantisers attached) `steps` Adam steps on batches of 64 digits rows.
void train(nn::MLP<float>& mlp, const Dataset<float>& d, int steps, Rng& rng) {
  nn::AdamOptions ao;
  ao.lr = 3e-3;
  nn::Adam<float> opt(mlp.parameters(), ao);
  Tape<float> t;
  std::vector<int> labels;
  for (int s = 0; s < steps; ++s) {
    std::vector<index_t> rows(64);
    for (auto& r : rows) r = index_t(rng.uniform(0.0, double(d.size()))) % d.size();
    t.reset();
    opt.zero_grad();
    t.backward(cross_entropy(mlp(nn::batch_rows(t, d.x, rows)), nn::batch_labels(d.y, rows, labels)));
    opt.step();
  }
}

/// The packed forward of the MLP: packed linear layers with ReLU between.
template <int Bits, int GS>
Tensor<float> packed_forward(const std::vector<deploy::PackedWeights<Bits, GS>>& layers, nn::MLP<float>& mlp,
                             const Tensor<float>& x) {
  Tensor<float> h = x;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    h = deploy::linear(layers[i].view(), h, &mlp.layers[i].bias.value());
    if (i + 1 < layers.size())
      for (auto& v : h) v = std::max(v, 0.0f);
  }
  return h;
}

/// max_i |a_i - e_i| / max(1, max_j |e_j|) over each row, maximised over rows.
double max_row_relative(const Tensor<float>& a, const Tensor<float>& e) {
  double worst = 0;
  const index_t n = e.dim(0), c = e.dim(1);
  for (index_t i = 0; i < n; ++i) {
    double m = 1, d = 0;
    for (index_t j = 0; j < c; ++j) m = std::max(m, std::abs(double(e(i, j))));
    for (index_t j = 0; j < c; ++j) d = std::max(d, std::abs(double(a(i, j)) - double(e(i, j))));
    worst = std::max(worst, d / m);
  }
  return worst;
}

template <int Bits, int GS>
std::size_t check_deployed(nn::MLP<float>& mlp, const quant::QuantAttachment<float>& att, const Dataset<float>& test) {
  std::vector<deploy::PackedWeights<Bits, GS>> packed;
  REQUIRE(att.layers.size() == mlp.layers.size());
  for (auto& q : att.layers) {
    nn::Linear<float>& l = *q.layer;
    const quant::QuantizedWeights<float> qw = quant::export_weights(q);
    packed.push_back(deploy::pack<Bits, GS>(qw));
    // lossless, and per layer equal to the integer reference and to x Q(W)^T
    CHECK(packed.back().unpack_codes() == qw.codes);
    const Tensor<float> wq = qw.dequantize();
    const auto wd = packed.back().dequantize();
    CHECK(std::memcmp(wq.data(), wd.data(), sizeof(float) * wd.size()) == 0);
    Rng rng(5);
    const Tensor<float> x = test::rand_uniform<float>(Shape{9, l.in_features()}, rng, -1, 1);
    const Tensor<float> y = deploy::linear(packed.back().view(), x, &l.bias.value());
    WEFT_CHECK_CLOSE(y, quant::quantized_linear(qw, x, &l.bias.value()), 1e-5);
    Tape<float> t;
    no_grad ng;
    WEFT_CHECK_CLOSE(y, l(t.constant(x)).value(), 1e-5);
  }
  Tape<float> t;
  no_grad ng;
  const Tensor<float> qat = mlp(t.constant(test.x)).value();
  const Tensor<float> dep = packed_forward(packed, mlp, test.x);
  const double err = max_row_relative(dep, qat);
  MESSAGE("bits ", Bits, ", group ", GS, ": packed vs QAT logits, max row-relative error ", err);
  CHECK(err <= 1e-6);
  CHECK(nn::argmax_rows(dep) == nn::argmax_rows(qat));
  std::size_t bytes = 0;
  for (const auto& p : packed) bytes += p.bytes();
  return bytes;
}

Dataset<float> scaled_digits(Dataset<float> d) {
  for (auto& v : d.x) v /= 16.0f;
  return d;
}

TEST_CASE("deploy/qat: a trained 2-bit StatsQ MLP, packed, gives the QAT eval logits and predictions") {
  auto [train_set, test_set] = split_mod(scaled_digits(load_digits<float>()), 5, 0);
  Rng rng(31);
  nn::MLP<float> mlp({64, 96, 10}, rng);
  quant::StatsQOptions so;
  so.bits = 2;
  const auto att = quant::quantize_linears<float>(mlp, quant::statsq_factory<float>(so));
  train(mlp, train_set, 40, rng);
  // 96 rows x (4 words + 1 step) + 10 rows x (6 words + 1 step), 4 B each: 2.48 bits per weight
  CHECK(check_deployed<2, 0>(mlp, att, test_set) == 96 * 5 * 4 + 10 * 7 * 4);
  check_deployed<2, 32>(mlp, att, test_set);  // per-row steps repeated per group of 32
  check_deployed<2, 64>(mlp, att, test_set);
}

TEST_CASE("deploy/qat: a trained 4-bit LSQ MLP, packed, gives the QAT eval logits and predictions") {
  auto [train_set, test_set] = split_mod(scaled_digits(load_digits<float>()), 5, 0);
  Rng rng(32);
  nn::MLP<float> mlp({64, 96, 10}, rng);
  quant::LsqOptions lo;
  lo.bits = 4;
  const auto att = quant::quantize_linears<float>(mlp, quant::lsq_factory<float>(lo));
  train(mlp, train_set, 40, rng);
  check_deployed<4, 0>(mlp, att, test_set);
  check_deployed<4, 128>(mlp, att, test_set);
}

}  // namespace weft_unit_deploy_qat_test
