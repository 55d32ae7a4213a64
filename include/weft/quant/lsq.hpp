// weft/quant/lsq.hpp - LSQ, the learned-step-size quantiser (Esser et al., ICLR 2020), as a
// weight transform with a learnable scale: the baseline OFQ is compared with. The autograd op
// lsq_fake_quant() is shared with the activation quantisers (activation.hpp).
//
// Spec quantization_ofq.md, Sec. 2. Signed b bits: codes [-2^(b-1), 2^(b-1) - 1]; unsigned:
// [0, 2^b - 1]; signed b = 1 uses sign codes {-1, +1} (sign(0) = +1, Q = s sign(W), STE mask
// |W / s| <= 1, Q_N = Q_P = 1); the reference's zero gradient there is a bug not reproduced.
//   v = W / s,  Q = s round_half_even(clamp(v, -Q_N, Q_P))         s floored at 1e-5 in forward
//   dQ/dW = [-Q_N <= v <= Q_P];  dQ/ds = (r - v) inside, -Q_N below, Q_P above, times
//   g = 1 / sqrt(Q_P N), N = the number of weights sharing s (per row: in-features).
// Initialisation (from the weight, at construction): LsqInit::lsq s = 2 mean|W| / sqrt(Q_P)
// (unsigned: 4 mean|W| / sqrt(Q_P), as the reference), per row or per tensor; LsqInit::lsq_plus
// s = max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(b-1) (LSQ+ paper; not re-verified by the spec).
// An all-zero row starts at the floor 1e-5. The scale is a Parameter reported by parameters()
// (as "s"), so an optimiser built from module.parameters() trains it.
//
//   auto q = std::make_shared<quant::LsqQuantizer<2, float>>(quant::LsqOptions{}, layer.weight.value());
//   layer.add_transform(q);
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/ops/fake_quant_lsq.hpp"
#include "weft/quant/statsq.hpp"

WEFT_NAMESPACE_BEGIN
namespace quant {

enum class LsqInit { lsq, lsq_plus };

struct LsqOptions {
  int bits = 2;                                    ///< 1..8 (replaced by Bits in LsqQuantizer<Bits>)
  bool is_signed = true;
  Granularity granularity = Granularity::per_row;  ///< per_row or per_tensor
  LsqInit init = LsqInit::lsq;
};

namespace detail {

/// The LSQ / LSQ+ op on x viewed as (rows, cols), row r using scale (and offset) index r % count:
/// inputs x, s (count) and optionally beta (count). gscale multiplies the scale gradient. Codes
/// go to `codes` when not null; `frozen` (arena copy of the mask, or null) with fz pins codes.
template <class T>
Var<T> lsq_fake_quant(const Var<T>& x, index_t rows, index_t cols, const Var<T>& s, const Var<T>* beta, index_t count,
                      const ops::LsqRange& range, T gscale, qcode_t* codes, const ops::FrozenCodes& fz) {
  Tape<T>& t = x.tape();
  Tensor<T> q = t.alloc_uninit(x.shape());
  ops::LsqParams<T> ps;
  ps.s = s.value().data();
  ps.beta = beta ? beta->value().data() : nullptr;
  ps.count = count;
  ops::lsq_forward(x.value().data(), rows, cols, ps, range, q.data(), codes, fz);
  ops::FrozenCodes fzc;  // an arena copy, so later freezing cannot move it under the backward
  if (fz && is_grad_enabled()) {
    const std::size_t n = std::size_t(rows * cols);
    auto* m = static_cast<std::uint8_t*>(t.alloc_bytes(n + 1));
    auto* c = static_cast<qcode_t*>(t.alloc_bytes(sizeof(qcode_t) * (n + 1), alignof(qcode_t)));
    std::copy(fz.mask, fz.mask + n, m);
    std::copy(fz.codes, fz.codes + n, c);
    fzc.mask = m;
    fzc.codes = c;
  }
  auto backward = [x, s, bv = beta ? *beta : Var<T>(), has_beta = beta != nullptr, rows, cols, count, range, gscale,
                   fzc](Tape<T>& tp, const Tensor<T>& g) {
    Tensor<T>* gx = tp.grad_sink(x);
    Tensor<T>* gs = tp.grad_sink(s);
    Tensor<T>* gb = has_beta ? tp.grad_sink(bv) : nullptr;
    if (!gx && !gs && !gb) return;
    Tensor<T> rds = gs ? tp.alloc(Shape{rows}) : Tensor<T>();
    Tensor<T> rdb = gb ? tp.alloc(Shape{rows}) : Tensor<T>();
    ops::LsqParams<T> p;
    p.s = tp.value(s).data();
    p.beta = has_beta ? tp.value(bv).data() : nullptr;
    p.count = count;
    ops::lsq_backward(tp.value(x).data(), g.data(), rows, cols, p, range, gx ? gx->data() : nullptr,
                      gs ? rds.data() : nullptr, gb ? rdb.data() : nullptr, fzc);
    for (index_t r = 0; r < rows; ++r) {  // in row order: independent of the thread count
      if (gs) gs->flat(r % count) += gscale * rds.flat(r);
      if (gb) gb->flat(r % count) += rdb.flat(r);
    }
  };
  if (beta) return t.record(q, {x, s, *beta}, backward);
  return t.record(q, {x, s}, backward);
}

}  // namespace detail

/// LSQ weight quantiser with the bit width held at run time; LsqQuantizer<Bits, T> is the
/// user-facing type.
template <class T>
class LsqQuantizerBase : public WeightQuantizer<T> {
 public:
  Parameter<T> scale;  ///< (rows) per row, (1) per tensor

