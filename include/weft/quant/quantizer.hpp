// weft/quant/quantizer.hpp - what every weft weight quantiser shares: the bit-width checks,
// the WeightQuantizer<T> base (an nn::WeightTransform that keeps the integer codes of its last
// training forward and can hold frozen codes), and QuantizedWeights<T>, the integer codes plus
// steps a deployment kernel needs.
//
// Codes. A quantiser's apply() writes the integer code of every weight element into codes()
// whenever it records with gradients enabled (a training forward); forwards under no_grad
// (evaluation, fold()) leave them alone. The oscillation tracker reads them (tracker.hpp).
//
// Frozen codes (Nagel et al., ICML 2022, "iterative freezing"): freeze_at(i, k) pins element i
// to code k; the forward then uses k whatever the weight, and no gradient reaches the weight
// there. Quantisers take their scalar path while any code is frozen.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "weft/core/autograd/tape.hpp"
#include "weft/core/checked.hpp"
#include "weft/core/ops/fake_quant.hpp"
#include "weft/core/ops/fake_quant_lsq.hpp"
#include "weft/nn/attach.hpp"

WEFT_NAMESPACE_BEGIN
namespace quant {

using ops::qcode_t;

/// Template argument meaning "the bit width is chosen at run time" (StatsQuantizer<dynamic_bits>).
inline constexpr int dynamic_bits = 0;

namespace detail {
inline void check_bits(int bits, const char* fn) {
  WEFT_CHECK(bits >= 1 && bits <= 8, config, fn, "expected a bit width in 1..8, got ", bits);
}
template <int Bits>
inline constexpr bool valid_bits = Bits == dynamic_bits || (Bits >= 1 && Bits <= 8);
}  // namespace detail

/// Integer codes and steps of a quantised weight, for deployment: element i of group m
/// dequantises to step[m] * (codes[i] + offset). StatsQ has offset 1/2 (its levels
/// s (2k + 1) / (2n) have no zero, spec Sec. 7: an integer kernel computes sum_j x_j k_j and
/// adds offset * sum_j x_j, a zero-point-like correction per output); LSQ has offset 0.
template <class T>
struct QuantizedWeights {
  Shape shape;                     ///< the weight's shape
  ops::FqGeometry geometry;        ///< which elements share a step (groups = steps)
  int bits = 0;
  std::string scheme;              ///< "statsq" or "lsq"
  std::vector<qcode_t> codes;      ///< one per element, row-major
  std::vector<T> step;             ///< one per group: s / n (StatsQ) or max(s, 1e-5) (LSQ)
  T offset = T(0);                 ///< 1/2 (StatsQ) or 0 (LSQ)

  /// Raises unless the fields fit together (as a deserialiser may not ensure): bits in 1..8,
  /// positive geometry covering shape.numel() elements, one code per element, each in the b-bit
  /// range of some scheme ([-2^(b-1), 2^b - 1]), one finite step per group, a finite offset.
  void validate(const char* fn = "quant::QuantizedWeights::validate") const {
    detail::check_bits(bits, fn);
    const ops::FqGeometry& g = geometry;
    WEFT_CHECK(g.outer >= 1 && g.groups >= 1 && g.inner >= 1, shape, fn, "expected a geometry with outer, groups, inner >= 1, got (",
               g.outer, ", ", g.groups, ", ", g.inner, ")");
    const index_t n = checked_mul(checked_mul(g.outer, g.groups, fn), g.inner, fn);
    WEFT_CHECK(n == shape.numel() && index_t(codes.size()) == n, shape, fn, "expected ", shape.numel(),
               " codes (shape ", shape, ") and a geometry of as many elements, got ", codes.size(), " codes and ", n,
               " elements");
    WEFT_CHECK(index_t(step.size()) == g.groups, shape, fn, "expected one step per group (", g.groups, "), got ", step.size());
    const int lo = -(1 << (bits - 1)), hi = (1 << bits) - 1;
    for (std::size_t i = 0; i < codes.size(); ++i)
      WEFT_CHECK(codes[i] >= lo && codes[i] <= hi, value, fn, "expected ", bits, "-bit codes in [", lo, ", ", hi, "], got ",
                 codes[i], " at ", i);
    for (std::size_t m = 0; m < step.size(); ++m)
      WEFT_CHECK(std::isfinite(double(step[m])), value, fn, "expected finite steps, got ", step[m], " for group ", m);
    WEFT_CHECK(std::isfinite(double(offset)), value, fn, "expected a finite offset, got ", offset);
  }

