// Tests of weft/core/tensor.hpp: construction, storage and alignment, handle semantics, views
// and copies, Eigen interop, conversions, and every checked error (type, message, inputs
// untouched), over all four scalar types.
#include <doctest/doctest.h>

#include <cmath>
#include <complex>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <vector>

#include "core/core_test_helpers.hpp"
#include "support/test_util.hpp"
#include "weft/core/tensor.hpp"

namespace weft_unit_core_tensor_test {

using weft::index_t;
using weft::Shape;
using weft::Tensor;
using weft::core_test::iota;
using weft::core_test::make;

#define WEFT_ALL_SCALARS float, double, std::complex<float>, std::complex<double>

namespace {

/// Reference transpose by index loops: dst[j] = src[j with axes x and y swapped].
template <class T>
Tensor<T> transpose_reference(const Tensor<T>& src, int x, int y) {
  index_t d[4];
  weft::core_test::padded_dims(src.shape(), d);
  std::swap(d[x], d[y]);
  Tensor<T> dst(Shape::from(d, src.rank()));
  weft::core_test::for_each_index(dst.shape(), [&](const index_t* j) {
    index_t i[4] = {j[0], j[1], j[2], j[3]};
    std::swap(i[x], i[y]);
    dst.flat(weft::core_test::offset_of(dst.shape(), j)) =
        src.flat(weft::core_test::offset_of(src.shape(), i));
  });
  return dst;
}

/// Reference slice by index loops.
template <class T>
Tensor<T> slice_reference(const Tensor<T>& src, int axis, index_t b, index_t e) {
  Tensor<T> dst(src.shape().with(axis, e - b));
  weft::core_test::for_each_index(dst.shape(), [&](const index_t* j) {
    index_t i[4] = {j[0], j[1], j[2], j[3]};
    i[axis] += b;
    dst.flat(weft::core_test::offset_of(dst.shape(), j)) =
        src.flat(weft::core_test::offset_of(src.shape(), i));
  });
  return dst;
}

template <class T>
bool all_equal(const Tensor<T>& t, T v) {
  for (const T& x : t)
    if (!(x == v)) return false;
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// construction

TEST_CASE_TEMPLATE("core/tensor: factories build the requested shape and values", T, WEFT_ALL_SCALARS) {
  const Tensor<T> z = Tensor<T>::zeros(Shape{2, 3});
  CHECK(z.defined());
  CHECK(z.owns_storage());
  CHECK(z.rank() == 2);
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.numel() == 6);
  CHECK(z.dim(0) == 2);
  CHECK(z.dim(-1) == 3);
  CHECK_FALSE(z.empty());
  CHECK(all_equal(z, T(0)));

  const Tensor<T> o = Tensor<T>::ones(Shape{4});
  CHECK(all_equal(o, T(1)));
  const T v = make<T>(2.5, -1.0);
  const Tensor<T> f = Tensor<T>::full(Shape{2, 2, 2}, v);
  CHECK(f.numel() == 8);
  CHECK(all_equal(f, v));

  const Tensor<T> fv =
      Tensor<T>::from_values({make<T>(1), make<T>(2), make<T>(3), make<T>(4), make<T>(5), make<T>(6, 1)},
                             Shape{2, 3});
  CHECK(fv(0, 0) == make<T>(1));
  CHECK(fv(0, 2) == make<T>(3));
  CHECK(fv(1, 0) == make<T>(4));
  CHECK(fv(1, 2) == make<T>(6, 1));
  std::vector<T> vals = {make<T>(7), make<T>(8)};
  CHECK(Tensor<T>::from_values(vals, Shape{2, 1})(1, 0) == make<T>(8));

  const Tensor<T> vec = Tensor<T>::vector_of({make<T>(1), make<T>(-2), make<T>(3)});
  CHECK(vec.rank() == 1);
  CHECK(vec.shape() == Shape{3});
  CHECK(vec(1) == make<T>(-2));
  CHECK(Tensor<T>::vector_of(vals).shape() == Shape{2});

  const Tensor<T> s = Tensor<T>::scalar(make<T>(4, 2));
  CHECK(s.defined());
  CHECK(s.rank() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == make<T>(4, 2));
  CHECK(s() == make<T>(4, 2));
}

TEST_CASE_TEMPLATE("core/tensor: undefined and empty tensors", T, WEFT_ALL_SCALARS) {
  const Tensor<T> u;
  CHECK_FALSE(u.defined());
  CHECK(u.numel() == 0);
  CHECK(u.empty());
  CHECK(u.data() == nullptr);
  CHECK_FALSE(u.owns_storage());
  CHECK(u.begin() == u.end());
  CHECK_FALSE(u.clone().defined());
  CHECK(u.all_finite());

  const Tensor<T> e(Shape{3, 0});
  CHECK(e.defined());
  CHECK(e.numel() == 0);
  CHECK(e.empty());
  CHECK(e.data() != nullptr);
  const Tensor<T> ec = e.clone();
  CHECK(ec.defined());
  CHECK(ec.shape() == Shape{3, 0});
  CHECK(e.matrix().rows() == 3);
  CHECK(e.matrix().cols() == 0);
  CHECK(e.slice(0, 1, 2).shape() == Shape{1, 0});
  CHECK(e.transpose().shape() == Shape{0, 3});
}

TEST_CASE_TEMPLATE("core/tensor: owned buffers are 64-byte aligned and zeroed", T, WEFT_ALL_SCALARS) {
  static_assert(WEFT_ALIGNMENT == 64, "the tests assume 64-byte alignment");
  for (index_t n : {0, 1, 3, 7, 17, 64, 1000, 4097}) {
    CAPTURE(n);
    Tensor<T> t(Shape{n});
    CHECK(weft::core_test::aligned_to(t.data(), 64));
    CHECK(all_equal(t, T(0)));
    CHECK(weft::core_test::aligned_to(Tensor<T>::full(Shape{n, 2}, T(1)).data(), 64));
    CHECK(weft::core_test::aligned_to(t.clone().data(), 64));
    CHECK(weft::core_test::aligned_to(t.template cast<std::complex<double>>().data(), 64));
  }
  CHECK(weft::core_test::aligned_to(Tensor<T>::scalar(T(1)).data(), 64));
}

// ---------------------------------------------------------------------------------------------
// handles, views and copies

TEST_CASE_TEMPLATE("core/tensor: copies share storage, clone is deep", T, WEFT_ALL_SCALARS) {
  Tensor<T> a = iota<T>(Shape{2, 3});
  Tensor<T> b = a;  // a handle
  CHECK(b.same_storage(a));
  b(1, 2) = make<T>(-9);
  CHECK(a(1, 2) == make<T>(-9));

  Tensor<T> c = a.clone();
  CHECK_FALSE(c.same_storage(a));
  CHECK(c.owns_storage());
  CHECK(weft::test::identical(c, a));
  c(0, 0) = make<T>(100);
  CHECK(a(0, 0) == make<T>(1, -0.5));

  // storage outlives the handle it was created by
  Tensor<T> d;
  {
    Tensor<T> tmp = iota<T>(Shape{5});
    d = tmp.reshape({5, 1});
  }
  CHECK(d(4, 0) == make<T>(5, -4.5));

  // assignment re-points the handle, it does not copy elements
  Tensor<T> e = Tensor<T>::zeros(Shape{2});
  e = a;
  CHECK(e.same_storage(a));
  CHECK(e.shape() == Shape{2, 3});
}

TEST_CASE_TEMPLATE("core/tensor: reshape shares storage", T, WEFT_ALL_SCALARS) {
  Tensor<T> a = iota<T>(Shape{2, 3, 2});
  Tensor<T> r = a.reshape(Shape{3, 4});
  CHECK(r.shape() == Shape{3, 4});
  CHECK(r.data() == a.data());
  r(2, 3) = make<T>(-1);
  CHECK(a(1, 2, 1) == make<T>(-1));

  CHECK(a.reshape({-1}).shape() == Shape{12});
  CHECK(a.reshape({-1, 6}).shape() == Shape{2, 6});
  CHECK(a.reshape({2, -1, 3}).shape() == Shape{2, 2, 3});
  CHECK(a.reshape({1, 1, 1, -1}).shape() == Shape{1, 1, 1, 12});
  CHECK(a.reshape({12}).data() == a.data());
  CHECK(Tensor<T>::scalar(T(3)).reshape({1, 1}).shape() == Shape{1, 1});
  CHECK(Tensor<T>(Shape{1}).reshape(Shape{}).rank() == 0);
}

TEST_CASE_TEMPLATE("core/tensor: rows() and operator[] are views of the leading axis", T, WEFT_ALL_SCALARS) {
  Tensor<T> a = iota<T>(Shape{4, 3});
  Tensor<T> r = a.rows(1, 3);
  CHECK(r.shape() == Shape{2, 3});
  CHECK(r.data() == a.data() + 3);
  CHECK(r(0, 0) == a(1, 0));
  r(1, 2) = make<T>(42);
  CHECK(a(2, 2) == make<T>(42));
  CHECK(a.rows(0, 0).numel() == 0);
  CHECK(a.rows(4, 4).shape() == Shape{0, 3});
  CHECK(a.rows(0, 4).data() == a.data());

  Tensor<T> row = a[3];
  CHECK(row.shape() == Shape{3});
  CHECK(row.data() == a.data() + 9);
  row(0) = make<T>(-7);
  CHECK(a(3, 0) == make<T>(-7));

  Tensor<T> b = iota<T>(Shape{2, 3, 4, 5});
  Tensor<T> sub = b[1][2];
  CHECK(sub.shape() == Shape{4, 5});
  CHECK(sub(3, 4) == b(1, 2, 3, 4));
  Tensor<T> elem = a[2][1];
  CHECK(elem.rank() == 0);
  CHECK(elem.item() == a(2, 1));
  Tensor<T> leaf = b[1][2][3].rows(1, 4);
  CHECK(leaf.shape() == Shape{3});
  CHECK(leaf(0) == b(1, 2, 3, 1));
}

TEST_CASE_TEMPLATE("core/tensor: slice copies along every axis (rank 2, 3, 4)", T, WEFT_ALL_SCALARS) {
  for (const Shape& s : {Shape{4, 5}, Shape{3, 4, 5}, Shape{2, 3, 4, 5}, Shape{1, 6}, Shape{5}}) {
    const Tensor<T> a = iota<T>(s);
    for (int axis = 0; axis < s.rank(); ++axis) {
      const index_t n = s[axis];
      for (index_t b = 0; b <= n; ++b)
        for (index_t e = b; e <= n; ++e) {
          CAPTURE(s);
          CAPTURE(axis);
          CAPTURE(b);
          CAPTURE(e);
          Tensor<T> got = a.slice(axis, b, e);
          CHECK(weft::test::identical(got, slice_reference(a, axis, b, e)));
          CHECK(weft::core_test::aligned_to(got.data(), 64));
          CHECK(got.owns_storage());
        }
      // negative axis, and the result is a copy
      Tensor<T> neg = a.slice(axis - s.rank(), 0, 1);
      CHECK(weft::test::identical(neg, slice_reference(a, axis, 0, 1)));
      neg.fill(make<T>(-5));
      CHECK(weft::test::identical(a, iota<T>(s)));
    }
  }
}

TEST_CASE_TEMPLATE("core/tensor: transpose copies for every axis pair (rank 2, 3, 4)", T, WEFT_ALL_SCALARS) {
  for (const Shape& s : {Shape{3, 5}, Shape{1, 4}, Shape{2, 3, 4}, Shape{2, 3, 4, 5}, Shape{3, 1, 2, 1}}) {
    const Tensor<T> a = iota<T>(s);
    const int r = s.rank();
    for (int x = 0; x < r; ++x)
      for (int y = 0; y < r; ++y) {
        CAPTURE(s);
        CAPTURE(x);
        CAPTURE(y);
        const Tensor<T> ref = transpose_reference(a, x, y);
        Tensor<T> got = a.transpose(x, y);
        CHECK(weft::test::identical(got, ref));
        CHECK(weft::test::identical(a.transpose(x - r, y), ref));  // negative axes
        CHECK_FALSE(got.same_storage(a));
        got.fill(T(0));
      }
    CHECK(weft::test::identical(a, iota<T>(s)));  // source untouched
    CHECK(weft::test::identical(a.transpose(), transpose_reference(a, r - 2, r - 1)));
    CHECK(weft::test::identical(a.transpose().transpose(), a));
  }
}

// ---------------------------------------------------------------------------------------------
// Eigen interop

TEST_CASE_TEMPLATE("core/tensor: matrix(), array() and vector() maps write through", T, WEFT_ALL_SCALARS) {
  Tensor<T> a = iota<T>(Shape{2, 3});
  auto m = a.matrix();
  CHECK(m.rows() == 2);
  CHECK(m.cols() == 3);
  CHECK(m.data() == a.data());
  CHECK(m(1, 0) == a(1, 0));
  m(1, 0) = make<T>(11);
  CHECK(a(1, 0) == make<T>(11));
  a.matrix().row(0).setConstant(make<T>(2));
  CHECK(a(0, 2) == make<T>(2));

  a.array() *= T(2);
  CHECK(a(0, 1) == make<T>(4));
  a.vector()(5) = make<T>(-1);
  CHECK(a(1, 2) == make<T>(-1));
  CHECK(a.vector().size() == 6);

  auto m32 = a.matrix(3, 2);
  CHECK(m32.rows() == 3);
  m32(2, 1) = make<T>(8);
  CHECK(a(1, 2) == make<T>(8));

  // const tensors give read-only maps with the same contents
  const Tensor<T>& ca = a;
  CHECK(ca.matrix()(1, 2) == make<T>(8));
  CHECK(ca.array().size() == 6);
  CHECK(ca.vector()(0) == a(0, 0));
  CHECK(ca.matrix(1, 6)(0, 5) == make<T>(8));

  // rank 1 is one row, rank 0 one element, rank 3/4 flatten the leading axes
  Tensor<T> v = iota<T>(Shape{4});
  CHECK(v.matrix().rows() == 1);
  CHECK(v.matrix().cols() == 4);
  CHECK(v.matrix()(0, 3) == v(3));
  Tensor<T> s = Tensor<T>::scalar(make<T>(5));
  CHECK(s.matrix().rows() == 1);
  CHECK(s.matrix().cols() == 1);
  Tensor<T> c = iota<T>(Shape{2, 3, 4});
  auto cm = c.matrix();
  CHECK(cm.rows() == 6);
  CHECK(cm.cols() == 4);
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j)
      for (index_t k = 0; k < 4; ++k) CHECK(cm(i * 3 + j, k) == c(i, j, k));
  cm(5, 3) = make<T>(0);
  CHECK(c(1, 2, 3) == make<T>(0));
  Tensor<T> q = iota<T>(Shape{2, 1, 3, 2});
  CHECK(q.matrix().rows() == 6);
  CHECK(q.matrix().cols() == 2);
}

TEST_CASE_TEMPLATE("core/tensor: from(eigen expression) copies", T, WEFT_ALL_SCALARS) {
  using ColMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  ColMajor m(2, 3);
  m << make<T>(1), make<T>(2), make<T>(3), make<T>(4), make<T>(5), make<T>(6, 1);
  Tensor<T> t = Tensor<T>::from(m);
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.owns_storage());
  CHECK(weft::core_test::aligned_to(t.data(), 64));
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j) CHECK(t(i, j) == m(i, j));
  m(0, 0) = make<T>(99);
  CHECK(t(0, 0) == make<T>(1));  // a copy

  Tensor<T> tt = Tensor<T>::from(m.transpose() * T(2));
  CHECK(tt.shape() == Shape{3, 2});
  CHECK(tt(2, 1) == make<T>(12, 2));

  Tensor<T> col = Tensor<T>::from(Eigen::Matrix<T, Eigen::Dynamic, 1>::Constant(4, T(3)));
  CHECK(col.shape() == Shape{4, 1});
  CHECK(all_equal(col, T(3)));

  // a product of two tensors' maps, wrapped back
  Tensor<T> a = iota<T>(Shape{2, 3}), b = iota<T>(Shape{3, 2});
  Tensor<T> p = Tensor<T>::from(a.matrix() * b.matrix());
  CHECK(p.shape() == Shape{2, 2});
  T ref = T(0);
  for (index_t k = 0; k < 3; ++k) ref += a(1, k) * b(k, 0);
  CHECK(p(1, 0) == ref);

  // from() converts the scalar type (e.g. an int matrix)
  Eigen::MatrixXi mi(1, 2);
  mi << 3, -4;
  Tensor<T> ti = Tensor<T>::from(mi);
  CHECK(ti(0, 1) == make<T>(-4));
}

