// Composition of pruning masks (weft/prune) with the weight quantisers on the same nn::Linear
// (issue 16): the canonical order puts the mask after the quantiser (W -> Q(W) * M) whatever the
// order of attachment, so a 50 % mask keeps exactly its zeros through 2-bit StatsQ (which has no
// zero level) and LSQ, also after QAT optimiser steps. Before the order existed, a mask attached
// before StatsQ left 0 of 8192 zeros. Only this file and compander_compose_test include two
// families; include/weft/quant never includes weft/prune.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "quant_test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/optim.hpp"
#include "weft/prune/attach.hpp"
#include "weft/prune/mask.hpp"
#include "weft/prune/scores.hpp"
#include "weft/quant/lsq.hpp"
#include "weft/quant/statsq.hpp"
#include "weft/quant/wrap.hpp"
#include "weft/reparam/attach.hpp"

namespace weft_unit_quant_prune_compose_test {

using namespace weft;

/// 50 % magnitude masks (exact count per matrix) of every Linear of the model.
std::vector<prune::Mask> magnitude_masks(nn::MLP<float>& mlp) {
  std::vector<prune::Mask> masks;
  prune::MaskOptions mo;
  mo.sparsity = 0.5;
  for (auto& l : mlp.layers) masks.push_back(prune::select_mask(prune::magnitude_scores(l.weight.value()), mo));
  return masks;
}

struct ZeroCount {
  index_t at_masked = 0;  // zeros of the effective weight where the mask prunes
  index_t total = 0;      // zeros of the effective weight anywhere
};
ZeroCount zeros_of(nn::Linear<float>& l, const prune::Mask& m) {
  const Tensor<float> w = l.folded_weight();
  ZeroCount z;
  for (index_t i = 0; i < w.numel(); ++i) {
    const bool zero = w.flat(i) == 0.0f;
    z.total += zero;
    z.at_masked += zero && m.keep[std::size_t(i)] == 0;
  }
  return z;
}

std::vector<std::string> chain(const nn::Linear<float>& l) {
  std::vector<std::string> out;
  for (auto& t : l.transforms()) out.push_back(t->name());
  return out;
}

/// kind 0: StatsQ 2 bit, 1: LSQ 2 bit; mask_first: apply_masks before quantize_linears.
void check_composition(int kind, bool mask_first) {
  CAPTURE(kind);
  CAPTURE(mask_first);
  Rng rng(160 + std::uint64_t(kind));
  nn::MLP<float> mlp({128, 128, 64}, rng);  // layers.0 holds 16384 weights: 8192 pruned
  const std::vector<prune::Mask> masks = magnitude_masks(mlp);
  REQUIRE(masks[0].zeros() == 8192);
  auto factory = kind == 0 ? quant::statsq_factory<float>() : quant::lsq_factory<float>();
  std::vector<prune::PrunedWeight<float>> pruned;
  if (mask_first) {
    pruned = prune::apply_masks<float>(mlp, {}, masks);
    (void)quant::quantize_linears<float>(mlp, factory);
  } else {
    (void)quant::quantize_linears<float>(mlp, factory);
    pruned = prune::apply_masks<float>(mlp, {}, masks);
  }
  const std::string qname = kind == 0 ? "statsq" : "lsq";
  for (auto& l : mlp.layers) CHECK(chain(l) == std::vector<std::string>{qname, "mask"});

  // the effective weight is Q(W) * M exactly
  for (std::size_t i = 0; i < mlp.layers.size(); ++i) {
    nn::Linear<float>& l = mlp.layers[i];
    Tensor<float> q = l.transforms()[0]->fold(l.weight.value());
    for (index_t j = 0; j < q.numel(); ++j)
      if (masks[i].keep[std::size_t(j)] == 0) q.flat(j) = 0.0f;
    CHECK(test::identical(l.folded_weight(), q));
  }

  auto check_zeros = [&](int step) {
    CAPTURE(step);
    for (std::size_t i = 0; i < mlp.layers.size(); ++i) {
      const ZeroCount z = zeros_of(mlp.layers[i], masks[i]);
      CHECK(z.at_masked == masks[i].zeros());  // every pruned entry is exactly 0
      if (kind == 0) CHECK(z.total == masks[i].zeros());  // StatsQ has no zero level: nothing else is 0
      else CHECK(z.total >= masks[i].zeros());            // LSQ may round kept weights to 0 as well
      // the stored weights stay pruned too (the mask's backward and the enforce_masks hook)
      index_t stored = 0;
      for (index_t j = 0; j < mlp.layers[i].weight.numel(); ++j)
        stored += masks[i].keep[std::size_t(j)] == 0 && mlp.layers[i].weight.value().flat(j) == 0.0f;
      CHECK(stored == masks[i].zeros());
    }
  };
  check_zeros(0);

  // QAT: AdamW with decoupled weight decay (moves weights without their gradient) for a few steps
  nn::AdamOptions ao;
  ao.lr = 1e-2;
  ao.weight_decay = 0.1;
  nn::AdamW<float> opt(mlp.parameters(), ao);
  nn::HookHandle keep = prune::enforce_masks(opt, pruned);
  const Tensor<float> x = test::randn<float>(Shape{32, 128}, rng);
  const Tensor<float> y = test::randn<float>(Shape{32, 64}, rng);
  const Tensor<float> before = mlp.layers[0].folded_weight();
  for (int s = 1; s <= 5; ++s) {
    opt.zero_grad();
    Tape<float> t;
    Var<float> d = mlp(t.constant(x)) - t.constant(y);
    t.backward(sum(d * d));
    opt.step();
    check_zeros(s);
  }
  CHECK_FALSE(test::identical(mlp.layers[0].folded_weight(), before));  // training moved the weights
}

TEST_CASE("quant/compose: a 50% magnitude mask keeps exactly its zeros under 2-bit StatsQ, in either attach order") {
  check_composition(0, true);
  check_composition(0, false);
}

TEST_CASE("quant/compose: a 50% magnitude mask keeps its zeros under 2-bit LSQ, in either attach order") {
  check_composition(1, true);
  check_composition(1, false);
}

TEST_CASE("quant/compose: compander, quantiser and mask attached in reverse order run compander -> quantiser -> mask") {
  Rng rng(170);
  nn::MLP<float> mlp({32, 16}, rng);
  const std::vector<prune::Mask> masks = magnitude_masks(mlp);
  (void)prune::apply_masks<float>(mlp, {}, masks);
  (void)quant::quantize_linears<float>(mlp, quant::statsq_factory<float>());
  const Tensor<float> w_pruned = mlp.layers[0].weight.value().clone();
  const auto att = reparam::attach_compander(mlp);
  CHECK(chain(mlp.layers[0]) == std::vector<std::string>{"compander", "statsq", "mask"});
  // the compander's inverse keeps the pruned zeros in v, and Psi(v) reproduces the weight it saw
  const Tensor<float> w_seen = mlp.layers[0].transforms()[0]->fold(mlp.layers[0].weight.value());
  WEFT_CHECK_CLOSE(w_seen, w_pruned, 1e-5);
  const ZeroCount z = zeros_of(mlp.layers[0], masks[0]);
  CHECK(z.at_masked == masks[0].zeros());
  CHECK(z.total == masks[0].zeros());
  // a second compander or quantiser is refused, model untouched
  WEFT_QUANT_CHECK_FAILS(reparam::attach_compander(mlp), ConfigError, "reparam::attach_compander");
  WEFT_QUANT_CHECK_FAILS(quant::quantize_linears<float>(mlp, quant::lsq_factory<float>()), ConfigError,
                         "quant::quantize_linears");
  CHECK(chain(mlp.layers[0]) == std::vector<std::string>{"compander", "statsq", "mask"});
}

}  // namespace weft_unit_quant_prune_compose_test
