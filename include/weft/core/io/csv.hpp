// weft/core/io/csv.hpp - read_csv / write_csv: numeric text tables to and from rank-2 tensors.
//
// The reader takes plain numeric tables (no quoting, no missing values): one row per line,
// fields split by a delimiter (',' by default) or, with CsvOptions::whitespace, by any run of
// spaces and tabs. Blank lines are skipped, CRLF line ends are accepted, and spaces or tabs
// around a field are ignored. Numbers are parsed with std::strtod / std::strtof, so everything
// they accept is accepted: decimal and hexadecimal floats, "nan", "inf", "infinity" (any case),
// and values out of range become +-inf or 0 as strtod returns them. strtod follows the C
// locale of the process (LC_NUMERIC): a program that calls setlocale() with a locale whose
// decimal point is ',' reads "1,5" differently; weft itself never changes the locale.
// Every failure is a weft::IoError naming the function, the file and the line (and column).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <istream>
#include <limits>
#include <locale>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN

/// How read_csv splits a file into rows and fields.
struct CsvOptions {
  char delimiter = ',';     ///< the field separator (ignored when `whitespace` is true)
  bool whitespace = false;  ///< any run of spaces/tabs separates fields (space-separated files)
  bool header = false;      ///< skip the first non-empty line
};

namespace detail {

inline bool csv_is_blank(char c) noexcept { return c == ' ' || c == '\t'; }

/// Splits `line` into fields (pairs of [begin, end) offsets), trimming spaces and tabs.
inline void csv_split(const std::string& line, const CsvOptions& opts,
                      std::vector<std::pair<std::size_t, std::size_t>>& fields) {
  fields.clear();
  const std::size_t n = line.size();
  if (opts.whitespace) {
    std::size_t i = 0;
    while (true) {
      while (i < n && csv_is_blank(line[i])) ++i;
      if (i == n) break;
      std::size_t b = i;
      while (i < n && !csv_is_blank(line[i])) ++i;
      fields.emplace_back(b, i);
    }
    return;
  }
  std::size_t b = 0;
  while (true) {
    std::size_t e = line.find(opts.delimiter, b);
    if (e == std::string::npos) e = n;
    std::size_t fb = b, fe = e;
    while (fb < fe && csv_is_blank(line[fb])) ++fb;
    while (fe > fb && csv_is_blank(line[fe - 1])) --fe;
    fields.emplace_back(fb, fe);
    if (e == n) break;
    b = e + 1;
  }
}

/// Parses the whole of `text` as a number; false if anything is left over or nothing parsed.
template <class T>
bool csv_parse_number(const std::string& text, T& out) {
  if (text.empty()) return false;
  const char* s = text.c_str();
  char* end = nullptr;
  if constexpr (std::is_same_v<T, float>)
    out = std::strtof(s, &end);
  else
    out = static_cast<T>(std::strtod(s, &end));
  return end == s + text.size();
}

template <class T>
Tensor<T> read_csv_impl(std::istream& in, const CsvOptions& opts, const std::string& source,
                        const char* func) {
  static_assert(!is_complex_v<T>,
                "weft::read_csv reads real numbers only: use T = float or double and build a "
                "complex tensor from the columns yourself");
  WEFT_CHECK(opts.whitespace || (opts.delimiter != '\n' && opts.delimiter != '\r'), config, func,
             "expected a delimiter other than a line break, got code ", int(opts.delimiter));
  std::vector<T> values;
  std::vector<std::pair<std::size_t, std::size_t>> fields;
  std::string line, text;
  index_t rows = 0, cols = 0, line_no = 0, first_line = 0;
  bool header_pending = opts.header;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank line
    if (header_pending) {
      header_pending = false;
      continue;
    }
    csv_split(line, opts, fields);
    if (rows == 0) {
      cols = index_t(fields.size());
      first_line = line_no;
    }
    WEFT_CHECK(index_t(fields.size()) == cols, io, func, "expected ", cols, " fields (as on line ",
               first_line, "), got ", fields.size(), " on line ", line_no, " of ", source);
    for (std::size_t f = 0; f < fields.size(); ++f) {
      text.assign(line, fields[f].first, fields[f].second - fields[f].first);
      T v{};
      WEFT_CHECK(csv_parse_number(text, v), io, func, "expected a number at line ", line_no,
                 ", column ", f + 1, " of ", source, ", got \"", text, "\"");
      values.push_back(v);
    }
    ++rows;
  }
  WEFT_CHECK(!in.bad(), io, func, "read error in ", source, " after line ", line_no);
  WEFT_CHECK(rows > 0, io, func, "expected at least one data row, got none in ", source,
             opts.header ? " (the header line is not counted)" : "");
  Tensor<T> t(Shape{rows, cols});
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

inline std::string errno_text(int err) {
  return err ? std::string(" (") + std::strerror(err) + ")" : std::string();
}

}  // namespace detail

