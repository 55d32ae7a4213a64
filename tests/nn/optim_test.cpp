// Tests of weft/nn/optim.hpp, weft/core/ops/optim.hpp and weft/nn/schedule.hpp: SGD and
// Adam/AdamW against PyTorch's documented update rules, parameter groups, hooks, clipping, the
// SIMD Adam kernel against the scalar one, schedules, and invalid options.
//
// Reference algorithms (torch.optim docs), for parameter p, gradient g, step t = 1, 2, ...:
//   SGD:   g <- g + wd p;  if mu != 0: b <- (t == 1 ? g : mu b + (1 - dampening) g);
//          g <- nesterov ? g + mu b : b;  p <- p - lr g
//   Adam:  g <- g + wd p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
//          m^ = m / (1 - b1^t);  v^ = v / (1 - b2^t);  p <- p - lr m^ / (sqrt(v^) + eps)
//   AdamW: p <- p (1 - lr wd); then Adam's update without the wd term in g.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/ops/optim.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/schedule.hpp"

namespace weft_unit_nn_optim_test {

using namespace weft;

namespace {

const std::vector<double> p0 = {0.5, -1.25, 2.0, 0.0, -0.3};

/// The gradient used at step t of the reference runs: depends on p (as a real loss would) and t.
double grad_at(double p, std::size_t i, int t) { return 2.0 * p + 0.1 * double(i) - 0.3 * double(t) + 0.05; }

template <class T>
Parameter<T> make_param(const std::vector<double>& v) {
  Tensor<T> t(Shape{index_t(v.size())});
  for (std::size_t i = 0; i < v.size(); ++i) t.flat(index_t(i)) = T(v[i]);
  return Parameter<T>(t, "p");
}

template <class T>
void set_grads(Parameter<T>& p, int t) {
  for (index_t i = 0; i < p.numel(); ++i) p.grad().flat(i) = T(grad_at(double(p.value().flat(i)), std::size_t(i), t));
}

struct SgdRef {
  double lr, mu, damp, wd;
  bool nesterov;
  std::vector<double> p, b;
  void step(int t) {
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = grad_at(p[i], i, t) + wd * p[i];
      if (mu != 0) {
        b[i] = t == 1 ? g : mu * b[i] + (1 - damp) * g;
        g = nesterov ? g + mu * b[i] : b[i];
      }
      p[i] -= lr * g;
    }
  }
};

struct AdamRef {
  double lr, b1, b2, eps, wd;
  bool decoupled;
  std::vector<double> p, m, v;
  void step(int t) {
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = grad_at(p[i], i, t);
      if (decoupled) p[i] *= 1 - lr * wd;
      else g += wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * mh / (std::sqrt(vh) + eps);
    }
  }
};

template <class T>
void check_values(const Parameter<T>& p, const std::vector<double>& ref, double tol) {
  for (std::size_t i = 0; i < ref.size(); ++i) {
    CAPTURE(i);
    CHECK(double(p.value().flat(index_t(i))) == doctest::Approx(ref[i]).epsilon(tol).scale(1.0));
  }
}

template <class T>
constexpr double tol_of() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-13;
}

}  // namespace

TEST_CASE_TEMPLATE("nn/optim: SGD (plain, momentum, dampening, nesterov, weight decay) matches PyTorch's rule", T, float,
                   double) {
  struct Case {
    const char* name;
    double mu, damp, wd;
    bool nesterov;
  };
  const Case cases[] = {{"plain", 0, 0, 0, false},          {"weight decay", 0, 0, 0.1, false},
                        {"momentum", 0.9, 0, 0, false},      {"momentum + dampening", 0.9, 0.3, 0, false},
                        {"nesterov", 0.8, 0, 0, true},       {"nesterov + weight decay", 0.8, 0, 0.05, true},
                        {"momentum + wd + damp", 0.5, 0.5, 0.2, false}};
  for (const Case& c : cases) {
    CAPTURE(c.name);
    Parameter<T> p = make_param<T>(p0);
    nn::SGDOptions o;
    o.lr = 0.1;
    o.momentum = c.mu;
    o.dampening = c.damp;
    o.nesterov = c.nesterov;
    o.weight_decay = c.wd;
    nn::SGD<T> opt({p}, o);
    SgdRef ref{0.1, c.mu, c.damp, c.wd, c.nesterov, p0, std::vector<double>(p0.size())};
    for (int t = 1; t <= 3; ++t) {
      set_grads(p, t);
      opt.step();
      ref.step(t);
      check_values(p, ref.p, tol_of<T>());
    }
    CHECK(opt.steps() == 3);
  }
}

