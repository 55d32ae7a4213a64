// weft/quant/activation.hpp - activation quantisers as nn::InputTransforms: OFQ's (LSQ with
// learnable shifts before and after) and LSQ+ (asymmetric, learnable offset).
//
// Spec quantization_ofq.md, Sec. 2. For an input x of shape (..., C) (C = features):
//   ActMode::ofq       x' = LSQ(x + beta1) + beta2, beta1 and beta2 learnable per feature (C),
//                      zero at initialisation; LSQ signed or unsigned (OFQ: unsigned for the
//                      input of fc2 and the softmax output, signed elsewhere)
//   ActMode::lsq_plus  x' = s round(clamp((x - beta) / s, lo, hi)) + beta, learnable s and
//                      beta (dx'/dbeta = 1 where clipped, 0 inside; no gradient scale on beta)
// Scales: ActScale::per_token (the reference's "per channel": one scale per index of the
// second-to-last axis, the token position of (B, N, C) inputs; inputs of rank >= 3) or
// ActScale::per_tensor. Gradient scale g = 1 / sqrt(Q_P N_s), N_s the elements sharing a scale
// in the batch at hand. The scale is initialised from the first batch the quantiser sees
// (or by init_from): ofq s = 2 mean|x + beta1| / sqrt(Q_P) (unsigned: 4 mean / sqrt(Q_P)), the
// reference's rule; lsq_plus min/max: s = (max - min) / (hi - lo), beta = min - lo s. The
// parameters exist from construction, so an optimiser may be built before the first batch.
//
//   quant::ActivationQuantizerOptions ao;  ao.bits = 4;                  // signed, per token
//   auto aq = std::make_shared<quant::ActivationQuantizer<float>>(ao, 64, 8);   // C = 64, N = 8
//   layer.add_input_transform(aq);
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/quant/lsq.hpp"

WEFT_NAMESPACE_BEGIN
namespace quant {

enum class ActScale { per_token, per_tensor };
enum class ActMode { ofq, lsq_plus };

struct ActivationQuantizerOptions {
  int bits = 2;
  bool is_signed = true;
  ActScale scale = ActScale::per_token;
  ActMode mode = ActMode::ofq;
};

template <class T>
class ActivationQuantizer : public nn::InputTransform<T> {
 public:
  Parameter<T> scale;                 ///< (tokens) per token, (1) per tensor
  Parameter<T> shift_in, shift_out;   ///< ofq: beta1, beta2 (features)
  Parameter<T> offset;                ///< lsq_plus: beta, shaped like scale

  /// features = C; tokens = N (needed for per-token scales, ignored per tensor).
  ActivationQuantizer(const ActivationQuantizerOptions& o, index_t features, index_t tokens = 0) : o_(o), features_(features) {
    const char* fn = "quant::ActivationQuantizer";
    detail::check_bits(o.bits, fn);
    WEFT_CHECK(features > 0, shape, fn, "expected features > 0, got ", features);
    WEFT_CHECK(o.scale == ActScale::per_tensor || tokens > 0, shape, fn, "expected tokens > 0 for per-token scales, got ",
               tokens);
    range_ = ops::lsq_range(o.bits, o.is_signed);
    const index_t count = o.scale == ActScale::per_token ? tokens : 1;
    scale = Parameter<T>(Tensor<T>(Shape{count}, T(1)), "s");
    if (o.mode == ActMode::ofq) {
      shift_in = Parameter<T>(Tensor<T>(Shape{features}), "shift_in");
      shift_out = Parameter<T>(Tensor<T>(Shape{features}), "shift_out");
    } else {
      offset = Parameter<T>(Tensor<T>(Shape{count}), "beta");
    }
  }
  std::string name() const override { return o_.mode == ActMode::ofq ? "ofq_act" : "lsq_plus_act"; }
  const ActivationQuantizerOptions& options() const noexcept { return o_; }
  const ops::LsqRange& range() const noexcept { return range_; }
  bool initialized() const noexcept { return initialized_; }
  /// Codes of the last forward recorded with gradients (flattened like the input).
  const std::vector<qcode_t>& codes() const noexcept { return codes_; }

