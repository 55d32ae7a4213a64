// Tests of weft/nn/module.hpp, linear.hpp and layers.hpp: Linear, MLP, LayerNorm and the
// generic Module utilities (named parameters, freezing, modes, copies, errors).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/nn/attention.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/module.hpp"
#include "weft/nn/optim.hpp"

namespace weft_unit_nn_modules_test {

using namespace weft;
using weft::nn_test::contract;
using weft::nn_test::param_grad_check;

namespace {

/// y[r, o] = sum_i x[r, i] W[o, i] + b[o] in double, over the rows of x seen as (rows, in).
template <class T>
Tensor<double> linear_reference(const Tensor<T>& x, const Tensor<T>& w, const Tensor<T>* b) {
  const index_t in = w.dim(1), out = w.dim(0), rows = x.numel() / in;
  Tensor<double> y(x.shape().with(-1, out));
  for (index_t r = 0; r < rows; ++r)
    for (index_t o = 0; o < out; ++o) {
      double acc = b ? double(b->flat(o)) : 0.0;
      for (index_t i = 0; i < in; ++i) acc += double(x.flat(r * in + i)) * double(w(o, i));
      y.flat(r * out + o) = acc;
    }
  return y;
}

double act_reference(double x, nn::Activation a) {
  switch (a) {
    case nn::Activation::relu: return x > 0 ? x : 0.0;
    case nn::Activation::gelu: {
      const double k = std::sqrt(2.0 / 3.141592653589793);
      return 0.5 * x * (1 + std::tanh(k * (x + 0.044715 * x * x * x)));
    }
    case nn::Activation::tanh: return std::tanh(x);
    case nn::Activation::sigmoid: return 1 / (1 + std::exp(-x));
    default: return x;
  }
}

/// Two Linear children sharing one weight (tied layers): the weight must be listed once.
struct Tied : nn::Module<double> {
  nn::Linear<double> a, b;
  Tied(Rng& rng) : a(3, 3, rng), b(3, 3, rng) { b.weight = a.weight; }
  void visit(nn::Members<double>& m) override {
    m.child("a", a);
    m.child("b", b);
  }
};

}  // namespace

TEST_CASE_TEMPLATE("nn/linear: forward equals x W^T + b", T, float, double) {
  Rng rng(1);
  nn::Linear<T> lin(5, 3, rng);
  CHECK(lin.in_features() == 5);
  CHECK(lin.out_features() == 3);
  CHECK(lin.has_bias());
  CHECK(lin.weight.shape() == Shape{3, 5});
  CHECK(lin.bias.shape() == Shape{3});
  Tensor<T> x = test::randn<T>({4, 5}, rng);
  Tape<T> tape;
  Var<T> y = lin(tape.constant(x));
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  WEFT_CHECK_CLOSE(y.value().template cast<double>(), linear_reference(x, lin.weight.value(), &lin.bias.value()), tol);
}

TEST_CASE("nn/linear: default init lies within 1/sqrt(in) (PyTorch's nn.Linear)") {
  Rng rng(2);
  nn::Linear<double> lin(50, 40, rng);
  const double bound = 1 / std::sqrt(50.0);
  double wmax = 0, wsum = 0;
  for (double w : lin.weight.value()) {
    CHECK(std::abs(w) <= bound);
    wmax = std::max(wmax, std::abs(w));
    wsum += w;
  }
  for (double b : lin.bias.value()) CHECK(std::abs(b) <= bound);
  // uniform over the whole interval: the extremes are reached, the mean is near 0
  CHECK(wmax > 0.95 * bound);
  CHECK(std::abs(wsum / 2000) < 0.1 * bound);
  // the same seed gives the same layer, another seed another one
  Rng r1(2), r2(3);
  nn::Linear<double> same(50, 40, r1), other(50, 40, r2);
  CHECK(test::identical(same.weight.value(), lin.weight.value()));
  CHECK_FALSE(test::identical(other.weight.value(), lin.weight.value()));
}

TEST_CASE("nn/linear: without bias") {
  Rng rng(3);
  nn::Linear<double> lin(4, 2, rng, false);
  CHECK_FALSE(lin.has_bias());
  auto np = lin.named_parameters();
  REQUIRE(np.size() == 1);
  CHECK(np[0].first == "weight");
  CHECK(lin.num_parameters() == 8);
  Tensor<double> x = test::randn<double>({3, 4}, rng);
  Tape<double> tape;
  WEFT_CHECK_CLOSE(lin(tape.constant(x)).value(), linear_reference<double>(x, lin.weight.value(), nullptr), 1e-12);
}

TEST_CASE("nn/linear: rank-3 input applies to the last axis") {
  Rng rng(4);
  nn::Linear<double> lin(5, 4, rng);
  Tensor<double> x = test::randn<double>({2, 3, 5}, rng);
  Tape<double> tape;
  Var<double> y = lin(tape.constant(x));
  CHECK(y.shape() == Shape{2, 3, 4});
  WEFT_CHECK_CLOSE(y.value(), linear_reference(x, lin.weight.value(), &lin.bias.value()), 1e-12);
}

TEST_CASE("nn/linear: gradients of weight, bias and input match finite differences") {
  Rng rng(5);
  nn::Linear<double> lin(4, 3, rng);
  const Tensor<double> x = test::randn<double>({2, 3, 4}, rng);
  const Tensor<double> R = test::randn<double>({2, 3, 3}, rng);
  WEFT_CHECK_GRAD(param_grad_check(lin.parameters(), [&](Tape<double>& t) { return contract(lin(t.constant(x)), R); }));
  // the analytic parameter gradients equal the closed forms G^T x and column sums of G
  Tensor<double> gw(Shape{3, 4}), gb(Shape{3});
  for (index_t r = 0; r < 6; ++r)
    for (index_t o = 0; o < 3; ++o) {
      gb(o) += R.flat(r * 3 + o);
      for (index_t i = 0; i < 4; ++i) gw(o, i) += R.flat(r * 3 + o) * x.flat(r * 4 + i);
    }
  WEFT_CHECK_CLOSE(lin.weight.grad(), gw, 1e-12);
  WEFT_CHECK_CLOSE(lin.bias.grad(), gb, 1e-12);
  // the input gradient through the module
  WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return lin(v[0]); }, {x}));
  // and the functional form with everything as inputs
  WEFT_CHECK_GRAD(grad_check([](Tape<double>&, const std::vector<Var<double>>& v) { return linear(v[0], v[1], v[2]); },
                             {x, lin.weight.value(), lin.bias.value()}));
}