TEST_CASE("nn/optim: SGD first steps by hand") {
  // p = 1, g = 1 every step, lr 0.1, momentum 0.9: b = 1, 1.9, 2.71; p = 0.9, 0.71, 0.439
  Parameter<double> p(Tensor<double>::vector_of({1.0}));
  nn::SGDOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  nn::SGD<double> opt({p}, o);
  const double expected[] = {0.9, 0.71, 0.439};
  for (double e : expected) {
    p.grad().fill(1.0);
    opt.step();
    CHECK(p.value()(0) == doctest::Approx(e).epsilon(1e-14));
  }
}

TEST_CASE_TEMPLATE("nn/optim: Adam and AdamW match PyTorch's rule", T, float, double) {
  struct Case {
    const char* name;
    double wd;
    bool decoupled;
  };
  const Case cases[] = {{"adam", 0, false}, {"adam + L2", 0.1, false}, {"adamw", 0.1, true}, {"adamw, no decay", 0, true}};
  for (const Case& c : cases) {
    CAPTURE(c.name);
    Parameter<T> p = make_param<T>(p0);
    nn::AdamOptions o;
    o.lr = 0.05;
    o.beta1 = 0.8;
    o.beta2 = 0.95;
    o.eps = 1e-6;
    o.weight_decay = c.wd;
    nn::Adam<T> opt({p}, o, c.decoupled);
    AdamRef ref{0.05, 0.8, 0.95, 1e-6, c.wd, c.decoupled, p0, std::vector<double>(5), std::vector<double>(5)};
    for (int t = 1; t <= 3; ++t) {
      set_grads(p, t);
      opt.step();
      ref.step(t);
      check_values(p, ref.p, tol_of<T>());
    }
  }
  // the AdamW class: decoupled decay, default weight decay 0.01 (as PyTorch)
  CHECK(nn::AdamW<T>::defaults().weight_decay == 0.01);
  Parameter<T> p = make_param<T>(p0);
  nn::AdamW<T> opt(std::vector<Parameter<T>>{p});
  CHECK(opt.group_weight_decay(0) == 0.01);
  AdamRef ref{1e-3, 0.9, 0.999, 1e-8, 0.01, true, p0, std::vector<double>(5), std::vector<double>(5)};
  for (int t = 1; t <= 3; ++t) {
    set_grads(p, t);
    opt.step();
    ref.step(t);
    check_values(p, ref.p, tol_of<T>());
  }
}

TEST_CASE("nn/optim: Adam's first step moves every coordinate by about lr") {
  // m^ = g and v^ = g^2 at t = 1, so the step is lr g / (|g| + eps) = lr sign(g)
  Parameter<double> p(Tensor<double>::vector_of({1.0, -2.0, 3.0}));
  p.grad().flat(0) = 0.5;
  p.grad().flat(1) = -1e-3;
  p.grad().flat(2) = 40.0;
  nn::AdamOptions o;
  o.lr = 0.01;
  o.eps = 1e-12;
  nn::Adam<double> opt({p}, o);
  opt.step();
  CHECK(p.value()(0) == doctest::Approx(0.99).epsilon(1e-9));
  CHECK(p.value()(1) == doctest::Approx(-1.99).epsilon(1e-9));
  CHECK(p.value()(2) == doctest::Approx(2.99).epsilon(1e-9));
}

TEST_CASE("nn/optim: Adam counts steps per parameter (a parameter unfrozen late starts afresh)") {
  // q is frozen for 3 steps, then trained: its first update must be the t = 1 update, lr sign(g),
  // not one bias-corrected with t = 4 (which would be (1 - b1) / (1 - b1^4) / sqrt(...) smaller)
  Parameter<double> p(Tensor<double>::vector_of({0.0})), q(Tensor<double>::vector_of({1.0}));
  nn::AdamOptions o;
  o.lr = 0.01;
  o.eps = 1e-12;
  nn::Adam<double> opt(std::vector<Parameter<double>>{p, q}, o);
  q.set_requires_grad(false);
  for (int i = 0; i < 3; ++i) {
    p.grad().flat(0) = 1.0;
    opt.step();
  }
  q.set_requires_grad(true);
  q.grad().flat(0) = 2.0;
  opt.step();
  CHECK(q.value()(0) == doctest::Approx(0.99).epsilon(1e-9));
}

