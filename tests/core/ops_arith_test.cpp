// Tests of weft/core/autograd/functions/arith.hpp: add, sub, mul, div with NumPy broadcasting,
// their scalar forms and operators, and pow.
#include <doctest/doctest.h>

#include <cmath>
#include <complex>
#include <string>
#include <vector>

#include "core/ops_common.hpp"
#include "weft/core/autograd/functions/arith.hpp"

namespace weft_unit_core_ops_arith_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace wt = weft::test;

namespace {

enum class Op { add, sub, mul, div };
const char* name(Op op) {
  switch (op) {
    case Op::add: return "add";
    case Op::sub: return "sub";
    case Op::mul: return "mul";
    default: return "div";
  }
}
template <class T>
T apply(Op op, T x, T y) {
  switch (op) {
    case Op::add: return x + y;
    case Op::sub: return x - y;
    case Op::mul: return x * y;
    default: return x / y;
  }
}
template <class V>
V apply_var(Op op, const V& a, const V& b) {
  switch (op) {
    case Op::add: return weft::add(a, b);
    case Op::sub: return weft::sub(a, b);
    case Op::mul: return weft::mul(a, b);
    default: return weft::div(a, b);
  }
}

/// Reference broadcast: `out` is the expected result shape (given by the test, not computed by
/// weft); each operand index is the output index with stretched axes pinned to 0.
template <class T>
Tensor<T> ref_broadcast(Op op, const Tensor<T>& a, const Tensor<T>& b, const Shape& out) {
  auto pad = [](const Shape& s, index_t* d) {
    for (int k = 0; k < 4; ++k) d[k] = 1;
    for (int k = 0; k < s.rank(); ++k) d[4 - s.rank() + k] = s[k];
  };
  index_t da[4], db[4], dout[4];
  pad(a.shape(), da);
  pad(b.shape(), db);
  pad(out, dout);
  auto offset = [](const index_t* d, const index_t* idx) {
    index_t off = 0;
    for (int k = 0; k < 4; ++k) off = off * d[k] + (d[k] == 1 ? 0 : idx[k]);
    return off;
  };
  Tensor<T> r(out);
  index_t i[4], n = 0;
  for (i[0] = 0; i[0] < dout[0]; ++i[0])
    for (i[1] = 0; i[1] < dout[1]; ++i[1])
      for (i[2] = 0; i[2] < dout[2]; ++i[2])
        for (i[3] = 0; i[3] < dout[3]; ++i[3]) r.flat(n++) = apply(op, a.flat(offset(da, i)), b.flat(offset(db, i)));
  return r;
}

struct BroadcastCase {
  Shape a, b, out;
};
const std::vector<BroadcastCase>& broadcast_cases() {
  static const std::vector<BroadcastCase> cases = {
      {{3, 4}, {3, 4}, {3, 4}},                // same shape (flat fast path)
      {{3, 4}, {4}, {3, 4}},                   // bias row
      {{4}, {3, 4}, {3, 4}},                   // row on the left
      {{3, 4}, {3, 1}, {3, 4}},                // column
      {{3, 4}, {}, {3, 4}},                    // rank-0 scalar
      {{}, {3, 4}, {3, 4}},                    // scalar on the left
      {{3, 4}, {1}, {3, 4}},                   // one-element vector
      {{}, {}, {}},                            // two scalars
      {{2, 3, 4}, {3, 1}, {2, 3, 4}},          // rank 3 with a rank-2 column
      {{2, 1, 4}, {3, 1}, {2, 3, 4}},          // both operands stretch
      {{2, 3, 4, 5}, {3, 1, 5}, {2, 3, 4, 5}}, // rank 4 with rank 3
      {{2, 1, 4, 1}, {1, 3, 1, 5}, {2, 3, 4, 5}},
      {{1, 1, 1, 1}, {2, 3}, {1, 1, 2, 3}},    // rank grows to 4 through a size-1 operand
      {{0, 3}, {3}, {0, 3}},                   // empty result
      {{3, 1}, {1, 0}, {3, 0}},                // an extent of 0 stretches nothing
  };
  return cases;
}

/// Divisors away from zero: |b| in [0.5, 2] with random sign.
Tensor<double> divisor(const Shape& s, weft::Rng& rng) {
  Tensor<double> b = wt::rand_uniform<double>(s, rng, 0.5, 2.0);
  for (auto& x : b)
    if (rng.uniform() < 0.5) x = -x;
  return b;
}

const Op all_ops[] = {Op::add, Op::sub, Op::mul, Op::div};

}  // namespace