TEST_CASE_TEMPLATE("core/tensor: view_of(row-major matrix / vector) is zero-copy", T, WEFT_ALL_SCALARS) {
  weft::RowMatrix<T> m(3, 4);
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 4; ++j) m(i, j) = make<T>(double(10 * i + j));
  Tensor<T> t = Tensor<T>::view_of(m);
  CHECK(t.shape() == Shape{3, 4});
  CHECK(t.data() == m.data());
  CHECK_FALSE(t.owns_storage());
  CHECK(t(2, 3) == make<T>(23));
  t(1, 2) = make<T>(-1);
  CHECK(m(1, 2) == make<T>(-1));
  m(0, 1) = make<T>(7);
  CHECK(t(0, 1) == make<T>(7));
  CHECK(t.matrix().data() == m.data());

  Eigen::Matrix<T, Eigen::Dynamic, 1> v(5);
  v.setConstant(T(2));
  Tensor<T> tv = Tensor<T>::view_of(v);
  CHECK(tv.shape() == Shape{5});
  CHECK(tv.data() == v.data());
  tv(4) = make<T>(9);
  CHECK(v(4) == make<T>(9));

  Eigen::Matrix<T, 1, Eigen::Dynamic> rv(3);
  rv.setZero();
  Tensor<T> trv = Tensor<T>::view_of(rv);
  CHECK(trv.shape() == Shape{3});
  trv(0) = T(1);
  CHECK(rv(0) == T(1));

  // a raw view of foreign memory
  std::vector<T> buf(6, T(0));
  Tensor<T> raw = Tensor<T>::view(buf.data(), Shape{2, 3});
  raw(1, 1) = make<T>(5);
  CHECK(buf[4] == make<T>(5));
  CHECK(Tensor<T>::view(nullptr, Shape{0, 3}).numel() == 0);
}

