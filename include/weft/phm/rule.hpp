// weft/phm/rule.hpp - the "rule" A = (A_1, ..., A_n) of PHM layers, and the initialisers of
// the reference code (rabeehk/compacter, seq2seq/hypercomplex/inits.py and layers.py).
//
// PhmRule<T> holds A [n, n, n] as one Parameter (A[i][a][c] = (A_i)_{a c}) or, factorised,
// A_i = a_i^L a_i^R with a^L [n, n, 1] and a^R [n, 1, n] (2 n^2 parameters instead of n^3). It
// is a handle: copies share the same parameters, which is how Compacter's "slow" weights are
// shared by every PHM layer of a model (the gradients of all layers accumulate into the one
// Parameter::grad(); nothing is copied).
//
// Initialisation (spec Sec. 5, the reference's defaults):
//   shared rule     RuleInit::normal: N(0, init_range^2) (init_range = 1e-4);  uniform: U(-1, 1)
//   per-layer rule  RuleInit::normal: N(0, 0.01^2);  uniform: U(-0.01, 0.01)  (hard-coded there)
//   factorised      each factor drawn as the rule itself would be
// init_phm_weight fills each slice [i] (rows x cols) of a PHM weight B, s or t:
//   WeightInit::glorot_uniform  U(-beta, beta), beta = sqrt(2) sqrt(6 / (rows + cols))   (paper)
//   WeightInit::glorot_normal   N(0, 2 * 2 / (rows + cols))
//   WeightInit::normal          N(0, init_range^2)
//   WeightInit::xavier_normal   N(0, 2 / (rows + cols)): what the adapters library's init_W does
//                               for any non-empty init string (an option, not the default)
#pragma once

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/autograd/parameter.hpp"
#include "weft/core/autograd/tape.hpp"
#include "weft/core/rng.hpp"

WEFT_NAMESPACE_BEGIN
namespace phm {

/// How a rule is drawn ("phm_c_init").
enum class RuleInit { normal, uniform };
/// How the PHM weights B, s, t are drawn ("hypercomplex_nonlinearity").
enum class WeightInit { glorot_uniform, glorot_normal, normal, xavier_normal };

struct RuleOptions {
  index_t n = 4;                      ///< PHM dimension ("phm_dim")
  bool factorized = false;            ///< A_i = a_i^L a_i^R ("factorized_phm_rule")
  RuleInit init = RuleInit::normal;   ///< "phm_c_init"
  double init_range = 1e-4;           ///< sigma of the normal init of a shared rule ("phm_init_range")
  bool learn = true;                  ///< trainable ("learn_phm")
};

/// Fills every slice [i] of a rank-3 PHM weight (B [n, p, q], s [n, p, r] or t [n, r, q]).
template <class T>
void init_phm_weight(Tensor<T>& w, WeightInit how, double init_range, Rng& rng) {
  WEFT_CHECK(w.rank() == 3 && w.numel() > 0, shape, "phm::init_phm_weight",
             "expected a non-empty weight of shape (n, rows, cols), got ", w.shape());
  const double fans = double(w.dim(1) + w.dim(2));
  for (index_t i = 0; i < w.dim(0); ++i) {
    Tensor<T> slice = w[i];
    switch (how) {
      case WeightInit::glorot_uniform: {
        const double beta = std::sqrt(2.0) * std::sqrt(6.0 / fans);
        init::uniform(slice, -beta, beta, rng);
        break;
      }
      case WeightInit::glorot_normal: init::normal(slice, 0.0, std::sqrt(4.0 / fans), rng); break;
      case WeightInit::normal: init::normal(slice, 0.0, init_range, rng); break;
      case WeightInit::xavier_normal: init::normal(slice, 0.0, std::sqrt(2.0 / fans), rng); break;
    }
  }
}

template <class T>
class PhmRule {
 public:
  Parameter<T> a;            ///< A [n, n, n] (undefined when factorised)
  Parameter<T> left, right;  ///< a^L [n, n, 1], a^R [n, 1, n] (defined when factorised)

  /// An unset rule (defined() is false): a layer built with shared_rule waits for one.
  PhmRule() = default;

  /// The one rule of a model that all its PHM layers share (Compacter): N(0, init_range^2) or
  /// U(-1, 1).
  static PhmRule shared(Rng& rng, const RuleOptions& o = {}) {
    check_options(o, "phm::PhmRule::shared");
    return PhmRule(o, o.init == RuleInit::normal ? o.init_range : 1.0, rng);
  }
  /// A rule owned by one layer (PHM-Adapter): N(0, 0.01^2) or U(-0.01, 0.01), as the reference.
  static PhmRule per_layer(Rng& rng, const RuleOptions& o = {}) {
    check_options(o, "phm::PhmRule::per_layer");
    return PhmRule(o, 0.01, rng);
  }

  bool defined() const noexcept { return a.defined() || left.defined(); }
  bool factorized() const noexcept { return left.defined(); }
  index_t n() const { return factorized() ? left.shape()[0] : a.shape()[0]; }
  /// n^3, or 2 n^2 when factorised.
  index_t num_parameters() const { return factorized() ? left.numel() + right.numel() : a.numel(); }
  bool requires_grad() const { return factorized() ? left.requires_grad() || right.requires_grad() : a.requires_grad(); }

  /// A [n, n, n] on the tape (a^L a^R, a batched matmul, when factorised).
  Var<T> var(Tape<T>& tape) const {
    check_defined("phm::PhmRule::var");
    return factorized() ? matmul(tape.param(left), tape.param(right)) : tape.param(a);
  }
  /// The value of A as a tensor (shares a's storage; a new tensor when factorised).
  Tensor<T> value() const {
    check_defined("phm::PhmRule::value");
    if (!factorized()) return a.value();
    const index_t n = this->n();
    Tensor<T> A(Shape{n, n, n});
    for (index_t i = 0; i < n; ++i)
      for (index_t r = 0; r < n; ++r)
        for (index_t c = 0; c < n; ++c) A(i, r, c) = left.value()(i, r, 0) * right.value()(i, 0, c);
    return A;
  }
  /// ("phm_rule", a) or ("phm_rule_left", a^L), ("phm_rule_right", a^R).
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) const {
    if (factorized()) {
      out.emplace_back("phm_rule_left", left);
      out.emplace_back("phm_rule_right", right);
    } else if (a.defined()) {
      out.emplace_back("phm_rule", a);
    }
  }

 private:
  PhmRule(const RuleOptions& o, double scale, Rng& rng) {
    const index_t n = o.n;
    auto draw = [&](const Shape& s, const char* name) {
      Tensor<T> v(s);
      if (o.init == RuleInit::normal) init::normal(v, 0.0, scale, rng);
      else init::uniform(v, -scale, scale, rng);
      return Parameter<T>(v, name, o.learn);
    };
    if (o.factorized) {
      left = draw(Shape{n, n, 1}, "phm_rule_left");
      right = draw(Shape{n, 1, n}, "phm_rule_right");
    } else {
      a = draw(Shape{n, n, n}, "phm_rule");
    }
  }
  static void check_options(const RuleOptions& o, const char* fn) {
    WEFT_CHECK(o.n >= 1, config, fn, "expected a PHM dimension n >= 1, got ", o.n);
    WEFT_CHECK(o.init_range > 0 && std::isfinite(o.init_range), value, fn, "expected a finite init_range > 0, got ",
               o.init_range);
  }
  void check_defined(const char* fn) const {
    WEFT_CHECK(defined(), config, fn, "expected a rule made by PhmRule::shared or PhmRule::per_layer, got an unset one");
  }
};

}  // namespace phm
WEFT_NAMESPACE_END
