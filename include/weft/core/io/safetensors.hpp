// weft/core/io/safetensors.hpp - safetensors files: load_safetensors, load_safetensors_bytes,
// SafetensorsFile, safetensors_entry, save_safetensors, safetensors_bytes.
//
// The format (https://github.com/huggingface/safetensors): an 8-byte little-endian u64 N, N
// bytes of UTF-8 JSON, then the data buffer. The JSON object maps each tensor name to
//   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// (byte offsets into the data buffer, end exclusive; data row-major, little endian) and may
// hold "__metadata__": {string: string}. dtypes: F64 F32 BF16 F16 (floating point), I64 I32
// I16 I8 U64 U32 U16 U8 and BOOL. nlohmann::json parses and writes the header; the rest is here.
//
// Reading (load_safetensors reads the file once into memory; load_safetensors_bytes copies a
// buffer) validates everything before any use, as the reference implementation does, and every
// failure is an IoError naming the function, the source (path or "<bytes>") and the tensor:
// a file shorter than 8 bytes; a header size above 100,000,000 bytes or beyond the file; JSON
// that does not parse, nests deeper than 8 levels, is not an object or repeats a key; an entry
// that is not an object or lacks dtype / shape / data_offsets or has them ill-typed (shape: an
// array of integers >= 0, data_offsets: two integers >= 0; other keys are ignored, as the
// reference does); an unknown dtype; an extent above 2^48 or an element count above 2^48;
// begin > end, end beyond the buffer, end - begin != numel * itemsize; offsets that overlap,
// leave a hole or stop short of the end of the file (the tensors must tile the buffer); a
// "__metadata__" that is not an object of strings.
//   tensor<T>(name)   float or double Tensor of rank <= 4 from F16/BF16/F32/F64 (converted)
//   int64s(name)      the values of an integer or BOOL tensor as int64 (any rank)
//   data(info)        the raw little-endian bytes
// Writing sorts the tensors as the reference implementation does (by dtype alignment, largest
// first: U64 I64 F64 F32 U32 I32 BF16 F16 U16 I16 I8 U8 BOOL; then by name, byte-wise), lays
// them out back to back, writes compact JSON ("__metadata__" first when there is metadata;
// keys dtype, shape, data_offsets) padded with spaces to a multiple of 8 bytes, so the data
// starts 8-byte aligned. Floating tensors can be written as F16 or BF16 (round to nearest
// even; beyond the range gives +-inf as in PyTorch). Only little-endian hosts are supported.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "weft/core/detail/safetensors_util.hpp"
#include "weft/core/error.hpp"
#include "weft/core/shape.hpp"
#include "weft/core/tensor.hpp"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "weft's safetensors reader and writer copy raw bytes and need a little-endian host");
#endif

WEFT_NAMESPACE_BEGIN

