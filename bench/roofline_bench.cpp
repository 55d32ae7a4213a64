// bench/roofline_bench.cpp - the bounds scripts/bench divides by, measured in the same run.
//
//   BM_triad_dram/<threads>   a[i] = b[i] + 3 c[i], float, three arrays whose total size is
//                             4 x the last-level cache (read from sysfs; capped at a third of
//                             MemAvailable), so each pass streams from DRAM
//   BM_triad_cache/<threads>  the same triad on three arrays of 3072 x 768 floats (28 MB in all,
//                             the quantisers' weight size): resident in a large L3, so this is a
//                             cache bandwidth, not a DRAM one
//   BM_eigen_gemm_peak/<threads>      C = A B, 768 x 768 x 768 float, Eigen at <threads>
//                                     (Eigen::setNbThreads; weft itself keeps Eigen at 1)
//   BM_eigen_gemm/64/<threads>        C = X W, 64 x 768 x 768 float (the PEFT / PHM batch)
// Counters: bytes/s counts 12 B per triad element (read b, c, write a; no write-allocate
// traffic counted); FLOP/s counts 2 flops per multiply-add.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "weft/core/ops/matmul.hpp"
#include "weft/core/parallel.hpp"
#include "weft/core/rng.hpp"
#include "weft/core/tensor.hpp"

using namespace weft;

namespace {

/// Size in bytes of the largest cache sysfs lists for cpu0 (0 when unreadable).
std::int64_t llc_bytes() {
  std::int64_t best = 0;
  for (int i = 0; i < 8; ++i) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
    std::string s;
    if (!(f >> s) || s.empty()) continue;
    std::int64_t v = std::stoll(s);
    const char unit = s.back();
    if (unit == 'K') v <<= 10;
    if (unit == 'M') v <<= 20;
    best = std::max(best, v);
  }
  return best;
}

/// MemAvailable in bytes (0 when unreadable).
std::int64_t mem_available() {
  std::ifstream f("/proc/meminfo");
  std::string key, unit;
  std::int64_t kb = 0;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb << 10;
  return 0;
}

void triad(benchmark::State& st, index_t n) {
  set_num_threads(int(st.range(0)));
  std::vector<float> a(std::size_t(n), 0.0f), b(std::size_t(n), 1.0f), c(std::size_t(n), 2.0f);  // touched here
  for (auto _ : st) {
    parallel_for(0, n, [&](index_t lo, index_t hi) {
      ArrayMap<float>(a.data() + lo, hi - lo) =
          ConstArrayMap<float>(b.data() + lo, hi - lo) + 3.0f * ConstArrayMap<float>(c.data() + lo, hi - lo);
    });
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * n * 12);
  st.counters["array_MiB"] = double(n) * 4.0 / double(1 << 20);
  set_num_threads(1);
}

void BM_triad_dram(benchmark::State& st) {
  std::int64_t total = 4 * std::max<std::int64_t>(llc_bytes(), 64 << 20);
  if (const std::int64_t avail = mem_available(); avail > 0) total = std::min(total, avail / 3);
  triad(st, index_t(total / 12));
}

void BM_triad_cache(benchmark::State& st) { triad(st, 3072 * 768); }

void gemm(benchmark::State& st, index_t m, index_t k, index_t n) {
  Eigen::setNbThreads(int(st.range(0)));
  RowMatrix<float> a(m, k), b(k, n), c(m, n);
  a.setRandom();
  b.setRandom();
  for (auto _ : st) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  st.counters["FLOP/s"] = benchmark::Counter(2.0 * double(m) * double(k) * double(n), benchmark::Counter::kIsIterationInvariantRate);
  Eigen::setNbThreads(1);
}

void BM_eigen_gemm_peak(benchmark::State& st) { gemm(st, 768, 768, 768); }
void BM_eigen_gemm_64(benchmark::State& st) { gemm(st, 64, 768, 768); }

}  // namespace

BENCHMARK(BM_triad_dram)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_triad_cache)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_eigen_gemm_peak)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_eigen_gemm_64)->Name("BM_eigen_gemm/64")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
