// bench/quantile_bench.cpp - the monotonisation hot paths of weft::quantile beside their
// baselines, in one binary (double precision).
//
//  One long row, y_k = U{-50..49} + 50 log(1 + k) (the data of scikit-learn's isotonic benchmark):
//    BM_pava_row/weft/n       ops::isotonic_row, O(n), caller scratch
//    BM_pava_row/stack/n      stack-based PAVA, O(n) (as scikit-learn's kernel): the simple baseline
//    BM_pava_row/naive/n      pool the first violating adjacent pair of blocks and rescan from
//                             the start: the textbook O(n^2) pool-adjacent-violators
//  1e5 rows of 19 levels, q_k = Phi^{-1}(tau_k) + 0.3 N(0, 1) (most rows cross), or the same
//  rows sorted ("sorted": the vector fast path copies them):
//    BM_isotonic_rows/weft/threads    ops::isotonic_rows (xsimd monotone check + PAVA)
//    BM_isotonic_rows/scalar          ops::isotonic_rows_scalar, 1 thread
//    BM_isotonic_rows/naive           naive O(m^2) PAVA per row, with per-row std::vector blocks
//    BM_sort_rows/weft/threads        ops::sort_rows (stable insertion sort, xsimd check)
//    BM_sort_rows/std_sort            copy + std::sort per row, 1 thread
// Counters: items/s = points (row elements) per second; bytes/s = 16 bytes per point (read +
// write of a double).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "weft/core/ops/isotonic.hpp"
#include "weft/core/rng.hpp"
#include "weft/quantile/levels.hpp"
#include "weft/quantile/models.hpp"

using namespace weft;

