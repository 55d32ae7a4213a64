// weft/deploy/attention.hpp - the query-key reparameterised (QKR) attention of OFQ on packed
// weights: QkrAttentionView (non-owning) and qkr_attention(), on raw pointers and caller
// scratch, no allocation, no Eigen (core/error and deploy/kernels only).
//
// For one sample of N tokens x_1..x_N of width C, H heads, value/output head width d = C / H and
// query-key head width d' (C / H unless q_proj and k_proj were resized, quant/qkr.hpp):
//   K'      = x M^T                      packed gemm, M the quantised stacked product (H C, C):
//                                        column h C + i of token m is (M_h x_m)_i
//   l_h(n, m) = (x_n . K'_m[h C .. h C + C) + x_m . u_h) * (1 / sqrt(d'))
//                                        u_h (C floats per head): b_q^h W_k^h, QkBias::exact's
//                                        key term, or absent (QkBias::drop)
//   A_h     = softmax over m of l_h(n, m)   (row maximum subtracted, as core/ops/softmax.hpp)
//   V       = x Wv^T + bv                packed gemm
//   O(n, h d + j) = sum_m A_h(n, m) V(m, h d + j)
//   y       = O Wo^T + bo                packed gemm
// which is quant::QkrAttention::forward without input or intermediate quantisers, the sums
// of each dot product in the same order as the autograd ops (so the float results agree to
// rounding; deploy_test compares a trained QAT ViT). Rows: samples * N, token-major per sample.
// Scratch: qkr_attention_scratch_size() floats. Threads: the three gemm calls run over
// parallel_for (bitwise the same for any thread count); the attention core runs on the calling
// thread.
#pragma once

#include <algorithm>
#include <cmath>

#include "weft/core/checked.hpp"
#include "weft/core/error.hpp"
#include "weft/deploy/kernels.hpp"
#include "weft/deploy/packed.hpp"

WEFT_NAMESPACE_BEGIN
namespace deploy {

/// The packed parameters of one QKR attention layer (see the file comment). Non-owning: the
/// views and float arrays must outlive every use.
template <int Bits, int GroupSize>
struct QkrAttentionView {
  PackedView<Bits, GroupSize> product;  ///< M (H C, C): the quantised per-head products, stacked
  PackedView<Bits, GroupSize> value;    ///< Wv (C, C)
  PackedView<Bits, GroupSize> out;      ///< Wo (C, C)
  const float* value_bias = nullptr;    ///< bv (C) or null
  const float* out_bias = nullptr;      ///< bo (C) or null
  const float* key_bias = nullptr;      ///< u (H, C) or null (QkBias::drop)
  index_t heads = 0;                    ///< H
  index_t qk_head_dim = 0;              ///< d', the logits' scale is 1 / sqrt(d')

  index_t dim() const noexcept { return value.cols; }