/// safetensors dtypes, in the reference implementation's order of increasing alignment.
enum class SafetensorsDtype { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

inline const char* to_string(SafetensorsDtype d) noexcept {
  static const char* const names[] = {"BOOL", "U8",  "I8",  "I16", "U16", "F16", "BF16",
                                      "I32",  "U32", "F32", "F64", "I64", "U64"};
  return names[int(d)];
}
/// Bytes per element.
inline std::size_t safetensors_itemsize(SafetensorsDtype d) noexcept {
  static const std::size_t sizes[] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
  return sizes[int(d)];
}
inline bool is_floating(SafetensorsDtype d) noexcept {
  return d == SafetensorsDtype::F16 || d == SafetensorsDtype::BF16 || d == SafetensorsDtype::F32 ||
         d == SafetensorsDtype::F64;
}

/// A shape as weft prints one: "(2, 3)", "()" for a scalar.
inline std::string safetensors_shape_string(const std::vector<index_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

/// One tensor of a file: name, dtype, shape and its byte range [begin, end) in the data buffer.
struct SafetensorsInfo {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::F32;
  std::vector<index_t> shape;
  index_t numel = 1;
  std::uint64_t begin = 0, end = 0;
};

/// One tensor to write: its raw little-endian bytes (numel * itemsize of them).
struct SafetensorsEntry {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::F32;
  std::vector<index_t> shape;
  std::vector<std::uint8_t> bytes;
};

namespace detail {

constexpr std::uint64_t st_max_header = 100000000;  // the reference implementation's limit
constexpr std::uint64_t st_max_count = std::uint64_t(1) << 48;

inline bool st_parse_dtype(const std::string& s, SafetensorsDtype& out) noexcept {
  for (int k = 0; k <= int(SafetensorsDtype::U64); ++k)
    if (s == to_string(SafetensorsDtype(k))) return out = SafetensorsDtype(k), true;
  return false;
}

/// The element count of `shape` into n; false when an extent is negative or the count passes 2^48.
inline bool st_count(const std::vector<index_t>& shape, std::uint64_t& n) noexcept {
  n = 1;
  for (index_t d : shape) {
    if (d < 0 || std::uint64_t(d) > st_max_count || (d != 0 && n > st_max_count / std::uint64_t(d))) return false;
    n *= std::uint64_t(d);
  }
  return true;
}

/// Reads a non-negative integer member of a tensor entry.
inline bool st_uint(const nlohmann::json& j, std::uint64_t& out) noexcept {
  if (!j.is_number_unsigned()) return false;
  out = j.get<std::uint64_t>();
  return true;
}

}  // namespace detail

class SafetensorsFile;
SafetensorsFile load_safetensors(const std::string& path);
SafetensorsFile load_safetensors_bytes(const std::uint8_t* data, std::size_t size);

/// A parsed, validated safetensors file held in memory (see the file comment).
class SafetensorsFile {
 public:
  SafetensorsFile() = default;

  /// Where the bytes came from: the path, or "<bytes>".
  const std::string& source() const noexcept { return source_; }
  /// Every tensor, in data-offset order.
  const std::vector<SafetensorsInfo>& tensors() const noexcept { return tensors_; }
  /// The "__metadata__" strings (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  /// The tensor called `name`; IoError when there is none.
  const SafetensorsInfo& info(const std::string& name) const { return find(name, "SafetensorsFile::info"); }
  /// Its raw little-endian bytes (info.end - info.begin of them), valid while the file lives.
  const std::uint8_t* data(const SafetensorsInfo& info) const noexcept {
    return buf_.data() + data_start_ + info.begin;
  }

  /// A floating-point tensor (F16, BF16, F32, F64) of rank <= 4 converted to T (float or double).
  template <class T>
  Tensor<T> tensor(const std::string& name) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "SafetensorsFile::tensor<T> reads into Tensor<float> or Tensor<double>");
    constexpr const char* func = "SafetensorsFile::tensor";
    const SafetensorsInfo& in = find(name, func);
    WEFT_CHECK(is_floating(in.dtype), io, func, "expected a floating-point dtype (F16, BF16, F32, F64) for tensor '",
               name, "' in ", source_, ", got ", to_string(in.dtype), " (read integer and BOOL tensors with int64s)");
    WEFT_CHECK(in.shape.size() <= std::size_t(Shape::max_rank), io, func, "expected rank <= 4 for tensor '", name,
               "' in ", source_, ", got rank ", in.shape.size(), " (weft tensors have at most 4 axes)");
    Tensor<T> t(Shape::from(in.shape.data(), int(in.shape.size())));
    const std::uint8_t* p = data(in);
    T* out = t.data();
    for (index_t i = 0; i < in.numel; ++i) {
      switch (in.dtype) {
        case SafetensorsDtype::F32: out[i] = T(load<float>(p, i)); break;
        case SafetensorsDtype::F64: out[i] = T(load<double>(p, i)); break;
        case SafetensorsDtype::F16: out[i] = T(detail::st_decode_small(load<std::uint16_t>(p, i), 5, 10)); break;
        default: out[i] = T(detail::st_decode_small(load<std::uint16_t>(p, i), 8, 7)); break;
      }
    }
    return t;
  }

