// Tests of weft/core/autograd/functions/linalg.hpp (matmul, matmul_nt, matmul_tn, linear) and
// the GEMM kernels in weft/core/ops/matmul.hpp.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/ops_common.hpp"
#include "weft/core/autograd/functions/linalg.hpp"

namespace weft_unit_core_ops_linalg_test {

using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace wt = weft::test;

namespace {

enum class Mm { nn, nt, tn };
const Mm all_mm[] = {Mm::nn, Mm::nt, Mm::tn};
const char* name(Mm m) { return m == Mm::nn ? "matmul" : (m == Mm::nt ? "matmul_nt" : "matmul_tn"); }

template <class V>
V apply(Mm m, const V& a, const V& b) {
  switch (m) {
    case Mm::nn: return weft::matmul(a, b);
    case Mm::nt: return weft::matmul_nt(a, b);
    default: return weft::matmul_tn(a, b);
  }
}

/// Element (i, j) of op(X) for a row-major matrix X stored at p with `cols` columns.
double at(const double* p, index_t cols, bool trans, index_t i, index_t j) {
  return trans ? p[j * cols + i] : p[i * cols + j];
}

/// Reference product by a triple loop, batched over a leading axis of a (and of b if rank 3).
Tensor<double> ref_mm(Mm mode, const Tensor<double>& a, const Tensor<double>& b) {
  const bool ta = mode == Mm::tn, tb = mode == Mm::nt;
  const index_t batch = a.rank() == 3 ? a.dim(0) : 1;
  const index_t m = ta ? a.dim(-1) : a.dim(-2), k = ta ? a.dim(-2) : a.dim(-1);
  const index_t n = tb ? b.dim(-2) : b.dim(-1);
  Tensor<double> c(a.rank() == 3 ? Shape{batch, m, n} : Shape{m, n});
  for (index_t s = 0; s < batch; ++s) {
    const double* pa = a.data() + s * a.dim(-2) * a.dim(-1);
    const double* pb = b.data() + (b.rank() == 3 ? s * b.dim(-2) * b.dim(-1) : 0);
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) {
        double acc = 0;
        for (index_t l = 0; l < k; ++l) acc += at(pa, a.dim(-1), ta, i, l) * at(pb, b.dim(-1), tb, l, j);
        c.flat((s * m + i) * n + j) = acc;
      }
  }
  return c;
}

struct MmCase {
  Shape a, b;
};
/// Shapes for (m, k, n) = (3, 4, 5), batch 2, in the layout each mode expects.
std::vector<MmCase> cases(Mm mode) {
  auto A = [&](std::vector<index_t> lead, index_t m, index_t k) {
    lead.push_back(mode == Mm::tn ? k : m);
    lead.push_back(mode == Mm::tn ? m : k);
    return lead.size() == 2 ? Shape{lead[0], lead[1]} : Shape{lead[0], lead[1], lead[2]};
  };
  auto B = [&](std::vector<index_t> lead, index_t k, index_t n) {
    lead.push_back(mode == Mm::nt ? n : k);
    lead.push_back(mode == Mm::nt ? k : n);
    return lead.size() == 2 ? Shape{lead[0], lead[1]} : Shape{lead[0], lead[1], lead[2]};
  };
  return {
      {A({}, 3, 4), B({}, 4, 5)},      // plain
      {A({}, 1, 1), B({}, 1, 1)},      // 1 x 1
      {A({}, 1, 6), B({}, 6, 1)},      // row times column
      {A({2}, 3, 4), B({2}, 4, 5)},    // batched (B, m, k) x (B, k, n)
      {A({2}, 3, 4), B({}, 4, 5)},     // batched a with a shared b
      {A({3}, 2, 1), B({}, 1, 2)},     // batched outer products with a shared b
  };
}

}  // namespace

