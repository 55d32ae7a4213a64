// weft/core/data.hpp - small labelled data sets: Dataset, data_path, load_digits, splits.
//
// A Dataset holds features x (rows on the leading axis, usually rows x features) and one
// integer class label per row. The data files themselves live in weft's data/ folder, whose
// README.md gives the provenance and layout of each file; data_path() finds them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/core/io/csv.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN

/// Features x (row i is sample i) and class labels y (y.size() == x.dim(0)).
template <class T>
struct Dataset {
  Tensor<T> x;
  std::vector<int> y;

  /// Number of samples (rows of x; 0 for an undefined x).
  index_t size() const { return x.defined() && x.rank() >= 1 ? x.dim(0) : 0; }
  /// Number of features per sample (product of the trailing extents of x; 0 if undefined).
  index_t features() const {
    if (!x.defined() || x.rank() == 0) return 0;
    index_t f = 1;
    for (int k = 1; k < x.rank(); ++k) f *= x.dim(k);
    return f;
  }
};

/// Resolves the data file `file`, searching in this order and returning the first that exists:
///   1. the directory in the environment variable WEFT_DATA_DIR, if it is set and not empty;
///   2. the directory in the macro WEFT_DATA_DIR, if defined when this header is compiled. The
///      weft::weft CMake target defines it: as <prefix>/share/weft/data, where `cmake --install`
///      puts the shipped data sets, for find_package(weft) users; as the source tree's data/ for
///      add_subdirectory / FetchContent users and weft's own programs. Like every WEFT_* macro
///      it must be the same in all translation units of a program;
///   3. "data" relative to the working directory.
/// Raises IoError naming every place searched when none holds the file.
inline std::string data_path(const std::string& file) {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("WEFT_DATA_DIR"))
    if (*env) dirs.emplace_back(env);
#ifdef WEFT_DATA_DIR
  dirs.emplace_back(WEFT_DATA_DIR);
#endif
  dirs.emplace_back("data");
  std::string searched;
  for (const std::string& d : dirs) {
    const std::string p = (std::filesystem::path(d) / file).string();
    std::error_code ec;
    if (std::filesystem::is_regular_file(p, ec)) return p;
    searched += (searched.empty() ? "" : ", ") + p;
  }
  detail::fail(ErrorKind::io, "data_path", "expected to find ", file, ", got no such file at ",
               searched, " (set the environment variable WEFT_DATA_DIR to the folder holding it)");
}

namespace detail {
template <class T>
void check_dataset(const Dataset<T>& d, const char* func) {
  WEFT_CHECK(d.x.defined() && d.x.rank() >= 1, shape, func,
             "expected a dataset whose x has rank >= 1, got shape ", d.x.shape());
  WEFT_CHECK(index_t(d.y.size()) == d.size(), shape, func, "expected one label per row (", d.size(),
             "), got ", d.y.size());
}
}  // namespace detail

/// The UCI optical recognition of handwritten digits test set as bundled with scikit-learn:
/// 1797 rows of 64 pixel values (8x8 image, row-major, integers 0..16, kept raw) followed by
/// the class 0..9. Returns x as rows x 64 and y as the classes. T is float or double.
/// Raises IoError if the file is not a 65-column numeric table or a class is not an integer
/// in 0..9 (the message names the data row, 1-based, and the file).
template <class T>
Dataset<T> load_digits(const std::string& path = data_path("digits.csv")) {
  const Tensor<T> raw = read_csv<T>(path);
  WEFT_CHECK(raw.dim(1) == 65, io, "load_digits",
             "expected 65 columns (64 pixels and the class) in ", path, ", got ", raw.dim(1));
  Dataset<T> d;
  d.x = raw.slice(1, 0, 64);
  d.y.resize(std::size_t(raw.dim(0)));
  for (index_t i = 0; i < raw.dim(0); ++i) {
    const T v = raw(i, index_t(64));
    WEFT_CHECK(v >= T(0) && v <= T(9) && std::floor(v) == v, io, "load_digits",
               "expected an integer class 0..9 in the last column of ", path, ", got ", v,
               " in data row ", i + 1);
    d.y[std::size_t(i)] = int(v);
  }
  return d;
}

/// The rows `rows` of d, in that order (repeats allowed), copied into a new dataset.
/// Raises ShapeError for a row index outside [0, d.size()).
template <class T>
Dataset<T> subset(const Dataset<T>& d, const std::vector<index_t>& rows) {
  detail::check_dataset(d, "subset");
  const index_t n = d.size(), stride = d.features();
  for (index_t r : rows)
    WEFT_CHECK(r >= 0 && r < n, shape, "subset", "expected row indices in [0, ", n, "), got ", r);
  Dataset<T> out;
  out.x = Tensor<T>(d.x.shape().with(0, index_t(rows.size())));
  out.y.reserve(rows.size());
  T* dst = out.x.data();
  for (index_t r : rows) {
    std::copy(d.x.data() + r * stride, d.x.data() + (r + 1) * stride, dst);
    dst += stride;
    out.y.push_back(d.y[std::size_t(r)]);
  }
  return out;
}

/// Deterministic split: row i goes to test iff i % k == r, else to train. Returns
/// (train, test), both in the original row order. Needs k >= 2 and 0 <= r < k (ValueError).
/// For digits, split_mod(d, 5, 0) gives 1437 train and 360 test rows.
template <class T>
std::pair<Dataset<T>, Dataset<T>> split_mod(const Dataset<T>& d, index_t k, index_t r) {
  WEFT_CHECK(k >= 2, value, "split_mod", "expected k >= 2, got ", k);
  WEFT_CHECK(r >= 0 && r < k, value, "split_mod", "expected 0 <= r < k = ", k, ", got r = ", r);
  detail::check_dataset(d, "split_mod");
  std::vector<index_t> train, test;
  for (index_t i = 0; i < d.size(); ++i) (i % k == r ? test : train).push_back(i);
  return {subset(d, train), subset(d, test)};
}

WEFT_NAMESPACE_END