// ---------------------------------------------------------------------------------------------
// conversions and utilities

TEST_CASE_TEMPLATE("core/tensor: cast converts element-wise", T, WEFT_ALL_SCALARS) {
  const Tensor<T> a = iota<T>(Shape{2, 3});
  Tensor<std::complex<double>> z = a.template cast<std::complex<double>>();
  CHECK(z.shape() == a.shape());
  for (index_t i = 0; i < a.numel(); ++i) {
    CHECK(z.flat(i).real() == double(weft::real_part(a.flat(i))));
    if constexpr (weft::is_complex_v<T>) CHECK(z.flat(i).imag() == double(a.flat(i).imag()));
    else CHECK(z.flat(i).imag() == 0.0);
  }
  CHECK_FALSE(Tensor<T>().template cast<std::complex<double>>().defined());  // as clone()
  CHECK(Tensor<T>(Shape{0, 2}).template cast<std::complex<double>>().shape() == Shape{0, 2});
  Tensor<T> same = a.template cast<T>();
  CHECK(weft::test::identical(same, a));
  CHECK_FALSE(same.same_storage(a));
  if constexpr (!weft::is_complex_v<T>) {
    Tensor<float> f = Tensor<double>::vector_of({0.1, -2.5}).cast<float>();
    CHECK(f(0) == 0.1f);
    CHECK(a.template cast<double>()(1, 2) == 6.0);
  }
}

