// weft/deploy/model.hpp - deploy::Model: an inference stack (packed linear layers, float
// linear layers, ReLU, GELU, LayerNorm, QKR attention, residual connections and the token
// operations of a ViT) whose forward() runs on caller-provided buffers with no allocation, no
// exceptions needed and no Eigen: it includes core/error, parallel, simd and deploy/packed,
// kernels and attention only, so a device build (-fno-exceptions -fno-rtti, no OpenMP, the
// scalar path) takes it as is.
//
//   deploy::Model<2, 0> m(64);                          // 64 input features
//   m.linear(w1.view(), b1).relu().linear(w2.view(), b2);
//   std::vector<float> ws(m.workspace_size(batch));     // once, outside the hot loop
//   m.forward(x, batch, y, ws);                          // x (batch, 64) -> y (batch, 10)
//
// The model does not own parameters: packed views, float weights, biases, gamma and beta stay
// wherever the caller keeps them (static arrays on a device, PackedWeights / Tensors on a host)
// and must outlive the model. Its operations live in a fixed array of MaxOps entries, so the
// model itself never allocates either (a static or stack object on a device).
//
// Samples and tokens. forward() takes `batch` samples; each sample is `tokens` rows of the
// current width (1 row for an MLP; a ViT's patches or tokens otherwise), row-major, so an
// operation's input is batch x tokens rows. Row-wise operations (linear, activations, layer
// norm) act on every row; the token operations change the rows per sample.
//
// Operations, row by row (x: one input row of the operation, n its width):
//   linear (packed)  y = x W^T + b                 deploy::gemm (deploy/kernels.hpp)
//   linear (float)   y_r = sum_c x_c W_rc + b_r    scalar loop, W (out, in) row-major
//   relu             y = max(x, 0)
//   gelu             y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (nn's GELU, tanh form)
//   layer_norm       y = (x - mean) / sqrt(var + eps) gamma + beta, biased variance, the same
//                    sums in the same order as nn::LayerNorm (core/ops/softmax.hpp); gamma and
//                    beta may be null (no affine part); rows whose sums overflow float are
//                    outside its range (nn rescales them)
//   qkr_attention    per sample, QKR attention over its tokens (deploy/attention.hpp)
//   residual_begin   y = x, and x is kept; residual_add: y = kept + x (same width and tokens).
//                    One residual is open at a time (a pre-LN block is two in sequence).
// Token operations:
//   patchify(S, p)   a row of S*S pixels -> (S/p)^2 rows of p*p (nn::patchify's order)
//   prepend_token(t) a row t (width n) before each sample's rows (a ViT's class token)
//   add_positions(P) y = x + P, P (tokens, n): row k of a sample gets row k of P
//   select_token(k)  keeps row k of each sample (the class token for the head)
// Workspace: workspace_size(batch) floats: two activation buffers of batch x the largest
// tokens x width of any stage (three with a residual), plus the largest gemm or attention
// scratch. forward() checks every size and that x is finite before writing anything; a failed
// check raises (or, with WEFT_NO_EXCEPTIONS, calls the installed error handler). Threads: the
// packed layers run over parallel_for (bitwise the same result for any thread count,
// deploy/kernels.hpp); the rest runs on the calling thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>

#include "weft/core/checked.hpp"
#include "weft/core/error.hpp"
#include "weft/deploy/attention.hpp"
#include "weft/deploy/kernels.hpp"
#include "weft/deploy/packed.hpp"

WEFT_NAMESPACE_BEGIN
namespace deploy {

/// A non-owning view of `size` contiguous elements (C++17 has no std::span). Converts from
/// a pointer and a size, a C array, or any container with data() and size() (std::vector).
template <class T>
struct Span {
  T* data = nullptr;
  index_t size = 0;
  constexpr Span() noexcept = default;
  constexpr Span(T* d, index_t n) noexcept : data(d), size(n) {}
  template <std::size_t N>
  constexpr Span(T (&a)[N]) noexcept : data(a), size(index_t(N)) {}
  template <class C, class = decltype(std::declval<C&>().data() + std::declval<C&>().size())>
  Span(C& c) noexcept : data(c.data()), size(index_t(c.size())) {}
};

/// The kinds of operation a deploy::Model runs.
enum class OpKind : unsigned char {
  packed_linear,
  float_linear,
  relu,
  gelu,
  layer_norm,
  qkr_attention,
  residual_begin,
  residual_add,
  patchify,
  prepend_token,
  add_positions,
  select_token
};

/// An inference stack of at most MaxOps operations (see the file comment), every packed
/// linear layer in the format PackedView<Bits, GroupSize>.
template <int Bits, int GroupSize, int MaxOps = 16>
class Model {
  static_assert(MaxOps >= 1, "weft::deploy::Model: MaxOps must be at least 1");