TEST_CASE("nn/optim: parameter groups with their own learning rate and weight decay") {
  SUBCASE("LoRA+-style: B trains with 16x the rate of A") {
    Parameter<double> a(Tensor<double>::vector_of({1.0, 2.0}), "A"), b(Tensor<double>::vector_of({1.0, 2.0}), "B");
    std::vector<nn::ParamGroup<double>> groups(2);
    groups[0].params = {a};
    groups[0].name = "A";
    groups[1].params = {b};
    groups[1].lr = 0.16;
    groups[1].name = "B";
    nn::SGDOptions o;
    o.lr = 0.01;
    nn::SGD<double> opt(groups, o);
    CHECK(opt.group_lr(0) == 0.01);
    CHECK(opt.group_lr(1) == 0.16);
    CHECK(opt.parameters().size() == 2);
    a.grad().fill(1.0);
    b.grad().fill(1.0);
    opt.step();
    CHECK(a.value()(0) == doctest::Approx(0.99));
    CHECK(b.value()(0) == doctest::Approx(0.84));
    // a schedule factor scales every group and keeps their ratio
    opt.set_lr_factor(0.5);
    CHECK(opt.lr_factor() == 0.5);
    CHECK(opt.group_lr(0) == 0.005);
    CHECK(opt.group_lr(1) == 0.08);
    opt.step();
    CHECK(a.value()(0) == doctest::Approx(0.985));
    CHECK(b.value()(0) == doctest::Approx(0.76));
    // the base rate changes only the groups without their own
    opt.set_base_lr(0.02);
    CHECK(opt.base_lr() == 0.02);
    CHECK(opt.group_lr(0) == 0.01);
    CHECK(opt.group_lr(1) == 0.08);
  }
  SUBCASE("weight decay override (AdamW without decay on one group)") {
    Parameter<double> w(Tensor<double>::vector_of({2.0})), n(Tensor<double>::vector_of({2.0}));
    std::vector<nn::ParamGroup<double>> groups(2);
    groups[0].params = {w};
    groups[1].params = {n};
    groups[1].weight_decay = 0.0;
    nn::AdamOptions o;
    o.lr = 0.1;
    o.weight_decay = 0.5;
    nn::AdamW<double> opt(groups, o);
    CHECK(opt.group_weight_decay(0) == 0.5);
    CHECK(opt.group_weight_decay(1) == 0.0);
    opt.step();  // zero gradients: only the decoupled decay moves w
    CHECK(w.value()(0) == doctest::Approx(2.0 * (1 - 0.1 * 0.5)).epsilon(1e-14));
    CHECK(n.value()(0) == 2.0);
  }
  SUBCASE("Adam's step scales with the group learning rate times lr_factor") {
    Parameter<double> a(Tensor<double>::vector_of({0.0})), b(Tensor<double>::vector_of({0.0}));
    std::vector<nn::ParamGroup<double>> groups(2);
    groups[0].params = {a};
    groups[1].params = {b};
    groups[1].lr = 0.4;
    nn::AdamOptions o;
    o.lr = 0.1;
    o.eps = 1e-12;
    nn::Adam<double> opt(groups, o);
    opt.set_lr_factor(0.25);
    a.grad().fill(3.0);
    b.grad().fill(3.0);
    opt.step();
    CHECK(a.value()(0) == doctest::Approx(-0.025).epsilon(1e-9));
    CHECK(b.value()(0) == doctest::Approx(-0.1).epsilon(1e-9));
  }
}

