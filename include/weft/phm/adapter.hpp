// weft/phm/adapter.hpp - Compacter, Compacter++ and PHM-Adapter bottleneck adapters, the dense
// (Houlsby / Pfeiffer) bottleneck they are compared with, and their placement in a Transformer.
//
// An adapter on a hidden state h in R^k with bottleneck m = floor(k / reduction_factor):
//   f(h) = h + up(GELU(down(h)))          down: k -> m, up: m -> k, both with bias, GELU(tanh)
// Compacter:   down and up are LPHM layers (n = 4, r = 1) sharing ONE rule A with every other PHM
//              layer of the model; adapters after attention and after the feed-forward.
// Compacter++: the same, after the feed-forward only.
// PHM-Adapter: full-rank PHM layers, n = 12, each with its own rule; both sites.
// Houlsby / Pfeiffer: dense Linear layers (down U(-1/sqrt(k), 1/sqrt(k)), up and biases zero:
//              f(h) = h at init); both sites / feed-forward only.
// With the reference initialisation the entries of H are ~1e-5..1e-4, so f(h) = h to ~1e-7
// relative at init (spec Sec. 5). n must divide k and m (ConfigError naming both otherwise; e.g.
// k = 768, reduction_factor 16, n = 5 fails).
//
// Placement (nn::TransformerBlock is pre-LN: h = x + attn(ln1(x)); y = h + mlp(ln2(h))): the
// adapters are nn::OutputAdapters on attn.out_proj (after attention) and on mlp.layers.back()
// (after the feed-forward), so each sublayer computes x + f(sublayer(LN(x))) as in the reference's
// T5 layers. Nothing in nn/ changes; the adapter parameters appear in named_parameters() as
// "...adapters.0.compacter.down.W_left" and the shared rule once.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/unary.hpp"
#include "weft/nn/attention.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/attachment.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/select.hpp"
#include "weft/phm/layer.hpp"

WEFT_NAMESPACE_BEGIN
namespace phm {

enum class AdapterKind { compacter, compacter_plus_plus, phm_adapter, houlsby, pfeiffer };

inline const char* to_string(AdapterKind k) {
  switch (k) {
    case AdapterKind::compacter: return "compacter";
    case AdapterKind::compacter_plus_plus: return "compacter++";
    case AdapterKind::phm_adapter: return "phm_adapter";
    case AdapterKind::houlsby: return "houlsby";
    case AdapterKind::pfeiffer: return "pfeiffer";
  }
  return "?";
}

struct AdapterConfig {
  AdapterKind kind = AdapterKind::compacter;
  index_t reduction_factor = 32;
  /// The PHM layers (PHM kinds). For Compacter and Compacter++ the shared rule is drawn from
  /// these options too: n, factorized_rule, rule_init, learn_rule, and init_range as its sigma.
  PhmOptions phm;

  static AdapterConfig make(AdapterKind k) {
    AdapterConfig c;
    c.kind = k;
    c.phm.shared_rule = k == AdapterKind::compacter || k == AdapterKind::compacter_plus_plus;
    if (k == AdapterKind::phm_adapter) {
      c.phm.n = 12;
      c.phm.low_rank = false;
    }
    return c;
  }
  bool hypercomplex() const noexcept { return kind != AdapterKind::houlsby && kind != AdapterKind::pfeiffer; }
  bool after_attention() const noexcept {
    return kind == AdapterKind::compacter || kind == AdapterKind::phm_adapter || kind == AdapterKind::houlsby;
  }
  bool after_feed_forward() const noexcept { return true; }
  /// Adapters per Transformer block (2 with both sites, 1 after the feed-forward only).
  index_t per_block() const noexcept { return after_attention() ? 2 : 1; }
};

/// The options of the shared rule of a Compacter configuration.
inline RuleOptions shared_rule_options(const PhmOptions& o) {
  RuleOptions r;
  r.n = o.n;
  r.factorized = o.factorized_rule;
  r.init = o.rule_init;
  r.init_range = o.init_range;
  r.learn = o.learn_rule;
  return r;
}

/// The bottleneck m = floor(dim / reduction_factor), checked (and n | dim, n | m for PHM kinds).
inline index_t bottleneck(index_t dim, const AdapterConfig& c, const char* fn = "phm::bottleneck") {
  WEFT_CHECK(dim >= 1 && c.reduction_factor >= 1, config, fn, "expected dim >= 1 and reduction_factor >= 1, got ",
             dim, " and ", c.reduction_factor);
  const index_t m = dim / c.reduction_factor;
  WEFT_CHECK(m >= 1, config, fn, "expected a bottleneck of at least 1 (dim ", dim, " / reduction_factor ",
             c.reduction_factor, "), got 0");
  if (c.hypercomplex())
    WEFT_CHECK(c.phm.n >= 1 && dim % c.phm.n == 0 && m % c.phm.n == 0, config, fn, "expected n = ", c.phm.n,
               " to divide the hidden size ", dim, " and the bottleneck ", m, " (", dim, " / ", c.reduction_factor,
               "), got remainders ", c.phm.n >= 1 ? dim % c.phm.n : dim, " and ", c.phm.n >= 1 ? m % c.phm.n : m);
  return m;
}

/// f(h) = h + up(GELU(down(h))) with PHM / LPHM projections (Compacter, PHM-Adapter).
template <class T>
class HypercomplexAdapter : public nn::OutputAdapter<T> {
 public:
  PhmLinear<T> down, up;