  /// Builds the quantiser for weights shaped like `w` and initialises the scale from it.
  LsqQuantizerBase(const LsqOptions& o, const Tensor<T>& w) : o_(o) {
    const char* fn = "quant::LsqQuantizer";
    detail::check_bits(o.bits, fn);
    WEFT_CHECK(o.granularity != Granularity::axes, config, fn, "expected per_row or per_tensor granularity, got axes");
    range_ = ops::lsq_range(o.bits, o.is_signed);
    init_from(w);
  }
  std::string name() const override { return "lsq"; }
  int bits() const override { return o_.bits; }
  const LsqOptions& options() const noexcept { return o_; }
  const ops::LsqRange& range() const noexcept { return range_; }
  ops::LsqRange code_range() const override { return range_; }
  /// Q_P, the top code (1 for signed 1 bit).
  double qp() const noexcept { return range_.hi; }
  /// The gradient scale g = 1 / sqrt(Q_P N) for a weight of shape s.
  double gradient_scale(const Shape& s) const { return 1.0 / std::sqrt(qp() * double(group_size(s))); }

  /// Re-initialises the scale from w (see the file comment); w must be finite. A w of another
  /// shape resizes the scale in place: handles to `scale` (an optimiser's) stay valid.
  void init_from(const Tensor<T>& w) {
    const char* fn = "quant::LsqQuantizer::init_from";
    WEFT_CHECK(w.defined() && w.rank() >= 1 && w.numel() > 0, shape, fn, "expected a non-empty weight, got shape ",
               w.shape());
    WEFT_CHECK(w.all_finite(), value, fn, "expected finite weights, got NaN or Inf");
    const index_t groups = o_.granularity == Granularity::per_row ? rows_of(w.shape()) : 1;
    const index_t per = w.numel() / groups;
    Tensor<T> s(Shape{groups});
    for (index_t m = 0; m < groups; ++m) {
      const T* p = w.data() + m * per;
      double sum = 0, sq = 0, abs_sum = 0;
      for (index_t j = 0; j < per; ++j) {
        sum += double(p[j]);
        sq += double(p[j]) * double(p[j]);
        abs_sum += std::abs(double(p[j]));
      }
      const double mean_abs = abs_sum / double(per);
      double v;
      if (o_.init == LsqInit::lsq) {
        v = (o_.is_signed ? 2.0 : 4.0) * mean_abs / std::sqrt(qp());
      } else {
        const double mu = sum / double(per), sigma = std::sqrt(std::max(0.0, sq / double(per) - mu * mu));
        v = std::max(std::abs(mu - 3 * sigma), std::abs(mu + 3 * sigma)) / double(index_t(1) << (o_.bits - 1));
      }
      s.flat(m) = T(std::min(std::max(v, ops::lsq_min_scale), ops::lsq_max_scale<T>(range_)));
    }
    // an existing handle keeps its identity (an optimiser holding it trains the new scale)
    if (scale.defined() && scale.shape() == s.shape()) scale.value().copy_from(s);
    else if (scale.defined()) scale.set_value(std::move(s));
    else scale = Parameter<T>(s, "s");
    shape_ = w.shape();
  }
  /// Sets the scale to a user value: finite, > 0, shape (groups).
  void set_scale(const Tensor<T>& s) {
    const char* fn = "quant::LsqQuantizer::set_scale";
    WEFT_CHECK(s.shape() == scale.shape(), shape, fn, "expected a scale of shape ", scale.shape(), ", got ", s.shape());
    for (index_t i = 0; i < s.numel(); ++i)
      WEFT_CHECK(std::isfinite(double(s.flat(i))) && s.flat(i) > T(0), value, fn, "expected finite scales > 0, got ",
                 s.flat(i), " at ", i);
    scale.value().copy_from(s);
  }