TEST_CASE("nn/optim: parameters with requires_grad == false are not updated") {
  Parameter<double> frozen(Tensor<double>::vector_of({1.0, 2.0})), live(Tensor<double>::vector_of({1.0, 2.0}));
  frozen.set_requires_grad(false);
  nn::SGDOptions so;
  so.lr = 0.1;
  so.momentum = 0.9;
  so.weight_decay = 0.1;
  nn::AdamOptions ao;
  ao.weight_decay = 0.1;
  nn::SGD<double> sgd({frozen, live}, so);
  nn::Adam<double> adam({frozen, live}, ao);
  nn::AdamW<double> adamw({frozen, live}, ao);
  for (nn::Optimizer<double>* opt : {static_cast<nn::Optimizer<double>*>(&sgd), static_cast<nn::Optimizer<double>*>(&adam),
                                     static_cast<nn::Optimizer<double>*>(&adamw)}) {
    frozen.grad().fill(1.0);  // a stale gradient must not move it either
    live.grad().fill(1.0);
    opt->step();
  }
  CHECK(frozen.value()(0) == 1.0);
  CHECK(frozen.value()(1) == 2.0);
  CHECK(live.value()(0) != 1.0);
}

TEST_CASE("nn/optim: pre- and post-step hooks run in order around the update") {
  Parameter<double> p(Tensor<double>::vector_of({1.0, 1.0}));
  nn::SGDOptions o;
  o.lr = 0.5;
  nn::SGD<double> opt({p}, o);
  std::vector<std::string> log;
  nn::HookHandle h1 = opt.add_pre_step_hook([&](nn::Optimizer<double>& op) {
    log.push_back("pre" + std::to_string(op.steps()));
    CHECK(p.value()(1) == doctest::Approx(1.0 - 0.5 * double(op.steps())));  // not yet updated
    p.grad().flat(0) = 0;  // freeze element 0 by zeroing its gradient (CGA style)
  });
  nn::HookHandle h2 = opt.add_pre_step_hook([&](nn::Optimizer<double>& op) { log.push_back("pre'" + std::to_string(op.steps())); });
  nn::HookHandle h3 = opt.add_post_step_hook([&](nn::Optimizer<double>& op) {
    log.push_back("post" + std::to_string(op.steps()));
    CHECK(p.value()(1) == doctest::Approx(1.0 - 0.5 * double(op.steps())));  // already updated
  });
  for (int s = 0; s < 2; ++s) {
    p.grad().fill(1.0);
    opt.step();
  }
  const std::vector<std::string> expected = {"pre0", "pre'0", "post1", "pre1", "pre'1", "post2"};
  CHECK(log == expected);
  CHECK(p.value()(0) == 1.0);
  CHECK(p.value()(1) == doctest::Approx(0.0));
}

TEST_CASE("nn/optim: add_pre_step_hook_first runs before the hooks installed earlier, and its handle removes it") {
  Parameter<double> p(Tensor<double>::vector_of({1.0}));
  nn::SGD<double> opt({p}, nn::SGDOptions{});
  std::vector<std::string> log;
  nn::HookHandle a = opt.add_pre_step_hook([&](nn::Optimizer<double>&) { log.push_back("a"); });
  nn::HookHandle first = opt.add_pre_step_hook_first([&](nn::Optimizer<double>&) { log.push_back("first"); });
  nn::HookHandle b = opt.add_pre_step_hook([&](nn::Optimizer<double>&) { log.push_back("b"); });
  opt.step();
  CHECK(log == std::vector<std::string>{"first", "a", "b"});
  first.remove();
  log.clear();
  opt.step();
  CHECK(log == std::vector<std::string>{"a", "b"});
  CHECK(opt.num_pre_step_hooks() == 2);
}

TEST_CASE("nn/optim: a post-step hook that restores a value keeps it restored") {
  Parameter<double> p(Tensor<double>::vector_of({0.25, 0.5, 0.75}));
  nn::AdamOptions o;
  o.lr = 0.1;
  nn::Adam<double> opt({p}, o);
  const double kept = p.value()(1);
  nn::HookHandle h = opt.add_post_step_hook([&](nn::Optimizer<double>&) { p.value().flat(1) = kept; });
  for (int s = 0; s < 5; ++s) {
    p.grad().fill(1.0);
    opt.step();
    CHECK(p.value()(1) == kept);
  }
  CHECK(p.value()(0) < 0.25 - 0.4);
  CHECK(p.value()(2) < 0.75 - 0.4);
}

