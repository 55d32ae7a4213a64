// bench/quant_bench.cpp - the fake quantisers' hot paths beside their baselines, float32, on a
// 3072 x 768 weight quantised per row at 2 bits (the size of a ViT-Base MLP matrix).
//
//  StatsQ forward+backward (statistic, values, int16 codes; identity STE gw += g):
//    BM_statsq/weft     the dispatching kernels (xsimd), threads = argument
//    BM_statsq/scalar   the scalar bodies (the plain loop the vector body mirrors)
//  LSQ per-row forward+backward (values, codes; STE mask, gw += g mask, per-row dq/ds sums):
//    BM_lsq/weft | BM_lsq/scalar
//  Through autograd (the quantiser as a WeightTransform on a tape, backward from a seed):
//    BM_statsq_tape | BM_lsq_tape   (scripts/bench times PyTorch's autograd at this shape beside it)
//  Bandwidth baseline: BM_triad  a[i] = b[i] + 3 c[i] (12 bytes per element), threads = argument;
//    three arrays of 9 MB (28 MB in all) stay in a large L3, so this is a cache-resident triad
//    (bench/roofline_bench.cpp has the DRAM-sized BM_triad_dram).
// Counters: bytes/s counts the arrays each pass must read or write once. StatsQ: forward reads w
// once (the statistic pass; the values pass re-reads the same 3 KB row from L1, not counted) and
// writes q and int16 codes (4 + 4 + 2 = 10 B/element); the backward reads g and gw and writes gw
// (12 B). LSQ: forward reads w, writes q and codes (10 B); the backward is a separate pass that
// reads w, g, gw and writes gw (16 B). The triad runs over three arrays of the weight's element
// count (12 B/element, same counting: no write-allocate traffic in either), so a pass is "at
// cache-resident triad speed" when its GB/s equals BM_triad's.
#include <benchmark/benchmark.h>

#include <vector>

#include "weft/core/autograd.hpp"
#include "weft/core/ops/fake_quant.hpp"
#include "weft/core/ops/fake_quant_lsq.hpp"
#include "weft/core/parallel.hpp"
#include "weft/quant/lsq.hpp"
#include "weft/quant/statsq.hpp"

using namespace weft;