TEST_CASE("core/ops/arith: add, sub, mul, div match a reference under every broadcast pattern") {
  weft::Rng rng(11);
  for (Op op : all_ops)
    for (const auto& c : broadcast_cases()) {
      CAPTURE(name(op));
      CAPTURE(c.a);
      CAPTURE(c.b);
      Tensor<double> a = wt::randn<double>(c.a, rng), b = op == Op::div ? divisor(c.b, rng) : wt::randn<double>(c.b, rng);
      weft::Tape<double> tape;
      auto out = apply_var(op, tape.variable(a), tape.variable(b));
      CHECK(out.shape() == c.out);
      WEFT_CHECK_CLOSE(out.value(), ref_broadcast(op, a, b, c.out), 1e-15);
    }
}

TEST_CASE("core/ops/arith: float32 spot checks against the float64 reference") {
  weft::Rng rng(12);
  for (Op op : all_ops)
    for (const auto& c : {broadcast_cases()[1], broadcast_cases()[10]}) {
      CAPTURE(name(op));
      Tensor<double> a = wt::randn<double>(c.a, rng), b = divisor(c.b, rng);
      weft::Tape<float> tape;
      auto out = apply_var(op, tape.variable(a.cast<float>()), tape.variable(b.cast<float>()));
      WEFT_CHECK_CLOSE(out.value().cast<double>(), ref_broadcast(op, a, b, c.out), 1e-6);
    }
}

TEST_CASE("core/ops/arith: gradients of add, sub, mul, div under broadcasting (central differences)") {
  weft::Rng rng(13);
  for (Op op : all_ops)
    for (const auto& c : broadcast_cases()) {
      CAPTURE(name(op));
      CAPTURE(c.a);
      CAPTURE(c.b);
      Tensor<double> a = wt::randn<double>(c.a, rng), b = divisor(c.b, rng);
      auto f = [op](auto&, const auto& v) { return apply_var(op, v[0], v[1]); };
      WEFT_CHECK_GRAD(weft::grad_check(f, {a, b}));
      WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {a, b}));
    }
}

TEST_CASE("core/ops/arith: add broadcasts a bias row and sums its gradient over the rows") {
  weft::Tape<double> tape;
  auto x = tape.variable(Tensor<double>::from_values({1, 2, 3, 4, 5, 6}, {2, 3}));
  auto b = tape.variable(Tensor<double>::vector_of({10, 20, 30}));
  auto y = x + b;
  WEFT_CHECK_CLOSE(y.value(), Tensor<double>::from_values({11, 22, 33, 14, 25, 36}, {2, 3}), 0.0);
  tape.backward(y, Tensor<double>::from_values({1, 2, 3, 4, 5, 6}, {2, 3}));
  WEFT_CHECK_CLOSE(b.grad(), Tensor<double>::vector_of({5, 7, 9}), 0.0);
  WEFT_CHECK_CLOSE(x.grad(), Tensor<double>::from_values({1, 2, 3, 4, 5, 6}, {2, 3}), 0.0);
}

TEST_CASE("core/ops/arith: mul scales columns and sums the column factor's gradient") {
  weft::Tape<double> tape;
  auto x = tape.variable(Tensor<double>::from_values({1, 2, 3, 4, 5, 6}, {2, 3}));
  auto s = tape.variable(Tensor<double>::from_values({2, -1}, {2, 1}));
  auto y = x * s;
  WEFT_CHECK_CLOSE(y.value(), Tensor<double>::from_values({2, 4, 6, -4, -5, -6}, {2, 3}), 0.0);
  tape.backward(y, Tensor<double>::ones({2, 3}));
  WEFT_CHECK_CLOSE(s.grad(), Tensor<double>::from_values({6, 15}, {2, 1}), 0.0);
  WEFT_CHECK_CLOSE(x.grad(), Tensor<double>::from_values({2, 2, 2, -1, -1, -1}, {2, 3}), 0.0);
}

