// bench/ordinal_bench.cpp - PRESTO's hot paths beside their baselines, in one binary.
//
//  Full lambda path with 5-fold CV (ordinal::presto: 6 paths of 20 lambdas), P7 design
//  (n = 2500, p = 10, K = 4, sparse differences):
//    BM_presto_cv/newton        proximal Newton (exact Hessian, coordinate descent inside,
//                               barrier continuation on the ordering constraints), tol 1e-10
//    BM_presto_cv/fista         the plain proximal-gradient baseline (FISTA with backtracking
//                               and restarts), tol 1e-7 (it cannot certify much less in double)
//  Larger case, one path of 20 lambdas, n = 20000, p = 100, K = 4, sparse design with entries
//  +-0.08 (larger ones make some of the 20000 rows cross boundaries, which simulate() rejects):
//    BM_presto_path_large/newton, BM_presto_path_large/fista (at most 500 iterations per lambda)
//  Kernels, n = 20000 rows:
//    BM_boundary_terms_<T>_simd|scalar  per-row terms of -log(sigma(b) - sigma(a)) with Hessian
//    BM_prox_step_<T>_simd|scalar       fused elastic-net proximal-gradient step (n = 1 << 16)
// Counters: fits/s (lambda fits solved, CV included), bytes/s for the kernels (bytes read and
// written), kkt = the largest KKT residual of the final fit, iterations = solver steps per fit.
// Thread count: 1 (the argument of every benchmark is its thread count).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <vector>

#include "weft/core/ops/prox.hpp"
#include "weft/ordinal/kernels.hpp"
#include "weft/ordinal/presto.hpp"
#include "weft/ordinal/simulate.hpp"

using namespace weft;

