// weft/core/io/npy.hpp - NumPy .npy files: save_npy, load_npy, npy_info, and int64 arrays;
// load_npy_stream / load_npy_int64_stream read the same bytes from a seekable std::istream.
//
// The format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
// the magic "\x93NUMPY", a major and minor version byte, the header length (2 bytes little
// endian in version 1.0, 4 bytes in 2.0 and 3.0), then a Python dict literal such as
//   {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and ended by '\n' so the data starts on a 64-byte boundary, then the raw
// elements. weft writes version 1.0 (2.0 if the header would not fit, which cannot happen for
// rank <= 4) with dtypes '<f4', '<f8', '<c8', '<c16' for float, double, complex<float>,
// complex<double>, and '<i8' for Int64Array. It reads versions 1.0, 2.0 and 3.0 (3.0 only
// allows a UTF-8 header) in C order, little endian, rank 0..4.
//
// load_npy<T> reads the data straight into the tensor's buffer. The dtype must be the one of
// T unless NpyLoadOptions::convert is set; then '<f4', '<f8' and '<i8' convert into any T
// (int64 beyond 2^24 / 2^53 rounds in float / double), and '<c8' / '<c16' into either complex
// type. Complex data never converts to a real T. Everything that goes wrong is an IoError
// naming the function and the file. Only little-endian hosts are supported.
#pragma once

#include <cerrno>
#include <complex>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <istream>
#include <string>
#include <type_traits>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/core/shape.hpp"
#include "weft/core/tensor.hpp"

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "weft's .npy reader and writer copy raw bytes and need a little-endian host");
#endif

WEFT_NAMESPACE_BEGIN

/// What a .npy header says: dtype as NumPy writes it ('<f8'), shape, order and format version.
struct NpyInfo {
  std::string dtype;
  Shape shape;
  bool fortran_order = false;
  int major_version = 1;
};

/// Options of load_npy.
struct NpyLoadOptions {
  bool convert = false;  ///< allow '<f4'/'<f8'/'<i8' -> any T and complex -> complex
};

/// An int64 array of rank 0..4 (labels, indices), stored as '<i8' in .npy files.
struct Int64Array {
  std::vector<std::int64_t> values;  ///< row-major, values.size() == shape.numel()
  Shape shape;
};

namespace detail {

template <class T>
constexpr const char* npy_descr() noexcept {
  if constexpr (std::is_same_v<T, float>) return "<f4";
  else if constexpr (std::is_same_v<T, double>) return "<f8";
  else if constexpr (std::is_same_v<T, std::complex<float>>) return "<c8";
  else if constexpr (std::is_same_v<T, std::complex<double>>) return "<c16";
  else return "<i8";
}
template <class T>
constexpr const char* npy_type_name() noexcept {
  if constexpr (std::is_same_v<T, float>) return "float";
  else if constexpr (std::is_same_v<T, double>) return "double";
  else if constexpr (std::is_same_v<T, std::complex<float>>) return "std::complex<float>";
  else return "std::complex<double>";
}
/// Bytes per element of the dtypes weft reads, 0 for anything else.
inline std::size_t npy_itemsize(const std::string& d) noexcept {
  if (d == "<f4") return 4;
  if (d == "<f8" || d == "<i8" || d == "<c8") return 8;
  if (d == "<c16") return 16;
  return 0;
}
constexpr const char* npy_supported = "'<f4', '<f8', '<c8', '<c16' (and '<i8' through "
                                      "load_npy_int64 or NpyLoadOptions::convert)";

inline std::string npy_errno_text(int err) {
  return err ? std::string(" (") + std::strerror(err) + ")" : std::string();
}

/// Printable form of the first bytes of a file, for the bad-magic message.
inline std::string npy_escape(const unsigned char* p, std::streamsize n) {
  static const char hex[] = "0123456789abcdef";
  std::string s = "\"";
  for (std::streamsize i = 0; i < n; ++i) {
    if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') s += char(p[i]);
    else s += std::string("\\x") + hex[p[i] >> 4] + hex[p[i] & 15];
  }
  return s + "\"";
}

/// Recursive-descent reader of the header dict (a tiny subset of Python literals).
class NpyDictParser {
 public:
  NpyDictParser(const std::string& s, const std::string& path, const char* func)
      : s_(s), path_(path), func_(func) {}