TEST_CASE("core/ops/linalg: matmul, matmul_nt, matmul_tn match a triple loop (plain, batched, shared b)") {
  weft::Rng rng(31);
  for (Mm mode : all_mm)
    for (const auto& c : cases(mode)) {
      CAPTURE(name(mode));
      CAPTURE(c.a);
      CAPTURE(c.b);
      const Tensor<double> a = wt::randn<double>(c.a, rng), b = wt::randn<double>(c.b, rng);
      weft::Tape<double> tape;
      auto y = apply(mode, tape.variable(a), tape.variable(b));
      WEFT_CHECK_CLOSE(y.value(), ref_mm(mode, a, b), 1e-14);
      // float32 spot check
      weft::Tape<float> tf;
      auto yf = apply(mode, tf.variable(a.cast<float>()), tf.variable(b.cast<float>()));
      WEFT_CHECK_CLOSE(yf.value().cast<double>(), ref_mm(mode, a, b), 1e-5);
    }
}

TEST_CASE("core/ops/linalg: products large enough for blocked GEMM match the triple loop") {
  weft::Rng rng(32);
  for (Mm mode : all_mm) {
    CAPTURE(name(mode));
    const Shape sa = mode == Mm::tn ? Shape{2, 71, 33} : Shape{2, 33, 71};
    const Shape sb = mode == Mm::nt ? Shape{45, 71} : Shape{71, 45};
    const Tensor<double> a = wt::randn<double>(sa, rng), b = wt::randn<double>(sb, rng);
    weft::Tape<double> tape;
    auto va = tape.variable(a), vb = tape.variable(b);
    auto y = apply(mode, va, vb);
    WEFT_CHECK_CLOSE(y.value(), ref_mm(mode, a, b), 1e-12);
    // gradients against the closed forms with an all-ones seed
    tape.backward(y, Tensor<double>::ones(y.shape()));
    Tensor<double> ga(sa), gb(sb);
    for (index_t s = 0; s < 2; ++s)
      for (index_t i = 0; i < 33; ++i)
        for (index_t l = 0; l < 71; ++l)
          for (index_t j = 0; j < 45; ++j) {
            const double bv = mode == Mm::nt ? b(j, l) : b(l, j);
            const double av = mode == Mm::tn ? a(s, l, i) : a(s, i, l);
            (mode == Mm::tn ? ga(s, l, i) : ga(s, i, l)) += bv;
            (mode == Mm::nt ? gb(j, l) : gb(l, j)) += av;
          }
    WEFT_CHECK_CLOSE(va.grad(), ga, 1e-12);
    WEFT_CHECK_CLOSE(vb.grad(), gb, 1e-12);
  }
}

TEST_CASE("core/ops/linalg: an empty inner extent gives zeros") {
  weft::Tape<double> tape;
  auto a = tape.variable(Tensor<double>(Shape{3, 0})), b = tape.variable(Tensor<double>(Shape{0, 2}));
  auto y = weft::matmul(a, b);
  WEFT_CHECK_CLOSE(y.value(), Tensor<double>::zeros({3, 2}), 0.0);
  tape.backward(y, Tensor<double>::ones({3, 2}));
  CHECK(a.grad().shape() == Shape{3, 0});
}

TEST_CASE("core/ops/linalg: gradients of the matmul family (central differences and complex step)") {
  weft::Rng rng(33);
  for (Mm mode : all_mm)
    for (const auto& c : cases(mode)) {
      CAPTURE(name(mode));
      CAPTURE(c.a);
      CAPTURE(c.b);
      const Tensor<double> a = wt::randn<double>(c.a, rng), b = wt::randn<double>(c.b, rng);
      auto f = [mode](auto&, const auto& v) { return apply(mode, v[0], v[1]); };
      WEFT_CHECK_GRAD(weft::grad_check(f, {a, b}));
      WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {a, b}));
    }
}

