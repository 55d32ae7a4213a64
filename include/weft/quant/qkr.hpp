// weft/quant/qkr.hpp - query-key reparameterisation (QKR) of OFQ for nn::MultiHeadAttention.
//
// Quantising W_q and W_k separately makes each one's gradient depend on the other's quantised,
// oscillating value. QKR quantises their per-head product instead (spec quantization_ofq.md,
// Sec. 5). With d = C / H and W_q^h, W_k^h the rows h d .. (h + 1) d - 1 of W_q, W_k:
//   M_h      = W_q^hT W_k^h                  (C x C, full precision, recomputed every forward)
//   M_hat    = Q(stack_h M_h)                (an (H C) x C matrix: per-row StatsQ gives one scale
//                                             per (head, row))
//   logits_h = X_hat M_hat_h X_hat^T / sqrt(d),  then softmax, times V_h, heads merged, out_proj
// Backward: G = dL/dM after the quantiser's straight-through estimator; dL/dW_q^h = W_k^h G^T,
// dL/dW_k^h = W_q^h G (each with the other factor at full precision) - the autograd of the
// per-head products. Without a quantiser QKR equals standard attention (tested to 1e-5 in float,
// 1e-12 in double) when the query bias is zero or qk_bias = exact.
// Biases (QkBias): drop (the reference: b_q and b_k unused, which changes the function unless
// b_q = 0: the key-dependent term x_j . W_k^hT b_q^h is lost; the other bias terms cancel in
// the softmax) or exact (adds x_j . W_k^hT b_q^h / sqrt(d) to logit (i, j)).
//
// QkrAttention refers to an existing MultiHeadAttention without copying it: W_q, W_k are the
// effective weights of its q_proj and k_proj (their transform chains applied; leave quantisers
// off them), V = v_proj(X_hat) and the output goes through out_proj, so quantisers attached to
// v_proj and out_proj act as usual. Optional pieces (null by default):
//   product_quantizer       any WeightTransform on the stacked product (StatsQ b bits in OFQ)
//   input_quantizer         X -> X_hat, the block input for q, k and v (an activation quantiser)
//   intermediate_quantizer  on K' = X_hat M_hat^T of shape (B, N, H C) before the product with
//                           X_hat (the reference's LSQ-with-shifts; its scale there is per
//                           (token, head), here per token across heads)
// The CGA-style gate on dL/dM (the reference's intended but inactive gate; off by default) is the
// StatsQ product quantiser's own: keep the quantiser you assign and call sq->set_ste_gate(BR)
// (StatsQOptions::ste_gate). For inference, folded_product() gives M_hat once, export_product()
// its codes and steps (deploy::pack packs them, deploy/from_quant.hpp).
// q/k narrower or wider than the model: replace mha.q_proj and mha.k_proj by Linear(C, d_qk)
// layers (d_qk divisible by H). The q/k heads then have width d' = d_qk / H: M_h = W_q^hT W_k^h
// is still C x C and the logits are scaled by 1 / sqrt(d'); V and the output keep d = C / H.
// (MultiHeadAttention's own forward needs d_qk = C; QKR does not.) The widths are checked at
// construction and at every forward (ShapeError).
// The MultiHeadAttention (and the TransformerBlock of QkrTransformerBlock) must outlive the
// wrapper and stay at their addresses.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/nn/attention.hpp"
#include "weft/quant/statsq.hpp"

WEFT_NAMESPACE_BEGIN
namespace quant {

enum class QkBias { drop, exact };

struct QkrOptions {
  QkBias qk_bias = QkBias::drop;
};

template <class T>
class QkrAttention : public nn::Module<T> {
 public:
  std::shared_ptr<nn::WeightTransform<T>> product_quantizer;
  std::shared_ptr<nn::InputTransform<T>> input_quantizer;
  std::shared_ptr<nn::InputTransform<T>> intermediate_quantizer;