  NpyInfo parse() {
    NpyInfo info;
    bool has_descr = false, has_order = false, has_shape = false;
    expect('{', "'{' at the start");
    while (!eat('}')) {
      std::string key = str();
      expect(':', "':' after a key");
      if (key == "descr") {
        ws();
        if (i_ < s_.size() && (s_[i_] == '[' || s_[i_] == '('))
          detail::fail(ErrorKind::io, func_, "unsupported dtype in ", path_,
                       ": structured dtypes are not supported; supported are ", npy_supported);
        info.dtype = str();
        has_descr = true;
      } else if (key == "fortran_order") {
        info.fortran_order = boolean();
        has_order = true;
      } else if (key == "shape") {
        info.shape = shape();
        has_shape = true;
      } else {
        bad("unexpected key '" + key + "'");
      }
      if (eat(',')) continue;
      expect('}', "',' or '}' after a value");
      break;
    }
    ws();
    if (i_ != s_.size()) bad("unexpected text after the dict");
    if (!has_descr) bad("missing key 'descr'");
    if (!has_order) bad("missing key 'fortran_order'");
    if (!has_shape) bad("missing key 'shape'");
    return info;
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    detail::fail(ErrorKind::io, func_, "malformed .npy header in ", path_, ": ", what,
                 ", in \"", s_.substr(0, s_.find_last_not_of(" \n") + 1), "\"");
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r'))
      ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  void expect(char c, const char* what) {
    if (!eat(c)) bad(std::string("expected ") + what);
  }
  std::string str() {
    ws();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) bad("expected a quoted string");
    const char q = s_[i_++];
    const std::size_t b = i_;
    while (i_ < s_.size() && s_[i_] != q) ++i_;
    if (i_ >= s_.size()) bad("unterminated string");
    return s_.substr(b, i_++ - b);
  }
  bool boolean() {
    ws();
    if (s_.compare(i_, 4, "True") == 0) return i_ += 4, true;
    if (s_.compare(i_, 5, "False") == 0) return i_ += 5, false;
    bad("expected True or False for 'fortran_order'");
  }
  Shape shape() {
    expect('(', "a tuple for 'shape'");
    const std::size_t start = i_ - 1;
    index_t dims[Shape::max_rank];
    int rank = 0;
    while (!eat(')')) {
      if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9')
        bad("expected a non-negative integer in 'shape'");
      std::uint64_t v = 0;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
        v = v * 10 + std::uint64_t(s_[i_++] - '0');
        if (v > (std::uint64_t(1) << 48)) bad("shape extent too large");
      }
      if (i_ < s_.size() && s_[i_] == 'L') ++i_;  // Python 2 longs: (3L, 4L)
      if (rank == Shape::max_rank)
        detail::fail(ErrorKind::io, func_, "expected an array of rank 0..4 in ", path_,
                     ", got shape ", s_.substr(start, s_.find(')', start) + 1 - start),
                     " (weft tensors have at most 4 axes)");
      dims[rank++] = index_t(v);
      std::uint64_t n = 1;  // the element count must fit before a Shape is built
      for (int k = 0; k < rank; ++k) {
        const std::uint64_t d = std::uint64_t(dims[k]);
        if (d != 0 && n > (std::uint64_t(1) << 48) / d) {
          detail::fail(ErrorKind::io, func_, "shape ", s_.substr(start, s_.find(')', start) + 1 - start), " in ",
                       path_, " is too large");
        }
        n *= d;
      }
      if (eat(',')) continue;
      expect(')', "',' or ')' in 'shape'");
      break;
    }
    return Shape::from(dims, rank);
  }

  const std::string& s_;
  const std::string& path_;
  const char* func_;
  std::size_t i_ = 0;
};

/// The parsed header plus where the data starts and how many bytes follow it.
struct NpyHeader {
  NpyInfo info;
  std::uint64_t data_offset = 0;
  std::uint64_t data_bytes = 0;  // bytes in the file after the header
};

