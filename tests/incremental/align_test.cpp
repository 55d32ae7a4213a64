// Tests of weft/incremental/align.hpp: gamma and the aligned norms on a hand-made head (p = 2 and
// p = 1, the clamp), old rows and bias untouched, a second call is a no-op, clipping after every
// optimiser step keeps the head non-negative and leaves the rest alone, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/incremental/align.hpp"
#include "weft/incremental/model.hpp"
#include "weft/nn/optim.hpp"

namespace weft_unit_incremental_align_test {

using namespace weft;

#define WEFT_INC_FAILS(expr, type, func) CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

namespace {
// old rows (3, 4) and (0, 1): L2 norms 5 and 1 (mean 3), L1 norms 7 and 1 (mean 4);
// new rows (6, 8) and (0, 3): L2 norms 10 and 3 (mean 6.5), L1 norms 14 and 3 (mean 8.5).
template <class T>
Tensor<T> hand_head() {
  return Tensor<T>::from_values({3, 4, 0, 1, 6, 8, 0, 3}, Shape{4, 2});
}
}  // namespace

TEST_CASE_TEMPLATE("incremental/align: gamma and the aligned norms on a hand-made head (p = 2)", T, float, double) {
  Tensor<T> w = hand_head<T>();
  CHECK(incremental::norm_ratio(w, 2) == doctest::Approx(6.5 / 3));
  const auto r = incremental::weight_align(w, 2);
  CHECK(r.applied);
  CHECK(r.gamma == doctest::Approx(3 / 6.5).epsilon(1e-15));
  CHECK(r.mean_norm_old == doctest::Approx(3.0));
  CHECK(r.mean_norm_new == doctest::Approx(6.5));
  CHECK(r.rho_before == doctest::Approx(6.5 / 3));
  const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-14;
  CHECK(std::abs(r.rho_after - 1) <= tol);
  const std::vector<double> n = incremental::row_norms(w, 2);
  CHECK(n[0] == 5);  // old rows untouched
  CHECK(n[1] == 1);
  CHECK(n[2] == doctest::Approx(10 * 3 / 6.5));
  CHECK(n[3] == doctest::Approx(3 * 3 / 6.5));
  CHECK(double(w(2, 0)) == doctest::Approx(6 * 3 / 6.5));
  CHECK((n[2] + n[3]) / 2 == doctest::Approx(3.0));
}

TEST_CASE("incremental/align: p = 1, the gamma <= 1 clamp, and the bias is never scaled") {
  Tensor<double> w = hand_head<double>();
  incremental::AlignOptions o;
  o.norm_p = 1;
  const auto r = incremental::weight_align(w, 2, o);
  CHECK(r.gamma == doctest::Approx(4 / 8.5).epsilon(1e-15));
  const std::vector<double> n1 = incremental::row_norms(w, 1);
  CHECK((n1[2] + n1[3]) / 2 == doctest::Approx(4.0).epsilon(1e-14));
  CHECK(std::abs(r.rho_after - 1) <= 1e-14);

  // new rows smaller than old: gamma = 2 > 1, the clamp keeps the head as it is
  Tensor<double> small = Tensor<double>::from_values({6, 8, 0, 3, 3, 4, 0, 1}, Shape{4, 2});
  const Tensor<double> before = small.clone();
  incremental::AlignOptions c;
  c.clamp_gamma_le_1 = true;
  const auto rc = incremental::weight_align(small, 2, c);
  CHECK(rc.gamma == 1);
  CHECK_FALSE(rc.applied);
  CHECK(test::identical(small, before));
  CHECK(rc.rho_after == doctest::Approx(rc.rho_before));
  CHECK(rc.rho_before == doctest::Approx(3 / 6.5));
  const auto ru = incremental::weight_align(small, 2);  // without the clamp it scales up
  CHECK(ru.gamma == doctest::Approx(6.5 / 3));

  incremental::HeadOptions ho;
  ho.bias = true;
  incremental::ExpandableHead<double> head(2, ho);
  Rng rng(1);
  head.expand(4, rng);
  head.weight.value().copy_from(hand_head<double>());
  head.bias.value().copy_from(Tensor<double>::vector_of({-1, 2, -3, 4}));
  const Tensor<double> bias = head.bias.value().clone();
  const auto rh = incremental::weight_align(head, 2);
  CHECK(rh.gamma == doctest::Approx(3 / 6.5));
  CHECK(test::identical(head.bias.value(), bias));
}

TEST_CASE_TEMPLATE("incremental/align: a second call is a no-op (idempotent)", T, float, double) {
  Rng rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    Tensor<T> w = test::rand_uniform<T>({7, 9}, rng, 0.0, 1.0);
    for (index_t c = 4; c < 7; ++c)
      for (index_t j = 0; j < 9; ++j) w(c, j) *= T(1.0 + 2.0 * rng.uniform());  // new rows larger
    for (int p : {1, 2}) {
      Tensor<T> v = w.clone();
      incremental::AlignOptions o;
      o.norm_p = p;
      const auto first = incremental::weight_align(v, 4, o);
      CHECK(first.applied);
      const Tensor<T> aligned = v.clone();
      const auto second = incremental::weight_align(v, 4, o);
      CHECK(second.gamma == 1);
      CHECK_FALSE(second.applied);
      CHECK(test::identical(v, aligned));
      CHECK(std::abs(second.rho_before - 1) <= 4 * double(std::numeric_limits<T>::epsilon()));
      CHECK(test::identical(v.rows(0, 4), w.rows(0, 4)));
    }
  }
}

