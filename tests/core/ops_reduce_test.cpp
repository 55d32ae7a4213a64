// Tests of weft/core/autograd/functions/reduce.hpp (sum, mean, max over everything or one axis)
// and the kernels in weft/core/ops/reduce.hpp.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/ops_common.hpp"
#include "weft/core/autograd/functions/reduce.hpp"

namespace weft_unit_core_ops_reduce_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace wt = weft::test;

namespace {

enum class Red { sum, mean, max };
const Red all_reds[] = {Red::sum, Red::mean, Red::max};
const char* name(Red r) { return r == Red::sum ? "sum" : (r == Red::mean ? "mean" : "max"); }

template <class V>
V reduce_all(Red r, const V& a) {
  return r == Red::sum ? weft::sum(a) : (r == Red::mean ? weft::mean(a) : weft::max(a));
}
template <class V>
V reduce_axis(Red r, const V& a, int axis, bool keepdim) {
  return r == Red::sum ? weft::sum(a, axis, keepdim)
                       : (r == Red::mean ? weft::mean(a, axis, keepdim) : weft::max(a, axis, keepdim));
}

/// Reference reduction along `axis` by explicit 4-d indexing (axis < 0: over everything). Also
/// returns the flat index of the first maximal element of each group in `argmax`.
Tensor<double> ref_reduce(Red r, const Tensor<double>& a, int axis, bool keepdim, std::vector<index_t>* argmax = nullptr) {
  const int rank = a.rank();
  if (axis < -rank || rank == 0) {  // everything
    double acc = r == Red::max ? -INFINITY : 0.0;
    index_t best = 0;
    for (index_t i = 0; i < a.numel(); ++i) {
      if (r == Red::max) {
        if (a.flat(i) > acc) {
          acc = a.flat(i);
          best = i;
        }
      } else {
        acc += a.flat(i);
      }
    }
    if (r == Red::mean) acc /= double(a.numel());
    if (argmax) *argmax = {best};
    return Tensor<double>::scalar(acc);
  }
  const int ax = axis < 0 ? axis + rank : axis;
  index_t d[4], st[4];
  for (int k = 0; k < 4; ++k) d[k] = k < rank ? a.dim(k) : 1;
  st[3] = 1;
  for (int k = 2; k >= 0; --k) st[k] = st[k + 1] * d[k + 1];
  index_t od[4] = {d[0], d[1], d[2], d[3]};
  od[ax] = 1;
  Tensor<double> out(a.shape().with(ax, 1));
  if (argmax) argmax->assign(std::size_t(out.numel()), -1);
  index_t o[4], n = 0;
  for (o[0] = 0; o[0] < od[0]; ++o[0])
    for (o[1] = 0; o[1] < od[1]; ++o[1])
      for (o[2] = 0; o[2] < od[2]; ++o[2])
        for (o[3] = 0; o[3] < od[3]; ++o[3], ++n) {
          double acc = r == Red::max ? -INFINITY : 0.0;
          for (index_t l = 0; l < d[ax]; ++l) {
            index_t i[4] = {o[0], o[1], o[2], o[3]};
            i[ax] = l;
            const index_t flat = i[0] * st[0] + i[1] * st[1] + i[2] * st[2] + i[3] * st[3];
            const double v = a.flat(flat);
            if (r == Red::max) {
              if (v > acc) {
                acc = v;
                if (argmax) (*argmax)[std::size_t(n)] = flat;
              }
            } else {
              acc += v;
            }
          }
          if (r == Red::mean) acc /= double(d[ax]);
          out.flat(n) = acc;
        }
  if (keepdim) return out;
  index_t kd[4];
  int kr = 0;
  for (int k = 0; k < rank; ++k)
    if (k != ax) kd[kr++] = a.dim(k);
  return out.reshape(Shape::from(kd, kr));
}

const Shape reduce_shapes[] = {Shape{5}, Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 3, 2, 3}, Shape{1, 4}, Shape{4, 1}};

}  // namespace

