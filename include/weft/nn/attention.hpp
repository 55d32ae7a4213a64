// weft/nn/attention.hpp - multi-head self-attention and the pre-LN transformer block.
//
// MultiHeadAttention on x of shape (B, N, D) with H heads of width d = D / H:
//   Q = x Wq^T + bq, K = x Wk^T + bk, V = x Wv^T + bv        (the q/k/v_proj Linear layers)
//   A_h = softmax(Q_h K_h^T / sqrt(d)),  O_h = A_h V_h         (per head, rows = tokens)
//   y = concat_h(O_h) Wo^T + bo                                (out_proj)
// The four projections are public Linear members, so quantisers, adapters and the query-key
// reparameterisation can attach to or replace them. attention_core() exposes the middle part
// for callers that compute Q, K, V themselves. With `causal` set, token i attends to tokens
// 0..i only, through the fused causal_attention op (core/autograd/functions/attention.hpp: no
// mask tensor, heads read in place), as a decoder-only language model needs.
//
// TransformerBlock (pre-LN, as in ViT): h = x + attn(ln1(x)); y = h + mlp(ln2(h)), with the
// MLP D -> mlp_ratio D -> D and GELU.
#pragma once

#include <cmath>
#include <string>

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/attention.hpp"
#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/linear.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

/// softmax(Q K^T / sqrt(d)) V per head. q, k, v: (B, N, H * d); result (B, N, H * d).
template <class T>
Var<T> attention_core(const Var<T>& q, const Var<T>& k, const Var<T>& v, index_t heads) {
  WEFT_CHECK(q.rank() == 3 && k.shape() == q.shape() && v.shape() == q.shape(), shape, "nn::attention_core",
             "expected q, k, v of one shape (B, N, D), got ", q.shape(), ", ", k.shape(), ", ", v.shape());
  const index_t B = q.dim(0), N = q.dim(1), D = q.dim(2);
  WEFT_CHECK(heads > 0 && D % heads == 0, shape, "nn::attention_core", "expected D divisible by heads, got D = ", D,
             ", heads = ", heads);
  const index_t d = D / heads;
  auto split = [&](const Var<T>& x) {  // (B, N, D) -> (B * H, N, d)
    return reshape(transpose(reshape(x, Shape{B, N, heads, d}), 1, 2), Shape{B * heads, N, d});
  };
  Var<T> scores = matmul_nt(split(q), split(k)) * T(real_t<T>(1) / std::sqrt(real_t<T>(d)));
  Var<T> o = matmul(softmax(scores), split(v));  // (B * H, N, d)
  return reshape(transpose(reshape(o, Shape{B, heads, N, d}), 1, 2), Shape{B, N, D});
}

template <class T>
class MultiHeadAttention : public Module<T> {
 public:
  Linear<T> q_proj, k_proj, v_proj, out_proj;
  bool causal = false;  ///< mask future tokens (token i sees 0..i), e.g. for nn::CausalLM

  MultiHeadAttention() = default;
  MultiHeadAttention(index_t dim, index_t heads, Rng& rng, bool bias = true) : heads_(heads) {
    WEFT_CHECK(dim > 0 && heads > 0 && dim % heads == 0, shape, "nn::MultiHeadAttention",
               "expected dim > 0 divisible by heads > 0, got dim = ", dim, ", heads = ", heads);
    q_proj = Linear<T>(dim, dim, rng, bias);
    k_proj = Linear<T>(dim, dim, rng, bias);
    v_proj = Linear<T>(dim, dim, rng, bias);
    out_proj = Linear<T>(dim, dim, rng, bias);
  }
  index_t heads() const noexcept { return heads_; }
  index_t dim() const { return q_proj.in_features(); }
  index_t head_dim() const { return dim() / heads_; }

  /// x: (B, N, D) -> (B, N, D).
  Var<T> forward(const Var<T>& x) {
    WEFT_CHECK(heads_ > 0, config, "nn::MultiHeadAttention::forward", "expected a constructed layer, got an empty one");
    WEFT_CHECK(x.rank() == 3 && x.dim(2) == dim(), shape, "nn::MultiHeadAttention::forward",
               "expected x of shape (B, N, ", dim(), "), got ", x.shape());
    if constexpr (!is_complex_v<T>)
      if (causal) return out_proj(causal_attention(q_proj(x), k_proj(x), v_proj(x), heads_));
    WEFT_CHECK(!causal, config, "nn::MultiHeadAttention::forward", "expected a real scalar type for causal attention, got a complex one");
    return out_proj(attention_core(q_proj(x), k_proj(x), v_proj(x), heads_));
  }
  Var<T> operator()(const Var<T>& x) { return forward(x); }

  void visit(Members<T>& m) override {
    m.child("q_proj", q_proj);
    m.child("k_proj", k_proj);
    m.child("v_proj", v_proj);
    m.child("out_proj", out_proj);
  }

 private:
  index_t heads_ = 0;
};

template <class T>
class TransformerBlock : public Module<T> {
 public:
  LayerNorm<T> ln1, ln2;
  MultiHeadAttention<T> attn;
  MLP<T> mlp;

  TransformerBlock() = default;
  TransformerBlock(index_t dim, index_t heads, index_t mlp_ratio, Rng& rng)
      : ln1(dim), ln2(dim), attn(dim, heads, rng), mlp({dim, hidden_dim(dim, mlp_ratio), dim}, rng, Activation::gelu) {}

  Var<T> forward(const Var<T>& x) {
    Var<T> h = x + attn(ln1(x));
    return h + mlp(ln2(h));
  }
  Var<T> operator()(const Var<T>& x) { return forward(x); }

  void visit(Members<T>& m) override {
    m.child("ln1", ln1);
    m.child("attn", attn);
    m.child("ln2", ln2);
    m.child("mlp", mlp);
  }

 private:
  // checked before the MLP is built, so a bad ratio is reported here rather than by nn::Linear
  static index_t hidden_dim(index_t dim, index_t mlp_ratio) {
    WEFT_CHECK(mlp_ratio > 0, value, "nn::TransformerBlock", "expected mlp_ratio > 0, got ", mlp_ratio);
    return mlp_ratio * dim;
  }
};

}  // namespace nn
WEFT_NAMESPACE_END
