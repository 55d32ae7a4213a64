// Tests of weft/nn/attach.hpp through Linear: weight transforms (learnable, straight-through,
// frozen mask, chains, folding), side paths, forward hooks, and how their parameters are named
// and reach an optimiser. The transforms and side paths are toy implementations written here.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/nn/attach.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/optim.hpp"

namespace weft_unit_nn_attach_test {

using namespace weft;
using weft::nn_test::contract;
using weft::nn_test::param_grad_check;

namespace {

/// W -> s W with a learnable scalar s.
template <class T>
struct ScaleTransform : nn::WeightTransform<T> {
  Parameter<T> s;
  explicit ScaleTransform(double v) : s(Tensor<T>(Shape{1}, T(v)), "s") {}
  std::string name() const override { return "scale"; }
  Var<T> apply(const Var<T>& w) override { return w * w.tape().param(s); }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override { out.emplace_back("s", s); }
};

/// W -> a W + c with learnable scalars a and c (affine, so the order in a chain matters).
template <class T>
struct AffineTransform : nn::WeightTransform<T> {
  Parameter<T> a, c;
  AffineTransform(double av, double cv) : a(Tensor<T>(Shape{1}, T(av)), "a"), c(Tensor<T>(Shape{1}, T(cv)), "c") {}
  std::string name() const override { return "affine"; }
  Var<T> apply(const Var<T>& w) override { return w * w.tape().param(a) + w.tape().param(c); }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override {
    out.emplace_back("a", a);
    out.emplace_back("c", c);
  }
};

/// W -> round(W / step) step in forward, identity in backward (straight-through estimator).
template <class T>
struct RoundSTE : nn::WeightTransform<T> {
  double step;
  explicit RoundSTE(double s) : step(s) {}
  std::string name() const override { return "round"; }
  Var<T> apply(const Var<T>& w) override {
    Tape<T>& t = w.tape();
    Tensor<T> q = t.alloc_uninit(w.shape());
    for (index_t i = 0; i < q.numel(); ++i) q.flat(i) = T(std::round(double(w.value().flat(i)) / step) * step);
    return t.record(q, {w}, [w](Tape<T>& tp, const Tensor<T>& g) {
      if (Tensor<T>* gw = tp.grad_sink(w)) gw->array() += g.array();
    });
  }
};

/// W -> W * M with a fixed 0/1 mask M (frozen: no parameters).
template <class T>
struct MaskTransform : nn::WeightTransform<T> {
  Tensor<T> mask;
  explicit MaskTransform(Tensor<T> m) : mask(std::move(m)) {}
  std::string name() const override { return "mask"; }
  Var<T> apply(const Var<T>& w) override { return w * w.tape().constant(mask); }
};

/// Returns its input transposed: breaks the shape contract.
template <class T>
struct TransposeTransform : nn::WeightTransform<T> {
  std::string name() const override { return "transpose"; }
  Var<T> apply(const Var<T>& w) override { return transpose(w); }
};

/// Rank-r LoRA-like side path: x A^T B^T with A (r, in) random and B (out, r) zero at init.
template <class T>
struct LowRankPath : nn::SidePath<T> {
  Parameter<T> A, B;
  LowRankPath(index_t in, index_t out, index_t r, Rng& rng)
      : A(test::randn<T>({r, in}, rng), "A"), B(Tensor<T>(Shape{out, r}), "B") {}
  std::string name() const override { return "lora"; }
  Var<T> forward(const Var<T>& x) override {
    Tape<T>& t = x.tape();
    return linear(linear(x, t.param(A)), t.param(B));
  }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override {
    out.emplace_back("A", A);
    out.emplace_back("B", B);
  }
};

/// Returns a tensor of the wrong width.
template <class T>
struct BadPath : nn::SidePath<T> {
  std::string name() const override { return "bad"; }
  Var<T> forward(const Var<T>& x) override { return x; }
};

Tensor<double> affine_ref(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>& b) {
  Tensor<double> y(Shape{x.dim(0), w.dim(0)});
  for (index_t r = 0; r < x.dim(0); ++r)
    for (index_t o = 0; o < w.dim(0); ++o) {
      double acc = b(o);
      for (index_t i = 0; i < w.dim(1); ++i) acc += x(r, i) * w(o, i);
      y(r, o) = acc;
    }
  return y;
}

Tensor<double> forward_value(nn::Linear<double>& lin, const Tensor<double>& x) {
  Tape<double> tape;
  return lin(tape.constant(x)).value().clone();
}

}  // namespace

TEST_CASE("nn/attach: a learnable scale transform: forward, names and gradients") {
  Rng rng(1);
  nn::Linear<double> lin(4, 3, rng);
  auto sc = std::make_shared<ScaleTransform<double>>(1.5);
  lin.add_transform(sc);
  REQUIRE(lin.transforms().size() == 1);
  const Tensor<double> x = test::randn<double>({5, 4}, rng);
  Tensor<double> w_eff = lin.weight.value().clone();
  w_eff.array() *= 1.5;
  WEFT_CHECK_CLOSE(forward_value(lin, x), affine_ref(x, w_eff, lin.bias.value()), 1e-12);
  {
    Tape<double> tape;
    WEFT_CHECK_CLOSE(lin.effective_weight(tape).value(), w_eff, 1e-15);
  }
  auto np = lin.named_parameters();
  REQUIRE(np.size() == 3);
  CHECK(np[2].first == "transforms.0.scale.s");
  CHECK(np[2].second == sc->s);
  CHECK(lin.num_parameters() == 12 + 3 + 1);

  const Tensor<double> R = test::randn<double>({5, 3}, rng);
  WEFT_CHECK_GRAD(param_grad_check(lin.parameters(), [&](Tape<double>& t) { return contract(lin(t.constant(x)), R); }));
  // d/ds = sum(W * dL/dW') and dL/dW = s dL/dW'
  CHECK(std::abs(sc->s.grad()(0)) > 0);
  WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return lin(v[0]); }, {x}));
}

