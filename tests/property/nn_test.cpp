// Property tests of weft/nn: Linear, MLP, LayerNorm, MultiHeadAttention and TransformerBlock
// (constructors and forward/backward), the optimisers' options and steps, and the Trainer's
// options and fit loop, on random, mismatched, empty and extreme input. See
// tests/property/property.hpp for the property and how to rerun a failing case.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "property/property.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd.hpp"
#include "weft/nn/attention.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"

namespace weft_unit_property_nn_test {

using namespace weft;
namespace prop = weft::test::prop;

namespace {

const std::vector<long long> bad_extents{0, -1, -7};
auto positive = [](long long v) { return v > 0; };

/// forward(x) on a fresh tape, then backward of sum(y): y has `expected` shape, every parameter
/// gradient is finite and shaped like its parameter. The model and x are watched.
template <class T, class M>
void forward_backward(prop::Gen& g, M& model, const Tensor<T>& x, const Shape& expected) {
  prop::Watch w;
  w.add(x, "x").add(model);
  prop::check(g, w, [&] {
    Tape<T> tape;
    model.zero_grad();
    Var<T> y = model(tape.constant(x));
    prop::expect_result(g, y.value(), expected);
    tape.backward(sum(y));
    for (auto& p : model.parameters()) prop::expect_result(g, p.grad(), p.shape());
  });
}

template <class T>
void layers(std::uint64_t seed) {
  prop::run("nn/Linear, MLP, LayerNorm", seed, 300, [](prop::Gen& g) {
    const int which = g.pick(3);
    g.note("layer (Linear MLP LayerNorm)", which);
    const index_t rows = g.extent(4);
    if (which == 0) {
      index_t in = index_t(g.integer("in", 1, 6, 0.08, bad_extents, positive));
      index_t out = index_t(g.integer("out", 1, 6, 0.08, bad_extents, positive));
      if (g.chance(0.02)) {
        in = out = index_t(1) << 32;  // in * out overflows index_t
        g.set_bad_option("in * out overflows");
      }
      const bool bias = g.chance(0.5);
      std::unique_ptr<nn::Linear<T>> lin;
      if (!prop::construct(g, [&] { lin = std::make_unique<nn::Linear<T>>(in, out, g.rng, bias); })) return;
      const Shape xs = g.chance(0.3) ? Shape{g.near(in, "x width")} : Shape{rows, g.extent(2), g.near(in, "x width")};
      forward_backward<T>(g, *lin, g.tensor<T>(xs, "x"), xs.with(-1, out));
    } else if (which == 1) {
      std::vector<index_t> sizes(std::size_t(g.pick(4)));
      for (auto& s : sizes) s = index_t(g.integer("size", 1, 5, 0.06, bad_extents, positive));
      if (sizes.size() < 2) g.set_bad_option("fewer than two sizes");
      std::unique_ptr<nn::MLP<T>> mlp;
      if (!prop::construct(g, [&] { mlp = std::make_unique<nn::MLP<T>>(sizes, g.rng, nn::Activation(g.pick(3))); })) return;
      const Shape xs{rows, g.near(sizes.front(), "x width")};
      forward_backward<T>(g, *mlp, g.tensor<T>(xs, "x"), Shape{rows, sizes.back()});
    } else {
      const index_t dim = index_t(g.integer("dim", 1, 6, 0.08, bad_extents, positive));
      const double eps = g.real("eps", 1e-6, 1e-3, 0.1, [](double e) { return e >= 0 && std::isfinite(e); });
      if (eps == 0) g.set_exotic();  // zero-variance rows give 0/0 = NaN with eps = 0 (see core_test.cpp)
      std::unique_ptr<nn::LayerNorm<T>> ln;
      if (!prop::construct(g, [&] { ln = std::make_unique<nn::LayerNorm<T>>(dim, real_t<T>(eps)); })) return;
      const Shape xs{rows, g.near(dim, "x width")};
      forward_backward<T>(g, *ln, g.tensor<T>(xs, "x"), xs);
    }
  });
}

template <class T>
void attention(std::uint64_t seed) {
  prop::run("nn/MultiHeadAttention, TransformerBlock", seed, 200, [](prop::Gen& g) {
    const index_t dim = index_t(g.integer("dim", 1, 8, 0.06, bad_extents, positive));
    const index_t heads = index_t(g.integer("heads", 1, 4, 0.06, bad_extents, positive));
    if (dim > 0 && heads > 0 && dim % heads != 0) g.set_bad_option("dim not divisible by heads");
    const bool block = g.chance(0.4);
    const Shape xs{g.extent(3), g.extent(4), g.near(dim, "x width")};
    if (block) {
      const index_t ratio = index_t(g.integer("mlp_ratio", 1, 3, 0.1, {0, -2}, positive));
      std::unique_ptr<nn::TransformerBlock<T>> b;
      if (!prop::construct(g, [&] { b = std::make_unique<nn::TransformerBlock<T>>(dim, heads, ratio, g.rng); })) return;
      forward_backward<T>(g, *b, g.tensor<T>(xs, "x"), xs);
    } else {
      std::unique_ptr<nn::MultiHeadAttention<T>> a;
      if (!prop::construct(g, [&] { a = std::make_unique<nn::MultiHeadAttention<T>>(dim, heads, g.rng, g.chance(0.5)); }))
        return;
      forward_backward<T>(g, *a, g.tensor<T>(xs, "x"), xs);
    }
  });
}

/// Options valid per the optimisers' docs: lr and weight decay finite >= 0, momentum in [0, 1),
/// dampening in [0, 1] (0 with nesterov, which also needs momentum > 0), betas in [0, 1), eps finite > 0.
template <class T>
void optimisers(std::uint64_t seed) {
  prop::run("nn/SGD, Adam, AdamW: options and steps", seed, 300, [](prop::Gen& g) {
    const int kind = g.pick(3);
    g.note("optimiser (SGD Adam AdamW)", kind);
    auto nonneg = [](double v) { return v >= 0 && std::isfinite(v); };
    std::vector<Parameter<T>> params;
    const int np = g.pick(3);  // 0 parameters must be rejected
    for (int i = 0; i < np; ++i)
      params.emplace_back(g.tensor<T>(Shape{g.extent(3), g.extent(3)}, "parameter"), "p" + std::to_string(i));
    if (np == 0) g.set_bad_option("no parameter");
    if (np > 0 && g.chance(0.05)) {
      params.push_back(params.front());
      g.set_bad_option("a parameter listed twice");
    }
    for (auto& p : params) p.grad().copy_from(g.tensor<T>(p.shape(), "gradient"));
    std::vector<nn::ParamGroup<T>> groups(1);
    groups[0].params = params;
    if (g.chance(0.2)) groups[0].lr = g.real("group lr", 0, 0.1, 0.3, nonneg);
    const double lr = g.real("lr", 0, 0.1, 0.1, nonneg);
    const double wd = g.real("weight_decay", 0, 0.1, 0.1, nonneg);
    std::unique_ptr<nn::Optimizer<T>> opt;
    bool ok;
    if (kind == 0) {
      nn::SGDOptions o;
      o.lr = lr;
      o.weight_decay = wd;
      o.momentum = g.real("momentum", 0, 0.99, 0.1, [](double m) { return m >= 0 && m < 1; });
      o.dampening = g.chance(0.5) ? 0.0 : g.real("dampening", 0, 1, 0.1, [](double d) { return d >= 0 && d <= 1; });
      o.nesterov = g.chance(0.3);
      if (o.nesterov && !(o.momentum > 0 && o.dampening == 0)) g.set_bad_option("nesterov without momentum");
      ok = prop::construct(g, [&] { opt = std::make_unique<nn::SGD<T>>(groups, o); });
    } else {
      nn::AdamOptions o;
      o.lr = lr;
      o.weight_decay = wd;
      o.beta1 = g.real("beta1", 0, 0.99, 0.1, [](double b) { return b >= 0 && b < 1; });
      o.beta2 = g.real("beta2", 0, 0.999, 0.1, [](double b) { return b >= 0 && b < 1; });
      o.eps = g.real("eps", 1e-10, 1e-6, 0.1, [](double e) { return e > 0 && std::isfinite(e); });
      ok = prop::construct(g, [&] {
        if (kind == 1) opt = std::make_unique<nn::Adam<T>>(groups, o);
        else opt = std::make_unique<nn::AdamW<T>>(groups, o);
      });
    }
    if (!ok) return;
    prop::Watch none;
    prop::check(g, none, [&] {
      for (int s = 0; s < 3; ++s) opt->step();
      for (auto& p : params) prop::expect_result(g, p.value(), p.shape());
    });
  });
}

template <class T>
void trainer(std::uint64_t seed) {
  prop::run("nn/Trainer: options, fit, accuracy", seed, 150, [](prop::Gen& g) {
    const index_t n = g.extent(12), in = 1 + g.pick(4), classes = 2 + g.pick(3);
    nn::Linear<T> model(in, classes, g.rng);
    nn::TrainerOptions o;
    o.epochs = int(g.integer("epochs", 0, 3, 0.1, {-1, -5}, [](long long e) { return e >= 0; }));
    o.batch_size = index_t(g.integer("batch_size", 1, 8, 0.1, {0, -1}, positive));
    o.clip_norm = g.chance(0.5) ? 0.0 : g.real("clip_norm", 0.1, 5, 0.2, [](double c) { return c >= 0; });
    o.skip_nonfinite = g.chance(0.3);
    o.drop_last = g.chance(0.3);
    o.seed = g.rng.next_u64();
    nn::SGDOptions so;
    so.lr = 0.05;
    nn::SGD<T> opt(model.parameters(), so);
    std::unique_ptr<nn::Trainer<T>> tr;
    if (!prop::construct(g, [&] { tr = std::make_unique<nn::Trainer<T>>(opt, o); })) return;
    Tensor<T> x = g.tensor<T>(Shape{n, in}, "x");
    std::vector<int> y(static_cast<std::size_t>(n));
    for (auto& l : y) l = g.pick(int(classes));
    if (n == 0) g.set_must_fail("no training sample");
    // The strong guarantee of fit: after an error the weights are those after the last step
    // taken (snapshotted by a step callback), the data is untouched.
    std::vector<Tensor<T>> after_last_step;
    for (auto& p : model.parameters()) after_last_step.push_back(p.value().clone());
    tr->on_step([&](const nn::StepInfo&) {
      after_last_step.clear();
      for (auto& p : model.parameters()) after_last_step.push_back(p.value().clone());
    });
    std::vector<int> labels;
    prop::Watch w;
    w.add(x, "x");
    const auto o1 = prop::check(g, w, [&] {
      tr->fit(n, [&](Tape<T>& tape, const std::vector<index_t>& rows) {
        return cross_entropy(model(nn::batch_rows(tape, x, rows)), nn::batch_labels(y, rows, labels));
      });
      for (auto& p : model.parameters()) prop::expect_result(g, p.value(), p.shape());
    });
    if (o1 == prop::Outcome::weft_error) {
      auto ps = model.parameters();
      for (std::size_t i = 0; i < ps.size(); ++i)
        CHECK_MESSAGE(test::identical(ps[i].value(), after_last_step[i]), "fit changed the weights of a failed step");
    }
    // accuracy with some labels out of range
    std::vector<int> yl = y;
    if (!yl.empty() && g.chance(0.2)) {
      yl[std::size_t(g.pick(int(yl.size())))] = g.chance(0.5) ? -1 : int(classes);
      g.set_must_fail("label out of range");
    }
    prop::Watch w2;
    w2.add(x, "x").add(model);
    prop::check(g, w2, [&] {
      const double acc = nn::accuracy<T>([&](Tape<T>&, const Var<T>& xb) { return model(xb); }, x, yl,
                                         index_t(1 + g.pick(4)));
      CHECK(acc >= 0);
      CHECK(acc <= 1);
    });
  });
}

}  // namespace

TEST_CASE("property/nn: Linear, MLP, LayerNorm constructors and forward/backward") {
  layers<double>(101);
  layers<float>(102);
}

TEST_CASE("property/nn: MultiHeadAttention and TransformerBlock") {
  attention<double>(111);
  attention<float>(112);
}

TEST_CASE("property/nn: optimiser options and steps") {
  optimisers<double>(121);
  optimisers<float>(122);
}

TEST_CASE("property/nn: Trainer options, fit and accuracy") {
  trainer<double>(131);
  trainer<float>(132);
}

}  // namespace weft_unit_property_nn_test
