// bench/deploy_bench.cpp - packed low-bit GEMV/GEMM (deploy/kernels.hpp) beside Eigen float
// GEMV/GEMM and a DRAM bandwidth baseline, all in this binary, one thread (Eigen too).
//
//  BM_gemv/<bits>/<group>       packed y = W x, W 4096 x 4096 (the same matrix every call: it
//                               stays in L2/L3, 4.2 MB at 2 bits)
//  BM_gemv_cold/<bits>          the same over enough copies of W to exceed the L3 (> 480 MB),
//                               one copy per call, so the words come from DRAM
//  BM_gemv_int8/<bits>, BM_gemv_int8_cold/<bits>, BM_gemm_int8/<bits>/<batch>
//                               the int8-activation path (VNNI vector body on AVX-512 VNNI)
//  BM_eigen_gemv | BM_eigen_gemv_cold   float W (64 MB) times x with Eigen::Map
//  BM_gemm/<bits>/<batch>, BM_eigen_gemm/<batch>   Y = X W^T for batch 8 and 64
//  BM_triad                     a[i] = b[i] + 3 c[i] over three 256 MB arrays (768 MB: DRAM-sized
//                               only where the last-level cache is well below that; roofline_bench's
//                               BM_triad_dram sizes itself from the cache)
// Counters: bytes/s counts the weight bytes each call reads (packed words + steps, or 4 B per
// float weight) plus x and y; the triad counts 12 B per element. FLOP/s = 2 rows cols batch.
// Run: ./bench/deploy_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <vector>

#include "weft/core/detail/eigen.hpp"  // Eigen, after the AVX-512 intrinsics guard (GCC 12)
#include "weft/core/parallel.hpp"
#include "weft/core/rng.hpp"
#include "weft/deploy/int8.hpp"
#include "weft/deploy/kernels.hpp"
#include "weft/deploy/packed.hpp"

using namespace weft;