TEST_CASE("nn/mlp: layer sizes, activations between layers, none after the last") {
  Rng rng(6);
  nn::MLP<double> mlp({3, 5, 4, 2}, rng);
  REQUIRE(mlp.layers.size() == 3);
  CHECK(mlp.layers[0].weight.shape() == Shape{5, 3});
  CHECK(mlp.layers[1].weight.shape() == Shape{4, 5});
  CHECK(mlp.layers[2].weight.shape() == Shape{2, 4});
  CHECK(mlp.activation == nn::Activation::relu);

  const Tensor<double> x = test::randn<double>({6, 3}, rng, 0.0, 2.0);
  for (nn::Activation a : {nn::Activation::relu, nn::Activation::gelu, nn::Activation::tanh, nn::Activation::sigmoid,
                           nn::Activation::identity}) {
    CAPTURE(int(a));
    mlp.activation = a;
    Tensor<double> h = x;
    for (std::size_t l = 0; l < 3; ++l) {
      h = linear_reference(h, mlp.layers[l].weight.value(), &mlp.layers[l].bias.value());
      if (l < 2)
        for (auto& e : h) e = act_reference(e, a);
    }
    Tape<double> tape;
    WEFT_CHECK_CLOSE(mlp(tape.constant(x)).value(), h, 1e-12);
  }
  // the last layer has no activation: with relu the output has negative entries
  mlp.activation = nn::Activation::relu;
  Tape<double> tape;
  Tensor<double> y = mlp(tape.constant(test::randn<double>({64, 3}, rng))).value();
  CHECK(y.array().minCoeff() < 0);
}

TEST_CASE("nn/mlp: 64-128-10 has 9610 parameters") {
  Rng rng(7);
  nn::MLP<float> mlp({64, 128, 10}, rng);
  CHECK(mlp.num_parameters() == 64 * 128 + 128 + 128 * 10 + 10);
  CHECK(mlp.num_parameters() == 9610);
  CHECK(mlp.parameters().size() == 4);
  nn::MLP<float> nobias({64, 128, 10}, rng, nn::Activation::gelu, false);
  CHECK(nobias.num_parameters() == 9472);
}

TEST_CASE("nn/mlp: gradients through every layer") {
  Rng rng(8);
  nn::MLP<double> mlp({3, 4, 2}, rng, nn::Activation::tanh);
  const Tensor<double> x = test::randn<double>({5, 3}, rng);
  const Tensor<double> R = test::randn<double>({5, 2}, rng);
  WEFT_CHECK_GRAD(param_grad_check(mlp.parameters(), [&](Tape<double>& t) { return contract(mlp(t.constant(x)), R); }));
  WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return mlp(v[0]); }, {x}));
}

