// Tests of weft/peft/bone.hpp: BoneShared (PEFT Bone / MiSS), MissMini and BoneAffine (Bat):
// no-op at init, the dense-delta forms against the fast forward, the non-divisible case,
// gradients against central differences (float64), merge / unmerge identities, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "peft/peft_test_util.hpp"
#include "weft/peft/merge.hpp"

namespace weft_unit_peft_bone_test {

using namespace weft;
using weft::nn_test::contract;
using weft::nn_test::param_grad_check;
using weft::peft_test::affine_ref;
using weft::peft_test::equal_values;
using weft::peft_test::forward_value;
using weft::peft_test::max_rel_diff;

namespace {
peft::BoneOptions bone(index_t r, index_t mini_r = 1) {
  peft::BoneOptions o;
  o.r = r;
  o.mini_r = mini_r;
  return o;
}

/// delta W[o, j] = M[j mod r, o] (spec 7.1), written out.
Tensor<double> shared_delta(const Tensor<double>& m, index_t din) {
  const index_t r = m.dim(0), dout = m.dim(1);
  Tensor<double> d(Shape{dout, din});
  for (index_t o = 0; o < dout; ++o)
    for (index_t j = 0; j < din; ++j) d(o, j) = m(j % r, o);
  return d;
}

/// W'_{a,c} = W_{a,c} (I + B_a) + B_a (spec 7.2), block by block.
Tensor<double> affine_weight(const Tensor<double>& w, const Tensor<double>& b) {
  const index_t r = b.dim(1);
  Tensor<double> out(w.shape());
  for (index_t a = 0; a < w.dim(0) / r; ++a) {
    const Eigen::MatrixXd ba = ConstMatrixMap<double>(b.data() + a * r * r, r, r);
    for (index_t c = 0; c < w.dim(1) / r; ++c)
      out.matrix().block(a * r, c * r, r, r) =
          Eigen::MatrixXd(w.matrix().block(a * r, c * r, r, r)) * (Eigen::MatrixXd::Identity(r, r) + ba) + ba;
  }
  return out;
}
}  // namespace

TEST_CASE("peft/bone: BoneShared, MissMini and BoneAffine are exact no-ops at init") {
  Rng rng(51);
  nn::Linear<double> lin(12, 8, rng);
  const Tensor<double> x = test::randn<double>({5, 12}, rng);
  const Tensor<double> y0 = forward_value(lin, x);
  auto s = peft::add_bone_shared(lin, bone(4), rng);
  auto m = peft::add_miss_mini(lin, bone(4, 2), rng);
  auto a = peft::add_bone_affine(lin, bone(4), rng);
  CHECK(equal_values(forward_value(lin, x), y0));
  CHECK(s->method() == "bone_shared");
  CHECK(m->method() == "miss_mini");
  CHECK(a->method() == "bone_affine");
  CHECK(s->num_trainable() == 4 * 8);
  CHECK(m->num_trainable() == 4 * 2);
  CHECK(a->num_trainable() == 4 * 8);
  CHECK(a->B().shape() == Shape({2, 4, 4}));
}

TEST_CASE("peft/bone: the dense-delta forms (spec 7.1-7.3) match the fast forwards") {
  Rng rng(52);
  for (index_t din : {12, 10}) {
    nn::Linear<double> lin(din, 6, rng);
    const Tensor<double> w0 = lin.weight.value().clone(), x = test::randn<double>({7, din}, rng);
    auto s = peft::add_bone_shared(lin, bone(4), rng);
    s->M().value().copy_from(test::randn<double>({4, 6}, rng));
    Tensor<double> dense = w0.clone();
    dense.array() += shared_delta(s->M().value(), din).array();
    WEFT_CHECK_CLOSE(forward_value(lin, x), affine_ref(x, dense, lin.bias.value()), 1e-12);
    WEFT_CHECK_CLOSE(s->delta_weight(), shared_delta(s->M().value(), din), 0.0);
    peft::unload(lin);

    auto m = peft::add_miss_mini(lin, bone(4, 3), rng);
    m->M0().value().copy_from(test::randn<double>({4, 3}, rng));
    Tensor<double> mt(Shape{4, 6});  // M = M0 tiled along the output
    for (index_t j = 0; j < 4; ++j)
      for (index_t o = 0; o < 6; ++o) mt(j, o) = m->M0().value()(j, o % 3);
    Tensor<double> dm = w0.clone();
    dm.array() += shared_delta(mt, din).array();
    WEFT_CHECK_CLOSE(forward_value(lin, x), affine_ref(x, dm, lin.bias.value()), 1e-12);
    peft::unload(lin);
  }
  nn::Linear<double> lin(12, 8, rng);
  const Tensor<double> x = test::randn<double>({7, 12}, rng);
  auto a = peft::add_bone_affine(lin, bone(4), rng);
  a->B().value().copy_from(test::randn<double>({2, 4, 4}, rng, 0, 0.2));
  const Tensor<double> wp = affine_weight(lin.weight.value(), a->B().value());
  WEFT_CHECK_CLOSE(forward_value(lin, x), affine_ref(x, wp, lin.bias.value()), 1e-12);
  WEFT_CHECK_CLOSE(lin.folded_weight(), wp, 1e-13);
}

TEST_CASE("peft/bone: non-divisible BoneShared (in = 10, r = 4): columns 8, 9 receive M[0:2, :]^T") {
  Rng rng(53);
  nn::Linear<double> lin(10, 5, rng);
  const Tensor<double> w0 = lin.weight.value().clone();
  const peft::Attachment<double> s = peft::attach_bone_shared(lin, bone(4), rng);
  Parameter<double> M = s.parameters()[0];
  M.value().copy_from(test::randn<double>({4, 5}, rng));
  const Tensor<double> d = s.adapters[0].adapter->delta_weight();
  for (index_t o = 0; o < 5; ++o) {
    CHECK(d(o, 8) == M.value()(0, o));
    CHECK(d(o, 9) == M.value()(1, o));
    for (index_t j = 0; j < 8; ++j) CHECK(d(o, j) == M.value()(j % 4, o));
  }
  const Tensor<double> x = test::randn<double>({3, 10}, rng), y = forward_value(lin, x);
  CHECK(peft::merge(s) == 1);
  CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
  CHECK(max_rel_diff(lin.weight.value(), Tensor<double>::from(w0.matrix() + d.matrix())) <= 1e-15);
  // Bat and MissMini need divisibility and say so
  nn::Linear<double> odd(10, 8, rng);
  test::Snapshot<double> snap({odd.weight.value()});
  CHECK_THROWS_WITH_AS(peft::add_bone_affine(odd, bone(4), rng), doctest::Contains("fully divisible into [4, 4] blocks"),
                       ShapeError);
  WEFT_NN_CHECK_FAILS(peft::add_miss_mini(odd, bone(4, 3), rng), ShapeError, "peft::MissMini");
  CHECK(odd.transforms().empty());
  CHECK(odd.side_paths().empty());
  CHECK(snap.unchanged());
}

TEST_CASE("peft/bone: gradients of M, M0, B_a and x against central differences (h = 1e-6)") {
  Rng rng(54);
  const Tensor<double> x = test::randn<double>({4, 10}, rng), R = test::randn<double>({4, 8}, rng);
  auto run = [&](nn::Linear<double>& lin, const std::vector<Parameter<double>>& ps) {
    lin.weight.set_requires_grad(false);
    lin.bias.set_requires_grad(false);
    const auto res = param_grad_check(ps, [&](Tape<double>& t) { return contract(lin(t.constant(x)), R); }, 1e-6, 0.0);
    WEFT_CHECK_GRAD(res);
    CHECK(res.max_abs_error <= 1e-6);
    CHECK(lin.weight.grad().array().abs().maxCoeff() == 0.0);  // the frozen base gets nothing
    WEFT_CHECK_GRAD(grad_check([&](Tape<double>&, const std::vector<Var<double>>& v) { return lin(v[0]); }, {x}));
  };
  {
    nn::Linear<double> lin(10, 8, rng);
    auto s = peft::add_bone_shared(lin, bone(4), rng);
    s->M().value().copy_from(test::randn<double>({4, 8}, rng));
    run(lin, {s->M()});
  }
  {
    nn::Linear<double> lin(10, 8, rng);
    auto m = peft::add_miss_mini(lin, bone(3, 4), rng);
    m->M0().value().copy_from(test::randn<double>({3, 4}, rng));
    run(lin, {m->M0()});
  }
  {
    const Tensor<double> x2 = test::randn<double>({4, 12}, rng);
    nn::Linear<double> lin(12, 8, rng);
    auto a = peft::add_bone_affine(lin, bone(4), rng);
    a->B().value().copy_from(test::randn<double>({2, 4, 4}, rng, 0, 0.3));
    lin.weight.set_requires_grad(false);
    const auto res =
        param_grad_check({a->B()}, [&](Tape<double>& t) { return contract(lin(t.constant(x2)), R); }, 1e-6, 0.0);
    WEFT_CHECK_GRAD(res);
    CHECK(res.max_abs_error <= 1e-6);
    CHECK(lin.weight.grad().array().abs().maxCoeff() == 0.0);
    // with the base trainable (full fine-tuning through the transform), dW is right too
    lin.weight.set_requires_grad(true);
    WEFT_CHECK_GRAD(param_grad_check({lin.weight, a->B()},
                                     [&](Tape<double>& t) { return contract(lin(t.constant(x2)), R); }));
  }
}

TEST_CASE("peft/bone: merge equals the unmerged forward; merge -> unmerge restores W") {
  Rng rng(55);
  nn::Linear<double> lin(16, 12, rng);
  const Tensor<double> w0 = lin.weight.value().clone(), x = test::randn<double>({5, 16}, rng);
  const peft::Attachment<double> s = peft::attach_bone_shared(lin, bone(6), rng);
  s.parameters()[0].value().copy_from(test::randn<double>({6, 12}, rng));  // M
  const peft::Attachment<double> m = peft::attach_miss_mini(lin, bone(4, 3), rng);
  m.parameters()[0].value().copy_from(test::randn<double>({4, 3}, rng));  // M0
  const Tensor<double> y = forward_value(lin, x);
  CHECK(peft::merge(s) == 1);  // two records on one layer, each merged on its own
  CHECK(peft::merge(m) == 1);
  CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
  CHECK(peft::unmerge(s) == 1);
  CHECK(peft::unmerge(m) == 1);
  CHECK(max_rel_diff(lin.weight.value(), w0) <= 1e-12);
  peft::unload(lin);

  // BoneAffine with ||B_a||_2 <= 0.5: round trip within 1e-10 (spec 10.1.3)
  const peft::Attachment<double> a = peft::attach_bone_affine(lin, bone(4), rng);
  Tensor<double> b = test::randn<double>({3, 4, 4}, rng);
  for (index_t k = 0; k < 3; ++k) {
    MatrixMap<double> bk(b.data() + k * 16, 4, 4);
    Eigen::JacobiSVD<Eigen::MatrixXd> sv{Eigen::MatrixXd(bk)};
    bk *= 0.5 / sv.singularValues()(0);
  }
  a.parameters()[0].value().copy_from(b);  // B
  const Tensor<double> ya = forward_value(lin, x);
  CHECK(peft::merge(a) == 1);
  CHECK(max_rel_diff(forward_value(lin, x), ya) <= 1e-12);
  CHECK(max_rel_diff(lin.weight.value(), affine_weight(w0, b)) <= 1e-14);
  CHECK(peft::unmerge(a) == 1);
  CHECK(max_rel_diff(lin.weight.value(), w0) <= 1e-10);
  CHECK(max_rel_diff(forward_value(lin, x), ya) <= 1e-12);
}

TEST_CASE("peft/bone: two BoneAffine transforms compose in order, and merge in order") {
  Rng rng(56);
  nn::Linear<double> lin(8, 8, rng);
  const Tensor<double> w0 = lin.weight.value().clone(), x = test::randn<double>({3, 8}, rng);
  const peft::Attachment<double> a1 = peft::attach_bone_affine(lin, bone(4), rng);
  const peft::Attachment<double> a2 = peft::attach_bone_affine(lin, bone(2), rng);
  Parameter<double> b1 = a1.parameters()[0], b2 = a2.parameters()[0];
  b1.value().copy_from(test::randn<double>({2, 4, 4}, rng, 0, 0.2));
  b2.value().copy_from(test::randn<double>({4, 2, 2}, rng, 0, 0.2));
  const Tensor<double> both = affine_weight(affine_weight(w0, b1.value()), b2.value());
  WEFT_CHECK_CLOSE(lin.folded_weight(), both, 1e-13);
  const Tensor<double> y = forward_value(lin, x);
  // the second merges only after the first; the first unmerges only after the second
  test::Snapshot<double> snap({lin.weight.value()});
  CHECK_THROWS_WITH_AS(peft::merge(a2), doctest::Contains("got the transform 'bone_affine'"), ConfigError);
  CHECK(snap.unchanged());
  CHECK(peft::merge(a1) == 1);
  CHECK(peft::merge(a2) == 1);
  CHECK(max_rel_diff(lin.weight.value(), both) <= 1e-13);
  CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
  test::Snapshot<double> merged({lin.weight.value()});
  CHECK_THROWS_WITH_AS(peft::unmerge(a1), doctest::Contains("got the merged 'bone_affine'"), ConfigError);
  CHECK(merged.unchanged());
  CHECK(peft::unmerge(a2) == 1);
  CHECK(peft::unmerge(a1) == 1);
  CHECK(max_rel_diff(lin.weight.value(), w0) <= 1e-10);
}

TEST_CASE("peft/bone: a singular I + B_a refuses to unmerge and changes nothing") {
  Rng rng(57);
  nn::Linear<double> lin(8, 8, rng);
  const peft::Attachment<double> a = peft::attach_bone_affine(lin, bone(4), rng);
  Tensor<double> b(Shape{2, 4, 4});
  for (index_t i = 0; i < 4; ++i) b(1, i, i) = -1.0;  // I + B_1 = 0
  a.parameters()[0].value().copy_from(b);
  peft::merge(a);
  test::Snapshot<double> snap({lin.weight.value()});
  WEFT_NN_CHECK_FAILS(peft::unmerge(a), ValueError, "peft::BoneAffine::unmerge");
  CHECK(snap.unchanged());
  CHECK(a.adapters[0].adapter->merged());
}

TEST_CASE("peft/bone: bad shard sizes and dropout options are rejected") {
  Rng rng(58);
  nn::Linear<double> lin(8, 6, rng);
  WEFT_NN_CHECK_FAILS(peft::add_bone_shared(lin, bone(0), rng), ValueError, "peft::BoneShared");
  WEFT_NN_CHECK_FAILS(peft::add_bone_shared(lin, bone(9), rng), ValueError, "peft::BoneShared");  // > in
  WEFT_NN_CHECK_FAILS(peft::add_bone_affine(lin, bone(0), rng), ValueError, "peft::BoneAffine");
  WEFT_NN_CHECK_FAILS(peft::add_bone_affine(lin, bone(4), rng), ShapeError, "peft::BoneAffine");  // 6 % 4
  WEFT_NN_CHECK_FAILS(peft::add_miss_mini(lin, bone(2, 4), rng), ShapeError, "peft::MissMini");  // 6 % 4
  peft::BoneOptions d = bone(2);
  d.dropout = 0.1;
  WEFT_NN_CHECK_FAILS(peft::add_bone_affine(lin, d, rng), ConfigError, "peft::BoneAffine");
  d.dropout = 1.5;
  WEFT_NN_CHECK_FAILS(peft::add_bone_shared(lin, d, rng), ValueError, "peft::BoneShared");
  CHECK(lin.side_paths().empty());
  CHECK(lin.transforms().empty());
  // debug init (zero_init = false): random parameters, not a no-op
  peft::BoneOptions nz = bone(2);
  nz.zero_init = false;
  auto s = peft::add_bone_shared(lin, nz, rng);
  CHECK(s->M().value().array().abs().maxCoeff() > 0);
}

}  // namespace weft_unit_peft_bone_test
