// weft/peft/lora.hpp - LoRA and the variants that change only its initialisation or scaling:
// rsLoRA, PiSSA, OLoRA. (LoRA+ changes only the optimiser: peft::loraplus_param_groups.)
//
// LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"): beside a frozen
// Linear y = x W^T + b (W of shape (out, in)) it trains A (r, in) and B (out, r):
//   y = x W^T + b + s drop(x) A^T B^T,   s = alpha / r   (rsLoRA: s = alpha / sqrt(r)).
// The side path computes x A^T, then (s u) B^T: the dense delta s B A is never formed, and the
// frozen base receives no gradient (its parameter has requires_grad == false, so weft's linear op
// skips dW). Merging adds s B A to W; unmerging subtracts it.
// Initialisations (LoraOptions::init), as HF PEFT's init_lora_weights:
//   kaiming   A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)), B = 0  (default)
//   gaussian  A ~ N(0, 1/r^2), B = 0
//   random    A and B kaiming-uniform (debug only: the adapter is not a no-op at step 0)
//   pissa     (Meng, Wang & Zhang 2024) thin SVD W = U S V^T, top r: A = diag(sqrt(S_r / s))
//             V_r^T, B = U_r diag(sqrt(S_r / s)); pissa_niter >= 0 uses the randomised SVD
//             with that many subspace iterations (PEFT's "pissa_niter_K")
//   olora     (Buyukakyuz 2024) thin QR W = Q R: B = Q[:, :r], A = R[:r, :]
// PiSSA and OLoRA replace the base weight by its residual W_res = W - s B A, so the model is
// unchanged at step 0 (W_res + s B A = W to rounding; keep dropout 0 for that). The factors are
// computed in double. to_plain_lora() turns a trained PiSSA/OLoRA adapter into an ordinary LoRA
// of rank 2r on the original W: delta = s (B A - B0 A0) = s [B | -B0] [A ; A0] (same s: PEFT's
// r' = 2r with alpha' = 2 alpha, or sqrt(2) alpha under rsLoRA). Note that detaching a PiSSA or
// OLoRA adapter leaves W_res, not the pretrained W.
// Defaults (PEFT LoraConfig): r = 8, alpha = 8, dropout 0, kaiming init, no rsLoRA.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/nn/attach.hpp"
#include "weft/peft/adapter.hpp"
#include "weft/peft/decompose.hpp"
#include "weft/peft/ops.hpp"

WEFT_NAMESPACE_BEGIN
namespace peft {

enum class LoraInit { kaiming, gaussian, random, pissa, olora };

struct LoraOptions {
  index_t r = 8;
  double alpha = 8;
  double dropout = 0;               ///< drop probability on the adapter's input, 0 <= p < 1
  LoraInit init = LoraInit::kaiming;
  bool rslora = false;              ///< s = alpha / sqrt(r) instead of alpha / r
  int pissa_niter = -1;             ///< PiSSA: -1 exact thin SVD; K >= 0 randomised with K iterations
  index_t pissa_oversample = 0;     ///< PiSSA randomised SVD: extra random directions (PEFT: 0)
};

/// The adapter scaling s of the options: alpha / r, or alpha / sqrt(r) with rsLoRA.
inline double lora_scaling(const LoraOptions& o) {
  return o.rslora ? o.alpha / std::sqrt(double(o.r)) : o.alpha / double(o.r);
}

namespace detail {
inline const char* lora_method(LoraInit i) {
  return i == LoraInit::pissa ? "pissa" : (i == LoraInit::olora ? "olora" : "lora");
}

/// Checks LoRA options for a layer of shape (out, in); throws before anything changes.
inline void check_lora(index_t in, index_t out, const LoraOptions& o, const char* fn) {
  const index_t k = std::min(in, out);
  WEFT_CHECK(o.r >= 1 && o.r <= k, value, fn, "expected a rank 1 <= r <= min(in, out) = ", k,
             " for a layer of shape (", out, ", ", in, "), got r = ", o.r);
  WEFT_CHECK(std::isfinite(o.alpha) && o.alpha > 0, value, fn, "expected a finite alpha > 0, got ", o.alpha);
  WEFT_CHECK(o.dropout >= 0 && o.dropout < 1, value, fn, "expected a dropout probability 0 <= p < 1, got ", o.dropout);
  WEFT_CHECK(o.pissa_niter >= -1 && o.pissa_oversample >= 0, value, fn,
             "expected pissa_niter >= -1 and pissa_oversample >= 0, got ", o.pissa_niter, " and ", o.pissa_oversample);
}

/// s B A as a new (out, in) tensor.
template <class T>
Tensor<T> lora_delta(const Tensor<T>& A, const Tensor<T>& B, double s) {
  Tensor<T> d(Shape{B.dim(0), A.dim(1)});
  ops::gemm(false, false, B.data(), A.data(), d.data(), B.dim(0), A.dim(1), A.dim(0), false);
  d.array() *= T(s);
  return d;
}
}  // namespace detail

template <class T>
class Lora : public nn::SidePath<T>, public Adapter<T> {
 public:
  /// A rank-r adapter on the layer whose weight is `base` (shape (out, in)), initialised as
  /// o.init says; PiSSA and OLoRA replace base's value by the residual W - s B A. rng draws the
  /// initialisation (kaiming, gaussian, random, randomised PiSSA) and seeds the dropout masks.
  Lora(const Parameter<T>& base, const LoraOptions& o, Rng& rng) : Adapter<T>(base, o.r, "peft::Lora"), o_(o) {
    detail::check_lora(this->in_features(), this->out_features(), o, "peft::Lora");
    s_ = lora_scaling(o);
    const index_t r = o.r, in = this->in_features(), out = this->out_features();
    Tensor<T> a(Shape{r, in}), b(Shape{out, r});
    if (o.init == LoraInit::pissa || o.init == LoraInit::olora) {
      WEFT_CHECK(base.value().all_finite(), value, "peft::Lora", "expected a finite base weight for ",
                 detail::lora_method(o.init), " initialisation, got NaN or Inf");
      residual_init(a, b, rng);
    } else {
      if (o.init == LoraInit::gaussian) init::normal(a, 0.0, 1.0 / double(r), rng);
      else init::kaiming_uniform(a, rng, std::sqrt(5.0));
      if (o.init == LoraInit::random) init::kaiming_uniform(b, rng, std::sqrt(5.0));
    }
    finish(std::move(a), std::move(b), rng);
  }

