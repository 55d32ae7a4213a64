// Property tests of the core ops (weft/core/autograd/functions/*): products, reductions,
// broadcasting element-wise ops, softmax / layer norm / losses, on random, mismatched and empty
// shapes and on NaN/Inf/extreme entries, in float and double. Each call either throws a
// weft::Error with its inputs untouched, or returns a finite result of the right shape (with a
// finite gradient after backward) when its inputs were finite. See tests/property/property.hpp.
#include <doctest/doctest.h>

#include <vector>

#include "property/property.hpp"
#include "weft/core/autograd.hpp"
#include "weft/core/checked.hpp"

namespace weft_unit_property_core_test {

using namespace weft;
namespace prop = weft::test::prop;

namespace {

/// Forward, then backward of sum(y) with the inputs as variables; checks y's shape and the
/// gradients' shapes and finiteness.
template <class T, class F>
void forward_backward(prop::Gen& g, std::vector<Tensor<T>> inputs, const Shape& expected, F&& f) {
  prop::Watch w;
  for (auto& t : inputs) w.add(t, "operand");
  prop::check(g, w, [&] {
    Tape<T> tape;
    std::vector<Var<T>> vs;
    for (auto& t : inputs) vs.push_back(tape.variable(t));
    Var<T> y = f(vs);
    prop::expect_result(g, y.value(), expected);
    tape.backward(sum(y));
    for (std::size_t i = 0; i < vs.size(); ++i) prop::expect_result(g, vs[i].grad(), inputs[i].shape());
  });
}

template <class T>
void products(std::uint64_t seed) {
  prop::run("core/products", seed, 400, [](prop::Gen& g) {
    const index_t m = g.extent(6), k = g.extent(6), n = g.extent(6);
    const int which = g.pick(4);  // matmul, matmul_nt, matmul_tn, linear
    const bool batched = which < 3 && g.chance(0.3), shared = batched && g.chance(0.5);
    const index_t batch = batched ? g.extent(3) : 1;
    const index_t kb = g.near(k, "inner of b");
    g.note("op", which);
    auto a_shape = [&](index_t r, index_t c) { return batched ? Shape{batch, r, c} : Shape{r, c}; };
    auto b_shape = [&](index_t r, index_t c) { return (batched && !shared) ? Shape{g.near(batch, "batch of b"), r, c} : Shape{r, c}; };
    Tensor<T> a, b;
    Shape out;
    if (which == 0) a = g.tensor<T>(a_shape(m, k), "a"), b = g.tensor<T>(b_shape(kb, n), "b");
    if (which == 1) a = g.tensor<T>(a_shape(m, k), "a"), b = g.tensor<T>(b_shape(n, kb), "b");
    if (which == 2) a = g.tensor<T>(a_shape(k, m), "a"), b = g.tensor<T>(b_shape(kb, n), "b");
    if (which == 3) a = g.tensor<T>(Shape{m, k}, "x"), b = g.tensor<T>(Shape{n, kb}, "W");
    out = batched ? Shape{batch, m, n} : Shape{m, n};
    std::vector<Tensor<T>> in;  // push_back, not {a, b}: GCC 12 reports a false array-bounds error
    in.push_back(a);
    in.push_back(b);
    const bool bias = which == 3 && g.chance(0.5);
    if (bias) in.push_back(g.tensor<T>(Shape{g.near(n, "bias")}, "bias"));
    forward_backward<T>(g, in, out, [&](std::vector<Var<T>>& v) {
      switch (which) {
        case 0: return matmul(v[0], v[1]);
        case 1: return matmul_nt(v[0], v[1]);
        case 2: return matmul_tn(v[0], v[1]);
        default: return bias ? linear(v[0], v[1], v[2]) : linear(v[0], v[1]);
      }
    });
  });
}

Shape random_shape(prop::Gen& g, int max_rank = 4) {
  const int r = 1 + g.pick(max_rank);
  index_t d[4];
  for (int i = 0; i < r; ++i) d[i] = g.extent(4);
  return Shape::from(d, r);
}

template <class T>
void reductions(std::uint64_t seed) {
  prop::run("core/reductions", seed, 400, [](prop::Gen& g) {
    const Shape s = random_shape(g);
    Tensor<T> x = g.tensor<T>(s, "x");
    const int op = g.pick(3);  // sum, mean, max
    const bool all = g.chance(0.3), keepdim = g.chance(0.5);
    const int axis = int(g.integer("axis", -s.rank(), s.rank() - 1, 0.1, {s.rank(), -s.rank() - 1, 7},
                                   [&](long long a) { return a >= -s.rank() && a < s.rank(); }));
    g.note("op (sum, mean, max)", op);
    g.note("all", all);
    const int ax = axis < 0 ? axis + s.rank() : axis;
    const index_t len = (all || ax < 0 || ax >= s.rank()) ? s.numel() : s[ax];
    if (all && g.must_fail()) return;  // the axis is not used
    if (op > 0 && len == 0 && !g.must_fail()) g.set_must_fail("mean or max over an empty range");
    Shape out = all ? Shape{} : (ax >= 0 && ax < s.rank() ? ops::reduced_shape(s, ax, keepdim) : Shape{});
    forward_backward<T>(g, {x}, out, [&](std::vector<Var<T>>& v) {
      if (all) return op == 0 ? sum(v[0]) : op == 1 ? mean(v[0]) : max(v[0]);
      return op == 0 ? sum(v[0], axis, keepdim) : op == 1 ? mean(v[0], axis, keepdim) : max(v[0], axis, keepdim);
    });
  });
}

/// NumPy broadcasting of a and b (nullopt-like empty flag when they do not broadcast).
bool broadcast(const Shape& a, const Shape& b, Shape& out) {
  const int r = a.rank() > b.rank() ? a.rank() : b.rank();
  index_t d[4];
  for (int k = 0; k < r; ++k) {
    const int ia = a.rank() - r + k, ib = b.rank() - r + k;
    const index_t x = ia >= 0 ? a[ia] : 1, y = ib >= 0 ? b[ib] : 1;
    if (x != y && x != 1 && y != 1) return false;
    d[k] = x == 1 ? y : x;
  }
  out = Shape::from(d, r);
  return true;
}

template <class T>
void elementwise(std::uint64_t seed) {
  prop::run("core/elementwise", seed, 500, [](prop::Gen& g) {
    const Shape a = random_shape(g);
    // b: a suffix of a, with some extents set to 1 or changed
    const int rb = 1 + g.pick(a.rank());
    index_t d[4];
    for (int k = 0; k < rb; ++k) {
      index_t e = a[a.rank() - rb + k];
      const int c = g.pick(8);
      if (c == 0) e = 1;
      if (c == 1) e = e + 1;
      d[k] = e;
    }
    const Shape b = Shape::from(d, rb);
    Shape out;
    if (!broadcast(a, b, out)) g.set_must_fail("shapes do not broadcast");
    const int op = g.pick(10);
    g.note("op (add sub mul div tanh sigmoid relu gelu abs square)", op);
    const bool unary = op >= 4;
    if (unary) {
      if (g.must_fail()) return;
      forward_backward<T>(g, {g.tensor<T>(a, "a")}, a, [&](std::vector<Var<T>>& v) {
        switch (op) {
          case 4: return tanh(v[0]);
          case 5: return sigmoid(v[0]);
          case 6: return relu(v[0]);
          case 7: return gelu(v[0]);
          case 8: return abs(v[0]);
          default: return square(v[0]);
        }
      });
      return;
    }
    Tensor<T> ta = g.tensor<T>(a, "a"), tb = g.tensor<T>(b, "b");
    if (op == 3) {  // keep divisors away from 0 unless they were drawn exotic
      for (auto& x : tb)
        if (std::abs(double(x)) < 0.1) x = T(0.5);
      g.note("divisor entries below 0.1 set to 0.5");
    }
    forward_backward<T>(g, {ta, tb}, out, [&](std::vector<Var<T>>& v) {
      switch (op) {
        case 0: return v[0] + v[1];
        case 1: return v[0] - v[1];
        case 2: return v[0] * v[1];
        default: return v[0] / v[1];
      }
    });
  });
}

template <class T>
void nn_ops(std::uint64_t seed) {
  prop::run("core/softmax, layer_norm, losses", seed, 500, [](prop::Gen& g) {
    const index_t n = g.extent(5), c = g.extent(5);
    const int op = g.pick(7);
    g.note("op (softmax log_softmax layer_norm layer_norm+affine ce ce_soft mse)", op);
    Tensor<T> x = g.tensor<T>(Shape{n, c}, "x");
    if (op <= 1) {
      forward_backward<T>(g, {x}, x.shape(), [&](std::vector<Var<T>>& v) { return op == 0 ? softmax(v[0]) : log_softmax(v[0]); });
      return;
    }
    if (op <= 3) {
      const double eps = g.real("eps", 1e-6, 1e-3, 0.1, [](double e) { return e >= 0 && std::isfinite(e); });
      // Known and left as documented behaviour (see the report of the property suite): eps = 0
      // is accepted, and a row of zero variance (any row of width 1) then normalises to 0/0 = NaN,
      // as in PyTorch. Not a finite-result case until layer_norm defines it or rejects eps = 0.
      if (eps == 0) g.set_exotic();
      if (op == 2) {
        forward_backward<T>(g, {x}, x.shape(), [&](std::vector<Var<T>>& v) { return layer_norm(v[0], real_t<T>(eps)); });
      } else {
        std::vector<Tensor<T>> in{x, g.tensor<T>(Shape{g.near(c, "gamma")}, "gamma"), g.tensor<T>(Shape{c}, "beta")};
        forward_backward<T>(g, in, x.shape(), [&](std::vector<Var<T>>& v) { return layer_norm(v[0], v[1], v[2], real_t<T>(eps)); });
      }
      return;
    }
    if (n == 0 || c == 0) g.set_must_fail("empty logits or predictions");
    CrossEntropyOptions o;
    if (op < 6) o.temperature = g.real("temperature", 0.5, 4, 0.1, [](double t) { return positive_in<real_t<T>>(t); });
    if (op == 4) {
      std::vector<int> labels(std::size_t(g.near(n, "labels")));
      for (auto& l : labels) l = int(g.chance(0.05) ? (g.chance(0.5) ? -1 : int(c)) : g.pick(int(std::max<index_t>(c, 1))));
      for (auto l : labels)
        if (l < 0 || l >= c) g.set_must_fail("label out of range");
      prop::Watch w;
      w.add(x, "logits");
      prop::check(g, w, [&] {
        Tape<T> tape;
        Var<T> xv = tape.variable(x);
        Var<T> l = cross_entropy(xv, labels, o);
        prop::expect_result(g, l.value(), Shape{});
        tape.backward(l);
        prop::expect_result(g, xv.grad(), x.shape());
      });
      return;
    }
    if (op == 5) {
      Tensor<T> t = g.tensor<T>(Shape{g.near(n, "soft target rows"), c}, "targets");
      for (auto& v : t) v = T(std::abs(double(v)));  // soft targets: non-negative rows
      forward_backward<T>(g, {x, t}, Shape{}, [&](std::vector<Var<T>>& v) { return cross_entropy(v[0], v[1], o); });
    } else {
      Tensor<T> t2 = g.tensor<T>(Shape{n, g.near(c, "target width")}, "target");
      forward_backward<T>(g, {x, t2}, Shape{}, [&](std::vector<Var<T>>& v) { return mse(v[0], v[1]); });
    }
  });
}

}  // namespace

TEST_CASE("property/core: matmul, matmul_nt, matmul_tn, linear on random, mismatched and empty shapes") {
  products<double>(11);
  products<float>(12);
}

TEST_CASE("property/core: sum, mean, max over random axes, empty axes and bad axes") {
  reductions<double>(21);
  reductions<float>(22);
}

TEST_CASE("property/core: broadcasting binary ops and unary ops") {
  elementwise<double>(31);
  elementwise<float>(32);
}

TEST_CASE("property/core: softmax, log_softmax, layer_norm, cross_entropy, mse") {
  nn_ops<double>(41);
  nn_ops<float>(42);
}

}  // namespace weft_unit_property_core_test