  /// Raises unless the parts fit together: valid views, heads >= 1 dividing C, M of (H C, C),
  /// Wv and Wo of (C, C), d' >= 1.
  void validate(const char* fn = "deploy::QkrAttentionView::validate") const {
    product.validate(fn);
    value.validate(fn);
    out.validate(fn);
    const index_t C = value.cols;
    WEFT_CHECK(heads >= 1 && C % heads == 0 && qk_head_dim >= 1, shape, fn,
               "expected heads >= 1 dividing the width and a query-key head width >= 1, got heads ", heads, ", width ", C,
               ", query-key head width ", qk_head_dim);
    WEFT_CHECK(value.rows == C && out.rows == C && out.cols == C, shape, fn, "expected value and output weights of (", C,
               ", ", C, "), got (", value.rows, ", ", value.cols, ") and (", out.rows, ", ", out.cols, ")");
    WEFT_CHECK(product.rows == heads * C && product.cols == C, shape, fn, "expected a product of (", heads * C, ", ", C,
               ") for ", heads, " heads, got (", product.rows, ", ", product.cols, ")");
  }
  /// Bytes of codes, steps and float vectors.
  std::size_t bytes() const noexcept {
    const std::size_t C = std::size_t(dim()), f = sizeof(float);
    return product.bytes() + value.bytes() + out.bytes() + (value_bias ? f * C : 0) + (out_bias ? f * C : 0) +
           (key_bias ? f * C * std::size_t(heads) : 0);
  }
};

namespace detail {

/// The attention core of one sample: xs (N, C), K' ks (N, H C), V vs (N, C) -> os (N, C); p: N
/// floats. Out of line so that every sample runs the same code whatever the number of samples
/// (see deploy/model.hpp: inlined into a loop, the compiler may vectorise and contract
/// multiply-adds differently for different trip counts).
template <int Bits, int GroupSize>
WEFT_NOINLINE void qkr_attention_sample(const QkrAttentionView<Bits, GroupSize>& a, const float* xs, const float* ks,
                                        const float* vs, index_t N, float* os, float* p) {
  const index_t C = a.dim(), H = a.heads, d = C / H, HC = H * C;
  const float scale = 1.0f / std::sqrt(float(a.qk_head_dim));
  for (index_t h = 0; h < H; ++h)
    for (index_t n = 0; n < N; ++n) {
      const float* xn = xs + n * C;
      for (index_t m = 0; m < N; ++m) {
        const float* km = ks + m * HC + h * C;
        float l = 0.0f;
        for (index_t i = 0; i < C; ++i) l += xn[i] * km[i];
        if (a.key_bias) {
          const float* u = a.key_bias + h * C;
          const float* xm = xs + m * C;
          float b = 0.0f;
          for (index_t i = 0; i < C; ++i) b += xm[i] * u[i];
          l += b;
        }
        p[m] = l * scale;
      }
      float mx = p[0], sum = 0.0f;
      for (index_t m = 1; m < N; ++m)
        if (p[m] > mx) mx = p[m];
      for (index_t m = 0; m < N; ++m) sum += (p[m] = std::exp(p[m] - mx));
      const float inv = 1.0f / sum;
      for (index_t m = 0; m < N; ++m) p[m] *= inv;
      float* on = os + n * C + h * d;
      for (index_t j = 0; j < d; ++j) {
        float acc = 0.0f;
        for (index_t m = 0; m < N; ++m) acc += p[m] * vs[m * C + h * d + j];
        on[j] = acc;
      }
    }
}

}  // namespace detail

/// Floats of scratch qkr_attention() needs for `samples` samples of `tokens` tokens.
template <int Bits, int GroupSize>
index_t qkr_attention_scratch_size(const QkrAttentionView<Bits, GroupSize>& a, index_t samples, index_t tokens) {
  const char* fn = "deploy::qkr_attention_scratch_size";
  const index_t rows = checked_mul(samples, tokens, fn), C = a.dim();
  const index_t g = std::max({gemm_scratch_size(a.product, rows), gemm_scratch_size(a.value, rows),
                              gemm_scratch_size(a.out, rows)});
  // K' (rows, H C), V (rows, C), O (rows, C), one row of logits (tokens), the gemm scratch
  const index_t act = checked_mul(rows, checked_add(checked_mul(a.heads, C, fn), 2 * C, fn), fn);
  return checked_add(checked_add(act, tokens, fn), g, fn);
}

/// y (samples * tokens, C) = QKR attention of x (samples * tokens, C), per sample (see the file
/// comment). y must not overlap x. scratch: qkr_attention_scratch_size() floats. The view must
/// have been validated; x is checked to be finite by the first gemm.
template <int Bits, int GroupSize>
void qkr_attention(const QkrAttentionView<Bits, GroupSize>& a, const float* x, index_t samples, index_t tokens, float* y,
                   float* scratch) {
  const char* fn = "deploy::qkr_attention";
  WEFT_CHECK(samples >= 1 && tokens >= 1, shape, fn, "expected samples, tokens >= 1, got ", samples, " and ", tokens);
  WEFT_CHECK(x && y && scratch, value, fn, "expected x, y and scratch buffers, got a null pointer");
  const index_t C = a.dim(), N = tokens, rows = samples * tokens, HC = a.heads * C;
  float* kp = scratch;          // (rows, H C)
  float* v = kp + rows * HC;    // (rows, C)
  float* o = v + rows * C;      // (rows, C)
  float* p = o + rows * C;      // (N): one row of logits, then of weights
  float* g = p + N;             // gemm scratch
  gemm(a.product, x, rows, kp, nullptr, g);
  gemm(a.value, x, rows, v, a.value_bias, g);
  for (index_t s = 0; s < samples; ++s)
    detail::qkr_attention_sample(a, x + s * N * C, kp + s * N * HC, v + s * N * C, N, o + s * N * C, p);
  gemm(a.out, o, rows, y, a.out_bias, g);
}

}  // namespace deploy
WEFT_NAMESPACE_END