  /// The values of an integer or BOOL tensor (any rank), row-major. U64 values above 2^63 - 1
  /// and BOOL bytes other than 0 and 1 are IoErrors.
  std::vector<std::int64_t> int64s(const std::string& name) const {
    constexpr const char* func = "SafetensorsFile::int64s";
    const SafetensorsInfo& in = find(name, func);
    WEFT_CHECK(!is_floating(in.dtype), io, func, "expected an integer or BOOL dtype for tensor '", name, "' in ",
               source_, ", got ", to_string(in.dtype), " (read floating-point tensors with tensor<T>)");
    std::vector<std::int64_t> v(std::size_t(in.numel));
    const std::uint8_t* p = data(in);
    for (index_t i = 0; i < in.numel; ++i) {
      std::int64_t x = 0;
      switch (in.dtype) {
        case SafetensorsDtype::BOOL:
          x = load<std::uint8_t>(p, i);
          WEFT_CHECK(x <= 1, io, func, "expected BOOL bytes 0 or 1 in tensor '", name, "' of ", source_, ", got ",
                     x, " at element ", i);
          break;
        case SafetensorsDtype::U8: x = load<std::uint8_t>(p, i); break;
        case SafetensorsDtype::I8: x = load<std::int8_t>(p, i); break;
        case SafetensorsDtype::I16: x = load<std::int16_t>(p, i); break;
        case SafetensorsDtype::U16: x = load<std::uint16_t>(p, i); break;
        case SafetensorsDtype::I32: x = load<std::int32_t>(p, i); break;
        case SafetensorsDtype::U32: x = load<std::uint32_t>(p, i); break;
        case SafetensorsDtype::I64: x = load<std::int64_t>(p, i); break;
        default: {
          const std::uint64_t u = load<std::uint64_t>(p, i);
          WEFT_CHECK(u <= std::uint64_t(std::numeric_limits<std::int64_t>::max()), io, func, "U64 value ", u,
                     " at element ", i, " of tensor '", name, "' in ", source_, " does not fit int64");
          x = std::int64_t(u);
        }
      }
      v[std::size_t(i)] = x;
    }
    return v;
  }

 private:
  friend SafetensorsFile load_safetensors(const std::string& path);
  friend SafetensorsFile load_safetensors_bytes(const std::uint8_t* data, std::size_t size);

  template <class V>
  static V load(const std::uint8_t* p, index_t i) noexcept {  // unaligned little-endian read
    V v;
    std::memcpy(&v, p + std::size_t(i) * sizeof(V), sizeof(V));
    return v;
  }
  const SafetensorsInfo& find(const std::string& name, const char* func) const {
    auto it = index_.find(name);
    WEFT_CHECK(it != index_.end(), io, func, "no tensor '", name, "' in ", source_);
    return tensors_[it->second];
  }

  /// Parses and validates buf (the whole file); func and source name the caller in errors.
  void parse(const char* func);
  void parse_entry(const std::string& name, const nlohmann::json& e, const char* func);

