// weft/deploy/model.hpp - deploy::Model: a feed-forward inference stack (packed linear layers,
// float linear layers, ReLU, GELU, LayerNorm) whose forward() runs on caller-provided buffers
// with no allocation, no exceptions needed and no Eigen: it includes core/error, parallel, simd
// and deploy/packed + kernels only, so a device build (-fno-exceptions -fno-rtti, no OpenMP,
// the scalar path) takes it as is.
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
// Operations, row by row (x: one input row of the operation, n its width):
//   linear (packed)  y = x W^T + b                 deploy::gemm (deploy/kernels.hpp)
//   linear (float)   y_r = sum_c x_c W_rc + b_r    scalar loop, W (out, in) row-major
//   relu             y = max(x, 0)
//   gelu             y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (nn's GELU, tanh form)
//   layer_norm       y = (x - mean) / sqrt(var + eps) gamma + beta, biased variance, the same
//                    sums in the same order as nn::LayerNorm (core/ops/softmax.hpp); gamma and
//                    beta may be null (no affine part); rows whose sums overflow float are
//                    outside its range (nn rescales them)
// Workspace: workspace_size(batch) floats, two activation buffers of batch x the widest layer
// plus the largest packed layer's gemm scratch. forward() checks every size and that x is
// finite before writing anything; a failed check raises (or, with WEFT_NO_EXCEPTIONS, calls the
// installed error handler). Threads: the packed layers run over parallel_for (bitwise the same
// result for any thread count, deploy/kernels.hpp); the rest runs on the calling thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>

#include "weft/core/checked.hpp"
#include "weft/core/error.hpp"
#include "weft/deploy/kernels.hpp"
#include "weft/deploy/packed.hpp"

namespace weft::deploy {

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
enum class OpKind : unsigned char { packed_linear, float_linear, relu, gelu, layer_norm };

/// A feed-forward stack of at most MaxOps operations (see the file comment), every packed
/// linear layer in the format PackedView<Bits, GroupSize>.
template <int Bits, int GroupSize, int MaxOps = 16>
class Model {
  static_assert(MaxOps >= 1, "weft::deploy::Model: MaxOps must be at least 1");

