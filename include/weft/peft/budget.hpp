// weft/peft/budget.hpp - trainable-parameter counts from layer shapes alone, and ranks that give
// two methods the same budget.
//
// Per layer of shape (out, in):  LoRA family  r (in + out)  (+ out with a trainable LoRA bias)
//                                BoneShared   r out
//                                BoneAffine   (out / r) r^2 = r out
//                                MissMini     r mini_r
// So BoneShared / BoneAffine with r_b matches LoRA with r_L when r_b sum(out) ~ r_L sum(in + out):
// r_b = 2 r_L on square layers. equal_budget_rank() finds the valid rank of one method whose
// count is closest to another method's (BoneAffine ranks must divide every in and out).
// LLaMA2-7B (hidden 4096, ffn 11008, 32 layers, the 7 projections q, k, v, o, gate, up, down):
// LoRA r = 36 -> 89,948,160; Bone / Bat r = 64 -> 87,031,808 (the Bone paper's table).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/core/shape.hpp"

namespace weft::peft {

/// The shape of one adapted layer (W is (out, in)).
struct LayerShape {
  index_t in = 0, out = 0;
};

enum class Method { lora, bone_shared, bone_affine, miss_mini };

inline const char* method_name(Method m) {
  switch (m) {
    case Method::lora: return "lora";
    case Method::bone_shared: return "bone_shared";
    case Method::bone_affine: return "bone_affine";
    default: return "miss_mini";
  }
}

/// Whether rank r is valid for `method` on a layer (the adapters' own construction checks).
inline bool rank_valid(const LayerShape& s, Method m, index_t r, index_t mini_r = 1) {
  if (r < 1 || s.in < 1 || s.out < 1) return false;
  switch (m) {
    case Method::lora: return r <= std::min(s.in, s.out);
    case Method::bone_shared: return r <= s.in;
    case Method::bone_affine: return s.in % r == 0 && s.out % r == 0;
    default: return r <= s.in && mini_r >= 1 && s.out % mini_r == 0;
  }
}

/// Trainable parameters of `method` with rank r on one layer (lora_bias: PEFT's trainable LoRA
/// bias, off by default).
inline index_t param_count(const LayerShape& s, Method m, index_t r, index_t mini_r = 1, bool lora_bias = false) {
  WEFT_CHECK(rank_valid(s, m, r, mini_r), value, "peft::param_count", "expected a valid rank for ", method_name(m),
             " on a layer of shape (", s.out, ", ", s.in, "), got r = ", r, (m == Method::miss_mini ? " (mini_r = " : ""),
             (m == Method::miss_mini ? std::to_string(mini_r) + ")" : std::string()));
  switch (m) {
    case Method::lora: return r * (s.in + s.out) + (lora_bias ? s.out : 0);
    case Method::bone_shared:
    case Method::bone_affine: return r * s.out;
    default: return r * mini_r;
  }
}

/// Sum of param_count over layers.
inline index_t param_count(const std::vector<LayerShape>& layers, Method m, index_t r, index_t mini_r = 1,
                           bool lora_bias = false) {
  index_t n = 0;
  for (const auto& s : layers) n += param_count(s, m, r, mini_r, lora_bias);
  return n;
}

/// The shapes of a LLaMA-style decoder's adapted projections: per layer q, k, v, o (hidden x
/// hidden), gate and up (hidden -> ffn), down (ffn -> hidden).
inline std::vector<LayerShape> llama_shapes(index_t hidden, index_t ffn, index_t layers) {
  WEFT_CHECK(hidden >= 1 && ffn >= 1 && layers >= 1, value, "peft::llama_shapes",
             "expected positive hidden, ffn and layer counts, got ", hidden, ", ", ffn, ", ", layers);
  std::vector<LayerShape> out;
  for (index_t l = 0; l < layers; ++l) {
    for (int k = 0; k < 4; ++k) out.push_back({hidden, hidden});
    out.push_back({hidden, ffn});
    out.push_back({hidden, ffn});
    out.push_back({ffn, hidden});
  }
  return out;
}

/// The rank of method `to` whose trainable count on `layers` is closest to that of method
/// `from` with rank r_from (ties go to the smaller rank; only ranks valid on every layer count;
/// even_only restricts to even ranks, PEFT's advice for Bone). ValueError if none is valid.
inline index_t equal_budget_rank(const std::vector<LayerShape>& layers, Method from, index_t r_from, Method to,
                                 bool even_only = false) {
  const char* fn = "peft::equal_budget_rank";
  WEFT_CHECK(!layers.empty(), value, fn, "expected at least one layer shape, got none");
  const index_t target = param_count(layers, from, r_from);
  index_t max_r = 0;
  for (const auto& s : layers) max_r = std::max(max_r, std::max(s.in, s.out));
  index_t best = 0, best_gap = -1;
  for (index_t r = even_only ? 2 : 1; r <= max_r; r += even_only ? 2 : 1) {
    bool ok = true;
    for (const auto& s : layers) ok = ok && rank_valid(s, to, r);
    if (!ok) continue;
    const index_t diff = param_count(layers, to, r) - target, gap = diff < 0 ? -diff : diff;
    if (best_gap < 0 || gap < best_gap) {
      best = r;
      best_gap = gap;
    }
  }
  WEFT_CHECK(best > 0, value, fn, "expected some rank valid for ", method_name(to), " on every layer, got none");
  return best;
}

}  // namespace weft::peft