  /// A plain LoRA from given factors A (r, in) and B (out, r) with o.alpha, o.rslora and
  /// o.dropout (o.r must equal r; o.init is ignored: the adapter is a plain "lora").
  Lora(const Parameter<T>& base, Tensor<T> a, Tensor<T> b, const LoraOptions& o, Rng& rng)
      : Adapter<T>(base, o.r, "peft::Lora"), o_(o) {
    o_.init = LoraInit::kaiming;
    const char* fn = "peft::Lora";
    WEFT_CHECK(a.defined() && b.defined() && a.shape() == Shape({o.r, this->in_features()}) &&
                   b.shape() == Shape({this->out_features(), o.r}),
               shape, fn, "expected A of shape (", o.r, ", ", this->in_features(), ") and B of shape (",
               this->out_features(), ", ", o.r, "), got ", a.defined() ? a.shape() : Shape{}, " and ",
               b.defined() ? b.shape() : Shape{});
    WEFT_CHECK(o.r >= 1 && std::isfinite(o.alpha) && o.alpha > 0 && o.dropout >= 0 && o.dropout < 1, value, fn,
               "expected r >= 1, a finite alpha > 0 and 0 <= dropout < 1, got r = ", o.r, ", alpha = ", o.alpha,
               ", dropout = ", o.dropout);
    s_ = lora_scaling(o);
    finish(a.clone(), b.clone(), rng);
  }

  std::string name() const override { return method(); }
  std::string method() const override { return detail::lora_method(o_.init); }
  bool is_side_path() const override { return true; }
  bool is_adapter() const override { return true; }
  bool in_weight() const override { return this->merged(); }
  void set_training(bool on) noexcept override { Adapter<T>::set_training(on); }
  /// f(x) = x (s B A)^T at inference: nn::fold merges it.
  bool is_linear() const override { return true; }
  /// s B A, or zeros while merged (the path then adds nothing).
  Tensor<T> linear_delta() const override {
    return this->merged() ? Tensor<T>(this->base_weight().shape()) : Adapter<T>::delta_weight();
  }

  /// s drop(x) A^T B^T, of shape (..., out); zeros while merged.
  Var<T> forward(const Var<T>& x) override {
    WEFT_CHECK(x.rank() >= 1 && x.shape().last() == this->in_features(), shape, "peft::Lora::forward",
               "expected input of shape (..., ", this->in_features(), "), got ", x.shape());
    Tape<T>& t = x.tape();
    if (this->merged()) return t.constant(t.alloc(x.shape().with(-1, this->out_features())));
    const bool drop = o_.dropout > 0 && this->training() && is_grad_enabled();
    Var<T> u = linear(drop ? dropout(x, o_.dropout, rng_) : x, t.param(A_));
    if (s_ != 1.0) u = u * T(s_);
    return linear(u, t.param(B_));
  }

  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override {
    out.emplace_back("A", A_);
    out.emplace_back("B", B_);
  }
  std::vector<std::pair<std::string, Parameter<T>>> adapter_parameters() const override { return {{"A", A_}, {"B", B_}}; }

