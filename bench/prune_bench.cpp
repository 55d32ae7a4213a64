// bench/prune_bench.cpp - pruning's hot paths beside their baselines, float32, W 4096 x 4096.
//
//  scoring + masking at 50 % (exact count, ties by index):
//    BM_mask/<score>/weft   score kernel + select_mask (nth_element selection), threads = 2nd arg;
//                           the scores go into one reused buffer; select_mask's own mask and
//                           scratch are still allocated per call (the library's, issue 24 item 4)
//    BM_mask/<score>/sort   the same score kernel + a std::sort-based threshold (the baseline)
//    score 0 = magnitude |W| (per matrix), 1 = Wanda |W| ||X_j|| (per output row),
//          2 = ObsDiag W^2 / [H^-1]_jj (per matrix; the diagonal precomputed)
//  score kernels alone (1 thread unless noted):
//    BM_scores/{weft,scalar,eigen}  ObsDiag scores: xsimd kernel, scalar body, Eigen expression
//  D-Pruner's per-step work on a 4096 x 4096 matrix (coupling + importance accumulation):
//    BM_dual_step/{weft,scalar}
//  inverse-Hessian diagonal (ObsDiag's setup), n = 256 / 512 / 1024, double:
//    BM_hinv_diag/weft     Cholesky + triangular inverse, column norms (inverse_hessian_diag)
//    BM_hinv_diag/dense    Cholesky solve against the identity (the full inverse), its diagonal
// Counters: bytes/s counts the arrays a pass must read and write once (scores: W and the scores;
// masks: the scores read and the byte mask written); FLOP/s for the inverse (n^3 / 3 + n^3 / 3
// for weft, n^3 / 3 + 2 n^3 for the dense inverse).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "weft/core/rng.hpp"
#include "weft/prune.hpp"

#include <Eigen/Cholesky>

using namespace weft;
using namespace weft::prune;

