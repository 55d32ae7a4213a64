// weft/phm/layer.hpp - PhmLinear<T>: y = x H + b with H = sum_i A_i (x) B_i (PHM), or with
// B_i = s_i t_i of rank r (LPHM, Compacter's "fast" weights), as an nn::Module.
//
// Parameters, with the reference code's names and layouts (in = k = n p, out = d = n q):
//   W        [n, p, q]   full B_i                       (low_rank = false)
//   W_left   [n, p, r]   s_i                            (low_rank = true, the default)
//   W_right  [n, r, q]   t_i
//   b        [d]         zero at init                   (bias = true)
//   phm_rule [n, n, n]   A, reported by every layer that uses it (named_parameters lists a
//                        shared rule once); own rule only with shared_rule = false
// With shared_rule = true (the default, as Compacter) the layer creates no A: give it the model's
// PhmRule through the constructor or set_rule() before the first forward (using it unset is a
// ConfigError: the reference code's issue #4). n must divide in and out (ConfigError otherwise,
// naming both); PhmOptions::n is a run-time value.
//
// forward(x), x [..., in]: Path::automatic picks the cheapest of the factored product, the
// materialised one and a cached H by the cost model of path.hpp; Path::factored and
// Path::materialized force a path, Path::cached uses the cache whenever the call allows it (and
// the cheapest path otherwise). The cache: when the call
// needs no gradient of A or the B's (grad mode off, or those parameters frozen), H may be formed
// once and reused; it is keyed on a copy of the values it was built from and rebuilt whenever
// any of them differs bit for bit (an optimiser step, copy_parameters, set_value, a hand edit:
// nothing can leave it stale). The check reads n^3 + |B| elements per call, at most 1/n of the
// GEMM with H. invalidate() drops it (frees the memory). Gradients of x and b still flow through
// a cached H.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "weft/nn/module.hpp"
#include "weft/phm/functional.hpp"
#include "weft/phm/path.hpp"
#include "weft/phm/rule.hpp"

WEFT_NAMESPACE_BEGIN
namespace phm {

struct PhmOptions {
  index_t n = 4;                                        ///< PHM dimension ("phm_dim")
  bool low_rank = true;                                 ///< B_i = s_i t_i ("factorized_phm_W")
  index_t rank = 1;                                     ///< r ("phm_rank")
  bool bias = true;                                     ///< "phm_bias"
  bool shared_rule = true;                              ///< A comes from set_rule ("shared_phm_rule")
  bool factorized_rule = false;                         ///< own rule: A_i = a_i^L a_i^R
  bool learn_rule = true;                               ///< own rule trainable ("learn_phm")
  RuleInit rule_init = RuleInit::normal;                ///< own rule: N(0, 0.01^2) or U(-0.01, 0.01)
  double init_range = 1e-4;                             ///< sigma of WeightInit::normal
  WeightInit weight_init = WeightInit::glorot_uniform;  ///< "hypercomplex_nonlinearity"
  Path path = Path::automatic;                          ///< or force factored / materialized / cached
  bool cache = true;                                    ///< allow a cached H for gradient-free calls
};

template <class T>
class PhmLinear : public nn::Module<T> {
 public:
  Parameter<T> W, W_left, W_right, b;

  /// An empty layer; assign a constructed one before use.
  PhmLinear() = default;
  /// A layer in -> out. With o.shared_rule it waits for set_rule(); else it draws its own rule.
  PhmLinear(index_t in, index_t out, Rng& rng, const PhmOptions& o = {}) : o_(o) {
    init(in, out, rng, "phm::PhmLinear");
    if (!o.shared_rule) {
      RuleOptions ro;
      ro.n = o.n;
      ro.factorized = o.factorized_rule;
      ro.init = o.rule_init;
      ro.learn = o.learn_rule;
      rule_ = PhmRule<T>::per_layer(rng, ro);
    }
  }
  /// A layer using `rule` (shared with other layers; no copy).
  PhmLinear(index_t in, index_t out, const PhmRule<T>& rule, Rng& rng, const PhmOptions& o = {}) : o_(o) {
    WEFT_CHECK(rule.defined() && rule.n() == o.n, config, "phm::PhmLinear",
               "expected a defined rule with n = ", o.n, ", got ", rule.defined() ? "n = " : "an unset rule",
               rule.defined() ? std::to_string(rule.n()) : std::string());
    init(in, out, rng, "phm::PhmLinear");
    rule_ = rule;
  }