TEST_CASE("core/ops/linalg: a shared b in a batched product gets the gradient summed over the batch") {
  weft::Rng rng(34);
  const Tensor<double> a = wt::randn<double>({3, 2, 4}, rng), b = wt::randn<double>({4, 5}, rng);
  weft::Tape<double> tape;
  auto vb = tape.variable(b);
  auto y = weft::matmul(tape.constant(a), vb);
  tape.backward(y, Tensor<double>::ones(y.shape()));
  Tensor<double> expected(b.shape());  // sum over batch and rows of a, broadcast over columns
  for (index_t l = 0; l < 4; ++l) {
    double s = 0;
    for (index_t q = 0; q < 3; ++q)
      for (index_t i = 0; i < 2; ++i) s += a(q, i, l);
    for (index_t j = 0; j < 5; ++j) expected(l, j) = s;
  }
  WEFT_CHECK_CLOSE(vb.grad(), expected, 1e-14);
}

TEST_CASE("core/ops/linalg: a matrix multiplied with itself gets both contributions") {
  weft::Rng rng(35);
  const Tensor<double> x = wt::randn<double>({3, 3}, rng);
  for (Mm mode : all_mm) {
    CAPTURE(name(mode));
    weft::Tape<double> tape;
    auto v = tape.variable(x);
    auto y = apply(mode, v, v);
    tape.backward(y, Tensor<double>::ones({3, 3}));
    // d/dx sum(op(X) op(X)) = G op(X)^T + op(X)^T G mapped back through op
    const auto X = x.matrix();
    Eigen::MatrixXd ones = Eigen::MatrixXd::Ones(3, 3);
    Eigen::MatrixXd expected;
    if (mode == Mm::nn) expected = ones * X.transpose() + X.transpose() * ones;        // X X
    else if (mode == Mm::nt) expected = ones * X + ones.transpose() * X;               // X X^T
    else expected = X * ones.transpose() + X * ones;                                   // X^T X
    WEFT_CHECK_CLOSE(v.grad(), Tensor<double>::from(expected), 1e-14);
    WEFT_CHECK_GRAD(weft::grad_check([mode](auto&, const auto& w) { return apply(mode, w[0], w[0]); }, {x}));
  }
}

namespace {
/// Reference x W^T + b by loops over the flattened rows of x.
Tensor<double> ref_linear(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>* b) {
  const index_t out = w.dim(0), in = w.dim(1), rows = x.numel() / in;
  Shape s = x.shape().with(-1, out);
  Tensor<double> y(s);
  for (index_t r = 0; r < rows; ++r)
    for (index_t o = 0; o < out; ++o) {
      double acc = b ? b->flat(o) : 0.0;
      for (index_t i = 0; i < in; ++i) acc += x.flat(r * in + i) * w(o, i);
      y.flat(r * out + o) = acc;
    }
  return y;
}
const Shape linear_inputs[] = {Shape{4}, Shape{5, 4}, Shape{1, 4}, Shape{2, 5, 4}, Shape{2, 1, 3, 4}};
}  // namespace

TEST_CASE("core/ops/linalg: linear with and without bias matches x W^T + b for inputs of rank 1 to 4") {
  weft::Rng rng(36);
  const Tensor<double> w = wt::randn<double>({3, 4}, rng), b = wt::randn<double>({3}, rng);
  for (const Shape& sx : linear_inputs) {
    CAPTURE(sx);
    const Tensor<double> x = wt::randn<double>(sx, rng);
    auto with_bias = [](auto&, const auto& v) { return weft::linear(v[0], v[1], v[2]); };
    auto no_bias = [](auto&, const auto& v) { return weft::linear(v[0], v[1]); };
    const Tensor<double> y = wt::forward(with_bias, {x, w, b});
    CHECK(y.shape() == sx.with(-1, 3));
    WEFT_CHECK_CLOSE(y, ref_linear(x, w, &b), 1e-14);
    WEFT_CHECK_CLOSE(wt::forward(no_bias, {x, w}), ref_linear(x, w, nullptr), 1e-14);
    WEFT_CHECK_GRAD(weft::grad_check(with_bias, {x, w, b}));
    WEFT_CHECK_GRAD(weft::grad_check(no_bias, {x, w}));
    WEFT_CHECK_GRAD(weft::grad_check_complex_step(with_bias, {x, w, b}));
    WEFT_CHECK_GRAD(weft::grad_check_complex_step(no_bias, {x, w}));
    weft::Tape<float> tf;
    auto yf = weft::linear(tf.variable(x.cast<float>()), tf.variable(w.cast<float>()), tf.variable(b.cast<float>()));
    WEFT_CHECK_CLOSE(yf.value().cast<double>(), ref_linear(x, w, &b), 1e-5);
  }
}