  /// `shared` is the model's rule for shared-rule configurations (ignored otherwise).
  HypercomplexAdapter(index_t dim, const AdapterConfig& c, const PhmRule<T>& shared, Rng& rng) {
    const char* fn = "phm::HypercomplexAdapter";
    WEFT_CHECK(c.hypercomplex(), config, fn, "expected a PHM adapter kind, got ", to_string(c.kind));
    const index_t m = bottleneck(dim, c, fn);
    if (c.phm.shared_rule) {
      down = PhmLinear<T>(dim, m, shared, rng, c.phm);
      up = PhmLinear<T>(m, dim, shared, rng, c.phm);
    } else {
      down = PhmLinear<T>(dim, m, rng, c.phm);
      up = PhmLinear<T>(m, dim, rng, c.phm);
    }
    kind_ = c.kind;
  }
  std::string name() const override { return kind_ == AdapterKind::phm_adapter ? "phm_adapter" : "compacter"; }
  bool is_adapter() const override { return true; }
  Var<T> forward(const Var<T>& h) override { return h + up(gelu(down(h))); }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override {
    for (auto& e : down.named_parameters()) out.emplace_back("down." + e.first, e.second);
    for (auto& e : up.named_parameters()) out.emplace_back("up." + e.first, e.second);
  }

 private:
  AdapterKind kind_ = AdapterKind::compacter;
};

/// f(h) = h + up(GELU(down(h))) with dense Linear projections (Houlsby, Pfeiffer): down weight
/// U(-1/sqrt(k), 1/sqrt(k)), up weight and both biases zero, so f(h) = h at init.
template <class T>
class BottleneckAdapter : public nn::OutputAdapter<T> {
 public:
  nn::Linear<T> down, up;

  BottleneckAdapter(index_t dim, const AdapterConfig& c, Rng& rng) {
    const index_t m = bottleneck(dim, c, "phm::BottleneckAdapter");
    down = nn::Linear<T>(dim, m, rng);
    up = nn::Linear<T>(m, dim, rng);
    down.bias.value().set_zero();
    up.weight.value().set_zero();
    up.bias.value().set_zero();
  }
  std::string name() const override { return "bottleneck"; }
  bool is_adapter() const override { return true; }
  Var<T> forward(const Var<T>& h) override { return h + up(gelu(down(h))); }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override {
    for (auto& e : down.named_parameters()) out.emplace_back("down." + e.first, e.second);
    for (auto& e : up.named_parameters()) out.emplace_back("up." + e.first, e.second);
  }
};

/// One adapter of configuration c on hidden size dim (`shared`: the model's rule, if any).
template <class T>
std::shared_ptr<nn::OutputAdapter<T>> make_adapter(index_t dim, const AdapterConfig& c, const PhmRule<T>& shared,
                                                   Rng& rng) {
  if (c.hypercomplex()) return std::make_shared<HypercomplexAdapter<T>>(dim, c, shared, rng);
  return std::make_shared<BottleneckAdapter<T>>(dim, c, rng);
}

/// What add_adapters returns: an nn::Attachment (technique = the adapter kind; parameters() lists
/// a shared rule once; detach() removes every adapter) with the shared rule (Compacter kinds) and
/// the adapters in attach order (per block: after attention, then after the feed-forward).
template <class T>
struct AdapterSet : nn::Attachment<T> {
  using nn::Attachment<T>::Attachment;
  AdapterConfig config;
  PhmRule<T> rule;
  std::vector<std::shared_ptr<nn::OutputAdapter<T>>> adapters;

