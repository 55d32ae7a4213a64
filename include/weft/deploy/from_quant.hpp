// weft/deploy/from_quant.hpp - deploy::pack<Bits, GroupSize>(quant::QuantizedWeights<float>):
// the exported codes and steps of a quantised layer (quant::export_weights) as packed weights.
// The one deploy header that includes quant/; the packed types and kernels need only core/.
//
//   auto att = quant::quantize_linears(mlp, quant::statsq_factory<float>(so));  // 2-bit, per row
//   auto qw = quant::export_weights(att.layers[0]);            // the quantiser from the record
//   auto pw = deploy::pack<2, 0>(qw);                           // 2 bits + one step per row
//   Tensor<float> y = deploy::linear(pw.view(), x, &mlp.layers[0].bias.value());
//
// Grid. The packer picks code_min from the codes: 0 when none is negative (LSQ unsigned, or any
// grid whose codes happen to be >= 0), -1 with code_scale 2 for 1-bit sign codes {-1, +1}
// (LSQ signed 1-bit), else -2^(Bits-1) (StatsQ, LSQ signed). Any choice that holds every code
// gives the same values, so the packing is lossless: unpack_codes() returns qw.codes and
// dequantize() returns qw.dequantize() bit for bit (packed.hpp explains why).
// Steps. Every packed group (GroupSize columns of one row, or the row) must have one step in
// qw: per-row and per-tensor steps fit every GroupSize (repeated), a finer geometry (e.g.
// (rows, cols / 32, 32)) fits GroupSize 32 when its groups line up.
//
// QKR attention: deploy::pack<Bits, GroupSize>(quant::QkrAttention<float>&, record) packs the
// quantised query-key product (QkrAttention::export_product), v_proj and out_proj (export_weights
// of their entries in `record`, the quant::QuantAttachment that quantised them; all three need a
// Bits-bit weight quantiser) with the value and output biases and, for
// QkBias::exact with a query bias, the key term u_h = b_q^h W_k^h (float, computed here from the
// effective W_k in float as the QAT forward does). Input and intermediate quantisers are not
// deployed (ConfigError). PackedQkrAttention::view() is what deploy::Model::qkr_attention takes.
//
// A QKR ViT: deploy::pack<Bits, GroupSize>(vit, qkr_blocks, record) packs an nn::TinyViT whose blocks run
// through quant::QkrTransformerBlock (vit.forward(x, [&](i, h) { return (*qkr_blocks[i])(h); }))
// into PackedQkrViT; model<MaxOps>() builds the deploy::Model on it (patchify, float patch
// embedding, class token, positions, per block two residuals around LayerNorm -> QKR attention
// and LayerNorm -> packed fc1 -> GELU -> packed fc2, final LayerNorm, class token, float head).
// The patch embedding and the head stay float (they must carry no transform; ConfigError).
#pragma once

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "weft/deploy/attention.hpp"
#include "weft/deploy/model.hpp"
#include "weft/deploy/packed.hpp"
#include "weft/nn/vit.hpp"
#include "weft/quant/qkr.hpp"
#include "weft/quant/quantizer.hpp"
#include "weft/quant/wrap.hpp"