  Var<T> apply(const Var<T>& w) override {
    const char* fn = "quant::LsqQuantizer::apply";
    WEFT_CHECK(w.shape() == shape_, shape, fn, "expected a weight of shape ", shape_, " (the one the scale was built for), got ",
               w.shape());
    const index_t rows = rows_of(w.shape()), cols = w.numel() / rows;
    const ops::FrozenCodes fz = this->frozen_view(w.numel(), fn);
    qcode_t* codes = this->code_buffer(w.numel());
    Var<T> s = w.tape().param(scale);
    return detail::lsq_fake_quant(w, rows, cols, s, static_cast<const Var<T>*>(nullptr), scale.numel(), range_,
                                  T(gradient_scale(w.shape())), codes, fz);
  }
  void parameters(std::vector<std::pair<std::string, Parameter<T>>>& out) override { out.emplace_back("s", scale); }

  QuantizedWeights<T> quantize(const Tensor<T>& w) override {
    const char* fn = "quant::LsqQuantizer::quantize";
    WEFT_CHECK(w.shape() == shape_, shape, fn, "expected a weight of shape ", shape_, ", got ", w.shape());
    QuantizedWeights<T> r;
    r.shape = w.shape();
    r.bits = o_.bits;
    r.scheme = "lsq";
    const index_t rows = rows_of(w.shape()), cols = w.numel() / rows;
    r.geometry = scale.numel() == 1 ? ops::FqGeometry{1, 1, w.numel()} : ops::FqGeometry{1, rows, cols};
    r.codes.resize(std::size_t(w.numel()));
    ops::LsqParams<T> ps;
    ps.s = scale.value().data();
    ps.count = scale.numel();
    ops::lsq_forward(w.data(), rows, cols, ps, range_, static_cast<T*>(nullptr), r.codes.data(), this->frozen_view(w.numel(), fn));
    for (index_t m = 0; m < scale.numel(); ++m) {
      const T s = scale.value().flat(m), lo = T(ops::lsq_min_scale);
      r.step.push_back(s < lo ? lo : s);
    }
    return r;
  }

 private:
  static index_t rows_of(const Shape& s) { return s.rank() >= 2 ? s[0] : 1; }
  index_t group_size(const Shape& s) const {
    return o_.granularity == Granularity::per_row ? s.numel() / rows_of(s) : s.numel();
  }
  LsqOptions o_;
  ops::LsqRange range_;
  Shape shape_;
};

/// LSQ with a compile-time bit width Bits (1..8), or dynamic_bits to take options.bits. With a
/// compile-time Bits the template argument sets the width (options.bits is replaced).
template <int Bits = dynamic_bits, class T = float>
class LsqQuantizer final : public LsqQuantizerBase<T> {
  static_assert(detail::valid_bits<Bits>,
                "LsqQuantizer<Bits>: the bit width must be between 1 and 8, or quant::dynamic_bits to choose it at "
                "run time");
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "LsqQuantizer<Bits, T>: T must be float or double");

 public:
  static constexpr int compile_time_bits = Bits;
  LsqQuantizer(LsqOptions o, const Tensor<T>& w) : LsqQuantizerBase<T>(with_bits(std::move(o)), w) {}

 private:
  static LsqOptions with_bits(LsqOptions o) {
    if constexpr (Bits != dynamic_bits) o.bits = Bits;
    return o;
  }
};

/// A shared LSQ transform for weights shaped like w, scale initialised from w.
template <int Bits, class T>
std::shared_ptr<LsqQuantizer<Bits, T>> lsq(const Tensor<T>& w, const LsqOptions& o = {}) {
  return std::make_shared<LsqQuantizer<Bits, T>>(o, w);
}

}  // namespace quant
WEFT_NAMESPACE_END
