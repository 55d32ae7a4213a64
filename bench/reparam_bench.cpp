// bench/reparam_bench.cpp - the weight compander's hot paths beside their baselines, float32.
//
//  forward w = a atan(v / b):
//    BM_compander_forward/weft     the dispatching kernel (xsimd atan), threads = 2nd argument
//    BM_compander_forward/scalar   the scalar body: a loop over std::atan (the naive loop)
//    BM_compander_forward/eigen    the plain Eigen expression a * (v / b).atan()
//  backward gv += g a b / (b^2 + v^2), with the (a, b) sums for the learnable version:
//    BM_compander_backward/{weft,scalar,eigen}, 3rd argument 1 = with sums
//  training step of an MLP 64-128-128-10, batch 64, SGD momentum 0.9 (the example's model):
//    BM_mlp_step/plain | /wc_fixed | /wc_learnable (the compander's overhead per step)
//  optimiser update of a 128 x 128 weight: BM_adam/plain (nn::Adam) vs /compander (CompanderAdam)
// Counters: bytes/s counts the arrays each kernel must read and write once (forward: v, w;
// backward: v, w, g, gv read + gv written). Sizes: 128 x 128 (a layer of the example) and 2^20.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "weft/core/autograd.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/reparam.hpp"

using namespace weft;
using namespace weft::reparam;

