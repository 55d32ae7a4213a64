// Tests of weft/peft/ops.hpp: forward values against dense references and gradients against
// central differences (float64) for chunk_sum, tile, dropout and block_affine; bad input.
#include <doctest/doctest.h>

#include <vector>

#include "nn/nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/peft/ops.hpp"

namespace weft_unit_peft_ops_test {

using namespace weft;

namespace {
/// The tiling matrix P (din, r): P[j, j mod r] = 1, so chunk_sum(x) = x P and tile(z) = z P^T.
Tensor<double> tiling(index_t din, index_t r) {
  Tensor<double> p(Shape{din, r});
  for (index_t j = 0; j < din; ++j) p(j, j % r) = 1;
  return p;
}

/// The block-affine map written block by block with Eigen.
Tensor<double> block_affine_ref(const Tensor<double>& w, const Tensor<double>& b) {
  const index_t r = b.dim(1), dout = w.dim(0), din = w.dim(1);
  Tensor<double> out(w.shape());
  for (index_t a = 0; a < dout / r; ++a) {
    const Eigen::MatrixXd ba = ConstMatrixMap<double>(b.data() + a * r * r, r, r);
    for (index_t c = 0; c < din / r; ++c) {
      const Eigen::MatrixXd wb = w.matrix().block(a * r, c * r, r, r);
      out.matrix().block(a * r, c * r, r, r) = wb * (Eigen::MatrixXd::Identity(r, r) + ba) + ba;
    }
  }
  return out;
}
}  // namespace

TEST_CASE("peft/ops: chunk_sum and tile equal products with the tiling matrix") {
  Rng rng(21);
  for (index_t din : {8, 10, 3}) {
    const index_t r = 4;
    const Tensor<double> x = test::randn<double>({5, din}, rng), z = test::randn<double>({5, r}, rng);
    Tape<double> t;
    const Tensor<double> p = tiling(din, r);
    WEFT_CHECK_CLOSE(peft::chunk_sum(t.constant(x), r).value(), Tensor<double>::from(x.matrix() * p.matrix()), 1e-14);
    WEFT_CHECK_CLOSE(peft::tile(t.constant(z), din).value(),
                     Tensor<double>::from(z.matrix() * p.matrix().transpose()), 1e-14);
  }
  // rank 1 and rank 3 inputs keep their leading axes
  Tape<double> t;
  const Tensor<double> x3 = test::randn<double>({2, 3, 10}, rng);
  CHECK(peft::chunk_sum(t.constant(x3), 4).shape() == Shape({2, 3, 4}));
  CHECK(peft::chunk_sum(t.constant(test::randn<double>({10}, rng)), 4).shape() == Shape({4}));
  CHECK(peft::tile(t.constant(test::randn<double>({2, 3, 4}, rng)), 9).shape() == Shape({2, 3, 9}));
}

TEST_CASE("peft/ops: gradients of chunk_sum and tile (central differences, float64)") {
  Rng rng(22);
  for (index_t din : {8, 10}) {
    const Tensor<double> x = test::randn<double>({3, din}, rng);
    WEFT_CHECK_GRAD(grad_check([](Tape<double>&, const std::vector<Var<double>>& v) { return peft::chunk_sum(v[0], 4); },
                               {x}));
    const Tensor<double> z = test::randn<double>({2, 3, 4}, rng);
    WEFT_CHECK_GRAD(grad_check(
        [din](Tape<double>&, const std::vector<Var<double>>& v) { return peft::tile(v[0], din); }, {z}));
  }
}

TEST_CASE("peft/ops: dropout keeps 1 - p of the entries, scaled, and its gradient uses the same mask") {
  Rng rng(23);
  const Tensor<double> x = Tensor<double>::ones(Shape{200, 50});
  Tape<double> t;
  Rng drop(5);
  Var<double> y = peft::dropout(t.constant(x), 0.25, drop);
  index_t kept = 0;
  for (double v : y.value()) {
    CHECK((v == 0.0 || v == doctest::Approx(1.0 / 0.75)));
    kept += v != 0.0;
  }
  CHECK(double(kept) / 10000.0 == doctest::Approx(0.75).epsilon(0.03));
  const std::size_t before = t.size();
  const Var<double> in = t.constant(x);
  CHECK(peft::dropout(in, 0.0, drop).id() == in.id());  // p = 0: the input itself, no op recorded
  CHECK(t.size() == before + 1);
  const Tensor<double> x2 = test::randn<double>({4, 6}, rng);
  WEFT_CHECK_GRAD(grad_check(
      [](Tape<double>&, const std::vector<Var<double>>& v) {
        Rng r(9);  // the same mask on every evaluation
        return peft::dropout(v[0], 0.4, r);
      },
      {x2}));
  Tape<double> t2;
  CHECK_THROWS_AS(peft::dropout(t2.constant(x2), 1.0, drop), ValueError);
  CHECK_THROWS_AS(peft::dropout(t2.constant(x2), -0.1, drop), ValueError);
}

TEST_CASE("peft/ops: block_affine equals the block-by-block formula; gradients of W and B") {
  Rng rng(24);
  for (auto dims : {std::vector<index_t>{8, 12, 4}, std::vector<index_t>{6, 6, 3}, std::vector<index_t>{4, 8, 4}}) {
    const index_t dout = dims[0], din = dims[1], r = dims[2];
    const Tensor<double> w = test::randn<double>({dout, din}, rng), b = test::randn<double>({dout / r, r, r}, rng, 0, 0.3);
    Tape<double> t;
    WEFT_CHECK_CLOSE(peft::block_affine(t.constant(w), t.constant(b)).value(), block_affine_ref(w, b), 1e-13);
    WEFT_CHECK_GRAD(grad_check(
        [](Tape<double>&, const std::vector<Var<double>>& v) { return peft::block_affine(v[0], v[1]); }, {w, b}));
  }
  // zero B: the identity map, bit for bit
  const Tensor<double> w = test::randn<double>({8, 8}, rng);
  Tape<double> t;
  CHECK(test::identical(peft::block_affine(t.constant(w), t.constant(Tensor<double>(Shape{2, 4, 4}))).value(), w));
}

TEST_CASE("peft/ops: bad input is rejected before anything is computed") {
  Rng rng(25);
  Tape<double> t;
  const Var<double> x = t.constant(test::randn<double>({3, 10}, rng));
  WEFT_NN_CHECK_FAILS(peft::chunk_sum(x, 0), ValueError, "peft::chunk_sum");
  WEFT_NN_CHECK_FAILS(peft::tile(x, 0), ValueError, "peft::tile");
  const Var<double> w = t.constant(test::randn<double>({8, 10}, rng));
  WEFT_NN_CHECK_FAILS(peft::block_affine(w, t.constant(Tensor<double>(Shape{2, 4, 4}))), ShapeError,
                      "peft::block_affine");  // 10 % 4 != 0
  const Var<double> w2 = t.constant(test::randn<double>({8, 8}, rng));
  WEFT_NN_CHECK_FAILS(peft::block_affine(w2, t.constant(Tensor<double>(Shape{2, 4, 3}))), ShapeError,
                      "peft::block_affine");
  WEFT_NN_CHECK_FAILS(peft::block_affine(w2, t.constant(Tensor<double>(Shape{3, 4, 4}))), ShapeError,
                      "peft::block_affine");
}

}  // namespace weft_unit_peft_ops_test