TEST_CASE("nn/attach: a straight-through transform (round forward, identity backward)") {
  Rng rng(2);
  nn::Linear<double> plain(4, 3, rng);
  nn::Linear<double> q(4, 3, rng);
  nn::copy_parameters(plain, q);
  q.add_transform(std::make_shared<RoundSTE<double>>(0.25));
  const Tensor<double> x = test::randn<double>({6, 4}, rng);
  const Tensor<double> R = test::randn<double>({6, 3}, rng);

  // forward uses the rounded weight
  Tensor<double> wq = plain.weight.value().clone();
  for (auto& e : wq) e = std::round(e / 0.25) * 0.25;
  CHECK_FALSE(test::identical(wq, plain.weight.value()));
  WEFT_CHECK_CLOSE(forward_value(q, x), affine_ref(x, wq, q.bias.value()), 1e-12);

  // a loss linear in the output: the STE weight gradient equals the unrounded layer's
  auto grads = [&](nn::Linear<double>& l, Tensor<double>* gx) {
    l.zero_grad();
    Tape<double> tape;
    Var<double> xv = tape.variable(x);
    tape.backward(contract(l(xv), R));
    if (gx) *gx = xv.grad().clone();
  };
  Tensor<double> gx_plain, gx_q;
  grads(plain, &gx_plain);
  grads(q, &gx_q);
  CHECK(test::identical(q.weight.grad(), plain.weight.grad()));
  CHECK(test::identical(q.bias.grad(), plain.bias.grad()));
  // the input gradient goes through the rounded weight: R Q(W)
  Tensor<double> gx_ref(Shape{6, 4});
  for (index_t r = 0; r < 6; ++r)
    for (index_t i = 0; i < 4; ++i)
      for (index_t o = 0; o < 3; ++o) gx_ref(r, i) += R(r, o) * wq(o, i);
  WEFT_CHECK_CLOSE(gx_q, gx_ref, 1e-12);
  CHECK_FALSE(test::identical(gx_q, gx_plain));
}

