// Tests of weft/prune/hessian.hpp and sparsegpt.hpp: the calibration Hessian against X^T X,
// dead inputs and damping, the Cholesky paths against a dense inverse on small matrices, the
// sequential OBS pruner against a naive dense-inverse implementation, N:M, threads, bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "prune_test_util.hpp"
#include "weft/prune/hessian.hpp"
#include "weft/prune/sparsegpt.hpp"

#include <Eigen/LU>  // the dense inverse of the reference (after a weft header: GCC 12 warnings)

namespace weft_unit_prune_hessian_test {

using namespace weft;
using namespace weft::prune;
using weft::prune_test::ThreadCountGuard;

namespace {

/// Random inputs X (n x d) with correlated columns and, optionally, a dead column.
Tensor<double> inputs(index_t n, index_t d, Rng& rng, index_t dead = -1) {
  Tensor<double> x = test::randn<double>(Shape{n, d}, rng);
  for (index_t r = 0; r < n; ++r) {
    for (index_t j = 1; j < d; ++j) x(r, j) += 0.6 * x(r, j - 1);
    if (dead >= 0) x(r, dead) = 0;
  }
  return x;
}

/// H prepared by hand: dead diagonal -> 1, + percdamp mean(diag) I.
Eigen::MatrixXd prepared_by_hand(const Eigen::MatrixXd& h, double percdamp) {
  Eigen::MatrixXd a = h;
  for (index_t j = 0; j < a.rows(); ++j)
    if (a(j, j) == 0) a(j, j) = 1;
  a.diagonal().array() += percdamp * a.diagonal().mean();
  return a;
}

/// Sequential OBS with the dense inverse, eliminating one column at a time (the algorithm the
/// Cholesky form of SparseGPT computes), with a fixed mask.
Eigen::MatrixXd naive_obs(Eigen::MatrixXd w, const Eigen::MatrixXd& hprep, const Mask& mask) {
  Eigen::MatrixXd hinv = hprep.inverse();
  const index_t cols = w.cols();
  for (index_t j = 0; j < cols; ++j) {
    const double d = hinv(j, j);
    for (index_t r = 0; r < w.rows(); ++r) {
      const double q = mask.kept(r, j) ? w(r, j) : 0.0;
      const double e = (w(r, j) - q) / d;
      for (index_t k = j; k < cols; ++k) w(r, k) -= e * hinv(j, k);
    }
    const Eigen::VectorXd col = hinv.col(j);
    hinv -= col * col.transpose() / d;  // remove j from the remaining inverse
  }
  return w;
}

}  // namespace

TEST_CASE("prune/hessian: H = (2 / n) sum X^T X, column norms, sequence counting") {
  Rng rng(21);
  Tensor<double> x1 = inputs(30, 5, rng), x2 = inputs(12, 5, rng);
  HessianStats<double> st(5);
  st.add_batch(x1);
  st.add_batch(x2);
  CHECK(st.samples() == 42);
  CHECK(st.tokens() == 42);
  Eigen::MatrixXd xx(42, 5);
  xx << x1.matrix(), x2.matrix();
  const Eigen::MatrixXd ref = 2.0 / 42.0 * xx.transpose() * xx;
  CHECK((st.hessian() - ref).cwiseAbs().maxCoeff() < 1e-12);
  Tensor<double> norms = st.column_norms();
  for (index_t j = 0; j < 5; ++j) CHECK(norms.flat(j) == doctest::Approx(xx.col(j).norm()).epsilon(1e-12));
  // rank 3: (batch, seq, din) counts batch sequences
  HessianStats<double> s3(5);
  s3.add_batch(x1.reshape({3, 10, 5}));
  CHECK(s3.samples() == 3);
  CHECK(s3.tokens() == 30);
  const Eigen::MatrixXd r3 = 2.0 / 3.0 * x1.matrix().transpose() * x1.matrix();
  CHECK((s3.hessian() - r3).cwiseAbs().maxCoeff() < 1e-11);
  HessianStats<double> only_norms(5, false);
  only_norms.add_batch(x1);
  CHECK(!only_norms.has_hessian());
  CHECK(only_norms.column_norms().flat(0) == doctest::Approx(x1.matrix().col(0).norm()));
  WEFT_PRUNE_CHECK_FAILS(only_norms.hessian(), ConfigError, "prune::HessianStats::hessian");
}

TEST_CASE("prune/hessian: visit_sums exposes the running sums; adding two shards' sums gives the union") {
  Rng rng(23);
  Tensor<double> x1 = inputs(17, 4, rng), x2 = inputs(9, 4, rng);
  for (bool with_h : {true, false}) {
    HessianStats<double> all(4, with_h), a(4, with_h), b(4, with_h);
    all.add_batch(x1);
    all.add_batch(x2);
    a.add_batch(x1);
    b.add_batch(x2);
    std::vector<std::vector<double>> sums_b;  // what an all-reduce of two ranks would add
    b.visit_sums([&](double* p, std::size_t n) { sums_b.emplace_back(p, p + n); });
    CHECK(sums_b.size() == (with_h ? 3u : 2u));
    CHECK(sums_b.back() == std::vector<double>{9.0, 9.0});  // sequences, tokens
    std::size_t k = 0;
    a.visit_sums([&](double* p, std::size_t n) {
      for (std::size_t i = 0; i < n; ++i) p[i] += sums_b[k][i];
      ++k;
    });
    CHECK(a.samples() == 26);
    CHECK(a.tokens() == 26);
    if (with_h) CHECK((a.hessian() - all.hessian()).cwiseAbs().maxCoeff() < 1e-12);
    for (index_t j = 0; j < 4; ++j) CHECK(a.column_norms().flat(j) == doctest::Approx(all.column_norms().flat(j)).epsilon(1e-14));
  }
}

TEST_CASE("prune/hessian: dead inputs and damping; the inverse diagonal and U against a dense inverse") {
  Rng rng(22);
  for (index_t d : {1, 4, 9, 33}) {
    Tensor<double> x = inputs(3 * d + 5, d, rng, d > 3 ? 2 : -1);
    HessianStats<double> st(d);
    st.add_batch(x);
    const RowMatrix<double> h = st.hessian();
    PreparedHessian p = prepare_hessian(h, 0.01);
    const Eigen::MatrixXd hand = prepared_by_hand(h, 0.01);
    CHECK((Eigen::MatrixXd(p.h) - hand).cwiseAbs().maxCoeff() == 0.0);
    CHECK(p.dead[2 % std::size_t(d)] == (d > 3 ? 1 : 0));
    const Eigen::MatrixXd dense_inv = hand.inverse();
    const std::vector<double> diag = inverse_hessian_diag(h, 0.01);
    for (index_t j = 0; j < d; ++j) CHECK(diag[std::size_t(j)] == doctest::Approx(dense_inv(j, j)).epsilon(1e-10));
    const ObsFactor f = obs_factor(h, 0.01);
    const Eigen::MatrixXd u = f.u;
    CHECK(u.isUpperTriangular());
    CHECK((u.transpose() * u - dense_inv).cwiseAbs().maxCoeff() < 1e-10 * dense_inv.cwiseAbs().maxCoeff());
    for (index_t j = 0; j < d; ++j) CHECK(u(j, j) > 0);
  }
}

TEST_CASE("prune/hessian: ObsDiag importance W^2 / [H^-1]_jj, 0 on dead columns") {
  Rng rng(23);
  Tensor<double> x = inputs(40, 6, rng, 4);
  HessianStats<double> st(6);
  st.add_batch(x);
  Tensor<double> w = test::randn<double>(Shape{3, 6}, rng);
  Tensor<double> g = obs_diag_importance(w, st);
  const Eigen::MatrixXd hinv = prepared_by_hand(st.hessian(), 0.01).inverse();
  for (index_t r = 0; r < 3; ++r)
    for (index_t j = 0; j < 6; ++j) {
      const double expect = j == 4 ? 0.0 : w(r, j) * w(r, j) / hinv(j, j);
      CHECK(g(r, j) == doctest::Approx(expect).epsilon(1e-10));
    }
  // column 0: the sequential score W^2 / U_00^2 equals ObsDiag (U_00^2 = [H^-1]_00)
  const ObsFactor f = obs_factor(st.hessian(), 0.01);
  CHECK(f.u(0, 0) * f.u(0, 0) == doctest::Approx(hinv(0, 0)).epsilon(1e-10));
}

TEST_CASE("prune/sparsegpt: the Cholesky form equals sequential OBS with a dense inverse") {
  Rng rng(24);
  for (index_t d : {5, 16, 40}) {
    Tensor<double> x = inputs(4 * d, d, rng, d > 10 ? 3 : -1);
    HessianStats<double> st(d);
    st.add_batch(x);
    const RowMatrix<double> h = st.hessian();
    Tensor<double> w = test::randn<double>(Shape{7, d}, rng);
    Eigen::MatrixXd w0 = w.matrix();
    if (d > 10) w0.col(3).setZero();
    SparseGPTOptions o;
    o.blocksize = 4;  // several blocks (lazy updates between blocks): same weights for the mask chosen
    SparseGPTResult<double> blocked = sparsegpt_prune(w, h, o);
    const Eigen::MatrixXd ref_b = naive_obs(w0, prepared_by_hand(h, 0.01), blocked.mask);
    CHECK((Eigen::MatrixXd(blocked.weight.matrix()) - ref_b).cwiseAbs().maxCoeff() < 1e-9);
    o.blocksize = 128;  // one block: the mask is chosen once from W^2 / U_jj^2 on the initial W
    SparseGPTResult<double> res = sparsegpt_prune(w, h, o);
    CHECK(res.mask.zeros() == prune_count(0.5, 7 * d));
    const Eigen::MatrixXd ref = naive_obs(w0, prepared_by_hand(h, 0.01), res.mask);
    CHECK((Eigen::MatrixXd(res.weight.matrix()) - ref).cwiseAbs().maxCoeff() < 1e-9);
    for (index_t i = 0; i < w.numel(); ++i)
      if (!res.mask.keep[std::size_t(i)]) CHECK(res.weight.flat(i) == 0.0);
    // the scores of the single block are W^2 / U_jj^2 on the (dead-zeroed) initial W
    const ObsFactor f = obs_factor(h, 0.01);
    for (index_t r = 0; r < 7; ++r)
      for (index_t j = 0; j < d; ++j)
        CHECK(res.importance(r, j) == doctest::Approx(w0(r, j) * w0(r, j) / (f.u(j, j) * f.u(j, j))));
    // the OBS update lowers the layer's reconstruction error against plain masking
    const Eigen::MatrixXd xm = x.matrix();
    Eigen::MatrixXd plain = w.matrix();
    for (index_t i = 0; i < w.numel(); ++i)
      if (!res.mask.keep[std::size_t(i)]) plain(i / d, i % d) = 0;
    const double e_obs = (xm * (Eigen::MatrixXd(w.matrix()) - Eigen::MatrixXd(res.weight.matrix())).transpose()).squaredNorm();
    const double e_plain = (xm * (Eigen::MatrixXd(w.matrix()) - plain).transpose()).squaredNorm();
    CHECK(e_obs < e_plain);
  }
}

TEST_CASE("prune/sparsegpt: several blocks, exact counts per block, N:M, threads") {
  ThreadCountGuard guard;
  Rng rng(25);
  const index_t d = 96, rows = 130;
  Tensor<float> x = inputs(200, d, rng).cast<float>();
  HessianStats<float> st(d);
  st.add_batch(x);
  Tensor<float> w = test::randn<float>(Shape{rows, d}, rng);
  SparseGPTOptions o;
  o.blocksize = 32;
  o.sparsity = 0.6;
  set_num_threads(1);
  SparseGPTResult<float> a = sparsegpt_prune(w, st.hessian(), o);
  set_num_threads(2);
  SparseGPTResult<float> b = sparsegpt_prune(w, st.hessian(), o);
  CHECK(a.mask == b.mask);
  CHECK(test::identical(a.weight, b.weight));
  for (index_t blk = 0; blk < 3; ++blk) {
    index_t z = 0;
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = blk * 32; c < blk * 32 + 32; ++c) z += !a.mask.kept(r, c);
    CHECK(z == prune_count(0.6, rows * 32));
  }
  o.n_of_m = true;
  o.n = 2;
  o.m = 4;
  SparseGPTResult<float> nm = sparsegpt_prune(w, st.hessian(), o);
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < d; c += 4) {
      index_t z = 0;
      for (index_t j = 0; j < 4; ++j) z += !nm.mask.kept(r, c + j);
      CHECK(z == 2);
    }
  for (index_t i = 0; i < w.numel(); ++i)
    if (!nm.mask.keep[std::size_t(i)]) CHECK(nm.weight.flat(i) == 0.0f);
  // the reference's block rule: scores <= sort(block)[floor(s n)]
  o.n_of_m = false;
  o.rule = threshold_rule::sorted_index_le;
  SparseGPTResult<float> ref_rule = sparsegpt_prune(w, st.hessian(), o);
  CHECK(ref_rule.mask.zeros() >= 3 * prune_count(0.6, rows * 32));
}