namespace {

constexpr index_t kN = 4096;

struct Data {
  Tensor<float> w, norms, inv_d;
  std::vector<double> hinv_diag;
  Data() : w(Shape{kN, kN}), norms(Shape{kN}), inv_d(Shape{kN}), hinv_diag(std::size_t(kN)) {
    Rng rng(1);
    init::normal(w, 0.0, 0.02, rng);
    for (index_t j = 0; j < kN; ++j) {
      norms.flat(j) = float(rng.uniform(0.5, 4.0));
      hinv_diag[std::size_t(j)] = rng.uniform(0.01, 1.0);
      inv_d.flat(j) = float(1.0 / hinv_diag[std::size_t(j)]);
    }
  }
};
const Data& data() {
  static Data d;
  return d;
}

/// The same score kernels as magnitude_scores / wanda_scores / obs_diag_scores, written into a
/// buffer the caller reuses (the bench must not time page faults of a fresh 64 MiB tensor).
void score_into(int kind, const Data& d, Tensor<float>& s) {
  switch (kind) {
    case 0: abs_scores(d.w.data(), s.data(), d.w.numel()); break;
    case 1: col_scaled_abs(d.w.data(), d.norms.data(), s.data(), kN, kN); break;
    default: col_scaled_sq(d.w.data(), d.inv_d.data(), s.data(), kN, kN); break;
  }
}

Tensor<float> score(int kind, const Data& d) {
  switch (kind) {
    case 0: return magnitude_scores(d.w);
    case 1: return wanda_scores(d.w, d.norms);
    default: return obs_diag_scores(d.w, d.hinv_diag);
  }
}

/// Exact count by a full sort of a copy of the group's scores, then the same tie-broken pass.
void sort_mask_group(const float* v, index_t n, index_t k, std::uint8_t* keep, std::vector<float>& tmp) {
  tmp.assign(v, v + n);
  std::sort(tmp.begin(), tmp.end());
  const float t = tmp[std::size_t(k - 1)];
  index_t below = 0;
  for (index_t i = 0; i < k - 1; ++i) below += tmp[std::size_t(i)] < t;
  index_t ties = k - below;
  for (index_t i = 0; i < n; ++i) {
    const bool prune = v[i] < t || (v[i] == t && ties > 0);
    if (v[i] == t && prune) --ties;
    keep[i] = prune ? 0 : 1;
  }
}

void BM_mask_weft(benchmark::State& st) {
  const int kind = int(st.range(0));
  set_num_threads(int(st.range(1)));
  const Data& d = data();
  MaskOptions o;
  o.group = kind == 1 ? mask_group::row : mask_group::matrix;
  Tensor<float> s(Shape{kN, kN});
  score_into(kind, d, s);  // first touch outside the timed loop
  for (auto _ : st) {
    score_into(kind, d, s);
    Mask m = select_mask(s, o);
    benchmark::DoNotOptimize(m.keep.data());
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * kN * kN * std::int64_t(2 * sizeof(float) + 1));
}

void BM_mask_sort(benchmark::State& st) {
  const int kind = int(st.range(0));
  set_num_threads(1);
  const Data& d = data();
  std::vector<float> tmp;
  for (auto _ : st) {
    Tensor<float> s = score(kind, d);
    Mask m(kN, kN);
    if (kind == 1) {
      for (index_t r = 0; r < kN; ++r) sort_mask_group(s.data() + r * kN, kN, kN / 2, m.keep.data() + r * kN, tmp);
    } else {
      sort_mask_group(s.data(), kN * kN, kN * kN / 2, m.keep.data(), tmp);
    }
    benchmark::DoNotOptimize(m.keep.data());
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * kN * kN * std::int64_t(2 * sizeof(float) + 1));
}

void BM_scores_weft(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  const Data& d = data();
  Tensor<float> s(Shape{kN, kN});
  for (auto _ : st) {
    col_scaled_sq(d.w.data(), d.inv_d.data(), s.data(), kN, kN);
    benchmark::DoNotOptimize(s.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * kN * kN * std::int64_t(2 * sizeof(float)));
}
void BM_scores_scalar(benchmark::State& st) {
  const Data& d = data();
  Tensor<float> s(Shape{kN, kN});
  for (auto _ : st) {
    for (index_t r = 0; r < kN; ++r) col_scaled_sq_scalar(d.w.data() + r * kN, d.inv_d.data(), s.data() + r * kN, kN);
    benchmark::DoNotOptimize(s.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * kN * kN * std::int64_t(2 * sizeof(float)));
}
void BM_scores_eigen(benchmark::State& st) {
  const Data& d = data();
  Tensor<float> s(Shape{kN, kN});
  for (auto _ : st) {
    s.matrix().array() = d.w.matrix().array().square().rowwise() * d.inv_d.vector().transpose().array();
    benchmark::DoNotOptimize(s.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * kN * kN * std::int64_t(2 * sizeof(float)));
}

void BM_dual_step(benchmark::State& st) {
  const bool weft_path = st.range(0) != 0;
  set_num_threads(int(st.range(1)));
  const Data& d = data();
  const index_t n = kN * kN;
  Tensor<float> g(Shape{kN, kN}), ghat(Shape{kN, kN}), gt(Shape{kN, kN}), imp(Shape{kN, kN});
  Rng rng(2);
  init::normal(g, 0.0, 1e-3, rng);
  init::uniform(ghat, 0.0, 2.0, rng);
  for (auto _ : st) {
    if (weft_path) {
      couple<coupling_form::scaled>(g.data(), ghat.data(), gt.data(), n, 10.0f);
      accumulate_dual(imp.data(), gt.data(), d.w.data(), n, 1.0f, 0.5f, 1.0f, false);
    } else {
      couple_scalar<coupling_form::scaled>(g.data(), ghat.data(), gt.data(), n, 10.0f);
      accumulate_dual_scalar(imp.data(), gt.data(), d.w.data(), n, 1.0f, 0.5f, 1.0f, false);
    }
    benchmark::DoNotOptimize(imp.data());
    benchmark::ClobberMemory();
  }
  // couple: g, ghat read, gt written; accumulate: imp, gt, w read, imp written
  st.SetBytesProcessed(std::int64_t(st.iterations()) * n * std::int64_t(7 * sizeof(float)));
}

RowMatrix<double> spd(index_t n) {
  Rng rng(3);
  Eigen::MatrixXd x(2 * n, n);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = rng.normal();
  RowMatrix<double> h = x.transpose() * x / double(2 * n);
  return h;
}

void BM_hinv_diag_weft(benchmark::State& st) {
  const index_t n = st.range(0);
  const RowMatrix<double> h = spd(n);
  for (auto _ : st) {
    std::vector<double> dg = inverse_hessian_diag(h, 0.01);
    benchmark::DoNotOptimize(dg.data());
  }
  st.counters["FLOP/s"] = benchmark::Counter(2.0 / 3.0 * double(n) * double(n) * double(n) * double(st.iterations()),
                                             benchmark::Counter::kIsRate);
}
void BM_hinv_diag_dense(benchmark::State& st) {
  const index_t n = st.range(0);
  const RowMatrix<double> h = spd(n);
  for (auto _ : st) {
    PreparedHessian p = prepare_hessian(h, 0.01);
    const Eigen::MatrixXd a = p.h;
    Eigen::LLT<Eigen::MatrixXd> llt(a);
    Eigen::MatrixXd inv = llt.solve(Eigen::MatrixXd::Identity(n, n));
    Eigen::VectorXd dg = inv.diagonal();
    benchmark::DoNotOptimize(dg.data());
  }
  st.counters["FLOP/s"] = benchmark::Counter(7.0 / 3.0 * double(n) * double(n) * double(n) * double(st.iterations()),
                                             benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_mask_weft)->ArgNames({"score", "threads"})->Args({0, 1})->Args({0, 2})->Args({1, 1})->Args({1, 2})
    ->Args({2, 1})->Args({2, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_mask_sort)->ArgNames({"score"})->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_scores_weft)->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_scores_scalar)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_scores_eigen)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_dual_step)->ArgNames({"weft", "threads"})->Args({1, 1})->Args({1, 2})->Args({0, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_hinv_diag_weft)->Arg(256)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_hinv_diag_dense)->Arg(256)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