TEST_CASE("nn/attach: a frozen mask: masked entries get no gradient and stay zero under an optimiser") {
  Rng rng(3);
  nn::Linear<double> lin(4, 3, rng);
  Tensor<double> mask(Shape{3, 4});
  for (index_t i = 0; i < 12; ++i) mask.flat(i) = (i % 3 == 1) ? 0.0 : 1.0;
  lin.weight.value().array() *= mask.array();  // pruned
  lin.add_transform(std::make_shared<MaskTransform<double>>(mask));
  CHECK(lin.num_parameters() == 15);  // the mask is not a parameter

  nn::AdamOptions ao;
  ao.lr = 0.05;
  ao.weight_decay = 0.01;
  nn::AdamW<double> opt(lin.parameters(), ao);
  const Tensor<double> w0 = lin.weight.value().clone();
  const Tensor<double> x = test::randn<double>({8, 4}, rng), target = test::randn<double>({8, 3}, rng);
  for (int s = 0; s < 5; ++s) {
    opt.zero_grad();
    Tape<double> tape;
    tape.backward(mse(lin(tape.constant(x)), tape.constant(target)));
    for (index_t i = 0; i < 12; ++i)
      if (mask.flat(i) == 0) CHECK(lin.weight.grad().flat(i) == 0.0);
    opt.step();
  }
  for (index_t i = 0; i < 12; ++i) {
    CAPTURE(i);
    if (mask.flat(i) == 0) CHECK(lin.weight.value().flat(i) == 0.0);
    else CHECK(lin.weight.value().flat(i) != w0.flat(i));
  }
  const Tensor<double> R = test::randn<double>({8, 3}, rng);
  WEFT_CHECK_GRAD(param_grad_check(lin.parameters(), [&](Tape<double>& t) { return contract(lin(t.constant(x)), R); }));
}

TEST_CASE("nn/attach: a chain of transforms is applied in order") {
  Rng rng(4);
  Tensor<double> mask(Shape{2, 3});
  for (index_t i = 0; i < 6; ++i) mask.flat(i) = i % 2 ? 1.0 : 0.0;
  nn::Linear<double> mask_then_affine(3, 2, rng), affine_then_mask(3, 2, rng);
  nn::copy_parameters(mask_then_affine, affine_then_mask);
  const Tensor<double> w = mask_then_affine.weight.value().clone();
  mask_then_affine.add_transform(std::make_shared<MaskTransform<double>>(mask));
  mask_then_affine.add_transform(std::make_shared<AffineTransform<double>>(2.0, 0.5));
  affine_then_mask.add_transform(std::make_shared<AffineTransform<double>>(2.0, 0.5));
  affine_then_mask.add_transform(std::make_shared<MaskTransform<double>>(mask));

  Tensor<double> ref1(w.shape()), ref2(w.shape());
  for (index_t i = 0; i < 6; ++i) {
    ref1.flat(i) = 2.0 * (w.flat(i) * mask.flat(i)) + 0.5;
    ref2.flat(i) = (2.0 * w.flat(i) + 0.5) * mask.flat(i);
  }
  Tape<double> tape;
  WEFT_CHECK_CLOSE(mask_then_affine.effective_weight(tape).value(), ref1, 1e-15);
  WEFT_CHECK_CLOSE(affine_then_mask.effective_weight(tape).value(), ref2, 1e-15);
  WEFT_CHECK_CLOSE(mask_then_affine.folded_weight(), ref1, 1e-15);
  CHECK(ref1.flat(0) == 0.5);  // masked, then shifted
  CHECK(ref2.flat(0) == 0.0);  // shifted, then masked

  const Tensor<double> x = test::randn<double>({3, 3}, rng);
  WEFT_CHECK_CLOSE(forward_value(mask_then_affine, x), affine_ref(x, ref1, mask_then_affine.bias.value()), 1e-12);
  WEFT_CHECK_CLOSE(forward_value(affine_then_mask, x), affine_ref(x, ref2, affine_then_mask.bias.value()), 1e-12);

  std::vector<std::string> names;
  for (auto& e : mask_then_affine.named_parameters()) names.push_back(e.first);
  CHECK(names == std::vector<std::string>{"weight", "bias", "transforms.1.affine.a", "transforms.1.affine.c"});
  const Tensor<double> R = test::randn<double>({3, 2}, rng);
  WEFT_CHECK_GRAD(param_grad_check(mask_then_affine.parameters(),
                                   [&](Tape<double>& t) { return contract(mask_then_affine(t.constant(x)), R); }));
}