  /// Sets the rule of a layer built with shared_rule (checked: same n).
  void set_rule(const PhmRule<T>& rule) {
    WEFT_CHECK(rule.defined(), config, "phm::PhmLinear::set_rule", "expected a rule made by PhmRule::shared, got an unset one");
    WEFT_CHECK(rule.n() == o_.n, config, "phm::PhmLinear::set_rule", "expected a rule with n = ", o_.n,
               " (the layer's PHM dimension), got n = ", rule.n());
    rule_ = rule;
    cache_.H = Tensor<T>();
  }
  const PhmRule<T>& rule() const noexcept { return rule_; }
  const PhmOptions& options() const noexcept { return o_; }
  /// Chooses how later forwards compute (PhmOptions::path).
  void set_path(Path p) noexcept { o_.path = p; }
  index_t in_features() const noexcept { return in_; }
  index_t out_features() const noexcept { return out_; }
  /// The path the last forward took (factored, materialized or cached).
  Path last_path() const noexcept { return last_; }
  /// How often the cached H has been (re)built.
  index_t cache_builds() const noexcept { return cache_.builds; }
  /// Drops the cached H (the next cached forward rebuilds it).
  void invalidate() {
    cache_.H = Tensor<T>();
    cache_.key.clear();
    cache_.key.shrink_to_fit();
  }

  /// H = sum_i A_i (x) B_i [in, out] as a new tensor.
  Tensor<T> weight() const {
    check_ready("phm::PhmLinear::weight");
    Tensor<T> B = full_b();
    Tensor<T> H(Shape{in_, out_});
    const Tensor<T> A = rule_.value();
    ops::kron_sum(A.data(), B.data(), H.data(), o_.n, in_ / o_.n, out_ / o_.n);
    return H;
  }

  Var<T> forward(const Var<T>& x) {
    const char* fn = "phm::PhmLinear::forward";
    check_ready(fn);
    WEFT_CHECK(x.rank() >= 1 && x.shape().last() == in_, shape, fn, "expected input of shape (..., ", in_, "), got ",
               x.shape());
    Tape<T>& tp = x.tape();
    const bool grads = is_grad_enabled() && (rule_.requires_grad() || weights_require_grad());
    ops::KronDims m = dims(x.rank() == 1 ? 1 : x.shape().leading());
    Path p = o_.path;
    if (p == Path::cached && (grads || !o_.cache)) p = Path::automatic;  // a cached H serves no parameter gradient
    if (p == Path::automatic)
      p = choose_path(m, grads || x.requires_grad(), o_.cache && !grads, index_t(sizeof(T)));
    last_ = p;
    const Var<T> bias = b.defined() ? tp.param(b) : Var<T>();
    const Var<T>* bp = b.defined() ? &bias : nullptr;
    if (p == Path::cached) return detail::dense_apply(x, tp.constant(cached_weight()), bp, m.rows);
    const Var<T> A = rule_.var(tp);
    if (o_.low_rank) {
      const Var<T> s = tp.param(W_left), t = tp.param(W_right);
      if (p == Path::materialized) return lphm_product_dense(x, A, s, t, bp);
      return bp ? lphm_product(x, A, s, t, *bp) : lphm_product(x, A, s, t);
    }
    const Var<T> B = tp.param(W);
    if (p == Path::materialized) return phm_product_dense(x, A, B, bp);
    return bp ? phm_product(x, A, B, *bp) : phm_product(x, A, B);
  }
  Var<T> operator()(const Var<T>& x) { return forward(x); }

  void visit(nn::Members<T>& mem) override {
    std::vector<std::pair<std::string, Parameter<T>>> rp;
    rule_.parameters(rp);
    for (auto& e : rp) mem.param(e.first, e.second);
    mem.param("W", W);
    mem.param("W_left", W_left);
    mem.param("W_right", W_right);
    mem.param("b", b);
  }

 private:
  struct Cache {
    index_t builds = 0;
    Tensor<T> H;
    std::vector<T> key;  // the rule and weight values H was built from
  };

