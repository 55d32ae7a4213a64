// Tests of weft/reparam/diagnostics.hpp: weight statistics (max |w|, kurtosis, fraction near
// zero) on known inputs and distributions, NaN handling, bad input, and finding the Linear
// layers of a model.
#include <doctest/doctest.h>

#include <cmath>

#include "nn/nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/nn/attention.hpp"
#include "weft/nn/layers.hpp"
#include "weft/reparam/attach.hpp"
#include "weft/reparam/diagnostics.hpp"

namespace weft_unit_reparam_diagnostics_test {

using namespace weft;
using namespace weft::reparam;

TEST_CASE("reparam/diagnostics: statistics of a small known tensor") {
  const Tensor<double> w = Tensor<double>::vector_of({-2, -1, 0, 1, 2});
  const WeightStats s = weight_stats(w, 0.5);
  CHECK(s.count == 5);
  CHECK(s.max_abs == 2.0);
  CHECK(s.mean == 0.0);
  CHECK(s.stddev == doctest::Approx(std::sqrt(2.0)));
  CHECK(s.kurtosis == doctest::Approx(6.8 / 4.0));  // m4 = 6.8, m2 = 2
  CHECK(s.frac_near_zero == doctest::Approx(0.2));
  CHECK(weight_stats(w, 1.5).frac_near_zero == doctest::Approx(0.6));
  const Tensor<float> wf = Tensor<float>::vector_of({-2, -1, 0, 1, 2});
  CHECK(weight_stats(wf, 0.5).kurtosis == doctest::Approx(1.7));
}

TEST_CASE("reparam/diagnostics: kurtosis of uniform and normal samples (1.8 and 3)") {
  Rng rng(1);
  const WeightStats u = weight_stats(test::rand_uniform<double>({200, 500}, rng, -1, 1));
  CHECK(u.kurtosis == doctest::Approx(1.8).epsilon(0.02));
  CHECK(u.max_abs < 1.0);
  CHECK(u.frac_near_zero == doctest::Approx(0.01).epsilon(0.1));
  const WeightStats n = weight_stats(test::randn<double>({200, 500}, rng));
  CHECK(n.kurtosis == doctest::Approx(3.0).epsilon(0.03));
}

TEST_CASE("reparam/diagnostics: NaN weights, constant weights and bad input") {
  const WeightStats s = weight_stats(Tensor<double>::vector_of({1.0, NAN, 2.0}));
  CHECK(std::isnan(s.max_abs));
  CHECK(std::isnan(s.kurtosis));
  CHECK(std::isnan(weight_stats(Tensor<double>::vector_of({0.5, 0.5})).kurtosis));
  WEFT_NN_CHECK_FAILS(weight_stats(Tensor<double>(Shape{0})), ShapeError, "reparam::weight_stats");
  WEFT_NN_CHECK_FAILS(weight_stats(Tensor<double>()), ShapeError, "reparam::weight_stats");
  WEFT_NN_CHECK_FAILS(weight_stats(Tensor<double>::vector_of({1.0}), -1.0), ValueError, "reparam::weight_stats");
}

TEST_CASE("reparam/diagnostics: find_linears walks nested modules; linear_weight_stats sees effective weights") {
  Rng rng(2);
  nn::TransformerBlock<double> block(8, 2, 2, rng);
  auto ls = find_linears(block);
  REQUIRE(ls.size() == 6);
  CHECK(ls[0].first == "attn.q_proj");
  CHECK(ls[3].first == "attn.out_proj");
  CHECK(ls[4].first == "mlp.layers.0");
  CHECK(ls[5].second == &block.mlp.layers[1]);

  nn::MLP<double> mlp({6, 5, 2}, rng);
  CompanderOptions o;
  o.a = 0.1;  // a tight bound, so Psi(v) != w0 for the clamped weights
  attach_compander(mlp, o);
  auto st = linear_weight_stats(mlp, 0.05);
  REQUIRE(st.size() == 2);
  CHECK(st[1].first == "layers.1");
  const WeightStats ref = weight_stats(mlp.layers[1].folded_weight(), 0.05);
  CHECK(st[1].second.max_abs == ref.max_abs);
  CHECK(st[1].second.kurtosis == ref.kurtosis);
  CHECK(st[1].second.max_abs < 0.1 * AtanPsi::limit);
}

}  // namespace weft_unit_reparam_diagnostics_test