TEST_CASE("nn/attach: fold() bakes the chain into the weight and leaves the output unchanged") {
  Rng rng(5);
  nn::Linear<double> lin(4, 3, rng);
  Tensor<double> mask = Tensor<double>::ones(Shape{3, 4});
  mask.flat(5) = 0;
  auto sc = std::make_shared<ScaleTransform<double>>(0.75);
  lin.add_transform(std::make_shared<MaskTransform<double>>(mask));
  lin.add_transform(sc);
  lin.add_transform(std::make_shared<RoundSTE<double>>(0.125));
  const Tensor<double> x = test::randn<double>({5, 4}, rng);
  const Tensor<double> before = forward_value(lin, x);
  Tensor<double> eff;
  {
    Tape<double> tape;
    eff = lin.effective_weight(tape).value().clone();
  }
  const Tensor<double> folded = lin.folded_weight();
  CHECK(test::identical(folded, eff));
  CHECK(lin.transforms().size() == 3);  // folded_weight() does not fold
  CHECK(lin.named_parameters().size() == 3);

  lin.fold();
  CHECK(lin.transforms().empty());
  CHECK(test::identical(lin.weight.value(), eff));
  CHECK(lin.weight.value().flat(5) == 0.0);
  CHECK(lin.named_parameters().size() == 2);  // the transform's scale is gone with it
  WEFT_CHECK_CLOSE(forward_value(lin, x), before, 1e-14);
  // fold() with no transforms is a no-op
  lin.fold();
  CHECK(test::identical(lin.weight.value(), eff));
  // fold() records nothing that needs gradients and leaves gradient mode alone
  CHECK(is_grad_enabled());
}

TEST_CASE("nn/attach: a low-rank side path: unchanged output at init, gradients reach A and B") {
  Rng rng(6);
  nn::Linear<double> lin(4, 3, rng);
  const Tensor<double> x = test::randn<double>({5, 4}, rng);
  const Tensor<double> base = forward_value(lin, x);
  auto lora = std::make_shared<LowRankPath<double>>(4, 3, 1, rng);
  lin.add_side_path(lora);
  REQUIRE(lin.side_paths().size() == 1);
  CHECK(test::identical(forward_value(lin, x), base));  // B = 0

  auto np = lin.named_parameters();
  REQUIRE(np.size() == 4);
  CHECK(np[2].first == "side.0.lora.A");
  CHECK(np[3].first == "side.0.lora.B");

  // at init dL/dB = G^T (x A^T) is non-zero and dL/dA = B^T G x is zero
  const Tensor<double> R = test::randn<double>({5, 3}, rng);
  {
    lin.zero_grad();
    Tape<double> tape;
    tape.backward(contract(lin(tape.constant(x)), R));
    CHECK(lora->B.grad().array().abs().sum() > 0);
    CHECK(lora->A.grad().array().abs().sum() == 0);
  }
  lora->B.value() = test::randn<double>({3, 1}, rng);
  WEFT_CHECK_GRAD(param_grad_check(lin.parameters(), [&](Tape<double>& t) { return contract(lin(t.constant(x)), R); }));
  CHECK(lora->A.grad().array().abs().sum() > 0);
  WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return lin(v[0]); }, {x}));

  // the output is base + x A^T B^T
  Tensor<double> ref = base.clone();
  for (index_t r = 0; r < 5; ++r) {
    double xa = 0;
    for (index_t i = 0; i < 4; ++i) xa += x(r, i) * lora->A.value()(0, i);
    for (index_t o = 0; o < 3; ++o) ref(r, o) += xa * lora->B.value()(o, 0);
  }
  WEFT_CHECK_CLOSE(forward_value(lin, x), ref, 1e-12);
}