 public:
  /// An empty model (the identity) on samples of `tokens` rows of `in_features` values.
  explicit Model(index_t in_features, index_t tokens = 1)
      : in_(in_features), out_(in_features), tin_(tokens), tout_(tokens) {
    WEFT_CHECK(in_features >= 1 && tokens >= 1, shape, "deploy::Model", "expected in_features >= 1 and tokens >= 1, got ",
               in_features, " and ", tokens);
    widest_ = checked_mul(in_features, tokens, "deploy::Model");
  }

  /// Appends y = x W^T + b with packed W (rows = out, cols = in), validated here; bias: W.rows
  /// floats or null.
  Model& linear(const PackedView<Bits, GroupSize>& w, const float* bias) {
    const char* fn = "deploy::Model::linear";
    w.validate(fn);
    Op& o = push(fn, OpKind::packed_linear, w.cols, w.rows);
    o.w = w;
    o.bias = bias;
    return *this;
  }
  /// Appends y = x W^T + b with float W (out x in_features() row-major); bias: out floats or null.
  Model& linear(index_t out, const float* weight, const float* bias) {
    const char* fn = "deploy::Model::linear";
    WEFT_CHECK(out >= 1 && weight != nullptr, value, fn, "expected out >= 1 and a weight, got out ", out,
               weight ? "" : " and a null weight");
    Op& o = push(fn, OpKind::float_linear, out_, out);
    o.weight = weight;
    o.bias = bias;
    return *this;
  }
  Model& relu() { return (void)push("deploy::Model::relu", OpKind::relu, out_, out_), *this; }
  Model& gelu() { return (void)push("deploy::Model::gelu", OpKind::gelu, out_, out_), *this; }
  /// Appends a layer norm over out_features() values; gamma, beta: that many floats, or null.
  Model& layer_norm(const float* gamma, const float* beta, float eps = 1e-5f) {
    const char* fn = "deploy::Model::layer_norm";
    WEFT_CHECK(std::isfinite(eps) && eps >= 0.0f, value, fn, "expected a finite eps >= 0, got ", eps);
    Op& o = push(fn, OpKind::layer_norm, out_, out_);
    o.weight = gamma;
    o.bias = beta;
    o.eps = eps;
    return *this;
  }
  /// Appends QKR attention over each sample's tokens (deploy/attention.hpp), validated here.
  Model& qkr_attention(const QkrAttentionView<Bits, GroupSize>& a) {
    const char* fn = "deploy::Model::qkr_attention";
    a.validate(fn);
    Op& o = push(fn, OpKind::qkr_attention, a.dim(), a.dim());
    o.attn = a;
    return *this;
  }
  /// Keeps the current activation for the next residual_add(); ConfigError if one is open.
  Model& residual_begin() {
    const char* fn = "deploy::Model::residual_begin";
    WEFT_CHECK(!open_, config, fn, "expected no open residual (one at a time), got one opened by operation ", open_at_);
    push(fn, OpKind::residual_begin, out_, out_);
    open_ = has_residual_ = true;
    open_at_ = n_ - 1;
    res_w_ = out_;
    res_t_ = tout_;
    return *this;
  }
  /// y = kept + x, the activation kept by residual_begin(); it must have the same width and tokens.
  Model& residual_add() {
    const char* fn = "deploy::Model::residual_add";
    WEFT_CHECK(open_, config, fn, "expected an open residual (residual_begin), got none");
    WEFT_CHECK(res_w_ == out_ && res_t_ == tout_, shape, fn, "expected the kept activation's ", res_t_, " x ", res_w_,
               " per sample, got ", tout_, " x ", out_);
    push(fn, OpKind::residual_add, out_, out_);
    open_ = false;
    return *this;
  }
  /// Splits each image row of image_size^2 pixels into (image_size / patch)^2 patch rows.
  Model& patchify(index_t image_size, index_t patch) {
    const char* fn = "deploy::Model::patchify";
    WEFT_CHECK(patch >= 1 && image_size >= 1 && image_size % patch == 0 && tout_ == 1 && out_ == image_size * image_size,
               shape, fn, "expected one row of image_size^2 values per sample and a patch size dividing image_size, got ",
               tout_, " rows of ", out_, ", image_size ", image_size, ", patch ", patch);
    const index_t g = image_size / patch;
    Op& o = push(fn, OpKind::patchify, out_, patch * patch, g * g);
    o.a = image_size;
    o.b = patch;
    return *this;
  }
  /// Puts `token` (out_features() floats) before each sample's rows.
  Model& prepend_token(const float* token) {
    const char* fn = "deploy::Model::prepend_token";
    WEFT_CHECK(token != nullptr, value, fn, "expected a token, got a null pointer");
    Op& o = push(fn, OpKind::prepend_token, out_, out_, tout_ + 1);
    o.weight = token;
    return *this;
  }
  /// Adds `positions` (out_tokens() x out_features() floats) to each sample.
  Model& add_positions(const float* positions) {
    const char* fn = "deploy::Model::add_positions";
    WEFT_CHECK(positions != nullptr, value, fn, "expected positions, got a null pointer");
    Op& o = push(fn, OpKind::add_positions, out_, out_);
    o.weight = positions;
    return *this;
  }
  /// Keeps row `token` of each sample.
  Model& select_token(index_t token) {
    const char* fn = "deploy::Model::select_token";
    WEFT_CHECK(token >= 0 && token < tout_, shape, fn, "expected a token in [0, ", tout_, "), got ", token);
    Op& o = push(fn, OpKind::select_token, out_, out_, 1);
    o.a = token;
    return *this;
  }

