// tests/nn/select_test.cpp - nn::Selector (names, regex, predicate, all; errors listing the
// model's layers), the canonical order of weight transforms (stages, exclusive stages, a
// transform that needs the plain weight) and hooks with owners (HookHandle, HookGroup, an
// optimiser destroyed or moved before its handles).
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

#include "nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/nn/attach.hpp"
#include "weft/nn/attention.hpp"
#include "weft/nn/hooks.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/select.hpp"

using namespace weft;

namespace {

/// The message of the weft::Error that f() throws ("" when it does not throw).
template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> names_of(const std::vector<nn::NamedLinearRef<double>>& ls) {
  std::vector<std::string> out;
  for (auto& l : ls) out.push_back(l.first);
  return out;
}

/// A transform of a chosen stage that records its name into a log when applied, and maps w -> w + c.
struct Tagged : nn::WeightTransform<double> {
  std::string tag;
  nn::TransformStage st;
  double c;
  bool plain;
  std::vector<std::string>* log;
  Tagged(std::string t, nn::TransformStage s, double add, std::vector<std::string>* l, bool needs_plain = false)
      : tag(std::move(t)), st(s), c(add), plain(needs_plain), log(l) {}
  std::string name() const override { return tag; }
  nn::TransformStage stage() const override { return st; }
  bool needs_plain_weight() const override { return plain; }
  Var<double> apply(const Var<double>& w) override {
    if (log) log->push_back(tag);
    return w + c;
  }
};

std::vector<std::string> chain_names(const nn::Linear<double>& l) {
  std::vector<std::string> out;
  for (auto& t : l.transforms()) out.push_back(t->name());
  return out;
}

}  // namespace

TEST_CASE("nn/select: names (exact or dotted suffix), regex (full match), predicate and all, in model order") {
  Rng rng(1);
  nn::MultiHeadAttention<double> attn(8, 2, rng);
  const auto all = names_of(nn::select_linears(attn));
  REQUIRE(all.size() == 4);
  CHECK(names_of(nn::Selector<double>().resolve(attn, "t")) == all);
  CHECK(names_of(nn::Selector<double>(std::vector<std::string>{}).resolve(attn, "t")) == all);  // empty list: all

  const auto qv = names_of(nn::select_linears<double>(attn, {"v_proj", "q_proj"}));
  CHECK(qv == std::vector<std::string>{"q_proj", "v_proj"});  // the model's order, not the list's

  nn::MLP<double> mlp({4, 3, 3, 2}, rng);
  CHECK(names_of(nn::select_linears<double>(mlp, {"layers.1"})) == std::vector<std::string>{"layers.1"});
  CHECK(names_of(nn::select_linears<double>(mlp, {"1"})) == std::vector<std::string>{"layers.1"});  // dotted suffix
  CHECK(names_of(nn::select_linears<double>(mlp, "2")) == std::vector<std::string>{"layers.2"});
  // a regex matches the whole name: "layers\\.[01]" picks two layers, "[01]" none (no full match)
  CHECK(names_of(nn::select_linears(mlp, nn::Selector<double>::regex("layers\\.[01]"))) ==
        std::vector<std::string>{"layers.0", "layers.1"});
  WEFT_NN_CHECK_FAILS(nn::select_linears(mlp, nn::Selector<double>::regex("[01]")), ConfigError, "nn::select_linears");
  // a predicate on (name, layer): every layer with 3 outputs
  auto three = [](const std::string&, const nn::Linear<double>& l) { return l.out_features() == 3; };
  CHECK(names_of(nn::select_linears<double>(mlp, three)) == std::vector<std::string>{"layers.0", "layers.1"});
  // an empty std::function selects all
  CHECK(names_of(nn::select_linears<double>(mlp, nn::Selector<double>::Predicate{})).size() == 3);
  // a model that is itself a Linear: its name is ""
  nn::Linear<double> lin(3, 2, rng);
  CHECK(names_of(nn::select_linears(lin)) == std::vector<std::string>{""});
}