TEST_CASE("nn/attach: several side paths add up; remove_side_path detaches one") {
  Rng rng(7);
  nn::Linear<double> lin(4, 3, rng);
  const Tensor<double> x = test::randn<double>({5, 4}, rng);
  const Tensor<double> base = forward_value(lin, x);
  auto p1 = std::make_shared<LowRankPath<double>>(4, 3, 1, rng);
  auto p2 = std::make_shared<LowRankPath<double>>(4, 3, 2, rng);
  p1->B.value() = test::randn<double>({3, 1}, rng);
  p2->B.value() = test::randn<double>({3, 2}, rng);
  auto alone = [&](const std::shared_ptr<LowRankPath<double>>& p) {
    Tape<double> tape;
    Tensor<double> out = p->forward(tape.constant(x)).value().clone();
    return out;
  };
  const Tensor<double> d1 = alone(p1), d2 = alone(p2);
  lin.add_side_path(p1);
  lin.add_side_path(p2);
  Tensor<double> ref = base.clone();
  ref.array() += d1.array() + d2.array();
  WEFT_CHECK_CLOSE(forward_value(lin, x), ref, 1e-12);
  std::vector<std::string> names;
  for (auto& e : lin.named_parameters()) names.push_back(e.first);
  CHECK(names == std::vector<std::string>{"weight", "bias", "side.0.lora.A", "side.0.lora.B", "side.1.lora.A",
                                          "side.1.lora.B"});

  CHECK(lin.remove_side_path(p1.get()));
  CHECK_FALSE(lin.remove_side_path(p1.get()));
  REQUIRE(lin.side_paths().size() == 1);
  CHECK(lin.side_paths()[0] == p2);
  Tensor<double> ref2 = base.clone();
  ref2.array() += d2.array();
  WEFT_CHECK_CLOSE(forward_value(lin, x), ref2, 1e-12);
  CHECK(lin.named_parameters()[2].first == "side.0.lora.A");  // renumbered
  lin.clear_side_paths();
  CHECK(test::identical(forward_value(lin, x), base));
}

TEST_CASE("nn/attach: a side path of the wrong shape, a shape-changing transform and nullptr are errors") {
  Rng rng(8);
  nn::Linear<double> lin(4, 3, rng);
  Tape<double> tape;
  Var<double> x = tape.constant(test::randn<double>({2, 4}, rng));
  auto bad = std::make_shared<BadPath<double>>();
  lin.add_side_path(bad);
  CHECK_THROWS_WITH_AS(lin(x), doctest::Contains("weft::nn::Linear::forward: expected side path 'bad'"), ShapeError);
  lin.remove_side_path(bad.get());
  CHECK(lin(x).shape() == Shape{2, 3});

  lin.add_transform(std::make_shared<TransposeTransform<double>>());
  CHECK_THROWS_WITH_AS(lin(x), doctest::Contains("weight transform 'transpose'"), ShapeError);
  lin.clear_transforms();
  CHECK(lin.transforms().empty());

  WEFT_NN_CHECK_FAILS(lin.add_transform(nullptr), ConfigError, "nn::Linear::add_transform");
  WEFT_NN_CHECK_FAILS(lin.add_side_path(nullptr), ConfigError, "nn::Linear::add_side_path");
}

