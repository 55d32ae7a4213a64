// weft/reparam/compander.hpp - the weight compander (WC) as an nn::WeightTransform.
//
// R. Cakaj, J. Mehnert, B. Yang, "Weight Compander: A Simple Weight Reparameterization for
// Regularization", IJCNN 2023 (arXiv 2306.16993). Each weight w of a layer is replaced by a
// latent parameter v and
//   w = Psi(v) = a f(v / b),  a, b > 0,  f = atan by default (psi.hpp: AtanPsi, ErfPsi, AsinhPsi)
//   |w| < a pi/2 (atan): the magnitude is bounded;
//   Psi'(v) = a b / (b^2 + v^2) (atan) is largest at v = 0: small weights get relatively larger
//   updates, which pushes weights away from zero.
// Gradients: dL/dv = dL/dw Psi'(v); learnable (a, b): dL/da = sum dL/dw f(v / b) and
// dL/db = sum dL/dw (-(a / b) u f'(u)), u = v / b.
//
// Attach a Compander to an nn::Linear (the layer's stored `weight` then plays v), or use
// attach_compander (reparam/attach.hpp), which does it for every Linear of a model, starting
// from v = inverse(w0) so the model is unchanged at step 0.
//
// Defaults (the spec's library decisions): fixed a = b = 0.7; learnable a = 0.5, b = 1.0 per
// layer (CompanderOptions::learnable_defaults()), kept >= floor (1e-3) by a post-step hook, with
// a learning-rate multiplier for (a, b) (1.0 as in the paper; 0.01 trains well without
// normalisation layers). The inverse clamps |w / a| to pi/2 - delta (delta = 1e-4) and counts
// the clamps.
//
// Threads: the kernels split large weights with parallel_for; results do not depend on the
// thread count. A Compander is not thread-safe (its layer is not either).
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/tape.hpp"
#include "weft/core/checked.hpp"
#include "weft/nn/attach.hpp"
#include "weft/reparam/kernels.hpp"
#include "weft/reparam/psi.hpp"

WEFT_NAMESPACE_BEGIN
namespace reparam {

/// Where weight decay acts (reparam/attach.hpp installs it): on w = Psi(v) (the penalty
/// (lambda / 2) ||Psi(v)||^2, through v only) or on the latent v (plain L2 on v).
enum class DecayOn {
  automatic,  ///< the spec's convention: on w for fixed (a, b), on v for learnable (a, b)
  w,          ///< on w = Psi(v)
  v           ///< on v
};

struct CompanderOptions {
  double a = 0.7;                ///< > 0; the bound of |w| is a * limit (a pi/2 for atan)
  double b = 0.7;                ///< > 0; the slope at v = 0 is a / b
  bool learnable = false;        ///< (a, b) trained per layer (reported by parameters())
  double ab_lr_multiplier = 1.0; ///< learnable: learning rate of (a, b) = multiplier x base rate
  double floor = 1e-3;           ///< learnable: (a, b) clamped to >= floor after each step
  double init_delta = 1e-4;      ///< inverse: |w / a| is clamped to limit - init_delta
  bool clamp_init = true;        ///< inverse: clamp (and count) out-of-bound weights; false: throw
  DecayOn decay_on = DecayOn::automatic;  ///< where the optimiser's weight decay acts

  /// The paper's best learnable initialisation: a = 0.5, b = 1.0, learnable.
  static CompanderOptions learnable_defaults() {
    CompanderOptions o;
    o.a = 0.5;
    o.b = 1.0;
    o.learnable = true;
    return o;
  }
};

/// Result of Compander::inverse: the latent v and how many weights had to be clamped.
template <class T>
struct InverseResult {
  Tensor<T> v;
  index_t clamped = 0;
};

/// What every compander offers whatever its f: (a, b), options, and the Psi-dependent kernels
/// the optimiser side needs (derivative, weight decay on Psi(v), inverse).
template <class T>
class CompanderBase : public nn::WeightTransform<T> {
 public:
  std::string name() const override { return "compander"; }
  /// First in the chain: the compander maps the stored v to w (nn::TransformStage::reparam).
  nn::TransformStage stage() const override { return nn::TransformStage::reparam; }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override {
    if (!opts_.learnable) return;
    out.emplace_back("a", a_);
    out.emplace_back("b", b_);
  }