namespace {

const ordinal::SimulatedData<double>& p7_data() {
  static const ordinal::SimulatedData<double> d = [] {
    Rng rng = Rng(2023).stream(0);
    return ordinal::simulate<double>(ordinal::SimulationOptions{}, rng);
  }();
  return d;
}

const ordinal::SimulatedData<double>& large_data() {
  static const ordinal::SimulatedData<double> d = [] {
    ordinal::SimulationOptions so;
    so.n = 20000;
    so.p = 100;
    so.size = 0.08;  // smaller entries: with 100 features the boundaries must not cross on any of 20000 rows
    Rng rng = Rng(2023).stream(100);
    return ordinal::simulate<double>(so, rng);
  }();
  return d;
}

ordinal::PrestoOptions options(bool fista) {
  ordinal::PrestoOptions o;
  if (fista) {
    o.solver = ordinal::Solver::fista;
    o.tol = 1e-7;
  }
  return o;
}

void BM_presto_cv(benchmark::State& st, bool fista) {
  set_num_threads(int(st.range(0)));
  const auto& d = p7_data();
  const ordinal::PrestoOptions o = options(fista);
  double kkt = 0, iters = 0;
  for (auto _ : st) {
    const auto cv = ordinal::presto(d.x, d.y, o);
    kkt = cv.fit.kkt;
    iters = cv.fit.iterations;
    benchmark::DoNotOptimize(cv.lambda_star);
  }
  st.counters["fits/s"] = benchmark::Counter(6.0 * 20 + 1, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["kkt"] = kkt;
  st.counters["iterations"] = iters;
}

void BM_presto_path_large(benchmark::State& st, bool fista) {
  set_num_threads(int(st.range(0)));
  const auto& d = large_data();
  ordinal::PrestoOptions o = options(fista);
  if (fista) o.max_iter = 500;
  double kkt = 0, iters = 0;
  for (auto _ : st) {
    const auto path = ordinal::presto_path(d.x, d.y, o);
    kkt = 0;
    iters = 0;
    for (const auto& f : path.fits) {
      kkt = std::max(kkt, f.kkt);
      iters += f.iterations;
    }
    benchmark::DoNotOptimize(path.fits.back().nll);
  }
  st.counters["fits/s"] = benchmark::Counter(20.0, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["kkt"] = kkt;
  st.counters["iterations"] = iters / 20.0;
}

template <class T>
void BM_boundary_terms(benchmark::State& st, bool vector) {
  set_num_threads(int(st.range(0)));
  const index_t n = 20000;
  Rng rng(3);
  std::vector<T> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    a[std::size_t(i)] = T(rng.uniform(-4, 4));
    b[std::size_t(i)] = a[std::size_t(i)] + T(rng.uniform(0.01, 3));
  }
  std::vector<std::vector<T>> o(6, std::vector<T>(static_cast<std::size_t>(n)));
  const ordinal::detail::BoundaryTerms<T> t{o[0].data(), o[1].data(), o[2].data(), o[3].data(), o[4].data(), o[5].data()};
  for (auto _ : st) {
    if (vector) ordinal::detail::boundary_terms(a.data(), b.data(), n, t);
    else ordinal::detail::boundary_terms_scalar(a.data(), b.data(), n, t);
    benchmark::ClobberMemory();
  }
  st.counters["bytes/s"] = benchmark::Counter(double(n) * 8 * sizeof(T), benchmark::Counter::kIsIterationInvariantRate);
}

template <class T>
void BM_prox_step(benchmark::State& st, bool vector) {
  set_num_threads(int(st.range(0)));
  const index_t n = index_t(1) << 16;
  Rng rng(4);
  std::vector<T> x(static_cast<std::size_t>(n)), g(x), w(x), out(x);
  for (index_t i = 0; i < n; ++i) {
    x[std::size_t(i)] = T(rng.normal());
    g[std::size_t(i)] = T(rng.normal());
    w[std::size_t(i)] = T(i % 11 == 0 ? 0 : 1);
  }
  for (auto _ : st) {
    if (vector) ops::prox_grad_step(x.data(), g.data(), w.data(), out.data(), n, T(0.1), T(0.5), T(0.1));
    else ops::prox_grad_step_scalar(x.data(), g.data(), w.data(), out.data(), n, T(0.1), T(0.5), T(0.1));
    benchmark::ClobberMemory();
  }
  st.counters["bytes/s"] = benchmark::Counter(double(n) * 4 * sizeof(T), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_presto_cv, newton, false)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_presto_cv, fista, true)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_presto_path_large, newton, false)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_CAPTURE(BM_presto_path_large, fista, true)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(1);
void BM_boundary_terms_double_simd(benchmark::State& st) { BM_boundary_terms<double>(st, true); }
void BM_boundary_terms_double_scalar(benchmark::State& st) { BM_boundary_terms<double>(st, false); }
void BM_boundary_terms_float_simd(benchmark::State& st) { BM_boundary_terms<float>(st, true); }
void BM_boundary_terms_float_scalar(benchmark::State& st) { BM_boundary_terms<float>(st, false); }
void BM_prox_step_double_simd(benchmark::State& st) { BM_prox_step<double>(st, true); }
void BM_prox_step_double_scalar(benchmark::State& st) { BM_prox_step<double>(st, false); }
void BM_prox_step_float_simd(benchmark::State& st) { BM_prox_step<float>(st, true); }
void BM_prox_step_float_scalar(benchmark::State& st) { BM_prox_step<float>(st, false); }
BENCHMARK(BM_boundary_terms_double_simd)->Arg(1);
BENCHMARK(BM_boundary_terms_double_scalar)->Arg(1);
BENCHMARK(BM_boundary_terms_float_simd)->Arg(1);
BENCHMARK(BM_boundary_terms_float_scalar)->Arg(1);
BENCHMARK(BM_prox_step_double_simd)->Arg(1);
BENCHMARK(BM_prox_step_double_scalar)->Arg(1);
BENCHMARK(BM_prox_step_float_simd)->Arg(1);
BENCHMARK(BM_prox_step_float_scalar)->Arg(1);

BENCHMARK_MAIN();
