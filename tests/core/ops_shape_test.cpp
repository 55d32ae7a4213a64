// Tests of weft/core/autograd/functions/shape.hpp: reshape, transpose, concat, slice and
// gather_rows.
#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "core/ops_common.hpp"
#include "weft/core/autograd/functions/shape.hpp"

namespace weft_unit_core_ops_shape_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace wt = weft::test;

namespace {

/// 0, 1, 2, ... in row-major order: every element is its own flat index.
Tensor<double> iota(const Shape& s) {
  Tensor<double> t(s);
  for (index_t i = 0; i < t.numel(); ++i) t.flat(i) = double(i);
  return t;
}

/// Extents padded to rank 4 on the right (trailing 1s) and the matching row-major strides.
void dims4(const Shape& s, index_t* d, index_t* st) {
  for (int k = 0; k < 4; ++k) d[k] = k < s.rank() ? s[k] : 1;
  st[3] = 1;
  for (int k = 2; k >= 0; --k) st[k] = st[k + 1] * d[k + 1];
}

/// Reference transpose: out[..i_x..i_y..] = in[..i_y..i_x..], by explicit 4-d indexing.
Tensor<double> ref_transpose(const Tensor<double>& a, int x, int y) {
  const int r = a.rank();
  x = x < 0 ? x + r : x;
  y = y < 0 ? y + r : y;
  index_t d[4], s[4];
  dims4(a.shape(), d, s);
  index_t nd[4] = {d[0], d[1], d[2], d[3]};
  std::swap(nd[x], nd[y]);
  Tensor<double> out(Shape::from(nd, r));
  index_t i[4], n = 0;
  for (i[0] = 0; i[0] < nd[0]; ++i[0])
    for (i[1] = 0; i[1] < nd[1]; ++i[1])
      for (i[2] = 0; i[2] < nd[2]; ++i[2])
        for (i[3] = 0; i[3] < nd[3]; ++i[3]) {
          index_t src[4] = {i[0], i[1], i[2], i[3]};
          std::swap(src[x], src[y]);
          out.flat(n++) = a.flat(src[0] * s[0] + src[1] * s[1] + src[2] * s[2] + src[3] * s[3]);
        }
  return out;
}

/// Reference slice by explicit indexing: keeps index j on `axis` iff b <= j < e.
Tensor<double> ref_slice(const Tensor<double>& a, int axis, index_t b, index_t e) {
  const int ax = axis < 0 ? axis + a.rank() : axis;
  index_t d[4], s[4];
  dims4(a.shape(), d, s);
  std::vector<double> vals;
  index_t i[4];
  for (i[0] = 0; i[0] < d[0]; ++i[0])
    for (i[1] = 0; i[1] < d[1]; ++i[1])
      for (i[2] = 0; i[2] < d[2]; ++i[2])
        for (i[3] = 0; i[3] < d[3]; ++i[3])
          if (i[ax] >= b && i[ax] < e) vals.push_back(a.flat(i[0] * s[0] + i[1] * s[1] + i[2] * s[2] + i[3] * s[3]));
  return Tensor<double>::from_values(vals, a.shape().with(ax, e - b));
}

/// Reference concat: element at index j on `axis` comes from the input covering j.
Tensor<double> ref_concat(const std::vector<Tensor<double>>& xs, int axis) {
  const int ax = axis < 0 ? axis + xs[0].rank() : axis;
  index_t total = 0;
  for (const auto& x : xs) total += x.dim(ax);
  const Shape os = xs[0].shape().with(ax, total);
  index_t d[4], s[4];
  dims4(os, d, s);
  Tensor<double> out(os);
  index_t i[4], n = 0;
  for (i[0] = 0; i[0] < d[0]; ++i[0])
    for (i[1] = 0; i[1] < d[1]; ++i[1])
      for (i[2] = 0; i[2] < d[2]; ++i[2])
        for (i[3] = 0; i[3] < d[3]; ++i[3]) {
          index_t j = i[ax];
          std::size_t k = 0;
          while (j >= xs[k].dim(ax)) j -= xs[k++].dim(ax);
          index_t xd[4], xs4[4], src[4] = {i[0], i[1], i[2], i[3]};
          dims4(xs[k].shape(), xd, xs4);
          src[ax] = j;
          out.flat(n++) = xs[k].flat(src[0] * xs4[0] + src[1] * xs4[1] + src[2] * xs4[2] + src[3] * xs4[3]);
        }
  return out;
}

template <class V>
V concat_of(const std::vector<V>& v, int axis) {
  return weft::concat(v, axis);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// reshape

TEST_CASE("core/ops/shape: reshape keeps the elements in order and shares storage") {
  weft::Rng rng(41);
  const Tensor<double> x = wt::randn<double>({2, 3, 4}, rng);
  weft::Tape<double> tape;
  auto v = tape.variable(x);
  const std::pair<weft::Var<double>, Shape> cases[] = {
      {weft::reshape(v, Shape{6, 4}), Shape{6, 4}},
      {weft::reshape(v, {4, -1}), Shape{4, 6}},
      {weft::reshape(v, {-1}), Shape{24}},
      {weft::reshape(v, {2, -1, 3}), Shape{2, 4, 3}},
      {weft::reshape(v, {1, 2, 3, 4}), Shape{1, 2, 3, 4}},
      {weft::reshape(v, Shape{2, 3, 4}), Shape{2, 3, 4}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.second);
    CHECK(c.first.shape() == c.second);
    CHECK(c.first.value().same_storage(x));  // a view, no copy
    CHECK(wt::identical(c.first.value().reshape(x.shape()), x));
  }
  auto s = weft::reshape(tape.variable(Tensor<double>::vector_of({5.0})), Shape{});
  CHECK(s.shape() == Shape{});
  CHECK(s.item() == 5.0);
  // float32 spot check
  weft::Tape<float> tf;
  auto vf = weft::reshape(tf.variable(x.cast<float>()), {3, -1});
  CHECK(vf.shape() == Shape{3, 8});
  WEFT_CHECK_CLOSE(vf.value().cast<double>(), x.reshape(Shape{3, 8}), 1e-7);
}

TEST_CASE("core/ops/shape: reshape gradients (central differences and complex step)") {
  weft::Rng rng(42);
  const Tensor<double> x = wt::randn<double>({2, 3, 2}, rng);
  auto f1 = [](auto&, const auto& v) { return weft::reshape(v[0], {-1, 4}); };
  auto f2 = [](auto&, const auto& v) { return weft::reshape(v[0], Shape{12}); };
  WEFT_CHECK_GRAD(weft::grad_check(f1, {x}));
  WEFT_CHECK_GRAD(weft::grad_check_complex_step(f1, {x}));
  WEFT_CHECK_GRAD(weft::grad_check(f2, {x}));
  WEFT_CHECK_GRAD(weft::grad_check_complex_step(f2, {x}));
  wt::check_tape_semantics(f1, {x});
  // the gradient is the upstream gradient in the input's shape
  const Tensor<double> seed = wt::randn<double>({3, 4}, rng);
  const auto g = wt::gradients(f1, {x}, seed);
  WEFT_CHECK_CLOSE(g[0], seed.reshape(x.shape()), 0.0);
}

TEST_CASE("core/ops/shape: reshape rejects a wrong element count with ShapeError") {
  const Tensor<double> x = iota({2, 3});
  wt::Snapshot<double> snap{x};
  weft::Tape<double> tape;
  auto v = tape.variable(x);
  CHECK_THROWS_WITH_AS(weft::reshape(v, Shape{4, 2}), doctest::Contains("weft::reshape:"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::reshape(v, Shape{7}), doctest::Contains("weft::reshape:"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::reshape(v, {4, -1}), doctest::Contains("reshape"), weft::ShapeError);  // 6 % 4
  CHECK_THROWS_WITH_AS(weft::reshape(v, {-1, -1}), doctest::Contains("reshape"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::reshape(v, {2, -2, 3}), doctest::Contains("reshape"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::reshape(v, {1, 1, 2, 3, 1}), doctest::Contains("reshape"), weft::ShapeError);
  CHECK(tape.size() == 1);
  CHECK(snap.unchanged());
}

// ---------------------------------------------------------------------------------------------
// transpose

TEST_CASE("core/ops/shape: transpose swaps the last two axes by default and any pair on request") {
  weft::Rng rng(43);
  struct Case {
    Shape s;
    int a0, a1;
  };
  const Case cases[] = {
      {{3, 4}, -2, -1}, {{3, 4}, 1, 0},   {{2, 3, 4}, -2, -1}, {{2, 3, 4}, 0, 1},    {{2, 3, 4}, 0, 2},
      {{2, 3, 4}, -3, -1}, {{2, 3, 4}, 1, 1}, {{2, 3, 4, 5}, -2, -1}, {{2, 3, 4, 5}, 1, 2}, {{2, 3, 4, 5}, 0, 3},
      {{2, 3, 4, 5}, 1, 3}, {{2, 3, 4, 5}, 2, 0}, {{1, 3, 1, 2}, 0, 2}, {{3, 0}, 0, 1},
  };
  for (const auto& c : cases) {
    CAPTURE(c.s);
    CAPTURE(c.a0);
    CAPTURE(c.a1);
    const Tensor<double> x = wt::randn<double>(c.s, rng);
    weft::Tape<double> tape;
    auto v = tape.variable(x);
    auto y = (c.a0 == -2 && c.a1 == -1) ? weft::transpose(v) : weft::transpose(v, c.a0, c.a1);
    WEFT_CHECK_CLOSE(y.value(), ref_transpose(x, c.a0, c.a1), 0.0);
    CHECK_FALSE(y.value().same_storage(x));
    // transposing back restores the input, and the gradient is the transposed seed
    auto back = weft::transpose(y, c.a0, c.a1);
    WEFT_CHECK_CLOSE(back.value(), x, 0.0);
    const Tensor<double> seed = wt::randn<double>(x.shape(), rng);
    tape.backward(back, seed);
    WEFT_CHECK_CLOSE(v.grad(), seed, 0.0);
    if (x.numel() > 0) {
      auto f = [c](auto&, const auto& w) { return weft::transpose(w[0], c.a0, c.a1); };
      WEFT_CHECK_GRAD(weft::grad_check(f, {x}));
      WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {x}));
    }
    weft::Tape<float> tf;
    auto yf = weft::transpose(tf.variable(x.cast<float>()), c.a0, c.a1);
    WEFT_CHECK_CLOSE(yf.value().cast<double>(), ref_transpose(x, c.a0, c.a1), 1e-7);
  }
  wt::check_tape_semantics([](auto&, const auto& w) { return weft::transpose(w[0], 0, 2); },
                           {wt::randn<double>({2, 3, 4}, rng)});
}

TEST_CASE("core/ops/shape: transpose rejects rank < 2 and bad axes with ShapeError") {
  const Tensor<double> x = iota({2, 3, 4}), v1 = iota({5});
  wt::Snapshot<double> snap{x, v1};
  weft::Tape<double> tape;
  auto v = tape.variable(x), r1 = tape.variable(v1), r0 = tape.variable(Tensor<double>::scalar(1));
  CHECK_THROWS_WITH_AS(weft::transpose(r1), doctest::Contains("transpose"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::transpose(r0), doctest::Contains("transpose"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::transpose(v, 0, 3), doctest::Contains("transpose"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::transpose(v, -4, 1), doctest::Contains("transpose"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::transpose(v, 5, 5), doctest::Contains("transpose"), weft::ShapeError);
  CHECK(tape.size() == 3);
  CHECK(snap.unchanged());
}

// ---------------------------------------------------------------------------------------------
// concat

TEST_CASE("core/ops/shape: concat along axis 0, 1 and the last axis matches a reference") {
  weft::Rng rng(44);
  struct Case {
    std::vector<Shape> in;
    int axis;
  };
  const Case cases[] = {
      {{{2, 3}, {1, 3}, {4, 3}}, 0},
      {{{2, 3}, {2, 1}, {2, 2}}, 1},
      {{{2, 3}, {2, 1}}, -1},
      {{{2, 3, 1}, {2, 3, 4}}, -1},
      {{{2, 3, 4}, {2, 1, 4}, {2, 2, 4}}, 1},
      {{{1, 3, 4}, {2, 3, 4}}, 0},
      {{{2, 1, 2, 3}, {2, 1, 1, 3}}, 2},
      {{{2, 1, 2, 3}, {2, 1, 2, 1}, {2, 1, 2, 2}}, 3},
      {{{5}, {2}}, 0},
      {{{2, 3}}, 1},              // a single input is a copy
      {{{2, 0}, {2, 3}}, 1},      // an input with an empty extent on the axis
  };
  for (const auto& c : cases) {
    CAPTURE(c.axis);
    CAPTURE(c.in[0]);
    std::vector<Tensor<double>> xs;
    for (const auto& s : c.in) xs.push_back(wt::randn<double>(s, rng));
    const int axis = c.axis;
    auto f = [axis](auto&, const auto& v) { return concat_of(v, axis); };
    WEFT_CHECK_CLOSE(wt::forward(f, xs), ref_concat(xs, axis), 0.0);
    WEFT_CHECK_GRAD(weft::grad_check(f, xs));
    WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, xs));
    // gradient of each input is its block of the seed
    const Tensor<double> y = wt::forward(f, xs);
    const Tensor<double> seed = wt::randn<double>(y.shape(), rng);
    const auto g = wt::gradients(f, xs, seed);
    index_t off = 0;
    const int ax = axis < 0 ? axis + y.rank() : axis;
    for (std::size_t i = 0; i < xs.size(); ++i) {
      WEFT_CHECK_CLOSE(g[i], ref_slice(seed, ax, off, off + xs[i].dim(ax)), 0.0);
      off += xs[i].dim(ax);
    }
    // float32 spot check
    weft::Tape<float> tf;
    std::vector<weft::Var<float>> vf;
    for (const auto& x : xs) vf.push_back(tf.variable(x.cast<float>()));
    WEFT_CHECK_CLOSE(weft::concat(vf, axis).value().cast<double>(), ref_concat(xs, axis), 1e-7);
  }
}

TEST_CASE("core/ops/shape: concat of an input with itself gets both contributions") {
  weft::Tape<double> tape;
  auto x = tape.variable(iota({2, 2}));
  auto y = weft::concat(std::vector<weft::Var<double>>{x, x, x}, 1);
  CHECK(y.shape() == Shape{2, 6});
  tape.backward(y, iota({2, 6}));
  // row 0: 0..5 -> (0+2+4, 1+3+5); row 1: 6..11 -> (6+8+10, 7+9+11)
  WEFT_CHECK_CLOSE(x.grad(), Tensor<double>::from_values({6, 9, 24, 27}, {2, 2}), 0.0);
  weft::Rng rng(45);
  wt::check_tape_semantics([](auto&, const auto& v) { return concat_of(v, 0); },
                           {wt::randn<double>({2, 3}, rng), wt::randn<double>({1, 3}, rng)});
}

TEST_CASE("core/ops/shape: concat rejects empty lists, rank and extent mismatches with ShapeError") {
  const Tensor<double> a = iota({2, 3}), b = iota({2, 4}), c = iota({2, 3, 1});
  wt::Snapshot<double> snap{a, b, c};
  weft::Tape<double> tape;
  auto va = tape.variable(a), vb = tape.variable(b), vc = tape.variable(c);
  using VV = std::vector<weft::Var<double>>;
  const auto in_concat = doctest::Contains("weft::concat:");
  CHECK_THROWS_WITH_AS(weft::concat(VV{}, 0), in_concat, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::concat(VV{va, vb}, 0), in_concat, weft::ShapeError);   // extents differ off-axis
  CHECK_THROWS_WITH_AS(weft::concat(VV{va, vc}, 1), in_concat, weft::ShapeError);   // ranks differ
  CHECK_THROWS_WITH_AS(weft::concat(VV{va, va}, 2), in_concat, weft::ShapeError);   // bad axis
  CHECK_THROWS_WITH_AS(weft::concat(VV{va, va}, -3), in_concat, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::concat(VV{tape.variable(Tensor<double>::scalar(1))}, 0), in_concat, weft::ShapeError);
  CHECK(weft::concat(VV{va, vb}, 1).shape() == Shape{2, 7});  // fine along the differing axis
  CHECK(snap.unchanged());
}

// ---------------------------------------------------------------------------------------------
// slice

TEST_CASE("core/ops/shape: slice on every axis matches a reference and scatters its gradient") {
  weft::Rng rng(46);
  struct Case {
    Shape s;
    int axis;
    index_t b, e;
  };
  const Case cases[] = {
      {{5}, 0, 1, 4},        {{4, 5}, 0, 1, 3},       {{4, 5}, 1, 2, 5},    {{4, 5}, -1, 0, 1},
      {{4, 5}, 0, 0, 4},     {{4, 5}, 1, 2, 2},       {{3, 4, 5}, 0, 2, 3}, {{3, 4, 5}, 1, 1, 3},
      {{3, 4, 5}, 2, 3, 5},  {{2, 3, 4, 5}, 3, 1, 4}, {{2, 3, 4, 5}, 2, 0, 2}, {{2, 3, 4, 5}, -4, 1, 2},
  };
  for (const auto& c : cases) {
    CAPTURE(c.s);
    CAPTURE(c.axis);
    CAPTURE(c.b);
    CAPTURE(c.e);
    const Tensor<double> x = wt::randn<double>(c.s, rng);
    auto f = [c](auto&, const auto& v) { return weft::slice(v[0], c.axis, c.b, c.e); };
    const Tensor<double> y = wt::forward(f, {x});
    WEFT_CHECK_CLOSE(y, ref_slice(x, c.axis, c.b, c.e), 0.0);
    WEFT_CHECK_CLOSE(y, x.slice(c.axis, c.b, c.e), 0.0);
    if (y.numel() > 0) {
      WEFT_CHECK_GRAD(weft::grad_check(f, {x}));
      WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {x}));
    }
    // the gradient is the seed in the sliced positions and zero elsewhere
    const Tensor<double> seed = wt::randn<double>(y.shape(), rng);
    const Tensor<double> g = wt::gradients(f, {x}, seed)[0];
    const int ax = c.axis < 0 ? c.axis + x.rank() : c.axis;
    WEFT_CHECK_CLOSE(ref_slice(g, ax, c.b, c.e), seed, 0.0);
    double outside = 0;
    for (index_t i = 0; i < g.numel(); ++i) outside += std::abs(g.flat(i));
    for (index_t i = 0; i < seed.numel(); ++i) outside -= std::abs(seed.flat(i));
    CHECK(outside == doctest::Approx(0.0).epsilon(1e-12));
    weft::Tape<float> tf;
    auto yf = weft::slice(tf.variable(x.cast<float>()), c.axis, c.b, c.e);
    WEFT_CHECK_CLOSE(yf.value().cast<double>(), ref_slice(x, c.axis, c.b, c.e), 1e-7);
  }
  const Tensor<double> x = wt::randn<double>({3, 4}, rng);
  wt::check_tape_semantics([](auto&, const auto& v) { return weft::slice(v[0], 1, 1, 3); }, {x});
  // two overlapping slices of one input add up
  weft::Tape<double> tape;
  auto v = tape.variable(iota({4}));
  auto y = weft::concat(std::vector<weft::Var<double>>{weft::slice(v, 0, 0, 3), weft::slice(v, 0, 1, 4)}, 0);
  tape.backward(y, Tensor<double>::ones({6}));
  WEFT_CHECK_CLOSE(v.grad(), Tensor<double>::vector_of({1, 2, 2, 1}), 0.0);
}

TEST_CASE("core/ops/shape: slice rejects out-of-range bounds and bad axes with ShapeError") {
  const Tensor<double> x = iota({3, 4});
  wt::Snapshot<double> snap{x};
  weft::Tape<double> tape;
  auto v = tape.variable(x);
  const auto in_slice = doctest::Contains("weft::slice:");
  CHECK_THROWS_WITH_AS(weft::slice(v, 0, 0, 4), in_slice, weft::ShapeError);   // end past the extent
  CHECK_THROWS_WITH_AS(weft::slice(v, 1, -1, 2), in_slice, weft::ShapeError);  // negative begin
  CHECK_THROWS_WITH_AS(weft::slice(v, 1, 3, 2), in_slice, weft::ShapeError);   // begin > end
  CHECK_THROWS_WITH_AS(weft::slice(v, 2, 0, 1), in_slice, weft::ShapeError);   // bad axis
  CHECK_THROWS_WITH_AS(weft::slice(v, -3, 0, 1), in_slice, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::slice(tape.variable(Tensor<double>::scalar(1)), 0, 0, 1), in_slice, weft::ShapeError);
  CHECK(tape.size() == 2);
  CHECK(snap.unchanged());
}

// ---------------------------------------------------------------------------------------------
// gather_rows

TEST_CASE("core/ops/shape: gather_rows picks rows in order and repeated rows add their gradients") {
  weft::Rng rng(47);
  struct Case {
    Shape s;
    std::vector<index_t> idx;
  };
  const Case cases[] = {
      {{3, 4}, {2, 0, 2, 2, 1}},
      {{5}, {4, 4, 0}},
      {{3, 2, 2}, {1, 1}},
      {{2, 1, 2, 3}, {1, 0, 1}},
      {{3, 4}, {}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.s);
    const Tensor<double> x = wt::randn<double>(c.s, rng);
    auto f = [c](auto&, const auto& v) { return weft::gather_rows(v[0], c.idx); };
    const Tensor<double> y = wt::forward(f, {x});
    CHECK(y.shape() == c.s.with(0, index_t(c.idx.size())));
    for (std::size_t i = 0; i < c.idx.size(); ++i)
      WEFT_CHECK_CLOSE(y[index_t(i)].clone(), x[c.idx[i]].clone(), 0.0);
    if (!c.idx.empty()) {
      WEFT_CHECK_GRAD(weft::grad_check(f, {x}));
      WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {x}));
    }
    // reference gradient: each output row's seed added to its source row
    const Tensor<double> seed = wt::randn<double>(y.shape(), rng);
    Tensor<double> expected(x.shape());
    const index_t w = x.numel() / x.dim(0);
    for (std::size_t i = 0; i < c.idx.size(); ++i)
      for (index_t j = 0; j < w; ++j) expected.flat(c.idx[i] * w + j) += seed.flat(index_t(i) * w + j);
    WEFT_CHECK_CLOSE(wt::gradients(f, {x}, seed)[0], expected, 1e-15);
    weft::Tape<float> tf;
    auto yf = weft::gather_rows(tf.variable(x.cast<float>()), c.idx);
    WEFT_CHECK_CLOSE(yf.value().cast<double>(), y, 1e-7);
  }
  // a row gathered three times gets three times the seed
  weft::Tape<double> tape;
  auto v = tape.variable(iota({3, 2}));
  auto y = weft::gather_rows(v, {2, 2, 2, 0});
  tape.backward(y, Tensor<double>::ones({4, 2}));
  WEFT_CHECK_CLOSE(v.grad(), Tensor<double>::from_values({1, 1, 0, 0, 3, 3}, {3, 2}), 0.0);
  wt::check_tape_semantics([](auto&, const auto& w) { return weft::gather_rows(w[0], {1, 1, 0}); },
                           {wt::randn<double>({3, 4}, rng)});
}

TEST_CASE("core/ops/shape: gather_rows rejects out-of-range indices and scalars with ShapeError") {
  const Tensor<double> x = iota({3, 4});
  wt::Snapshot<double> snap{x};
  weft::Tape<double> tape;
  auto v = tape.variable(x);
  const auto in_gather = doctest::Contains("weft::gather_rows:");
  CHECK_THROWS_WITH_AS(weft::gather_rows(v, {0, 3}), in_gather, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::gather_rows(v, {-1}), in_gather, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::gather_rows(v, {1, 2, 100}), doctest::Contains("at position 2"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::gather_rows(tape.variable(Tensor<double>::scalar(1)), {0}), in_gather,
                       weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::gather_rows(tape.variable(Tensor<double>(Shape{0, 2})), {0}), in_gather,
                       weft::ShapeError);
  CHECK(tape.size() == 3);
  CHECK(snap.unchanged());
}

TEST_CASE("core/ops/shape: concat of Vars from different tapes is refused with ConfigError") {
  weft::Tape<double> t1, t2;
  auto x = t1.variable(iota({2, 2})), y = t2.variable(iota({2, 2}));
  CHECK(wt::refuses_other_tape([&] { return weft::concat(std::vector<weft::Var<double>>{x, y}, 0); }));
}

}  // namespace weft_unit_core_ops_shape_test