TEST_CASE("nn/layer_norm: gamma = 1 and beta = 0 at init; normalises the last axis") {
  nn::LayerNorm<double> ln(6);
  CHECK(ln.dim() == 6);
  CHECK(test::identical(ln.gamma.value(), Tensor<double>::ones(Shape{6})));
  CHECK(test::identical(ln.beta.value(), Tensor<double>(Shape{6})));
  auto np = ln.named_parameters();
  REQUIRE(np.size() == 2);
  CHECK(np[0].first == "gamma");
  CHECK(np[1].first == "beta");

  Rng rng(9);
  const Tensor<double> x = test::randn<double>({2, 3, 6}, rng, 1.0, 3.0);
  ln.gamma.value() = test::randn<double>({6}, rng);
  ln.beta.value() = test::randn<double>({6}, rng);
  Tape<double> tape;
  Tensor<double> y = ln(tape.constant(x)).value();
  Tensor<double> ref(x.shape());
  for (index_t r = 0; r < 6; ++r) {
    double mean = 0, var = 0;
    for (index_t j = 0; j < 6; ++j) mean += x.flat(r * 6 + j) / 6;
    for (index_t j = 0; j < 6; ++j) var += (x.flat(r * 6 + j) - mean) * (x.flat(r * 6 + j) - mean) / 6;
    for (index_t j = 0; j < 6; ++j)
      ref.flat(r * 6 + j) = (x.flat(r * 6 + j) - mean) / std::sqrt(var + 1e-5) * ln.gamma.value()(j) + ln.beta.value()(j);
  }
  WEFT_CHECK_CLOSE(y, ref, 1e-12);
}

TEST_CASE("nn/layer_norm: gradients of gamma, beta and input") {
  Rng rng(10);
  nn::LayerNorm<double> ln(5);
  ln.gamma.value() = test::randn<double>({5}, rng);
  ln.beta.value() = test::randn<double>({5}, rng);
  const Tensor<double> x = test::randn<double>({3, 5}, rng);
  const Tensor<double> R = test::randn<double>({3, 5}, rng);
  WEFT_CHECK_GRAD(param_grad_check(ln.parameters(), [&](Tape<double>& t) { return contract(ln(t.constant(x)), R); }));
  WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return ln(v[0]); }, {x}));
}

TEST_CASE("nn/module: named_parameters names and order") {
  Rng rng(11);
  nn::MLP<float> mlp({4, 3, 2}, rng);
  auto np = mlp.named_parameters();
  REQUIRE(np.size() == 4);
  CHECK(np[0].first == "layers.0.weight");
  CHECK(np[1].first == "layers.0.bias");
  CHECK(np[2].first == "layers.1.weight");
  CHECK(np[3].first == "layers.1.bias");
  CHECK(np[0].second == mlp.layers[0].weight);
  CHECK(np[3].second == mlp.layers[1].bias);
  // parameters() is the same list without names
  auto ps = mlp.parameters();
  REQUIRE(ps.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) CHECK(ps[i] == np[i].second);

  nn::TransformerBlock<float> block(4, 2, 2, rng);
  std::vector<std::string> names;
  for (auto& e : block.named_parameters()) names.push_back(e.first);
  const std::vector<std::string> expected = {
      "ln1.gamma", "ln1.beta", "attn.q_proj.weight", "attn.q_proj.bias", "attn.k_proj.weight", "attn.k_proj.bias",
      "attn.v_proj.weight", "attn.v_proj.bias", "attn.out_proj.weight", "attn.out_proj.bias", "ln2.gamma", "ln2.beta",
      "mlp.layers.0.weight", "mlp.layers.0.bias", "mlp.layers.1.weight", "mlp.layers.1.bias"};
  CHECK(names == expected);
}

TEST_CASE("nn/module: shared parameters are listed once") {
  Rng rng(12);
  Tied m(rng);
  auto np = m.named_parameters();
  REQUIRE(np.size() == 3);
  CHECK(np[0].first == "a.weight");
  CHECK(np[1].first == "a.bias");
  CHECK(np[2].first == "b.bias");
  CHECK(m.num_parameters() == 9 + 3 + 3);
  // the tied weight gets both contributions
  Tape<double> tape;
  Tensor<double> x = test::randn<double>({2, 3}, rng);
  tape.backward(sum(m.b(m.a(tape.constant(x)))));
  CHECK(m.a.weight.grad().array().abs().sum() > 0);
  CHECK(m.b.weight.grad().same_storage(m.a.weight.grad()));
}