TEST_CASE("nn/attach: forward hooks see the input and output values and can be removed") {
  Rng rng(9);
  nn::Linear<double> lin(4, 3, rng);
  auto lora = std::make_shared<LowRankPath<double>>(4, 3, 1, rng);
  lora->B.value() = test::randn<double>({3, 1}, rng);
  lin.add_side_path(lora);
  std::vector<Tensor<double>> ins, outs;
  int second = 0;
  nn::HookHandle h1 = lin.add_forward_hook([&](const Tensor<double>& in, const Tensor<double>& out) {
    ins.push_back(in.clone());
    outs.push_back(out.clone());
  });
  nn::HookHandle h2 = lin.add_forward_hook([&](const Tensor<double>&, const Tensor<double>&) { ++second; });
  CHECK(h1.active());
  CHECK(h2.active());
  CHECK(lin.num_forward_hooks() == 2);
  const Tensor<double> x = test::randn<double>({2, 4}, rng);
  Tensor<double> y;
  {
    Tape<double> tape;
    y = lin(tape.constant(x)).value().clone();
  }
  REQUIRE(ins.size() == 1);
  CHECK(test::identical(ins[0], x));
  CHECK(test::identical(outs[0], y));  // the output includes the side path
  CHECK(second == 1);

  h1.remove();
  CHECK_FALSE(h1.active());
  h1.remove();  // idempotent
  forward_value(lin, x);
  CHECK(ins.size() == 1);
  CHECK(second == 2);
  {
    nn::HookHandle moved = std::move(h2);  // the hook follows its handle
    CHECK_FALSE(h2.active());
    CHECK(moved.active());
    forward_value(lin, x);
    CHECK(second == 3);
  }  // destroyed: removed
  forward_value(lin, x);
  CHECK(second == 3);
  CHECK(lin.num_forward_hooks() == 0);
  // a released hook stays for the layer's lifetime; a handle that outlives its layer is inert
  nn::HookHandle h3;
  {
    nn::Linear<double> tmp(4, 3, rng);
    h3 = tmp.add_forward_hook([&](const Tensor<double>&, const Tensor<double>&) { ++second; });
    nn::HookHandle h4 = tmp.add_forward_hook([&](const Tensor<double>&, const Tensor<double>&) { ++second; });
    h4.release();
    forward_value(tmp, x);
    CHECK(second == 5);
    CHECK(tmp.num_forward_hooks() == 2);
  }
  CHECK_FALSE(h3.active());
  h3.remove();  // the layer is gone: nothing to do, no dangling access
}

TEST_CASE("nn/attach: transform and side-path parameters are named inside a model and reach the optimiser") {
  Rng rng(10);
  nn::MLP<double> mlp({4, 3, 2}, rng);
  auto sc = std::make_shared<ScaleTransform<double>>(1.0);
  auto lora = std::make_shared<LowRankPath<double>>(3, 2, 1, rng);
  mlp.layers[0].add_transform(sc);
  mlp.layers[1].add_side_path(lora);
  std::vector<std::string> names;
  for (auto& e : mlp.named_parameters()) names.push_back(e.first);
  CHECK(names == std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.0.transforms.0.scale.s",
                                          "layers.1.weight", "layers.1.bias", "layers.1.side.0.lora.A",
                                          "layers.1.side.0.lora.B"});
  CHECK(mlp.num_parameters() == 12 + 3 + 1 + 6 + 2 + 3 + 2);

  // freeze the base, train only the attached parameters
  mlp.set_requires_grad(false);
  sc->s.set_requires_grad(true);
  lora->A.set_requires_grad(true);
  lora->B.set_requires_grad(true);
  CHECK(mlp.num_parameters(true) == 1 + 3 + 2);
  nn::SGDOptions so;
  so.lr = 0.1;
  nn::SGD<double> opt(mlp.parameters(), so);
  const Tensor<double> w0 = mlp.layers[0].weight.value().clone();
  const double s0 = sc->s.value()(0);
  const Tensor<double> b0 = lora->B.value().clone();
  const Tensor<double> x = test::randn<double>({6, 4}, rng), target = test::randn<double>({6, 2}, rng);
  for (int s = 0; s < 3; ++s) {
    opt.zero_grad();
    Tape<double> tape;
    tape.backward(mse(mlp(tape.constant(x)), tape.constant(target)));
    opt.step();
  }
  CHECK(sc->s.value()(0) != s0);
  CHECK_FALSE(test::identical(lora->B.value(), b0));
  CHECK(test::identical(mlp.layers[0].weight.value(), w0));
}

