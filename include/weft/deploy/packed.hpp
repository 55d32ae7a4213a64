// weft/deploy/packed.hpp - packed low-bit weights for deployment: PackedWeights<Bits, GroupSize>
// (owning) and PackedView<Bits, GroupSize> (non-owning, over caller or static storage), the
// packer pack_codes() and unpacking. Only core headers: the conversion from a quantiser's
// export lives in deploy/from_quant.hpp.
//
// Format (docs/deploy.md has pictures). A weight of shape (rows, cols) = (out, in), row-major
// like nn::Linear's. Every code k is stored unsigned, u = (k - code_min) / code_scale, in Bits
// bits; P = floor(32 / Bits) codes fill one 32-bit little-endian word, code j of the word in
// bits [j Bits, (j + 1) Bits). 3 bits: 10 codes per word, bits 30 and 31 unused (zero). Every
// row starts on a new word (words_per_row = ceil(cols / P)); unused code slots of a row's last
// word are zero. Steps: one float per group of GroupSize consecutive columns of a row
// (GroupSize 32, 64 or 128), or one per row (GroupSize 0); when cols is not a multiple of
// GroupSize the last group of every row is shorter (cols mod GroupSize columns). A per-tensor
// step is stored once per row (repeated).
//
// Values. Element (r, c) dequantises to (u + bias) * step with bias = (code_min + offset) /
// code_scale. This equals the quantiser's fake-quant forward (k + offset) * s bit for bit:
// code_scale is 1, or 2 for the 1-bit sign codes {-1, +1} of LSQ (u = 0, 1), and the packer
// stores step = code_scale * s, exact (a power-of-two scaling of a finite float; the packer
// rejects an overflow). u + bias = (k + offset) / code_scale is a multiple of 1/4 of magnitude
// below 2^9, so it is exact in float, and the real product (u + bias)(code_scale s) equals the
// real product (k + offset) s: both round to the same float.
//
// Kernels (deploy/kernels.hpp) compute sum_c x_c (u_c + bias) step_g per group as
// step_g (sum_c x_c u_c + bias sum_c x_c), the group sums of x shared by every output row.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "weft/core/checked.hpp"
#include "weft/core/error.hpp"
#include "weft/core/shape.hpp"

WEFT_NAMESPACE_BEGIN
namespace deploy {

/// The storage unit of packed codes: a 32-bit word, read little-endian.
using word_t = std::uint32_t;

namespace detail {

/// Compile-time checks of a packed format with a sentence each.
template <int Bits, int GroupSize>
struct FormatCheck {
  static_assert(Bits == 1 || Bits == 2 || Bits == 3 || Bits == 4 || Bits == 8,
                "weft::deploy: packed weights support 1, 2, 3, 4 or 8 bits per code");
  static_assert(GroupSize == 0 || GroupSize == 32 || GroupSize == 64 || GroupSize == 128,
                "weft::deploy: GroupSize must be 32, 64 or 128 columns, or 0 for one step per row");
  static constexpr bool ok = true;
};

inline index_t ceil_div(index_t a, index_t b) noexcept { return (a + b - 1) / b; }

}  // namespace detail

/// Geometry shared by the owning and non-owning packed types.
template <int Bits, int GroupSize>
struct PackedFormat {
  static_assert(detail::FormatCheck<Bits, GroupSize>::ok, "");
  static constexpr int bits = Bits;
  static constexpr int group_size = GroupSize;       ///< 0: one step per row
  static constexpr int per_word = 32 / Bits;         ///< codes in one word
  static constexpr word_t mask = (word_t(1) << Bits) - 1;  ///< Bits = 8: 0xff

  static index_t words_per_row(index_t cols) noexcept { return detail::ceil_div(cols, per_word); }
  /// Columns of a full group (cols itself for GroupSize 0).
  static index_t group_cols(index_t cols) noexcept { return GroupSize == 0 ? cols : index_t(GroupSize); }
  static index_t groups_per_row(index_t cols) noexcept {
    return GroupSize == 0 ? index_t(cols > 0) : detail::ceil_div(cols, index_t(GroupSize));
  }
};

/// A packed weight seen through pointers (no ownership, no allocation): rows * words_per_row
/// words and rows * groups_per_row steps. Build one over static storage for a device, or take
/// PackedWeights::view(). validate() checks it once; kernels trust a validated view.
template <int Bits, int GroupSize>
struct PackedView : PackedFormat<Bits, GroupSize> {
  using F = PackedFormat<Bits, GroupSize>;
  index_t rows = 0, cols = 0;
  const word_t* words = nullptr;
  const float* steps = nullptr;
  float offset = 0.0f;  ///< the scheme's offset: 1/2 StatsQ, 0 LSQ
  int code_min = 0;     ///< code = code_scale * u + code_min
  int code_scale = 1;   ///< 1, or 2 for 1-bit sign codes {-1, +1}

