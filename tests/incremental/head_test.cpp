// Tests of weft/incremental/head.hpp and model.hpp: expansion (old rows copied or re-drawn, new
// rows in U(-b, b), bias), the forward pass and its gradient, the ReLU backbone, building a frozen
// copy with resize_like + nn::copy_parameters, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "nn/nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/incremental/head.hpp"
#include "weft/incremental/model.hpp"

namespace weft_unit_incremental_head_test {

using namespace weft;
using incremental::ExpandableHead;
using incremental::HeadOptions;

#define WEFT_INC_FAILS(expr, type, func) CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

TEST_CASE_TEMPLATE("incremental/head: expand keeps old rows and draws new rows in U(-b, b)", T, float, double) {
  Rng rng(3);
  ExpandableHead<T> head(16);
  CHECK(head.classes() == 0);
  CHECK(head.in_features() == 16);
  CHECK_FALSE(head.has_bias());
  CHECK(head.expand(2, rng) == 2);
  const Tensor<T> first = head.weight.value().clone();
  Parameter<T> handle = head.weight;  // a handle follows the parameter through expansions
  CHECK(head.expand(3, rng) == 5);
  CHECK(handle.shape() == Shape{5, 16});
  CHECK(handle.grad().shape() == Shape{5, 16});
  CHECK(test::identical(head.weight.value().rows(0, 2), first));
  const double b = 1.0 / std::sqrt(16.0);
  CHECK(head.init_bound() == doctest::Approx(b));
  double lo = 1, hi = -1;
  for (index_t i = 0; i < 5 * 16; ++i) {
    lo = std::min(lo, double(head.weight.value().flat(i)));
    hi = std::max(hi, double(head.weight.value().flat(i)));
  }
  CHECK(lo >= -b);
  CHECK(hi <= b);
  CHECK(hi - lo > b);  // the draws spread over the interval
}

TEST_CASE("incremental/head: reinit_head re-draws old rows, bias grows with the rows") {
  HeadOptions o;
  o.bias = true;
  o.reinit_head = true;
  o.init_bound = 0.5;
  Rng rng(4);
  ExpandableHead<double> head(4, o);
  head.expand(2, rng);
  const Tensor<double> w0 = head.weight.value().clone(), b0 = head.bias.value().clone();
  head.expand(1, rng);
  CHECK(head.bias.shape() == Shape{3});
  CHECK_FALSE(test::identical(head.weight.value().rows(0, 2), w0));
  CHECK(head.bias.value().flat(0) != b0.flat(0));
  for (double v : head.weight.value()) CHECK(std::abs(v) <= 0.5);

  HeadOptions keep;
  keep.bias = true;
  ExpandableHead<double> h2(4, keep);
  h2.expand(2, rng);
  const Tensor<double> kb = h2.bias.value().clone();
  h2.expand(2, rng);
  CHECK(h2.bias.value().flat(0) == kb.flat(0));
  CHECK(h2.bias.value().flat(1) == kb.flat(1));
  auto names = h2.named_parameters();
  REQUIRE(names.size() == 2);
  CHECK(names[0].first == "weight");
  CHECK(names[1].first == "bias");
}

TEST_CASE("incremental/head: forward is h W^T + b and its gradient checks") {
  HeadOptions o;
  o.bias = true;
  Rng rng(5);
  ExpandableHead<double> head(3, o);
  head.expand(4, rng);
  const Tensor<double> h = test::randn<double>({5, 3}, rng);
  Tape<double> tape;
  const Tensor<double> y = head(tape.constant(h)).value().clone();
  for (index_t i = 0; i < 5; ++i)
    for (index_t c = 0; c < 4; ++c) {
      double e = head.bias.value().flat(c);
      for (index_t j = 0; j < 3; ++j) e += h(i, j) * head.weight.value()(c, j);
      CHECK(y(i, c) == doctest::Approx(e).epsilon(1e-14));
    }
  const Tensor<double> R = test::randn<double>({5, 4}, rng);
  auto r = nn_test::param_grad_check(head.parameters(), [&](Tape<double>& t) {
    return nn_test::contract(head(t.constant(h)), R);
  });
  WEFT_CHECK_GRAD(r);
}

TEST_CASE("incremental/model: ReLU backbone features are >= 0, He init, frozen copy matches") {
  Rng rng(6);
  auto net = incremental::make_relu_net<double>({8, 32, 16}, rng);
  CHECK(net.backbone.layers.size() == 2);
  for (auto& l : net.backbone.layers) CHECK(l.bias.value().array().abs().maxCoeff() == 0);
  const Tensor<double>& w = net.backbone.layers[0].weight.value();
  const double var = w.array().square().mean();
  CHECK(var == doctest::Approx(2.0 / 8).epsilon(0.25));  // N(0, 2 / fan_in), 256 draws
  net.head().expand(3, rng);
  auto names = net.named_parameters();
  REQUIRE(names.size() == 5);
  CHECK(names[0].first == "backbone.layers.0.weight");
  CHECK(names[4].first == "head.weight");

  const Tensor<double> x = test::randn<double>({7, 8}, rng);
  Tape<double> tape;
  const Tensor<double> h = net.features(tape.constant(x)).value().clone();
  CHECK(h.array().minCoeff() >= 0);
  const Tensor<double> y = net(tape.constant(x)).value().clone();
  CHECK(y.shape() == Shape{7, 3});

  Rng other(99);
  auto copy = incremental::make_relu_net<double>({8, 32, 16}, other);
  copy.head().resize_like(net.head());
  nn::copy_parameters(net, copy);
  CHECK(test::identical(copy(tape.constant(x)).value(), y));
  net.head().weight.value().flat(0) += 1;  // independent storage
  CHECK(copy.head().weight.value().flat(0) != net.head().weight.value().flat(0));
}

TEST_CASE("incremental/head: bad input raises before anything changes") {
  Rng rng(7);
  WEFT_INC_FAILS(ExpandableHead<float>(0), ShapeError, "incremental::ExpandableHead");
  HeadOptions bad;
  bad.init_bound = -1;
  WEFT_INC_FAILS(ExpandableHead<float>(4, bad), ValueError, "incremental::ExpandableHead");
  ExpandableHead<float> head(4);
  Tape<float> tape;
  const Tensor<float> x = test::randn<float>({2, 4}, rng);
  WEFT_INC_FAILS(head(tape.constant(x)), ConfigError, "incremental::ExpandableHead::forward");
  head.expand(2, rng);
  test::Snapshot<float> snap({head.weight.value()});
  WEFT_INC_FAILS(head.expand(0, rng), ValueError, "incremental::ExpandableHead::expand");
  WEFT_INC_FAILS(head.expand(-1, rng), ValueError, "incremental::ExpandableHead::expand");
  CHECK(snap.unchanged());
  CHECK(head.classes() == 2);
  const Tensor<float> x3 = test::randn<float>({2, 3}, rng);
  WEFT_INC_FAILS(head(tape.constant(x3)), ShapeError, "incremental::ExpandableHead::forward");
  ExpandableHead<float> wide(5);
  WEFT_INC_FAILS(wide.resize_like(head), ShapeError, "incremental::ExpandableHead::resize_like");
  ExpandableHead<float> empty;
  WEFT_INC_FAILS(empty.expand(1, rng), ConfigError, "incremental::ExpandableHead::expand");
  WEFT_INC_FAILS(incremental::ReluFeatures<float>({4}, rng), ShapeError, "incremental::ReluFeatures");
  WEFT_INC_FAILS(incremental::ReluFeatures<float>({4, 0}, rng), ShapeError, "incremental::ReluFeatures");
}

}  // namespace weft_unit_incremental_head_test