TEST_CASE("nn/select: a missing name or an empty selection is a ConfigError listing the model's layers") {
  Rng rng(2);
  nn::MLP<double> mlp({4, 3, 2}, rng);
  const std::string missing = error_message([&] { nn::select_linears<double>(mlp, {"layers.0", "k_proj"}, "peft::x"); });
  CHECK(missing.find("weft::peft::x: ") == 0);
  CHECK(missing.find("'k_proj'") != std::string::npos);
  CHECK(missing.find("layers.0, layers.1") != std::string::npos);
  auto none = [](const std::string&, const nn::Linear<double>&) { return false; };
  const std::string empty = error_message([&] { nn::select_linears<double>(mlp, none, "quant::y"); });
  CHECK(empty.find("weft::quant::y: ") == 0);
  CHECK(empty.find("a predicate") != std::string::npos);
  CHECK(empty.find("{layers.0, layers.1}") != std::string::npos);
  WEFT_NN_CHECK_FAILS(nn::Selector<double>::regex("("), ConfigError, "nn::Selector::regex");
  // a long list is truncated
  nn::MLP<double> deep(std::vector<index_t>(21, 2), rng);
  const std::string long_msg = error_message([&] { nn::select_linears<double>(deep, none); });
  CHECK(long_msg.find("... and 4 more") != std::string::npos);
}

TEST_CASE("nn/attach: weight transforms keep the canonical stage order whatever the attach order") {
  Rng rng(3);
  using S = nn::TransformStage;
  std::vector<std::string> log;
  const Tensor<double> x = test::randn<double>({2, 3}, rng);
  auto make = [&](int order) {
    nn::Linear<double> l(3, 2, rng);
    std::vector<std::shared_ptr<Tagged>> ts = {
        std::make_shared<Tagged>("mask", S::mask, 0.5, &log), std::make_shared<Tagged>("quant", S::quantizer, 0.25, &log),
        std::make_shared<Tagged>("w1", S::weight, 1.0, &log), std::make_shared<Tagged>("reparam", S::reparam, 2.0, &log),
        std::make_shared<Tagged>("w2", S::weight, 4.0, &log)};
    if (order == 1) std::swap(ts[2], ts[4]);  // w2 before w1: kept within the stage
    if (order == 2) std::reverse(ts.begin(), ts.end());
    for (auto& t : ts) l.add_transform(t);
    return l;
  };
  auto a = make(0);
  CHECK(chain_names(a) == std::vector<std::string>{"reparam", "w1", "w2", "quant", "mask"});
  auto b = make(1);
  CHECK(chain_names(b) == std::vector<std::string>{"reparam", "w2", "w1", "quant", "mask"});
  auto c = make(2);
  CHECK(chain_names(c) == std::vector<std::string>{"reparam", "w2", "w1", "quant", "mask"});
  log.clear();
  {
    Tape<double> t;
    a.effective_weight(t);
  }
  CHECK(log == std::vector<std::string>{"reparam", "w1", "w2", "quant", "mask"});  // applied in chain order
}

TEST_CASE("nn/attach: a second quantiser or compander, or anything before a plain-weight transform, is refused") {
  Rng rng(4);
  using S = nn::TransformStage;
  nn::Linear<double> l(3, 2, rng);
  l.add_transform(std::make_shared<Tagged>("q1", S::quantizer, 0.0, nullptr));
  l.add_transform(std::make_shared<Tagged>("m1", S::mask, 0.0, nullptr));
  l.add_transform(std::make_shared<Tagged>("m2", S::mask, 0.0, nullptr));  // masks compose (a product)
  const auto before = chain_names(l);
  WEFT_NN_CHECK_FAILS(l.add_transform(std::make_shared<Tagged>("q2", S::quantizer, 0.0, nullptr)), ConfigError,
                      "nn::Linear::add_transform");
  CHECK(chain_names(l) == before);
  const std::string msg = error_message([&] { l.add_transform(std::make_shared<Tagged>("q2", S::quantizer, 0.0, nullptr)); });
  CHECK(msg.find("'q2'") != std::string::npos);
  CHECK(msg.find("'q1'") != std::string::npos);
  l.add_transform(std::make_shared<Tagged>("r1", S::reparam, 0.0, nullptr));
  WEFT_NN_CHECK_FAILS(l.add_transform(std::make_shared<Tagged>("r2", S::reparam, 0.0, nullptr)), ConfigError,
                      "nn::Linear::add_transform");
  // a plain-weight transform (BoneAffine-like) follows only its own kind: refused after a reparam ...
  WEFT_NN_CHECK_FAILS(l.add_transform(std::make_shared<Tagged>("bone", S::weight, 0.0, nullptr, true)), ConfigError,
                      "nn::Linear::add_transform");
  // ... and nothing may go before one
  nn::Linear<double> p(3, 2, rng);
  p.add_transform(std::make_shared<Tagged>("bone", S::weight, 0.0, nullptr, true));
  p.add_transform(std::make_shared<Tagged>("q", S::quantizer, 0.0, nullptr));  // after it: fine
  p.add_transform(std::make_shared<Tagged>("bone2", S::weight, 0.0, nullptr, true));  // stacked: they merge in order
  WEFT_NN_CHECK_FAILS(p.add_transform(std::make_shared<Tagged>("r", S::reparam, 0.0, nullptr)), ConfigError,
                      "nn::Linear::add_transform");
  p.add_transform(std::make_shared<Tagged>("w", S::weight, 0.0, nullptr));  // a general map after them
  WEFT_NN_CHECK_FAILS(p.add_transform(std::make_shared<Tagged>("bone3", S::weight, 0.0, nullptr, true)), ConfigError,
                      "nn::Linear::add_transform");
  CHECK(chain_names(p) == std::vector<std::string>{"bone", "bone2", "w", "q"});
}

