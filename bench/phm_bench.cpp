// bench/phm_bench.cpp - the PHM / LPHM products beside the materialised path and a plain Eigen
// GEMM, in one binary (float32 unless the name says double; one thread unless the last argument
// says 2).
//
//   BM_fwd_bwd<kind>/k/d/N/threads   forward + backward of y = x H + b (gradients of x, A, B or
//                                    s and t, b) through weft's autograd tape:
//     phm_factored       phm::phm_product         (n = 4, full B_i; never forms H)
//     phm_materialized   phm::phm_product_dense   (kron_sum + matmul, the PyTorch-style path)
//     lphm_factored      phm::lphm_product        (n = 4, r = 1)
//     lphm_materialized  phm::lphm_product_dense  (B = s t, kron_sum, matmul)
//     eigen_gemm         the three products of a dense layer with a given H as Eigen expressions
//                        (y = x H, dx = g H^T, dH = x^T g): the cost of a dense layer; runs at
//                        the labelled thread count (Eigen::setNbThreads)
//   BM_fwd<kind>/k/d/N               forward only, no gradients: phm_factored, lphm_factored,
//                                    materialized (form H, one GEMM), cached (one GEMM with H)
//   BM_kron_sum/vector|scalar        forming H (768 x 768, n = 4), the xsimd and scalar bodies
//   BM_kron_mix/vector|scalar        the mixing of the factored forward (N = 64, 768 x 768)
// Counters: FLOP/s counts 2 flops per multiply-add of the arithmetic the path performs (so the
// paths of one shape do different amounts of work; compare times).
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/ops/kron_product.hpp"
#include "weft/core/rng.hpp"
#include "weft/phm/functional.hpp"

using namespace weft;

