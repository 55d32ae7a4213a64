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

#include "weft/core/checked.hpp"
#include "weft/core/error.hpp"
#include "weft/core/shape.hpp"

WEFT_NAMESPACE_BEGIN
namespace peft {

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
  const char* fn = "peft::param_count";
  switch (m) {
    case Method::lora: return checked_add(checked_mul(r, checked_add(s.in, s.out, fn), fn), lora_bias ? s.out : 0, fn);
    case Method::bone_shared:
    case Method::bone_affine: return checked_mul(r, s.out, fn);
    default: return checked_mul(r, mini_r, fn);
  }
}

/// Sum of param_count over layers.
inline index_t param_count(const std::vector<LayerShape>& layers, Method m, index_t r, index_t mini_r = 1,
                           bool lora_bias = false) {
  index_t n = 0;
  for (const auto& s : layers) n = checked_add(n, param_count(s, m, r, mini_r, lora_bias), "peft::param_count");
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

namespace detail {
/// The ascending divisors of g >= 1 (O(sqrt g)).
inline std::vector<index_t> divisors(index_t g) {
  std::vector<index_t> lo, hi;
  for (index_t d = 1; d <= g / d; ++d)
    if (g % d == 0) {
      lo.push_back(d);
      if (d != g / d) hi.push_back(g / d);
    }
  lo.insert(lo.end(), hi.rbegin(), hi.rend());
  return lo;
}
inline index_t gcd(index_t a, index_t b) { return b == 0 ? a : gcd(b, a % b); }

/// The ranks that can be closest to target for method `to` (mini_r = 1), whose count is r unit:
/// every common divisor for bone_affine; else the ends of [1, hi] and the ranks around
/// target / unit (|r unit - target| is convex in r, so its minimum over any run of ranks is there).
inline std::vector<index_t> budget_candidates(const std::vector<LayerShape>& layers, Method to, index_t unit,
                                              index_t target) {
  index_t g = 0, hi = PTRDIFF_MAX;
  for (const auto& s : layers) {
    g = gcd(gcd(g, s.in), s.out);
    hi = std::min(hi, to == Method::lora ? std::min(s.in, s.out) : s.in);
  }
  if (to == Method::bone_affine) return divisors(g);
  const index_t q = target / unit;
  std::vector<index_t> c = {1, 2, hi - 1, hi, q - 1, q, q + 1, q + 2};
  c.erase(std::remove_if(c.begin(), c.end(), [hi](index_t r) { return r < 1 || r > hi; }), c.end());
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  return c;
}
}  // namespace detail

/// The rank of method `to` whose trainable count on `layers` is closest to that of method
/// `from` with rank r_from (ties go to the smaller rank; only ranks valid on every layer count;
/// even_only restricts to even ranks, PEFT's advice for Bone). ValueError if none is valid.
/// Looks at O(1) candidate ranks (O(sqrt(gcd)) of them for bone_affine), not every rank.
inline index_t equal_budget_rank(const std::vector<LayerShape>& layers, Method from, index_t r_from, Method to,
                                 bool even_only = false) {
  const char* fn = "peft::equal_budget_rank";
  WEFT_CHECK(!layers.empty(), value, fn, "expected at least one layer shape, got none");
  const index_t target = param_count(layers, from, r_from);
  bool shapes_ok = true;
  for (const auto& s : layers) shapes_ok = shapes_ok && s.in >= 1 && s.out >= 1;
  index_t best = 0, best_gap = -1;
  if (shapes_ok) {
    const index_t unit = param_count(layers, to, 1);  // the count of rank r is r unit
    for (index_t r : detail::budget_candidates(layers, to, unit, target)) {
      bool ok = !even_only || r % 2 == 0;
      for (const auto& s : layers) ok = ok && rank_valid(s, to, r);
      if (!ok || r > PTRDIFF_MAX / unit) continue;
      const index_t diff = r * unit - target, gap = diff < 0 ? -diff : diff;
      if (best_gap < 0 || gap < best_gap) {
        best = r;
        best_gap = gap;
      }
    }
  }
  WEFT_CHECK(best > 0, value, fn, "expected some rank valid for ", method_name(to), " on every layer, got none");
  return best;
}

}  // namespace peft
WEFT_NAMESPACE_END
