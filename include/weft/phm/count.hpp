// weft/phm/count.hpp - parameter counts of PHM layers and adapters from a configuration alone
// (nothing is allocated), with the T5-base description of the Compacter paper.
//
// Formulas (spec Sec. 6):
//   dense linear k -> d                        k d + d
//   PHM layer with its own rule               n^3 (2 n^2 factorised) + k d / n + d
//   LPHM layer with a shared rule             r (k + d) + d        (the rule counted once per model)
//   Compacter adapter (bias on)               2 r (k + m) + m + k
//   model                                      L_a (per adapter) + n^3 (shared rule) + LayerNorms
// T5-base (k = 768, 12 + 12 blocks, 62 LayerNorms with a scale only: 47,616 parameters, 222,903,552
// in total): Compacter++ 104,704 (0.0470%), Compacter 161,728 (0.0726%), PHM-Adapter 398,976
// (0.179%), Houlsby 1,855,104 (0.832%), Pfeiffer 951,360 (0.427%), the paper's fractions.
#pragma once

#include "weft/core/checked.hpp"
#include "weft/phm/adapter.hpp"

WEFT_NAMESPACE_BEGIN
namespace phm {

/// A Transformer described by its sizes only.
struct ModelShape {
  index_t hidden = 768;                 ///< k
  index_t blocks = 24;                  ///< Transformer blocks carrying adapters (12 encoder + 12 decoder)
  index_t layer_norm_params = 62 * 768; ///< trainable LayerNorm parameters (T5: scale only)
  index_t total_params = 222903552;     ///< parameters of the whole model (for the fraction)
  /// T5-base, as counted by the paper.
  static ModelShape t5_base() { return ModelShape{}; }
};

/// k d + d (without bias: k d); ValueError for negative sizes or a count that overflows index_t.
inline index_t linear_parameters(index_t k, index_t d, bool bias = true) {
  const char* fn = "phm::linear_parameters";
  return checked_add(checked_mul(k, d, fn), bias ? d : 0, fn);
}

namespace detail {
/// n^3 (2 n^2 factorised): the parameters of one rule, checked.
inline index_t rule_parameters(index_t n, bool factorized, const char* fn) {
  const index_t n2 = checked_mul(n, n, fn);
  return checked_mul(factorized ? 2 : n, n2, fn);
}
}  // namespace detail

/// Parameters of one PhmLinear k -> d with options o; its own rule is counted (n^3 or 2 n^2)
/// unless o.shared_rule. Divisibility is checked (ConfigError) as the layer would.
inline index_t phm_linear_parameters(index_t k, index_t d, const PhmOptions& o) {
  const char* fn = "phm::phm_linear_parameters";
  WEFT_CHECK(o.n >= 1 && k >= 1 && d >= 1 && k % o.n == 0 && d % o.n == 0, config, fn, "expected n = ", o.n,
             " to divide both in and out features, got in = ", k, ", out = ", d);
  WEFT_CHECK(!o.low_rank || o.rank >= 1, config, fn, "expected a rank >= 1 for low_rank, got ", o.rank);
  const index_t rule = o.shared_rule ? 0 : detail::rule_parameters(o.n, o.factorized_rule, fn);
  const index_t w = o.low_rank ? checked_mul(o.rank, checked_add(k, d, fn), fn) : checked_mul(k / o.n, d, fn);
  return checked_add(checked_add(rule, w, fn), o.bias ? d : 0, fn);
}

/// Parameters of one adapter on hidden size dim (a shared rule not included).
inline index_t adapter_parameters(index_t dim, const AdapterConfig& c) {
  const index_t m = bottleneck(dim, c, "phm::adapter_parameters");
  const char* fn = "phm::adapter_parameters";
  if (!c.hypercomplex()) return checked_add(linear_parameters(dim, m), linear_parameters(m, dim), fn);
  return checked_add(phm_linear_parameters(dim, m, c.phm), phm_linear_parameters(m, dim, c.phm), fn);
}

/// Trainable parameters of a model with adapters of configuration c on every block.
struct ParameterCount {
  index_t per_adapter = 0;   ///< one adapter (without a shared rule)
  index_t adapters = 0;      ///< number of adapters (blocks x sites)
  index_t shared_rule = 0;   ///< n^3 (2 n^2 factorised) once, for shared-rule configurations
  index_t layer_norms = 0;   ///< trainable LayerNorm parameters (when counted)
  index_t trainable = 0;     ///< adapters x per_adapter + shared_rule + layer_norms
  double fraction = 0;       ///< trainable / total_params
};

inline ParameterCount count_parameters(const ModelShape& model, const AdapterConfig& c, bool layer_norms = true) {
  WEFT_CHECK(model.blocks >= 1 && model.total_params >= 1 && model.layer_norm_params >= 0, config,
             "phm::count_parameters", "expected blocks >= 1, total_params >= 1, layer_norm_params >= 0, got ",
             model.blocks, ", ", model.total_params, ", ", model.layer_norm_params);
  ParameterCount r;
  r.per_adapter = adapter_parameters(model.hidden, c);
  const char* fn = "phm::count_parameters";
  r.adapters = checked_mul(model.blocks, c.per_block(), fn);
  if (c.hypercomplex() && c.phm.shared_rule) r.shared_rule = detail::rule_parameters(c.phm.n, c.phm.factorized_rule, fn);
  r.layer_norms = layer_norms ? model.layer_norm_params : 0;
  r.trainable = checked_add(checked_add(checked_mul(r.adapters, r.per_adapter, fn), r.shared_rule, fn), r.layer_norms, fn);
  r.fraction = double(r.trainable) / double(model.total_params);
  return r;
}

}  // namespace phm
WEFT_NAMESPACE_END