TEST_CASE("nn/hooks: a step hook runs while its handle lives; handles survive the optimiser and its moves") {
  Parameter<double> p(Tensor<double>::vector_of({1.0, 2.0}));
  int pre = 0, post = 0;
  nn::HookHandle hp, hq;
  {
    nn::SGD<double> opt({p});
    hp = opt.add_pre_step_hook([&](nn::Optimizer<double>&) { ++pre; });
    {
      nn::HookHandle tmp = opt.add_post_step_hook([&](nn::Optimizer<double>&) { ++post; });
      p.grad().fill(1.0);
      opt.step();
      CHECK(opt.num_post_step_hooks() == 1);
    }  // tmp gone: the post hook is removed
    CHECK(opt.num_post_step_hooks() == 0);
    opt.step();
    CHECK(pre == 2);
    CHECK(post == 1);
    // a moved optimiser keeps its hooks and their handles
    hq = opt.add_post_step_hook([&](nn::Optimizer<double>&) { ++post; });
    nn::SGD<double> moved(std::move(opt));
    moved.step();
    CHECK(pre == 3);
    CHECK(post == 2);
    hq.remove();
    moved.step();
    CHECK(post == 2);
    CHECK(hp.active());
  }  // the optimiser dies first
  CHECK_FALSE(hp.active());
  hp.remove();  // inert: no access to the dead optimiser
  static_assert(!std::is_copy_constructible_v<nn::SGD<double>>, "optimisers do not copy (hooks have one owner)");
  static_assert(!std::is_copy_constructible_v<nn::HookHandle>, "handles are move-only");
}

TEST_CASE("nn/hooks: a hook may remove itself or another hook while the hooks run; groups remove together") {
  Parameter<double> p(Tensor<double>::vector_of({1.0}));
  nn::SGD<double> opt({p});
  std::vector<std::string> log;
  nn::HookHandle a, b, c;
  a = opt.add_pre_step_hook([&](nn::Optimizer<double>&) {
    log.push_back("a");
    a.remove();  // itself
  });
  b = opt.add_pre_step_hook([&](nn::Optimizer<double>&) {
    log.push_back("b");
    c.remove();  // a later one: it does not run
  });
  c = opt.add_pre_step_hook([&](nn::Optimizer<double>&) { log.push_back("c"); });
  opt.step();
  opt.step();
  CHECK(log == std::vector<std::string>{"a", "b", "b"});
  nn::HookGroup g;
  g.add(opt.add_post_step_hook([&](nn::Optimizer<double>&) { log.push_back("g1"); }));
  g.add(opt.add_post_step_hook([&](nn::Optimizer<double>&) { log.push_back("g2"); }));
  CHECK(g.active() == 2);
  g.remove();
  CHECK(g.size() == 0);
  CHECK(opt.num_post_step_hooks() == 0);
}