  void init(index_t in, index_t out, Rng& rng, const char* fn) {
    WEFT_CHECK(o_.n >= 1, config, fn, "expected a PHM dimension n >= 1, got ", o_.n);
    WEFT_CHECK(in >= 1 && out >= 1, shape, fn, "expected positive in and out features, got in = ", in, ", out = ", out);
    WEFT_CHECK(in % o_.n == 0 && out % o_.n == 0, config, fn, "expected n = ", o_.n,
               " to divide both in and out features, got in = ", in, " (remainder ", in % o_.n, "), out = ", out,
               " (remainder ", out % o_.n, ")");
    WEFT_CHECK(!o_.low_rank || o_.rank >= 1, config, fn, "expected a rank >= 1 for low_rank, got ", o_.rank);
    WEFT_CHECK(o_.init_range > 0 && std::isfinite(o_.init_range), value, fn, "expected a finite init_range > 0, got ",
               o_.init_range);
    in_ = in;
    out_ = out;
    const index_t n = o_.n, p = in / n, q = out / n;
    auto make = [&](const Shape& s, const char* name) {
      Tensor<T> v(s);
      init_phm_weight(v, o_.weight_init, o_.init_range, rng);
      return Parameter<T>(v, name);
    };
    if (o_.low_rank) {
      W_left = make(Shape{n, p, o_.rank}, "W_left");
      W_right = make(Shape{n, o_.rank, q}, "W_right");
    } else {
      W = make(Shape{n, p, q}, "W");
    }
    if (o_.bias) b = Parameter<T>(Tensor<T>(Shape{out}), "b");
  }
  void check_ready(const char* fn) const {
    WEFT_CHECK(in_ > 0, config, fn, "expected a constructed layer, got an empty PhmLinear");
    WEFT_CHECK(rule_.defined(), config, fn,
               "expected a rule A: the layer was built with shared_rule = true and no rule was set; pass the "
               "model's PhmRule to the constructor or to set_rule() before the first forward");
    WEFT_CHECK(rule_.n() == o_.n, config, fn, "expected a rule with n = ", o_.n, ", got n = ", rule_.n());
  }
  bool weights_require_grad() const {
    return o_.low_rank ? W_left.requires_grad() || W_right.requires_grad() : W.requires_grad();
  }
  ops::KronDims dims(index_t rows) const {
    ops::KronDims m;
    m.rows = rows;
    m.n = o_.n;
    m.p = in_ / o_.n;
    m.q = out_ / o_.n;
    m.r = o_.low_rank ? o_.rank : 0;
    return m;
  }
  /// B [n, p, q] (s_i t_i for the low-rank layer).
  Tensor<T> full_b() const {
    if (!o_.low_rank) return W.value();
    const index_t n = o_.n, p = in_ / n, q = out_ / n, r = o_.rank;
    Tensor<T> B(Shape{n, p, q});
    ops::batched_gemm(n, false, false, W_left.value().data(), p * r, W_right.value().data(), r * q, B.data(), p, q, r,
                      false);
    return B;
  }
  /// The parameters H is formed from: the rule's, then W or W_left and W_right.
  std::vector<Parameter<T>> weight_parameters() const {
    std::vector<std::pair<std::string, Parameter<T>>> rp;
    rule_.parameters(rp);
    std::vector<Parameter<T>> ps;
    for (auto& e : rp) ps.push_back(e.second);
    if (o_.low_rank) {
      ps.push_back(W_left);
      ps.push_back(W_right);
    } else {
      ps.push_back(W);
    }
    return ps;
  }
  /// True when every parameter value equals, bit for bit, the copy H was built from.
  bool cache_matches(const std::vector<Parameter<T>>& ps) const {
    if (!cache_.H.defined()) return false;
    std::size_t off = 0;
    for (auto& p : ps) {
      const std::size_t len = std::size_t(p.numel());
      if (off + len > cache_.key.size() ||
          std::memcmp(p.value().data(), cache_.key.data() + off, len * sizeof(T)) != 0)
        return false;
      off += len;
    }
    return off == cache_.key.size();
  }
  const Tensor<T>& cached_weight() {
    const std::vector<Parameter<T>> ps = weight_parameters();
    if (!cache_matches(ps)) {
      cache_.H = weight();
      cache_.key.clear();
      for (auto& p : ps) cache_.key.insert(cache_.key.end(), p.value().begin(), p.value().end());
      ++cache_.builds;
    }
    return cache_.H;
  }

  PhmOptions o_;
  index_t in_ = 0, out_ = 0;
  PhmRule<T> rule_;
  Cache cache_;
  Path last_ = Path::automatic;
};

}  // namespace phm
WEFT_NAMESPACE_END