  index_t in_features() const noexcept { return in_; }
  index_t out_features() const noexcept { return out_; }
  index_t in_tokens() const noexcept { return tin_; }
  index_t out_tokens() const noexcept { return tout_; }
  int size() const noexcept { return n_; }
  OpKind kind(int i) const noexcept { return ops_[i].kind; }

  /// Floats of workspace forward() needs for `batch` samples.
  index_t workspace_size(index_t batch) const {
    const char* fn = "deploy::Model::workspace_size";
    WEFT_CHECK(batch >= 1, shape, fn, "expected batch >= 1, got ", batch);
    index_t scratch = 0;
    for (int i = 0; i < n_; ++i) {
      const Op& o = ops_[i];
      const index_t rows = checked_mul(batch, o.tin, fn);
      if (o.kind == OpKind::packed_linear) scratch = std::max(scratch, gemm_scratch_size(o.w, rows));
      if (o.kind == OpKind::qkr_attention) scratch = std::max(scratch, qkr_attention_scratch_size(o.attn, batch, o.tin));
    }
    const index_t buffers = has_residual_ ? 3 : 2;
    return checked_add(checked_mul(buffers, checked_mul(batch, widest_, fn), fn), scratch, fn);
  }

  /// y (batch x out_tokens(), out_features()) = the stack applied to x (batch x in_tokens(),
  /// in_features()). No allocation: workspace holds at least workspace_size(batch) floats.
  /// Checks sizes and that x is finite before writing anything.
  void forward(Span<const float> x, index_t batch, Span<float> y, Span<float> workspace) const {
    const char* fn = "deploy::Model::forward";
    WEFT_CHECK(batch >= 1, shape, fn, "expected batch >= 1, got ", batch);
    WEFT_CHECK(!open_, config, fn, "expected every residual_begin closed by a residual_add, got operation ", open_at_,
               " open");
    WEFT_CHECK(x.data && y.data && workspace.data, value, fn, "expected x, y and workspace buffers, got a null pointer");
    const index_t nx = batch * tin_ * in_, ny = batch * tout_ * out_;
    WEFT_CHECK(x.size == nx && y.size == ny, shape, fn, "expected x of ", nx, " and y of ", ny, " floats for batch ", batch,
               ", got ", x.size, " and ", y.size);
    const index_t need = workspace_size(batch);
    WEFT_CHECK(workspace.size >= need, shape, fn, "expected a workspace of at least ", need, " floats, got ", workspace.size);
    for (index_t i = 0; i < x.size; ++i)
      WEFT_CHECK(std::isfinite(x.data[i]), value, fn, "expected finite inputs, got ", x.data[i], " at row ", i / in_,
                 ", column ", i % in_);
    const index_t act = batch * widest_;
    float* buf[2] = {workspace.data, workspace.data + act};
    float* kept = has_residual_ ? workspace.data + 2 * act : nullptr;
    float* scratch = workspace.data + (has_residual_ ? 3 : 2) * act;
    const float* cur = x.data;
    int next = 0;
    for (int i = 0; i < n_; ++i) {
      float* out = buf[next];
      run(ops_[i], cur, batch, out, scratch, kept);
      cur = out;
      next = 1 - next;
    }
    for (index_t i = 0; i < ny; ++i) y.data[i] = cur[i];
  }