WEFT_NAMESPACE_BEGIN
namespace deploy {

/// Packs exported codes losslessly (see the file comment); raises ConfigError when qw.bits is
/// not Bits or a packed group would need two steps, ShapeError unless qw is a matrix, and
/// whatever qw.validate() raises for an inconsistent struct.
template <int Bits, int GroupSize>
PackedWeights<Bits, GroupSize> pack(const quant::QuantizedWeights<float>& qw) {
  using F = PackedFormat<Bits, GroupSize>;
  const char* fn = "deploy::pack";
  qw.validate(fn);
  WEFT_CHECK(qw.shape.rank() == 2, shape, fn, "expected codes of a rank-2 (out, in) weight, got shape ", qw.shape);
  WEFT_CHECK(qw.bits == Bits, config, fn, "expected ", Bits, "-bit codes for PackedWeights<", Bits, ", ", GroupSize, ">, got ",
             qw.bits, " bits");
  const index_t rows = qw.shape[0], cols = qw.shape[1];
  const auto [lo_it, hi_it] = std::minmax_element(qw.codes.begin(), qw.codes.end());
  const int lo = *lo_it, hi = *hi_it;
  int code_min = -(1 << (Bits - 1)), code_scale = 1;
  if (lo >= 0) code_min = 0;
  else if (Bits == 1 && hi == 1) code_scale = 2;  // sign codes {-1, +1}; a 0 among them is rejected by pack_codes
  // the step of element i: group m = (i / inner) mod groups of the (outer, groups, inner) view
  const ops::FqGeometry& g = qw.geometry;
  auto step_of = [&](index_t i) { return qw.step[std::size_t((i / g.inner) % g.groups)]; };
  const index_t gpr = F::groups_per_row(cols), gc = F::group_cols(cols);
  std::vector<float> steps(std::size_t(rows * gpr));
  for (index_t r = 0; r < rows; ++r)
    for (index_t k = 0; k < gpr; ++k) {
      const index_t c0 = k * gc, c1 = std::min(cols, c0 + gc);
      const float s = step_of(r * cols + c0);
      for (index_t c = c0 + 1; c < c1; ++c) {
        const float t = step_of(r * cols + c);
        WEFT_CHECK(std::memcmp(&s, &t, sizeof s) == 0, config, fn, "expected one step per packed group of ", gc,
                   " columns, got steps ", s, " and ", t, " in row ", r, ", columns ", c0, "..", c1 - 1);
      }
      steps[std::size_t(r * gpr + k)] = s;
    }
  return pack_codes<Bits, GroupSize>(rows, cols, qw.codes.data(), steps.data(), qw.offset, code_min, code_scale);
}

/// The packed parameters of one QKR attention layer (see the file comment), owning.
template <int Bits, int GroupSize>
struct PackedQkrAttention {
  PackedWeights<Bits, GroupSize> product, value, out;
  std::vector<float> value_bias, out_bias, key_bias;  ///< empty when absent
  index_t heads = 0, qk_head_dim = 0;