TEST_CASE("core/ops/linalg: linear's bias gradient sums over every leading axis") {
  weft::Tape<double> tape;
  auto x = tape.constant(Tensor<double>::ones({2, 3, 4}));
  auto w = tape.constant(Tensor<double>::ones({2, 4}));
  auto b = tape.variable(Tensor<double>::zeros({2}));
  auto y = weft::linear(x, w, b);
  tape.backward(y, Tensor<double>::ones(y.shape()));
  WEFT_CHECK_CLOSE(b.grad(), Tensor<double>::vector_of({6.0, 6.0}), 0.0);
}

TEST_CASE("core/ops/linalg: tape semantics (accumulation, constants, no_grad)") {
  weft::Rng rng(37);
  for (Mm mode : all_mm) {
    CAPTURE(name(mode));
    const auto c = cases(mode)[4];
    wt::check_tape_semantics([mode](auto&, const auto& v) { return apply(mode, v[0], v[1]); },
                             {wt::randn<double>(c.a, rng), wt::randn<double>(c.b, rng)});
  }
  const Tensor<double> x = wt::randn<double>({2, 5, 4}, rng), w = wt::randn<double>({3, 4}, rng),
                       b = wt::randn<double>({3}, rng);
  wt::check_tape_semantics([](auto&, const auto& v) { return weft::linear(v[0], v[1], v[2]); }, {x, w, b});
  wt::check_tape_semantics([](auto&, const auto& v) { return weft::linear(v[0], v[1]); }, {x, w});
  // x, W and b all constant but for the bias
  weft::Tape<double> tape;
  auto vb = tape.variable(b);
  auto y = weft::linear(tape.constant(x), tape.constant(w), vb);
  CHECK(y.requires_grad());
}

TEST_CASE("core/ops/linalg: matmul family rejects bad shapes with ShapeError naming the function") {
  weft::Rng rng(38);
  struct Bad {
    Shape a, b;
    const char* what;
  };
  for (Mm mode : all_mm) {
    const bool ta = mode == Mm::tn, tb = mode == Mm::nt;
    auto A = [&](index_t m, index_t k) { return ta ? Shape{k, m} : Shape{m, k}; };
    auto B = [&](index_t k, index_t n) { return tb ? Shape{n, k} : Shape{k, n}; };
    const Bad bad[] = {
        {A(3, 4), B(5, 2), "expected matching inner extents"},
        {Shape{2, 3, 4}, Shape{3, 4, 5}, "expected"},                   // batch or inner mismatch
        {Shape{4}, B(4, 5), "expected ranks"},                           // rank 1
        {A(3, 4), Shape{2, 4, 5}, "expected ranks"},                     // (2, 3) is not supported
        {Shape{1, 2, 3, 4}, Shape{1, 2, 4, 3}, "expected ranks"},        // rank 4
        {Shape{}, Shape{}, "expected ranks"},                            // scalars
    };
    for (const auto& c : bad) {
      CAPTURE(name(mode));
      CAPTURE(c.a);
      CAPTURE(c.b);
      const Tensor<double> a = wt::randn<double>(c.a, rng), b = wt::randn<double>(c.b, rng);
      wt::Snapshot<double> snap{a, b};
      weft::Tape<double> tape;
      auto va = tape.variable(a), vb = tape.variable(b);
      const std::string func = std::string("weft::") + name(mode) + ":";
      CHECK_THROWS_WITH_AS(apply(mode, va, vb), doctest::Contains(func.c_str()), weft::ShapeError);
      CHECK_THROWS_WITH_AS(apply(mode, va, vb), doctest::Contains(c.what), weft::ShapeError);
      CHECK(tape.size() == 2);
      CHECK(snap.unchanged());
    }
  }
  // batch extents that differ
  weft::Tape<double> tape;
  auto a = tape.variable(Tensor<double>(Shape{2, 3, 4})), b = tape.variable(Tensor<double>(Shape{3, 4, 5}));
  CHECK_THROWS_WITH_AS(weft::matmul(a, b), doctest::Contains("equal batch extents"), weft::ShapeError);
}