  index_t words_per_row() const noexcept { return F::words_per_row(cols); }
  index_t groups_per_row() const noexcept { return F::groups_per_row(cols); }
  index_t group_cols() const noexcept { return F::group_cols(cols); }
  /// u + bias is the dequantised value divided by the step.
  float bias() const noexcept { return (float(code_min) + offset) / float(code_scale); }

  /// The stored unsigned code of (r, c).
  word_t unsigned_code(index_t r, index_t c) const noexcept {
    const word_t w = words[r * words_per_row() + c / F::per_word];
    return (w >> (int(c % F::per_word) * Bits)) & F::mask;
  }
  /// The quantiser's integer code of (r, c).
  int code(index_t r, index_t c) const noexcept { return code_scale * int(unsigned_code(r, c)) + code_min; }
  float step(index_t r, index_t c) const noexcept { return steps[r * groups_per_row() + c / group_cols()]; }
  /// The dequantised weight (r, c): (u + bias) * step.
  float value(index_t r, index_t c) const noexcept { return (float(unsigned_code(r, c)) + bias()) * step(r, c); }

  /// Bytes of codes and steps (the per-tensor scalars are not counted).
  std::size_t bytes() const noexcept {
    return std::size_t(rows) * (sizeof(word_t) * std::size_t(words_per_row()) + sizeof(float) * std::size_t(groups_per_row()));
  }
  /// bytes() * 8 per weight.
  double bits_per_weight() const noexcept { return rows * cols > 0 ? 8.0 * double(bytes()) / double(rows * cols) : 0.0; }

  /// Raises unless the view is usable: rows, cols >= 1, non-null storage, code_scale 1 (or 2 at
  /// 1 bit), finite offset and steps, zero bits outside the codes, every code's dequantised
  /// level representable exactly (|code_min|, |code + offset| small).
  void validate(const char* fn = "deploy::PackedView::validate") const {
    WEFT_CHECK(rows >= 1 && cols >= 1, shape, fn, "expected rows, cols >= 1, got (", rows, ", ", cols, ")");
    WEFT_CHECK(words != nullptr && steps != nullptr, value, fn, "expected storage for words and steps, got a null pointer");
    WEFT_CHECK(code_scale == 1 || (code_scale == 2 && Bits == 1), value, fn,
               "expected code_scale 1 (or 2 for 1-bit sign codes), got ", code_scale, " at ", Bits, " bits");
    WEFT_CHECK(code_min >= -256 && code_min <= 256, value, fn, "expected code_min in [-256, 256], got ", code_min);
    WEFT_CHECK(std::isfinite(offset) && std::abs(offset) <= 1.0f && offset * 4.0f == std::nearbyint(offset * 4.0f), value, fn,
               "expected an offset that is a multiple of 1/4 in [-1, 1] (1/2 StatsQ, 0 LSQ), got ", offset);
    const index_t wpr = words_per_row(), gpr = groups_per_row();
    for (index_t i = 0; i < rows * gpr; ++i)
      WEFT_CHECK(std::isfinite(steps[i]), value, fn, "expected finite steps, got ", steps[i], " at row ", i / gpr, ", group ",
                 i % gpr);
    // bits a row's last word does not use (code slots past cols, and bits 30-31 at 3 bits)
    const index_t used = cols - (wpr - 1) * F::per_word;
    const word_t last_mask = used * Bits >= 32 ? ~word_t(0) : ((word_t(1) << (used * Bits)) - 1);
    const word_t full_mask = F::per_word * Bits >= 32 ? ~word_t(0) : ((word_t(1) << (F::per_word * Bits)) - 1);
    for (index_t r = 0; r < rows; ++r)
      for (index_t k = 0; k < wpr; ++k) {
        const word_t w = words[r * wpr + k];
        WEFT_CHECK((w & ~(k + 1 == wpr ? last_mask : full_mask)) == 0, value, fn,
                   "expected zero bits outside the codes, got word ", w, " at row ", r, ", word ", k);
      }
  }
};

/// Owning packed weights (see the file comment for the format). Build with pack_codes() or
/// deploy::pack(QuantizedWeights) (deploy/from_quant.hpp); view() for the kernels.
template <int Bits, int GroupSize>
struct PackedWeights : PackedFormat<Bits, GroupSize> {
  using F = PackedFormat<Bits, GroupSize>;
  index_t rows = 0, cols = 0;
  std::vector<word_t> words;  ///< rows * words_per_row
  std::vector<float> steps;   ///< rows * groups_per_row
  float offset = 0.0f;
  int code_min = 0;
  int code_scale = 1;