TEST_CASE("nn/optim: zero_grad clears every group's gradients") {
  Parameter<double> a(Tensor<double>::vector_of({1.0, 2.0})), b(Tensor<double>::vector_of({3.0}));
  std::vector<nn::ParamGroup<double>> groups(2);
  groups[0].params = {a};
  groups[1].params = {b};
  nn::SGD<double> opt(groups);
  a.grad().fill(4.0);
  b.grad().fill(-1.0);
  opt.zero_grad();
  CHECK(a.grad().array().abs().sum() == 0);
  CHECK(b.grad().array().abs().sum() == 0);
  CHECK(a.value()(1) == 2.0);
}

TEST_CASE_TEMPLATE("nn/optim: clip_grad_norm", T, float, double) {
  Parameter<T> a(Tensor<T>(Shape{2})), b(Tensor<T>(Shape{1}));
  auto set = [&]() {
    a.grad().flat(0) = T(3);
    a.grad().flat(1) = T(4);
    b.grad().flat(0) = T(12);
  };
  SUBCASE("returns the norm before clipping and scales to max_norm") {
    set();
    CHECK(nn::clip_grad_norm<T>({a, b}, 6.5) == doctest::Approx(13.0));
    CHECK(double(a.grad()(0)) == doctest::Approx(1.5).epsilon(1e-6));
    CHECK(double(a.grad()(1)) == doctest::Approx(2.0).epsilon(1e-6));
    CHECK(double(b.grad()(0)) == doctest::Approx(6.0).epsilon(1e-6));
    const double n2 = double(a.grad().array().square().sum() + b.grad().array().square().sum());
    CHECK(std::sqrt(n2) <= 6.5);
    CHECK(std::sqrt(n2) == doctest::Approx(6.5).epsilon(1e-6));
  }
  SUBCASE("no-op below (and at) max_norm") {
    set();
    CHECK(nn::clip_grad_norm<T>({a, b}, 20.0) == doctest::Approx(13.0));
    CHECK(a.grad()(0) == T(3));
    CHECK(a.grad()(1) == T(4));
    CHECK(b.grad()(0) == T(12));
    CHECK(nn::clip_grad_norm<T>({a, b}, 13.0) == doctest::Approx(13.0));
    CHECK(b.grad()(0) == T(12));
  }
  SUBCASE("a non-finite norm leaves the gradients untouched") {
    set();
    b.grad().flat(0) = std::numeric_limits<T>::infinity();
    CHECK(std::isinf(nn::clip_grad_norm<T>({a, b}, 1.0)));
    CHECK(a.grad()(0) == T(3));
    b.grad().flat(0) = std::numeric_limits<T>::quiet_NaN();
    CHECK(std::isnan(nn::clip_grad_norm<T>({a, b}, 1.0)));
    CHECK(a.grad()(1) == T(4));
  }
  SUBCASE("large finite gradients (squares beyond the scalar's range) are still clipped") {
    a.grad().fill(T(3e20));
    b.grad().fill(T(4e20));
    a.grad().flat(1) = T(0);
    const double n = nn::clip_grad_norm<T>({a, b}, 1.0);
    CHECK(n == doctest::Approx(5e20).epsilon(1e-6));
    CHECK(double(a.grad()(0)) == doctest::Approx(0.6).epsilon(1e-5));
    CHECK(double(b.grad()(0)) == doctest::Approx(0.8).epsilon(1e-5));
  }
  SUBCASE("max_norm must be positive") {
    set();
    WEFT_NN_CHECK_FAILS(nn::clip_grad_norm<T>({a, b}, 0.0), ValueError, "nn::clip_grad_norm");
    WEFT_NN_CHECK_FAILS(nn::clip_grad_norm<T>({a, b}, -1.0), ValueError, "nn::clip_grad_norm");
    CHECK(b.grad()(0) == T(12));
  }
}