TEST_CASE("core/ops/reduce: sum, mean and max over everything match a reference") {
  weft::Rng rng(51);
  for (Red r : all_reds)
    for (const Shape& s : {Shape{}, Shape{7}, Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 3, 2, 3}}) {
      CAPTURE(name(r));
      CAPTURE(s);
      const Tensor<double> x = wt::randn<double>(s, rng);
      auto f = [r](auto&, const auto& v) { return reduce_all(r, v[0]); };
      const Tensor<double> y = wt::forward(f, {x});
      CHECK(y.shape() == Shape{});
      WEFT_CHECK_CLOSE(y, ref_reduce(r, x, -99, false), 1e-14);
      WEFT_CHECK_GRAD(weft::grad_check(f, {x}));
      if (r != Red::max) WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {x}));
      weft::Tape<float> tf;
      auto yf = reduce_all(r, tf.variable(x.cast<float>()));
      WEFT_CHECK_CLOSE(yf.value().cast<double>(), ref_reduce(r, x, -99, false), 2e-6);
    }
}

TEST_CASE("core/ops/reduce: sum, mean and max along each axis, with and without keepdim") {
  weft::Rng rng(52);
  for (Red r : all_reds)
    for (const Shape& s : reduce_shapes)
      for (int axis = -s.rank(); axis < s.rank(); ++axis)
        for (bool keepdim : {false, true}) {
          CAPTURE(name(r));
          CAPTURE(s);
          CAPTURE(axis);
          CAPTURE(keepdim);
          const Tensor<double> x = wt::randn<double>(s, rng);
          auto f = [r, axis, keepdim](auto&, const auto& v) { return reduce_axis(r, v[0], axis, keepdim); };
          const Tensor<double> y = wt::forward(f, {x});
          WEFT_CHECK_CLOSE(y, ref_reduce(r, x, axis, keepdim), 1e-14);
          if (axis >= 0) {  // negative axes give the same graph; check each gradient once
            WEFT_CHECK_GRAD(weft::grad_check(f, {x}));
            if (r != Red::max) WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {x}));
          }
          weft::Tape<float> tf;
          auto yf = reduce_axis(r, tf.variable(x.cast<float>()), axis, keepdim);
          WEFT_CHECK_CLOSE(yf.value().cast<double>(), ref_reduce(r, x, axis, keepdim), 2e-6);
        }
}

TEST_CASE("core/ops/reduce: gradients against closed forms (sum: seed, mean: seed / n, max: one-hot)") {
  weft::Rng rng(53);
  const Tensor<double> x = wt::randn<double>({2, 3, 4}, rng);
  for (Red r : all_reds)
    for (int axis = 0; axis < 3; ++axis) {
      CAPTURE(name(r));
      CAPTURE(axis);
      auto f = [r, axis](auto&, const auto& v) { return reduce_axis(r, v[0], axis, true); };
      const Tensor<double> seed = wt::randn<double>(x.shape().with(axis, 1), rng);
      std::vector<index_t> argmax;
      ref_reduce(Red::max, x, axis, true, &argmax);
      Tensor<double> expected(x.shape());
      for (index_t i = 0; i < x.numel(); ++i) {
        // the reduced position of element i: its index with the axis coordinate dropped
        index_t idx[3] = {i / 12, (i / 4) % 3, i % 4};
        idx[axis] = 0;
        const Shape rs = x.shape().with(axis, 1);
        const index_t o = (idx[0] * rs[1] + idx[1]) * rs[2] + idx[2];
        if (r == Red::sum) expected.flat(i) = seed.flat(o);
        else if (r == Red::mean) expected.flat(i) = seed.flat(o) / double(x.dim(axis));
        else expected.flat(i) = argmax[std::size_t(o)] == i ? seed.flat(o) : 0.0;
      }
      WEFT_CHECK_CLOSE(wt::gradients(f, {x}, seed)[0], expected, 1e-15);
    }
}