  const CompanderOptions& options() const noexcept { return opts_; }
  bool learnable() const noexcept { return opts_.learnable; }
  /// True when weight decay acts on w = Psi(v) (see DecayOn), false when on v.
  bool decay_on_w() const noexcept {
    return opts_.decay_on == DecayOn::w || (opts_.decay_on == DecayOn::automatic && !opts_.learnable);
  }
  /// Current a and b (the learnable ones change during training).
  T a() const { return a_.value().flat(0); }
  T b() const { return b_.value().flat(0); }
  /// The parameters holding a and b (rank 0). Reported by parameters() only when learnable.
  Parameter<T>& a_param() noexcept { return a_; }
  Parameter<T>& b_param() noexcept { return b_; }
  /// sup |Psi(v)| = a * limit (+infinity for an unbounded f).
  double bound() const { return double(a()) * limit(); }
  virtual double limit() const = 0;
  virtual const char* psi_name() const = 0;

  /// Clamps a and b to >= floor (NaN stays NaN, so a divergence remains visible).
  void clamp_to_floor() {
    const T f = T(opts_.floor);
    if (a_.value().flat(0) < f) a_.value().flat(0) = f;
    if (b_.value().flat(0) < f) b_.value().flat(0) = f;
  }

  /// d = Psi'(v), element-wise over n values.
  virtual void derivative(const T* v, T* d, index_t n) const = 0;
  /// gv += lambda Psi(v) Psi'(v): weight decay lambda on w = Psi(v) (spec convention, as SGD's).
  virtual void add_decay_gradient(const T* v, T* gv, index_t n, double lambda) const = 0;
  /// v with Psi(v) = w, for initialisation and import (see CompanderOptions::clamp_init).
  virtual InverseResult<T> inverse(const Tensor<T>& w) const = 0;

 protected:
  explicit CompanderBase(const CompanderOptions& o, double limit) : opts_(o) {
    const char* fn = "reparam::Compander";
    WEFT_CHECK(positive_in<T>(o.a) && positive_in<T>(o.b), value, fn,
               "expected finite a > 0 and b > 0 that stay normal, non-zero numbers in the weight type, got a = ", o.a,
               ", b = ", o.b);
    WEFT_CHECK(positive_in<T>(o.floor), value, fn,
               "expected a finite floor > 0 that stays a normal, non-zero number in the weight type, got ", o.floor);
    WEFT_CHECK(!o.learnable || (o.a >= o.floor && o.b >= o.floor), value, fn,
               "expected learnable a, b >= floor = ", o.floor, ", got a = ", o.a, ", b = ", o.b);
    WEFT_CHECK(o.ab_lr_multiplier >= 0 && std::isfinite(o.ab_lr_multiplier), value, fn,
               "expected a finite ab_lr_multiplier >= 0, got ", o.ab_lr_multiplier);
    WEFT_CHECK(o.init_delta > 0 && o.init_delta < limit, value, fn, "expected 0 < init_delta < ", limit, ", got ",
               o.init_delta);
    a_ = Parameter<T>(Tensor<T>::scalar(T(o.a)), "a", o.learnable);
    b_ = Parameter<T>(Tensor<T>::scalar(T(o.b)), "b", o.learnable);
  }

  /// Current (a, b), checked: a learnable pair may have left (0, inf) without the floor hook.
  std::pair<T, T> checked_ab(const char* fn) const {
    const T a = this->a(), b = this->b();
    WEFT_CHECK(a > T(0) && b > T(0) && std::isfinite(double(a)) && std::isfinite(double(b)), value, fn,
               "expected finite a > 0 and b > 0, got a = ", a, ", b = ", b,
               " (keep learnable (a, b) positive with add_compander_hooks)");
    return {a, b};
  }

  CompanderOptions opts_;
  Parameter<T> a_, b_;
};

/// The weight compander with function f = Psi (AtanPsi by default).
template <class T, class Psi = AtanPsi>
class Compander : public CompanderBase<T> {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "the weight compander is defined for real float or double weights");
  static_assert(is_psi_policy_v<Psi>,
                "Psi must be a compander policy (AtanPsi, ErfPsi, AsinhPsi, or a struct with name, limit, f, df "
                "and finv as in weft/reparam/psi.hpp)");

