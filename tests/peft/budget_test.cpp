// Tests of weft/peft/budget.hpp: parameter counts from shapes alone (the spec's LLaMA2-7B
// numbers), agreement with the adapters' own counts, and the equal-budget rank helper.
#include <doctest/doctest.h>

#include <algorithm>
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

namespace {
/// The former exhaustive search over every rank up to max(in, out): the reference.
index_t budget_rank_by_scan(const std::vector<peft::LayerShape>& layers, peft::Method from, index_t r_from,
                            peft::Method to, bool even_only) {
  const index_t target = peft::param_count(layers, from, r_from);
  index_t max_r = 0, best = 0, best_gap = -1;
  for (const auto& s : layers) max_r = std::max(max_r, std::max(s.in, s.out));
  for (index_t r = even_only ? 2 : 1; r <= max_r; r += even_only ? 2 : 1) {
    bool ok = true;
    for (const auto& s : layers) ok = ok && peft::rank_valid(s, to, r);
    if (!ok) continue;
    const index_t diff = peft::param_count(layers, to, r) - target, gap = diff < 0 ? -diff : diff;
    if (best_gap < 0 || gap < best_gap) best = r, best_gap = gap;
  }
  return best;
}
}  // namespace

TEST_CASE("peft/budget: equal_budget_rank equals the exhaustive scan, and is fast on huge layers") {
  const peft::Method all[] = {peft::Method::lora, peft::Method::bone_shared, peft::Method::bone_affine,
                              peft::Method::miss_mini};
  Rng rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<peft::LayerShape> layers(std::size_t(1 + rng.below(3)));
    for (auto& s : layers) s = {index_t(4 * (1 + rng.below(24))), index_t(4 * (1 + rng.below(24)))};
    const peft::Method from = all[rng.below(4)], to = all[rng.below(4)];
    const index_t r_from = from == peft::Method::bone_affine ? 4 : index_t(1 + rng.below(4));
    for (bool even : {false, true}) {
      const index_t ref = budget_rank_by_scan(layers, from, r_from, to, even);
      CAPTURE(trial);
      if (ref == 0) CHECK_THROWS_AS(peft::equal_budget_rank(layers, from, r_from, to, even), ValueError);
      else CHECK(peft::equal_budget_rank(layers, from, r_from, to, even) == ref);
    }
  }
  // a (1, 2^40) layer: the scan would take 2^40 steps
  const std::vector<peft::LayerShape> wide = {{index_t(1) << 40, 1}, {16, 16}};
  CHECK(peft::equal_budget_rank(wide, peft::Method::lora, 1, peft::Method::bone_shared) == 16);
  CHECK(peft::equal_budget_rank(wide, peft::Method::lora, 1, peft::Method::bone_affine) == 1);
  CHECK(peft::equal_budget_rank({{index_t(1) << 40, index_t(1) << 40}}, peft::Method::lora, 3,
                                peft::Method::bone_shared) == 6);
}

TEST_CASE("peft/budget: counts that overflow index_t are a ValueError, not undefined behaviour") {
  const peft::LayerShape huge{index_t(1) << 40, index_t(1) << 40};
  CHECK_THROWS_WITH_AS(peft::param_count(huge, peft::Method::lora, index_t(1) << 30),
                       doctest::Contains("weft::peft::param_count: "), ValueError);
  const std::vector<peft::LayerShape> many(64, peft::LayerShape{index_t(1) << 40, index_t(1) << 40});
  CHECK_THROWS_AS(peft::param_count(many, peft::Method::bone_shared, index_t(1) << 18), ValueError);
  CHECK(peft::param_count(huge, peft::Method::bone_shared, 4) == index_t(1) << 42);
}

}  // namespace weft_unit_peft_budget_test
