// Tests of weft/peft/lora.hpp for plain LoRA and rsLoRA: initialisation (exact no-op at step 0),
// the dense-delta form of the forward, merge / unmerge identities, gradients against central
// differences (float64), the frozen base receiving no gradient, dropout, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "peft/peft_test_util.hpp"
#include "weft/nn/attention.hpp"
#include "weft/peft/merge.hpp"

namespace weft_unit_peft_lora_test {

using namespace weft;
using weft::nn_test::contract;
using weft::nn_test::param_grad_check;
using weft::peft_test::equal_values;
using weft::peft_test::forward_value;
using weft::peft_test::max_rel_diff;

namespace {
peft::LoraOptions lora_opts(index_t r, double alpha, peft::LoraInit init = peft::LoraInit::kaiming) {
  peft::LoraOptions o;
  o.r = r;
  o.alpha = alpha;
  o.init = init;
  return o;
}
}  // namespace

TEST_CASE("peft/lora: at init the adapted layer's output equals the base output bit for bit") {
  Rng rng(31);
  for (auto init : {peft::LoraInit::kaiming, peft::LoraInit::gaussian}) {
    nn::Linear<double> lin(12, 7, rng);
    const Tensor<double> x = test::randn<double>({9, 12}, rng);
    const Tensor<double> y0 = forward_value(lin, x);
    auto a = peft::add_lora(lin, lora_opts(4, 8, init), rng);
    CHECK(equal_values(forward_value(lin, x), y0));
    CHECK(a->B().value().array().abs().maxCoeff() == 0.0);
    CHECK(a->A().value().array().abs().maxCoeff() > 0.0);
  }
  nn::Linear<float> linf(12, 7, rng);  // float too
  const Tensor<float> xf = test::randn<float>({3, 12}, rng);
  const Tensor<float> yf = forward_value(linf, xf);
  peft::add_lora(linf, lora_opts(2, 16), rng);
  CHECK(equal_values(forward_value(linf, xf), yf));
}

TEST_CASE("peft/lora: kaiming and gaussian initialisations, alpha / r and rsLoRA alpha / sqrt(r)") {
  Rng rng(32);
  nn::Linear<double> lin(400, 300, rng);
  auto k = peft::add_lora(lin, lora_opts(16, 32), rng);
  const double bound = 1.0 / std::sqrt(400.0);
  CHECK(k->A().value().array().abs().maxCoeff() <= bound);
  CHECK(k->A().value().array().abs().maxCoeff() > 0.95 * bound);
  CHECK(k->scaling() == doctest::Approx(2.0));
  auto g = peft::add_lora(lin, lora_opts(16, 32, peft::LoraInit::gaussian), rng);
  const double var = g->A().value().array().square().mean();
  CHECK(std::sqrt(var) == doctest::Approx(1.0 / 16).epsilon(0.03));
  peft::LoraOptions rs = lora_opts(16, 32);
  rs.rslora = true;
  auto r = peft::add_lora(lin, rs, rng);
  CHECK(r->scaling() == doctest::Approx(32.0 / 4.0));
  CHECK(peft::lora_scaling(rs) == doctest::Approx(8.0));
  auto rnd = peft::add_lora(lin, lora_opts(16, 32, peft::LoraInit::random), rng);  // debug: B random too
  CHECK(rnd->B().value().array().abs().maxCoeff() > 0.0);
  CHECK(rnd->B().value().array().abs().maxCoeff() <= 0.25);  // U(-1/sqrt(r), 1/sqrt(r))
  CHECK(k->method() == "lora");
  CHECK(k->num_trainable() == 16 * (400 + 300));
}

TEST_CASE("peft/lora: forward = x W^T + b + s x A^T B^T; merged forward equals unmerged; round trip") {
  Rng rng(33);
  for (bool rslora : {false, true}) {
    nn::Linear<double> lin(10, 6, rng);
    const Tensor<double> w0 = lin.weight.value().clone();
    peft::LoraOptions o = lora_opts(3, 5);
    o.rslora = rslora;
    const peft::Attachment<double> att = peft::attach_lora(lin, o, rng);
    const auto& a = att.adapters[0].lora;
    a->B().value().copy_from(test::randn<double>({6, 3}, rng));
    const Tensor<double> x = test::randn<double>({8, 10}, rng);
    const double s = rslora ? 5.0 / std::sqrt(3.0) : 5.0 / 3.0;
    Tensor<double> dense = w0.clone();
    dense.matrix() += s * a->B().value().matrix() * a->A().value().matrix();
    const Tensor<double> y = forward_value(lin, x);
    WEFT_CHECK_CLOSE(y, peft_test::affine_ref(x, dense, lin.bias.value()), 1e-12);
    WEFT_CHECK_CLOSE(a->delta_weight(), Tensor<double>::from(dense.matrix() - w0.matrix()), 1e-13);

    CHECK(peft::merge(att) == 1);
    CHECK(a->merged());
    CHECK(a->in_weight());
    CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
    CHECK(max_rel_diff(lin.weight.value(), dense) <= 1e-12);
    CHECK(peft::unmerge(att) == 1);
    CHECK_FALSE(a->merged());
    CHECK(max_rel_diff(lin.weight.value(), w0) <= 1e-12);
    CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
  }
}

TEST_CASE("peft/lora: gradients of A, B and x against central differences; the frozen base gets none") {
  Rng rng(34);
  nn::Linear<double> lin(7, 5, rng);
  peft::LoraOptions o = lora_opts(3, 6);
  auto a = peft::add_lora(lin, o, rng);
  a->B().value().copy_from(test::randn<double>({5, 3}, rng));
  lin.weight.set_requires_grad(false);
  lin.bias.set_requires_grad(false);
  const Tensor<double> x = test::randn<double>({4, 7}, rng), R = test::randn<double>({4, 5}, rng);
  const auto res = param_grad_check({a->A(), a->B()}, [&](Tape<double>& t) { return contract(lin(t.constant(x)), R); },
                                    1e-6, 0.0);
  WEFT_CHECK_GRAD(res);
  CHECK(res.max_abs_error <= 1e-6);
  // dW0 is skipped by linear(): the frozen weight's gradient stays exactly zero
  CHECK(lin.weight.grad().array().abs().maxCoeff() == 0.0);
  CHECK(lin.bias.grad().array().abs().maxCoeff() == 0.0);
  WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return lin(v[0]); }, {x}));
  // a rank-3 input (an attention projection sees (batch, tokens, dim))
  const Tensor<double> x3 = test::randn<double>({2, 3, 7}, rng);
  WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return lin(v[0]); }, {x3}));
}

