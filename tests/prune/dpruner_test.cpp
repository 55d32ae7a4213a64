// Tests of weft/prune/dpruner.hpp: each coupling's regularised gradient and the dual importance
// against the spec's formulas on a loss with a known gradient, clipping (clipped vs unclipped
// importance), the domain-only ablation, the domain pass (parameters restored, deterministic,
// 1 vs 2 threads), bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "prune_test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/prune/dpruner.hpp"

namespace weft_unit_prune_dpruner_test {

using namespace weft;
using namespace weft::prune;
using weft::prune_test::ThreadCountGuard;

namespace {

/// One SGD step on L(W) = sum(W * C) (so g = C) with the dual hooks; returns the weight after it.
struct OneStep {
  Tensor<double> w0, c, general, w1, importance;
  double clip_coef = 1;
};

OneStep one_step(const DualOptions& o, double lr, Rng& rng) {
  OneStep r;
  r.w0 = test::randn<double>(Shape{3, 4}, rng);
  r.c = test::randn<double>(Shape{3, 4}, rng, 0.0, 0.5);
  r.general = test::rand_uniform<double>(Shape{3, 4}, rng, 0.1, 2.0);
  Parameter<double> w(r.w0.clone(), "w");
  DualImportance<double> dual({w}, {r.general}, o);
  nn::SGDOptions so;
  so.lr = lr;
  nn::SGD<double> opt(std::vector<Parameter<double>>{w}, so);
  dual.attach(opt);
  Tape<double> tape;
  opt.zero_grad();
  tape.backward(sum(tape.param(w) * tape.constant(r.c)));
  opt.step();
  r.w1 = w.value().clone();
  r.importance = dual.importance(0).clone();
  r.clip_coef = dual.last_clip_coefficient();
  CHECK(dual.steps() == 1);
  return r;
}

double mean_of(const Tensor<double>& t, bool squares = false) {
  double s = 0;
  for (index_t i = 0; i < t.numel(); ++i) s += squares ? t.flat(i) * t.flat(i) : t.flat(i);
  return s / double(t.numel());
}

/// Checks w1 = w0 - lr coef gt and I = |sign u + a u^2 (+ w1^3)| with u = gs gt w1.
void check_step(const OneStep& r, const Tensor<double>& gt, double lr, const DualOptions& o, bool clipped) {
  const double gs = clipped || o.importance_uses_clipped_grad ? r.clip_coef : 1.0;
  for (index_t i = 0; i < gt.numel(); ++i) {
    CHECK(r.w1.flat(i) == doctest::Approx(r.w0.flat(i) - lr * r.clip_coef * gt.flat(i)).epsilon(1e-12));
    const double u = gs * gt.flat(i) * r.w1.flat(i);
    double v = o.taylor_sign * u + o.second_order_scale * u * u;
    if (o.cubic_term) v += std::pow(r.w1.flat(i), 3);
    CHECK(r.importance.flat(i) == doctest::Approx(std::abs(v)).epsilon(1e-12));
  }
}

}  // namespace

TEST_CASE("prune/dpruner: isotropic_fisher g~ = g (1 + c G / mean G) and the dual importance") {
  Rng rng(41);
  DualOptions o;
  o.clip_norm = 0;  // no clipping: the formula alone
  const double lr = 0.1;
  OneStep r = one_step(o, lr, rng);
  const double mg = mean_of(r.general);
  Tensor<double> gt(r.c.shape());
  for (index_t i = 0; i < gt.numel(); ++i) gt.flat(i) = r.c.flat(i) * (1 + o.c * r.general.flat(i) / mg);
  check_step(r, gt, lr, o, false);
  SUBCASE("taylor_sign -1, a = 1/2000 and the cubic term (reference quirks)") {
    o.taylor_sign = -1;
    o.second_order_scale = 1.0 / 2000;
    o.cubic_term = true;
    Rng rng2(41);
    OneStep q = one_step(o, lr, rng2);
    check_step(q, gt, lr, o, false);
  }
  SUBCASE("c = 0 is the domain-only ablation: plain Taylor importance |g theta + (g theta)^2 / 2|") {
    o.c = 0;
    Rng rng2(41);
    OneStep q = one_step(o, lr, rng2);
    check_step(q, q.c, lr, o, false);
  }
}

TEST_CASE("prune/dpruner: paper_fisher, normalised and literal, and reference_code") {
  Rng rng(42);
  const double lr = 0.05;
  DualOptions o;
  o.clip_norm = 0;
  o.kind = coupling::paper_fisher;
  OneStep r = one_step(o, lr, rng);
  const double mg = mean_of(r.general), m2 = mean_of(r.c, true);
  Tensor<double> gt(r.c.shape());
  for (index_t i = 0; i < gt.numel(); ++i) {
    const double g = r.c.flat(i);
    gt.flat(i) = g * (1 + o.c * (r.general.flat(i) / mg) * (g * g / m2));
  }
  check_step(r, gt, lr, o, false);

  o.normalize = false;
  o.lambda = 50;  // large enough that the literal coupling is visible
  Rng rng2(42);
  r = one_step(o, lr, rng2);
  for (index_t i = 0; i < gt.numel(); ++i) {
    const double g = r.c.flat(i);
    gt.flat(i) = g * (1 + 2 * o.lambda * lr * lr * r.general.flat(i) * g * g);
  }
  check_step(r, gt, lr, o, false);

  o.kind = coupling::reference_code;
  o.lambda = 1000;
  Rng rng3(42);
  r = one_step(o, lr, rng3);
  for (index_t i = 0; i < gt.numel(); ++i) {
    const double g = r.c.flat(i);
    gt.flat(i) = g + 2 * o.lambda * lr * lr / 1000 * r.general.flat(i) * g * g;  // not sign-symmetric
  }
  check_step(r, gt, lr, o, false);
}

TEST_CASE("prune/dpruner: clipping by the global norm of the regularised gradients") {
  Rng rng(43);
  DualOptions o;
  o.clip_norm = 0.05;
  const double lr = 0.1;
  OneStep r = one_step(o, lr, rng);
  const double mg = mean_of(r.general);
  Tensor<double> gt(r.c.shape());
  double sq = 0;
  for (index_t i = 0; i < gt.numel(); ++i) {
    gt.flat(i) = r.c.flat(i) * (1 + o.c * r.general.flat(i) / mg);
    sq += gt.flat(i) * gt.flat(i);
  }
  CHECK(r.clip_coef == doctest::Approx(0.05 / (std::sqrt(sq) + 1e-6)).epsilon(1e-12));
  CHECK(r.clip_coef < 1);
  check_step(r, gt, lr, o, true);  // importance from the clipped g~ (library default)
  o.importance_uses_clipped_grad = false;
  Rng rng2(43);
  OneStep u = one_step(o, lr, rng2);
  check_step(u, gt, lr, o, false);  // importance from the unclipped g~ (reference)
}

TEST_CASE("prune/dpruner: the domain pass restores the model, is deterministic and thread-count independent") {
  ThreadCountGuard guard;
  Rng rng(44);
  nn::MLP<float> model({8, 16, 5}, rng);
  Tensor<float> x = test::randn<float>(Shape{100, 8}, rng);
  std::vector<int> y(100);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = int(rng.below(5));
  std::vector<Parameter<float>> weights = {model.layers[0].weight, model.layers[1].weight};
  std::vector<Tensor<float>> general = {test::rand_uniform<float>(Shape{16, 8}, rng, 0, 1),
                                        test::rand_uniform<float>(Shape{5, 16}, rng, 0, 1)};
  std::vector<Tensor<float>> before;
  for (auto& p : model.parameters()) before.push_back(p.value().clone());
  std::vector<int> lab;
  auto loss = [&](Tape<float>& tape, const std::vector<index_t>& rows) {
    return cross_entropy(model(nn::batch_rows(tape, x, rows)), nn::batch_labels(y, rows, lab));
  };
  DomainPassOptions o;
  o.batch_size = 16;
  o.epochs = 2;
  set_num_threads(1);
  std::vector<Tensor<float>> a = dual_importance_pass(model, weights, general, 100, loss, o);
  std::vector<Tensor<float>> params_after;
  for (auto& p : model.parameters()) params_after.push_back(p.value().clone());
  for (std::size_t i = 0; i < before.size(); ++i) CHECK(test::identical(params_after[i], before[i]));
  std::vector<Tensor<float>> b = dual_importance_pass(model, weights, general, 100, loss, o);
  set_num_threads(2);
  std::vector<Tensor<float>> c = dual_importance_pass(model, weights, general, 100, loss, o);
  REQUIRE(a.size() == 2);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(test::identical(a[i], b[i]));
    CHECK(test::identical(a[i], c[i]));
    double s = 0;
    for (index_t j = 0; j < a[i].numel(); ++j) s += a[i].flat(j);
    CHECK(s > 0);
  }
  o.dual.c = 0;  // a different coupling gives a different importance
  std::vector<Tensor<float>> d = dual_importance_pass(model, weights, general, 100, loss, o);
  CHECK(!test::identical(a[0], d[0]));
}

