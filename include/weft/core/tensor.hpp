// weft/core/tensor.hpp - Tensor<T>: contiguous row-major storage of rank 0..4 with Eigen views.
//
// Semantics (documented in docs/tensor.md):
// - A Tensor is a handle, like a NumPy array or a torch::Tensor: copying a Tensor shares its
//   elements. clone() makes a deep copy. The storage lives as long as any handle to it.
// - Storage is always contiguous and row-major, so every tensor is also an Eigen map.
//   Views share storage: reshape(), rows(b, e) and operator[](i) (both on the leading axis)
//   and view(ptr, shape) over foreign memory. Everything that would need strides returns a
//   copy instead: slice() on any axis, transpose(), permute-like calls.
// - Buffers a Tensor allocates are aligned to WEFT_ALIGNMENT (64) bytes and zero-initialised.
//   Views into other memory may be unaligned, so the Eigen maps are declared Unaligned.
// - const restricts access through that handle: a const Tensor& gives read-only elements and
//   read-only maps. Like any handle, a view or copy of it is a new, writable handle to the same
//   elements (as with a const std::shared_ptr); clone() when you need an independent copy.
// - T is float, double, std::complex<float> or std::complex<double>.
#pragma once

#include "weft/core/detail/eigen.hpp"
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <ostream>
#include <type_traits>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/core/shape.hpp"

WEFT_NAMESPACE_BEGIN

template <class T>
struct is_complex : std::false_type {};
template <class T>
struct is_complex<std::complex<T>> : std::true_type {};
template <class T>
inline constexpr bool is_complex_v = is_complex<T>::value;

/// The real type underlying T (T itself for real T).
template <class T>
struct real_type {
  using type = T;
};
template <class T>
struct real_type<std::complex<T>> {
  using type = T;
};
template <class T>
using real_t = typename real_type<T>::type;

/// X in a non-deduced context (C++20's std::type_identity_t): a function parameter of this type
/// takes its template argument from the other parameters and converts what it is given.
template <class X>
struct non_deduced {
  using type = X;
};
template <class X>
using non_deduced_t = typename non_deduced<X>::type;

template <class T>
inline constexpr bool is_supported_scalar_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> ||
    std::is_same_v<T, std::complex<float>> || std::is_same_v<T, std::complex<double>>;

/// Real part for complex scalars, the value itself for real ones (used for comparisons).
template <class T>
inline real_t<T> real_part(const T& x) noexcept {
  if constexpr (is_complex_v<T>) return x.real(); else return x;
}

/// True when x (or both parts of a complex x) is finite.
template <class T>
inline bool is_finite(const T& x) noexcept {
  if constexpr (is_complex_v<T>) return std::isfinite(x.real()) && std::isfinite(x.imag());
  else return std::isfinite(x);
}

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned>;
template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;
template <class T>
using VectorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;
template <class T>
using ConstVectorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>, Eigen::Unaligned>;

namespace detail {
/// Zero-initialised buffer of n elements aligned to WEFT_ALIGNMENT, shared-owned.
template <class T>
std::shared_ptr<T> aligned_buffer(index_t n) {
  static_assert(std::is_trivially_copyable_v<T>, "weft tensors hold trivially copyable scalars");
  WEFT_CHECK(n >= 0 && std::size_t(n) <= std::size_t(PTRDIFF_MAX) / sizeof(T), value, "Tensor",
             "expected at most ", std::size_t(PTRDIFF_MAX) / sizeof(T), " elements, got ", n);
  std::size_t bytes = std::size_t(n > 0 ? n : 1) * sizeof(T);
  void* p = ::operator new(bytes, std::align_val_t(WEFT_ALIGNMENT));
  std::memset(p, 0, bytes);
  return std::shared_ptr<T>(static_cast<T*>(p), [](T* q) {
    ::operator delete(static_cast<void*>(q), std::align_val_t(WEFT_ALIGNMENT));
  });
}
}  // namespace detail

template <class T>
class Tensor {
  static_assert(is_supported_scalar_v<T>,
                "weft::Tensor<T> supports T = float, double, std::complex<float> or "
                "std::complex<double>");

 public:
  using value_type = T;
  using real_type = real_t<T>;

  /// An undefined tensor: no storage, rank 0, numel() == 0. defined() is false.
  Tensor() noexcept = default;
  /// An owning, zero-filled tensor of the given shape.
  explicit Tensor(const Shape& shape) : shape_(shape) {
    auto buf = detail::aligned_buffer<T>(shape.numel());
    data_ = buf.get();
    owner_ = std::move(buf);
  }
  Tensor(const Shape& shape, T fill) : Tensor(shape) { this->fill(fill); }