/// Reads a numeric table from a stream into a rows x cols tensor (see the file comment for the
/// accepted syntax). `source_name` names the stream in error messages. Raises IoError.
template <class T>
Tensor<T> read_csv_stream(std::istream& in, const CsvOptions& opts = {},
                          const std::string& source_name = "<stream>") {
  return detail::read_csv_impl<T>(in, opts, source_name, "read_csv_stream");
}

/// Reads the numeric table in file `path` into a rows x cols tensor. T is float or double.
/// Raises IoError when the file cannot be opened, has no data rows, holds a field that is not
/// a number, or has rows of different lengths; the message names the file and the line.
template <class T>
Tensor<T> read_csv(const std::string& path, const CsvOptions& opts = {}) {
  errno = 0;
  std::ifstream in(path);
  int err = errno;
  WEFT_CHECK(in.is_open(), io, "read_csv", "cannot open ", path, " for reading",
             detail::errno_text(err));
  return detail::read_csv_impl<T>(in, opts, path, "read_csv");
}

/// Writes a rank-1 tensor (one column) or a rank-2 tensor (rows x cols) as comma-separated
/// text, with enough digits (max_digits10) that read_csv gives back the same values, NaN and
/// Inf included. A non-empty `header` is written as the first line and must have one name per
/// column (ShapeError otherwise); names may not contain ',', '\n' or '\r' (ValueError).
/// Raises IoError when the file cannot be written.
template <class T>
void write_csv(const std::string& path, const Tensor<T>& t,
               const std::vector<std::string>& header = {}) {
  static_assert(!is_complex_v<T>,
                "weft::write_csv writes real numbers only: write real() and imag() as columns");
  WEFT_CHECK(t.defined() && (t.rank() == 1 || t.rank() == 2), shape, "write_csv",
             "expected a rank-1 or rank-2 tensor, got shape ", t.shape());
  const index_t rows = t.dim(0), cols = t.rank() == 2 ? t.dim(1) : 1;
  WEFT_CHECK(header.empty() || index_t(header.size()) == cols, shape, "write_csv", "expected ",
             cols, " header names (one per column), got ", header.size());
  for (const std::string& h : header)
    WEFT_CHECK(h.find_first_of(",\r\n") == std::string::npos, value, "write_csv",
               "expected header names without ',' or line breaks, got \"", h, "\"");
  errno = 0;
  std::ofstream out(path, std::ios::out | std::ios::trunc);
  int err = errno;
  WEFT_CHECK(out.is_open(), io, "write_csv", "cannot open ", path, " for writing",
             detail::errno_text(err));
  out.imbue(std::locale::classic());
  out.precision(std::numeric_limits<T>::max_digits10);
  for (std::size_t c = 0; c < header.size(); ++c) out << (c ? "," : "") << header[c];
  if (!header.empty()) out << '\n';
  const T* p = t.data();
  for (index_t r = 0; r < rows; ++r) {
    for (index_t c = 0; c < cols; ++c) {
      if (c) out << ',';
      out << p[r * cols + c];
    }
    out << '\n';
  }
  out.close();
  WEFT_CHECK(!out.fail(), io, "write_csv", "write error on ", path);
}

WEFT_NAMESPACE_END