TEST_CASE("prune/dpruner: bad input") {
  Rng rng(45);
  Parameter<double> w(test::randn<double>(Shape{2, 3}, rng), "w");
  const Tensor<double> g_ok(Shape{2, 3}, 1.0);
  WEFT_PRUNE_CHECK_FAILS(DualImportance<double>({w}, {Tensor<double>(Shape{3, 2})}), ShapeError, "prune::DualImportance");
  WEFT_PRUNE_CHECK_FAILS(DualImportance<double>({w}, {}), ShapeError, "prune::DualImportance");
  Tensor<double> neg = g_ok.clone();
  neg(1, 1) = -1;
  WEFT_PRUNE_CHECK_FAILS(DualImportance<double>({w}, {neg}), ValueError, "prune::DualImportance");
  neg(1, 1) = std::numeric_limits<double>::infinity();
  WEFT_PRUNE_CHECK_FAILS(DualImportance<double>({w}, {neg}), ValueError, "prune::DualImportance");
  DualOptions o;
  o.c = -1;
  WEFT_PRUNE_CHECK_FAILS(DualImportance<double>({w}, {g_ok}, o), ValueError, "prune::DualImportance");
  o = DualOptions{};
  o.taylor_sign = 0.5;
  WEFT_PRUNE_CHECK_FAILS(DualImportance<double>({w}, {g_ok}, o), ValueError, "prune::DualImportance");

  // a weight the optimiser does not own
  Parameter<double> other(Tensor<double>(Shape{1}), "other");
  nn::SGD<double> opt(std::vector<Parameter<double>>{other});
  DualImportance<double> dual({w}, {g_ok});
  WEFT_PRUNE_CHECK_FAILS(dual.attach(opt), ConfigError, "prune::DualImportance::attach");

  // an overflowing coupling: an error before the gradients are overwritten
  o = DualOptions{};
  o.kind = coupling::paper_fisher;
  o.normalize = false;
  o.lambda = 1e300;
  o.clip_norm = 0;
  DualImportance<double> big({w}, {g_ok}, o);
  nn::SGD<double> opt2(std::vector<Parameter<double>>{w});
  big.attach(opt2);
  w.grad().fill(1e5);
  const Tensor<double> w_before = w.value().clone();
  WEFT_PRUNE_CHECK_FAILS(opt2.step(), ValueError, "prune::DualImportance");
  CHECK(w.grad().flat(0) == 1e5);
  CHECK(test::identical(w.value(), w_before));

  nn::MLP<double> model({3, 2}, rng);
  auto loss = [&](Tape<double>& tape, const std::vector<index_t>&) { return sum(model(tape.constant(Tensor<double>(Shape{1, 3})))); };
  WEFT_PRUNE_CHECK_FAILS(dual_importance_pass(model, {model.layers[0].weight}, {Tensor<double>(Shape{2, 3})}, 0, loss),
                         ShapeError, "prune::dual_importance_pass");
  DomainPassOptions dp;
  dp.lr = 0;
  WEFT_PRUNE_CHECK_FAILS(dual_importance_pass(model, {model.layers[0].weight}, {Tensor<double>(Shape{2, 3})}, 4, loss, dp),
                         ValueError, "prune::dual_importance_pass");
}