#if WEFT_USE_XSIMD
TEST_CASE_TEMPLATE("nn/optim: SIMD Adam kernel equals the scalar kernel", T, float, double) {
  Rng rng(11);
  const index_t W = simd::width<T>;
  const index_t lengths[] = {0, 1, 3, W - 1, W, W + 1, 2 * W + 3, 7 * W + W / 2 + 1, 257};
  ops::AdamStep s{};
  s.lr = 0.01;
  s.beta1 = 0.9;
  s.beta2 = 0.999;
  s.eps = 1e-8;
  s.l2 = 0.01;
  s.decoupled = 0.02;
  for (index_t n : lengths) {
    if (n < 0) continue;
    CAPTURE(n);
    Tensor<T> p = test::randn<T>({n}, rng), g = test::randn<T>({n}, rng), m = test::randn<T>({n}, rng, 0.0, 0.1);
    Tensor<T> v = test::rand_uniform<T>({n}, rng, 0.0, 0.5);
    Tensor<T> p2 = p.clone(), m2 = m.clone(), v2 = v.clone();
    for (int t = 1; t <= 3; ++t) {
      s.bias1 = 1 - std::pow(s.beta1, t);
      s.bias2 = 1 - std::pow(s.beta2, t);
      const Tensor<T> before = p.clone();
      ops::adam_update_simd(p.data(), g.data(), m.data(), v.data(), n, s);
      ops::adam_update_scalar(p2.data(), g.data(), m2.data(), v2.data(), n, s);
      for (index_t i = 0; i < n; ++i) {
        CAPTURE(i);
        // p - step: allow a few ulp of the larger of the two terms (cancellation)
        CHECK(nn_test::close_ulps(p.flat(i), p2.flat(i), 8, double(std::abs(before.flat(i))) + 1.0));
        CHECK(nn_test::close_ulps(m.flat(i), m2.flat(i), 4, double(std::abs(g.flat(i)))));
        CHECK(nn_test::close_ulps(v.flat(i), v2.flat(i), 4));
      }
    }
    // and the dispatching entry point takes one of the two paths
    Tensor<T> p3 = p.clone(), m3 = m.clone(), v3 = v.clone(), p4 = p.clone(), m4 = m.clone(), v4 = v.clone();
    ops::adam_update(p3.data(), g.data(), m3.data(), v3.data(), n, s);
    if constexpr (simd::active<T>) ops::adam_update_simd(p4.data(), g.data(), m4.data(), v4.data(), n, s);
    else ops::adam_update_scalar(p4.data(), g.data(), m4.data(), v4.data(), n, s);
    CHECK(test::identical(p3, p4));
    CHECK(test::identical(v3, v4));
  }
}
#endif

TEST_CASE("nn/schedule: constant and step") {
  nn::Schedule c = nn::constant_schedule();
  CHECK(c(0) == 1.0);
  CHECK(c(1000000) == 1.0);
  nn::Schedule s = nn::step_schedule(3, 0.5);
  const double expected[] = {1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125};
  for (int i = 0; i < 10; ++i) {
    CAPTURE(i);
    CHECK(s(i) == expected[i]);
  }
}

TEST_CASE("nn/schedule: cosine with warm-up: endpoints and midpoint") {
  nn::Schedule s = nn::cosine_schedule(10, 2, 0.1);
  CHECK(s(0) == doctest::Approx(0.5));  // linear warm-up (s + 1) / warmup
  CHECK(s(1) == doctest::Approx(1.0));
  CHECK(s(2) == doctest::Approx(1.0));  // start of the cosine
  CHECK(s(6) == doctest::Approx(0.1 + 0.9 * 0.5));  // midpoint of the cosine
  CHECK(s(9) == doctest::Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(3.141592653589793 * 7.0 / 8.0))));
  CHECK(s(10) == doctest::Approx(0.1));
  CHECK(s(1000) == doctest::Approx(0.1));
  for (int i = 2; i < 12; ++i) CHECK(s(i + 1) <= s(i));  // non-increasing after warm-up
  nn::Schedule plain = nn::cosine_schedule(4);
  CHECK(plain(0) == doctest::Approx(1.0));
  CHECK(plain(2) == doctest::Approx(0.5));
  CHECK(plain(4) == doctest::Approx(0.0));
}