TEST_CASE("core/ops/arith: scalar forms and operators match a reference with exact gradients") {
  weft::Rng rng(14);
  const Tensor<double> a = wt::rand_uniform<double>({3, 4}, rng, 0.5, 2.0);
  struct Case {
    const char* name;
    double (*ref)(double);
    double (*dref)(double);
  };
  // each case is applied below through a generic lambda with the same index
  const Case cases[] = {
      {"a + 2.5", [](double x) { return x + 2.5; }, [](double) { return 1.0; }},
      {"2.5 + a", [](double x) { return 2.5 + x; }, [](double) { return 1.0; }},
      {"a - 2.5", [](double x) { return x - 2.5; }, [](double) { return 1.0; }},
      {"2.5 - a", [](double x) { return 2.5 - x; }, [](double) { return -1.0; }},
      {"a * -3", [](double x) { return x * -3.0; }, [](double) { return -3.0; }},
      {"-3 * a", [](double x) { return -3.0 * x; }, [](double) { return -3.0; }},
      {"a / 4", [](double x) { return x / 4.0; }, [](double) { return 0.25; }},
      {"3 / a", [](double x) { return 3.0 / x; }, [](double x) { return -3.0 / (x * x); }},
      {"add(a, 1)", [](double x) { return x + 1.0; }, [](double) { return 1.0; }},
      {"mul(a, 2)", [](double x) { return x * 2.0; }, [](double) { return 2.0; }},
      {"rsub(1, a)", [](double x) { return 1.0 - x; }, [](double) { return -1.0; }},
      {"rdiv(2, a)", [](double x) { return 2.0 / x; }, [](double x) { return -2.0 / (x * x); }},
      {"pow(a, 2)", [](double x) { return x * x; }, [](double x) { return 2 * x; }},
      {"pow(a, 0.5)", [](double x) { return std::sqrt(x); }, [](double x) { return 0.5 / std::sqrt(x); }},
      {"pow(a, -1.5)", [](double x) { return std::pow(x, -1.5); }, [](double x) { return -1.5 * std::pow(x, -2.5); }},
      {"pow(a, 0)", [](double) { return 1.0; }, [](double) { return 0.0; }},
  };
  auto f_of = [](int k) {
    return [k](auto&, const auto& v) {
      const auto& x = v[0];
      switch (k) {
        case 0: return x + 2.5;
        case 1: return 2.5 + x;
        case 2: return x - 2.5;
        case 3: return 2.5 - x;
        case 4: return x * -3.0;
        case 5: return -3.0 * x;
        case 6: return x / 4.0;
        case 7: return 3.0 / x;
        case 8: return weft::add(x, 1.0);
        case 9: return weft::mul(x, 2.0);
        case 10: return weft::rsub(1.0, x);
        case 11: return weft::rdiv(2.0, x);
        case 12: return weft::pow(x, 2.0);
        case 13: return weft::pow(x, 0.5);
        case 14: return weft::pow(x, -1.5);
        default: return weft::pow(x, 0.0);
      }
    };
  };
  for (int k = 0; k < int(sizeof(cases) / sizeof(cases[0])); ++k) {
    CAPTURE(cases[k].name);
    auto f = f_of(k);
    Tensor<double> ref(a.shape()), dref(a.shape());
    for (index_t i = 0; i < a.numel(); ++i) {
      ref.flat(i) = cases[k].ref(a.flat(i));
      dref.flat(i) = cases[k].dref(a.flat(i));
    }
    WEFT_CHECK_CLOSE(wt::forward(f, {a}), ref, 1e-15);
    auto g = wt::gradients(f, {a}, Tensor<double>::ones(a.shape()));
    WEFT_CHECK_CLOSE(g[0], dref, 1e-14);
    WEFT_CHECK_GRAD(weft::grad_check(f, {a}));
    WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {a}));
    // float32 spot check
    weft::Tape<float> tf;
    std::vector<weft::Var<float>> vf = {tf.variable(a.cast<float>())};
    WEFT_CHECK_CLOSE(f(tf, vf).value().cast<double>(), ref, 2e-6);
  }
}