  /// Scalars of parameters() (a shared rule once): num_trainable() under its historic name.
  index_t num_parameters() const { return this->num_trainable(); }
};

/// Attaches one adapter of configuration c as an output adapter of every Linear `select` picks in
/// `model` (dim = the layer's output width; one rule drawn for the whole set when
/// c.phm.shared_rule). Checked before any layer changes. The paper's placement in a Transformer
/// is the selector nn::Selector<T>::regex(".*(attn\\.out_proj|mlp\\.layers\\.1)") for
/// two-layer MLPs, or add_adapters(blocks, ...) below.
template <class T>
AdapterSet<T> add_adapters(nn::Module<T>& model, const AdapterConfig& c, Rng& rng, const nn::SelectorArg<T>& select) {
  const char* fn = "phm::add_adapters";
  const auto sel = select.resolve(model, fn);
  for (auto& l : sel) {
    WEFT_CHECK(l.second->weight.defined(), config, fn, "expected constructed layers, got an empty Linear '", l.first, "'");
    bottleneck(l.second->out_features(), c, fn);
  }
  AdapterSet<T> set(to_string(c.kind));
  set.config = c;
  if (c.hypercomplex() && c.phm.shared_rule) set.rule = PhmRule<T>::shared(rng, shared_rule_options(c.phm));
  for (auto& l : sel) {
    set.adapters.push_back(make_adapter(l.second->out_features(), c, set.rule, rng));
    l.second->add_output_adapter(set.adapters.back());
    set.record(l.first, *l.second, set.adapters.back());
  }
  set.seal();
  return set;
}

/// Attaches adapters of configuration c to every block: on attn.out_proj (after attention, for
/// Compacter, PHM-Adapter, Houlsby) and on mlp.layers.back() (after the feed-forward). One rule
/// is drawn for the whole set when c.phm.shared_rule. Checked before any block changes. (The
/// paper's placement for a list of blocks outside a model; on a model, the selector form above.)
template <class T>
AdapterSet<T> add_adapters(std::vector<nn::TransformerBlock<T>>& blocks, const AdapterConfig& c, Rng& rng) {
  const char* fn = "phm::add_adapters";
  WEFT_CHECK(!blocks.empty(), config, fn, "expected at least one TransformerBlock, got none");
  for (auto& b : blocks)
    WEFT_CHECK(!b.mlp.layers.empty() && b.attn.out_proj.weight.defined(), config, fn,
               "expected constructed TransformerBlocks, got an empty one");
  const index_t dim = blocks[0].attn.out_proj.out_features();
  bottleneck(dim, c, fn);
  AdapterSet<T> set(to_string(c.kind));
  set.config = c;
  if (c.hypercomplex() && c.phm.shared_rule) set.rule = PhmRule<T>::shared(rng, shared_rule_options(c.phm));
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    auto& b = blocks[i];
    const std::string at = "blocks." + std::to_string(i) + ".";
    if (c.after_attention()) {
      set.adapters.push_back(make_adapter(dim, c, set.rule, rng));
      b.attn.out_proj.add_output_adapter(set.adapters.back());
      set.record(at + "attn.out_proj", b.attn.out_proj, set.adapters.back());
    }
    set.adapters.push_back(make_adapter(dim, c, set.rule, rng));
    b.mlp.layers.back().add_output_adapter(set.adapters.back());
    set.record(at + "mlp.layers." + std::to_string(b.mlp.layers.size() - 1), b.mlp.layers.back(), set.adapters.back());
  }
  set.seal();
  return set;
}

/// The paper's trainable set: freezes every parameter of `model`, then unfreezes the adapters
/// (a rule built with learn_rule = false stays frozen) and, with `layer_norms`, every LayerNorm.
template <class T>
void train_adapters_only(nn::Module<T>& model, const AdapterSet<T>& set, bool layer_norms = true) {
  model.set_requires_grad(false);
  for (auto p : set.parameters()) p.set_requires_grad(true);
  if (set.config.hypercomplex() && !set.config.phm.learn_rule) {  // the rules stay frozen
    std::vector<std::pair<std::string, Parameter<T>>> ps;  // "down.phm_rule", "up.phm_rule_left", ...
    for (auto& a : set.adapters) a->parameters(ps);
    for (auto& e : ps)
      if (e.first.find("phm_rule") != std::string::npos) e.second.set_requires_grad(false);
  }
  if (!layer_norms) return;
  // The LayerNorms belong to the model (nothing attached them, so no record lists them): a walk
  // of the model's modules is the only way to find them, and visit() hands out plain Module<T>&.
  struct Norms : nn::Members<T> {
    void param(const std::string&, Parameter<T>&) override {}
    void child(const std::string&, nn::Module<T>& m) override {
      if (auto* ln = dynamic_cast<nn::LayerNorm<T>*>(&m)) ln->set_requires_grad(true);
      m.visit(*this);
    }
  } norms;
  if (auto* ln = dynamic_cast<nn::LayerNorm<T>*>(&model)) ln->set_requires_grad(true);
  model.visit(norms);
}

}  // namespace phm
WEFT_NAMESPACE_END