namespace {

constexpr index_t kN4 = 4;  // PHM dimension of every benchmark

template <class T>
struct Problem {
  index_t N, k, d, n = kN4, r = 1;
  Tensor<T> x, A, B, s, t, b, g, H;
  Problem(index_t rows, index_t in, index_t out) : N(rows), k(in), d(out) {
    Rng rng(5);
    auto fill = [&](const Shape& sh, double scale) {
      Tensor<T> v(sh);
      init::normal(v, 0.0, scale, rng);
      return v;
    };
    const index_t p = k / n, q = d / n;
    x = fill(Shape{N, k}, 1.0);
    A = fill(Shape{n, n, n}, 0.5);
    B = fill(Shape{n, p, q}, 1.0 / std::sqrt(double(k)));
    s = fill(Shape{n, p, r}, 1.0);
    t = fill(Shape{n, r, q}, 1.0 / std::sqrt(double(k)));
    b = fill(Shape{d}, 0.1);
    g = fill(Shape{N, d}, 1.0);
    H = Tensor<T>(Shape{k, d});
    ops::kron_sum(A.data(), B.data(), H.data(), n, p, q);
  }
  double macs(int kind, bool backward) const {
    const double Nn = double(N), nn = double(n), kk = double(k), dd = double(d), rr = double(r);
    switch (kind) {
      case 0: return (backward ? 3 : 1) * (Nn * kk * dd + Nn * nn * nn * dd);                        // phm factored
      case 1: return (backward ? 3 : 1) * (Nn * kk * dd + nn * kk * dd);                             // phm materialised
      case 2: return (backward ? 3 : 1) * Nn * nn * rr * (kk + dd + nn * nn);                        // lphm factored
      case 3: return (backward ? 3 : 1) * (Nn * kk * dd + nn * kk * dd + kk * dd * rr / nn);          // lphm materialised
      default: return (backward ? 3 : 1) * Nn * kk * dd;                                             // one dense layer
    }
  }
};

void set_flops(benchmark::State& st, double macs) {
  st.counters["FLOP/s"] = benchmark::Counter(2 * macs, benchmark::Counter::kIsIterationInvariantRate);
}

template <class T, int Kind>
void BM_fwd_bwd(benchmark::State& st) {
  set_num_threads(int(st.range(3)));
  Problem<T> P(st.range(2), st.range(0), st.range(1));
  Tape<T> tape;
  RowMatrix<T> y(P.N, P.d), dx(P.N, P.k), dH(P.k, P.d);
  // weft keeps Eigen single-threaded (core/detail/eigen.hpp); the Eigen baseline gets the
  // labelled thread count through Eigen's own OpenMP GEMM, and is reset to 1 afterwards.
  if constexpr (Kind == 4) Eigen::setNbThreads(int(st.range(3)));
  for (auto _ : st) {
    if constexpr (Kind == 4) {  // plain Eigen: the three products of a dense layer, at the labelled threads
      y.noalias() = P.x.matrix() * P.H.matrix();
      dx.noalias() = P.g.matrix() * P.H.matrix().transpose();
      dH.noalias() = P.x.matrix().transpose() * P.g.matrix();
      benchmark::DoNotOptimize(y.data());
      benchmark::DoNotOptimize(dx.data());
      benchmark::DoNotOptimize(dH.data());
    } else {
      Var<T> x = tape.variable(P.x), A = tape.variable(P.A), b = tape.variable(P.b);
      Var<T> out;
      if constexpr (Kind == 0) out = phm::phm_product(x, A, tape.variable(P.B), b);
      if constexpr (Kind == 1) out = phm::phm_product_dense(x, A, tape.variable(P.B), &b);
      if constexpr (Kind == 2) out = phm::lphm_product(x, A, tape.variable(P.s), tape.variable(P.t), b);
      if constexpr (Kind == 3) out = phm::lphm_product_dense(x, A, tape.variable(P.s), tape.variable(P.t), &b);
      tape.backward(out, P.g);
      benchmark::DoNotOptimize(x.grad().data());
      tape.reset();
    }
  }
  if constexpr (Kind == 4) Eigen::setNbThreads(1);
  set_flops(st, P.macs(Kind, true));
}

template <class T, int Kind>
void BM_fwd(benchmark::State& st) {
  set_num_threads(1);
  Problem<T> P(st.range(2), st.range(0), st.range(1));
  const index_t n = P.n, p = P.k / n, q = P.d / n;
  Tape<T> tape;
  no_grad ng;
  Tensor<T> H(Shape{P.k, P.d}), B(Shape{n, p, q});
  RowMatrix<T> y(P.N, P.d);
  for (auto _ : st) {
    if constexpr (Kind == 0) benchmark::DoNotOptimize(phm::phm_product(tape.constant(P.x), tape.constant(P.A), tape.constant(P.B), tape.constant(P.b)).value().data());
    if constexpr (Kind == 2) benchmark::DoNotOptimize(phm::lphm_product(tape.constant(P.x), tape.constant(P.A), tape.constant(P.s), tape.constant(P.t), tape.constant(P.b)).value().data());
    if constexpr (Kind == 1 || Kind == 3) {  // form H (from B, or from s t), then one GEMM
      const T* Bp = P.B.data();
      if constexpr (Kind == 3) {
        ops::batched_gemm(n, false, false, P.s.data(), p * P.r, P.t.data(), P.r * q, B.data(), p, q, P.r, false);
        Bp = B.data();
      }
      ops::kron_sum(P.A.data(), Bp, H.data(), n, p, q);
      y.noalias() = P.x.matrix() * H.matrix();
      y.rowwise() += P.b.matrix().row(0);
      benchmark::DoNotOptimize(y.data());
    }
    if constexpr (Kind == 4) {  // a cached H: one GEMM
      y.noalias() = P.x.matrix() * P.H.matrix();
      y.rowwise() += P.b.matrix().row(0);
      benchmark::DoNotOptimize(y.data());
    }
    tape.reset();
  }
  set_flops(st, P.macs(Kind, false));
}

template <bool Vec>
void BM_kron_sum(benchmark::State& st) {
  set_num_threads(1);
  Problem<float> P(1, 768, 768);
  Tensor<float> H(Shape{768, 768});
  for (auto _ : st) {
    if (Vec) ops::kron_sum(P.A.data(), P.B.data(), H.data(), 4, 192, 192);
    else ops::kron_sum_scalar(P.A.data(), P.B.data(), H.data(), 4, 192, 192);
    benchmark::DoNotOptimize(H.data());
  }
  set_flops(st, 4.0 * 768 * 768);
}

template <bool Vec>
void BM_kron_mix(benchmark::State& st) {
  set_num_threads(1);
  const index_t N = 64, n = 4, q = 192;
  Problem<float> P(1, 768, 768);
  Tensor<float> Z(Shape{N * n * n * q}), y(Shape{N, n * q});
  Rng rng(3);
  init::normal(Z, 0.0, 1.0, rng);
  const ops::MixStrides zs{n * n * q, n * q, q}, ys{n * q, q, 0};
  for (auto _ : st) {
    if (Vec) ops::kron_mix(N, n, q, P.A.data(), true, Z.data(), zs, y.data(), ys, false);
    else ops::kron_mix_scalar(N, n, q, P.A.data(), true, Z.data(), zs, y.data(), ys, false);
    benchmark::DoNotOptimize(y.data());
  }
  set_flops(st, double(N) * n * n * n * q);
}

void shapes_fwd_bwd(benchmark::internal::Benchmark* b) {
  for (index_t N : {1, 8, 64}) b->Args({768, 768, N, 1});
  b->Args({768, 768, 64, 2});
  for (index_t N : {128, 256, 512, 1024, 2048}) b->Args({768, 768, N, 1});  // crossover sweep
  for (index_t N : {1, 64, 1024}) {  // Compacter adapter projections
    b->Args({768, 24, N, 1});
    b->Args({24, 768, N, 1});
  }
  b->Unit(benchmark::kMicrosecond);
}
void shapes_fwd(benchmark::internal::Benchmark* b) {
  for (index_t N : {1, 8, 64, 512}) b->Args({768, 768, N});
  for (index_t N : {1, 64, 1024, 8192}) {
    b->Args({768, 24, N});
    b->Args({24, 768, N});
  }
  b->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_fwd_bwd, float, 0)->Name("BM_fwd_bwd/phm_factored")->Apply(shapes_fwd_bwd);
BENCHMARK_TEMPLATE(BM_fwd_bwd, float, 1)->Name("BM_fwd_bwd/phm_materialized")->Apply(shapes_fwd_bwd);
BENCHMARK_TEMPLATE(BM_fwd_bwd, float, 2)->Name("BM_fwd_bwd/lphm_factored")->Apply(shapes_fwd_bwd);
BENCHMARK_TEMPLATE(BM_fwd_bwd, float, 3)->Name("BM_fwd_bwd/lphm_materialized")->Apply(shapes_fwd_bwd);
BENCHMARK_TEMPLATE(BM_fwd_bwd, float, 4)->Name("BM_fwd_bwd/eigen_gemm")->Apply(shapes_fwd_bwd);
BENCHMARK_TEMPLATE(BM_fwd_bwd, double, 0)->Name("BM_fwd_bwd_double/phm_factored")->Apply(shapes_fwd_bwd);
BENCHMARK_TEMPLATE(BM_fwd_bwd, double, 1)->Name("BM_fwd_bwd_double/phm_materialized")->Apply(shapes_fwd_bwd);
BENCHMARK_TEMPLATE(BM_fwd, float, 0)->Name("BM_fwd/phm_factored")->Apply(shapes_fwd);
BENCHMARK_TEMPLATE(BM_fwd, float, 2)->Name("BM_fwd/lphm_factored")->Apply(shapes_fwd);
BENCHMARK_TEMPLATE(BM_fwd, float, 1)->Name("BM_fwd/phm_materialized")->Apply(shapes_fwd);
BENCHMARK_TEMPLATE(BM_fwd, float, 3)->Name("BM_fwd/lphm_materialized")->Apply(shapes_fwd);
BENCHMARK_TEMPLATE(BM_fwd, float, 4)->Name("BM_fwd/cached")->Apply(shapes_fwd);
BENCHMARK_TEMPLATE(BM_kron_sum, true)->Name("BM_kron_sum/vector")->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_kron_sum, false)->Name("BM_kron_sum/scalar")->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_kron_mix, true)->Name("BM_kron_mix/vector")->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_kron_mix, false)->Name("BM_kron_mix/scalar")->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
