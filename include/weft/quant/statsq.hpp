// weft/quant/statsq.hpp - StatsQ, the statistical weight quantiser of OFQ (Liu, Liu, Cheng,
// "Oscillation-free Quantization for Low-bit Vision Transformers", ICML 2023), as an
// nn::WeightTransform.
//
// Per group of weights (a row by default), with b bits and n = 2^(b-1) (spec
// quantization_ofq.md, Sec. 1):
//   s = 2 mean |W|   (a statistic, not a parameter: no gradient flows into s)
//   x = clamp(W / s, -1, 1 - 1e-6),  k = clamp(floor(x n), -n, n - 1),  Q(W) = s (k + 1/2) / n
// 2^b symmetric levels without a zero level (b = 1: +-mean|W|, sign binarisation; b = 2:
// +-s/4, +-3s/4). Backward: the identity straight-through estimator, dL/dW = dL/dQ everywhere
// (clipped elements are not masked). Ties: x n exactly on a threshold m goes to code m (floor),
// W = 0 to +s/(2n); codes are clamped to [-n, n - 1] (the reference can emit -2 at b = 1).
// Edge cases: an all-zero group gives exact zeros (identity gradient); a group with a NaN/Inf
// entry gives NaN (other groups unaffected); a 1 x I matrix is per-tensor.
//
// Granularity: per_row (one s per leading index: rows of a matrix, the whole of a vector),
// per_tensor, or axes (StatsQOptions::reduce_axes are averaged over, the remaining axes, which
// must be adjacent, index the scales; the OFQ reference's 3-D weights are {0, 2}).
//
//   auto q = std::make_shared<quant::StatsQuantizer<2, float>>();   // 2 bits, per row
//   layer.add_transform(q);                                          // W -> Q(W) in forward
//   quant::StatsQOptions o;  o.bits = 3;                             // run-time bit width
//   auto q3 = std::make_shared<quant::StatsQuantizer<quant::dynamic_bits, float>>(o);
//
// ste_gate > 0 restricts the gradient to weights within ste_gate quantisation steps of a
// decision threshold (the intended gate of the QKR + CGA reference on the q-k product: set it on
// QkrAttention's StatsQ product quantiser).
// Threads: the kernel splits groups over parallel_for; results do not depend on the count.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "weft/core/parallel.hpp"
#include "weft/quant/quantizer.hpp"

WEFT_NAMESPACE_BEGIN
namespace quant {

/// Which weights share a scale.
enum class Granularity { per_row, per_tensor, axes };

struct StatsQOptions {
  int bits = 2;                                   ///< 1..8 (replaced by Bits in StatsQuantizer<Bits>)
  Granularity granularity = Granularity::per_row;
  std::vector<int> reduce_axes;                   ///< Granularity::axes: the axes s averages over
  double ste_gate = 0.0;                          ///< > 0: gradient only within this many steps of a threshold
};

/// The (outer, groups, inner) view of a weight of shape `s` for a granularity (see file comment).
inline ops::FqGeometry quant_geometry(const Shape& s, Granularity gran, const std::vector<int>& reduce_axes,
                                      const char* fn) {
  ops::FqGeometry g;
  const index_t numel = s.numel();
  if (gran == Granularity::per_tensor || s.rank() == 0) {
    g.inner = numel;
    return g;
  }
  if (gran == Granularity::per_row) {
    if (s.rank() == 1) g.inner = numel;
    else {
      g.groups = s[0];
      g.inner = s[0] > 0 ? numel / s[0] : 0;
    }
    return g;
  }
  bool reduced[4] = {false, false, false, false};
  for (int a : reduce_axes) {
    WEFT_CHECK(a >= -s.rank() && a < s.rank(), shape, fn, "expected reduce axes in [", -s.rank(), ", ", s.rank(),
               ") for a weight of shape ", s, ", got ", a);
    reduced[a < 0 ? a + s.rank() : a] = true;
  }
  int k0 = -1, k1 = -1;  // kept axes [k0, k1)
  for (int a = 0; a < s.rank(); ++a)
    if (!reduced[a]) {
      WEFT_CHECK(k1 < 0 || k1 == a, config, fn, "expected the kept (non-reduced) axes to be adjacent, got reduce axes ",
                 "leaving a gap at axis ", a, " of shape ", s);
      if (k0 < 0) k0 = a;
      k1 = a + 1;
    }
  if (k0 < 0) {
    g.inner = numel;
    return g;
  }
  for (int a = 0; a < k0; ++a) g.outer *= s[a];
  for (int a = k0; a < k1; ++a) g.groups *= s[a];
  for (int a = k1; a < s.rank(); ++a) g.inner *= s[a];
  return g;
}

namespace detail {
/// d += g over n elements, in row chunks across threads (the identity straight-through backward).
template <class T>
void add_into(T* d, const T* g, index_t n) {
  parallel_for(0, n, [&](index_t lo, index_t hi) { ArrayMap<T>(d + lo, hi - lo) += ConstArrayMap<T>(g + lo, hi - lo); });
}
}  // namespace detail

/// StatsQ with the bit width held at run time; StatsQuantizer<Bits, T> is the user-facing type.
template <class T>
class StatsQuantizerBase : public WeightQuantizer<T> {
 public:
  explicit StatsQuantizerBase(const StatsQOptions& o) : o_(o) {
    detail::check_bits(o.bits, "quant::StatsQuantizer");
    WEFT_CHECK(o.ste_gate >= 0 && o.ste_gate <= 0.5, value, "quant::StatsQuantizer",
               "expected ste_gate in [0, 0.5] (quantisation steps), got ", o.ste_gate);
    WEFT_CHECK(o.granularity == Granularity::axes || o.reduce_axes.empty(), config, "quant::StatsQuantizer",
               "expected reduce_axes only with Granularity::axes, got ", o.reduce_axes.size(), " axes");
  }
  std::string name() const override { return "statsq"; }
  int bits() const override { return o_.bits; }
  const StatsQOptions& options() const noexcept { return o_; }
  /// Sets the straight-through gate (0: off); see StatsQOptions::ste_gate.
  void set_ste_gate(double br) {
    WEFT_CHECK(br >= 0 && br <= 0.5, value, "quant::StatsQuantizer::set_ste_gate", "expected a gate in [0, 0.5], got ", br);
    o_.ste_gate = br;
  }
  /// The (outer, groups, inner) view of a weight of shape s.
  ops::FqGeometry geometry(const Shape& s) const {
    return quant_geometry(s, o_.granularity, o_.reduce_axes, "quant::StatsQuantizer");
  }
  /// The scales s of the last forward, one per group.
  const std::vector<T>& scales() const noexcept { return scales_; }