  static Tensor zeros(const Shape& s) { return Tensor(s); }
  static Tensor ones(const Shape& s) { return Tensor(s, T(1)); }
  static Tensor full(const Shape& s, T v) { return Tensor(s, v); }
  static Tensor scalar(T v) { return Tensor(Shape{}, v); }
  /// A tensor of the given shape holding `values` in row-major order (sizes must agree).
  static Tensor from_values(std::initializer_list<T> values, const Shape& s) {
    return from_values(std::vector<T>(values), s);
  }
  static Tensor from_values(const std::vector<T>& values, const Shape& s) {
    WEFT_CHECK(index_t(values.size()) == s.numel(), shape, "Tensor::from_values",
               "expected ", s.numel(), " values for shape ", s, ", got ", values.size());
    Tensor t(s);
    std::copy(values.begin(), values.end(), t.data_);
    return t;
  }
  /// A rank-1 tensor holding `values`.
  static Tensor vector_of(std::initializer_list<T> values) {
    return from_values(values, Shape{index_t(values.size())});
  }
  static Tensor vector_of(const std::vector<T>& values) {
    return from_values(values, Shape{index_t(values.size())});
  }

  /// A non-owning view of `shape.numel()` elements at `data`. The memory must outlive the view.
  static Tensor view(T* data, const Shape& shape) {
    WEFT_CHECK(data != nullptr || shape.numel() == 0, value, "Tensor::view",
               "expected a non-null pointer for shape ", shape, ", got nullptr");
    Tensor t;
    t.data_ = data;
    t.shape_ = shape;
    return t;
  }

  /// A rank-2 copy of any Eigen expression (rows x cols).
  template <class Derived>
  static Tensor from(const Eigen::DenseBase<Derived>& e) {
    Tensor t(Shape{index_t(e.rows()), index_t(e.cols())});
    t.matrix() = e.derived().template cast<T>();
    return t;
  }

  /// A zero-copy view of an Eigen matrix or vector. Matrices must be row-major (a column-major
  /// matrix has no row-major view without strides; use from() to copy it). Vectors give rank 1.
  template <class Derived>
  static Tensor view_of(Eigen::PlainObjectBase<Derived>& m) {
    using Scalar = typename Derived::Scalar;
    static_assert(std::is_same_v<Scalar, T>, "Tensor<T>::view_of needs an Eigen object of scalar T");
    constexpr bool is_vec = Derived::IsVectorAtCompileTime;
    static_assert(is_vec || Derived::IsRowMajor,
                  "Tensor::view_of needs a row-major Eigen matrix or a vector; copy a "
                  "column-major matrix with Tensor::from()");
    if constexpr (is_vec) return view(m.data(), Shape{index_t(m.size())});
    else return view(m.data(), Shape{index_t(m.rows()), index_t(m.cols())});
  }