namespace {

struct Arrays {
  std::vector<float> v, w, g, gv;
  explicit Arrays(index_t n) : v(std::size_t(n)), w(std::size_t(n)), g(std::size_t(n)), gv(std::size_t(n)) {
    Rng rng(1);
    for (auto& x : v) x = float(rng.uniform(-2, 2));
    for (auto& x : g) x = float(rng.uniform(-1, 1));
    compander_forward_scalar<AtanPsi>(v.data(), w.data(), n, 0.7f, 0.7f);
  }
};

constexpr float kA = 0.7f, kB = 0.7f;

void BM_compander_forward_weft(benchmark::State& st) {
  const index_t n = st.range(0);
  set_num_threads(int(st.range(1)));
  Arrays d(n);
  for (auto _ : st) {
    compander_forward<AtanPsi>(d.v.data(), d.w.data(), n, kA, kB);
    benchmark::DoNotOptimize(d.w.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * n * 2 * std::int64_t(sizeof(float)));
}

void BM_compander_forward_scalar(benchmark::State& st) {
  const index_t n = st.range(0);
  Arrays d(n);
  for (auto _ : st) {
    compander_forward_scalar<AtanPsi>(d.v.data(), d.w.data(), n, kA, kB);
    benchmark::DoNotOptimize(d.w.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * n * 2 * std::int64_t(sizeof(float)));
}

void BM_compander_forward_eigen(benchmark::State& st) {
  const index_t n = st.range(0);
  Arrays d(n);
  Eigen::Map<Eigen::ArrayXf> v(d.v.data(), n), w(d.w.data(), n);
  for (auto _ : st) {
    w = kA * (v / kB).atan();
    benchmark::DoNotOptimize(d.w.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(std::int64_t(st.iterations()) * n * 2 * std::int64_t(sizeof(float)));
}

void BM_compander_backward_weft(benchmark::State& st) {
  const index_t n = st.range(0);
  set_num_threads(int(st.range(1)));
  const bool sums = st.range(2) != 0;
  Arrays d(n);
  double acc = 0;
  for (auto _ : st) {
    auto s = compander_backward<AtanPsi>(d.v.data(), d.w.data(), d.g.data(), d.gv.data(), n, kA, kB, sums);
    acc += s.g_w;
    benchmark::DoNotOptimize(d.gv.data());
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(acc);
  st.SetBytesProcessed(std::int64_t(st.iterations()) * n * 5 * std::int64_t(sizeof(float)));
}

void BM_compander_backward_scalar(benchmark::State& st) {
  const index_t n = st.range(0);
  const bool sums = st.range(2) != 0;
  Arrays d(n);
  double acc = 0;
  for (auto _ : st) {
    auto s = compander_backward_scalar<AtanPsi>(d.v.data(), d.w.data(), d.g.data(), d.gv.data(), n, kA, kB, sums);
    acc += s.g_w;
    benchmark::DoNotOptimize(d.gv.data());
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(acc);
  st.SetBytesProcessed(std::int64_t(st.iterations()) * n * 5 * std::int64_t(sizeof(float)));
}

void BM_compander_backward_eigen(benchmark::State& st) {
  const index_t n = st.range(0);
  const bool sums = st.range(2) != 0;
  Arrays d(n);
  Eigen::Map<Eigen::ArrayXf> v(d.v.data(), n), w(d.w.data(), n), g(d.g.data(), n), gv(d.gv.data(), n);
  double acc = 0;
  for (auto _ : st) {
    gv += g * (kA * kB) / (kB * kB + v.square());
    if (sums) {
      acc += double((g * w).sum());
      acc += double((g * v / (kB * kB + v.square())).sum());
    }
    benchmark::DoNotOptimize(d.gv.data());
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(acc);
  st.SetBytesProcessed(std::int64_t(st.iterations()) * n * 5 * std::int64_t(sizeof(float)));
}

// ---------------------------------------------------------------------------------------------
// an SGD step of the example's MLP, with and without the compander

struct Batches {
  static constexpr int count = 16;
  std::vector<Tensor<float>> x;
  std::vector<std::vector<int>> y;
  int next = 0;
  Batches() {
    Rng rng(7);
    for (int b = 0; b < count; ++b) {
      Tensor<float> xb(Shape{64, 64});
      init::uniform(xb, 0.0, 1.0, rng);
      x.push_back(xb);
      std::vector<int> yb;
      for (int i = 0; i < 64; ++i) yb.push_back(int(rng.below(10)));
      y.push_back(yb);
    }
  }
  int advance() { return next = (next + 1) % count; }
};

void BM_mlp_step(benchmark::State& st) {
  set_num_threads(1);
  const int mode = int(st.range(0));  // 0 plain, 1 fixed WC, 2 learnable WC
  Batches d;
  Rng rng(1);
  nn::MLP<float> mlp({64, 128, 128, 10}, rng);
  CompanderAttachment<float> att;
  if (mode > 0) att = attach_compander(mlp, mode == 1 ? CompanderOptions{} : CompanderOptions::learnable_defaults());
  nn::SGDOptions so;
  so.lr = 0.01;
  so.momentum = 0.9;
  so.weight_decay = 1e-4;
  nn::SGD<float> opt = mode == 0 ? nn::SGD<float>(mlp.parameters(), so) : compander_sgd(mlp, att, so);
  Tape<float> tape;
  for (auto _ : st) {
    const int b = d.advance();
    opt.zero_grad();
    Var<float> loss = cross_entropy(mlp(tape.constant(d.x[std::size_t(b)])), d.y[std::size_t(b)]);
    tape.backward(loss);
    opt.step();
    tape.reset();
  }
  st.SetLabel(mode == 0 ? "plain" : (mode == 1 ? "wc_fixed" : "wc_learnable"));
}

void BM_adam(benchmark::State& st) {
  const bool comp = st.range(0) != 0;
  Rng rng(2);
  nn::Linear<float> lin(128, 128, rng, false);
  CompanderAttachment<float> att = attach_compander(lin);
  for (auto& x : lin.weight.grad()) x = float(rng.uniform(-1, 1));
  nn::Adam<float> plain(lin.parameters());
  CompanderAdam<float> wc(lin.parameters(), att);
  nn::Optimizer<float>& opt = comp ? static_cast<nn::Optimizer<float>&>(wc) : plain;
  for (auto _ : st) {
    opt.step();
    benchmark::DoNotOptimize(lin.weight.value().data());
  }
  st.SetLabel(comp ? "compander" : "plain");
  st.SetBytesProcessed(std::int64_t(st.iterations()) * 128 * 128 * 7 * std::int64_t(sizeof(float)));
}

}  // namespace

BENCHMARK(BM_compander_forward_weft)->Args({16384, 1})->Args({1 << 20, 1})->Args({1 << 20, 2});
BENCHMARK(BM_compander_forward_scalar)->Args({16384, 1})->Args({1 << 20, 1});
BENCHMARK(BM_compander_forward_eigen)->Args({16384, 1})->Args({1 << 20, 1});
BENCHMARK(BM_compander_backward_weft)
    ->Args({16384, 1, 0})->Args({16384, 1, 1})->Args({1 << 20, 1, 1})->Args({1 << 20, 2, 1});
BENCHMARK(BM_compander_backward_scalar)->Args({16384, 1, 0})->Args({16384, 1, 1})->Args({1 << 20, 1, 1});
BENCHMARK(BM_compander_backward_eigen)->Args({16384, 1, 0})->Args({16384, 1, 1})->Args({1 << 20, 1, 1});
BENCHMARK(BM_mlp_step)->Arg(0)->Arg(1)->Arg(2);
BENCHMARK(BM_adam)->Arg(0)->Arg(1);

BENCHMARK_MAIN();