  QkrAttentionView<Bits, GroupSize> view() const noexcept {
    QkrAttentionView<Bits, GroupSize> v;
    v.product = product.view();
    v.value = value.view();
    v.out = out.view();
    v.value_bias = value_bias.empty() ? nullptr : value_bias.data();
    v.out_bias = out_bias.empty() ? nullptr : out_bias.data();
    v.key_bias = key_bias.empty() ? nullptr : key_bias.data();
    v.heads = heads;
    v.qk_head_dim = qk_head_dim;
    return v;
  }
  std::size_t bytes() const noexcept { return view().bytes(); }
};

namespace detail {
/// The codes of `layer` from its entry in the record that quantised it.
inline quant::QuantizedWeights<float> export_of(const quant::QuantAttachment<float>& record, const nn::Linear<float>& layer,
                                                const char* what) {
  const quant::QuantizedLayer<float>* q = record.find(layer);
  WEFT_CHECK(q != nullptr, config, "deploy::pack", "expected ", what,
             " to be quantised by the record passed in (quant::quantize_linears), got a layer it does not hold");
  return quant::export_weights(*q);
}
}  // namespace detail

/// Packs a trained QKR attention layer losslessly (see the file comment); `record` quantised its
/// v_proj and out_proj.
template <int Bits, int GroupSize>
PackedQkrAttention<Bits, GroupSize> pack(quant::QkrAttention<float>& a, const quant::QuantAttachment<float>& record) {
  const char* fn = "deploy::pack";
  WEFT_CHECK(!a.input_quantizer && !a.intermediate_quantizer, config, fn,
             "expected QKR attention without input or intermediate quantisers (not deployed), got ",
             a.input_quantizer ? "an input quantiser" : "an intermediate quantiser");
  nn::MultiHeadAttention<float>& m = a.attention();
  PackedQkrAttention<Bits, GroupSize> p;
  p.product = pack<Bits, GroupSize>(a.export_product());
  p.value = pack<Bits, GroupSize>(detail::export_of(record, m.v_proj, "v_proj"));
  p.out = pack<Bits, GroupSize>(detail::export_of(record, m.out_proj, "out_proj"));
  auto copy = [](const nn::Linear<float>& l) {
    return l.has_bias() ? std::vector<float>(l.bias.value().data(), l.bias.value().data() + l.bias.value().numel())
                        : std::vector<float>();
  };
  p.value_bias = copy(m.v_proj);
  p.out_bias = copy(m.out_proj);
  p.heads = m.heads();
  p.qk_head_dim = a.qk_dim() / m.heads();
  if (a.options().qk_bias == quant::QkBias::exact && m.q_proj.has_bias()) {
    Tape<float> t;
    no_grad ng;
    const Tensor<float> wk = m.k_proj.effective_weight(t).value();
    const Tensor<float>& bq = m.q_proj.bias.value();
    const index_t C = m.dim(), d = p.qk_head_dim;
    p.key_bias.assign(std::size_t(p.heads * C), 0.0f);
    for (index_t h = 0; h < p.heads; ++h)  // u_h = b_q^h W_k^h: (1, d) x (d, C), sums over d in order
      for (index_t c = 0; c < C; ++c) {
        float s = 0.0f;
        for (index_t k = 0; k < d; ++k) s += bq.flat(h * d + k) * wk(h * d + k, c);
        p.key_bias[std::size_t(h * C + c)] = s;
      }
  }
  p.view().validate(fn);
  return p;
}

/// A QKR TinyViT packed for deploy::Model (see the file comment), owning its parameters.
template <int Bits, int GroupSize>
struct PackedQkrViT {
  struct Block {
    std::vector<float> ln1_gamma, ln1_beta, ln2_gamma, ln2_beta, fc1_bias, fc2_bias;
    float ln1_eps = 1e-5f, ln2_eps = 1e-5f;
    PackedQkrAttention<Bits, GroupSize> attn;
    PackedWeights<Bits, GroupSize> fc1, fc2;
  };
  nn::ViTConfig config;
  std::vector<float> patch_weight, patch_bias, cls, positions, norm_gamma, norm_beta, head_weight, head_bias;
  float norm_eps = 1e-5f;
  std::vector<Block> blocks;

  /// Operations model() appends: 7 + 10 per block.
  index_t operations() const noexcept { return 7 + 10 * index_t(blocks.size()); }

