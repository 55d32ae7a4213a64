// weft/nn/causal_lm.hpp - CausalLM<T> (a TinyGPT): a decoder-only transformer language model,
// with its loss, evaluation in bits per token, and a greedy / temperature sampler.
//
// Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), at toy scale:
//   x_0 = tok_emb[ids] + pos_emb[0:N]                  (B, N, D), learned positions
//   x_l = TransformerBlock_l(x_{l-1}), l = 1..layers    pre-LN: causal MHA and a GELU MLP,
//                                                       each inside a residual
//   logits = norm(x_L) W_head^T                         (B N, vocab); W_head = tok_emb.weight
//                                                       when tied, else its own (vocab, D)
// Parameter names: tok_emb.weight, pos_emb.weight, blocks.<l>.{ln1,attn.{q,k,v,out}_proj,ln2,
// mlp.layers.{0,1}}.*, norm.{gamma,beta}, head.weight (untied only); the selectors of
// nn/select.hpp and the state dicts of nn/state_dict.hpp use them. At the default size (D 128,
// 4 layers, 4 heads, context 128, MLP ratio 4) and a vocabulary of 100 the model has about 0.83 M
// parameters.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/nn/attention.hpp"
#include "weft/nn/embedding.hpp"
#include "weft/nn/text_data.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

struct CausalLMConfig {
  index_t vocab = 0;      ///< number of token ids (required)
  index_t dim = 128;      ///< model width D
  index_t layers = 4;
  index_t heads = 4;      ///< D must be divisible by heads
  index_t context = 128;  ///< longest sequence (learned positions)
  index_t mlp_ratio = 4;  ///< MLP hidden width = mlp_ratio D
  bool tied_head = false; ///< reuse the token embedding as the output projection
};

template <class T>
class CausalLM : public Module<T> {
 public:
  Embedding<T> tok_emb;
  PositionalEmbedding<T> pos_emb;
  std::vector<TransformerBlock<T>> blocks;
  LayerNorm<T> norm;
  Linear<T> head;  ///< (vocab, D) without bias; empty when the head is tied

  CausalLM() = default;
  CausalLM(const CausalLMConfig& c, Rng& rng) : cfg_(c) {
    WEFT_CHECK(c.vocab > 0 && c.dim > 0 && c.context > 0, value, "nn::CausalLM",
               "expected vocab, dim and context > 0, got ", c.vocab, ", ", c.dim, ", ", c.context);
    WEFT_CHECK(c.heads > 0 && c.dim % c.heads == 0, shape, "nn::CausalLM", "expected dim divisible by heads, got dim ",
               c.dim, ", heads ", c.heads);
    WEFT_CHECK(c.layers >= 0 && c.mlp_ratio > 0, value, "nn::CausalLM", "expected layers >= 0 and mlp_ratio > 0, got ",
               c.layers, " and ", c.mlp_ratio);
    tok_emb = Embedding<T>(c.vocab, c.dim, rng);
    pos_emb = PositionalEmbedding<T>(c.context, c.dim, rng);
    blocks.reserve(std::size_t(c.layers));
    for (index_t i = 0; i < c.layers; ++i) {
      blocks.emplace_back(c.dim, c.heads, c.mlp_ratio, rng);
      blocks.back().attn.causal = true;
    }
    norm = LayerNorm<T>(c.dim);
    if (!c.tied_head) head = Linear<T>(c.dim, c.vocab, rng, false);
  }
  const CausalLMConfig& config() const noexcept { return cfg_; }

  /// Logits (batch * len, vocab) for token ids (batch * len, row-major), len <= context. Row
  /// b * len + i predicts the token after ids[b * len + i] from ids[b * len .. b * len + i].
  Var<T> forward(Tape<T>& t, const std::vector<index_t>& ids, index_t batch, index_t len) {
    WEFT_CHECK(cfg_.vocab > 0, config, "nn::CausalLM::forward", "expected a constructed model, got an empty CausalLM");
    WEFT_CHECK(len >= 1 && len <= cfg_.context, shape, "nn::CausalLM::forward", "expected 1 <= len <= context = ",
               cfg_.context, ", got ", len);
    Var<T> x = pos_emb(tok_emb.forward(t, ids, batch, len));
    for (auto& b : blocks) x = b(x);
    x = reshape(norm(x), Shape{batch * len, cfg_.dim});
    return cfg_.tied_head ? linear(x, t.param(tok_emb.weight)) : head(x);
  }
  Var<T> forward(Tape<T>& t, const TokenBatch& b) { return forward(t, b.inputs, b.batch, b.len); }

