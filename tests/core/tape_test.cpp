// Tests of weft/core/autograd/{arena,tape,parameter}.hpp: the arena, an iterative backward over
// very long chains, allocation-free reuse of a tape, += accumulation, parameters, no_grad /
// enable_grad / detach, misuse errors (second backward, stale and foreign Vars), custom ops
// through Tape::record (straight-through estimator, frozen mask) and closure lifetimes.
#include <doctest/doctest.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "core/core_test_helpers.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd.hpp"

namespace weft_unit_core_tape_test {

using weft::index_t;
using weft::Parameter;
using weft::Shape;
using weft::Tape;
using weft::Tensor;
using weft::Var;

namespace {

/// Straight-through estimator: y = round(x), dy/dx taken as 1.
template <class T>
Var<T> ste_round(const Var<T>& x) {
  Tape<T>& t = x.tape();
  Tensor<T> out = t.alloc_uninit(x.shape());
  for (index_t i = 0; i < out.numel(); ++i) out.flat(i) = std::round(x.value().flat(i));
  return t.record(out, {x}, [x](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gx = tp.grad_sink(x)) gx->array() += g.array();
  });
}

/// Frozen mask: y = x * m with m a fixed 0/1 tensor; the gradient is g * m (masked entries
/// get none). The mask is captured by handle (owned storage) in the closure.
template <class T>
Var<T> frozen_mask(const Var<T>& x, const Tensor<T>& mask) {
  Tape<T>& t = x.tape();
  Tensor<T> out = t.alloc_uninit(x.shape());
  out.array() = x.value().array() * mask.array();
  return t.record(out, {x}, [x, mask](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* gx = tp.grad_sink(x)) gx->array() += g.array() * mask.array();
  });
}

