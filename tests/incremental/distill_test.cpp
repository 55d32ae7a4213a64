// Tests of weft/incremental/distill.hpp: the KD loss value, its gradient against the formula
// lambda (p - q) / (T B) and against finite differences, the combined (1 - lambda) CE + lambda KD
// loss, no gradient into the teacher, and bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "nn/nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/autograd/grad_check.hpp"
#include "weft/incremental/distill.hpp"

namespace weft_unit_incremental_distill_test {

using namespace weft;

#define WEFT_INC_FAILS(expr, type, func) CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

namespace {

/// softmax(z[i, 0:c] / T) of row i, by hand.
std::vector<double> soft(const Tensor<double>& z, index_t i, index_t c, double T) {
  std::vector<double> p(static_cast<std::size_t>(c));
  double m = -1e300, s = 0;
  for (index_t k = 0; k < c; ++k) m = std::max(m, z(i, k) / T);
  for (index_t k = 0; k < c; ++k) s += (p[std::size_t(k)] = std::exp(z(i, k) / T - m));
  for (double& v : p) v /= s;
  return p;
}

struct Batch {
  Tensor<double> logits, teacher;
  std::vector<int> labels;
};
Batch make_batch(index_t B, index_t c_tot, index_t c_old, std::uint64_t seed) {
  Rng rng(seed);
  Batch b;
  b.logits = test::randn<double>({B, c_tot}, rng, 0.0, 2.0);
  b.teacher = test::randn<double>({B, c_old}, rng, 0.0, 2.0);
  for (index_t i = 0; i < B; ++i) b.labels.push_back(int(rng.below(std::uint64_t(c_tot))));
  return b;
}

}  // namespace

TEST_CASE("incremental/distill: L_KD value is -(1/B) sum q log p on the old-class logits") {
  const Batch b = make_batch(4, 5, 3, 1);
  const double T = 2.0;
  double expect = 0;
  for (index_t i = 0; i < 4; ++i) {
    const auto p = soft(b.logits, i, 3, T), q = soft(b.teacher, i, 3, T);
    for (std::size_t k = 0; k < 3; ++k) expect -= q[k] * std::log(p[k]);
  }
  expect /= 4;
  Tape<double> tape;
  Var<double> kd = incremental::distillation_loss(tape.constant(b.logits), tape.constant(b.teacher), T);
  CHECK(kd.item() == doctest::Approx(expect).epsilon(1e-13));

  // soft_targets is the teacher's softened distribution
  const Tensor<double> q = incremental::soft_targets(b.teacher, T);
  const auto q1 = soft(b.teacher, 1, 3, T);
  for (index_t k = 0; k < 3; ++k) CHECK(q(1, k) == doctest::Approx(q1[std::size_t(k)]).epsilon(1e-14));
  // C_old = C_tot: no slicing needed
  Var<double> full = incremental::distillation_loss(tape.constant(b.logits.slice(1, 0, 3)), tape.constant(b.teacher), T);
  CHECK(full.item() == doctest::Approx(expect).epsilon(1e-13));
}

TEST_CASE("incremental/distill: gradient of lambda L_KD is lambda (p - q) / (T B) on old logits, 0 on new") {
  const index_t B = 4, C = 6, c_old = 4;
  const Batch b = make_batch(B, C, c_old, 2);
  for (double T : {1.0, 2.0, 3.5}) {
    const double lambda = incremental::kd_lambda(c_old, C);
    CHECK(lambda == doctest::Approx(4.0 / 6.0));
    Tape<double> tape;
    Var<double> z = tape.variable(b.logits);
    Var<double> t = tape.variable(b.teacher);  // would receive a gradient if one leaked
    Var<double> loss = incremental::distillation_loss(z, t, T) * lambda;
    tape.backward(loss);
    for (index_t i = 0; i < B; ++i) {
      const auto p = soft(b.logits, i, c_old, T), q = soft(b.teacher, i, c_old, T);
      for (index_t k = 0; k < C; ++k) {
        const double expect = k < c_old ? lambda * (p[std::size_t(k)] - q[std::size_t(k)]) / (T * double(B)) : 0.0;
        CHECK(z.grad()(i, k) == doctest::Approx(expect).epsilon(1e-12).scale(1e-3));
      }
    }
    CHECK_FALSE(t.grad().defined());  // the teacher is read as a constant
  }
}

TEST_CASE("incremental/distill: KD and WA loss gradients match finite differences (float64)") {
  const Batch b = make_batch(3, 5, 2, 3);
  const Tensor<double> teacher = b.teacher;
  const std::vector<int> labels = b.labels;
  auto kd = [&](Tape<double>& tape, const std::vector<Var<double>>& v) {
    return incremental::distillation_loss(v[0], tape.constant(teacher), 2.0);
  };
  WEFT_CHECK_GRAD(grad_check(kd, {b.logits}));
  auto wa = [&](Tape<double>& tape, const std::vector<Var<double>>& v) {
    return incremental::wa_loss(v[0], labels, tape.constant(teacher));
  };
  WEFT_CHECK_GRAD(grad_check(wa, {b.logits}));
  // through a linear layer: the gradient reaches the weights of the old and the new rows
  Rng rng(8);
  const Tensor<double> x = test::randn<double>({3, 4}, rng), W = test::randn<double>({5, 4}, rng);
  auto through = [&](Tape<double>& tape, const std::vector<Var<double>>& v) {
    return incremental::wa_loss(matmul_nt(tape.constant(x), v[0]), labels, tape.constant(teacher));
  };
  WEFT_CHECK_GRAD(grad_check(through, {W}));
}

TEST_CASE("incremental/distill: wa_loss = (1 - lambda) CE + lambda KD, CE alone without a teacher") {
  const Batch b = make_batch(5, 6, 4, 4);
  Tape<double> tape;
  Var<double> z = tape.constant(b.logits), t = tape.constant(b.teacher);
  const double ce = cross_entropy(z, b.labels).item();
  const double kd = incremental::distillation_loss(z, t, 2.0).item();
  const double lambda = 4.0 / 6.0;
  CHECK(incremental::wa_loss(z, b.labels, t).item() ==
        doctest::Approx((1 - lambda) * ce + lambda * kd).epsilon(1e-14));
  CHECK(incremental::wa_loss(z, b.labels, Var<double>()).item() == doctest::Approx(ce).epsilon(1e-15));
  incremental::DistillOptions o;
  o.lambda = 0.25;
  o.temperature = 3.0;
  const double kd3 = incremental::distillation_loss(z, t, 3.0).item();
  CHECK(incremental::wa_loss(z, b.labels, t, o).item() == doctest::Approx(0.75 * ce + 0.25 * kd3).epsilon(1e-14));
  // teacher == student on the old classes with T = 1: L_KD is the entropy of q
  Var<double> same = tape.constant(b.logits.slice(1, 0, 4));
  const Tensor<double> q = incremental::soft_targets(b.logits.slice(1, 0, 4), 1.0);
  double ent = 0;
  for (double v : q) ent -= v * std::log(v);
  CHECK(incremental::distillation_loss(z, same, 1.0).item() == doctest::Approx(ent / 5).epsilon(1e-13));
}

TEST_CASE("incremental/distill: bad input") {
  const Batch b = make_batch(3, 4, 2, 5);
  Tape<double> tape;
  Var<double> z = tape.constant(b.logits);
  Var<double> wide = tape.constant(Tensor<double>(Shape{3, 5}));
  Var<double> short_batch = tape.constant(Tensor<double>(Shape{2, 2}));
  Var<double> t = tape.constant(b.teacher);
  WEFT_INC_FAILS(incremental::distillation_loss(z, wide, 2.0), ShapeError, "incremental::distillation_loss");
  WEFT_INC_FAILS(incremental::distillation_loss(z, short_batch, 2.0), ShapeError, "incremental::distillation_loss");
  WEFT_INC_FAILS(incremental::distillation_loss(z, t, 0.0), ValueError, "incremental::distillation_loss");
  WEFT_INC_FAILS(incremental::distillation_loss(z, t, std::nan("")), ValueError, "incremental::distillation_loss");
  WEFT_INC_FAILS(incremental::wa_loss(z, b.labels, wide), ShapeError, "incremental::wa_loss");
  incremental::DistillOptions o;
  o.lambda = 1.5;
  WEFT_INC_FAILS(incremental::wa_loss(z, b.labels, t, o), ValueError, "incremental::wa_loss");
  WEFT_INC_FAILS(incremental::kd_lambda(3, 2), ValueError, "incremental::kd_lambda");
  WEFT_INC_FAILS(incremental::kd_lambda(0, 0), ValueError, "incremental::kd_lambda");
  WEFT_INC_FAILS(incremental::soft_targets(Tensor<double>(Shape{3}), 2.0), ShapeError, "incremental::soft_targets");
  WEFT_INC_FAILS(incremental::soft_targets(b.teacher, -1.0), ValueError, "incremental::soft_targets");
}

TEST_CASE("incremental/distill: a temperature whose reciprocal overflows the logits' type is rejected") {
  const Tensor<float> z(Shape{2, 3}, 1.0f);
  WEFT_INC_FAILS(incremental::soft_targets(z, 1e-40), ValueError, "incremental::soft_targets");
  CHECK(incremental::soft_targets(Tensor<double>(Shape{2, 3}, 1.0), 1e-40).all_finite());  // fine in double
  Tape<float> tape;
  WEFT_INC_FAILS(incremental::distillation_loss(tape.constant(z), tape.constant(z), 1e-40), ValueError,
                 "incremental::distillation_loss");
  CHECK(std::isfinite(double(incremental::distillation_loss(tape.constant(z), tape.constant(z), 1e-3).item())));
}

}  // namespace weft_unit_incremental_distill_test