inline std::ifstream npy_open(const std::string& path, const char* func) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  const int err = errno;
  WEFT_CHECK(in.is_open(), io, func, "cannot open ", path, " for reading", npy_errno_text(err));
  return in;
}

/// Reads magic, version and header dict; leaves `in` at the first data byte.
inline NpyHeader npy_read_header(std::istream& in, const std::string& path, const char* func) {
  in.seekg(0, std::ios::end);
  const std::uint64_t size = std::uint64_t(in.tellg());
  in.seekg(0, std::ios::beg);
  unsigned char pre[8] = {};
  in.read(reinterpret_cast<char*>(pre), 8);
  const std::streamsize got = in.gcount();
  WEFT_CHECK(got >= 6 && std::memcmp(pre, "\x93NUMPY", 6) == 0, io, func,
             "expected a .npy file starting with \"\\x93NUMPY\", got ",
             got > 0 ? npy_escape(pre, got < 6 ? got : 6) : "no bytes (empty or unreadable file)",
             " at the start of ", path);
  WEFT_CHECK(got == 8, io, func, "truncated header in ", path, ": the file ends after ", got,
             " bytes");
  const int major = pre[6], minor = pre[7];
  WEFT_CHECK(major >= 1 && major <= 3 && minor == 0, io, func, "unsupported .npy format version ",
             major, ".", minor, " in ", path, " (weft reads 1.0, 2.0 and 3.0)");
  const std::streamsize len_bytes = major == 1 ? 2 : 4;
  unsigned char lb[4] = {};
  in.read(reinterpret_cast<char*>(lb), len_bytes);
  WEFT_CHECK(in.gcount() == len_bytes, io, func, "truncated header in ", path,
             ": the file ends inside the header length");
  std::uint64_t hlen = 0;
  for (std::streamsize k = len_bytes; k-- > 0;) hlen = hlen << 8 | lb[k];
  NpyHeader h;
  h.data_offset = 8 + std::uint64_t(len_bytes) + hlen;
  WEFT_CHECK(h.data_offset <= size, io, func, "truncated header in ", path, ": expected ", hlen,
             " header bytes, got ", size - 8 - std::uint64_t(len_bytes));
  std::string text(std::size_t(hlen), '\0');
  if (hlen) in.read(&text[0], std::streamsize(hlen));
  WEFT_CHECK(in.good(), io, func, "read error in the header of ", path);
  h.info = NpyDictParser(text, path, func).parse();
  h.info.major_version = major;
  h.data_bytes = size - h.data_offset;
  return h;
}

/// Checks order and data size against the file; returns the element count.
inline index_t npy_check_data(const NpyHeader& h, std::size_t itemsize, const std::string& path,
                              const char* func) {
  WEFT_CHECK(!h.info.fortran_order, io, func, "expected a C-order array in ", path,
             ", got fortran_order True (weft tensors are row-major; save "
             "np.ascontiguousarray(a) instead)");
  std::uint64_t n = 1;
  for (int k = 0; k < h.info.shape.rank(); ++k) {
    const std::uint64_t d = std::uint64_t(h.info.shape[k]);
    WEFT_CHECK(d == 0 || n <= (std::uint64_t(1) << 48) / d, io, func, "shape ", h.info.shape,
               " in ", path, " is too large");
    n *= d;
  }
  const std::uint64_t need = n * itemsize;
  WEFT_CHECK(h.data_bytes >= need, io, func, "truncated data in ", path, ": expected ", need,
             " bytes for shape ", h.info.shape, " of dtype '", h.info.dtype, "', got ",
             h.data_bytes);
  WEFT_CHECK(h.data_bytes == need, io, func, "expected ", need, " data bytes for shape ",
             h.info.shape, " of dtype '", h.info.dtype, "' in ", path, ", got ", h.data_bytes,
             " (", h.data_bytes - need, " trailing bytes)");
  return index_t(n);
}

inline void npy_read_raw(std::istream& in, void* dst, std::size_t bytes, const std::string& path,
                         const char* func) {
  if (bytes == 0) return;
  in.read(static_cast<char*>(dst), std::streamsize(bytes));
  WEFT_CHECK(std::size_t(in.gcount()) == bytes, io, func, "read error in ", path, ": expected ",
             bytes, " data bytes, got ", in.gcount());
}