TEST_CASE("core/ops/linalg: linear rejects bad shapes with ShapeError naming weft::linear") {
  weft::Rng rng(39);
  const Tensor<double> x = wt::randn<double>({5, 4}, rng), w = wt::randn<double>({3, 4}, rng),
                       b = wt::randn<double>({3}, rng);
  wt::Snapshot<double> snap{x, w, b};
  weft::Tape<double> tape;
  auto vx = tape.variable(x), vw = tape.variable(w), vb = tape.variable(b);
  auto c = [&](const Tensor<double>& t) { return tape.variable(t); };
  const auto in_w = doctest::Contains("weft::linear:");
  CHECK_THROWS_WITH_AS(weft::linear(vx, c(Tensor<double>(Shape{4}))), in_w, weft::ShapeError);         // W rank 1
  CHECK_THROWS_WITH_AS(weft::linear(vx, c(Tensor<double>(Shape{3, 4, 1}))), in_w, weft::ShapeError);   // W rank 3
  CHECK_THROWS_WITH_AS(weft::linear(vx, c(Tensor<double>(Shape{3, 5}))), in_w, weft::ShapeError);      // in mismatch
  CHECK_THROWS_WITH_AS(weft::linear(vx, c(Tensor<double>(Shape{4, 3}))), in_w, weft::ShapeError);      // transposed W
  CHECK_THROWS_WITH_AS(weft::linear(c(Tensor<double>::scalar(1)), vw), in_w, weft::ShapeError);   // scalar x
  CHECK_THROWS_WITH_AS(weft::linear(vx, vw, c(Tensor<double>(Shape{4}))), in_w, weft::ShapeError);     // bias length
  CHECK_THROWS_WITH_AS(weft::linear(vx, vw, c(Tensor<double>(Shape{1, 3}))), in_w, weft::ShapeError);  // bias rank 2
  CHECK_THROWS_WITH_AS(weft::linear(vx, vw, c(Tensor<double>::scalar(1))), in_w, weft::ShapeError);
  CHECK(snap.unchanged());
  const std::size_t nodes = tape.size();
  CHECK_THROWS_AS(weft::linear(vx, vw, c(Tensor<double>(Shape{4}))), weft::ShapeError);
  CHECK(tape.size() == nodes + 1);  // only the new leaf, no op node
  // and the valid call still works on the same tape
  WEFT_CHECK_CLOSE(weft::linear(vx, vw, vb).value(), ref_linear(x, w, &b), 1e-14);
}

TEST_CASE("core/ops/linalg: the GEMM kernel agrees with the naive reference in all four layouts") {
  weft::Rng rng(40);
  const index_t m = 7, n = 9, k = 5;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int acc = 0; acc < 2; ++acc) {
        CAPTURE(ta);
        CAPTURE(tb);
        CAPTURE(acc);
        const Tensor<double> A = wt::randn<double>({m * k}, rng), B = wt::randn<double>({k * n}, rng);
        Tensor<double> C1 = wt::randn<double>({m * n}, rng), C2 = C1.clone();
        weft::ops::gemm(bool(ta), bool(tb), A.data(), B.data(), C1.data(), m, n, k, bool(acc));
        weft::ops::gemm_naive(bool(ta), bool(tb), A.data(), B.data(), C2.data(), m, n, k, bool(acc));
        WEFT_CHECK_CLOSE(C1, C2, 1e-14);
      }
}