 public:
  explicit Compander(const CompanderOptions& o = {}) : CompanderBase<T>(o, Psi::limit) {}

  double limit() const override { return Psi::limit; }
  const char* psi_name() const override { return Psi::name; }

  Var<T> apply(const Var<T>& v) override {
    const std::pair<T, T> ab = this->checked_ab("reparam::Compander::apply");
    const T a = ab.first, b = ab.second;
    Tape<T>& t = v.tape();
    Tensor<T> w = t.alloc_uninit(v.shape());
    compander_forward<Psi>(v.value().data(), w.data(), w.numel(), a, b);
    if (!this->learnable())
      return t.record(w, {v}, [v, w, a, b](Tape<T>& tp, const Tensor<T>& g) {
        if (Tensor<T>* gv = tp.grad_sink(v))
          compander_backward<Psi>(tp.value(v).data(), w.data(), g.data(), gv->data(), w.numel(), a, b, false);
      });
    const Var<T> va = t.param(this->a_), vb = t.param(this->b_);
    return t.record(w, {v, va, vb}, [v, va, vb, w, a, b](Tape<T>& tp, const Tensor<T>& g) {
      Tensor<T>* gv = tp.grad_sink(v);
      Tensor<T>* ga = tp.grad_sink(va);
      Tensor<T>* gb = tp.grad_sink(vb);
      const CompanderGradSums s = compander_backward<Psi>(tp.value(v).data(), w.data(), g.data(),
                                                          gv ? gv->data() : nullptr, w.numel(), a, b, ga || gb);
      if (ga) ga->flat(0) += T(s.g_w / double(a));
      if (gb) gb->flat(0) += T(-(double(a) / double(b)) * s.g_u_df);
    });
  }

  /// Psi(v) as a plain tensor (for deployment), straight from the kernel.
  Tensor<T> fold(const Tensor<T>& v) override {
    const std::pair<T, T> ab = this->checked_ab("reparam::Compander::fold");
    const T a = ab.first, b = ab.second;
    Tensor<T> w(v.shape());
    compander_forward<Psi>(v.data(), w.data(), w.numel(), a, b);
    return w;
  }

  void derivative(const T* v, T* d, index_t n) const override {
    const std::pair<T, T> ab = this->checked_ab("reparam::Compander::derivative");
    const T a = ab.first, b = ab.second;
    compander_derivative<Psi>(v, d, n, a, b);
  }
  void add_decay_gradient(const T* v, T* gv, index_t n, double lambda) const override {
    WEFT_CHECK(lambda >= 0 && std::isfinite(lambda), value, "reparam::Compander::add_decay_gradient",
               "expected a finite weight decay >= 0, got ", lambda);
    const std::pair<T, T> ab = this->checked_ab("reparam::Compander::add_decay_gradient");
    const T a = ab.first, b = ab.second;
    if (lambda > 0) compander_decay_grad<Psi>(v, gv, n, a, b, T(lambda));
  }

  InverseResult<T> inverse(const Tensor<T>& w) const override {
    const char* fn = "reparam::Compander::inverse";
    WEFT_CHECK(w.defined(), shape, fn, "expected a defined tensor, got an undefined one");
    WEFT_CHECK(w.all_finite(), value, fn, "expected finite weights, got non-finite values");
    const std::pair<T, T> ab = this->checked_ab(fn);
    const T a = ab.first, b = ab.second;
    const double delta = this->opts_.init_delta;
    if (!this->opts_.clamp_init) {
      const index_t c = compander_clamp_count<Psi>(w.data(), w.numel(), double(a), delta);
      WEFT_CHECK(c == 0, value, fn, "expected |w| < a (limit - delta) = ", double(a) * (Psi::limit - delta),
                 " for every weight (", Psi::name, ", a = ", a, "), got ", c, " outside; max |w| = ",
                 w.array().abs().maxCoeff(), " (set clamp_init to clamp them)");
    }
    InverseResult<T> r;
    r.v = Tensor<T>(w.shape());
    r.clamped = compander_inverse<Psi>(w.data(), r.v.data(), w.numel(), double(a), double(b), delta);
    return r;
  }
};

}  // namespace reparam
WEFT_NAMESPACE_END