  /// Initialises the scale (and LSQ+ offset) from a batch x (see the file comment).
  void init_from(const Tensor<T>& x) {
    const char* fn = "quant::ActivationQuantizer::init_from";
    check_input(x.shape(), fn);
    WEFT_CHECK(x.all_finite(), value, fn, "expected a finite batch, got NaN or Inf");
    const index_t count = scale.numel(), rows = x.numel() / features_;
    std::vector<double> abs_sum(std::size_t(count), 0.0), lo(std::size_t(count), std::numeric_limits<double>::infinity()),
        hi(std::size_t(count), -std::numeric_limits<double>::infinity());
    std::vector<index_t> n(std::size_t(count), 0);
    for (index_t r = 0; r < rows; ++r) {
      const std::size_t i = std::size_t(r % count);
      for (index_t j = 0; j < features_; ++j) {
        double v = double(x.flat(r * features_ + j));
        if (o_.mode == ActMode::ofq) v += double(shift_in.value().flat(j));
        abs_sum[i] += std::abs(v);
        lo[i] = std::min(lo[i], v);
        hi[i] = std::max(hi[i], v);
      }
      n[i] += features_;
    }
    for (index_t i = 0; i < count; ++i) {
      const std::size_t k = std::size_t(i);
      double s;
      if (o_.mode == ActMode::ofq) {
        s = (o_.is_signed ? 2.0 : 4.0) * (abs_sum[k] / double(std::max<index_t>(n[k], 1))) / std::sqrt(range_.hi);
      } else {
        s = (hi[k] - lo[k]) / (range_.hi - range_.lo);
        offset.value().flat(i) = T(lo[k] - range_.lo * std::max(s, ops::lsq_min_scale));
      }
      scale.value().flat(i) = T(std::min(std::max(s, ops::lsq_min_scale), ops::lsq_max_scale<T>(range_)));
    }
    initialized_ = true;
  }

  Var<T> apply(const Var<T>& x) override {
    const char* fn = "quant::ActivationQuantizer::apply";
    check_input(x.shape(), fn);
    if (!initialized_) init_from(x.value());
    Tape<T>& t = x.tape();
    const index_t rows = x.numel() / features_, count = scale.numel();
    const T g = T(1.0 / std::sqrt(range_.hi * double(x.numel() / count)));
    qcode_t* codes = nullptr;
    if (is_grad_enabled()) {
      codes_.resize(std::size_t(x.numel()));
      codes = codes_.data();
    }
    Var<T> s = t.param(scale);
    if (o_.mode == ActMode::lsq_plus) {
      Var<T> b = t.param(offset);
      return detail::lsq_fake_quant(x, rows, features_, s, &b, count, range_, g, codes, ops::FrozenCodes{});
    }
    Var<T> shifted = x + t.param(shift_in);
    Var<T> q = detail::lsq_fake_quant(shifted, rows, features_, s, static_cast<const Var<T>*>(nullptr), count, range_, g,
                                      codes, ops::FrozenCodes{});
    return q + t.param(shift_out);
  }

  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override {
    out.emplace_back("s", scale);
    if (o_.mode == ActMode::ofq) {
      out.emplace_back("shift_in", shift_in);
      out.emplace_back("shift_out", shift_out);
    } else {
      out.emplace_back("beta", offset);
    }
  }

 private:
  void check_input(const Shape& s, const char* fn) const {
    WEFT_CHECK(s.rank() >= 1 && s.last() == features_, shape, fn, "expected an input of shape (..., ", features_, "), got ", s);
    if (o_.scale == ActScale::per_token)
      WEFT_CHECK(s.rank() >= 3 && s[-2] == scale.numel(), shape, fn, "expected an input of shape (..., ", scale.numel(),
                 ", ", features_, ") (rank >= 3) for per-token scales, got ", s);
  }
  ActivationQuantizerOptions o_;
  index_t features_;
  ops::LsqRange range_;
  bool initialized_ = false;
  std::vector<qcode_t> codes_;
};

}  // namespace quant
WEFT_NAMESPACE_END