TEST_CASE_TEMPLATE("core/tensor: all_finite detects NaN and Inf", T, WEFT_ALL_SCALARS) {
  using R = weft::real_t<T>;
  Tensor<T> a = iota<T>(Shape{3, 3});
  CHECK(a.all_finite());
  a(1, 1) = make<T>(std::numeric_limits<R>::quiet_NaN());
  CHECK_FALSE(a.all_finite());
  a(1, 1) = make<T>(1);
  CHECK(a.all_finite());
  a(2, 2) = make<T>(-std::numeric_limits<R>::infinity());
  CHECK_FALSE(a.all_finite());
  if constexpr (weft::is_complex_v<T>) {
    a(2, 2) = T(R(1), std::numeric_limits<R>::infinity());
    CHECK_FALSE(a.all_finite());
    a(2, 2) = T(R(1), std::numeric_limits<R>::quiet_NaN());
    CHECK_FALSE(a.all_finite());
  }
  CHECK(Tensor<T>(Shape{0}).all_finite());
}

TEST_CASE_TEMPLATE("core/tensor: item() and copy_from", T, WEFT_ALL_SCALARS) {
  CHECK(Tensor<T>::scalar(make<T>(3, 1)).item() == make<T>(3, 1));
  CHECK(Tensor<T>::full(Shape{1, 1, 1}, make<T>(2)).item() == make<T>(2));

  Tensor<T> dst = Tensor<T>::zeros(Shape{2, 3});
  const T* before = dst.data();
  const Tensor<T> src = iota<T>(Shape{2, 3});
  dst.copy_from(src);
  CHECK(dst.data() == before);
  CHECK(weft::test::identical(dst, src));
  CHECK_FALSE(dst.same_storage(src));
  dst.copy_from(dst);  // self copy is a no-op
  CHECK(weft::test::identical(dst, src));
  // copy into a view writes into the viewed storage
  Tensor<T> big = Tensor<T>::zeros(Shape{4, 3});
  big.rows(1, 3).copy_from(src);
  CHECK(big(1, 0) == src(0, 0));
  CHECK(big(2, 2) == src(1, 2));
  CHECK(big(3, 0) == T(0));

  dst.fill(make<T>(4));
  CHECK(all_equal(dst, make<T>(4)));
  dst.set_zero();
  CHECK(all_equal(dst, T(0)));
}

