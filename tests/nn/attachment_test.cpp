// Tests of weft/nn/attachment.hpp and nn/fold.hpp with toy attachments written here: disabled
// attachments are skipped bit for bit, removal by identity, a record's detach restores a rewritten
// weight and refuses a changed one, and fold merges a linear side path and lists the rest.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/nn/attachment.hpp"
#include "weft/nn/fold.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/linear.hpp"

namespace weft_unit_nn_attachment_test {

using namespace weft;

namespace {

/// W -> 2 W.
template <class T>
struct Twice : nn::WeightTransform<T> {
  std::string name() const override { return "twice"; }
  Var<T> apply(const Var<T>& w) override { return w * T(2); }
};

/// f(x) = x D^T for a fixed D: a linear side path, an "adapter".
template <class T>
struct FixedDelta : nn::SidePath<T> {
  Parameter<T> d;
  explicit FixedDelta(Tensor<T> dw) : d(std::move(dw), "D") {}
  std::string name() const override { return "fixed"; }
  bool is_adapter() const override { return true; }
  Var<T> forward(const Var<T>& x) override { return linear(x, x.tape().param(d)); }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override { out.emplace_back("D", d); }
  bool is_linear() const override { return true; }
  Tensor<T> linear_delta() const override { return d.value().clone(); }
};

/// f(x) = tanh-free non-linear path: x * x summed into the output width (not foldable).
template <class T>
struct Squares : nn::SidePath<T> {
  index_t out;
  explicit Squares(index_t o) : out(o) {}
  std::string name() const override { return "squares"; }
  Var<T> forward(const Var<T>& x) override {
    Tensor<T> ones(Shape{out, x.shape().last()}, T(0.1));
    return linear(x * x, x.tape().constant(ones));
  }
};

template <class T>
Tensor<T> run(nn::Linear<T>& l, const Tensor<T>& x) {
  Tape<T> tape;
  no_grad ng;
  return l(tape.constant(x)).value().clone();
}

}  // namespace

TEST_CASE_TEMPLATE("nn/attachment: disabled attachments are skipped bit for bit; remove by identity", T, float, double) {
  Rng rng(1611);
  nn::Linear<T> l(6, 4, rng);
  const Tensor<T> x = test::randn<T>({3, 6}, rng), y0 = run(l, x);
  auto tw = std::make_shared<Twice<T>>();
  auto sp = std::make_shared<FixedDelta<T>>(test::randn<T>({4, 6}, rng));
  l.add_transform(tw);
  l.add_side_path(sp);
  CHECK(!test::identical(run(l, x), y0));
  tw->set_enabled(false);
  sp->set_enabled(false);
  CHECK(test::identical(run(l, x), y0));
  CHECK(test::identical(l.folded_weight(), l.weight.value()));
  CHECK(l.holds(tw.get()));
  CHECK(l.remove(sp.get()));
  CHECK_FALSE(l.remove(sp.get()));
  CHECK(l.remove_transform(tw.get()));
  CHECK(l.transforms().empty());
  CHECK(l.side_paths().empty());
}

TEST_CASE_TEMPLATE("nn/attachment: detach restores a rewritten weight, refuses a changed one", T, float, double) {
  Rng rng(1612);
  nn::MLP<T> m({5, 5, 3}, rng);
  const Tensor<T> w0 = m.layers[0].weight.value().clone();
  nn::Attachment<T> rec("toy");
  Tensor<T> before = m.layers[0].weight.value().clone();
  m.layers[0].weight.value().array() *= T(0.5);  // the "attach" rewrites the weight ...
  auto tw = std::make_shared<Twice<T>>();       // ... and compensates with a transform
  m.layers[0].add_transform(tw);
  rec.record("layers.0", m.layers[0], std::shared_ptr<nn::WeightTransform<T>>(tw), before);
  rec.seal();
  CHECK(rec.layer_names() == std::vector<std::string>{"layers.0"});
  CHECK(rec.num_trainable() == 0);
  const Tensor<T> after = m.layers[0].weight.value().clone();
  m.layers[0].weight.value()(1, 1) += T(1);  // "training"
  const Tensor<T> changed = m.layers[0].weight.value().clone();
  WEFT_NN_CHECK_FAILS(rec.detach(), ConfigError, "nn::Attachment::detach");
  CHECK(test::identical(m.layers[0].weight.value(), changed));
  CHECK(m.layers[0].transforms().size() == 1);
  CHECK(rec.attached());
  m.layers[0].weight.value().copy_from(after);  // back to what attach left
  rec.detach();
  CHECK(test::identical(m.layers[0].weight.value(), w0));
  CHECK(m.layers[0].transforms().empty());
  CHECK_FALSE(rec.attached());
}

TEST_CASE("nn/fold: a linear side path merges into the folded chain; a non-linear one stays") {
  Rng rng(1613);
  nn::Linear<double> l(6, 4, rng);
  l.add_transform(std::make_shared<Twice<double>>());
  auto sp = std::make_shared<FixedDelta<double>>(test::randn<double>({4, 6}, rng));
  l.add_side_path(sp);
  l.add_side_path(std::make_shared<Squares<double>>(4));
  const Tensor<double> x = test::randn<double>({3, 6}, rng), y = run(l, x);
  Tensor<double> expect = l.weight.value().clone();
  expect.array() = expect.array() * 2.0 + sp->d.value().array();
  const nn::FoldReport rep = nn::fold(l);
  REQUIRE(rep.folded.size() == 2);
  REQUIRE(rep.kept.size() == 1);
  CHECK(rep.kept[0].object == "squares");
  CHECK(rep.kept[0].reason.find("not a linear path") != std::string::npos);
  CHECK(test::identical(l.weight.value(), expect));
  CHECK(l.transforms().empty());
  CHECK(l.side_paths().size() == 1);
  CHECK(test::compare(run(l, x), y, 1e-12).ok);
  // adapters_only keeps the (non-adapter) transform and merges the adapter under it: general
  // weight maps block the merge (the stored weight is not the weight)
  nn::Linear<double> l2(6, 4, rng);
  l2.add_transform(std::make_shared<Twice<double>>());
  l2.add_side_path(std::make_shared<FixedDelta<double>>(test::randn<double>({4, 6}, rng)));
  nn::FoldOptions fo;
  fo.adapters_only = true;
  const nn::FoldReport r2 = nn::fold(l2, {}, fo);
  CHECK(r2.folded.empty());
  REQUIRE(r2.kept.size() == 1);
  CHECK(r2.kept[0].reason.find("'twice', which stays") != std::string::npos);
  fo.require_all = true;
  fo.caller = "test::merge";
  WEFT_NN_CHECK_FAILS(nn::fold(l2, {}, fo), ConfigError, "test::merge");
}

}  // namespace weft_unit_nn_attachment_test