namespace {

/// x -> c x with a learnable scalar c (an input transform).
template <class T>
struct InputScale : nn::InputTransform<T> {
  Parameter<T> c;
  explicit InputScale(double v) : c(Tensor<T>(Shape{1}, T(v)), "c") {}
  std::string name() const override { return "in_scale"; }
  Var<T> apply(const Var<T>& x) override { return x * x.tape().param(c); }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override { out.emplace_back("c", c); }
};

/// y -> y + U tanh(D y): a bottleneck adapter with a residual (U zero at init).
template <class T>
struct Bottleneck : nn::OutputAdapter<T> {
  Parameter<T> D, U;
  Bottleneck(index_t width, index_t r, Rng& rng) : D(test::randn<T>({r, width}, rng), "D"), U(Tensor<T>(Shape{width, r}), "U") {}
  std::string name() const override { return "bottleneck"; }
  Var<T> forward(const Var<T>& y) override {
    Tape<T>& t = y.tape();
    return y + linear(tanh(linear(y, t.param(D))), t.param(U));
  }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override {
    out.emplace_back("D", D);
    out.emplace_back("U", U);
  }
};

/// Drops the last column: breaks the shape contract of an input transform or adapter.
template <class T>
struct Narrow : nn::InputTransform<T>, nn::OutputAdapter<T> {
  std::string name() const override { return "narrow"; }
  Var<T> apply(const Var<T>& x) override { return slice(x, -1, 0, x.shape().last() - 1); }
  Var<T> forward(const Var<T>& y) override { return slice(y, -1, 0, y.shape().last() - 1); }
};

}  // namespace

TEST_CASE("nn/attach: an input transform acts before the product; side paths see the original input") {
  Rng rng(21);
  nn::Linear<double> lin(4, 3, rng);
  auto in = std::make_shared<InputScale<double>>(2.0);
  auto lora = std::make_shared<LowRankPath<double>>(4, 3, 1, rng);
  lora->B.value() = test::randn<double>({3, 1}, rng);
  lin.add_input_transform(in);
  lin.add_side_path(lora);
  const Tensor<double> x = test::randn<double>({5, 4}, rng);
  Tensor<double> x2 = x.clone();
  x2.array() *= 2.0;
  // expected: (2x) W^T + b + lora(x)
  Tensor<double> expect = affine_ref(x2, lin.weight.value(), lin.bias.value());
  {
    Tape<double> t;
    expect.array() += lora->forward(t.constant(x)).value().array();
  }
  Tensor<double> seen;
  nn::HookHandle hook = lin.add_forward_hook([&](const Tensor<double>& xin, const Tensor<double>&) { seen = xin.clone(); });
  WEFT_CHECK_CLOSE(forward_value(lin, x), expect, 1e-12);
  WEFT_CHECK_CLOSE(seen, x2, 0.0);  // hooks see the input the product used
  // gradient of the transform's parameter c: d/dc sum(R * (c x W^T)) by finite differences
  auto loss = [&](nn::Linear<double>& l) {
    Tape<double> t;
    return sum(l(t.constant(x))).item();
  };
  Tape<double> t;
  in->c.zero_grad();
  t.backward(sum(lin(t.constant(x))));
  const double g = in->c.grad()(0), h = 1e-6, c0 = in->c.value()(0);
  in->c.value()(0) = c0 + h;
  const double lp = loss(lin);
  in->c.value()(0) = c0 - h;
  const double lm = loss(lin);
  in->c.value()(0) = c0;
  CHECK(g == doctest::Approx((lp - lm) / (2 * h)).epsilon(1e-7));
  std::vector<std::string> names;
  for (auto& e : lin.named_parameters()) names.push_back(e.first);
  CHECK(names == std::vector<std::string>{"weight", "bias", "side.0.lora.A", "side.0.lora.B", "inputs.0.in_scale.c"});
  lin.clear_input_transforms();
  CHECK(lin.input_transforms().empty());
}