  Var<T> apply(const Var<T>& w) override {
    const char* fn = "quant::StatsQuantizer::apply";
    Tape<T>& t = w.tape();
    const ops::FqGeometry g = geometry(w.shape());
    const index_t n = w.numel();
    const ops::FrozenCodes fz = this->frozen_view(n, fn);
    Tensor<T> q = t.alloc_uninit(w.shape());
    scales_.resize(std::size_t(g.groups));
    ops::StatsqOut<T> out;
    out.q = q.data();
    out.codes = this->code_buffer(n);
    out.scales = scales_.data();
    // masks the backward needs live in the arena (valid until the tape is reset)
    const bool grad = is_grad_enabled();
    std::uint8_t* near = nullptr;
    if (grad && o_.ste_gate > 0) out.near = near = static_cast<std::uint8_t*>(t.alloc_bytes(std::size_t(n) + 1));
    std::uint8_t* frozen = nullptr;
    if (grad && fz) {
      frozen = static_cast<std::uint8_t*>(t.alloc_bytes(std::size_t(n) + 1));
      std::copy(fz.mask, fz.mask + n, frozen);
    }
    ops::statsq_forward(w.value().data(), g, o_.bits, out, o_.ste_gate, fz);
    return t.record(q, {w}, [w, near, frozen, n](Tape<T>& tp, const Tensor<T>& go) {
      Tensor<T>* gw = tp.grad_sink(w);
      if (!gw) return;
      if (!near && !frozen) {
        detail::add_into(gw->data(), go.data(), n);
        return;
      }
      T* d = gw->data();
      const T* gv = go.data();
      for (index_t i = 0; i < n; ++i)
        if ((!near || near[i]) && (!frozen || !frozen[i])) d[i] += gv[i];
    });
  }

  QuantizedWeights<T> quantize(const Tensor<T>& w) override {
    const ops::FqGeometry g = geometry(w.shape());
    QuantizedWeights<T> r;
    r.shape = w.shape();
    r.geometry = g;
    r.bits = o_.bits;
    r.scheme = "statsq";
    r.offset = T(0.5);
    r.codes.resize(std::size_t(w.numel()));
    std::vector<T> s(std::size_t(g.groups));
    ops::StatsqOut<T> out;
    out.codes = r.codes.data();
    out.scales = s.data();
    ops::statsq_forward(w.data(), g, o_.bits, out, 0.0, this->frozen_view(w.numel(), "quant::StatsQuantizer::quantize"));
    const T nlev = T(index_t(1) << (o_.bits - 1));
    for (T x : s) r.step.push_back(x / nlev);
    return r;
  }

  /// near[i] = 1 where weight i is within `boundary` quantisation steps of a decision threshold
  /// (confidence-guided annealing keeps those trainable), computed by the forward's kernel.
  void confidence_mask(const Tensor<T>& w, double boundary, std::vector<std::uint8_t>& near) const {
    WEFT_CHECK(boundary >= 0 && boundary <= 0.5, value, "quant::StatsQuantizer::confidence_mask",
               "expected a boundary range in [0, 0.5], got ", boundary);
    near.resize(std::size_t(w.numel()));
    ops::StatsqOut<T> out;
    out.near = near.data();
    ops::statsq_forward(w.data(), geometry(w.shape()), o_.bits, out, boundary);
  }

 private:
  StatsQOptions o_;
  std::vector<T> scales_;
};

/// StatsQ with a compile-time bit width Bits (1..8), or dynamic_bits to take options.bits. With
/// a compile-time Bits the template argument sets the width (options.bits is replaced).
template <int Bits = dynamic_bits, class T = float>
class StatsQuantizer final : public StatsQuantizerBase<T> {
  static_assert(detail::valid_bits<Bits>,
                "StatsQuantizer<Bits>: the bit width must be between 1 and 8, or quant::dynamic_bits to choose it at "
                "run time");
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "StatsQuantizer<Bits, T>: T must be float or double");

 public:
  static constexpr int compile_time_bits = Bits;
  explicit StatsQuantizer(StatsQOptions o = {}) : StatsQuantizerBase<T>(with_bits(std::move(o))) {}

 private:
  static StatsQOptions with_bits(StatsQOptions o) {
    if constexpr (Bits != dynamic_bits) o.bits = Bits;
    return o;
  }
};

/// A shared StatsQ transform, ready for nn::Linear::add_transform: statsq<2>() or, with the
/// width at run time, statsq<dynamic_bits>(options).
template <int Bits, class T = float>
std::shared_ptr<StatsQuantizer<Bits, T>> statsq(const StatsQOptions& o = {}) {
  return std::make_shared<StatsQuantizer<Bits, T>>(o);
}

}  // namespace quant
WEFT_NAMESPACE_END