  PackedView<Bits, GroupSize> view() const noexcept {
    PackedView<Bits, GroupSize> v;
    v.rows = rows;
    v.cols = cols;
    v.words = words.data();
    v.steps = steps.data();
    v.offset = offset;
    v.code_min = code_min;
    v.code_scale = code_scale;
    return v;
  }
  std::size_t bytes() const noexcept { return view().bytes(); }
  double bits_per_weight() const noexcept { return view().bits_per_weight(); }
  float bias() const noexcept { return view().bias(); }

  /// Raises unless the fields fit together (sizes for rows x cols, then PackedView::validate).
  void validate(const char* fn = "deploy::PackedWeights::validate") const {
    WEFT_CHECK(rows >= 1 && cols >= 1, shape, fn, "expected rows, cols >= 1, got (", rows, ", ", cols, ")");
    const index_t nw = checked_mul(rows, F::words_per_row(cols), fn), ns = checked_mul(rows, F::groups_per_row(cols), fn);
    WEFT_CHECK(index_t(words.size()) == nw && index_t(steps.size()) == ns, shape, fn, "expected ", nw, " words and ", ns,
               " steps for ", rows, " x ", cols, " weights, got ", words.size(), " and ", steps.size());
    view().validate(fn);
  }

  /// The quantiser's integer codes, row-major (rows * cols).
  std::vector<std::int16_t> unpack_codes() const {
    validate("deploy::PackedWeights::unpack_codes");
    const auto v = view();
    std::vector<std::int16_t> k(std::size_t(rows * cols));
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) k[std::size_t(r * cols + c)] = std::int16_t(v.code(r, c));
    return k;
  }
  /// The dequantised weight, row-major (rows * cols).
  std::vector<float> dequantize() const {
    validate("deploy::PackedWeights::dequantize");
    const auto v = view();
    std::vector<float> w(std::size_t(rows * cols));
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) w[std::size_t(r * cols + c)] = v.value(r, c);
    return w;
  }
};

/// Packs integer codes (rows * cols, row-major) with steps (rows * groups_per_row; step of the
/// quantiser, s in value = (k + offset) s). code_min is the smallest code of the grid
/// (-2^(Bits-1) signed, 0 unsigned); code_scale 2 maps 1-bit sign codes {-1, +1} to u = 0, 1
/// (then code_min = -1). Raises on codes outside the grid, non-finite steps or offsets.
template <int Bits, int GroupSize>
PackedWeights<Bits, GroupSize> pack_codes(index_t rows, index_t cols, const std::int16_t* codes, const float* steps,
                                          float offset, int code_min, int code_scale = 1) {
  using F = PackedFormat<Bits, GroupSize>;
  const char* fn = "deploy::pack_codes";
  WEFT_CHECK(rows >= 1 && cols >= 1, shape, fn, "expected rows, cols >= 1, got (", rows, ", ", cols, ")");
  WEFT_CHECK(codes != nullptr && steps != nullptr, value, fn, "expected codes and steps, got a null pointer");
  WEFT_CHECK(code_scale == 1 || (code_scale == 2 && Bits == 1), value, fn,
             "expected code_scale 1 (or 2 for 1-bit sign codes), got ", code_scale, " at ", Bits, " bits");
  const int umax = int(F::mask);
  for (index_t i = 0; i < rows * cols; ++i) {
    const int d = int(codes[i]) - code_min;
    WEFT_CHECK(d >= 0 && d % code_scale == 0 && d / code_scale <= umax, value, fn, "expected codes ", code_min, " + ",
               code_scale, " u with u in [0, ", umax, "], got ", codes[i], " at row ", i / cols, ", column ", i % cols);
  }
  PackedWeights<Bits, GroupSize> p;
  p.rows = rows;
  p.cols = cols;
  p.offset = offset;
  p.code_min = code_min;
  p.code_scale = code_scale;
  const index_t wpr = F::words_per_row(cols), gpr = F::groups_per_row(cols);
  p.steps.resize(std::size_t(checked_mul(rows, gpr, fn)));
  for (std::size_t i = 0; i < p.steps.size(); ++i) {
    const float s = steps[i] * float(code_scale);  // exact unless it overflows (checked)
    WEFT_CHECK(std::isfinite(steps[i]) && std::isfinite(s), value, fn, "expected finite steps (times ", code_scale,
               "), got ", steps[i], " at ", i);
    p.steps[i] = s;
  }
  p.words.assign(std::size_t(checked_mul(rows, wpr, fn)), 0);
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) {
      const word_t u = word_t((int(codes[r * cols + c]) - code_min) / code_scale);
      p.words[std::size_t(r * wpr + c / F::per_word)] |= u << (int(c % F::per_word) * Bits);
    }
  p.validate(fn);
  return p;
}

}  // namespace deploy
WEFT_NAMESPACE_END