  /// Bytes of the parameters the model reads: packed codes and steps, float weights, biases,
  /// gamma and beta, tokens and positions.
  std::size_t parameter_bytes() const noexcept {
    std::size_t b = 0;
    for (int i = 0; i < n_; ++i) {
      const Op& o = ops_[i];
      const std::size_t nf = sizeof(float) * std::size_t(o.out);
      if (o.kind == OpKind::packed_linear) b += o.w.bytes() + (o.bias ? nf : 0);
      if (o.kind == OpKind::float_linear) b += nf * std::size_t(o.in) + (o.bias ? nf : 0);
      if (o.kind == OpKind::layer_norm) b += (o.weight ? nf : 0) + (o.bias ? nf : 0);
      if (o.kind == OpKind::qkr_attention) b += o.attn.bytes();
      if (o.kind == OpKind::prepend_token) b += nf;
      if (o.kind == OpKind::add_positions) b += nf * std::size_t(o.tout);
    }
    return b;
  }

 private:
  struct Op {
    OpKind kind = OpKind::relu;
    index_t in = 0, out = 0;          ///< widths
    index_t tin = 1, tout = 1;        ///< rows per sample
    PackedView<Bits, GroupSize> w;    ///< packed_linear
    QkrAttentionView<Bits, GroupSize> attn;  ///< qkr_attention
    const float* weight = nullptr;    ///< float_linear: W; layer_norm: gamma; prepend_token, add_positions
    const float* bias = nullptr;      ///< linear: b; layer_norm: beta
    float eps = 0.0f;
    index_t a = 0, b = 0;             ///< patchify: image size, patch; select_token: the token
  };

  Op& push(const char* fn, OpKind kind, index_t in, index_t out, index_t tokens_out = -1) {
    WEFT_CHECK(n_ < MaxOps, config, fn, "expected at most ", MaxOps, " operations (the model's MaxOps), got one more");
    WEFT_CHECK(in == out_, shape, fn, "expected a layer with ", out_, " inputs (the previous layer's outputs), got ", in);
    const index_t tout = tokens_out < 0 ? tout_ : tokens_out;
    const index_t per_sample = checked_mul(out, tout, fn);
    Op& o = ops_[n_++];
    o = Op{};
    o.kind = kind;
    o.in = in;
    o.out = out;
    o.tin = tout_;
    o.tout = tout;
    out_ = out;
    tout_ = tout;
    widest_ = std::max(widest_, per_sample);
    return o;
  }