TEST_CASE("prune/dpruner: DualImportance owns its hooks: destroyed before the optimiser, or moved, it is safe") {
  Rng rng(77);
  Parameter<double> w(test::randn<double>(Shape{3, 4}, rng), "w");
  const Tensor<double> g = test::rand_uniform<double>(Shape{3, 4}, rng, 0.1, 2.0);
  const Tensor<double> c = test::randn<double>(Shape{3, 4}, rng);
  nn::SGD<double> opt(std::vector<Parameter<double>>{w});
  auto step = [&] {
    Tape<double> tape;
    opt.zero_grad();
    tape.backward(sum(tape.param(w) * tape.constant(c)));
    opt.step();
  };
  {
    DualImportance<double> dual({w}, {g});
    dual.attach(opt);
    step();
    CHECK(dual.steps() == 1);
    DualImportance<double> moved(std::move(dual));  // the hooks share the state, not the object
    step();
    CHECK(moved.steps() == 2);
    CHECK(opt.num_pre_step_hooks() == 1);
  }
  CHECK(opt.num_pre_step_hooks() == 0);
  CHECK(opt.num_post_step_hooks() == 0);
  // without the coupling hook the update is plain SGD: w <- w - lr c
  const Tensor<double> before = w.value().clone();
  step();
  for (index_t i = 0; i < w.numel(); ++i) CHECK(w.value().flat(i) == doctest::Approx(before.flat(i) - 0.01 * c.flat(i)));
  DualImportance<double> again({w}, {g});
  again.attach(opt);
  again.detach();
  CHECK(opt.num_pre_step_hooks() == 0);
}

}  // namespace weft_unit_prune_dpruner_test