TEST_CASE("nn/attach: an output adapter maps the output after the side paths") {
  Rng rng(22);
  nn::Linear<double> lin(4, 3, rng);
  auto ad = std::make_shared<Bottleneck<double>>(3, 2, rng);
  lin.add_output_adapter(ad);
  const Tensor<double> x = test::randn<double>({5, 4}, rng);
  const Tensor<double> base = affine_ref(x, lin.weight.value(), lin.bias.value());
  WEFT_CHECK_CLOSE(forward_value(lin, x), base, 1e-14);  // U = 0: identity at init
  ad->U.value() = test::randn<double>({3, 2}, rng);
  Tensor<double> expect;
  {
    Tape<double> t;
    expect = ad->forward(t.constant(base)).value().clone();
  }
  WEFT_CHECK_CLOSE(forward_value(lin, x), expect, 1e-12);
  // gradients reach the adapter's parameters: compare with the functional form by grad_check
  auto f = [&](Tape<double>& tape, const std::vector<Var<double>>& v) {
    Var<double> y = linear(v[0], tape.constant(lin.weight.value()), tape.constant(lin.bias.value()));
    return y + linear(tanh(linear(y, v[1])), v[2]);
  };
  WEFT_CHECK_GRAD(weft::grad_check(f, {x, ad->D.value().clone(), ad->U.value().clone()}));
  Tape<double> t;
  ad->D.zero_grad();
  ad->U.zero_grad();
  t.backward(sum(lin(t.constant(x))));
  Tape<double> t2;
  auto vd = t2.variable(ad->D.value()), vu = t2.variable(ad->U.value());
  t2.backward(sum(f(t2, {t2.constant(x), vd, vu})));
  WEFT_CHECK_CLOSE(ad->D.grad(), vd.grad(), 1e-12);
  WEFT_CHECK_CLOSE(ad->U.grad(), vu.grad(), 1e-12);
  std::vector<std::string> names;
  for (auto& e : lin.named_parameters()) names.push_back(e.first);
  CHECK(names == std::vector<std::string>{"weight", "bias", "adapters.0.bottleneck.D", "adapters.0.bottleneck.U"});
}

TEST_CASE("nn/attach: input transforms and output adapters that change the shape, or nullptr, are errors") {
  Rng rng(23);
  const Tensor<double> x = test::randn<double>({2, 4}, rng);
  {
    nn::Linear<double> lin(4, 3, rng);
    lin.add_input_transform(std::make_shared<Narrow<double>>());
    Tape<double> t;
    CHECK_THROWS_WITH_AS(lin(t.constant(x)), doctest::Contains("input transform 'narrow'"), ShapeError);
  }
  {
    nn::Linear<double> lin(4, 3, rng);
    lin.add_output_adapter(std::make_shared<Narrow<double>>());
    Tape<double> t;
    CHECK_THROWS_WITH_AS(lin(t.constant(x)), doctest::Contains("output adapter 'narrow'"), ShapeError);
  }
  nn::Linear<double> lin(4, 3, rng);
  CHECK_THROWS_AS(lin.add_input_transform(nullptr), ConfigError);
  CHECK_THROWS_AS(lin.add_output_adapter(nullptr), ConfigError);
}

namespace {
/// Two children that are the same Linear (a tied layer) beside an MLP.
struct TiedPair : nn::Module<double> {
  nn::Linear<double> shared;
  nn::MLP<double> mlp;
  TiedPair(Rng& rng) : shared(3, 3, rng), mlp(std::vector<index_t>{3, 4, 2}, rng) {}
  void visit(nn::Members<double>& m) override {
    m.child("first", shared);
    m.child("mlp", mlp);
    m.child("again", shared);
  }
};
}  // namespace

TEST_CASE("nn/find_linears: every Linear once, with its dotted name, in visit order") {
  Rng rng(5);
  TiedPair model(rng);
  const auto found = nn::find_linears(model);
  REQUIRE(found.size() == 3);
  CHECK(found[0].first == "first");
  CHECK(found[0].second == &model.shared);
  CHECK(found[1].first == "mlp.layers.0");
  CHECK(found[1].second == &model.mlp.layers[0]);
  CHECK(found[2].first == "mlp.layers.1");
  CHECK(found[2].second == &model.mlp.layers[1]);

  nn::Linear<double> alone(2, 2, rng);
  const auto self = nn::find_linears(alone);
  REQUIRE(self.size() == 1);
  CHECK(self[0].first.empty());
  CHECK(self[0].second == &alone);
}

}  // namespace weft_unit_nn_attach_test