TEST_CASE("core/tensor: operator<< prints the shape and leading elements") {
  std::ostringstream os;
  os << Tensor<double>::from_values({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  CHECK(os.str() == "Tensor(2, 3)[1, 2, 3, 4, 5, 6]");
  os.str("");
  os << Tensor<float>::full(Shape{9}, 0.5f);
  CHECK(os.str() == "Tensor(9)[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, ...]");
  os.str("");
  os << Tensor<double>::scalar(3);
  CHECK(os.str() == "Tensor()[3]");
  os.str("");
  os << Tensor<double>();
  CHECK(os.str() == "Tensor()[]");
  os.str("");
  os << Tensor<std::complex<double>>::vector_of({std::complex<double>(1, 2)});
  CHECK(os.str() == "Tensor(1)[(1,2)]");
  os.str("");
  os << Shape{2, 3};
  CHECK(os.str() == "(2, 3)");
}

// ---------------------------------------------------------------------------------------------
// errors: type, message naming the function, inputs untouched

TEST_CASE_TEMPLATE("core/tensor: checked errors name the function and leave inputs untouched", T,
                   WEFT_ALL_SCALARS) {
  Tensor<T> a = iota<T>(Shape{4, 3});
  const T* data = a.data();
  weft::test::Snapshot<T> snap({a});

  // reshape
  WEFT_CHECK_FAILS(a.reshape(Shape{5, 2}), weft::ShapeError, "Tensor::reshape");
  WEFT_CHECK_FAILS(a.reshape({-1, -1}), weft::ShapeError, "Tensor::reshape");
  WEFT_CHECK_FAILS(a.reshape({5, -1}), weft::ShapeError, "Tensor::reshape");
  WEFT_CHECK_FAILS(a.reshape({-2, 6}), weft::ShapeError, "Tensor::reshape");
  WEFT_CHECK_FAILS(a.reshape({1, 2, 3, 2, 1}), weft::ShapeError, "Tensor::reshape");
  WEFT_CHECK_FAILS(a.matrix(5, 3), weft::ShapeError, "Tensor::matrix");
  // rows / operator[]
  WEFT_CHECK_FAILS(a.rows(2, 5), weft::ShapeError, "Tensor::rows");
  WEFT_CHECK_FAILS(a.rows(3, 2), weft::ShapeError, "Tensor::rows");
  WEFT_CHECK_FAILS(a.rows(-1, 2), weft::ShapeError, "Tensor::rows");
  WEFT_CHECK_FAILS(Tensor<T>::scalar(T(1)).rows(0, 1), weft::ShapeError, "Tensor::rows");
  WEFT_CHECK_FAILS(a[4], weft::ShapeError, "Tensor::operator[]");
  WEFT_CHECK_FAILS(a[-1], weft::ShapeError, "Tensor::operator[]");
  WEFT_CHECK_FAILS(Tensor<T>::scalar(T(1))[0], weft::ShapeError, "Tensor::operator[]");
  // item
  WEFT_CHECK_FAILS(a.item(), weft::ShapeError, "Tensor::item");
  WEFT_CHECK_FAILS(Tensor<T>().item(), weft::ShapeError, "Tensor::item");
  WEFT_CHECK_FAILS(Tensor<T>(Shape{0}).item(), weft::ShapeError, "Tensor::item");
  // slice
  WEFT_CHECK_FAILS(a.slice(0, 0, 5), weft::ShapeError, "Tensor::slice");
  WEFT_CHECK_FAILS(a.slice(1, 2, 1), weft::ShapeError, "Tensor::slice");
  WEFT_CHECK_FAILS(a.slice(1, -1, 1), weft::ShapeError, "Tensor::slice");
  WEFT_CHECK_FAILS(a.slice(2, 0, 1), weft::ShapeError, "Tensor::slice");
  WEFT_CHECK_FAILS(a.slice(-3, 0, 1), weft::ShapeError, "Tensor::slice");
  // transpose
  WEFT_CHECK_FAILS(Tensor<T>(Shape{3}).transpose(), weft::ShapeError, "Tensor::transpose");
  WEFT_CHECK_FAILS(Tensor<T>::scalar(T(1)).transpose(), weft::ShapeError, "Tensor::transpose");
  WEFT_CHECK_FAILS(a.transpose(0, 2), weft::ShapeError, "Tensor::transpose");
  WEFT_CHECK_FAILS(a.transpose(-3, 1), weft::ShapeError, "Tensor::transpose");
  // bad axis through dim()
  WEFT_CHECK_FAILS(a.dim(2), weft::ShapeError, "Shape::operator[]");
  WEFT_CHECK_FAILS(a.dim(-3), weft::ShapeError, "Shape::operator[]");
  // copy_from with another shape
  WEFT_CHECK_FAILS(a.copy_from(Tensor<T>(Shape{3, 4})), weft::ShapeError, "Tensor::copy_from");

  CHECK(a.data() == data);
  CHECK(a.shape() == Shape{4, 3});
  CHECK(snap.unchanged());

  // from_values
  WEFT_CHECK_FAILS(Tensor<T>::from_values({T(1), T(2), T(3)}, Shape{2, 2}), weft::ShapeError,
                   "Tensor::from_values");
  WEFT_CHECK_FAILS(Tensor<T>::from_values(std::vector<T>(5), Shape{2, 2}), weft::ShapeError,
                   "Tensor::from_values");
  // a view of nullptr with elements
  WEFT_CHECK_FAILS(Tensor<T>::view(nullptr, Shape{2}), weft::ValueError, "Tensor::view");
  // Shape: too many dims, negative extents
  WEFT_CHECK_FAILS((Shape{1, 2, 3, 4, 5}), weft::ShapeError, "Shape");
  WEFT_CHECK_FAILS((Shape{2, -1}), weft::ShapeError, "Shape");
  WEFT_CHECK_FAILS(Tensor<T>(Shape{3, -2}), weft::ShapeError, "Shape");
}

TEST_CASE("core/tensor: error messages say what was expected and what came") {
  const Tensor<double> a(Shape{4, 3});
  CHECK_THROWS_WITH(a.reshape(Shape{5, 2}),
                    "weft::Tensor::reshape: expected 12 elements (shape (4, 3)), got a shape with 10");
  CHECK_THROWS_WITH(a.rows(2, 5), "weft::Tensor::rows: expected 0 <= begin <= end <= 4, got [2, 5)");
  CHECK_THROWS_WITH(a.item(), "weft::Tensor::item: expected a one-element tensor, got shape (4, 3)");
  CHECK_THROWS_WITH(Tensor<double>::from_values({1, 2, 3}, Shape{2, 2}),
                    "weft::Tensor::from_values: expected 4 values for shape (2, 2), got 3");
  CHECK_THROWS_WITH(a.transpose(0, 2),
                    "weft::Tensor::transpose: expected an axis in [-2, 2) for shape (4, 3), got 2");
  // every weft error is a weft::Error and a std::runtime_error, and reports its kind
  try {
    (void)a.item();
    FAIL("item() on a (4, 3) tensor did not throw");
  } catch (const weft::Error& e) {
    CHECK(e.kind() == weft::ErrorKind::shape);
    CHECK(std::string(weft::to_string(e.kind())) == "ShapeError");
  }
  CHECK_THROWS_AS(Tensor<double>::view(nullptr, Shape{1}), std::runtime_error);
  CHECK(std::string(weft::to_string(weft::ErrorKind::value)) == "ValueError");
  CHECK(std::string(weft::to_string(weft::ErrorKind::config)) == "ConfigError");
  CHECK(std::string(weft::to_string(weft::ErrorKind::io)) == "IoError");
  CHECK(std::string(weft::to_string(weft::ErrorKind::generic)) == "Error");
}

TEST_CASE("core/error: WEFT_CHECK raises the requested kind with the composed message") {
  auto check = [](int kind) {
    switch (kind) {
      case 0: WEFT_CHECK(false, shape, "f", "a ", 1, " b"); break;
      case 1: WEFT_CHECK(false, value, "g", "x=", 2.5); break;
      case 2: WEFT_CHECK(false, config, "h", "opt"); break;
      case 3: WEFT_CHECK(false, io, "i", "file"); break;
      default: WEFT_CHECK(false, generic, "j", "gen"); break;
    }
  };
  CHECK_THROWS_WITH_AS(check(0), "weft::f: a 1 b", weft::ShapeError);
  CHECK_THROWS_WITH_AS(check(1), "weft::g: x=2.5", weft::ValueError);
  CHECK_THROWS_WITH_AS(check(2), "weft::h: opt", weft::ConfigError);
  CHECK_THROWS_WITH_AS(check(3), "weft::i: file", weft::IoError);
  CHECK_THROWS_WITH_AS(check(4), "weft::j: gen", weft::Error);
  WEFT_CHECK(true, shape, "f", "never");  // a passing check does nothing

  // with exceptions the handler is only installed, never called by weft
  weft::error_handler_t prev = weft::set_error_handler([](weft::ErrorKind, const char*) { std::abort(); });
  CHECK((prev != nullptr));
  CHECK_THROWS_AS(check(0), weft::ShapeError);
  weft::set_error_handler(nullptr);  // restores the default
}

}  // namespace weft_unit_core_tensor_test