namespace {

constexpr index_t kRows = 4096, kCols = 4096;
constexpr std::size_t kColdBytes = std::size_t(560) << 20;  // > the 480 MB L3 of the test machine

template <int Bits, int GS>
deploy::PackedWeights<Bits, GS> make_packed() {
  Rng rng(1);
  std::vector<std::int16_t> codes(std::size_t(kRows * kCols));
  const int lo = -(1 << (Bits - 1));
  for (auto& c : codes) c = std::int16_t(lo + int(rng.uniform(0.0, double(1 << Bits))) % (1 << Bits));
  std::vector<float> steps(std::size_t(kRows * deploy::PackedFormat<Bits, GS>::groups_per_row(kCols)));
  for (auto& s : steps) s = float(rng.uniform(0.01, 0.02));
  return deploy::pack_codes<Bits, GS>(kRows, kCols, codes.data(), steps.data(), 0.5f, lo);
}

std::vector<float> random_vector(std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(rng.uniform(-1, 1));
  return v;
}

void counters(benchmark::State& st, double weight_bytes, index_t batch) {
  const double per_call = weight_bytes + 4.0 * double(batch) * double(kRows + kCols);
  st.counters["bytes/s"] = benchmark::Counter(per_call * double(st.iterations()), benchmark::Counter::kIsRate);
  st.counters["FLOP/s"] =
      benchmark::Counter(2.0 * double(kRows * kCols) * double(batch) * double(st.iterations()), benchmark::Counter::kIsRate);
}

template <int Bits, int GS>
void BM_gemm(benchmark::State& st) {
  set_num_threads(1);
  const index_t batch = st.range(0);
  static const auto p = make_packed<Bits, GS>();
  const auto v = p.view();
  const auto x = random_vector(std::size_t(batch * kCols), 2);
  std::vector<float> y(std::size_t(batch * kRows)), scratch(std::size_t(deploy::gemm_scratch_size(v, batch)));
  for (auto _ : st) {
    deploy::gemm(v, x.data(), batch, y.data(), nullptr, scratch.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  counters(st, double(p.bytes()), batch);
}

template <int Bits, bool Int8>
void BM_gemv_cold(benchmark::State& st) {
  set_num_threads(1);
  const auto p = make_packed<Bits, 0>();
  const std::size_t copies = kColdBytes / p.bytes() + 1;
  std::vector<deploy::PackedWeights<Bits, 0>> ws(copies, p);
  const auto x = random_vector(std::size_t(kCols), 2);
  std::vector<float> y(static_cast<std::size_t>(kRows)), scratch(static_cast<std::size_t>(deploy::gemm_scratch_size(p.view(), 1)));
  std::vector<unsigned char> s8(static_cast<std::size_t>(deploy::gemm_int8_scratch_bytes(p.view(), 1)));
  std::size_t i = 0;
  for (auto _ : st) {
    if constexpr (Int8) deploy::gemm_int8(ws[i].view(), x.data(), 1, y.data(), nullptr, s8.data());
    else deploy::gemm(ws[i].view(), x.data(), 1, y.data(), nullptr, scratch.data());
    i = (i + 1) % copies;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  counters(st, double(p.bytes()), 1);
}

template <int Bits>
void BM_gemm_int8(benchmark::State& st) {
  set_num_threads(1);
  const index_t batch = st.range(0);
  static const auto p = make_packed<Bits, 0>();
  const auto x = random_vector(std::size_t(batch * kCols), 2);
  std::vector<float> y(std::size_t(batch * kRows));
  std::vector<unsigned char> scratch(std::size_t(deploy::gemm_int8_scratch_bytes(p.view(), batch)));
  for (auto _ : st) {
    deploy::gemm_int8(p.view(), x.data(), batch, y.data(), nullptr, scratch.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  counters(st, double(p.bytes()), batch);
}

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void BM_eigen_gemm(benchmark::State& st) {
  Eigen::setNbThreads(1);
  const index_t batch = st.range(0);
  static const auto w = random_vector(std::size_t(kRows * kCols), 3);
  const auto x = random_vector(std::size_t(batch * kCols), 2);
  std::vector<float> y(std::size_t(batch * kRows));
  Eigen::Map<const RowMat> W(w.data(), kRows, kCols), X(x.data(), batch, kCols);
  Eigen::Map<RowMat> Y(y.data(), batch, kRows);
  for (auto _ : st) {
    if (batch == 1) Y.row(0).transpose().noalias() = W * X.row(0).transpose();
    else Y.noalias() = X * W.transpose();
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  counters(st, 4.0 * double(kRows * kCols), batch);
}

void BM_eigen_gemv_cold(benchmark::State& st) {
  Eigen::setNbThreads(1);
  const std::size_t n = std::size_t(kRows * kCols), copies = kColdBytes / (4 * n) + 1;
  std::vector<float> w(n * copies);
  {
    const auto one = random_vector(n, 3);
    for (std::size_t c = 0; c < copies; ++c) std::memcpy(w.data() + c * n, one.data(), 4 * n);
  }
  const auto x = random_vector(std::size_t(kCols), 2);
  std::vector<float> y(static_cast<std::size_t>(kRows));
  Eigen::Map<const Eigen::VectorXf> X(x.data(), kCols);
  Eigen::Map<Eigen::VectorXf> Y(y.data(), kRows);
  std::size_t i = 0;
  for (auto _ : st) {
    Eigen::Map<const RowMat> W(w.data() + i * n, kRows, kCols);
    Y.noalias() = W * X;
    i = (i + 1) % copies;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  counters(st, 4.0 * double(n), 1);
}

void BM_triad(benchmark::State& st) {
  const std::size_t n = std::size_t(64) << 20;  // 3 arrays of 256 MB
  std::vector<float> a(n, 0.0f), b(n, 1.0f), c(n, 2.0f);
  for (auto _ : st) {
    float* pa = a.data();
    const float *pb = b.data(), *pc = c.data();
    for (std::size_t i = 0; i < n; ++i) pa[i] = pb[i] + 3.0f * pc[i];
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  st.counters["bytes/s"] = benchmark::Counter(12.0 * double(n) * double(st.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_triad)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm, 2, 0)->Name("BM_gemv/2/row")->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm, 2, 32)->Name("BM_gemv/2/g32")->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm, 4, 0)->Name("BM_gemv/4/row")->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm, 4, 32)->Name("BM_gemv/4/g32")->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_eigen_gemm)->Name("BM_eigen_gemv")->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm_int8, 2)->Name("BM_gemv_int8/2/row")->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm_int8, 4)->Name("BM_gemv_int8/4/row")->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemv_cold, 2, false)->Name("BM_gemv_cold/2")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemv_cold, 4, false)->Name("BM_gemv_cold/4")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemv_cold, 2, true)->Name("BM_gemv_int8_cold/2")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemv_cold, 4, true)->Name("BM_gemv_int8_cold/4")->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_eigen_gemv_cold)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm, 2, 0)->Name("BM_gemm/2/row")->Arg(8)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm, 4, 0)->Name("BM_gemm/4/row")->Arg(8)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm_int8, 2)->Name("BM_gemm_int8/2/row")->Arg(8)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_gemm_int8, 4)->Name("BM_gemm_int8/4/row")->Arg(8)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_eigen_gemm)->Arg(8)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