/// Reads n elements of type Src and converts them into out[0..n), a chunk at a time.
template <class Src, class Dst>
void npy_read_convert(std::istream& in, Dst* out, index_t n, const std::string& path,
                      const char* func) {
  constexpr index_t chunk = 8192;
  std::vector<Src> buf(std::size_t(n < chunk ? n : chunk));
  for (index_t i = 0; i < n; i += chunk) {
    const index_t m = n - i < chunk ? n - i : chunk;
    npy_read_raw(in, buf.data(), std::size_t(m) * sizeof(Src), path, func);
    for (index_t k = 0; k < m; ++k) {
      if constexpr (is_complex_v<Src>)
        out[i + k] = Dst(real_t<Dst>(buf[std::size_t(k)].real()),
                         real_t<Dst>(buf[std::size_t(k)].imag()));
      else
        out[i + k] = Dst(static_cast<real_t<Dst>>(buf[std::size_t(k)]));
    }
  }
}

/// Writes magic, version, padded header and the raw bytes of the data.
inline void npy_write(const std::string& path, const char* descr, const Shape& shape,
                      const void* data, std::size_t bytes, const char* func) {
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  for (int k = 0; k < shape.rank(); ++k)
    dict += (k ? ", " : "") + std::to_string(shape[k]);
  dict += shape.rank() == 1 ? ",), }" : "), }";
  int major = 1;
  std::size_t prefix = 10;  // magic (6) + version (2) + header length (2)
  std::size_t hlen = dict.size() + 1 + (64 - (prefix + dict.size() + 1) % 64) % 64;
  if (hlen > 65535) {
    major = 2, prefix = 12;
    hlen = dict.size() + 1 + (64 - (prefix + dict.size() + 1) % 64) % 64;
  }
  dict.resize(hlen - 1, ' ');
  dict += '\n';
  errno = 0;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const int err = errno;
  WEFT_CHECK(out.is_open(), io, func, "cannot open ", path, " for writing", npy_errno_text(err));
  char pre[12] = {'\x93', 'N', 'U', 'M', 'P', 'Y', char(major), 0};
  for (std::size_t k = 8; k < prefix; ++k) pre[k] = char((hlen >> (8 * (k - 8))) & 0xff);
  out.write(pre, std::streamsize(prefix));
  out.write(dict.data(), std::streamsize(dict.size()));
  if (bytes) out.write(static_cast<const char*>(data), std::streamsize(bytes));
  out.close();
  WEFT_CHECK(!out.fail(), io, func, "write error on ", path);
}

}  // namespace detail

/// Writes `t` to `path` as a C-order .npy file (dtype '<f4', '<f8', '<c8' or '<c16').
/// Raises ShapeError for an undefined tensor and IoError when the file cannot be written.
template <class T>
void save_npy(const std::string& path, const Tensor<T>& t) {
  WEFT_CHECK(t.defined(), shape, "save_npy", "expected a defined tensor, got an undefined one");
  detail::npy_write(path, detail::npy_descr<T>(), t.shape(), t.data(),
                    std::size_t(t.numel()) * sizeof(T), "save_npy");
}

/// Writes an int64 array as '<i8'. Raises ShapeError when values.size() != shape.numel().
inline void save_npy(const std::string& path, const Int64Array& a) {
  WEFT_CHECK(index_t(a.values.size()) == a.shape.numel(), shape, "save_npy", "expected ",
             a.shape.numel(), " values for shape ", a.shape, ", got ", a.values.size());
  detail::npy_write(path, "<i8", a.shape, a.values.data(), a.values.size() * 8, "save_npy");
}

/// The header of a .npy file, whatever its dtype and order (rank must be 0..4).
inline NpyInfo npy_info(const std::string& path) {
  std::ifstream in = detail::npy_open(path, "npy_info");
  return detail::npy_read_header(in, path, "npy_info").info;
}