namespace {

std::vector<double> long_row(index_t n) {
  Rng rng(42);
  std::vector<double> y(static_cast<std::size_t>(n));
  for (index_t k = 0; k < n; ++k) y[std::size_t(k)] = double(rng.below(100)) - 50.0 + 50.0 * std::log1p(double(k));
  return y;
}

/// Naive pool-adjacent-violators: blocks (sum, count); find the first adjacent violation, pool
/// it, start the scan again. O(n^2) in the worst case and typical for long rows.
void naive_pava(const double* q, double* out, index_t n, std::vector<double>& sum, std::vector<index_t>& cnt) {
  sum.assign(q, q + n);
  cnt.assign(static_cast<std::size_t>(n), 1);
  for (bool again = true; again;) {
    again = false;
    for (std::size_t k = 0; k + 1 < sum.size(); ++k)
      if (sum[k] / double(cnt[k]) > sum[k + 1] / double(cnt[k + 1])) {
        sum[k] += sum[k + 1];
        cnt[k] += cnt[k + 1];
        sum.erase(sum.begin() + std::ptrdiff_t(k) + 1);
        cnt.erase(cnt.begin() + std::ptrdiff_t(k) + 1);
        again = true;
        break;
      }
  }
  index_t pos = 0;
  for (std::size_t b = 0; b < sum.size(); ++b)
    for (index_t j = 0; j < cnt[b]; ++j) out[pos++] = sum[b] / double(cnt[b]);
}

/// Stack-based pool-adjacent-violators, O(n): push each point as a block, pool the top two blocks
/// while they violate the order (the algorithm of scikit-learn's contiguous isotonic kernel),
/// then expand the blocks. The simple baseline an implementer would write first.
void stack_pava(const double* q, double* out, index_t n, std::vector<double>& sum, std::vector<index_t>& cnt) {
  sum.clear();
  cnt.clear();
  for (index_t i = 0; i < n; ++i) {
    double s = q[i];
    index_t c = 1;
    while (!sum.empty() && sum.back() * double(c) >= s * double(cnt.back())) {  // mean(top) >= mean(new)
      s += sum.back();
      c += cnt.back();
      sum.pop_back();
      cnt.pop_back();
    }
    sum.push_back(s);
    cnt.push_back(c);
  }
  index_t pos = 0;
  for (std::size_t b = 0; b < sum.size(); ++b) {
    const double m = sum[b] / double(cnt[b]);
    for (index_t j = 0; j < cnt[b]; ++j) out[pos++] = m;
  }
}

void set_counters(benchmark::State& st, double points) {
  st.counters["items/s"] = benchmark::Counter(points, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["bytes/s"] = benchmark::Counter(16 * points, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_pava_row_weft(benchmark::State& st) {
  const index_t n = st.range(0);
  const std::vector<double> y = long_row(n);
  std::vector<double> out(y.size());
  std::vector<index_t> ends(y.size());
  for (auto _ : st) {
    benchmark::DoNotOptimize(ops::isotonic_row(y.data(), out.data(), n, ends.data()));
    benchmark::ClobberMemory();
  }
  set_counters(st, double(n));
}

void BM_pava_row_stack(benchmark::State& st) {
  const index_t n = st.range(0);
  const std::vector<double> y = long_row(n);
  std::vector<double> out(y.size()), sum;
  std::vector<index_t> cnt;
  sum.reserve(y.size());
  cnt.reserve(y.size());
  for (auto _ : st) {
    stack_pava(y.data(), out.data(), n, sum, cnt);
    benchmark::ClobberMemory();
  }
  set_counters(st, double(n));
}

void BM_pava_row_naive(benchmark::State& st) {
  const index_t n = st.range(0);
  const std::vector<double> y = long_row(n);
  std::vector<double> out(y.size()), sum;
  std::vector<index_t> cnt;
  for (auto _ : st) {
    naive_pava(y.data(), out.data(), n, sum, cnt);
    benchmark::ClobberMemory();
  }
  set_counters(st, double(n));
}

constexpr index_t kRows = 100000, kLevels = 19;

const std::vector<double>& level_rows(bool sorted) {
  static std::vector<double> rows[2];
  std::vector<double>& r = rows[sorted ? 1 : 0];
  if (r.empty()) {
    const std::vector<double> tau = quantile::even_levels(kLevels);
    Rng rng(7);
    r.resize(static_cast<std::size_t>(kRows * kLevels));
    for (index_t i = 0; i < kRows; ++i) {
      for (index_t k = 0; k < kLevels; ++k)
        r[std::size_t(i * kLevels + k)] = quantile::normal_quantile(tau[std::size_t(k)]) + 0.3 * rng.normal();
      if (sorted) std::sort(r.begin() + i * kLevels, r.begin() + (i + 1) * kLevels);
    }
  }
  return r;
}

void BM_isotonic_rows_weft(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  const std::vector<double>& q = level_rows(st.range(1) != 0);
  std::vector<double> out(q.size());
  for (auto _ : st) {
    ops::isotonic_rows(q.data(), out.data(), kRows, kLevels);
    benchmark::ClobberMemory();
  }
  set_counters(st, double(kRows * kLevels));
}

void BM_isotonic_rows_scalar(benchmark::State& st) {
  set_num_threads(1);
  const std::vector<double>& q = level_rows(st.range(0) != 0);
  std::vector<double> out(q.size());
  for (auto _ : st) {
    ops::isotonic_rows_scalar(q.data(), out.data(), kRows, kLevels);
    benchmark::ClobberMemory();
  }
  set_counters(st, double(kRows * kLevels));
}

void BM_isotonic_rows_naive(benchmark::State& st) {
  const std::vector<double>& q = level_rows(st.range(0) != 0);
  std::vector<double> out(q.size());
  for (auto _ : st) {
    for (index_t i = 0; i < kRows; ++i) {
      std::vector<double> sum;  // a fresh allocation per row, as a straightforward loop would do
      std::vector<index_t> cnt;
      naive_pava(q.data() + i * kLevels, out.data() + i * kLevels, kLevels, sum, cnt);
    }
    benchmark::ClobberMemory();
  }
  set_counters(st, double(kRows * kLevels));
}

void BM_sort_rows_weft(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  const std::vector<double>& q = level_rows(st.range(1) != 0);
  std::vector<double> out(q.size());
  for (auto _ : st) {
    ops::sort_rows(q.data(), out.data(), kRows, kLevels);
    benchmark::ClobberMemory();
  }
  set_counters(st, double(kRows * kLevels));
}

void BM_sort_rows_std_sort(benchmark::State& st) {
  const std::vector<double>& q = level_rows(st.range(0) != 0);
  std::vector<double> out(q.size());
  for (auto _ : st) {
    std::copy(q.begin(), q.end(), out.begin());
    for (index_t i = 0; i < kRows; ++i) std::sort(out.begin() + i * kLevels, out.begin() + (i + 1) * kLevels);
    benchmark::ClobberMemory();
  }
  set_counters(st, double(kRows * kLevels));
}

}  // namespace

BENCHMARK(BM_pava_row_weft)->Name("BM_pava_row/weft")->Arg(1000)->Arg(10000)->Arg(100000)->Arg(1000000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_pava_row_stack)->Name("BM_pava_row/stack")->Arg(1000)->Arg(10000)->Arg(100000)->Arg(1000000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_pava_row_naive)->Name("BM_pava_row/naive")->Arg(1000)->Arg(3000)->Arg(10000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_isotonic_rows_weft)->Name("BM_isotonic_rows/weft")->ArgNames({"threads", "sorted"})
    ->Args({1, 0})->Args({2, 0})->Args({1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_isotonic_rows_scalar)->Name("BM_isotonic_rows/scalar")->ArgNames({"sorted"})->Arg(0)->Arg(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_isotonic_rows_naive)->Name("BM_isotonic_rows/naive")->ArgNames({"sorted"})->Arg(0)->Arg(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_sort_rows_weft)->Name("BM_sort_rows/weft")->ArgNames({"threads", "sorted"})
    ->Args({1, 0})->Args({2, 0})->Args({1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sort_rows_std_sort)->Name("BM_sort_rows/std_sort")->ArgNames({"sorted"})->Arg(0)->Arg(1)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