  /// Mean next-token cross entropy (nats) of a batch.
  Var<T> loss(Tape<T>& t, const TokenBatch& b, Reduction r = Reduction::mean) {
    return cross_entropy(forward(t, b), b.targets, CrossEntropyOptions{1.0, r});
  }

  void visit(Members<T>& m) override {
    m.child("tok_emb", tok_emb);
    m.child("pos_emb", pos_emb);
    for (std::size_t i = 0; i < blocks.size(); ++i) m.child("blocks." + std::to_string(i), blocks[i]);
    m.child("norm", norm);
    if (head.weight.defined()) m.child("head", head);
  }

 private:
  CausalLMConfig cfg_;
};

/// Mean next-token cross entropy in bits per token over the windows of eval_windows(ids, len,
/// batch), without recording gradients. For a character vocabulary this is bits per character.
template <class T>
double evaluate_bits_per_token(CausalLM<T>& model, const std::vector<index_t>& ids, index_t len, index_t batch = 16) {
  WEFT_CHECK(len >= 1 && len <= model.config().context, shape, "nn::evaluate_bits_per_token",
             "expected 1 <= len <= context = ", model.config().context, ", got ", len);
  no_grad ng;
  Tape<T> tape;
  double nats = 0, count = 0;
  for (const TokenBatch& b : eval_windows(ids, len, batch)) {
    nats += double(model.loss(tape, b, Reduction::sum).item());
    count += double(b.targets.size());
    tape.reset();
  }
  return nats / count / std::log(2.0);
}

struct GenerateOptions {
  double temperature = 0.0;  ///< 0: greedy (argmax); > 0: sample from softmax(logits / temperature)
  std::uint64_t seed = 0;    ///< of the sampling Rng
};

/// Extends `prompt` (at least one token) by `count` tokens, each predicted from the last
/// `context` tokens. Returns the new tokens only.
template <class T>
std::vector<index_t> generate(CausalLM<T>& model, const std::vector<index_t>& prompt, index_t count,
                              const GenerateOptions& o = {}) {
  WEFT_CHECK(!prompt.empty() && count >= 0, value, "nn::generate",
             "expected a non-empty prompt and count >= 0, got a prompt of ", prompt.size(), " tokens and count ", count);
  WEFT_CHECK(o.temperature >= 0 && std::isfinite(o.temperature), value, "nn::generate",
             "expected a finite temperature >= 0, got ", o.temperature);
  no_grad ng;
  Tape<T> tape;
  Rng rng(o.seed);
  std::vector<index_t> seq = prompt, out;
  const index_t ctx = model.config().context, V = model.config().vocab;
  for (index_t s = 0; s < count; ++s) {
    const index_t len = std::min<index_t>(ctx, index_t(seq.size()));
    std::vector<index_t> window(seq.end() - std::ptrdiff_t(len), seq.end());
    const Tensor<T>& logits = model.forward(tape, window, 1, len).value();
    const T* row = logits.data() + (len - 1) * V;
    index_t next = index_t(std::max_element(row, row + V) - row);
    if (o.temperature > 0) {  // inverse-CDF draw from softmax(row / temperature)
      std::vector<double> p(static_cast<std::size_t>(V));
      double z = 0;
      for (index_t j = 0; j < V; ++j) z += (p[std::size_t(j)] = std::exp(double(row[j] - row[next]) / o.temperature));
      double u = rng.uniform() * z;
      for (next = 0; next + 1 < V && u >= p[std::size_t(next)]; ++next) u -= p[std::size_t(next)];
    }
    seq.push_back(next);
    out.push_back(next);
    tape.reset();
  }
  return out;
}

}  // namespace nn
WEFT_NAMESPACE_END