TEST_CASE("nn/schedule: one-cycle start, peak and end") {
  // total 101, pct_start 0.3: the peak is at step 0.3 * 100 = 30
  nn::Schedule s = nn::one_cycle_schedule(101, 0.3, 25.0, 1e4);
  CHECK(s(0) == doctest::Approx(1.0 / 25));
  CHECK(s(15) == doctest::Approx((1.0 / 25 + 1.0) / 2));  // middle of the rise
  CHECK(s(30) == doctest::Approx(1.0));
  CHECK(s(65) == doctest::Approx((1.0 + 1.0 / 25 / 1e4) / 2));  // middle of the fall
  CHECK(s(100) == doctest::Approx(1.0 / 25 / 1e4));
  CHECK(s(500) == doctest::Approx(1.0 / 25 / 1e4));
  double peak = 0;
  for (int i = 0; i <= 100; ++i) peak = std::max(peak, s(i));
  CHECK(peak == doctest::Approx(1.0));
  for (int i = 0; i < 30; ++i) CHECK(s(i + 1) >= s(i));
  for (int i = 30; i < 100; ++i) CHECK(s(i + 1) <= s(i));
}

TEST_CASE("nn/schedule: invalid options are ValueErrors naming the function") {
  WEFT_NN_CHECK_FAILS(nn::step_schedule(0, 0.5), ValueError, "nn::step_schedule");
  WEFT_NN_CHECK_FAILS(nn::step_schedule(3, 0.0), ValueError, "nn::step_schedule");
  WEFT_NN_CHECK_FAILS(nn::cosine_schedule(0), ValueError, "nn::cosine_schedule");
  WEFT_NN_CHECK_FAILS(nn::cosine_schedule(10, 10), ValueError, "nn::cosine_schedule");
  WEFT_NN_CHECK_FAILS(nn::cosine_schedule(10, -1), ValueError, "nn::cosine_schedule");
  WEFT_NN_CHECK_FAILS(nn::cosine_schedule(10, 2, 1.5), ValueError, "nn::cosine_schedule");
  WEFT_NN_CHECK_FAILS(nn::cosine_schedule(10, 2, -0.1), ValueError, "nn::cosine_schedule");
  WEFT_NN_CHECK_FAILS(nn::one_cycle_schedule(1), ValueError, "nn::one_cycle_schedule");
  WEFT_NN_CHECK_FAILS(nn::one_cycle_schedule(10, 0.0), ValueError, "nn::one_cycle_schedule");
  WEFT_NN_CHECK_FAILS(nn::one_cycle_schedule(10, 1.0), ValueError, "nn::one_cycle_schedule");
  WEFT_NN_CHECK_FAILS(nn::one_cycle_schedule(10, 0.3, 0.5), ValueError, "nn::one_cycle_schedule");
  WEFT_NN_CHECK_FAILS(nn::one_cycle_schedule(10, 0.3, 25, 0.5), ValueError, "nn::one_cycle_schedule");
}