TEST_CASE("nn/module: num_parameters counts all or only the trainable ones") {
  Rng rng(13);
  nn::MLP<double> mlp({4, 3, 2}, rng);
  CHECK(mlp.num_parameters() == 12 + 3 + 6 + 2);
  CHECK(mlp.num_parameters(true) == 23);
  mlp.layers[0].weight.set_requires_grad(false);
  CHECK(mlp.num_parameters() == 23);
  CHECK(mlp.num_parameters(true) == 11);
  mlp.set_requires_grad(false);
  CHECK(mlp.num_parameters(true) == 0);
  mlp.set_requires_grad(true);
  CHECK(mlp.num_parameters(true) == 23);
}

TEST_CASE("nn/module: set_requires_grad(false) freezes: no gradient, no update") {
  Rng rng(14);
  nn::MLP<double> mlp({3, 4, 2}, rng);
  mlp.layers[0].set_requires_grad(false);
  const Tensor<double> w0 = mlp.layers[0].weight.value().clone(), b0 = mlp.layers[0].bias.value().clone();
  const Tensor<double> w1 = mlp.layers[1].weight.value().clone();
  nn::SGDOptions so;
  so.lr = 0.1;
  so.momentum = 0.9;
  so.weight_decay = 0.01;
  nn::SGD<double> opt(mlp.parameters(), so);
  const Tensor<double> x = test::randn<double>({5, 3}, rng);
  for (int s = 0; s < 3; ++s) {
    opt.zero_grad();
    Tape<double> tape;
    tape.backward(sum(square(mlp(tape.constant(x)))));
    CHECK(mlp.layers[0].weight.grad().array().abs().sum() == 0);
    CHECK(mlp.layers[0].bias.grad().array().abs().sum() == 0);
    CHECK(mlp.layers[1].weight.grad().array().abs().sum() > 0);
    opt.step();
  }
  CHECK(test::identical(mlp.layers[0].weight.value(), w0));
  CHECK(test::identical(mlp.layers[0].bias.value(), b0));
  CHECK_FALSE(test::identical(mlp.layers[1].weight.value(), w1));
}

TEST_CASE("nn/module: train() and eval() propagate to children") {
  Rng rng(15);
  nn::TransformerBlock<float> block(4, 2, 2, rng);
  CHECK(block.is_training());
  CHECK(block.attn.q_proj.is_training());
  block.eval();
  CHECK_FALSE(block.is_training());
  CHECK_FALSE(block.ln1.is_training());
  CHECK_FALSE(block.attn.is_training());
  CHECK_FALSE(block.attn.out_proj.is_training());
  CHECK_FALSE(block.mlp.layers[1].is_training());
  block.train();
  CHECK(block.is_training());
  CHECK(block.attn.v_proj.is_training());
  CHECK(block.mlp.layers[0].is_training());
  // a child switched on its own does not affect its parent
  block.mlp.eval();
  CHECK(block.is_training());
  CHECK_FALSE(block.mlp.layers[0].is_training());
}

TEST_CASE("nn/module: copy_parameters copies values into an independent module") {
  Rng rng(16);
  nn::MLP<double> src({3, 4, 2}, rng), dst({3, 4, 2}, rng);
  CHECK_FALSE(test::identical(src.layers[0].weight.value(), dst.layers[0].weight.value()));
  nn::copy_parameters(src, dst);
  auto s = src.parameters(), d = dst.parameters();
  for (std::size_t i = 0; i < s.size(); ++i) {
    CHECK(test::identical(s[i].value(), d[i].value()));
    CHECK_FALSE(s[i].value().same_storage(d[i].value()));
  }
  src.layers[0].weight.value().flat(0) += 1;
  CHECK(dst.layers[0].weight.value().flat(0) != src.layers[0].weight.value().flat(0));
}

TEST_CASE("nn/module: copy_parameters between different architectures throws and leaves dst untouched") {
  Rng rng(17);
  nn::MLP<double> src({3, 4, 2}, rng);
  nn::MLP<double> wider({3, 5, 2}, rng), deeper({3, 4, 2, 2}, rng), nobias({3, 4, 2}, rng, nn::Activation::relu, false);
  for (nn::MLP<double>* dst : {&wider, &deeper, &nobias}) {
    std::vector<Tensor<double>> before;
    for (auto& p : dst->parameters()) before.push_back(p.value().clone());
    WEFT_NN_CHECK_FAILS(nn::copy_parameters(src, *dst), ShapeError, "nn::copy_parameters");
    auto ps = dst->parameters();
    for (std::size_t i = 0; i < ps.size(); ++i) CHECK(test::identical(ps[i].value(), before[i]));
  }
  // same shapes but different names (an MLP vs. a Linear of the same size) is a mismatch too
  nn::MLP<double> one({3, 4}, rng);
  nn::Linear<double> lin(3, 4, rng);
  const Tensor<double> w = lin.weight.value().clone();
  WEFT_NN_CHECK_FAILS(nn::copy_parameters(one, lin), ShapeError, "nn::copy_parameters");
  CHECK(test::identical(lin.weight.value(), w));
}

