// weft/core/shape.hpp - Shape: rank 0..4 extents of a row-major tensor.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <string>

#include "weft/core/error.hpp"

WEFT_NAMESPACE_BEGIN

/// Signed index type used for extents and element offsets (same as Eigen::Index).
using index_t = std::ptrdiff_t;

/// Extents of a tensor of rank 0..4. Rank 0 is a scalar (one element). Extents are >= 0.
class Shape {
 public:
  static constexpr int max_rank = 4;

  constexpr Shape() noexcept = default;
  Shape(std::initializer_list<index_t> dims) {
    WEFT_CHECK(dims.size() <= std::size_t(max_rank), shape, "Shape",
               "expected at most 4 dimensions, got ", dims.size());
    for (index_t d : dims) {
      WEFT_CHECK(d >= 0, shape, "Shape", "expected non-negative extents, got ", d);
      dims_[std::size_t(rank_++)] = d;
      check_numel("Shape");
    }
  }
  /// From an array of `rank` extents.
  static Shape from(const index_t* dims, int rank) {
    WEFT_CHECK(rank >= 0 && rank <= max_rank, shape, "Shape::from",
               "expected rank in 0..4, got ", rank);
    Shape s;
    for (int i = 0; i < rank; ++i) {
      WEFT_CHECK(dims[i] >= 0, shape, "Shape::from", "expected non-negative extents, got ",
                 dims[i]);
      s.dims_[std::size_t(i)] = dims[i];
    }
    s.rank_ = rank;
    s.check_numel("Shape::from");
    return s;
  }

  int rank() const noexcept { return rank_; }
  /// Extent of axis i; negative i counts from the end (-1 is the last axis).
  index_t operator[](int i) const {
    return dims_[std::size_t(normalize_axis(i, "Shape::operator[]"))];
  }
  index_t numel() const noexcept {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[std::size_t(i)];
    return n;
  }
  const index_t* data() const noexcept { return dims_.data(); }
  /// Extent of the last axis (1 for a scalar).
  index_t last() const noexcept { return rank_ ? dims_[std::size_t(rank_ - 1)] : 1; }
  /// Product of all extents but the last (1 for rank <= 1).
  index_t leading() const noexcept {
    index_t n = 1;  // not numel() / last(): that is 0 for a (3, 0) shape
    for (int i = 0; i + 1 < rank_; ++i) n *= dims_[std::size_t(i)];
    return n;
  }

  /// Row-major stride of axis i, in elements.
  index_t stride(int i) const {
    int a = normalize_axis(i, "Shape::stride");
    index_t s = 1;
    for (int k = a + 1; k < rank_; ++k) s *= dims_[std::size_t(k)];
    return s;
  }

  /// Maps a possibly negative axis to 0..rank-1, or raises ShapeError naming `func`.
  int normalize_axis(int axis, const char* func) const {
    int a = axis < 0 ? axis + rank_ : axis;
    WEFT_CHECK(a >= 0 && a < rank_, shape, func, "expected an axis in [", -rank_, ", ", rank_,
               ") for shape ", to_string(), ", got ", axis);
    return a;
  }

  /// The same shape with axis i set to n.
  Shape with(int i, index_t n) const {
    WEFT_CHECK(n >= 0, shape, "Shape::with", "expected a non-negative extent, got ", n);
    Shape s = *this;
    s.dims_[std::size_t(normalize_axis(i, "Shape::with"))] = n;
    s.check_numel("Shape::with");
    return s;
  }

  friend bool operator==(const Shape& a, const Shape& b) noexcept {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[std::size_t(i)] != b.dims_[std::size_t(i)]) return false;
    return true;
  }
  friend bool operator!=(const Shape& a, const Shape& b) noexcept { return !(a == b); }

  /// "(3, 4)"; a scalar prints as "()".
  std::string to_string() const {
    std::ostringstream os;
    os << '(';
    for (int i = 0; i < rank_; ++i) os << (i ? ", " : "") << dims_[std::size_t(i)];
    os << ')';
    return os.str();
  }
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.to_string(); }

 private:
  /// The product of the extents must fit index_t (numel() is computed without checks).
  void check_numel(const char* func) const {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) {
      const index_t d = dims_[std::size_t(i)];
      WEFT_CHECK(d == 0 || n <= PTRDIFF_MAX / d, shape, func, "expected a number of elements that fits ",
                 "a signed 64-bit index, got extents ", to_string());
      n *= d;
    }
  }
  std::array<index_t, max_rank> dims_{};
  int rank_ = 0;
};

WEFT_NAMESPACE_END