TEST_CASE("prune/hessian: bad input") {
  Rng rng(26);
  HessianStats<double> st(4);
  WEFT_PRUNE_CHECK_FAILS(st.hessian(), ShapeError, "prune::HessianStats::hessian");  // empty calibration set
  WEFT_PRUNE_CHECK_FAILS(st.column_norms(), ShapeError, "prune::HessianStats::column_norms");
  WEFT_PRUNE_CHECK_FAILS(st.add_batch(Tensor<double>(Shape{3, 5})), ShapeError, "prune::HessianStats::add_batch");
  WEFT_PRUNE_CHECK_FAILS(st.add_batch(Tensor<double>(Shape{4})), ShapeError, "prune::HessianStats::add_batch");
  Tensor<double> nan(Shape{2, 4});
  nan(1, 1) = std::numeric_limits<double>::quiet_NaN();
  WEFT_PRUNE_CHECK_FAILS(st.add_batch(nan), ValueError, "prune::HessianStats::add_batch");
  CHECK(st.samples() == 0);  // nothing was added by the failed calls
  WEFT_PRUNE_CHECK_FAILS(HessianStats<double>(0), ShapeError, "prune::HessianStats");
  RowMatrix<double> h = RowMatrix<double>::Identity(3, 3);
  WEFT_PRUNE_CHECK_FAILS(prepare_hessian(h, -0.1), ValueError, "prune::prepare_hessian");
  WEFT_PRUNE_CHECK_FAILS(prepare_hessian(RowMatrix<double>(2, 3), 0.01), ShapeError, "prune::prepare_hessian");
  RowMatrix<double> indefinite = -RowMatrix<double>::Identity(3, 3);
  WEFT_PRUNE_CHECK_FAILS(inverse_hessian_diag(indefinite, 0.01), ValueError, "prune::inverse_hessian_diag");
  WEFT_PRUNE_CHECK_FAILS(obs_factor(indefinite, 0.01), ValueError, "prune::obs_factor");
  Tensor<double> w = test::randn<double>(Shape{2, 3}, rng);
  WEFT_PRUNE_CHECK_FAILS(obs_diag_importance(w, RowMatrix<double>::Identity(4, 4)), ShapeError,
                         "prune::obs_diag_importance");
  WEFT_PRUNE_CHECK_FAILS(sparsegpt_prune(w, RowMatrix<double>::Identity(4, 4)), ShapeError, "prune::sparsegpt_prune");
  SparseGPTOptions o;
  o.sparsity = 1.0;
  WEFT_PRUNE_CHECK_FAILS(sparsegpt_prune(w, h, o), ValueError, "prune::sparsegpt_prune");
  o.sparsity = 0.5;
  o.n_of_m = true;  // 3 columns are not a multiple of 4
  WEFT_PRUNE_CHECK_FAILS(sparsegpt_prune(w, h, o), ShapeError, "prune::sparsegpt_prune");
}

}  // namespace weft_unit_prune_hessian_test