TEST_CASE("nn/module: copying a module shares its parameters, moving keeps an optimiser working") {
  Rng rng(18);
  nn::Linear<double> a(2, 2, rng);
  nn::Linear<double> b = a;
  CHECK(b.weight == a.weight);
  nn::SGD<double> opt(a.parameters());
  nn::Linear<double> c = std::move(a);
  c.weight.grad().fill(1.0);
  const double before = c.weight.value().flat(0);
  opt.step();
  CHECK(c.weight.value().flat(0) == doctest::Approx(before - 0.01));
}

TEST_CASE("nn/module: bad constructor arguments are errors naming the function") {
  Rng rng(19);
  WEFT_NN_CHECK_FAILS(nn::Linear<float>(0, 3, rng), ShapeError, "nn::Linear");
  WEFT_NN_CHECK_FAILS(nn::Linear<float>(3, 0, rng), ShapeError, "nn::Linear");
  WEFT_NN_CHECK_FAILS(nn::Linear<float>(-1, 3, rng), ShapeError, "nn::Linear");
  WEFT_NN_CHECK_FAILS(nn::MLP<float>({3}, rng), ShapeError, "nn::MLP");
  WEFT_NN_CHECK_FAILS(nn::MLP<float>(std::vector<index_t>{}, rng), ShapeError, "nn::MLP");
  WEFT_NN_CHECK_FAILS(nn::MLP<float>({3, 0, 2}, rng), ShapeError, "nn::Linear");
  WEFT_NN_CHECK_FAILS(nn::LayerNorm<float>(0), ShapeError, "nn::LayerNorm");
  WEFT_NN_CHECK_FAILS(nn::LayerNorm<float>(4, -1.0f), ValueError, "nn::LayerNorm");
}

TEST_CASE("nn/module: forward on a default-constructed module is a ConfigError") {
  Tape<double> tape;
  Var<double> x = tape.constant(Tensor<double>(Shape{2, 3}));
  nn::Linear<double> lin;
  nn::MLP<double> mlp;
  nn::LayerNorm<double> ln;
  WEFT_NN_CHECK_FAILS(lin(x), ConfigError, "nn::Linear::forward");
  WEFT_NN_CHECK_FAILS(mlp(x), ConfigError, "nn::MLP::forward");
  WEFT_NN_CHECK_FAILS(ln(x), ConfigError, "nn::LayerNorm::forward");
  CHECK(lin.named_parameters().empty());
  CHECK(mlp.num_parameters() == 0);
}

TEST_CASE("nn/module: wrong input width is a ShapeError, inputs untouched") {
  Rng rng(20);
  nn::Linear<double> lin(4, 3, rng);
  nn::MLP<double> mlp({4, 3, 2}, rng);
  nn::LayerNorm<double> ln(4);
  Tensor<double> x = test::randn<double>({2, 5}, rng);
  test::Snapshot<double> snap({x, lin.weight.value(), lin.bias.value()});
  Tape<double> tape;
  CHECK_THROWS_AS(lin(tape.constant(x)), ShapeError);
  CHECK_THROWS_AS(mlp(tape.constant(x)), ShapeError);
  CHECK_THROWS_AS(ln(tape.constant(x)), ShapeError);
  CHECK_THROWS_WITH_AS(lin(tape.constant(x)), doctest::Contains("weft::nn::Linear::forward: expected input of shape (..., 4), got (2, 5)"), ShapeError);
  CHECK(snap.unchanged());
}

TEST_CASE("nn/layers: LayerNorm rejects a non-finite eps at construction") {
  const double inf = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(nn::LayerNorm<double>(4, inf), doctest::Contains("weft::nn::LayerNorm: "), ValueError);
  CHECK_THROWS_WITH_AS(nn::LayerNorm<float>(4, std::numeric_limits<float>::quiet_NaN()),
                       doctest::Contains("weft::nn::LayerNorm: "), ValueError);
  CHECK(nn::LayerNorm<double>(4, 0.0).eps == 0.0);
}

}  // namespace weft_unit_nn_modules_test