  /// The dequantised weight; equals the quantiser's forward output bit for bit. Validates first.
  Tensor<T> dequantize() const {
    validate("quant::QuantizedWeights::dequantize");
    Tensor<T> w(shape);
    const ops::FqGeometry& g = geometry;
    for (index_t m = 0; m < g.groups; ++m)
      for (index_t a = 0; a < g.outer; ++a) {
        const index_t o = g.segment(a, m);
        for (index_t j = 0; j < g.inner; ++j) w.flat(o + j) = (T(codes[std::size_t(o + j)]) + offset) * step[std::size_t(m)];
      }
    return w;
  }
};

/// Base of the weight quantisers: an nn::WeightTransform with codes, frozen codes and export.
template <class T>
class WeightQuantizer : public nn::WeightTransform<T> {
 public:
  /// Quantisers sit after reparameterisations and before masks (nn::TransformStage).
  nn::TransformStage stage() const override { return nn::TransformStage::quantizer; }
  /// The bit width.
  virtual int bits() const = 0;
  /// Integer codes and steps of `w` as this quantiser maps it now (no gradients recorded).
  virtual QuantizedWeights<T> quantize(const Tensor<T>& w) = 0;

  /// Codes of the last forward recorded with gradients enabled (empty before the first).
  const std::vector<qcode_t>& codes() const noexcept { return codes_; }
  /// Incremented by every forward that refreshes codes().
  std::uint64_t code_version() const noexcept { return version_; }

  /// The codes this quantiser produces: [lo, hi], without 0 when `sign` (sign codes {-1, +1}).
  /// The default is the signed b-bit range [-2^(b-1), 2^(b-1) - 1] (StatsQ's).
  virtual ops::LsqRange code_range() const {
    ops::LsqRange r;
    r.lo = -double(1 << (bits() - 1));
    r.hi = double((1 << (bits() - 1)) - 1);
    return r;
  }
  /// Whether k is one of code_range()'s codes.
  bool valid_code(qcode_t k) const {
    const ops::LsqRange r = code_range();
    return double(k) >= r.lo && double(k) <= r.hi && !(r.sign && k == 0);
  }
  /// The valid code nearest to v (half to even; a sign quantiser maps 0 to +1).
  qcode_t nearest_code(double v) const {
    const ops::LsqRange r = code_range();
    const double k = std::nearbyint(std::min(std::max(v, r.lo), r.hi));
    return qcode_t(r.sign && k == 0 ? (v >= 0 ? 1 : -1) : k);
  }

  /// Pins element i (flat index into the weight) to code k, one of code_range()'s. Needs a
  /// training forward first (the weight's size is taken from codes()).
  void freeze_at(index_t i, qcode_t k) {
    WEFT_CHECK(i >= 0 && std::size_t(i) < codes_.size(), shape, "quant::WeightQuantizer::freeze_at",
               "expected an index in [0, ", codes_.size(), ") (after a training forward), got ", i);
    WEFT_CHECK(valid_code(k), value, "quant::WeightQuantizer::freeze_at", "expected a code in [", code_range().lo, ", ",
               code_range().hi, "]", (code_range().sign ? " other than 0" : ""), " for ", bits(), " bits, got ", k);
    if (frozen_.size() != codes_.size()) {
      frozen_.assign(codes_.size(), 0);
      frozen_codes_.assign(codes_.size(), 0);
      nfrozen_ = 0;
    }
    if (!frozen_[std::size_t(i)]) ++nfrozen_;
    frozen_[std::size_t(i)] = 1;
    frozen_codes_[std::size_t(i)] = k;
  }
  /// Unfreezes every element.
  void clear_frozen() {
    frozen_.clear();
    frozen_codes_.clear();
    nfrozen_ = 0;
  }
  index_t frozen_count() const noexcept { return nfrozen_; }
  /// 1 where frozen (empty when nothing was ever frozen).
  const std::vector<std::uint8_t>& frozen_mask() const noexcept { return frozen_; }

 protected:
  /// Where this forward writes its codes: codes() when gradients are recorded, else nullptr.
  qcode_t* code_buffer(index_t numel) {
    if (!is_grad_enabled()) return nullptr;
    codes_.resize(std::size_t(numel));
    ++version_;
    return codes_.data();
  }
  /// The frozen codes for a weight of `numel` elements (empty view when none are frozen).
  ops::FrozenCodes frozen_view(index_t numel, const char* fn) const {
    if (nfrozen_ == 0) return {};
    WEFT_CHECK(index_t(frozen_.size()) == numel, shape, fn, "expected a weight of ", frozen_.size(),
               " elements (the frozen codes' size), got ", numel);
    ops::FrozenCodes f;
    f.mask = frozen_.data();
    f.codes = frozen_codes_.data();
    return f;
  }

 private:
  std::vector<qcode_t> codes_;
  std::uint64_t version_ = 0;
  std::vector<std::uint8_t> frozen_;
  std::vector<qcode_t> frozen_codes_;
  index_t nfrozen_ = 0;
};

}  // namespace quant
WEFT_NAMESPACE_END