  bool defined() const noexcept { return data_ != nullptr || shape_.rank() > 0; }
  int rank() const noexcept { return shape_.rank(); }
  const Shape& shape() const noexcept { return shape_; }
  /// Extent of axis i (negative counts from the end).
  index_t dim(int i) const { return shape_[i]; }
  index_t numel() const noexcept { return defined() ? shape_.numel() : 0; }
  bool empty() const noexcept { return numel() == 0; }
  /// True when this handle shares ownership of its storage (false for views of foreign memory).
  bool owns_storage() const noexcept { return owner_ != nullptr; }
  /// True when the two tensors start at the same element (they share storage).
  bool same_storage(const Tensor& o) const noexcept { return data_ == o.data_; }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + numel(); }
  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + numel(); }

  /// Unchecked element access (bounds asserted when WEFT_ENABLE_ASSERTS).
  template <class... I>
  T& operator()(I... idx) noexcept(!WEFT_ENABLE_ASSERTS) {
    return data_[offset(idx...)];
  }
  template <class... I>
  const T& operator()(I... idx) const noexcept(!WEFT_ENABLE_ASSERTS) {
    return data_[offset(idx...)];
  }
  /// Flat element access in row-major order.
  T& flat(index_t i) noexcept { return data_[i]; }
  const T& flat(index_t i) const noexcept { return data_[i]; }

  /// The single element of a one-element tensor.
  T item() const {
    WEFT_CHECK(numel() == 1, shape, "Tensor::item", "expected a one-element tensor, got shape ",
               shape_);
    return data_[0];
  }

  /// Row-major matrix view: rank 2 as is, rank 1 as one row (1 x n), rank 0 as 1 x 1, rank 3-4
  /// with the leading axes flattened into rows (prod(leading) x last).
  MatrixMap<T> matrix() { return MatrixMap<T>(data_, map_rows(), defined() ? shape_.last() : 0); }
  ConstMatrixMap<T> matrix() const { return ConstMatrixMap<T>(data_, map_rows(), defined() ? shape_.last() : 0); }
  /// Row-major matrix view with explicit rows x cols (rows * cols == numel()).
  MatrixMap<T> matrix(index_t rows, index_t cols) {
    check_numel(rows * cols, "Tensor::matrix");
    return MatrixMap<T>(data_, rows, cols);
  }
  ConstMatrixMap<T> matrix(index_t rows, index_t cols) const {
    check_numel(rows * cols, "Tensor::matrix");
    return ConstMatrixMap<T>(data_, rows, cols);
  }
  /// Flat views of all elements as an Eigen array / column vector.
  ArrayMap<T> array() { return ArrayMap<T>(data_, numel()); }
  ConstArrayMap<T> array() const { return ConstArrayMap<T>(data_, numel()); }
  VectorMap<T> vector() { return VectorMap<T>(data_, numel()); }
  ConstVectorMap<T> vector() const { return ConstVectorMap<T>(data_, numel()); }

  /// A view with a new shape of the same numel. Shares storage.
  Tensor reshape(const Shape& s) const {
    WEFT_CHECK(defined(), shape, "Tensor::reshape", "expected a defined tensor, got an undefined one");
    check_numel(s.numel(), "Tensor::reshape");
    Tensor t = *this;
    t.shape_ = s;
    return t;
  }
  /// As reshape(Shape), with at most one extent given as -1 and inferred.
  Tensor reshape(std::initializer_list<index_t> dims) const {
    return reshape(infer_shape(dims, numel(), "Tensor::reshape"));
  }

  /// View of the leading-axis range [b, e). Shares storage.
  Tensor rows(index_t b, index_t e) const {
    WEFT_CHECK(rank() >= 1, shape, "Tensor::rows", "expected rank >= 1, got a scalar");
    WEFT_CHECK(0 <= b && b <= e && e <= shape_[0], shape, "Tensor::rows",
               "expected 0 <= begin <= end <= ", shape_[0], ", got [", b, ", ", e, ")");
    Tensor t = *this;
    t.shape_ = shape_.with(0, e - b);
    t.data_ = data_ + b * shape_.stride(0);
    return t;
  }
  /// View of index i of the leading axis (rank drops by one). Shares storage.
  Tensor operator[](index_t i) const {
    WEFT_CHECK(rank() >= 1, shape, "Tensor::operator[]", "expected rank >= 1, got a scalar");
    WEFT_CHECK(0 <= i && i < shape_[0], shape, "Tensor::operator[]", "expected an index in [0, ",
               shape_[0], "), got ", i);
    Tensor t = *this;
    t.shape_ = Shape::from(shape_.data() + 1, rank() - 1);
    t.data_ = data_ + i * shape_.stride(0);
    return t;
  }

  /// Deep copy into a new owning, aligned buffer.
  Tensor clone() const {
    if (!defined()) return Tensor();
    Tensor t(shape_);
    if (numel()) std::memcpy(t.data_, data_, sizeof(T) * std::size_t(numel()));
    return t;
  }
  /// Copies the elements of `src` (same shape) into this tensor's storage.
  void copy_from(const Tensor& src) {
    WEFT_CHECK(src.shape() == shape_, shape, "Tensor::copy_from", "expected shape ", shape_,
               ", got ", src.shape());
    if (numel() && src.data_ != data_)
      std::memmove(data_, src.data_, sizeof(T) * std::size_t(numel()));
  }
  void fill(T v) { std::fill(data_, data_ + numel(), v); }
  void set_zero() { fill(T(0)); }

  /// Element-wise conversion to another scalar type (complex -> real is not allowed).
  template <class U>
  Tensor<U> cast() const {
    static_assert(!(is_complex_v<T> && !is_complex_v<U>),
                  "Tensor::cast cannot drop an imaginary part; take real() explicitly");
    if (!defined()) return Tensor<U>();  // as clone(): undefined stays undefined
    Tensor<U> t(shape_);
    for (index_t i = 0; i < numel(); ++i) t.flat(i) = static_cast<U>(data_[i]);
    return t;
  }

  /// Copy of the elements with index in [b, e) along `axis`.
  Tensor slice(int axis, index_t b, index_t e) const {
    int a = shape_.normalize_axis(axis, "Tensor::slice");
    WEFT_CHECK(0 <= b && b <= e && e <= shape_[a], shape, "Tensor::slice",
               "expected 0 <= begin <= end <= ", shape_[a], " on axis ", a, ", got [", b, ", ",
               e, ")");
    index_t outer = 1, inner = shape_.stride(a), len = shape_[a];
    for (int k = 0; k < a; ++k) outer *= shape_[k];
    Tensor t(shape_.with(a, e - b));
    for (index_t o = 0; o < outer; ++o)
      std::copy(data_ + (o * len + b) * inner, data_ + (o * len + e) * inner,
                t.data_ + o * (e - b) * inner);
    return t;
  }

  /// Copy with axes a0 and a1 swapped (default: the last two, i.e. a matrix transpose).
  Tensor transpose(int a0 = -2, int a1 = -1) const;

  /// True when every element is finite (no NaN or Inf).
  bool all_finite() const noexcept {
    for (index_t i = 0; i < numel(); ++i)
      if (!is_finite(data_[i])) return false;
    return true;
  }

 private:
  template <class U>
  friend class Tensor;

  index_t map_rows() const noexcept { return defined() ? shape_.leading() : 0; }

  void check_numel(index_t n, const char* func) const {
    WEFT_CHECK(n == numel(), shape, func, "expected ", numel(), " elements (shape ", shape_,
               "), got a shape with ", n);
  }

  static Shape infer_shape(std::initializer_list<index_t> dims, index_t numel, const char* func) {
    WEFT_CHECK(dims.size() <= 4, shape, func, "expected at most 4 dimensions, got ", dims.size());
    index_t d[4] = {0, 0, 0, 0}, known = 1;
    int r = 0, infer = -1;
    for (index_t x : dims) {
      if (x == -1) {
        WEFT_CHECK(infer < 0, shape, func, "expected at most one -1 extent");
        infer = r;
      } else {
        WEFT_CHECK(x >= 0, shape, func, "expected extents >= 0 or one -1, got ", x);
        known *= x;
      }
      d[r++] = x;
    }
    if (infer >= 0) {
      WEFT_CHECK(known > 0 && numel % known == 0, shape, func, "cannot infer the -1 extent: ",
                 numel, " elements do not divide into parts of ", known);
      d[infer] = numel / known;
    }
    return Shape::from(d, r);
  }

  template <class... I>
  index_t offset(I... idx) const {
    static_assert(sizeof...(I) <= 4, "weft::Tensor has rank at most 4");
    const index_t ii[] = {index_t(idx)..., 0};
    WEFT_ASSERT(int(sizeof...(I)) == rank());
    index_t off = 0;
    for (int k = 0; k < int(sizeof...(I)); ++k) {
      WEFT_ASSERT(ii[k] >= 0 && ii[k] < shape_.data()[k]);
      off = off * shape_.data()[k] + ii[k];
    }
    return off;
  }

  std::shared_ptr<void> owner_;
  T* data_ = nullptr;
  Shape shape_;
};