  QkrAttention(nn::MultiHeadAttention<T>& mha, const QkrOptions& o = {}) : mha_(&mha), o_(o) {
    WEFT_CHECK(mha.heads() > 0, config, "quant::QkrAttention", "expected a constructed MultiHeadAttention, got an empty one");
    checked_qk_dim("quant::QkrAttention");
  }
  nn::MultiHeadAttention<T>& attention() noexcept { return *mha_; }
  const QkrOptions& options() const noexcept { return o_; }
  void set_qk_bias(QkBias b) noexcept { o_.qk_bias = b; }

  /// The stacked per-head product (H C, C) through the product quantiser, recorded on t.
  Var<T> product(Tape<T>& t) {
    Var<T> m = raw_product(t);
    return product_quantizer ? product_quantizer->apply(m) : m;
  }
  /// The stacked per-head product (H C, C) before the product quantiser, recorded on t.
  Var<T> raw_product(Tape<T>& t) {
    const index_t H = mha_->heads(), d = checked_qk_dim("quant::QkrAttention::product") / H;
    Var<T> wq = mha_->q_proj.effective_weight(t), wk = mha_->k_proj.effective_weight(t);
    std::vector<Var<T>> ms;
    for (index_t h = 0; h < H; ++h) ms.push_back(matmul_tn(slice(wq, 0, h * d, (h + 1) * d), slice(wk, 0, h * d, (h + 1) * d)));
    return H == 1 ? ms[0] : concat(ms, 0);
  }
  /// Codes and steps of the quantised product (spec Sec. 7, as quant::export_weights for a
  /// layer): the product quantiser must be a WeightQuantizer (ConfigError otherwise).
  QuantizedWeights<T> export_product() {
    const char* fn = "quant::QkrAttention::export_product";
    WEFT_CHECK(product_quantizer != nullptr, config, fn, "expected a product quantiser, got none");
    auto* q = dynamic_cast<WeightQuantizer<T>*>(product_quantizer.get());
    WEFT_CHECK(q != nullptr, config, fn, "expected a weight quantiser on the product, got '", product_quantizer->name(), "'");
    Tape<T> t;
    no_grad ng;
    return q->quantize(raw_product(t).value());
  }
  /// The quantised product as a plain tensor (H C, C), for inference.
  Tensor<T> folded_product() {
    Tape<T> t;
    no_grad ng;
    return product(t).value().clone();
  }

  /// Scaled pre-softmax logits (B H, N, N), ordered as nn::attention_core's scores.
  Var<T> logits(const Var<T>& x) { return logits_impl(x, input(x)); }

  /// x: (B, N, C) -> (B, N, C).
  Var<T> forward(const Var<T>& x) {
    const Var<T> xh = input(x);
    const index_t B = x.dim(0), N = x.dim(1), C = x.dim(2), H = mha_->heads(), d = C / H;
    Var<T> a = softmax(logits_impl(x, xh));
    Var<T> v = mha_->v_proj(xh);
    Var<T> vs = reshape(transpose(reshape(v, Shape{B, N, H, d}), 1, 2), Shape{B * H, N, d});
    Var<T> o = matmul(a, vs);
    return mha_->out_proj(reshape(transpose(reshape(o, Shape{B, H, N, d}), 1, 2), Shape{B, N, C}));
  }
  Var<T> operator()(const Var<T>& x) { return forward(x); }

  void visit(nn::Members<T>& m) override {
    m.child("attn", *mha_);
    std::vector<std::pair<std::string, Parameter<T>>> ps;
    auto report = [&](const std::string& prefix, auto* t) {
      if (!t) return;
      ps.clear();
      t->parameters(ps);
      for (auto& p : ps) m.param(prefix + t->name() + "." + p.first, p.second);
    };
    report("product.", product_quantizer.get());
    report("input.", input_quantizer.get());
    report("intermediate.", intermediate_quantizer.get());
  }

 /// d_qk, the common width of q_proj and k_proj (C unless they were replaced).
  index_t qk_dim() const { return mha_->q_proj.out_features(); }