TEST_CASE("core/ops/reduce: max sends the gradient to the first maximal element on ties") {
  weft::Tape<double> tape;
  auto x = tape.variable(Tensor<double>::from_values({1, 3, 3, 2,    //
                                                      5, 5, 5, 5,    //
                                                      -1, 0, -1, 0}, {3, 4}));
  auto all = weft::max(x);
  auto rows = weft::max(x, 1);
  auto cols = weft::max(x, 0, true);
  CHECK(all.item() == 5.0);
  WEFT_CHECK_CLOSE(rows.value(), Tensor<double>::vector_of({3, 5, 0}), 0.0);
  WEFT_CHECK_CLOSE(cols.value(), Tensor<double>::from_values({5, 5, 5, 5}, {1, 4}), 0.0);
  // separate tapes per reduction so each gradient is seen alone
  auto grad_of = [](auto reduce, const Tensor<double>& seed) {
    weft::Tape<double> t;
    auto v = t.variable(Tensor<double>::from_values({1, 3, 3, 2, 5, 5, 5, 5, -1, 0, -1, 0}, {3, 4}));
    auto y = reduce(v);
    t.backward(y, seed);
    return v.grad().clone();
  };
  WEFT_CHECK_CLOSE(grad_of([](const auto& v) { return weft::max(v); }, Tensor<double>::scalar(2.0)),
                   Tensor<double>::from_values({0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}, {3, 4}), 0.0);
  WEFT_CHECK_CLOSE(grad_of([](const auto& v) { return weft::max(v, 1); }, Tensor<double>::vector_of({1, 2, 3})),
                   Tensor<double>::from_values({0, 1, 0, 0, 2, 0, 0, 0, 0, 3, 0, 0}, {3, 4}), 0.0);
  WEFT_CHECK_CLOSE(grad_of([](const auto& v) { return weft::max(v, 0, true); },
                           Tensor<double>::from_values({1, 2, 3, 4}, {1, 4})),
                   Tensor<double>::from_values({0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0}, {3, 4}), 0.0);
  // the same on the float path, and ties of +0 and -0 count as equal
  weft::Tape<float> tf;
  auto z = tf.variable(Tensor<float>::vector_of({-0.0f, 0.0f, -1.0f}));
  auto m = weft::max(z);
  tf.backward(m);
  WEFT_CHECK_CLOSE(z.grad().cast<double>(), Tensor<double>::vector_of({1, 0, 0}), 0.0);
}

TEST_CASE("core/ops/reduce: max propagates NaN and sends its gradient to the first NaN") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  weft::Tape<double> tape;
  auto x = tape.variable(Tensor<double>::vector_of({1.0, nan, 7.0, nan}));
  auto y = weft::max(x);
  CHECK(std::isnan(y.item()));
  tape.backward(y);
  WEFT_CHECK_CLOSE(x.grad(), Tensor<double>::vector_of({0, 1, 0, 0}), 0.0);
  weft::Tape<double> t2;
  auto v = t2.variable(Tensor<double>::from_values({1, 2, nan, 3}, {2, 2}));
  auto m = weft::max(v, 0);
  CHECK(std::isnan(m.value().flat(0)));
  CHECK(m.value().flat(1) == 3.0);
}