  std::string source_;
  std::vector<std::uint8_t> buf_;
  std::size_t data_start_ = 0;
  std::vector<SafetensorsInfo> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

inline void SafetensorsFile::parse_entry(const std::string& name, const nlohmann::json& e, const char* func) {
  const std::string where = "tensor '" + name + "' in " + source_;
  WEFT_CHECK(e.is_object(), io, func, "expected an object {dtype, shape, data_offsets} for ", where, ", got ",
             e.type_name());
  for (const char* k : {"dtype", "shape", "data_offsets"})
    WEFT_CHECK(e.contains(k), io, func, "missing key '", k, "' for ", where);
  SafetensorsInfo in;
  in.name = name;
  const nlohmann::json& d = e["dtype"];
  WEFT_CHECK(d.is_string(), io, func, "expected a string 'dtype' for ", where, ", got ", d.type_name());
  WEFT_CHECK(detail::st_parse_dtype(d.get<std::string>(), in.dtype), io, func, "unknown dtype '",
             d.get<std::string>(), "' for ", where, " (weft reads F64 F32 BF16 F16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL)");
  const nlohmann::json& s = e["shape"];
  WEFT_CHECK(s.is_array(), io, func, "expected an array 'shape' for ", where, ", got ", s.type_name());
  std::uint64_t n = 1;
  for (const nlohmann::json& x : s) {
    std::uint64_t v = 0;
    WEFT_CHECK(detail::st_uint(x, v), io, func, "expected integers >= 0 in 'shape' of ", where, ", got ", s.dump());
    WEFT_CHECK(v <= detail::st_max_count && (v == 0 || n <= detail::st_max_count / v), io, func, "shape ", s.dump(),
               " of ", where, " overflows (more than 2^48 elements)");
    n *= v;
    in.shape.push_back(index_t(v));
  }
  in.numel = index_t(n);
  const nlohmann::json& o = e["data_offsets"];
  WEFT_CHECK(o.is_array() && o.size() == 2 && detail::st_uint(o[0], in.begin) && detail::st_uint(o[1], in.end), io,
             func, "expected 'data_offsets' [begin, end] of two integers >= 0 for ", where, ", got ", o.dump());
  const std::uint64_t avail = buf_.size() - data_start_;
  WEFT_CHECK(in.begin <= in.end, io, func, "expected begin <= end in 'data_offsets' of ", where, ", got ", o.dump());
  WEFT_CHECK(in.end <= avail, io, func, "'data_offsets' ", o.dump(), " of ", where, " lie beyond the data buffer of ",
             avail, " bytes");
  const std::uint64_t need = n * safetensors_itemsize(in.dtype);
  WEFT_CHECK(in.end - in.begin == need, io, func, "expected ", need, " bytes for shape ", s.dump(), " of dtype ",
             to_string(in.dtype), " (", where, "), got data_offsets ", o.dump(), " (", in.end - in.begin, " bytes)");
  index_[name] = tensors_.size();
  tensors_.push_back(std::move(in));
}

inline void SafetensorsFile::parse(const char* func) {
  const std::uint64_t size = buf_.size();
  WEFT_CHECK(size >= 8, io, func, "expected at least 8 bytes (the header size) in ", source_, ", got ", size);
  std::uint64_t n = 0;
  std::memcpy(&n, buf_.data(), 8);
  WEFT_CHECK(n <= detail::st_max_header, io, func, "header size ", n, " in ", source_, " exceeds the limit of ",
             detail::st_max_header, " bytes");
  WEFT_CHECK(8 + n <= size, io, func, "header size ", n, " in ", source_, " lies beyond the file of ", size,
             " bytes");
  data_start_ = std::size_t(8 + n);
  const auto* h0 = buf_.data() + 8;
  const auto* h1 = buf_.data() + data_start_;
  detail::StHeaderCheck check;
  if (!nlohmann::json::sax_parse(h0, h1, &check) && check.error.empty()) check.error = "invalid JSON";
  WEFT_CHECK(check.error.empty(), io, func, "bad header in ", source_, ": ", check.error);
  const nlohmann::json j = nlohmann::json::parse(h0, h1, nullptr, false);
  WEFT_CHECK(j.is_object(), io, func, "expected a JSON object as the header of ", source_, ", got ", j.type_name());
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "__metadata__") {
      parse_entry(it.key(), it.value(), func);
      continue;
    }
    WEFT_CHECK(it.value().is_object(), io, func, "expected an object of strings for '__metadata__' in ", source_,
               ", got ", it.value().type_name());
    for (auto m = it.value().begin(); m != it.value().end(); ++m) {
      WEFT_CHECK(m.value().is_string(), io, func, "expected string values in '__metadata__' of ", source_,
                 ", got ", m.value().type_name(), " for key '", m.key(), "'");
      metadata_[m.key()] = m.value().get<std::string>();
    }
  }
  // the tensors must tile the data buffer: sorted by offset, each starts where the last ended
  std::sort(tensors_.begin(), tensors_.end(), [](const SafetensorsInfo& a, const SafetensorsInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t at = 0;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const SafetensorsInfo& t = tensors_[i];
    WEFT_CHECK(t.begin >= at, io, func, "tensor '", t.name, "' in ", source_, " overlaps tensor '",
               tensors_[i - 1].name, "': data_offsets [", t.begin, ", ", t.end, "] start before ", at);
    WEFT_CHECK(t.begin == at, io, func, "hole of ", t.begin - at, " bytes before tensor '", t.name, "' in ",
               source_, ": data_offsets [", t.begin, ", ", t.end, "] start after ", at);
    at = t.end;
    index_[t.name] = i;
  }
  const std::uint64_t avail = size - data_start_;
  WEFT_CHECK(at == avail, io, func, "expected the tensors to cover the data buffer of ", avail, " bytes in ",
             source_, ", but they end at ", at, tensors_.empty() ? std::string() : " (after tensor '" +
             tensors_.back().name + "')");
}

/// Reads and validates a safetensors file (one read into memory).
inline SafetensorsFile load_safetensors(const std::string& path) {
  constexpr const char* func = "load_safetensors";
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  const int err = errno;
  WEFT_CHECK(in.is_open(), io, func, "cannot open ", path, " for reading",
             err ? std::string(" (") + std::strerror(err) + ")" : std::string());
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  WEFT_CHECK(size >= 0, io, func, "cannot read the size of ", path);
  if (size > 0) {  // a directory opens and reports a bogus size on some file systems
    char c = 0;
    errno = 0;
    in.read(&c, 1);
    const int rerr = errno;
    WEFT_CHECK(in.gcount() == 1, io, func, "cannot read ", path,
               rerr ? std::string(" (") + std::strerror(rerr) + ")" : std::string());
    in.seekg(0, std::ios::beg);
  }
  SafetensorsFile f;
  f.source_ = path;
  f.buf_.resize(std::size_t(size));
  if (size > 0) in.read(reinterpret_cast<char*>(f.buf_.data()), std::streamsize(size));
  WEFT_CHECK(in.gcount() == std::streamsize(size), io, func, "read error in ", path, ": expected ", size,
             " bytes, got ", in.gcount());
  f.parse(func);
  return f;
}