 private:
  /// d_qk, checked: q_proj and k_proj of one width, divisible by the heads, reading the model
  /// width C (v_proj's input).
  index_t checked_qk_dim(const char* fn) const {
    const nn::Linear<T>& q = mha_->q_proj;
    const nn::Linear<T>& k = mha_->k_proj;
    const index_t C = mha_->v_proj.in_features(), H = mha_->heads();
    WEFT_CHECK(q.in_features() == C && k.in_features() == C, shape, fn, "expected q_proj and k_proj with ", C,
               " input features (the model width), got ", q.in_features(), " and ", k.in_features());
    WEFT_CHECK(q.out_features() == k.out_features(), shape, fn, "expected q_proj and k_proj of one width d_qk, got ",
               q.out_features(), " and ", k.out_features());
    WEFT_CHECK(q.out_features() % H == 0, shape, fn, "expected d_qk divisible by heads = ", H, ", got d_qk = ",
               q.out_features());
    return q.out_features();
  }

  Var<T> input(const Var<T>& x) {
    WEFT_CHECK(x.rank() == 3 && x.dim(2) == mha_->dim(), shape, "quant::QkrAttention::forward",
               "expected x of shape (B, N, ", mha_->dim(), "), got ", x.shape());
    checked_qk_dim("quant::QkrAttention::forward");  // before the input quantiser sees x
    return input_quantizer ? input_quantizer->apply(x) : x;
  }

  Var<T> logits_impl(const Var<T>& x, const Var<T>& xh) {
    Tape<T>& t = x.tape();
    const index_t B = x.dim(0), N = x.dim(1), C = x.dim(2), H = mha_->heads(), d = qk_dim() / H;
    Var<T> m = product(t);
    Var<T> kp = linear(xh, m);  // (B, N, H C): column (h, i) = (M_h x_n)_i
    if (intermediate_quantizer) kp = intermediate_quantizer->apply(kp);
    const bool exact = o_.qk_bias == QkBias::exact && mha_->q_proj.has_bias();
    Var<T> wk, bq;
    if (exact) {
      wk = mha_->k_proj.effective_weight(t);
      bq = t.param(mha_->q_proj.bias);
    }
    std::vector<Var<T>> ls;
    for (index_t h = 0; h < H; ++h) {
      Var<T> kh = H == 1 ? kp : slice(kp, 2, h * C, (h + 1) * C);
      Var<T> l = matmul_nt(xh, kh);  // (B, N, N): x_n^T M_h x_m
      if (exact) {                    // + x_m . W_k^hT b_q^h, the same for every query n
        Var<T> u = matmul(reshape(slice(bq, 0, h * d, (h + 1) * d), Shape{1, d}), slice(wk, 0, h * d, (h + 1) * d));
        l = l + reshape(linear(xh, u), Shape{B, 1, N});
      }
      ls.push_back(reshape(l, Shape{B, 1, N, N}));
    }
    Var<T> all = H == 1 ? ls[0] : concat(ls, 1);
    return reshape(all, Shape{B * H, N, N}) * T(real_t<T>(1) / std::sqrt(real_t<T>(d)));
  }

  nn::MultiHeadAttention<T>* mha_;
  QkrOptions o_;
};

/// A pre-LN TransformerBlock whose attention runs through QKR: h = x + qkr(ln1(x)),
/// y = h + mlp(ln2(h)), referring to the block's own layers.
template <class T>
class QkrTransformerBlock : public nn::Module<T> {
 public:
  QkrTransformerBlock(nn::TransformerBlock<T>& block, const QkrOptions& o = {}) : block_(&block), qkr(block.attn, o) {}
  nn::TransformerBlock<T>& block() noexcept { return *block_; }

  Var<T> forward(const Var<T>& x) {
    Var<T> h = x + qkr(block_->ln1(x));
    return h + block_->mlp(block_->ln2(h));
  }
  Var<T> operator()(const Var<T>& x) { return forward(x); }

  void visit(nn::Members<T>& m) override {
    m.child("ln1", block_->ln1);
    m.child("qkr", qkr);
    m.child("ln2", block_->ln2);
    m.child("mlp", block_->mlp);
  }

 private:
  nn::TransformerBlock<T>* block_;

 public:
  QkrAttention<T> qkr;
};

}  // namespace quant
WEFT_NAMESPACE_END