TEST_CASE("core/ops/reduce: sums of empty tensors are zero; mean and max of nothing are ShapeErrors") {
  weft::Tape<double> tape;
  auto e = tape.variable(Tensor<double>(Shape{0, 3}));
  CHECK(weft::sum(e).item() == 0.0);
  auto s0 = weft::sum(e, 0);
  CHECK(s0.shape() == Shape{3});
  WEFT_CHECK_CLOSE(s0.value(), Tensor<double>::zeros({3}), 0.0);
  CHECK(weft::sum(e, 1).shape() == Shape{0});
  tape.backward(weft::sum(e));
  const std::size_t nodes = tape.size();
  CHECK_THROWS_WITH_AS(weft::mean(e), doctest::Contains("weft::mean:"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::mean(e, 0), doctest::Contains("weft::mean:"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::mean(e, 1), doctest::Contains("weft::mean:"), weft::ShapeError);  // empty input
  CHECK_THROWS_WITH_AS(weft::max(e), doctest::Contains("weft::max:"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::max(e, 1), doctest::Contains("weft::max:"), weft::ShapeError);
  CHECK(tape.size() == nodes);
}

TEST_CASE("core/ops/reduce: bad axes raise ShapeError naming the function, inputs untouched") {
  weft::Rng rng(54);
  const Tensor<double> x = wt::randn<double>({2, 3}, rng);
  wt::Snapshot<double> snap{x};
  weft::Tape<double> tape;
  auto v = tape.variable(x), s = tape.variable(Tensor<double>::scalar(2.0));
  for (Red r : all_reds) {
    CAPTURE(name(r));
    const std::string func = std::string("weft::") + name(r) + ":";
    for (int axis : {2, -3, 7})
      for (bool keepdim : {false, true})
        CHECK_THROWS_WITH_AS(reduce_axis(r, v, axis, keepdim), doctest::Contains(func.c_str()), weft::ShapeError);
    CHECK_THROWS_WITH_AS(reduce_axis(r, s, 0, false), doctest::Contains(func.c_str()), weft::ShapeError);
    CHECK(reduce_all(r, s).item() == 2.0);  // everything of a scalar is fine
  }
  CHECK(tape.size() == 5);
  CHECK(snap.unchanged());
}

TEST_CASE("core/ops/reduce: an input reduced twice gets both contributions; tape semantics") {
  weft::Rng rng(55);
  const Tensor<double> x = wt::randn<double>({2, 3, 4}, rng);
  weft::Tape<double> tape;
  auto v = tape.variable(x);
  auto a = weft::sum(v), b = weft::mean(v), c = weft::max(v);
  tape.backward(wt::contract(tape, {a, b, c}, Tensor<double>::scalar(1.0)));
  std::vector<index_t> am;
  ref_reduce(Red::max, x, -99, false, &am);
  Tensor<double> expected(x.shape(), 1.0 + 1.0 / 24.0);
  expected.flat(am[0]) += 1.0;
  WEFT_CHECK_CLOSE(v.grad(), expected, 1e-15);
  for (Red r : all_reds) {
    CAPTURE(name(r));
    wt::check_tape_semantics([r](auto&, const auto& w) { return reduce_axis(r, w[0], 1, false); }, {x});
    wt::check_tape_semantics([r](auto&, const auto& w) { return reduce_all(r, w[0]); }, {x});
  }
}

TEST_CASE("core/ops/reduce: the sum kernel is exact on integers on both of its paths") {
  // inner == 1 runs through Eigen, other axes through the plain loop
  const Tensor<double> x = Tensor<double>::from_values({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor<double> rows(Shape{2}), cols(Shape{3});
  weft::ops::sum_axis(x.data(), rows.data(), weft::ops::axis_split(x.shape(), 1));
  weft::ops::sum_axis(x.data(), cols.data(), weft::ops::axis_split(x.shape(), 0));
  WEFT_CHECK_CLOSE(rows, Tensor<double>::vector_of({6, 15}), 0.0);
  WEFT_CHECK_CLOSE(cols, Tensor<double>::vector_of({5, 7, 9}), 0.0);
  CHECK(weft::ops::reduced_shape(Shape{2, 3, 4}, 1, false) == Shape{2, 4});
  CHECK(weft::ops::reduced_shape(Shape{2, 3, 4}, 1, true) == Shape{2, 1, 4});
  CHECK(weft::ops::reduced_shape(Shape{5}, 0, false) == Shape{});
}

}  // namespace weft_unit_core_ops_reduce_test