/// Validates a safetensors file held in memory (copied; the source in messages is "<bytes>").
inline SafetensorsFile load_safetensors_bytes(const std::uint8_t* data, std::size_t size) {
  WEFT_CHECK(data != nullptr || size == 0, io, "load_safetensors_bytes", "expected a buffer, got nullptr with size ",
             size);
  SafetensorsFile f;
  f.source_ = "<bytes>";
  if (size) f.buf_.assign(data, data + size);
  f.parse("load_safetensors_bytes");
  return f;
}

/// A floating-point tensor to write as `dtype` (F16, BF16, F32 or F64; rounded to nearest even).
template <class T>
SafetensorsEntry safetensors_entry(std::string name, const Tensor<T>& t, SafetensorsDtype dtype) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "safetensors_entry writes Tensor<float> or Tensor<double> (complex has no safetensors dtype)");
  WEFT_CHECK(t.defined(), shape, "safetensors_entry", "expected a defined tensor for '", name, "', got an undefined one");
  WEFT_CHECK(is_floating(dtype), value, "safetensors_entry", "expected F16, BF16, F32 or F64 for the tensor '", name,
             "', got ", to_string(dtype));
  SafetensorsEntry e;
  e.dtype = dtype;
  e.shape.assign(t.shape().data(), t.shape().data() + t.rank());
  const std::size_t k = safetensors_itemsize(dtype);
  e.bytes.resize(std::size_t(t.numel()) * k);
  for (index_t i = 0; i < t.numel(); ++i) {
    std::uint8_t* p = e.bytes.data() + std::size_t(i) * k;
    const double x = double(t.data()[i]);
    if (dtype == SafetensorsDtype::F32) {
      const float f = float(t.data()[i]);
      std::memcpy(p, &f, 4);
    } else if (dtype == SafetensorsDtype::F64) {
      std::memcpy(p, &x, 8);
    } else {
      // float -> half rounds once from the exact double; double -> half also rounds once
      const std::uint16_t b = dtype == SafetensorsDtype::F16 ? detail::st_encode_small(x, 5, 10)
                                                             : detail::st_encode_small(x, 8, 7);
      std::memcpy(p, &b, 2);
    }
  }
  e.name = std::move(name);
  return e;
}

/// A floating-point tensor to write, as F32 (float) or F64 (double).
template <class T>
SafetensorsEntry safetensors_entry(std::string name, const Tensor<T>& t) {
  return safetensors_entry(std::move(name), t, std::is_same_v<T, float> ? SafetensorsDtype::F32 : SafetensorsDtype::F64);
}

/// Integer or BOOL values (row-major, shape any rank) to write as `dtype`; a value outside the
/// dtype's range (BOOL: 0 or 1) is a ValueError, a count that does not match the shape a ShapeError.
inline SafetensorsEntry safetensors_entry(std::string name, const std::vector<std::int64_t>& values,
                                          std::vector<index_t> shape, SafetensorsDtype dtype = SafetensorsDtype::I64) {
  constexpr const char* func = "safetensors_entry";
  WEFT_CHECK(!is_floating(dtype), value, func, "expected an integer or BOOL dtype for '", name, "', got ",
             to_string(dtype), " (write floating-point data from a Tensor)");
  std::uint64_t n = 0;
  WEFT_CHECK(detail::st_count(shape, n), shape, func, "expected extents >= 0 and at most 2^48 elements for '", name,
             "'");
  WEFT_CHECK(n == values.size(), shape, func, "expected ", n, " values for '", name, "', got ", values.size());
  static const std::int64_t lo[] = {0, 0, -128, -32768, 0, 0, 0, INT32_MIN, 0, 0, 0, INT64_MIN, 0};
  static const std::int64_t hi[] = {1, 255, 127, 32767, 65535, 0, 0, INT32_MAX, INT64_C(4294967295), 0, 0,
                                    INT64_MAX, INT64_MAX};
  const std::size_t k = safetensors_itemsize(dtype);
  SafetensorsEntry e;
  e.dtype = dtype;
  e.bytes.resize(values.size() * k);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::int64_t v = values[i];
    WEFT_CHECK(v >= lo[int(dtype)] && v <= hi[int(dtype)], value, func, "value ", v, " at element ", i, " of '",
               name, "' does not fit ", to_string(dtype));
    std::memcpy(e.bytes.data() + i * k, &v, k);  // the low bytes of a little-endian int64
  }
  e.name = std::move(name);
  e.shape = std::move(shape);
  return e;
}

