// bench/peft_bench.cpp - PEFT adapter hot paths beside their baselines, in one binary.
//
// One nn::Linear 768 -> 768 (no bias), batch 64, float32, frozen base weight:
//   BM_peft_forward/base          the bare layer's forward (the base GEMM, no autograd recording)
//   BM_peft_forward/eigen_gemm    the same product as one Eigen expression (X W^T)
//   BM_peft_forward/lora          + a LoRA r = 8 side path (x A^T, then s u B^T)
//   BM_peft_forward/lora_dense    baseline: W + s B A materialised, then one GEMM (what the side
//                                 path avoids)
//   BM_peft_forward/bone_shared   + BoneShared r = 16 (equal budget: 16 * 768 = 8 * (768 + 768))
//   BM_peft_forward/bone_affine   BoneAffine r = 16: W' materialised, then the GEMM
// Training step = forward + backward with the input a variable (a middle layer: dX is needed),
// loss gradient seeded with a fixed G, the frozen base receiving no gradient:
//   BM_peft_train/base_full       the layer trained in full (dW and dX): the 3-GEMM reference
//   BM_peft_train/lora            LoRA r = 8, base frozen (dA, dB, dX; no dW)
//   BM_peft_train/bone_shared     BoneShared r = 16
//   BM_peft_train/bone_affine     BoneAffine r = 16 (needs G^T X for the weight guide)
// Kernel: the shared-shard chunk sum (rows 64, in 768, r 16):
//   BM_peft_chunk_sum/simd, /scalar, /naive
// Counters: FLOP/s counts 2 N in out per base GEMM (the work of the bare forward), so the
// adapters' rate drops in proportion to their overhead; chunk sums report bytes/s read.
// Argument: threads (1 or 2).
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "weft/core/autograd.hpp"
#include "weft/nn/linear.hpp"
#include "weft/peft/bone.hpp"
#include "weft/peft/kernels.hpp"
#include "weft/peft/lora.hpp"

using namespace weft;

