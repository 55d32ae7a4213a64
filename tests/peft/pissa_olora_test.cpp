// Tests of the residual initialisations of weft/peft/lora.hpp (PiSSA exact and randomised,
// OLoRA) and of weft/peft/decompose.hpp: the identity W_res + s B A = W, the factors' structure,
// and the conversion to a plain rank-2r LoRA on the original weight.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "peft/peft_test_util.hpp"
#include "weft/peft/merge.hpp"

namespace weft_unit_peft_pissa_olora_test {

using namespace weft;
using weft::peft_test::forward_value;
using weft::peft_test::max_rel_diff;

namespace {
peft::LoraOptions residual(peft::LoraInit init, index_t r, double alpha, int niter = -1) {
  peft::LoraOptions o;
  o.r = r;
  o.alpha = alpha;
  o.init = init;
  o.pissa_niter = niter;
  return o;
}

/// max |W_res + s B A - W| / max |W| for an adapter and the weight before initialisation.
template <class T>
double residual_error(const peft::Lora<T>& a, const Tensor<T>& w_before) {
  Eigen::MatrixXd sum = a.base_weight().value().matrix().template cast<double>() +
                        a.scaling() * a.B().value().matrix().template cast<double>() *
                            a.A().value().matrix().template cast<double>();
  const Eigen::MatrixXd w = w_before.matrix().template cast<double>();
  return (sum - w).cwiseAbs().maxCoeff() / w.cwiseAbs().maxCoeff();
}

/// A (m, n) matrix with singular values 2^-k (a clear spectral gap for the randomised SVD).
Tensor<double> decaying(index_t m, index_t n, Rng& rng) {
  const Eigen::MatrixXd u = peft::detail::orthonormal_basis(test::randn<double>({m, m}, rng).matrix());
  const Eigen::MatrixXd v = peft::detail::orthonormal_basis(test::randn<double>({n, n}, rng).matrix());
  const index_t k = std::min(m, n);
  Eigen::VectorXd s(k);
  for (index_t i = 0; i < k; ++i) s(i) = std::pow(0.5, double(i));
  return Tensor<double>::from(u.leftCols(k) * s.asDiagonal() * v.leftCols(k).transpose());
}
}  // namespace

TEST_CASE("peft/pissa: W_res + s B A = W at init (double 1e-12, float 1e-5) and the model is unchanged") {
  Rng rng(41);
  for (auto shape : {std::vector<index_t>{12, 20}, std::vector<index_t>{20, 12}, std::vector<index_t>{9, 9}})
    for (auto init : {peft::LoraInit::pissa, peft::LoraInit::olora}) {
      for (int niter : {-1, 2}) {
        if (init == peft::LoraInit::olora && niter >= 0) continue;
        nn::Linear<double> lin(shape[1], shape[0], rng);
        const Tensor<double> w0 = lin.weight.value().clone(), x = test::randn<double>({5, shape[1]}, rng);
        const Tensor<double> y0 = forward_value(lin, x);
        auto a = peft::add_lora(lin, residual(init, 4, 8, niter), rng);
        CHECK(a->method() == (init == peft::LoraInit::pissa ? "pissa" : "olora"));
        CHECK(a->residual_base());
        CHECK(residual_error(*a, w0) <= 1e-12);
        CHECK(max_rel_diff(forward_value(lin, x), y0) <= 1e-12);
        CHECK(max_rel_diff(a->original_weight(), w0) <= 1e-12);
      }
      nn::Linear<float> lf(shape[1], shape[0], rng);
      const Tensor<float> wf = lf.weight.value().clone();
      auto af = peft::add_lora(lf, residual(init, 3, 3), rng);
      CHECK(residual_error(*af, wf) <= 1e-5);
    }
}

TEST_CASE("peft/pissa: s B A is the best rank-r approximation; W_res holds the remaining spectrum") {
  Rng rng(42);
  nn::Linear<double> lin(15, 10, rng);
  const Eigen::MatrixXd w0 = lin.weight.value().matrix();
  auto a = peft::add_lora(lin, residual(peft::LoraInit::pissa, 3, 6), rng);
  Eigen::JacobiSVD<Eigen::MatrixXd> ref(w0, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const Eigen::MatrixXd best = ref.matrixU().leftCols(3) * ref.singularValues().head(3).asDiagonal() *
                               ref.matrixV().leftCols(3).transpose();
  const Eigen::MatrixXd sba = a->scaling() * a->B().value().matrix() * a->A().value().matrix();
  CHECK((sba - best).cwiseAbs().maxCoeff() <= 1e-12);
  Eigen::JacobiSVD<Eigen::MatrixXd> res(a->base_weight().value().matrix());
  CHECK(res.singularValues()(0) == doctest::Approx(ref.singularValues()(3)).epsilon(1e-10));
  // A = diag(sqrt(sigma / s)) V^T, B = U diag(sqrt(sigma / s)): equal row / column norms
  for (index_t i = 0; i < 3; ++i) {
    const double g2 = ref.singularValues()(i) / a->scaling();
    CHECK(a->A().value().matrix().row(i).squaredNorm() == doctest::Approx(g2).epsilon(1e-10));
    CHECK(a->B().value().matrix().col(i).squaredNorm() == doctest::Approx(g2).epsilon(1e-10));
  }
}

TEST_CASE("peft/pissa: the randomised SVD finds the top singular triplets of a matrix with a spectral gap") {
  Rng rng(43);
  const Tensor<double> w = decaying(30, 24, rng);
  const peft::SvdFactors exact = peft::thin_svd(w.matrix(), 4);
  for (int niter : {1, 4}) {
    Rng r2(7);
    const peft::SvdFactors f = peft::randomized_svd(w.matrix(), 4, niter, r2, 2);
    for (index_t i = 0; i < 4; ++i) CHECK(f.sigma(i) == doctest::Approx(exact.sigma(i)).epsilon(1e-6));
    const Eigen::MatrixXd lr = f.U * f.sigma.asDiagonal() * f.V.transpose();
    const Eigen::MatrixXd le = exact.U * exact.sigma.asDiagonal() * exact.V.transpose();
    // subspace iteration converges like (sigma_{q+1} / sigma_r)^(2 niter) (Halko, Martinsson &
    // Tropp 2011, sec. 4.5): here q = 6, sigma_i = 2^-i, so the rank-4 product is off by about
    // sigma_5 (1/8)^(2 niter): 1e-3 after one iteration (measured 4.8e-5), 4e-9 after four.
    const double sigma5 = std::pow(0.5, 4.0), rate = std::pow(0.125, 2.0 * niter);  // sigma_7 / sigma_4 = 1/8
    CHECK((lr - le).cwiseAbs().maxCoeff() <= 10.0 * sigma5 * rate);
    if (niter == 4) CHECK((lr - le).cwiseAbs().maxCoeff() <= 1e-7);
  }
  Rng r3(1);
  CHECK_THROWS_AS(peft::randomized_svd(w.matrix(), 25, 1, r3), ValueError);
  CHECK_THROWS_AS(peft::thin_svd(w.matrix(), 0), ValueError);
}

TEST_CASE("peft/olora: B = Q[:, :r] has orthonormal columns, A = R[:r, :] is upper triangular") {
  Rng rng(44);
  for (auto shape : {std::vector<index_t>{12, 8}, std::vector<index_t>{8, 12}}) {
    nn::Linear<double> lin(shape[1], shape[0], rng);
    const Tensor<double> w0 = lin.weight.value().clone();
    auto a = peft::add_lora(lin, residual(peft::LoraInit::olora, 5, 10), rng);
    const Eigen::MatrixXd b = a->B().value().matrix(), A = a->A().value().matrix();
    CHECK((b.transpose() * b - Eigen::MatrixXd::Identity(5, 5)).cwiseAbs().maxCoeff() <= 1e-12);
    for (index_t i = 0; i < 5; ++i)
      for (index_t j = 0; j < i; ++j) CHECK(A(i, j) == 0.0);
    // B A = Q_r R_r: the first r columns of W are reproduced exactly by B A (R upper triangular)
    const Eigen::MatrixXd ba = b * A;
    CHECK((ba.leftCols(5) - w0.matrix().leftCols(5)).cwiseAbs().maxCoeff() <= 1e-12);
    const peft::QrFactors qr = peft::thin_qr(w0.matrix());
    CHECK(qr.Q.cols() == std::min(shape[0], shape[1]));
    CHECK((qr.Q * qr.R - w0.matrix()).cwiseAbs().maxCoeff() <= 1e-12);
  }
}

TEST_CASE("peft/pissa: conversion to a plain rank-2r LoRA on the original weight keeps the function") {
  Rng rng(45);
  for (bool rslora : {false, true})
    for (auto init : {peft::LoraInit::pissa, peft::LoraInit::olora}) {
      nn::Linear<double> lin(10, 8, rng);
      const Tensor<double> w0 = lin.weight.value().clone(), x = test::randn<double>({6, 10}, rng);
      peft::LoraOptions o = residual(init, 3, 6);
      o.rslora = rslora;
      peft::Attachment<double> att = peft::attach_lora(lin, o, rng);
      auto a = att.adapters[0].lora;
      // "training": move A and B away from their initial values
      a->A().value().array() += test::randn<double>({3, 10}, rng).array() * 0.1;
      a->B().value().array() += test::randn<double>({8, 3}, rng).array() * 0.1;
      const Tensor<double> y = forward_value(lin, x);
      auto plain = a->to_plain_lora();
      CHECK(plain->rank() == 6);
      CHECK(plain->method() == "lora");
      CHECK_FALSE(plain->residual_base());
      CHECK(plain->options().alpha == doctest::Approx(rslora ? std::sqrt(2.0) * 6 : 12.0));
      CHECK(plain->scaling() == doctest::Approx(a->scaling()).epsilon(1e-14));
      CHECK(peft::convert_to_lora(att) == 1);
      REQUIRE(lin.side_paths().size() == 1);
      CHECK(max_rel_diff(lin.weight.value(), w0) <= 1e-12);  // the original weight is back
      CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
      // the record follows: its adapter is the converted LoRA, the one the layer holds
      const auto& conv = att.adapters[0].lora;
      REQUIRE(conv != nullptr);
      CHECK(conv->rank() == 6);
      CHECK_FALSE(conv->residual_base());
      CHECK(lin.side_paths()[0].get() == static_cast<nn::SidePath<double>*>(conv.get()));
      CHECK(att.entries()[0].side == lin.side_paths()[0]);
      CHECK(peft::convert_to_lora(att) == 0);  // nothing residual left
      {  // detach still restores the weight as it was before attach, bit for bit
        const Tensor<double> wc = lin.weight.value().clone();
        att.detach();
        CHECK(lin.side_paths().empty());
        CHECK(test::identical(lin.weight.value(), w0));
        lin.weight.value().copy_from(wc);  // back to the converted state for the fold below
        lin.add_side_path(conv);
      }
      // merge the converted adapter: the same function from a plain weight
      peft::merge_and_unload(lin);
      CHECK(lin.side_paths().empty());
      CHECK(max_rel_diff(forward_value(lin, x), y) <= 1e-12);
    }
}

TEST_CASE("peft/pissa: bad input (non-finite base, plain adapters) leaves the weight unchanged") {
  Rng rng(46);
  nn::Linear<double> lin(6, 6, rng);
  lin.weight.value()(2, 3) = std::nan("");
  test::Snapshot<double> snap({lin.weight.value()});
  WEFT_NN_CHECK_FAILS(peft::add_lora(lin, residual(peft::LoraInit::pissa, 2, 2), rng), ValueError, "peft::Lora");
  WEFT_NN_CHECK_FAILS(peft::add_lora(lin, residual(peft::LoraInit::olora, 2, 2), rng), ValueError, "peft::Lora");
  CHECK(snap.unchanged());
  CHECK(lin.side_paths().empty());
  nn::Linear<double> ok(6, 6, rng);
  peft::Attachment<double> pa = peft::attach_lora(ok, residual(peft::LoraInit::kaiming, 2, 2), rng);
  auto plain = pa.adapters[0].lora;
  WEFT_NN_CHECK_FAILS(plain->to_plain_lora(), ConfigError, "peft::Lora::to_plain_lora");
  WEFT_NN_CHECK_FAILS(plain->original_weight(), ConfigError, "peft::Lora::original_weight");
  CHECK(peft::convert_to_lora(pa) == 0);
  // a merged PiSSA adapter must be unmerged before conversion
  nn::Linear<double> p(6, 6, rng);
  peft::Attachment<double> pp = peft::attach_lora(p, residual(peft::LoraInit::pissa, 2, 2), rng);
  peft::merge(pp);
  test::Snapshot<double> ps({p.weight.value()});
  WEFT_NN_CHECK_FAILS(peft::convert_to_lora(pp), ConfigError, "peft::convert_to_lora");
  CHECK(ps.unchanged());
  // a detached record is refused
  CHECK(peft::unmerge(pp) == 1);
  pp.detach();
  WEFT_NN_CHECK_FAILS(peft::convert_to_lora(pp), ConfigError, "peft::convert_to_lora");
  WEFT_NN_CHECK_FAILS(peft::merge(pp), ConfigError, "peft::merge");
}

}  // namespace weft_unit_peft_pissa_olora_test