template <class T>
Tensor<T> Tensor<T>::transpose(int a0, int a1) const {
  WEFT_CHECK(rank() >= 2, shape, "Tensor::transpose", "expected rank >= 2, got shape ", shape_);
  int x = shape_.normalize_axis(a0, "Tensor::transpose");
  int y = shape_.normalize_axis(a1, "Tensor::transpose");
  if (x > y) std::swap(x, y);
  index_t d[4] = {1, 1, 1, 1};
  for (int k = 0; k < rank(); ++k) d[k] = shape_[k];
  index_t nd[4] = {d[0], d[1], d[2], d[3]};
  std::swap(nd[x], nd[y]);
  Tensor t(Shape::from(nd, rank()));
  if (x == rank() - 2 && y == rank() - 1) {  // batched matrix transpose via Eigen
    const index_t m = d[x], n = d[y], mn = m * n;
    const index_t batch = mn > 0 ? numel() / mn : 0;
    for (index_t b = 0; b < batch; ++b)
      MatrixMap<T>(t.data_ + b * m * n, n, m) = ConstMatrixMap<T>(data_ + b * m * n, m, n).transpose();
    return t;
  }
  index_t s[4], ns[4];
  s[3] = 1;
  ns[3] = 1;
  for (int k = 2; k >= 0; --k) {
    s[k] = s[k + 1] * d[k + 1];
    ns[k] = ns[k + 1] * nd[k + 1];
  }
  std::swap(s[x], s[y]);  // source stride seen from the destination's index order
  for (index_t i0 = 0; i0 < nd[0]; ++i0)
    for (index_t i1 = 0; i1 < nd[1]; ++i1)
      for (index_t i2 = 0; i2 < nd[2]; ++i2)
        for (index_t i3 = 0; i3 < nd[3]; ++i3)
          t.data_[i0 * ns[0] + i1 * ns[1] + i2 * ns[2] + i3 * ns[3]] =
              data_[i0 * s[0] + i1 * s[1] + i2 * s[2] + i3 * s[3]];
  return t;
}

/// Prints the shape and up to 8 leading elements: "Tensor(2, 3)[1, 2, 3, 4, 5, 6]".
template <class T>
std::ostream& operator<<(std::ostream& os, const Tensor<T>& t) {
  os << "Tensor" << t.shape() << '[';
  index_t n = std::min<index_t>(t.numel(), 8);
  for (index_t i = 0; i < n; ++i) os << (i ? ", " : "") << t.flat(i);
  if (t.numel() > n) os << ", ...";
  return os << ']';
}

WEFT_NAMESPACE_END