TEST_CASE("nn/optim: invalid options are errors naming the optimiser") {
  Parameter<double> p(Tensor<double>::vector_of({1.0}));
  const std::vector<Parameter<double>> ps = {p};
  auto sgd = [&](double lr, double mu, double damp, bool nesterov, double wd) {
    nn::SGDOptions o;
    o.lr = lr;
    o.momentum = mu;
    o.dampening = damp;
    o.nesterov = nesterov;
    o.weight_decay = wd;
    nn::SGD<double> opt(ps, o);
  };
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  WEFT_NN_CHECK_FAILS(sgd(-0.1, 0, 0, false, 0), ValueError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(sgd(nan, 0, 0, false, 0), ValueError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(sgd(inf, 0, 0, false, 0), ValueError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(sgd(0.1, 1.0, 0, false, 0), ValueError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(sgd(0.1, -0.5, 0, false, 0), ValueError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(sgd(0.1, 0.9, 1.5, false, 0), ValueError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(sgd(0.1, 0, 0, true, 0), ConfigError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(sgd(0.1, 0.9, 0.1, true, 0), ConfigError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(sgd(0.1, 0, 0, false, -1), ValueError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(sgd(0.1, 0, 0, false, nan), ValueError, "nn::SGD");
  CHECK_NOTHROW(sgd(0.0, 0.9, 0.0, true, 0.0));

  auto adam = [&](double b1, double b2, double eps, bool decoupled) {
    nn::AdamOptions o;
    o.beta1 = b1;
    o.beta2 = b2;
    o.eps = eps;
    nn::Adam<double> opt(ps, o, decoupled);
  };
  WEFT_NN_CHECK_FAILS(adam(1.0, 0.999, 1e-8, false), ValueError, "nn::Adam");
  WEFT_NN_CHECK_FAILS(adam(0.9, 1.0, 1e-8, false), ValueError, "nn::Adam");
  WEFT_NN_CHECK_FAILS(adam(-0.1, 0.999, 1e-8, false), ValueError, "nn::Adam");
  WEFT_NN_CHECK_FAILS(adam(0.9, 0.999, 0.0, false), ValueError, "nn::Adam");
  WEFT_NN_CHECK_FAILS(adam(0.9, 0.999, 0.0, true), ValueError, "nn::AdamW");
  nn::AdamOptions bad_lr;
  bad_lr.lr = -1;
  WEFT_NN_CHECK_FAILS(nn::AdamW<double>(ps, bad_lr), ValueError, "nn::AdamW");

  // groups: none at all, an undefined parameter, bad per-group overrides
  WEFT_NN_CHECK_FAILS(nn::SGD<double>(std::vector<nn::ParamGroup<double>>{}), ConfigError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(nn::SGD<double>(std::vector<Parameter<double>>{Parameter<double>()}), ConfigError, "nn::SGD");
  std::vector<nn::ParamGroup<double>> g(1);
  g[0].params = ps;
  g[0].lr = -0.5;
  WEFT_NN_CHECK_FAILS((void)nn::Adam<double>(g), ValueError, "nn::Adam");
  g[0].lr = std::nullopt;
  g[0].weight_decay = -0.5;
  WEFT_NN_CHECK_FAILS((void)nn::Adam<double>(g), ValueError, "nn::Adam");
  g[0].weight_decay = inf;
  WEFT_NN_CHECK_FAILS((void)nn::Adam<double>(g), ValueError, "nn::Adam");
  g[0].weight_decay = nan;
  WEFT_NN_CHECK_FAILS((void)nn::Adam<double>(g), ValueError, "nn::Adam");

  nn::SGD<double> opt(ps);
  WEFT_NN_CHECK_FAILS(opt.set_lr_factor(-1), ValueError, "nn::Optimizer::set_lr_factor");
  WEFT_NN_CHECK_FAILS(opt.set_lr_factor(nan), ValueError, "nn::Optimizer::set_lr_factor");
  WEFT_NN_CHECK_FAILS(opt.set_base_lr(-1), ValueError, "nn::Optimizer::set_base_lr");
  CHECK(opt.lr_factor() == 1.0);
  CHECK(opt.base_lr() == 0.01);
}

TEST_CASE("nn/optim: a parameter listed twice or in two groups, or no parameter at all, is a ConfigError") {
  Parameter<double> a(Tensor<double>(Shape{2}, 1.0), "a"), b(Tensor<double>(Shape{3}, 1.0), "b");
  WEFT_NN_CHECK_FAILS(nn::SGD<double>(std::vector<Parameter<double>>{}), ConfigError, "nn::SGD");
  WEFT_NN_CHECK_FAILS(nn::Adam<double>(std::vector<Parameter<double>>{a, b, a}), ConfigError, "nn::Adam");
  Parameter<double> alias = a;  // another handle of the same parameter
  WEFT_NN_CHECK_FAILS(nn::AdamW<double>(std::vector<Parameter<double>>{a, alias}), ConfigError, "nn::AdamW");
  std::vector<nn::ParamGroup<double>> g(2);
  g[0].params = {a};
  g[1].params = {b, a};
  g[1].lr = 0.1;
  CHECK_THROWS_WITH_AS((void)nn::SGD<double>(g), doctest::Contains("'a' in group 0 and again in group 1"), ConfigError);
  std::vector<nn::ParamGroup<double>> empty(2);
  WEFT_NN_CHECK_FAILS((void)nn::SGD<double>(empty), ConfigError, "nn::SGD");
  // each parameter once: one step moves a by exactly lr * grad
  g[1].params = {b};
  nn::SGD<double> opt(g);
  a.grad().fill(1.0);
  opt.step();
  CHECK(a.value().flat(0) == doctest::Approx(1.0 - 0.01));
  nn::AdamOptions inf_eps;
  inf_eps.eps = std::numeric_limits<double>::infinity();
  WEFT_NN_CHECK_FAILS(nn::Adam<double>(std::vector<Parameter<double>>{a}, inf_eps), ValueError, "nn::Adam");
}

}  // namespace weft_unit_nn_optim_test