namespace detail {

/// Checks the entries, sorts them as the reference does, and builds the padded header.
inline std::string st_prepare(const std::vector<SafetensorsEntry>& entries,
                              const std::map<std::string, std::string>& metadata, std::vector<std::size_t>& order,
                              const char* func) {
  std::set<std::string> seen;
  for (const SafetensorsEntry& e : entries) {
    WEFT_CHECK(e.name != "__metadata__", value, func, "'__metadata__' is reserved and cannot name a tensor");
    WEFT_CHECK(st_valid_utf8(e.name), value, func, "expected a UTF-8 tensor name, got one of ", e.name.size(),
               " bytes that is not");
    WEFT_CHECK(seen.insert(e.name).second, value, func, "duplicate tensor name '", e.name, "'");
    std::uint64_t n = 0;
    WEFT_CHECK(st_count(e.shape, n), shape, func, "expected extents >= 0 and at most 2^48 elements for '", e.name,
               "'");
    WEFT_CHECK(e.bytes.size() == n * safetensors_itemsize(e.dtype), shape, func, "expected ",
               n * safetensors_itemsize(e.dtype), " bytes for '", e.name, "' (", n, " elements of ", to_string(e.dtype),
               "), got ", e.bytes.size());
  }
  for (const auto& kv : metadata)
    WEFT_CHECK(st_valid_utf8(kv.first) && st_valid_utf8(kv.second), value, func,
               "expected UTF-8 metadata, got an invalid key or value for key of ", kv.first.size(), " bytes");
  order.resize(entries.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const SafetensorsEntry &x = entries[a], &y = entries[b];
    return x.dtype != y.dtype ? x.dtype > y.dtype : x.name < y.name;
  });
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    h["__metadata__"] = std::move(m);
  }
  std::uint64_t at = 0;
  for (std::size_t i : order) {
    const SafetensorsEntry& e = entries[i];
    nlohmann::ordered_json t = nlohmann::ordered_json::object();
    t["dtype"] = to_string(e.dtype);
    t["shape"] = nlohmann::ordered_json::array();
    for (index_t d : e.shape) t["shape"].push_back(std::uint64_t(d));
    t["data_offsets"] = nlohmann::ordered_json::array({at, at + e.bytes.size()});
    at += e.bytes.size();
    h[e.name] = std::move(t);
  }
  std::string s = h.dump();
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

}  // namespace detail

/// The bytes of a safetensors file holding `entries` (see the file comment for the layout).
inline std::vector<std::uint8_t> safetensors_bytes(const std::vector<SafetensorsEntry>& entries,
                                                   const std::map<std::string, std::string>& metadata = {}) {
  std::vector<std::size_t> order;
  const std::string h = detail::st_prepare(entries, metadata, order, "safetensors_bytes");
  const std::uint64_t n = h.size();
  std::size_t total = 8 + h.size();
  for (const SafetensorsEntry& e : entries) total += e.bytes.size();
  std::vector<std::uint8_t> out(total);
  std::memcpy(out.data(), &n, 8);
  std::copy(h.begin(), h.end(), out.begin() + 8);
  auto at = out.begin() + std::ptrdiff_t(8 + h.size());
  for (std::size_t i : order) at = std::copy(entries[i].bytes.begin(), entries[i].bytes.end(), at);
  return out;
}

/// Writes `entries` and `metadata` to `path` as a safetensors file. Bad entries (duplicate or
/// reserved names, byte counts that do not match the shape) are checked before the file is opened.
inline void save_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& entries,
                             const std::map<std::string, std::string>& metadata = {}) {
  constexpr const char* func = "save_safetensors";
  std::vector<std::size_t> order;
  const std::string h = detail::st_prepare(entries, metadata, order, func);
  errno = 0;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const int err = errno;
  WEFT_CHECK(out.is_open(), io, func, "cannot open ", path, " for writing",
             err ? std::string(" (") + std::strerror(err) + ")" : std::string());
  const std::uint64_t n = h.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(h.data(), std::streamsize(h.size()));
  for (std::size_t i : order)
    out.write(reinterpret_cast<const char*>(entries[i].bytes.data()), std::streamsize(entries[i].bytes.size()));
  out.close();
  WEFT_CHECK(!out.fail(), io, func, "write error on ", path);
}

WEFT_NAMESPACE_END