  /// The deploy::Model on these parameters: images (batch, S*S) -> logits (batch, classes).
  /// The PackedQkrViT must outlive it and stay where it is.
  template <int MaxOps>
  Model<Bits, GroupSize, MaxOps> model() const {
    const char* fn = "deploy::PackedQkrViT::model";
    WEFT_CHECK(operations() <= MaxOps, config, fn, "expected MaxOps >= ", operations(), " for ", blocks.size(),
               " blocks, got ", MaxOps);
    const nn::ViTConfig& c = config;
    auto p = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
    Model<Bits, GroupSize, MaxOps> m(c.image_size * c.image_size);
    m.patchify(c.image_size, c.patch).linear(c.dim, p(patch_weight), p(patch_bias));
    m.prepend_token(p(cls)).add_positions(p(positions));
    for (const Block& b : blocks) {
      m.residual_begin().layer_norm(p(b.ln1_gamma), p(b.ln1_beta), b.ln1_eps).qkr_attention(b.attn.view()).residual_add();
      m.residual_begin().layer_norm(p(b.ln2_gamma), p(b.ln2_beta), b.ln2_eps);
      m.linear(b.fc1.view(), p(b.fc1_bias)).gelu().linear(b.fc2.view(), p(b.fc2_bias)).residual_add();
    }
    m.layer_norm(p(norm_gamma), p(norm_beta), norm_eps).select_token(0).linear(c.classes, p(head_weight),
                                                                                          p(head_bias));
    return m;
  }
  /// Bytes of every parameter the model reads (packed codes and steps, float parts): the
  /// parameter_bytes() of model().
  std::size_t bytes() const noexcept {
    std::size_t f = patch_weight.size() + patch_bias.size() + cls.size() + positions.size() + norm_gamma.size() +
                    norm_beta.size() + head_weight.size() + head_bias.size(), b = 0;
    for (const Block& k : blocks) {
      f += k.ln1_gamma.size() + k.ln1_beta.size() + k.ln2_gamma.size() + k.ln2_beta.size() + k.fc1_bias.size() +
           k.fc2_bias.size();
      b += k.attn.bytes() + k.fc1.bytes() + k.fc2.bytes();
    }
    return b + sizeof(float) * f;
  }
};

namespace detail {
inline std::vector<float> copy_of(const Parameter<float>& p) {
  return p.defined() ? std::vector<float>(p.value().data(), p.value().data() + p.value().numel()) : std::vector<float>();
}
}  // namespace detail

/// Packs a trained QKR TinyViT: qkr_blocks[i] wraps vit.blocks[i]; `record` quantised each
/// block's v_proj, out_proj and MLP layers (see the file comment).
template <int Bits, int GroupSize>
PackedQkrViT<Bits, GroupSize> pack(nn::TinyViT<float>& vit, const std::vector<quant::QkrTransformerBlock<float>*>& qkr_blocks,
                                   const quant::QuantAttachment<float>& record) {
  const char* fn = "deploy::pack";
  WEFT_CHECK(vit.cls_token.defined(), config, fn, "expected a constructed TinyViT, got an empty one");
  WEFT_CHECK(qkr_blocks.size() == vit.blocks.size(), shape, fn, "expected one QKR block per ViT block (", vit.blocks.size(),
             "), got ", qkr_blocks.size());
  WEFT_CHECK(vit.patch_embed.transforms().empty() && vit.head.transforms().empty(), config, fn,
             "expected a float patch embedding and head (no transforms), got transforms on ",
             vit.patch_embed.transforms().empty() ? "the head" : "the patch embedding");
  for (std::size_t i = 0; i < qkr_blocks.size(); ++i)
    WEFT_CHECK(qkr_blocks[i] && &qkr_blocks[i]->block() == &vit.blocks[i], config, fn, "expected QKR block ", i,
               " to wrap the ViT's block ", i, ", got ", qkr_blocks[i] ? "another block" : "a null pointer");
  PackedQkrViT<Bits, GroupSize> p;
  p.config = vit.config();
  using detail::copy_of;
  p.patch_weight = copy_of(vit.patch_embed.weight);
  p.patch_bias = copy_of(vit.patch_embed.bias);
  p.cls = copy_of(vit.cls_token);
  p.positions = copy_of(vit.pos_embed);
  p.norm_gamma = copy_of(vit.norm.gamma);
  p.norm_beta = copy_of(vit.norm.beta);
  p.norm_eps = float(vit.norm.eps);
  p.head_weight = copy_of(vit.head.weight);
  p.head_bias = copy_of(vit.head.bias);
  for (auto* q : qkr_blocks) {
    nn::TransformerBlock<float>& b = q->block();
    WEFT_CHECK(b.mlp.layers.size() == 2 && b.mlp.activation == nn::Activation::gelu, config, fn,
               "expected the block MLP D -> hidden -> D with GELU, got ", b.mlp.layers.size(), " layers");
    typename PackedQkrViT<Bits, GroupSize>::Block o;
    o.ln1_gamma = copy_of(b.ln1.gamma);
    o.ln1_beta = copy_of(b.ln1.beta);
    o.ln1_eps = float(b.ln1.eps);
    o.ln2_gamma = copy_of(b.ln2.gamma);
    o.ln2_beta = copy_of(b.ln2.beta);
    o.ln2_eps = float(b.ln2.eps);
    o.attn = pack<Bits, GroupSize>(q->qkr, record);
    o.fc1 = pack<Bits, GroupSize>(detail::export_of(record, b.mlp.layers[0], "the block's MLP layer 0"));
    o.fc2 = pack<Bits, GroupSize>(detail::export_of(record, b.mlp.layers[1], "the block's MLP layer 1"));
    o.fc1_bias = copy_of(b.mlp.layers[0].bias);
    o.fc2_bias = copy_of(b.mlp.layers[1].bias);
    p.blocks.push_back(std::move(o));
  }
  return p;
}

}  // namespace deploy
WEFT_NAMESPACE_END