namespace detail {

template <class T>
Tensor<T> load_npy_impl(std::istream& in, const std::string& path, const NpyLoadOptions& opts,
                        const char* func) {
  const detail::NpyHeader h = detail::npy_read_header(in, path, func);
  const std::string& d = h.info.dtype;
  const std::size_t itemsize = detail::npy_itemsize(d);
  WEFT_CHECK(d.empty() || d[0] != '>', io, func, "big-endian dtype '", d, "' in ", path,
             " is not supported (weft reads little-endian data); supported dtypes are ",
             detail::npy_supported);
  WEFT_CHECK(itemsize != 0, io, func, "unsupported dtype '", d, "' in ", path,
             "; supported dtypes are ", detail::npy_supported);
  const bool exact = d == detail::npy_descr<T>();
  const bool src_complex = d[1] == 'c';
  WEFT_CHECK(exact || opts.convert, io, func, "expected dtype '", detail::npy_descr<T>(),
             "' for Tensor<", detail::npy_type_name<T>(), ">, got '", d, "' in ", path,
             " (pass NpyLoadOptions with convert = true to convert)");
  WEFT_CHECK(!src_complex || is_complex_v<T>, io, func, "cannot convert complex dtype '", d,
             "' in ", path, " to Tensor<", detail::npy_type_name<T>(),
             ">: load it as complex and take the real part");
  const index_t n = detail::npy_check_data(h, itemsize, path, func);
  Tensor<T> t(h.info.shape);
  if (exact) {
    detail::npy_read_raw(in, t.data(), std::size_t(n) * sizeof(T), path, func);
  } else if (d == "<f4") {
    detail::npy_read_convert<float>(in, t.data(), n, path, func);
  } else if (d == "<f8") {
    detail::npy_read_convert<double>(in, t.data(), n, path, func);
  } else if (d == "<i8") {
    detail::npy_read_convert<std::int64_t>(in, t.data(), n, path, func);
  } else if constexpr (is_complex_v<T>) {
    if (d == "<c8") detail::npy_read_convert<std::complex<float>>(in, t.data(), n, path, func);
    else detail::npy_read_convert<std::complex<double>>(in, t.data(), n, path, func);
  }
  return t;
}

inline Int64Array load_npy_int64_impl(std::istream& in, const std::string& path, const char* func) {
  const detail::NpyHeader h = detail::npy_read_header(in, path, func);
  WEFT_CHECK(h.info.dtype == "<i8", io, func, "expected dtype '<i8' in ", path, ", got '",
             h.info.dtype, "' (use load_npy<T> for floating-point data)");
  Int64Array a;
  a.shape = h.info.shape;
  a.values.resize(std::size_t(detail::npy_check_data(h, 8, path, func)));
  detail::npy_read_raw(in, a.values.data(), a.values.size() * 8, path, func);
  return a;
}

}  // namespace detail

/// Loads a C-order .npy file into a new tensor (see the file comment for dtypes and convert).
template <class T>
Tensor<T> load_npy(const std::string& path, const NpyLoadOptions& opts = {}) {
  std::ifstream in = detail::npy_open(path, "load_npy");
  return detail::load_npy_impl<T>(in, path, opts, "load_npy");
}

/// load_npy from a seekable binary stream holding a whole .npy file (an std::istringstream of
/// bytes received over a network, an archive member). `source_name` names the stream in error
/// messages. Raises IoError as load_npy does.
template <class T>
Tensor<T> load_npy_stream(std::istream& in, const NpyLoadOptions& opts = {},
                          const std::string& source_name = "<stream>") {
  return detail::load_npy_impl<T>(in, source_name, opts, "load_npy_stream");
}

/// Loads a C-order '<i8' .npy file (labels, indices). Raises IoError for any other dtype.
inline Int64Array load_npy_int64(const std::string& path) {
  std::ifstream in = detail::npy_open(path, "load_npy_int64");
  return detail::load_npy_int64_impl(in, path, "load_npy_int64");
}

/// load_npy_int64 from a seekable binary stream holding a whole .npy file.
inline Int64Array load_npy_int64_stream(std::istream& in,
                                        const std::string& source_name = "<stream>") {
  return detail::load_npy_int64_impl(in, source_name, "load_npy_int64_stream");
}

WEFT_NAMESPACE_END