namespace {

constexpr index_t kRows = 3072, kCols = 768, kN = kRows * kCols;
constexpr int kBits = 2;
constexpr std::int64_t kStatsqBytes = 10 + 12, kLsqBytes = 10 + 16, kTriadBytes = 12;

struct Arrays {
  std::vector<float> w, q, g, gw, s, ds;
  std::vector<ops::qcode_t> codes;
  Arrays()
      : w(std::size_t(kN)), q(std::size_t(kN)), g(std::size_t(kN)), gw(std::size_t(kN), 0.0f), s(std::size_t(kRows)),
        ds(std::size_t(kRows)), codes(std::size_t(kN)) {
    Rng rng(1);
    for (auto& x : w) x = float(rng.normal(0.0, 0.02));
    for (auto& x : g) x = float(rng.uniform(-1, 1));
    // LSQ's initial scale per row: 2 mean|w| / sqrt(Q_P), Q_P = 1 at 2 bits
    for (index_t r = 0; r < kRows; ++r) {
      double a = 0;
      for (index_t j = 0; j < kCols; ++j) a += std::abs(double(w[std::size_t(r * kCols + j)]));
      s[std::size_t(r)] = float(2 * a / double(kCols));
    }
  }
};

/// gw += g over all elements, in row chunks across threads (the identity STE; scalar loop).
void add_scalar(float* d, const float* g, index_t n) {
  for (index_t i = 0; i < n; ++i) d[i] += g[i];
}
void add_parallel(float* d, const float* g, index_t n) {
  parallel_for(0, n, [&](index_t lo, index_t hi) {
    ArrayMap<float>(d + lo, hi - lo) += ConstArrayMap<float>(g + lo, hi - lo);
  });
}

template <bool Vector>
void BM_statsq(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  Arrays d;
  const ops::FqGeometry geo{1, kRows, kCols};
  ops::StatsqOut<float> out;
  out.q = d.q.data();
  out.codes = d.codes.data();
  out.scales = d.s.data();
  for (auto _ : st) {
    if constexpr (Vector) {
      ops::statsq_forward(d.w.data(), geo, kBits, out);
      add_parallel(d.gw.data(), d.g.data(), kN);
    } else {
      ops::statsq_forward_scalar(d.w.data(), geo, kBits, out);
      add_scalar(d.gw.data(), d.g.data(), kN);
    }
    benchmark::DoNotOptimize(d.q.data());
    benchmark::DoNotOptimize(d.gw.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * kN * kStatsqBytes);
  set_num_threads(1);
}

template <bool Vector>
void BM_lsq(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  Arrays d;
  ops::LsqParams<float> ps;
  ps.s = d.s.data();
  ps.count = kRows;
  const ops::LsqRange range = ops::lsq_range(kBits, true);
  for (auto _ : st) {
    if constexpr (Vector) {
      ops::lsq_forward(d.w.data(), kRows, kCols, ps, range, d.q.data(), d.codes.data());
      ops::lsq_backward(d.w.data(), d.g.data(), kRows, kCols, ps, range, d.gw.data(), d.ds.data(), static_cast<float*>(nullptr));
    } else {
      ops::lsq_forward_scalar(d.w.data(), kRows, kCols, ps, range, d.q.data(), d.codes.data());
      ops::lsq_backward_scalar(d.w.data(), d.g.data(), kRows, kCols, ps, range, d.gw.data(), d.ds.data(),
                               static_cast<float*>(nullptr));
    }
    benchmark::DoNotOptimize(d.q.data());
    benchmark::DoNotOptimize(d.gw.data());
    benchmark::DoNotOptimize(d.ds.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * kN * kLsqBytes);
  set_num_threads(1);
}

/// The quantiser as a WeightTransform on a tape: forward, backward from a seed, reset.
template <class Q>
void tape_pass(benchmark::State& st, Q& q, const Tensor<float>& w, const Tensor<float>& seed, std::int64_t bytes) {
  Tape<float> t;
  for (auto _ : st) {
    Var<float> wv = t.variable(w);
    Var<float> y = q.apply(wv);
    t.backward(y, seed);
    benchmark::DoNotOptimize(t.grad(wv).data());
    t.reset();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * kN * bytes);
  set_num_threads(1);
}

Tensor<float> weight() {
  Arrays d;
  Tensor<float> w(Shape{kRows, kCols});
  std::copy(d.w.begin(), d.w.end(), w.data());
  return w;
}
Tensor<float> seed_grad() {
  Arrays d;
  Tensor<float> g(Shape{kRows, kCols});
  std::copy(d.g.begin(), d.g.end(), g.data());
  return g;
}

void BM_statsq_tape(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  const Tensor<float> w = weight(), g = seed_grad();
  quant::StatsQuantizer<kBits, float> q;
  tape_pass(st, q, w, g, kStatsqBytes);
}

void BM_lsq_tape(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  const Tensor<float> w = weight(), g = seed_grad();
  quant::LsqQuantizer<kBits, float> q(quant::LsqOptions{}, w);
  tape_pass(st, q, w, g, kLsqBytes);
}

void BM_triad(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  const std::size_t n = static_cast<std::size_t>(kN);
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  for (auto _ : st) {
    parallel_for(0, kN, [&](index_t lo, index_t hi) {
      ArrayMap<float>(a.data() + lo, hi - lo) =
          ConstArrayMap<float>(b.data() + lo, hi - lo) + 3.0f * ConstArrayMap<float>(c.data() + lo, hi - lo);
    });
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * kN * kTriadBytes);
  set_num_threads(1);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_statsq, true)->Name("BM_statsq/weft")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_statsq, false)->Name("BM_statsq/scalar")->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_lsq, true)->Name("BM_lsq/weft")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_lsq, false)->Name("BM_lsq/scalar")->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_statsq_tape)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_lsq_tape)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_triad)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