  // One row per out-of-line call: the compiler then emits one code path for every row, so a
  // row's bits do not depend on how many rows there are (inlined into a loop over rows, GCC -O3
  // -march=native vectorised differently for different row counts and contracted multiply-adds
  // into FMAs differently, and batch 1 and batch n disagreed in the last bits).
  WEFT_NOINLINE static void layer_norm_row(const Op& o, const float* xr, float* yr) {
    const index_t n = o.in;
    float mean = 0.0f, var = 0.0f;
    for (index_t j = 0; j < n; ++j) mean += xr[j];
    mean /= float(n);
    for (index_t j = 0; j < n; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    var /= float(n);
    const float rs = 1.0f / std::sqrt(var + o.eps);
    for (index_t j = 0; j < n; ++j) {
      const float h = (xr[j] - mean) * rs;
      yr[j] = (o.weight ? h * o.weight[j] : h) + (o.bias ? o.bias[j] : 0.0f);
    }
  }
  WEFT_NOINLINE static void float_linear_row(const Op& o, const float* xr, float* yr) {
    const index_t n = o.in, m = o.out;
    for (index_t r = 0; r < m; ++r) {
      float acc = 0.0f;
      for (index_t c = 0; c < n; ++c) acc += xr[c] * o.weight[r * n + c];
      yr[r] = o.bias ? acc + o.bias[r] : acc;
    }
  }
  WEFT_NOINLINE static void gelu_row(const float* xr, float* yr, index_t n) {
    for (index_t i = 0; i < n; ++i) {
      const float v = xr[i];
      yr[i] = 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
  }

  static void run(const Op& o, const float* x, index_t batch, float* y, float* scratch, float* kept) {
    const index_t n = o.in, m = o.out, rows = batch * o.tin, len = rows * n;
    switch (o.kind) {
      case OpKind::packed_linear: gemm(o.w, x, rows, y, o.bias, scratch); break;
      case OpKind::float_linear:
        for (index_t b = 0; b < rows; ++b) float_linear_row(o, x + b * n, y + b * m);
        break;
      case OpKind::relu:
        for (index_t i = 0; i < len; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
      case OpKind::gelu:
        for (index_t b = 0; b < rows; ++b) gelu_row(x + b * n, y + b * n, n);
        break;
      case OpKind::layer_norm:
        for (index_t b = 0; b < rows; ++b) layer_norm_row(o, x + b * n, y + b * n);
        break;
      case OpKind::qkr_attention: deploy::qkr_attention(o.attn, x, batch, o.tin, y, scratch); break;
      case OpKind::residual_begin:
        for (index_t i = 0; i < len; ++i) kept[i] = y[i] = x[i];
        break;
      case OpKind::residual_add:
        for (index_t i = 0; i < len; ++i) y[i] = kept[i] + x[i];
        break;
      case OpKind::patchify: {
        const index_t S = o.a, p = o.b, g = S / p;
        for (index_t s = 0; s < batch; ++s)
          for (index_t a = 0; a < g; ++a)
            for (index_t c = 0; c < g; ++c)
              for (index_t i = 0; i < p; ++i)
                for (index_t j = 0; j < p; ++j)
                  y[s * n + (a * g + c) * p * p + i * p + j] = x[s * n + (a * p + i) * S + c * p + j];
        break;
      }
      case OpKind::prepend_token:
        for (index_t s = 0; s < batch; ++s) {
          float* ys = y + s * o.tout * n;
          for (index_t j = 0; j < n; ++j) ys[j] = o.weight[j];
          for (index_t i = 0; i < o.tin * n; ++i) ys[n + i] = x[s * o.tin * n + i];
        }
        break;
      case OpKind::add_positions:
        for (index_t s = 0; s < batch; ++s)
          for (index_t i = 0; i < o.tin * n; ++i) y[s * o.tin * n + i] = x[s * o.tin * n + i] + o.weight[i];
        break;
      case OpKind::select_token:
        for (index_t s = 0; s < batch; ++s)
          for (index_t j = 0; j < n; ++j) y[s * n + j] = x[(s * o.tin + o.a) * n + j];
        break;
    }
  }

  Op ops_[MaxOps];
  int n_ = 0;
  index_t in_ = 0, out_ = 0, tin_ = 1, tout_ = 1, widest_ = 0;
  bool open_ = false, has_residual_ = false;
  int open_at_ = -1;
  index_t res_w_ = 0, res_t_ = 0;
};

}  // namespace deploy
WEFT_NAMESPACE_END