Tensor<double> vec(std::initializer_list<double> v) { return Tensor<double>::vector_of(v); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// arena

TEST_CASE("core/autograd/arena: blocks coalesce on reset and capacity stops growing") {
  weft::detail::Arena arena(4096);
  CHECK(arena.capacity() == 0);
  CHECK(arena.blocks() == 0);

  auto step = [&] {
    std::vector<void*> ps;
    for (int i = 0; i < 40; ++i) ps.push_back(arena.allocate(1000 + std::size_t(i)));
    return ps;
  };
  std::vector<void*> first = step();
  CHECK(arena.blocks() > 1);
  const std::size_t cap1 = arena.capacity();
  CHECK(cap1 >= 40 * 1000);
  for (void* p : first) CHECK(weft::core_test::aligned_to(p, 64));

  arena.reset();
  CHECK(arena.blocks() == 1);
  CHECK(arena.capacity() == cap1);  // one block of the total size
  CHECK(arena.used() == 0);

  std::size_t cap = 0;
  for (int s = 0; s < 20; ++s) {
    step();
    CHECK(arena.blocks() == 1);
    if (s == 0) cap = arena.capacity();
    CHECK(arena.capacity() == cap);
    arena.reset();
  }
  CHECK(cap == cap1);
}

TEST_CASE("core/autograd/arena: alignment, used() and oversized requests") {
  weft::detail::Arena arena(10);  // clamped to 4096
  void* a = arena.allocate(100, 64);
  CHECK(arena.capacity() == 4096);
  CHECK(weft::core_test::aligned_to(a, 64));
  void* b = arena.allocate(10, 64);
  CHECK(weft::core_test::aligned_to(b, 64));
  CHECK(static_cast<unsigned char*>(b) - static_cast<unsigned char*>(a) == 128);
  CHECK(arena.used() == 138);
  void* c = arena.allocate(3, 8);
  CHECK(weft::core_test::aligned_to(c, 8));
  CHECK(arena.used() == 147);
  void* z1 = arena.allocate(0);
  void* z2 = arena.allocate(0);
  CHECK(z1 != nullptr);
  CHECK(z1 != z2);

  void* big = arena.allocate(100000);  // larger than the doubled block: its own block
  CHECK(arena.blocks() == 2);
  CHECK(arena.capacity() >= 4096 + 100000);
  std::memset(big, 1, 100000);
  arena.reset();
  CHECK(arena.blocks() == 1);
  void* again = arena.allocate(100);
  CHECK(weft::core_test::aligned_to(again, 64));
  CHECK(arena.used() == 100);
}

// ---------------------------------------------------------------------------------------------
// backward

TEST_CASE("core/autograd/tape: a 100000-node chain runs backward iteratively") {
  const int n = 100000;
  {
    Tape<double> tape;
    Var<double> x = tape.variable(Tensor<double>::scalar(1.0));
    Var<double> y = x;
    for (int i = 0; i < n; ++i) y = y * 1.0001;
    CHECK(tape.size() == std::size_t(n) + 1);
    tape.backward(y);
    const double expected = std::pow(1.0001, n);
    CHECK(y.item() == doctest::Approx(expected).epsilon(1e-9));
    CHECK(x.grad().item() == doctest::Approx(expected).epsilon(1e-9));
  }
  {
    Tape<double> tape;
    Var<double> x = tape.variable(Tensor<double>::scalar(0.5));
    Var<double> z = x;
    for (int i = 0; i < n; ++i) z = z + x;  // x is used n + 1 times
    tape.backward(z);
    CHECK(z.item() == doctest::Approx(0.5 * (n + 1)));
    CHECK(x.grad().item() == double(n + 1));
  }
}

TEST_CASE("core/autograd/tape: gradients accumulate with += when a value is used twice") {
  Tape<double> tape;
  Var<double> x = tape.variable(vec({1.0, -2.0, 3.0}));
  Var<double> y = weft::sum(x * x + x);
  tape.backward(y);
  WEFT_CHECK_CLOSE(x.grad(), vec({3.0, -3.0, 7.0}), 1e-15);  // 2x + 1

  tape.reset();
  Var<double> u = tape.variable(vec({0.5, 1.5}));
  Var<double> e = weft::exp(u);
  Var<double> d = weft::sum(e * e + u + u);  // diamond through e, plus u twice
  tape.backward(d);
  WEFT_CHECK_CLOSE(u.grad(), vec({2 * std::exp(1.0) + 2, 2 * std::exp(3.0) + 2}), 1e-14);
  WEFT_CHECK_CLOSE(e.grad(), vec({2 * std::exp(0.5), 2 * std::exp(1.5)}), 1e-14);
}

TEST_CASE("core/autograd/tape: backward visits only the graph below the root") {
  Tape<double> tape;
  Var<double> x = tape.variable(vec({1.0, 2.0}));
  Var<double> c = tape.constant(vec({3.0, 4.0}));
  Var<double> unused = tape.variable(vec({5.0}));
  Var<double> root = weft::sum(x * c);
  Var<double> after = weft::sum(x * x);  // recorded after the root: ignored
  tape.backward(root);
  WEFT_CHECK_CLOSE(x.grad(), vec({3.0, 4.0}), 0.0);
  CHECK_FALSE(c.grad().defined());       // constants get no gradient
  CHECK_FALSE(unused.grad().defined());  // no gradient reached it
  CHECK_FALSE(after.grad().defined());
  CHECK(root.grad().item() == 1.0);
  CHECK_FALSE(c.requires_grad());
  CHECK(x.requires_grad());
  CHECK(root.requires_grad());
}

TEST_CASE("core/autograd/tape: backward with a seed, and root checks") {
  Tape<double> tape;
  Var<double> x = tape.variable(vec({1.0, 2.0, 3.0}));
  Var<double> y = x * x;
  WEFT_CHECK_FAILS(tape.backward(y), weft::ShapeError, "Tape::backward");  // not a scalar
  WEFT_CHECK_FAILS(tape.backward(y, vec({1.0, 1.0})), weft::ShapeError, "Tape::backward");
  tape.backward(y, vec({1.0, 0.0, -1.0}));
  WEFT_CHECK_CLOSE(x.grad(), vec({2.0, 0.0, -6.0}), 0.0);

  tape.reset();
  Var<double> k = tape.constant(Tensor<double>::scalar(2.0));
  tape.backward(weft::exp(k));  // nothing requires a gradient: a no-op
  CHECK_FALSE(k.grad().defined());
}

TEST_CASE("core/autograd/tape: a second backward without reset is a ConfigError") {
  Tape<double> tape;
  Var<double> x = tape.variable(Tensor<double>::scalar(3.0));
  Var<double> y = x * x;
  tape.backward(y);
  CHECK(x.grad().item() == 6.0);
  WEFT_CHECK_FAILS(tape.backward(y), weft::ConfigError, "Tape::backward");
  CHECK(x.grad().item() == 6.0);  // unchanged by the refused call
  tape.reset();
  Var<double> x2 = tape.variable(Tensor<double>::scalar(3.0));
  tape.backward(x2 * x2 * x2);
  CHECK(x2.grad().item() == 27.0);
}

// ---------------------------------------------------------------------------------------------
// reuse: no allocation growth

TEST_CASE("core/autograd/tape: 1000 training steps on one tape stop growing its storage") {
  weft::Rng rng(8);
  Parameter<double> w(weft::test::randn<double>(Shape{8, 4}, rng, 0.0, 0.5), "w");
  Parameter<double> b(Tensor<double>(Shape{8}), "b");
  const Tensor<double> x = weft::test::randn<double>(Shape{16, 4}, rng);
  const Tensor<double> target = weft::test::rand_uniform<double>(Shape{16, 8}, rng, -0.5, 0.5);

  Tape<double> tape(4096);  // small first block: the first step needs several
  std::size_t arena_cap = 0, node_cap = 0, used = 0;
  double first_loss = 0, last_loss = 0;
  for (int step = 0; step < 1000; ++step) {
    tape.reset();
    Var<double> xv = tape.constant(x), tv = tape.constant(target);
    Var<double> h = weft::tanh(weft::linear(xv, tape.param(w), tape.param(b)));
    Var<double> loss = weft::mean(weft::square(h - tv));
    tape.backward(loss);
    w.value().array() -= 0.5 * w.grad().array();
    b.value().array() -= 0.5 * b.grad().array();
    w.zero_grad();
    b.zero_grad();
    if (step == 0) first_loss = loss.item();
    last_loss = loss.item();
    if (step == 2) {
      arena_cap = tape.arena_capacity();
      node_cap = tape.node_capacity();
      used = tape.arena_used();
    } else if (step > 2) {
      if (tape.arena_capacity() != arena_cap || tape.node_capacity() != node_cap || tape.arena_used() != used) {
        FAIL_CHECK("storage changed at step ", step, ": arena ", tape.arena_capacity(), " (was ", arena_cap,
                   "), nodes ", tape.node_capacity(), " (was ", node_cap, ")");
        break;
      }
    }
  }
  CHECK(arena_cap > 4096);
  CHECK(tape.arena_capacity() == arena_cap);
  CHECK(tape.node_capacity() == node_cap);
  CHECK(last_loss < 0.5 * first_loss);  // it did train
}

TEST_CASE("core/autograd/tape: value() and grad() references stay valid while more ops are recorded") {
  Tape<double> tape;
  Var<double> x = tape.variable(Tensor<double>::vector_of({1, 2, 3}));
  const Tensor<double>& xv = x.value();  // held across thousands of ops (ASan checks the reads)
  const Tensor<double>* address = &xv;
  Var<double> acc = x;
  for (int i = 0; i < 5000; ++i) acc = acc + tape.constant(Tensor<double>::vector_of({0, 0, 1e-3}));
  CHECK(&x.value() == address);
  CHECK(xv(0) == 1.0);
  CHECK(xv(2) == 3.0);
  Var<double> loss = weft::sum(acc * acc);
  const Tensor<double>& g = x.grad();  // undefined until backward, the same object after it
  tape.backward(loss);
  CHECK(&x.grad() == &g);
  CHECK(g(2) == doctest::Approx(2 * (3 + 5.0)));
  // a detached copy of a node's value recorded after many nodes still reads the same data
  Var<double> d = tape.detach(x);
  CHECK(d.value().data() == xv.data());
}

// ---------------------------------------------------------------------------------------------
// parameters

TEST_CASE("core/autograd/tape: Parameter leaves accumulate into Parameter::grad across resets") {
  Parameter<double> p(vec({1.0, 2.0, 3.0}), "p");
  Parameter<double> alias = p;  // a handle to the same state
  CHECK(alias == p);
  CHECK(p.name() == "p");
  CHECK(p.grad().shape() == Shape{3});
  Tape<double> tape;

  Var<double> pv = tape.param(p);
  CHECK(pv.value().same_storage(p.value()));  // no copy
  tape.backward(weft::sum(pv * pv));
  WEFT_CHECK_CLOSE(p.grad(), vec({2.0, 4.0, 6.0}), 0.0);
  CHECK(pv.grad().same_storage(p.grad()));
  tape.reset();
  WEFT_CHECK_CLOSE(p.grad(), vec({2.0, 4.0, 6.0}), 0.0);  // survives the reset

  // a second step adds to it; binding the parameter twice adds both contributions
  Var<double> a = tape.param(p), c = tape.param(alias);
  tape.backward(weft::sum(a * 3.0 + c));
  WEFT_CHECK_CLOSE(alias.grad(), vec({6.0, 8.0, 10.0}), 0.0);
  tape.reset();
  p.zero_grad();
  WEFT_CHECK_CLOSE(p.grad(), vec({0.0, 0.0, 0.0}), 0.0);

  // frozen parameters (requires_grad false) and parameters bound under no_grad get nothing
  Parameter<double> frozen(vec({1.0}), "frozen", false);
  Var<double> fv = tape.param(frozen);
  CHECK_FALSE(fv.requires_grad());
  Var<double> pv2;
  {
    weft::no_grad ng;
    pv2 = tape.param(p);
  }
  CHECK_FALSE(pv2.requires_grad());
  Var<double> q = tape.param(p);
  tape.backward(weft::sum(fv * q + pv2 * q));
  CHECK(frozen.grad()(0) == 0.0);
  WEFT_CHECK_CLOSE(p.grad(), vec({2.0, 3.0, 4.0}), 0.0);  // only through q: fv + p

  WEFT_CHECK_FAILS(tape.param(Parameter<double>()), weft::ConfigError, "Tape::param");
  WEFT_CHECK_FAILS(Parameter<double>().value(), weft::ConfigError, "Parameter");
  WEFT_CHECK_FAILS(Parameter<double>(Tensor<double>()), weft::ShapeError, "Parameter");
}

TEST_CASE("core/autograd/parameter: set_value keeps or reallocates the gradient") {
  Parameter<float> p(Tensor<float>::full(Shape{2, 2}, 1.0f));
  p.grad().fill(5.0f);
  p.set_value(Tensor<float>::full(Shape{2, 2}, 2.0f));
  CHECK(p.grad()(1, 1) == 5.0f);  // same shape: kept
  Parameter<float> other = p;
  p.set_value(Tensor<float>::full(Shape{3}, 3.0f));
  CHECK(other.shape() == Shape{3});  // every handle sees it
  CHECK(other.grad().shape() == Shape{3});
  CHECK(other.grad()(2) == 0.0f);
  CHECK(other.numel() == 3);
  p.set_requires_grad(false);
  CHECK_FALSE(other.requires_grad());
  p.set_name("renamed");
  CHECK(other.name() == "renamed");
  CHECK(p.id() == other.id());
  CHECK(p != Parameter<float>(Tensor<float>(Shape{1})));
  WEFT_CHECK_FAILS(p.set_value(Tensor<float>()), weft::ShapeError, "Parameter::set_value");
  CHECK(p.value()(0) == 3.0f);
}

// ---------------------------------------------------------------------------------------------
// no_grad, enable_grad, detach

TEST_CASE("core/autograd/tape: no_grad and enable_grad nest and restore") {
  CHECK(weft::is_grad_enabled());
  {
    weft::no_grad a;
    CHECK_FALSE(weft::is_grad_enabled());
    {
      weft::enable_grad e;
      CHECK(weft::is_grad_enabled());
      {
        weft::no_grad b;
        CHECK_FALSE(weft::is_grad_enabled());
        weft::no_grad c;
        CHECK_FALSE(weft::is_grad_enabled());
      }
      CHECK(weft::is_grad_enabled());
    }
    CHECK_FALSE(weft::is_grad_enabled());
    // the mode is per thread
    bool other_thread = false;
    std::thread t([&] { other_thread = weft::is_grad_enabled(); });
    t.join();
    CHECK(other_thread);
  }
  CHECK(weft::is_grad_enabled());
}

TEST_CASE("core/autograd/tape: ops under no_grad record no backward") {
  Tape<double> tape;
  Var<double> x = tape.variable(vec({1.0, 2.0}));
  Var<double> y;
  auto token = std::make_shared<int>(0);
  {
    weft::no_grad ng;
    Var<double> inner = tape.variable(vec({1.0}));
    CHECK_FALSE(inner.requires_grad());
    y = x * x;
    CHECK_FALSE(y.requires_grad());
    Var<double> r = tape.record(vec({0.0}), {x}, [token](Tape<double>&, const Tensor<double>&) {});
    CHECK_FALSE(r.requires_grad());
    CHECK(token.use_count() == 1);  // the closure was not kept
    {
      weft::enable_grad eg;
      Var<double> z = x * 2.0;
      CHECK(z.requires_grad());
    }
  }
  Var<double> loss = weft::sum(y + x);
  tape.backward(loss);
  WEFT_CHECK_CLOSE(x.grad(), vec({1.0, 1.0}), 0.0);  // only the direct path
}

TEST_CASE("core/autograd/tape: detach stops the gradient and shares the value") {
  Tape<double> tape;
  Var<double> x = tape.variable(vec({1.0, -2.0}));
  Var<double> d = tape.detach(x);
  CHECK(d.value().same_storage(x.value()));
  CHECK_FALSE(d.requires_grad());
  tape.backward(weft::sum(d * x));
  WEFT_CHECK_CLOSE(x.grad(), vec({1.0, -2.0}), 0.0);  // x, not 2x
  CHECK_FALSE(d.grad().defined());

  tape.reset();
  Var<double> u = tape.variable(vec({3.0}));
  Var<double> s = weft::square(u);
  Var<double> loss = weft::sum(tape.detach(s) * u + s);
  tape.backward(loss);
  CHECK(u.grad()(0) == 9.0 + 6.0);
}

TEST_CASE("core/autograd/tape: leaves can be made from a node's own value while the tape grows") {
  // constant(v.value()) and detach(v) pass a reference into the tape's node storage, which
  // grows (and may move) while the new node is added
  Tape<double> tape;
  Var<double> v = tape.variable(vec({1.0, 2.0, 3.0}));
  const double* data = v.value().data();
  for (int i = 0; i < 300; ++i) {
    v = (i % 2) ? tape.detach(v) : tape.constant(v.value());
    CHECK(v.value().data() == data);
    CHECK(v.shape() == Shape{3});
  }
  CHECK(tape.size() == 301);
}

// ---------------------------------------------------------------------------------------------
// misuse

TEST_CASE("core/autograd/tape: stale, foreign and empty Vars are ConfigErrors") {
  Tape<double> tape, other;
  Var<double> x = tape.variable(vec({1.0, 2.0}));
  CHECK(x.defined());
  CHECK(x.generation() == 0);
  tape.reset();
  WEFT_CHECK_FAILS(x.value(), weft::ConfigError, "Tape");
  CHECK_THROWS_WITH(x.value(), doctest::Contains("a stale Var (the tape was reset)"));
  WEFT_CHECK_FAILS(x.grad(), weft::ConfigError, "Tape");
  WEFT_CHECK_FAILS(x * 2.0, weft::ConfigError, "Tape");
  WEFT_CHECK_FAILS(tape.backward(x), weft::ConfigError, "Tape");
  Var<double> fresh = tape.variable(vec({1.0, 2.0}));
  CHECK(fresh.generation() == 1);
  CHECK(fresh.id() == 0);
  WEFT_CHECK_FAILS(x.value(), weft::ConfigError, "Tape");  // same id, old generation

  Var<double> y = other.variable(vec({3.0, 4.0}));
  WEFT_CHECK_FAILS(tape.value(y), weft::ConfigError, "Tape");
  CHECK_THROWS_WITH(tape.value(y), doctest::Contains("a Var of another tape"));
  WEFT_CHECK_FAILS(fresh + y, weft::ConfigError, "add");
  WEFT_CHECK_FAILS(tape.record(vec({0.0}), {y}, [](Tape<double>&, const Tensor<double>&) {}), weft::ConfigError,
                   "Tape");
  WEFT_CHECK_FAILS(tape.backward(y), weft::ConfigError, "Tape");
  WEFT_CHECK_FAILS(tape.grad_sink(y), weft::ConfigError, "Tape");

  Var<double> empty;
  CHECK_FALSE(empty.defined());
  WEFT_CHECK_FAILS(empty.value(), weft::ConfigError, "Var::tape");
  WEFT_CHECK_FAILS(tape.value(empty), weft::ConfigError, "Tape");
  CHECK_THROWS_WITH(tape.value(empty), doctest::Contains("an empty Var"));

  WEFT_CHECK_FAILS(tape.variable(Tensor<double>()), weft::ShapeError, "Tape::record");
  WEFT_CHECK_FAILS(tape.constant(Tensor<double>()), weft::ShapeError, "Tape::record");
  CHECK(tape.size() == 1);  // failed calls recorded nothing
}

// ---------------------------------------------------------------------------------------------
// custom ops

TEST_CASE("core/autograd/tape: a straight-through round() passes the gradient through") {
  Tape<double> tape;
  Var<double> x = tape.variable(vec({0.3, 1.7, -2.6}));
  Var<double> w = tape.constant(vec({1.0, 2.0, 3.0}));
  Var<double> r = ste_round(x);
  WEFT_CHECK_CLOSE(r.value(), vec({0.0, 2.0, -3.0}), 0.0);
  Var<double> loss = weft::sum(r * w);
  CHECK(loss.item() == -5.0);
  tape.backward(loss);
  WEFT_CHECK_CLOSE(x.grad(), vec({1.0, 2.0, 3.0}), 0.0);  // d/dx taken as identity
}

TEST_CASE("core/autograd/tape: a frozen mask blocks the gradient of masked entries") {
  Tape<double> tape;
  const Tensor<double> mask = vec({1.0, 0.0, 1.0, 0.0});
  Var<double> x = tape.variable(vec({0.5, -1.0, 2.0, 4.0}));
  Var<double> y = frozen_mask(x, mask);
  tape.backward(weft::sum(weft::square(y)));
  WEFT_CHECK_CLOSE(x.grad(), vec({1.0, 0.0, 4.0, 0.0}), 0.0);  // 2 x m

  // composed: mask then straight-through rounding
  tape.reset();
  Var<double> z = tape.variable(vec({0.4, 0.6, 1.4, 2.6}));
  tape.backward(weft::sum(ste_round(frozen_mask(z, mask)) * 3.0));
  WEFT_CHECK_CLOSE(z.grad(), vec({3.0, 0.0, 3.0, 0.0}), 0.0);
}

TEST_CASE("core/autograd/tape: record() hands the closure the output gradient and grad sinks") {
  Tape<double> tape;
  Var<double> a = tape.variable(vec({1.0, 2.0}));
  Var<double> k = tape.constant(vec({5.0, 7.0}));
  std::vector<double> seen;
  bool k_sink_null = false;
  const std::int32_t* aligned_ok = nullptr;
  // y = 10 a + k, written by hand
  Tensor<double> out = tape.alloc_uninit(Shape{2});
  out.array() = 10.0 * a.value().array() + k.value().array();
  Var<double> y = tape.record(out, {a, k}, [&, a, k](Tape<double>& tp, const Tensor<double>& g) {
    seen.assign(g.begin(), g.end());
    k_sink_null = tp.grad_sink(k) == nullptr;
    Tensor<double>* ga = tp.grad_sink(a);
    REQUIRE(ga != nullptr);
    CHECK(ga->shape() == Shape{2});
    ga->array() += 10.0 * g.array();
    // scratch memory from the arena, valid during backward
    auto* idx = static_cast<std::int32_t*>(tp.alloc_bytes(16 * sizeof(std::int32_t), alignof(std::int32_t)));
    idx[15] = 1;
    aligned_ok = idx;
  });
  tape.backward(y, vec({0.5, -1.0}));
  CHECK(seen == std::vector<double>{0.5, -1.0});
  CHECK(k_sink_null);
  WEFT_CHECK_CLOSE(a.grad(), vec({5.0, -10.0}), 0.0);
  REQUIRE(aligned_ok != nullptr);
  CHECK(weft::core_test::aligned_to(aligned_ok, alignof(std::int32_t)));

  // record_range over a vector of inputs: y = sum of the inputs
  tape.reset();
  std::vector<Var<double>> xs;
  for (int i = 0; i < 5; ++i) xs.push_back(tape.variable(Tensor<double>::scalar(double(i))));
  Tensor<double> s = tape.alloc(Shape{});
  for (auto& v : xs) s.flat(0) += v.item();
  Var<double> sum = tape.record_range(s, xs.begin(), xs.end(), [xs](Tape<double>& tp, const Tensor<double>& g) {
    for (auto& v : xs) tp.grad_sink(v)->flat(0) += 2.0 * g.item();
  });
  tape.backward(sum);
  for (auto& v : xs) CHECK(v.grad().item() == 2.0);
}

TEST_CASE("core/autograd/tape: closures are destroyed on reset and with the tape") {
  auto token = std::make_shared<int>(1);
  const Tensor<double> owned = Tensor<double>::full(Shape{64}, 2.0);  // owned storage in the capture
  int runs = 0;
  {
    Tape<double> tape;
    Var<double> x = tape.variable(vec({1.0}));
    tape.record(vec({1.0}), {x}, [token, owned](Tape<double>&, const Tensor<double>&) {});
    CHECK(token.use_count() == 2);  // one copy lives in the arena
    Var<double> y = tape.record(vec({2.0}), {x}, [token, owned, &runs, x](Tape<double>& tp, const Tensor<double>& g) {
      ++runs;
      tp.grad_sink(x)->array() += g.array();
    });
    CHECK(token.use_count() == 3);
    tape.reset();
    CHECK(token.use_count() == 1);  // destroyed by reset, exactly once
    CHECK(runs == 0);

    // a closure whose inputs need no gradient is not kept at all
    Var<double> c = tape.constant(vec({1.0}));
    tape.record(vec({1.0}), {c}, [token](Tape<double>&, const Tensor<double>&) {});
    CHECK(token.use_count() == 1);

    // closures survive backward and live until reset or the tape's destruction
    Var<double> v = tape.variable(vec({1.0}));
    Var<double> w = tape.record(vec({3.0}), {v}, [token, owned, &runs, v](Tape<double>& tp, const Tensor<double>& g) {
      ++runs;
      tp.grad_sink(v)->array() += g.array();
    });
    (void)y;
    CHECK(token.use_count() == 2);
    Var<double> u = tape.record(vec({4.0}), {w}, [token, owned, &runs, w](Tape<double>& tp, const Tensor<double>& g) {
      ++runs;
      tp.grad_sink(w)->array() += g.array() * owned.flat(0);
    });
    CHECK(token.use_count() == 3);
    tape.backward(u);
    CHECK(runs == 2);
    CHECK(v.grad().item() == 2.0);
    CHECK(token.use_count() == 3);
  }  // the tape's destructor destroys the remaining closures
  CHECK(token.use_count() == 1);
  CHECK(owned(63) == 2.0);
}

// ---------------------------------------------------------------------------------------------
// misc

TEST_CASE("core/autograd/tape: Var accessors and arena tensors") {
  Tape<float> tape;
  const Tensor<float> data = Tensor<float>::full(Shape{2, 3}, 1.5f);
  Var<float> v = tape.variable(data);
  CHECK(v.value().same_storage(data));  // no copy
  CHECK(v.shape() == Shape{2, 3});
  CHECK(v.rank() == 2);
  CHECK(v.dim(-1) == 3);
  CHECK(v.numel() == 6);
  CHECK(&v.tape() == &tape);
  CHECK(tape.value(v).same_storage(data));
  CHECK(tape.requires_grad(v));
  Var<float> nv = tape.variable(data, false);
  CHECK_FALSE(nv.requires_grad());
  Var<float> s = tape.constant(Tensor<float>::scalar(4.0f));
  CHECK(s.item() == 4.0f);
  CHECK(tape.size() == 3);

  Tensor<float> z = tape.alloc(Shape{5, 7});
  CHECK(weft::core_test::aligned_to(z.data(), 64));
  CHECK_FALSE(z.owns_storage());
  bool zero = true;
  for (float f : z) zero = zero && f == 0.0f;
  CHECK(zero);
  CHECK(weft::core_test::aligned_to(tape.alloc_uninit(Shape{3}).data(), 64));
  CHECK(tape.arena_used() > 0);
}

TEST_CASE("core/autograd/tape: complex tapes use the holomorphic convention") {
  using C = std::complex<double>;
  Tape<C> tape;
  const C z0(1.0, 2.0);
  Var<C> z = tape.variable(Tensor<C>::scalar(z0));
  Var<C> y = z * z * z;  // f'(z) = 3 z^2, no conjugation
  tape.backward(y);
  const C g = z.grad().item();
  CHECK(std::abs(g - 3.0 * z0 * z0) < 1e-14);
}

}  // namespace weft_unit_core_tape_test