TEST_CASE("incremental/align: clipping after every optimiser step keeps min(head) >= 0, nothing else clipped") {
  Rng rng(12);
  incremental::HeadOptions ho;
  ho.bias = true;
  auto net = incremental::make_relu_net<double>({6, 8}, rng, ho);
  net.head().expand(3, rng);
  net.head().bias.value().fill(-0.5);
  nn::SGDOptions so;
  so.lr = 0.5;
  so.momentum = 0.9;
  nn::SGD<double> opt(net.parameters(), so);
  nn::HookHandle clip = incremental::add_weight_clipping(opt, net.head());
  CHECK(net.head().weight.value().array().minCoeff() < 0);  // before any step
  const Tensor<double> x = test::randn<double>({16, 6}, rng);
  std::vector<int> y;
  for (int i = 0; i < 16; ++i) y.push_back(i % 3);
  bool backbone_negative = false;
  for (int step = 0; step < 40; ++step) {
    opt.zero_grad();
    Tape<double> tape;
    Var<double> loss = cross_entropy(net(tape.constant(x)), y);
    tape.backward(loss);
    opt.step();
    CHECK(net.head().weight.value().array().minCoeff() >= 0);
    if (step == 20) {  // the head grows mid-training: the same optimiser and hook follow the parameter
      net.head().expand(2, rng);
      for (int i = 0; i < 16; i += 4) y[std::size_t(i)] = 3 + (i / 4) % 2;
    }
    backbone_negative = backbone_negative || net.backbone.layers[0].weight.value().array().minCoeff() < 0;
  }
  CHECK(backbone_negative);                                        // the backbone is not clipped
  CHECK(net.head().bias.value().array().minCoeff() < 0);           // nor the bias
  Tensor<float> t = Tensor<float>::from_values({-1, 0, 2, -0.0f}, Shape{4});
  incremental::clip_nonnegative(t);
  CHECK(t.flat(0) == 0);
  CHECK(t.flat(2) == 2);
}

TEST_CASE("incremental/align: bad input leaves the head unchanged") {
  Tensor<double> w = hand_head<double>();
  test::Snapshot<double> snap({w});
  WEFT_INC_FAILS(incremental::weight_align(w, 0), ValueError, "incremental::weight_align");
  WEFT_INC_FAILS(incremental::weight_align(w, 4), ValueError, "incremental::weight_align");
  incremental::AlignOptions o;
  o.norm_p = 3;
  WEFT_INC_FAILS(incremental::weight_align(w, 2, o), ConfigError, "incremental::weight_align");
  Tensor<double> flat(Shape{4});
  WEFT_INC_FAILS(incremental::weight_align(flat, 2), ShapeError, "incremental::weight_align");
  Tensor<double> zero_new = hand_head<double>();
  zero_new.rows(2, 4).set_zero();
  test::Snapshot<double> snap0({zero_new});
  WEFT_INC_FAILS(incremental::weight_align(zero_new, 2), ValueError, "incremental::weight_align");
  CHECK(snap0.unchanged());
  Tensor<double> inf = hand_head<double>();
  inf(3, 1) = INFINITY;
  WEFT_INC_FAILS(incremental::weight_align(inf, 2), ValueError, "incremental::weight_align");
  WEFT_INC_FAILS(incremental::norm_ratio(w, 5), ValueError, "incremental::norm_ratio");
  WEFT_INC_FAILS(incremental::row_norms(w, 0), ConfigError, "incremental::row_norms");
  CHECK(snap.unchanged());
  nn::SGD<double> opt(std::vector<Parameter<double>>{Parameter<double>(Tensor<double>(Shape{2}))});
  WEFT_INC_FAILS(incremental::add_weight_clipping(opt, Parameter<double>()), ConfigError,
                 "incremental::add_weight_clipping");
  incremental::ExpandableHead<double> empty;
  WEFT_INC_FAILS(incremental::weight_align(empty, 1), ConfigError, "incremental::weight_align");
}

}  // namespace weft_unit_incremental_align_test
