// weft/core/detail/safetensors_util.hpp - internals of weft/core/io/safetensors.hpp: the
// half / bfloat16 codec, a UTF-8 check, and the first pass over a header (nlohmann::json SAX)
// that finds parse errors, repeated keys and too deep a nesting without building anything.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "weft/config.hpp"

WEFT_NAMESPACE_BEGIN
namespace detail {

constexpr int st_max_depth = 8;  // a valid header nests 3 deep (object, entry, array)

inline double st_round_even(double v) noexcept {  // v >= 0
  double r = std::floor(v);
  const double d = v - r;
  if (d > 0.5 || (d == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
  return r;
}

/// x rounded to nearest even in a binary format with `eb` exponent and `mb` mantissa bits
/// (F16: 5, 10; BF16: 8, 7). Rounds once from double, so float -> half is correctly rounded.
inline std::uint16_t st_encode_small(double x, int eb, int mb) noexcept {
  const std::uint32_t sign = std::signbit(x) ? 1u << (eb + mb) : 0u;
  const std::uint32_t inf = ((1u << eb) - 1u) << mb;
  if (std::isnan(x)) return std::uint16_t(sign | inf | 1u << (mb - 1));
  x = std::fabs(x);
  const int bias = (1 << (eb - 1)) - 1, emin = 1 - bias;
  if (x >= std::ldexp(2.0 - std::ldexp(1.0, -(mb + 1)), bias)) return std::uint16_t(sign | inf);
  if (x < std::ldexp(1.0, emin))  // subnormal; 2^mb encodes the smallest normal
    return std::uint16_t(sign | std::uint32_t(st_round_even(std::ldexp(x, mb - emin))));
  int e = 0;
  std::frexp(x, &e);  // x = f 2^e, f in [0.5, 1)
  const std::uint32_t m = std::uint32_t(st_round_even(std::ldexp(x, mb - (e - 1))));  // [2^mb, 2^(mb+1)]
  return std::uint16_t(sign | ((std::uint32_t(e - 1 + bias) << mb) + m - (1u << mb)));
}
/// The exact value of a half or bfloat16 bit pattern.
inline double st_decode_small(std::uint16_t b, int eb, int mb) noexcept {
  const int bias = (1 << (eb - 1)) - 1;
  const std::uint32_t ef = (std::uint32_t(b) >> mb) & ((1u << eb) - 1u), m = b & ((1u << mb) - 1u);
  double v;
  if (ef == (1u << eb) - 1u) v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else if (ef == 0) v = std::ldexp(double(m), 1 - bias - mb);
  else v = std::ldexp(double(m + (1u << mb)), int(ef) - bias - mb);
  return (b >> (eb + mb)) & 1u ? -v : v;
}

/// Whether s is valid UTF-8 (nlohmann's writer refuses anything else).
inline bool st_valid_utf8(const std::string& s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    std::uint32_t cp = n == 1 ? c : c & (0x7fu >> n);
    for (std::size_t k = 1; k < n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2) return false;
      cp = cp << 6 | (d & 0x3fu);
    }
    const std::uint32_t lo[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < lo[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n;
  }
  return true;
}

/// First pass over the header: records nlohmann's parse error, a repeated key or too deep a
/// nesting, and stops there. It builds nothing; the DOM pass runs only on headers it accepts.
class StHeaderCheck : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::string error;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return push(true); }
  bool end_object() override { return pop(); }
  bool start_array(std::size_t) override { return push(false); }
  bool end_array() override { return pop(); }
  bool key(string_t& k) override {
    if (levels_.size() == 1) top_key_ = k;
    if (!levels_.back().insert(k).second) {
      error = levels_.size() == 1 ? "duplicate tensor name '" + k + "'"
                                  : "duplicate key '" + k + "' in the entry of tensor '" + top_key_ + "'";
      return false;
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    error = std::string("invalid JSON: ") + ex.what();
    return false;
  }

 private:
  bool push(bool) {
    if (int(levels_.size()) >= st_max_depth) {
      error = "JSON nested deeper than " + std::to_string(st_max_depth) + " levels";
      return false;
    }
    levels_.emplace_back();
    return true;
  }
  bool pop() {
    levels_.pop_back();
    return true;
  }
  std::vector<std::set<std::string>> levels_;  // the keys seen in each open object (or array)
  std::string top_key_;
};

}  // namespace detail
WEFT_NAMESPACE_END