namespace {

constexpr index_t kN = 64, kD = 768, kLoraR = 8, kBoneR = 16;

double gemm_flops() { return 2.0 * double(kN) * double(kD) * double(kD); }

struct Setup {
  Rng rng{3};
  nn::Linear<float> lin{kD, kD, rng, false};
  Tensor<float> x{Shape{kN, kD}}, g{Shape{kN, kD}};
  Tape<float> tape;
  std::shared_ptr<peft::Lora<float>> lora;
  explicit Setup(int threads) {
    set_num_threads(threads);
    init::uniform(x, -1.0, 1.0, rng);
    init::uniform(g, -1.0, 1.0, rng);
    lin.weight.set_requires_grad(false);
  }
  /// Adapter parameters get nonzero values (a trained state) so nothing is skipped as zero.
  template <class A>
  void randomise(A& a) {
    for (auto& p : a.adapter_parameters()) init::uniform(p.second.value(), -0.05, 0.05, rng);
  }
  void add_lora() {
    peft::LoraOptions o;
    o.r = kLoraR;
    o.alpha = 16;
    lora = std::make_shared<peft::Lora<float>>(lin.weight, o, rng);
    randomise(*lora);
    lin.add_side_path(lora);
  }
  void add_bone_shared() {
    peft::BoneOptions o;
    o.r = kBoneR;
    auto b = std::make_shared<peft::BoneShared<float>>(lin.weight, o, rng);
    randomise(*b);
    lin.add_side_path(b);
  }
  void add_bone_affine() {
    peft::BoneOptions o;
    o.r = kBoneR;
    auto b = std::make_shared<peft::BoneAffine<float>>(lin.weight, o, rng);
    randomise(*b);
    lin.add_transform(b);
  }
  void forward_loop(benchmark::State& st) {
    for (auto _ : st) {
      no_grad ng;
      Var<float> y = lin(tape.constant(x));
      benchmark::DoNotOptimize(y.value().data());
      tape.reset();
    }
    st.counters["FLOP/s"] = benchmark::Counter(gemm_flops(), benchmark::Counter::kIsIterationInvariantRate);
  }
  void train_loop(benchmark::State& st) {
    for (auto _ : st) {
      Var<float> xv = tape.variable(x);
      Var<float> y = lin(xv);
      tape.backward(y, g);
      benchmark::DoNotOptimize(xv.grad().data());
      tape.reset();
    }
    st.counters["FLOP/s"] = benchmark::Counter(gemm_flops(), benchmark::Counter::kIsIterationInvariantRate);
  }
};

void BM_forward_base(benchmark::State& st) {
  Setup s(int(st.range(0)));
  s.forward_loop(st);
}
void BM_forward_eigen(benchmark::State& st) {
  Setup s(1);
  RowMatrix<float> y(kN, kD);
  for (auto _ : st) {
    y.noalias() = s.x.matrix() * s.lin.weight.value().matrix().transpose();
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["FLOP/s"] = benchmark::Counter(gemm_flops(), benchmark::Counter::kIsIterationInvariantRate);
}
void BM_forward_lora(benchmark::State& st) {
  Setup s(int(st.range(0)));
  s.add_lora();
  s.forward_loop(st);
}
void BM_forward_lora_dense(benchmark::State& st) {
  Setup s(int(st.range(0)));
  s.add_lora();
  Tensor<float> w(Shape{kD, kD}), y(Shape{kN, kD});
  Tensor<float> sb = s.lora->B().value().clone();  // s B, scaled once outside the loop
  sb.array() *= float(s.lora->scaling());
  for (auto _ : st) {
    w.matrix() = s.lin.weight.value().matrix();
    ops::gemm(false, false, sb.data(), s.lora->A().value().data(), w.data(), kD, kD, kLoraR, true);
    ops::gemm(false, true, s.x.data(), w.data(), y.data(), kN, kD, kD, false);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["FLOP/s"] = benchmark::Counter(gemm_flops(), benchmark::Counter::kIsIterationInvariantRate);
}
void BM_forward_bone_shared(benchmark::State& st) {
  Setup s(int(st.range(0)));
  s.add_bone_shared();
  s.forward_loop(st);
}
void BM_forward_bone_affine(benchmark::State& st) {
  Setup s(int(st.range(0)));
  s.add_bone_affine();
  s.forward_loop(st);
}

void BM_train_full(benchmark::State& st) {
  Setup s(int(st.range(0)));
  s.lin.weight.set_requires_grad(true);
  s.train_loop(st);
}
void BM_train_lora(benchmark::State& st) {
  Setup s(int(st.range(0)));
  s.add_lora();
  s.train_loop(st);
}
void BM_train_bone_shared(benchmark::State& st) {
  Setup s(int(st.range(0)));
  s.add_bone_shared();
  s.train_loop(st);
}
void BM_train_bone_affine(benchmark::State& st) {
  Setup s(int(st.range(0)));
  s.add_bone_affine();
  s.train_loop(st);
}

struct ChunkData {
  Tensor<float> x{Shape{kN, kD}}, s{Shape{kN, kBoneR}};
  ChunkData() {
    Rng rng(5);
    init::uniform(x, -1.0, 1.0, rng);
  }
};
void chunk_counters(benchmark::State& st) {
  st.counters["bytes/s"] =
      benchmark::Counter(double(kN * kD) * sizeof(float), benchmark::Counter::kIsIterationInvariantRate);
}
void BM_chunk_simd(benchmark::State& st) {
  set_num_threads(1);
  ChunkData d;
  for (auto _ : st) {
    peft::chunk_sum(d.x.data(), d.s.data(), kN, kD, kBoneR);
    benchmark::DoNotOptimize(d.s.data());
  }
  chunk_counters(st);
}
void BM_chunk_scalar(benchmark::State& st) {
  ChunkData d;
  for (auto _ : st) {
    peft::chunk_sum_scalar(d.x.data(), d.s.data(), kN, kD, kBoneR, false);
    benchmark::DoNotOptimize(d.s.data());
  }
  chunk_counters(st);
}
void BM_chunk_naive(benchmark::State& st) {
  ChunkData d;
  for (auto _ : st) {
    for (index_t n = 0; n < kN; ++n)
      for (index_t j = 0; j < kBoneR; ++j) {
        float acc = 0;
        for (index_t k = j; k < kD; k += kBoneR) acc += d.x(n, k);
        d.s(n, j) = acc;
      }
    benchmark::DoNotOptimize(d.s.data());
  }
  chunk_counters(st);
}

}  // namespace

BENCHMARK(BM_forward_base)->Name("BM_peft_forward/base")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_forward_eigen)->Name("BM_peft_forward/eigen_gemm")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_forward_lora)->Name("BM_peft_forward/lora")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_forward_lora_dense)->Name("BM_peft_forward/lora_dense")->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_forward_bone_shared)->Name("BM_peft_forward/bone_shared")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_forward_bone_affine)->Name("BM_peft_forward/bone_affine")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_train_full)->Name("BM_peft_train/base_full")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_train_lora)->Name("BM_peft_train/lora")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_train_bone_shared)->Name("BM_peft_train/bone_shared")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_train_bone_affine)->Name("BM_peft_train/bone_affine")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_chunk_simd)->Name("BM_peft_chunk_sum/simd")->Unit(benchmark::kNanosecond);
BENCHMARK(BM_chunk_scalar)->Name("BM_peft_chunk_sum/scalar")->Unit(benchmark::kNanosecond);
BENCHMARK(BM_chunk_naive)->Name("BM_peft_chunk_sum/naive")->Unit(benchmark::kNanosecond);

BENCHMARK_MAIN();