TEST_CASE("peft/lora: dropout only in training mode with gradients recorded") {
  Rng rng(35);
  nn::Linear<double> lin(20, 8, rng);
  peft::LoraOptions o = lora_opts(4, 4);
  o.dropout = 0.5;
  auto a = peft::add_lora(lin, o, rng);
  a->B().value().copy_from(test::randn<double>({8, 4}, rng));
  const Tensor<double> x = test::randn<double>({6, 20}, rng);
  const Tensor<double> clean = forward_value(lin, x);  // no_grad: no dropout
  Tensor<double> noisy;
  {
    Tape<double> t;
    noisy = lin(t.constant(x)).value().clone();
  }
  CHECK(max_rel_diff(noisy, clean) > 1e-3);
  a->set_training(false);
  {
    Tape<double> t;
    CHECK(equal_values(lin(t.constant(x)).value(), clean));
  }
  a->set_training(true);
  // gradients through the dropout mask: same mask per evaluation needs a fixed rng, so check
  // the formula instead: with p > 0 the gradient of A only sees kept inputs
  lin.weight.set_requires_grad(false);
  const Tensor<double> R = test::randn<double>({6, 8}, rng);
  a->A().zero_grad();
  Tape<double> t;
  t.backward(contract(lin(t.constant(x)), R));
  CHECK(a->A().grad().array().abs().maxCoeff() > 0);
}

TEST_CASE("peft/lora: bad input is rejected and leaves the layer unchanged") {
  Rng rng(36);
  nn::Linear<double> lin(6, 4, rng);
  test::Snapshot<double> snap({lin.weight.value(), lin.bias.value()});
  WEFT_NN_CHECK_FAILS(peft::add_lora(lin, lora_opts(0, 8), rng), ValueError, "peft::Lora");
  WEFT_NN_CHECK_FAILS(peft::add_lora(lin, lora_opts(5, 8), rng), ValueError, "peft::Lora");  // > min(6, 4)
  WEFT_NN_CHECK_FAILS(peft::add_lora(lin, lora_opts(5, 8, peft::LoraInit::pissa), rng), ValueError, "peft::Lora");
  WEFT_NN_CHECK_FAILS(peft::add_lora(lin, lora_opts(2, 0), rng), ValueError, "peft::Lora");
  peft::LoraOptions d = lora_opts(2, 2);
  d.dropout = 1.0;
  WEFT_NN_CHECK_FAILS(peft::add_lora(lin, d, rng), ValueError, "peft::Lora");
  CHECK(lin.side_paths().empty());
  CHECK(snap.unchanged());
  const peft::Attachment<double> att = peft::attach_lora(lin, lora_opts(2, 2), rng);
  const auto& a = att.adapters[0].lora;
  Tape<double> t;
  WEFT_NN_CHECK_FAILS(a->forward(t.constant(test::randn<double>({3, 5}, rng))), ShapeError, "peft::Lora::forward");
  // factors of the wrong shape
  WEFT_NN_CHECK_FAILS(peft::Lora<double>(lin.weight, Tensor<double>(Shape{2, 5}), Tensor<double>(Shape{4, 2}),
                                         lora_opts(2, 2), rng),
                      ShapeError, "peft::Lora");
  // unmerging what is not merged does nothing; merging twice merges once
  CHECK(peft::unmerge(att) == 0);
  CHECK(peft::merge(att) == 1);
  CHECK(peft::merge(att) == 0);
}

}  // namespace weft_unit_peft_lora_test
