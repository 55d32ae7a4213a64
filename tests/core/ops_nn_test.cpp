// Tests of weft/core/autograd/functions/nn.hpp (softmax, log_softmax, layer_norm, cross_entropy
// with labels and with soft targets, mse) and the kernels in weft/core/ops/softmax.hpp.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/ops_common.hpp"
#include "weft/core/autograd/functions/nn.hpp"

namespace weft_unit_core_ops_nn_test {

using weft::Reduction;
using weft::Shape;
using weft::Tensor;
using weft::index_t;
namespace wt = weft::test;

namespace {

const double inf = std::numeric_limits<double>::infinity();
const Reduction all_reductions[] = {Reduction::mean, Reduction::sum, Reduction::none};
const char* name(Reduction r) { return r == Reduction::mean ? "mean" : (r == Reduction::sum ? "sum" : "none"); }

weft::CrossEntropyOptions ce_options(double temperature, Reduction r) {
  weft::CrossEntropyOptions o;
  o.temperature = temperature;
  o.reduction = r;
  return o;
}

/// Reference log-softmax of each row of the last axis: x - max - log(sum exp(x - max)), in long
/// double.
Tensor<double> ref_log_softmax(const Tensor<double>& x, double scale = 1.0) {
  const index_t n = x.shape().last(), rows = x.numel() / n;
  Tensor<double> y(x.shape());
  for (index_t r = 0; r < rows; ++r) {
    long double m = -INFINITY, s = 0;
    for (index_t j = 0; j < n; ++j) m = std::max(m, (long double)(x.flat(r * n + j) * scale));
    for (index_t j = 0; j < n; ++j) s += std::exp((long double)(x.flat(r * n + j) * scale) - m);
    for (index_t j = 0; j < n; ++j) y.flat(r * n + j) = double((long double)(x.flat(r * n + j) * scale) - m - std::log(s));
  }
  return y;
}
Tensor<double> ref_softmax(const Tensor<double>& x, double scale = 1.0) {
  Tensor<double> y = ref_log_softmax(x, scale);
  for (auto& v : y) v = std::exp(v);
  return y;
}

/// Reference layer norm over the last axis (biased variance), optional gain and bias.
Tensor<double> ref_layer_norm(const Tensor<double>& x, const Tensor<double>* g, const Tensor<double>* b, double eps) {
  const index_t n = x.shape().last(), rows = x.numel() / n;
  Tensor<double> y(x.shape());
  for (index_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (index_t j = 0; j < n; ++j) mean += x.flat(r * n + j);
    mean /= double(n);
    for (index_t j = 0; j < n; ++j) var += (x.flat(r * n + j) - mean) * (x.flat(r * n + j) - mean);
    var /= double(n);
    for (index_t j = 0; j < n; ++j) {
      double h = (x.flat(r * n + j) - mean) / std::sqrt(var + eps);
      y.flat(r * n + j) = g ? h * g->flat(j) + b->flat(j) : h;
    }
  }
  return y;
}

/// Reference per-sample cross entropy -sum_j p_ij log softmax(z_i / T)_j, reduced.
Tensor<double> reduce_ref(const Tensor<double>& per, Reduction r) {
  if (r == Reduction::none) return per;
  double s = 0;
  for (double v : per) s += v;
  return Tensor<double>::scalar(r == Reduction::mean ? s / double(per.numel()) : s);
}
Tensor<double> ref_ce_soft(const Tensor<double>& z, const Tensor<double>& p, double T, Reduction r) {
  const Tensor<double> lp = ref_log_softmax(z, 1.0 / T);
  Tensor<double> per(Shape{z.dim(0)});
  for (index_t i = 0; i < z.dim(0); ++i)
    for (index_t j = 0; j < z.dim(1); ++j) per.flat(i) -= p(i, j) * lp(i, j);
  return reduce_ref(per, r);
}
Tensor<double> one_hot(const std::vector<int>& labels, index_t C) {
  Tensor<double> p(Shape{index_t(labels.size()), C});
  for (std::size_t i = 0; i < labels.size(); ++i) p(index_t(i), labels[i]) = 1.0;
  return p;
}
Tensor<double> ref_ce_labels(const Tensor<double>& z, const std::vector<int>& labels, double T, Reduction r) {
  return ref_ce_soft(z, one_hot(labels, z.dim(1)), T, r);
}

/// Random probability rows (each row sums to 1, entries in (0, 1)).
Tensor<double> random_probs(const Shape& s, weft::Rng& rng) {
  Tensor<double> p = wt::rand_uniform<double>(s, rng, 0.1, 1.0);
  const index_t n = s.last();
  for (index_t r = 0; r < p.numel() / n; ++r) {
    double t = 0;
    for (index_t j = 0; j < n; ++j) t += p.flat(r * n + j);
    for (index_t j = 0; j < n; ++j) p.flat(r * n + j) /= t;
  }
  return p;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// softmax and log_softmax

TEST_CASE("core/ops/nn: softmax and log_softmax match a reference along the last axis") {
  weft::Rng rng(61);
  for (const Shape& s : {Shape{7}, Shape{1}, Shape{4, 5}, Shape{2, 3, 4}, Shape{2, 1, 2, 3}}) {
    CAPTURE(s);
    const Tensor<double> x = wt::randn<double>(s, rng, 0.0, 2.0);
    auto sm = [](auto&, const auto& v) { return weft::softmax(v[0]); };
    auto lsm = [](auto&, const auto& v) { return weft::log_softmax(v[0]); };
    const Tensor<double> y = wt::forward(sm, {x});
    WEFT_CHECK_CLOSE(y, ref_softmax(x), 1e-15);
    WEFT_CHECK_CLOSE(wt::forward(lsm, {x}), ref_log_softmax(x), 1e-14);
    for (index_t r = 0; r < y.numel() / s.last(); ++r) {
      double t = 0;
      for (index_t j = 0; j < s.last(); ++j) t += y.flat(r * s.last() + j);
      CHECK(t == doctest::Approx(1.0).epsilon(1e-14));
    }
    WEFT_CHECK_GRAD(weft::grad_check(sm, {x}));
    WEFT_CHECK_GRAD(weft::grad_check(lsm, {x}));
    WEFT_CHECK_GRAD(weft::grad_check_complex_step(sm, {x}));
    WEFT_CHECK_GRAD(weft::grad_check_complex_step(lsm, {x}));
    weft::Tape<float> tf;
    auto xf = tf.variable(x.cast<float>());
    WEFT_CHECK_CLOSE(weft::softmax(xf).value().cast<double>(), ref_softmax(x), 1e-6);
    WEFT_CHECK_CLOSE(weft::log_softmax(xf).value().cast<double>(), ref_log_softmax(x), 2e-6);
  }
}

TEST_CASE("core/ops/nn: softmax of rows with huge values (1e4) is finite and exact") {
  const Tensor<double> x = Tensor<double>::from_values({1e4, 1e4 - 1, -1e4,  //
                                                        -1e4, -1e4 - 1, -3e4, //
                                                        1e4, 1e4, 1e4}, {3, 3});
  const double e = std::exp(-1.0);
  const Tensor<double> expected = Tensor<double>::from_values(
      {1 / (1 + e), e / (1 + e), 0, 1 / (1 + e), e / (1 + e), 0, 1.0 / 3, 1.0 / 3, 1.0 / 3}, {3, 3});
  weft::Tape<double> tape;
  auto v = tape.variable(x);
  auto y = weft::softmax(v);
  auto ly = weft::log_softmax(v);
  CHECK(y.value().all_finite());
  WEFT_CHECK_CLOSE(y.value(), expected, 1e-15);
  CHECK(ly.value().flat(0) == doctest::Approx(-std::log1p(e)).epsilon(1e-14));
  CHECK(ly.value().flat(2) == doctest::Approx(-2e4 - std::log1p(e)).epsilon(1e-14));
  weft::Rng rng(3);
  tape.backward(wt::contract(tape, {y, ly}, wt::randn<double>({3, 3}, rng)));
  CHECK(v.grad().all_finite());
  for (auto big : {1e4f, 3e38f}) {  // float: no overflow either
    CAPTURE(big);
    weft::Tape<float> tf;
    auto vf = tf.variable(Tensor<float>::vector_of({big, big, -big}));
    auto yf = weft::softmax(vf);
    CHECK(yf.value().all_finite());
    CHECK(yf.value().flat(0) == doctest::Approx(0.5));
    CHECK(weft::log_softmax(vf).value().flat(0) == doctest::Approx(-std::log(2.0)));
  }
}

TEST_CASE("core/ops/nn: softmax, log_softmax and layer_norm on many rows (parallel chunks) match the reference") {
  weft::Rng rng(76);
  const Tensor<double> x = wt::randn<double>({3000, 24}, rng), seed = wt::randn<double>({3000, 24}, rng);
  const Tensor<double> g = wt::randn<double>({24}, rng), b = wt::randn<double>({24}, rng);
  weft::Tape<double> tape;
  auto v = tape.variable(x), vg = tape.variable(g), vb = tape.variable(b);
  auto s = weft::softmax(v), ls = weft::log_softmax(v), ln = weft::layer_norm(v, vg, vb);
  WEFT_CHECK_CLOSE(s.value(), ref_softmax(x), 1e-15);
  WEFT_CHECK_CLOSE(ls.value(), ref_log_softmax(x), 1e-14);
  WEFT_CHECK_CLOSE(ln.value(), ref_layer_norm(x, &g, &b, 1e-5), 1e-13);
  tape.backward(wt::contract(tape, {s, ls, ln}, seed));
  // the three backward passes summed, row by row
  const Tensor<double> y = ref_softmax(x), h = ref_layer_norm(x, nullptr, nullptr, 1e-5);
  Tensor<double> expected(x.shape());
  for (index_t r = 0; r < 3000; ++r) {
    double dot = 0, sum = 0, m1 = 0, m2 = 0, var = 0, mean = 0;
    for (index_t j = 0; j < 24; ++j) {
      dot += seed(r, j) * y(r, j);
      sum += seed(r, j);
      m1 += seed(r, j) * g.flat(j) / 24;
      m2 += seed(r, j) * g.flat(j) * h(r, j) / 24;
      mean += x(r, j) / 24;
    }
    for (index_t j = 0; j < 24; ++j) var += (x(r, j) - mean) * (x(r, j) - mean) / 24;
    const double rstd = 1 / std::sqrt(var + 1e-5);
    for (index_t j = 0; j < 24; ++j)
      expected(r, j) = y(r, j) * (seed(r, j) - dot) + seed(r, j) - y(r, j) * sum +
                       rstd * (seed(r, j) * g.flat(j) - m1 - h(r, j) * m2);
  }
  WEFT_CHECK_CLOSE(v.grad(), expected, 1e-12);
}

TEST_CASE("core/ops/nn: softmax and log_softmax backward match their closed forms") {
  weft::Rng rng(62);
  const Tensor<double> x = wt::randn<double>({3, 4}, rng), g = wt::randn<double>({3, 4}, rng);
  const Tensor<double> y = ref_softmax(x);
  Tensor<double> gs(x.shape()), gl(x.shape());
  for (index_t r = 0; r < 3; ++r) {
    double dot = 0, sum = 0;
    for (index_t j = 0; j < 4; ++j) {
      dot += g(r, j) * y(r, j);
      sum += g(r, j);
    }
    for (index_t j = 0; j < 4; ++j) {
      gs(r, j) = y(r, j) * (g(r, j) - dot);
      gl(r, j) = g(r, j) - y(r, j) * sum;
    }
  }
  WEFT_CHECK_CLOSE(wt::gradients([](auto&, const auto& v) { return weft::softmax(v[0]); }, {x}, g)[0], gs, 1e-15);
  WEFT_CHECK_CLOSE(wt::gradients([](auto&, const auto& v) { return weft::log_softmax(v[0]); }, {x}, g)[0], gl, 1e-15);
  wt::check_tape_semantics([](auto&, const auto& v) { return weft::softmax(v[0]); }, {x});
  wt::check_tape_semantics([](auto&, const auto& v) { return weft::log_softmax(v[0]); }, {x});
}

TEST_CASE("core/ops/nn: softmax and log_softmax reject scalars and empty rows with ShapeError") {
  const Tensor<double> s = Tensor<double>::scalar(1.0), e(Shape{3, 0});
  wt::Snapshot<double> snap{s, e};
  weft::Tape<double> tape;
  auto vs = tape.variable(s), ve = tape.variable(e);
  CHECK_THROWS_WITH_AS(weft::softmax(vs), doctest::Contains("weft::softmax:"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::softmax(ve), doctest::Contains("weft::softmax:"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::log_softmax(vs), doctest::Contains("weft::log_softmax:"), weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::log_softmax(ve), doctest::Contains("weft::log_softmax:"), weft::ShapeError);
  CHECK(tape.size() == 2);
  CHECK(snap.unchanged());
}

// ---------------------------------------------------------------------------------------------
// layer_norm

TEST_CASE("core/ops/nn: layer_norm with and without affine parameters matches a reference") {
  weft::Rng rng(63);
  for (const Shape& s : {Shape{6}, Shape{4, 5}, Shape{2, 3, 4}, Shape{2, 1, 2, 3}})
    for (double eps : {1e-5, 0.0, 0.5}) {
      CAPTURE(s);
      CAPTURE(eps);
      const Tensor<double> x = wt::randn<double>(s, rng, 0.5, 2.0);
      const Tensor<double> g = wt::randn<double>({s.last()}, rng), b = wt::randn<double>({s.last()}, rng);
      auto affine = [eps](auto&, const auto& v) { return weft::layer_norm(v[0], v[1], v[2], eps); };
      auto plain = [eps](auto&, const auto& v) { return weft::layer_norm(v[0], eps); };
      WEFT_CHECK_CLOSE(wt::forward(affine, {x, g, b}), ref_layer_norm(x, &g, &b, eps), 1e-13);
      WEFT_CHECK_CLOSE(wt::forward(plain, {x}), ref_layer_norm(x, nullptr, nullptr, eps), 1e-13);
      WEFT_CHECK_GRAD(weft::grad_check(affine, {x, g, b}));
      WEFT_CHECK_GRAD(weft::grad_check(plain, {x}));
      WEFT_CHECK_GRAD(weft::grad_check_complex_step(affine, {x, g, b}));
      WEFT_CHECK_GRAD(weft::grad_check_complex_step(plain, {x}));
      weft::Tape<float> tf;
      auto yf = weft::layer_norm(tf.variable(x.cast<float>()), tf.variable(g.cast<float>()),
                                 tf.variable(b.cast<float>()), float(eps));
      WEFT_CHECK_CLOSE(yf.value().cast<double>(), ref_layer_norm(x, &g, &b, eps), 1e-5);
    }
  // the default eps is 1e-5
  const Tensor<double> x = wt::randn<double>({3, 4}, rng);
  WEFT_CHECK_CLOSE(wt::forward([](auto&, const auto& v) { return weft::layer_norm(v[0]); }, {x}),
                   ref_layer_norm(x, nullptr, nullptr, 1e-5), 1e-14);
}

TEST_CASE("core/ops/nn: layer_norm output has zero mean and unit variance per row; constant rows map to 0") {
  weft::Rng rng(64);
  const Tensor<double> x = wt::randn<double>({5, 8}, rng, 3.0, 4.0);
  weft::Tape<double> tape;
  const Tensor<double> y = weft::layer_norm(tape.variable(x), 0.0).value();
  for (index_t r = 0; r < 5; ++r) {
    double m = 0, v = 0;
    for (index_t j = 0; j < 8; ++j) m += y(r, j) / 8;
    for (index_t j = 0; j < 8; ++j) v += (y(r, j) - m) * (y(r, j) - m) / 8;
    CHECK(std::abs(m) < 1e-14);
    CHECK(v == doctest::Approx(1.0).epsilon(1e-13));
  }
  auto c = weft::layer_norm(tape.variable(Tensor<double>(Shape{2, 3}, 4.0)));
  CHECK(c.value().all_finite());
  CHECK(c.value().array().abs().maxCoeff() == 0.0);
}

TEST_CASE("core/ops/nn: layer_norm tape semantics; gamma and beta gradients match closed forms") {
  weft::Rng rng(65);
  const Tensor<double> x = wt::randn<double>({4, 3}, rng), g = wt::randn<double>({3}, rng),
                       b = wt::randn<double>({3}, rng), seed = wt::randn<double>({4, 3}, rng);
  auto affine = [](auto&, const auto& v) { return weft::layer_norm(v[0], v[1], v[2]); };
  wt::check_tape_semantics(affine, {x, g, b});
  wt::check_tape_semantics([](auto&, const auto& v) { return weft::layer_norm(v[0]); }, {x});
  const auto grads = wt::gradients(affine, {x, g, b}, seed);
  const Tensor<double> xhat = ref_layer_norm(x, nullptr, nullptr, 1e-5);
  Tensor<double> gg(Shape{3}), gb(Shape{3});
  for (index_t r = 0; r < 4; ++r)
    for (index_t j = 0; j < 3; ++j) {
      gg.flat(j) += seed(r, j) * xhat(r, j);
      gb.flat(j) += seed(r, j);
    }
  WEFT_CHECK_CLOSE(grads[1], gg, 1e-14);
  WEFT_CHECK_CLOSE(grads[2], gb, 1e-14);
}

TEST_CASE("core/ops/nn: layer_norm rejects bad eps (ValueError) and bad shapes (ShapeError)") {
  weft::Rng rng(66);
  const Tensor<double> x = wt::randn<double>({2, 3}, rng), g = wt::randn<double>({3}, rng),
                       b = wt::randn<double>({3}, rng);
  wt::Snapshot<double> snap{x, g, b};
  weft::Tape<double> tape;
  auto vx = tape.variable(x), vg = tape.variable(g), vb = tape.variable(b);
  auto v = [&](const Shape& s) { return tape.variable(Tensor<double>(s)); };
  const auto in_ln = doctest::Contains("weft::layer_norm:");
  for (double eps : {-1e-5, -inf, inf, std::numeric_limits<double>::quiet_NaN()}) {
    CAPTURE(eps);
    CHECK_THROWS_WITH_AS(weft::layer_norm(vx, eps), in_ln, weft::ValueError);
    CHECK_THROWS_WITH_AS(weft::layer_norm(vx, vg, vb, eps), in_ln, weft::ValueError);
  }
  CHECK_THROWS_WITH_AS(weft::layer_norm(vx, v({4}), vb), in_ln, weft::ShapeError);     // gamma length
  CHECK_THROWS_WITH_AS(weft::layer_norm(vx, vg, v({2})), in_ln, weft::ShapeError);     // beta length
  CHECK_THROWS_WITH_AS(weft::layer_norm(vx, v({1, 3}), vb), in_ln, weft::ShapeError);  // gamma rank 2
  CHECK_THROWS_WITH_AS(weft::layer_norm(v({}), 1e-5), in_ln, weft::ShapeError);        // scalar
  CHECK_THROWS_WITH_AS(weft::layer_norm(v({3, 0}), 1e-5), in_ln, weft::ShapeError);    // empty rows
  const std::size_t nodes = tape.size();
  CHECK_THROWS_AS(weft::layer_norm(vx, -1.0), weft::ValueError);
  CHECK(tape.size() == nodes);
  CHECK(snap.unchanged());
}

// ---------------------------------------------------------------------------------------------
// cross_entropy

TEST_CASE("core/ops/nn: cross_entropy with labels matches a reference for each temperature and reduction") {
  weft::Rng rng(67);
  const Tensor<double> z = wt::randn<double>({5, 4}, rng, 0.0, 2.0);
  const std::vector<int> labels = {0, 3, 1, 3, 2};
  for (double T : {1.0, 2.5, 0.5})
    for (Reduction r : all_reductions) {
      CAPTURE(T);
      CAPTURE(name(r));
      const auto o = ce_options(T, r);
      auto f = [&labels, o](auto&, const auto& v) { return weft::cross_entropy(v[0], labels, o); };
      const Tensor<double> y = wt::forward(f, {z});
      CHECK(y.shape() == (r == Reduction::none ? Shape{5} : Shape{}));
      WEFT_CHECK_CLOSE(y, ref_ce_labels(z, labels, T, r), 1e-14);
      WEFT_CHECK_GRAD(weft::grad_check(f, {z}));
      WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {z}));
      weft::Tape<float> tf;
      auto yf = weft::cross_entropy(tf.variable(z.cast<float>()), labels, o);
      WEFT_CHECK_CLOSE(yf.value().cast<double>(), ref_ce_labels(z, labels, T, r), 2e-6);
    }
  // the default options are temperature 1 and the mean
  weft::Tape<double> tape;
  CHECK(weft::cross_entropy(tape.variable(z), labels).item() ==
        doctest::Approx(ref_ce_labels(z, labels, 1.0, Reduction::mean).item()).epsilon(1e-14));
}

TEST_CASE("core/ops/nn: cross_entropy with a temperature has no T^2 factor in its gradient") {
  weft::Rng rng(68);
  const Tensor<double> z = wt::randn<double>({3, 4}, rng), p = random_probs({3, 4}, rng);
  const std::vector<int> labels = {2, 0, 3};
  for (double T : {1.0, 2.0, 4.0}) {
    CAPTURE(T);
    // d/dz of sum_i CE_i = (softmax(z / T) - p) / T, with targets kept constant
    const Tensor<double> s = ref_softmax(z, 1.0 / T), oh = one_hot(labels, 4);
    Tensor<double> g_soft(z.shape()), g_lab(z.shape());
    for (index_t i = 0; i < z.numel(); ++i) {
      g_soft.flat(i) = (s.flat(i) - p.flat(i)) / T;
      g_lab.flat(i) = (s.flat(i) - oh.flat(i)) / T;
    }
    weft::Tape<double> tape;
    auto v1 = tape.variable(z), v2 = tape.variable(z);
    const auto o = ce_options(T, Reduction::sum);
    auto loss = wt::contract(tape, {weft::cross_entropy(v1, labels, o), weft::cross_entropy(v2, tape.constant(p), o)},
                             Tensor<double>::scalar(1.0));
    tape.backward(loss);
    WEFT_CHECK_CLOSE(v1.grad(), g_lab, 1e-15);
    WEFT_CHECK_CLOSE(v2.grad(), g_soft, 1e-15);
  }
}

TEST_CASE("core/ops/nn: cross_entropy with soft targets matches a reference; gradients reach both") {
  weft::Rng rng(69);
  const Tensor<double> z = wt::randn<double>({4, 3}, rng, 0.0, 2.0);
  const Tensor<double> p = random_probs({4, 3}, rng);
  const Tensor<double> q = wt::rand_uniform<double>({4, 3}, rng, 0.0, 1.0);  // rows not summing to 1
  for (const Tensor<double>* targets : {&p, &q})
    for (double T : {1.0, 3.0, 0.7})
      for (Reduction r : all_reductions) {
        CAPTURE(T);
        CAPTURE(name(r));
        CAPTURE(targets == &p);
        const auto o = ce_options(T, r);
        auto f = [o](auto&, const auto& v) { return weft::cross_entropy(v[0], v[1], o); };
        WEFT_CHECK_CLOSE(wt::forward(f, {z, *targets}), ref_ce_soft(z, *targets, T, r), 1e-14);
        WEFT_CHECK_GRAD(weft::grad_check(f, {z, *targets}));
        WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {z, *targets}));
        weft::Tape<float> tf;
        auto yf = weft::cross_entropy(tf.variable(z.cast<float>()), tf.variable(targets->cast<float>()), o);
        WEFT_CHECK_CLOSE(yf.value().cast<double>(), ref_ce_soft(z, *targets, T, r), 2e-6);
      }
}

TEST_CASE("core/ops/nn: cross_entropy with one-hot targets equals cross_entropy with labels") {
  weft::Rng rng(70);
  const Tensor<double> z = wt::randn<double>({4, 5}, rng);
  const std::vector<int> labels = {4, 0, 0, 2};
  for (Reduction r : all_reductions) {
    CAPTURE(name(r));
    const auto o = ce_options(1.7, r);
    auto fl = [&labels, o](auto&, const auto& v) { return weft::cross_entropy(v[0], labels, o); };
    auto fs = [&labels, o](auto& tape, const auto& v) {
      using S = typename std::decay_t<decltype(v[0].value())>::value_type;
      return weft::cross_entropy(v[0], tape.constant(one_hot(labels, 5).cast<S>()), o);
    };
    WEFT_CHECK_CLOSE(wt::forward(fl, {z}), wt::forward(fs, {z}), 1e-15);
    const Tensor<double> seed = wt::randn<double>(wt::forward(fl, {z}).shape(), rng);
    WEFT_CHECK_CLOSE(wt::gradients(fl, {z}, seed)[0], wt::gradients(fs, {z}, seed)[0], 1e-15);
  }
}

TEST_CASE("core/ops/nn: cross_entropy is finite for huge logits") {
  weft::Tape<double> tape;
  auto z = tape.variable(Tensor<double>::from_values({1e4, -1e4, 0, 0, 1e4, -1e4}, {2, 3}));
  auto loss = weft::cross_entropy(z, {1, 1}, ce_options(1.0, Reduction::none));
  CHECK(loss.value().all_finite());
  CHECK(loss.value().flat(0) == doctest::Approx(2e4));
  CHECK(loss.value().flat(1) == doctest::Approx(0.0));
  tape.backward(loss, Tensor<double>::ones({2}));
  CHECK(z.grad().all_finite());
}

TEST_CASE("core/ops/nn: cross_entropy tape semantics") {
  weft::Rng rng(71);
  const Tensor<double> z = wt::randn<double>({3, 4}, rng), p = random_probs({3, 4}, rng);
  const std::vector<int> labels = {1, 1, 0};
  for (Reduction r : all_reductions) {
    CAPTURE(name(r));
    const auto o = ce_options(2.0, r);
    wt::check_tape_semantics([&labels, o](auto&, const auto& v) { return weft::cross_entropy(v[0], labels, o); }, {z});
    wt::check_tape_semantics([o](auto&, const auto& v) { return weft::cross_entropy(v[0], v[1], o); }, {z, p});
  }
  // the same logits as a variable and as constant targets: only the variable learns
  weft::Tape<double> tape;
  auto v = tape.variable(z), c = tape.constant(z);
  auto loss = weft::cross_entropy(v, c);
  tape.backward(loss);
  CHECK(v.grad().defined());
  CHECK_FALSE(c.grad().defined());
  // and through detach: a constant sharing the variable's value
  weft::Tape<double> t2;
  auto w = t2.variable(z);
  auto d = t2.detach(w);
  CHECK(d.value().same_storage(w.value()));
  auto l2 = weft::cross_entropy(w, weft::softmax(d));
  t2.backward(l2);
  CHECK(w.grad().defined());
  CHECK_FALSE(d.grad().defined());
}

TEST_CASE("core/ops/nn: cross_entropy rejects bad labels, targets, logits and temperatures") {
  weft::Rng rng(72);
  const Tensor<double> z = wt::randn<double>({3, 4}, rng), p = random_probs({3, 4}, rng);
  wt::Snapshot<double> snap{z, p};
  weft::Tape<double> tape;
  auto vz = tape.variable(z), vp = tape.variable(p);
  auto v = [&](const Shape& s) { return tape.variable(Tensor<double>(s)); };
  const auto in_ce = doctest::Contains("weft::cross_entropy:");
  // labels spelled as a vector: a braced {0, a, b} alone is ambiguous with Var's (tape, id,
  // generation) constructor
  using Labels = std::vector<int>;
  const std::size_t nodes = tape.size();
  // labels out of range: ValueError; wrong count: ShapeError
  CHECK_THROWS_WITH_AS(weft::cross_entropy(vz, Labels{0, 4, 1}), in_ce, weft::ValueError);
  CHECK_THROWS_WITH_AS(weft::cross_entropy(vz, Labels{0, -1, 1}), in_ce, weft::ValueError);
  CHECK_THROWS_WITH_AS(weft::cross_entropy(vz, Labels{0, 1, 2, 3}), in_ce, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::cross_entropy(vz, Labels{0, 1}), in_ce, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::cross_entropy(vz, Labels{}), in_ce, weft::ShapeError);
  CHECK(tape.size() == nodes);
  // temperature <= 0 or not finite: ValueError, for both forms
  for (double T : {0.0, -1.0, inf, std::numeric_limits<double>::quiet_NaN()}) {
    CAPTURE(T);
    const auto o = ce_options(T, Reduction::mean);
    CHECK_THROWS_WITH_AS(weft::cross_entropy(vz, Labels{0, 1, 2}, o), in_ce, weft::ValueError);
    CHECK_THROWS_WITH_AS(weft::cross_entropy(vz, vp, o), in_ce, weft::ValueError);
  }
  CHECK(tape.size() == nodes);
  // logits must be a non-empty (N, C) matrix; targets must match it
  CHECK_THROWS_WITH_AS(weft::cross_entropy(v({4}), Labels{0}), in_ce, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::cross_entropy(v({1, 3, 4}), Labels{0}), in_ce, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::cross_entropy(v({0, 4}), Labels{}), in_ce, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::cross_entropy(v({3, 0}), Labels{0, 0, 0}), in_ce, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::cross_entropy(vz, v({3, 5})), in_ce, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::cross_entropy(vz, v({4, 3})), in_ce, weft::ShapeError);
  CHECK_THROWS_WITH_AS(weft::cross_entropy(vz, v({12})), in_ce, weft::ShapeError);
  CHECK(snap.unchanged());
}

// ---------------------------------------------------------------------------------------------
// mse

TEST_CASE("core/ops/nn: mse matches a reference for each reduction with gradients to both inputs") {
  weft::Rng rng(73);
  for (const Shape& s : {Shape{}, Shape{5}, Shape{3, 4}, Shape{2, 1, 3}, Shape{2, 2, 1, 2}})
    for (Reduction r : all_reductions) {
      CAPTURE(s);
      CAPTURE(name(r));
      const Tensor<double> a = wt::randn<double>(s, rng), b = wt::randn<double>(s, rng);
      Tensor<double> per(s);
      for (index_t i = 0; i < a.numel(); ++i) per.flat(i) = (a.flat(i) - b.flat(i)) * (a.flat(i) - b.flat(i));
      Tensor<double> expected = per;
      if (r != Reduction::none) {
        double t = 0;
        for (double x : per) t += x;
        expected = Tensor<double>::scalar(r == Reduction::mean ? t / double(a.numel()) : t);
      }
      auto f = [r](auto&, const auto& v) { return weft::mse(v[0], v[1], r); };
      WEFT_CHECK_CLOSE(wt::forward(f, {a, b}), expected, 1e-15);
      WEFT_CHECK_GRAD(weft::grad_check(f, {a, b}));
      WEFT_CHECK_GRAD(weft::grad_check_complex_step(f, {a, b}));
      // closed-form gradients: d/da = 2 (a - b) * w, d/db = -d/da
      const Tensor<double> seed = wt::randn<double>(expected.shape(), rng);
      const auto g = wt::gradients(f, {a, b}, seed);
      Tensor<double> ga(s);
      for (index_t i = 0; i < a.numel(); ++i) {
        const double w = r == Reduction::none ? seed.flat(i)
                                              : (r == Reduction::mean ? seed.flat(0) / double(a.numel()) : seed.flat(0));
        ga.flat(i) = 2 * (a.flat(i) - b.flat(i)) * w;
      }
      WEFT_CHECK_CLOSE(g[0], ga, 1e-15);
      ga.array() *= -1.0;
      WEFT_CHECK_CLOSE(g[1], ga, 1e-15);
      weft::Tape<float> tf;
      auto yf = weft::mse(tf.variable(a.cast<float>()), tf.variable(b.cast<float>()), r);
      WEFT_CHECK_CLOSE(yf.value().cast<double>(), expected, 2e-6);
    }
  weft::Tape<double> tape;  // the default reduction is the mean
  auto a = tape.variable(Tensor<double>::vector_of({1, 2})), b = tape.variable(Tensor<double>::vector_of({0, 0}));
  CHECK(weft::mse(a, b).item() == 2.5);
}

TEST_CASE("core/ops/nn: mse of an input against itself and tape semantics") {
  weft::Rng rng(74);
  const Tensor<double> a = wt::randn<double>({3, 2}, rng), b = wt::randn<double>({3, 2}, rng);
  weft::Tape<double> tape;
  auto v = tape.variable(a);
  auto l = weft::mse(v, v, Reduction::sum);
  CHECK(l.item() == 0.0);
  tape.backward(l);
  WEFT_CHECK_CLOSE(v.grad(), Tensor<double>::zeros({3, 2}), 0.0);
  for (Reduction r : all_reductions) {
    CAPTURE(name(r));
    wt::check_tape_semantics([r](auto&, const auto& w) { return weft::mse(w[0], w[1], r); }, {a, b});
  }
}

TEST_CASE("core/ops/nn: mse rejects shape mismatches and empty means with ShapeError") {
  weft::Rng rng(75);
  const Tensor<double> a = wt::randn<double>({3, 2}, rng), b = wt::randn<double>({2, 3}, rng);
  wt::Snapshot<double> snap{a, b};
  weft::Tape<double> tape;
  auto va = tape.variable(a), vb = tape.variable(b);
  const auto in_mse = doctest::Contains("weft::mse:");
  for (Reduction r : all_reductions) {
    CAPTURE(name(r));
    CHECK_THROWS_WITH_AS(weft::mse(va, vb, r), in_mse, weft::ShapeError);
    CHECK_THROWS_WITH_AS(weft::mse(va, tape.variable(Tensor<double>(Shape{6})), r), in_mse, weft::ShapeError);
    CHECK_THROWS_WITH_AS(weft::mse(va, tape.variable(Tensor<double>(Shape{3, 1})), r), in_mse, weft::ShapeError);
  }
  auto e = tape.variable(Tensor<double>(Shape{0, 2}));
  CHECK_THROWS_WITH_AS(weft::mse(e, e), in_mse, weft::ShapeError);
  CHECK(weft::mse(e, e, Reduction::sum).item() == 0.0);
  CHECK(weft::mse(e, e, Reduction::none).shape() == Shape{0, 2});
  CHECK(snap.unchanged());
}

TEST_CASE("core/ops/nn: layer_norm, cross_entropy and mse refuse Vars from different tapes") {
  const Tensor<double> z = Tensor<double>::from_values({1, 2, 3, 4, 6, 5}, {2, 3});
  const Tensor<double> p = Tensor<double>::from_values({0.2, 0.3, 0.5, 1, 0, 0}, {2, 3});
  auto refuses = [&](auto op) {
    weft::Tape<double> t1, t2;
    auto vz = t1.variable(z), vp = t2.variable(p), g = t2.variable(Tensor<double>::ones({3}));
    return wt::refuses_other_tape([&] { return op(vz, vp, g); });
  };
  CHECK(refuses([](auto& a, auto&, auto& g) { return weft::layer_norm(a, g, g); }));
  CHECK(refuses([](auto& a, auto& b, auto&) { return weft::cross_entropy(a, b); }));
  CHECK(refuses([](auto& a, auto& b, auto&) { return weft::mse(a, b); }));
  CHECK(wt::identical(z, Tensor<double>::from_values({1, 2, 3, 4, 6, 5}, {2, 3})));
}

TEST_CASE("core/ops/nn: cross_entropy rejects a temperature that underflows the logits' type") {
  weft::Tape<float> tape;
  const Tensor<float> z(Shape{2, 3}, 0.5f);
  const std::vector<int> labels = {0, 2};
  CHECK_THROWS_WITH_AS(weft::cross_entropy(tape.constant(z), labels, ce_options(1e-40, Reduction::mean)),
                       doctest::Contains("weft::cross_entropy"), weft::ValueError);
  weft::Tape<double> td;
  const Tensor<double> zd(Shape{2, 3}, 0.5);
  CHECK(std::isfinite(weft::cross_entropy(td.constant(zd), labels, ce_options(1e-40, Reduction::mean)).item()));
}

}  // namespace weft_unit_core_ops_nn_test
