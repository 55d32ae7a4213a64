// Tests of weft/peft/budget.hpp: parameter counts from shapes alone (the spec's LLaMA2-7B
// numbers), agreement with the adapters' own counts, and the equal-budget rank helper.
#include <doctest/doctest.h>

#include <vector>

#include "peft/peft_test_util.hpp"
#include "weft/nn/layers.hpp"
#include "weft/peft/model.hpp"
#include "weft/peft/budget.hpp"

namespace weft_unit_peft_budget_test {

using namespace weft;

TEST_CASE("peft/budget: LLaMA2-7B counts from shapes alone (spec 10.1.6)") {
  const auto shapes = peft::llama_shapes(4096, 11008, 32);
  CHECK(shapes.size() == 7 * 32);
  CHECK(peft::param_count(shapes, peft::Method::lora, 36) == 89948160);
  CHECK(peft::param_count(shapes, peft::Method::bone_shared, 64) == 87031808);
  CHECK(peft::param_count(shapes, peft::Method::bone_affine, 64) == 87031808);
  // the ranks the paper compared are each other's equal-budget ranks under the divisibility rule
  CHECK(peft::equal_budget_rank(shapes, peft::Method::lora, 36, peft::Method::bone_affine) == 64);
  CHECK(peft::equal_budget_rank(shapes, peft::Method::lora, 36, peft::Method::bone_shared) == 66);
  CHECK(peft::param_count(shapes, peft::Method::lora, 8, 1, true) ==
        peft::param_count(shapes, peft::Method::lora, 8) + 32 * (4 * 4096 + 2 * 11008 + 4096));
}

TEST_CASE("peft/budget: square layers: Bone r = 2 x LoRA r; the experiment's budgets") {
  const std::vector<peft::LayerShape> square(5, peft::LayerShape{64, 64});
  for (index_t r : {1, 2, 4, 8, 16}) {
    CHECK(peft::equal_budget_rank(square, peft::Method::lora, r, peft::Method::bone_shared) == 2 * r);
    CHECK(peft::equal_budget_rank(square, peft::Method::bone_shared, 2 * r, peft::Method::lora) == r);
    CHECK(peft::param_count(square, peft::Method::bone_shared, 2 * r) == peft::param_count(square, peft::Method::lora, r));
  }
  const std::vector<peft::LayerShape> mlp = {{32, 64}, {64, 64}, {64, 16}};
  CHECK(peft::param_count(mlp, peft::Method::lora, 4) == 1216);
  CHECK(peft::param_count(mlp, peft::Method::bone_shared, 8) == 1152);
  CHECK(peft::equal_budget_rank(mlp, peft::Method::lora, 4, peft::Method::bone_affine) == 8);
  CHECK(peft::equal_budget_rank(mlp, peft::Method::lora, 4, peft::Method::bone_shared, true) == 8);
  CHECK(peft::param_count(mlp, peft::Method::miss_mini, 8, 4) == 3 * 32);
}

TEST_CASE("peft/budget: counts agree with the attached adapters") {
  Rng rng(71);
  nn::MLP<double> m({32, 64, 64, 16}, rng, nn::Activation::tanh, false);
  const std::vector<peft::LayerShape> shapes = {{32, 64}, {64, 64}, {64, 16}};
  peft::LoraOptions lo;
  lo.r = 3;
  CHECK(peft::attach_lora(m, lo, rng).num_trainable() == peft::param_count(shapes, peft::Method::lora, 3));
  peft::BoneOptions bo;
  bo.r = 4;
  bo.mini_r = 2;
  CHECK(peft::attach_miss_mini(m, bo, rng).num_trainable() == peft::param_count(shapes, peft::Method::miss_mini, 4, 2));
  CHECK(peft::attach_bone_affine(m, bo, rng).num_trainable() == peft::param_count(shapes, peft::Method::bone_affine, 4));
}

TEST_CASE("peft/budget: invalid ranks are errors") {
  const peft::LayerShape s{10, 6};
  CHECK_FALSE(peft::rank_valid(s, peft::Method::lora, 7));
  CHECK(peft::rank_valid(s, peft::Method::bone_shared, 7));
  CHECK_FALSE(peft::rank_valid(s, peft::Method::bone_affine, 4));
  CHECK(peft::rank_valid(s, peft::Method::bone_affine, 2));
  CHECK_FALSE(peft::rank_valid(s, peft::Method::miss_mini, 2, 4));
  WEFT_NN_CHECK_FAILS(peft::param_count(s, peft::Method::lora, 0), ValueError, "peft::param_count");
  WEFT_NN_CHECK_FAILS(peft::param_count(s, peft::Method::bone_affine, 3), ValueError, "peft::param_count");
  const std::vector<peft::LayerShape> prime = {{7, 11}};
  CHECK(peft::equal_budget_rank(prime, peft::Method::lora, 2, peft::Method::bone_affine) == 1);
  WEFT_NN_CHECK_FAILS(peft::equal_budget_rank({}, peft::Method::lora, 2, peft::Method::bone_shared), ValueError,
                      "peft::equal_budget_rank");
  WEFT_NN_CHECK_FAILS(peft::llama_shapes(0, 1, 1), ValueError, "peft::llama_shapes");
}

}  // namespace weft_unit_peft_budget_test