 public:
  /// An empty model (the identity) on rows of `in_features` values.
  explicit Model(index_t in_features) : in_(in_features), out_(in_features), widest_(in_features) {
    WEFT_CHECK(in_features >= 1, shape, "deploy::Model", "expected in_features >= 1, got ", in_features);
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

  index_t in_features() const noexcept { return in_; }
  index_t out_features() const noexcept { return out_; }
  int size() const noexcept { return n_; }
  OpKind kind(int i) const noexcept { return ops_[i].kind; }

  /// Floats of workspace forward() needs for `batch` rows.
  index_t workspace_size(index_t batch) const {
    const char* fn = "deploy::Model::workspace_size";
    WEFT_CHECK(batch >= 1, shape, fn, "expected batch >= 1, got ", batch);
    index_t scratch = 0;
    for (int i = 0; i < n_; ++i)
      if (ops_[i].kind == OpKind::packed_linear) scratch = std::max(scratch, gemm_scratch_size(ops_[i].w, batch));
    return checked_add(checked_mul(index_t(2), checked_mul(batch, widest_, fn), fn), scratch, fn);
  }

  /// y (batch, out_features()) = the stack applied to x (batch, in_features()). No allocation:
  /// workspace holds at least workspace_size(batch) floats. Checks sizes and that x is finite
  /// before writing anything.
  void forward(Span<const float> x, index_t batch, Span<float> y, Span<float> workspace) const {
    const char* fn = "deploy::Model::forward";
    WEFT_CHECK(batch >= 1, shape, fn, "expected batch >= 1, got ", batch);
    WEFT_CHECK(x.data && y.data && workspace.data, value, fn, "expected x, y and workspace buffers, got a null pointer");
    WEFT_CHECK(x.size == batch * in_ && y.size == batch * out_, shape, fn, "expected x of ", batch * in_, " and y of ",
               batch * out_, " floats for batch ", batch, ", got ", x.size, " and ", y.size);
    const index_t need = workspace_size(batch);
    WEFT_CHECK(workspace.size >= need, shape, fn, "expected a workspace of at least ", need, " floats, got ", workspace.size);
    for (index_t i = 0; i < x.size; ++i)
      WEFT_CHECK(std::isfinite(x.data[i]), value, fn, "expected finite inputs, got ", x.data[i], " at row ", i / in_,
                 ", column ", i % in_);
    float* buf[2] = {workspace.data, workspace.data + batch * widest_};
    float* scratch = workspace.data + 2 * batch * widest_;
    const float* cur = x.data;
    int next = 0;
    for (int i = 0; i < n_; ++i) {
      const Op& o = ops_[i];
      float* out = buf[next];
      run(o, cur, batch, out, scratch);
      cur = out;
      next = 1 - next;
    }
    for (index_t i = 0; i < batch * out_; ++i) y.data[i] = cur[i];
  }

  /// Bytes of the parameters the model reads: packed codes and steps, float weights, biases,
  /// gamma and beta.
  std::size_t parameter_bytes() const noexcept {
    std::size_t b = 0;
    for (int i = 0; i < n_; ++i) {
      const Op& o = ops_[i];
      const std::size_t nf = sizeof(float) * std::size_t(o.out);
      if (o.kind == OpKind::packed_linear) b += o.w.bytes() + (o.bias ? nf : 0);
      if (o.kind == OpKind::float_linear) b += nf * std::size_t(o.in) + (o.bias ? nf : 0);
      if (o.kind == OpKind::layer_norm) b += (o.weight ? nf : 0) + (o.bias ? nf : 0);
    }
    return b;
  }

 private:
  struct Op {
    OpKind kind = OpKind::relu;
    index_t in = 0, out = 0;
    PackedView<Bits, GroupSize> w;    ///< packed_linear
    const float* weight = nullptr;    ///< float_linear: W; layer_norm: gamma
    const float* bias = nullptr;      ///< linear: b; layer_norm: beta
    float eps = 0.0f;
  };

  Op& push(const char* fn, OpKind kind, index_t in, index_t out) {
    WEFT_CHECK(n_ < MaxOps, config, fn, "expected at most ", MaxOps, " operations (the model's MaxOps), got one more");
    WEFT_CHECK(in == out_, shape, fn, "expected a layer with ", out_, " inputs (the previous layer's outputs), got ", in);
    Op& o = ops_[n_++];
    o = Op{};
    o.kind = kind;
    o.in = in;
    o.out = out;
    out_ = out;
    widest_ = std::max(widest_, out);
    return o;
  }

  static void run(const Op& o, const float* x, index_t batch, float* y, float* scratch) {
    const index_t n = o.in, m = o.out;
    switch (o.kind) {
      case OpKind::packed_linear: gemm(o.w, x, batch, y, o.bias, scratch); break;
      case OpKind::float_linear:
        for (index_t b = 0; b < batch; ++b)
          for (index_t r = 0; r < m; ++r) {
            float acc = 0.0f;
            for (index_t c = 0; c < n; ++c) acc += x[b * n + c] * o.weight[r * n + c];
            y[b * m + r] = o.bias ? acc + o.bias[r] : acc;
          }
        break;
      case OpKind::relu:
        for (index_t i = 0; i < batch * n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
      case OpKind::gelu:
        for (index_t i = 0; i < batch * n; ++i) {
          const float v = x[i];
          y[i] = 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        }
        break;
      case OpKind::layer_norm:
        for (index_t b = 0; b < batch; ++b) {
          const float* xr = x + b * n;
          float mean = 0.0f, var = 0.0f;
          for (index_t j = 0; j < n; ++j) mean += xr[j];
          mean /= float(n);
          for (index_t j = 0; j < n; ++j) var += (xr[j] - mean) * (xr[j] - mean);
          var /= float(n);
          const float rs = 1.0f / std::sqrt(var + o.eps);
          for (index_t j = 0; j < n; ++j) {
            const float h = (xr[j] - mean) * rs;
            y[b * n + j] = (o.weight ? h * o.weight[j] : h) + (o.bias ? o.bias[j] : 0.0f);
          }
        }
        break;
    }
  }

  Op ops_[MaxOps];
  int n_ = 0;
  index_t in_ = 0, out_ = 0, widest_ = 0;
};

}  // namespace weft::deploy