TEST_CASE("core/ops/linalg: GEMM split into parallel blocks agrees with the naive reference") {
  // >= 4M multiply-adds takes the blocked parallel path: rows of C when m >= n, else columns
  weft::Rng rng(41);
  struct Dims {
    index_t m, n, k;
  };
  for (const Dims d : {Dims{200, 130, 170}, Dims{130, 200, 170}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        CAPTURE(d.m);
        CAPTURE(ta);
        CAPTURE(tb);
        const Tensor<double> A = wt::randn<double>({d.m * d.k}, rng), B = wt::randn<double>({d.k * d.n}, rng);
        Tensor<double> C1 = wt::randn<double>({d.m * d.n}, rng), C2 = C1.clone();
        const bool acc = ta == tb;
        weft::ops::gemm(bool(ta), bool(tb), A.data(), B.data(), C1.data(), d.m, d.n, d.k, acc);
        weft::ops::gemm_naive(bool(ta), bool(tb), A.data(), B.data(), C2.data(), d.m, d.n, d.k, acc);
        WEFT_CHECK_CLOSE(C1, C2, 1e-12);
      }
  // blocks of a shape-only layout: the same bits with 1 and 2 threads (more: determinism_test)
  for (const Dims d : {Dims{200, 130, 170}, Dims{64, 768, 768}}) {
    const Tensor<float> A = wt::randn<float>({d.m * d.k}, rng), B = wt::randn<float>({d.k * d.n}, rng);
    Tensor<float> C1(Shape{d.m * d.n}), C2(Shape{d.m * d.n});
    const int saved = weft::num_threads();
    weft::set_num_threads(1);
    weft::ops::gemm(false, true, A.data(), B.data(), C1.data(), d.m, d.n, d.k, false);
    weft::set_num_threads(2);
    weft::ops::gemm(false, true, A.data(), B.data(), C2.data(), d.m, d.n, d.k, false);
    weft::set_num_threads(saved);
    CHECK(wt::identical(C1, C2));
  }
  // through matmul, forward and backward (the gradients are large products too)
  const Tensor<double> a = wt::randn<double>({150, 170}, rng), b = wt::randn<double>({170, 160}, rng);
  weft::Tape<double> tape;
  auto va = tape.variable(a), vb = tape.variable(b);
  auto y = weft::matmul(va, vb);
  WEFT_CHECK_CLOSE(y.value(), ref_mm(Mm::nn, a, b), 1e-12);
  const Tensor<double> seed = wt::randn<double>({150, 160}, rng);
  tape.backward(y, seed);
  // dA = G B^T, dB = A^T G
  WEFT_CHECK_CLOSE(va.grad(), ref_mm(Mm::nt, seed, b), 1e-12);
  WEFT_CHECK_CLOSE(vb.grad(), ref_mm(Mm::tn, a, seed), 1e-12);
  weft::Tape<float> tf;
  auto yf = weft::matmul(tf.variable(a.cast<float>()), tf.variable(b.cast<float>()));
  WEFT_CHECK_CLOSE(yf.value().cast<double>(), ref_mm(Mm::nn, a, b), 2e-4);
}

TEST_CASE("core/ops/linalg: operands on different tapes are refused with ConfigError") {
  // at the call when the check runs there, else at the latest in backward (see the report on
  // Tape::record_range, which stops validating inputs once one of them needs a gradient)
  const Tensor<double> a = Tensor<double>::ones({2, 2});
  for (Mm mode : all_mm) {
    CAPTURE(name(mode));
    weft::Tape<double> t1, t2;
    auto x = t1.variable(a), y = t2.variable(a);
    CHECK(wt::refuses_other_tape([&] { return apply(mode, x, y); }));
    CHECK(wt::refuses_other_tape([&] { return apply(mode, t1.constant(a), y); }));
  }
  weft::Tape<double> t1, t2, t3;
  auto x = t1.variable(a), y = t2.variable(a), b = t3.variable(Tensor<double>::ones({2}));
  CHECK(wt::refuses_other_tape([&] { return weft::linear(x, y); }));
  weft::Tape<double> t4;
  auto x4 = t4.variable(a);
  CHECK(wt::refuses_other_tape([&] { return weft::linear(x4, x4, b); }));
  CHECK(wt::identical(a, Tensor<double>::ones({2, 2})));
}

}  // namespace weft_unit_core_ops_linalg_test