TEST_CASE("core/ops/arith: pow of a negative base with an integer exponent, and NaN as std::pow") {
  const Tensor<double> a = Tensor<double>::vector_of({-2.0, -0.5, 1.5});
  auto cube = [](auto&, const auto& v) { return weft::pow(v[0], 3.0); };
  WEFT_CHECK_CLOSE(wt::forward(cube, {a}), Tensor<double>::vector_of({-8.0, -0.125, 3.375}), 1e-15);
  WEFT_CHECK_CLOSE(wt::gradients(cube, {a}, Tensor<double>::ones({3}))[0],
                   Tensor<double>::vector_of({12.0, 0.75, 6.75}), 1e-14);
  WEFT_CHECK_GRAD(weft::grad_check(cube, {a}));
  auto root = [](auto&, const auto& v) { return weft::pow(v[0], 0.5); };
  Tensor<double> y = wt::forward(root, {a});
  CHECK(std::isnan(y.flat(0)));
  CHECK(std::isnan(y.flat(1)));
  CHECK(y.flat(2) == doctest::Approx(std::sqrt(1.5)));
}

TEST_CASE("core/ops/arith: pow at zero: x^0 has gradient 0, x^1 gradient 1, x^2 gradient 0") {
  const Tensor<double> z = Tensor<double>::vector_of({0.0, 2.0});
  const Tensor<double> ones = Tensor<double>::ones({2});
  struct Case {
    double p;
    std::vector<double> y, dy;
  };
  for (const Case& c : {Case{0.0, {1, 1}, {0, 0}}, Case{1.0, {0, 2}, {1, 1}}, Case{2.0, {0, 4}, {0, 4}}}) {
    CAPTURE(c.p);
    auto f = [p = c.p](auto&, const auto& v) { return weft::pow(v[0], p); };
    WEFT_CHECK_CLOSE(wt::forward(f, {z}), Tensor<double>::vector_of(c.y), 0.0);
    const Tensor<double> g = wt::gradients(f, {z}, ones)[0];
    CHECK(g.all_finite());
    WEFT_CHECK_CLOSE(g, Tensor<double>::vector_of(c.dy), 0.0);
  }
}

TEST_CASE("core/ops/arith: an operand used twice gets both contributions") {
  weft::Rng rng(15);
  const Tensor<double> x = wt::rand_uniform<double>({2, 3}, rng, 0.5, 2.0);
  weft::Tape<double> tape;
  auto v = tape.variable(x);
  // x*x + x/x + (x - x) + (x + x): gradient 2x + 0 + 0 + 2
  auto y = weft::mul(v, v) + weft::div(v, v) + weft::sub(v, v) + weft::add(v, v);
  tape.backward(y, Tensor<double>::ones(x.shape()));
  Tensor<double> expected = x.clone();
  expected.array() = 2.0 * x.array() + 2.0;
  WEFT_CHECK_CLOSE(v.grad(), expected, 1e-15);
  // a broadcast operand used on both sides: (3) * (2, 3) + (3)
  weft::Tape<double> t2;
  auto b = t2.variable(Tensor<double>::vector_of({1, 2, 3}));
  auto m = t2.variable(x);
  auto z = b * m + b;
  t2.backward(z, Tensor<double>::ones({2, 3}));
  Tensor<double> gb(Shape{3});
  for (index_t j = 0; j < 3; ++j) gb.flat(j) = x(0, j) + x(1, j) + 2.0;
  WEFT_CHECK_CLOSE(b.grad(), gb, 1e-15);
}