  Parameter<T>& A() noexcept { return A_; }  ///< (r, in)
  Parameter<T>& B() noexcept { return B_; }  ///< (out, r)
  const Parameter<T>& A() const noexcept { return A_; }
  const Parameter<T>& B() const noexcept { return B_; }
  double scaling() const noexcept { return s_; }
  const LoraOptions& options() const noexcept { return o_; }

  /// True for PiSSA and OLoRA: the base weight holds W_res = W - s B0 A0.
  bool residual_base() const noexcept { return A0_.defined(); }
  /// The factors at initialisation (PiSSA / OLoRA only; undefined otherwise).
  const Tensor<T>& initial_A() const noexcept { return A0_; }
  const Tensor<T>& initial_B() const noexcept { return B0_; }

  /// The pretrained weight W = W_res + s B0 A0 reconstructed from the current base (exact to
  /// rounding as long as nothing else changed the base since initialisation).
  Tensor<T> original_weight() const {
    WEFT_CHECK(residual_base(), config, "peft::Lora::original_weight",
               "expected a PiSSA or OLoRA adapter (residual base), got a plain ", method());
    Tensor<T> w = this->base_weight().value().clone();
    w.array() += detail::lora_delta(A0_, B0_, s_).array();
    return w;
  }

  /// The equivalent plain LoRA of rank 2r on the original weight: A' = [A ; A0], B' = [B | -B0],
  /// alpha' = 2 alpha (sqrt(2) alpha with rsLoRA), the same s and dropout. Not attached; see
  /// peft::convert_to_lora for the whole-layer conversion.
  std::shared_ptr<Lora<T>> to_plain_lora() const {
    WEFT_CHECK(residual_base(), config, "peft::Lora::to_plain_lora",
               "expected a PiSSA or OLoRA adapter (residual base), got a plain ", method());
    const index_t r = o_.r, in = this->in_features(), out = this->out_features();
    Tensor<T> a(Shape{2 * r, in}), b(Shape{out, 2 * r});
    a.matrix().topRows(r) = A_.value().matrix();
    a.matrix().bottomRows(r) = A0_.matrix();
    b.matrix().leftCols(r) = B_.value().matrix();
    b.matrix().rightCols(r) = -B0_.matrix();
    LoraOptions o = o_;
    o.r = 2 * r;
    o.alpha = o_.rslora ? std::sqrt(2.0) * o_.alpha : 2.0 * o_.alpha;
    Rng rng(rng_);
    return std::make_shared<Lora<T>>(this->base_weight(), std::move(a), std::move(b), o, rng);
  }

 protected:
  void do_merge(Tensor<T>& w) const override { w.array() += detail::lora_delta(A_.value(), B_.value(), s_).array(); }
  void do_unmerge(Tensor<T>& w) const override {
    w.array() -= detail::lora_delta(A_.value(), B_.value(), s_).array();
  }

 private:
  void residual_init(Tensor<T>& a, Tensor<T>& b, Rng& rng) {
    const index_t r = o_.r;
    Tensor<T>& w = const_cast<Parameter<T>&>(this->base_weight()).value();
    const MatrixXd wd = to_double_matrix(w);
    if (o_.init == LoraInit::pissa) {
      const SvdFactors f = o_.pissa_niter < 0 ? thin_svd(wd, r) : randomized_svd(wd, r, o_.pissa_niter, rng, o_.pissa_oversample);
      for (index_t i = 0; i < r; ++i) {
        const double g = std::sqrt(std::max(f.sigma(i), 0.0) / s_);
        for (index_t j = 0; j < a.dim(1); ++j) a(i, j) = T(g * f.V(j, i));
        for (index_t o = 0; o < b.dim(0); ++o) b(o, i) = T(g * f.U(o, i));
      }
    } else {
      const QrFactors f = thin_qr(wd);
      a.matrix() = f.R.topRows(r).template cast<T>();
      b.matrix() = f.Q.leftCols(r).template cast<T>();
    }
    // W_res = W - s B A from the factors as stored (in T), evaluated in double
    const MatrixXd res = wd - s_ * (b.matrix().template cast<double>() * a.matrix().template cast<double>());
    w.matrix() = res.cast<T>();
    A0_ = a.clone();
    B0_ = b.clone();
  }
  void finish(Tensor<T> a, Tensor<T> b, Rng& rng) {
    A_ = Parameter<T>(std::move(a), "A");
    B_ = Parameter<T>(std::move(b), "B");
    rng_ = Rng(rng.next_u64());
  }

  LoraOptions o_;
  double s_ = 1;
  Parameter<T> A_, B_;
  Tensor<T> A0_, B0_;
  Rng rng_;
};

}  // namespace peft
WEFT_NAMESPACE_END