TEST_CASE("core/ops/arith: tape semantics (accumulation, constants, no_grad) of every op") {
  weft::Rng rng(16);
  const Tensor<double> a = wt::randn<double>({2, 3, 4}, rng), b = divisor({3, 1}, rng);
  for (Op op : all_ops) {
    CAPTURE(name(op));
    wt::check_tape_semantics([op](auto&, const auto& v) { return apply_var(op, v[0], v[1]); }, {a, b});
  }
  wt::check_tape_semantics([](auto&, const auto& v) { return 2.0 - v[0] / 3.0 + 1.0; }, {a});
  wt::check_tape_semantics([](auto&, const auto& v) { return weft::rdiv(1.0, v[0]); }, {b});
  wt::check_tape_semantics([](auto&, const auto& v) { return weft::pow(v[0], 3.0); }, {a});
}

TEST_CASE("core/ops/arith: shapes that do not broadcast raise ShapeError naming the op") {
  weft::Rng rng(17);
  const std::vector<std::pair<Shape, Shape>> bad = {
      {{3, 4}, {3, 5}}, {{3, 4}, {3}}, {{2, 3, 4}, {2, 4}}, {{2, 3, 4, 5}, {3, 4, 4}}, {{4, 1}, {2, 3, 1}},
  };
  for (Op op : all_ops)
    for (const auto& s : bad) {
      CAPTURE(name(op));
      CAPTURE(s.first);
      CAPTURE(s.second);
      Tensor<double> a = wt::randn<double>(s.first, rng), b = wt::randn<double>(s.second, rng);
      wt::Snapshot<double> snap{a, b};
      weft::Tape<double> tape;
      auto va = tape.variable(a), vb = tape.variable(b);
      const std::size_t nodes = tape.size();
      const std::string func = std::string("weft::") + name(op);
      CHECK_THROWS_WITH_AS(apply_var(op, va, vb), doctest::Contains(func.c_str()), weft::ShapeError);
      CHECK_THROWS_WITH_AS(apply_var(op, vb, va), doctest::Contains("expected broadcastable shapes"),
                           weft::ShapeError);
      CHECK(tape.size() == nodes);
      CHECK(snap.unchanged());
    }
}

TEST_CASE("core/ops/arith: operands on different tapes or empty Vars raise ConfigError") {
  const Tensor<double> a = Tensor<double>::ones({2, 2});
  weft::Tape<double> t1, t2;
  auto x = t1.variable(a), y = t2.variable(a);
  for (Op op : all_ops) {
    CAPTURE(name(op));
    const std::string func = std::string("weft::") + name(op);
    CHECK_THROWS_WITH_AS(apply_var(op, x, y), doctest::Contains(func.c_str()), weft::ConfigError);
    CHECK_THROWS_AS(apply_var(op, x, weft::Var<double>()), weft::ConfigError);
    CHECK_THROWS_AS(apply_var(op, weft::Var<double>(), x), weft::ConfigError);
  }
  CHECK_THROWS_AS(weft::Var<double>() + 1.0, weft::ConfigError);
  CHECK_THROWS_AS(weft::pow(weft::Var<double>(), 2.0), weft::ConfigError);
  // a Var of a tape that has been reset is stale
  auto z = t1.variable(a);
  t1.reset();
  CHECK_THROWS_WITH_AS(z * 2.0, doctest::Contains("stale"), weft::ConfigError);
  CHECK(t1.size() == 0);
  CHECK(wt::identical(a, Tensor<double>::ones({2, 2})));
}

TEST_CASE("core/ops/arith: division by zero follows IEEE") {
  weft::Tape<double> tape;
  auto a = tape.variable(Tensor<double>::vector_of({1.0, -1.0, 0.0}));
  auto z = tape.variable(Tensor<double>::vector_of({0.0, 0.0, 0.0}));
  auto q = a / z;
  CHECK(q.value().flat(0) == INFINITY);
  CHECK(q.value().flat(1) == -INFINITY);
  CHECK(std::isnan(q.value().flat(2)));
  auto r = 1.0 / z;
  CHECK(r.value().flat(0) == INFINITY);
}

}  // namespace weft_unit_core_ops_arith_test
