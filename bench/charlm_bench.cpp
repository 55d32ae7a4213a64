// bench/charlm_bench.cpp - the character TinyGPT of examples/pipeline_charlm (issue 20): one
// training step, and the causal attention inside it.
//
//  training step, float32: nn::CausalLM (vocab 85, D 128, 4 layers, 4 heads, context 128, MLP
//  ratio 4, untied head), batch 16 random windows of 128 tokens, next-token cross entropy,
//  backward, global-norm clip 1.0, AdamW (lr 3e-3, betas 0.9 / 0.99, weight decay 0.01):
//    BM_charlm_step/weft/<threads>    the whole step (scripts/bench's peer: the same model,
//                                     optimiser and shapes in PyTorch eager,
//                                     bench/peers/torch_peers.py charlm)
//  causal attention forward + backward at the model's shape (q, k, v of 16 x 128 x 128, 4 heads):
//    BM_causal_attention/fused/<threads>   causal_attention (no mask tensor, heads in place)
//    BM_causal_attention/masked/<threads>  the baseline: heads split by reshape/transpose copies,
//                                          full Q K^T, a materialised (B H, N, N) additive mask,
//                                          softmax, P V, heads merged (what attention_core plus
//                                          a mask would cost)
// Counters: tokens/s (the step) and FLOP/s: the multiply-adds of the products, 2 flops each,
// forward and backward (3x forward); the step's count takes the causal attention at its full
// N x N size, as PyTorch computes it. Thread count: the argument (1 or 2).
#include <benchmark/benchmark.h>

#include <limits>
#include <vector>

#include "weft/core/autograd.hpp"
#include "weft/nn/causal_lm.hpp"
#include "weft/nn/optim.hpp"

using namespace weft;

namespace {

constexpr index_t kVocab = 85, kD = 128, kLayers = 4, kHeads = 4, kCtx = 128, kBatch = 16;

double step_flops() {
  const double tok = double(kBatch * kCtx);
  const double per_tok_linear = double(kLayers) * (4.0 * kD * kD + 2.0 * 4 * kD * kD) + double(kD * kVocab);
  const double attn = double(kLayers) * 2.0 * double(kBatch) * double(kCtx) * double(kCtx) * double(kD);
  return 3.0 * 2.0 * (tok * per_tok_linear + attn);
}

void BM_charlm_step_weft(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  Rng rng(1);
  nn::CausalLMConfig c;
  c.vocab = kVocab;
  nn::CausalLM<float> model(c, rng);
  std::vector<index_t> text(20000);
  for (auto& t : text) t = index_t(rng.below(kVocab));
  nn::TextBatcher batches(text, {kBatch, kCtx, 2});
  nn::AdamOptions ao;
  ao.lr = 3e-3;
  ao.beta2 = 0.99;
  ao.weight_decay = 0.01;
  nn::AdamW<float> opt(model.parameters(), ao);
  const auto params = model.parameters();
  Tape<float> tape;
  for (auto _ : st) {
    st.PauseTiming();
    const nn::TokenBatch b = batches.next();
    st.ResumeTiming();
    model.zero_grad();
    tape.backward(model.loss(tape, b));
    nn::clip_grad_norm(params, 1.0);
    opt.step();
    tape.reset();
  }
  st.counters["tokens/s"] = benchmark::Counter(double(kBatch * kCtx), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["FLOP/s"] = benchmark::Counter(step_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

struct AttnData {
  Tensor<float> q{Shape{kBatch, kCtx, kD}}, k{Shape{kBatch, kCtx, kD}}, v{Shape{kBatch, kCtx, kD}},
      g{Shape{kBatch, kCtx, kD}};
  AttnData() {
    Rng rng(3);
    for (Tensor<float>* t : {&q, &k, &v, &g}) init::normal(*t, 0.0, 1.0, rng);
  }
};

double attn_flops() { return 3.0 * 2.0 * 2.0 * double(kBatch) * double(kCtx) * double(kCtx) * double(kD); }

void BM_causal_attention_fused(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  AttnData d;
  Tape<float> tape;
  for (auto _ : st) {
    Var<float> q = tape.variable(d.q), k = tape.variable(d.k), v = tape.variable(d.v);
    tape.backward(causal_attention(q, k, v, kHeads), d.g);
    benchmark::DoNotOptimize(q.grad().data());
    tape.reset();
  }
  st.counters["FLOP/s"] = benchmark::Counter(attn_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_causal_attention_masked(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  AttnData d;
  const index_t dh = kD / kHeads;
  Tensor<float> mask(Shape{kBatch * kHeads, kCtx, kCtx});
  for (index_t b = 0; b < kBatch * kHeads; ++b)
    for (index_t i = 0; i < kCtx; ++i)
      for (index_t j = i + 1; j < kCtx; ++j) mask(b, i, j) = -std::numeric_limits<float>::infinity();
  Tape<float> tape;
  auto split = [&](const Var<float>& x) {
    return reshape(transpose(reshape(x, Shape{kBatch, kCtx, kHeads, dh}), 1, 2), Shape{kBatch * kHeads, kCtx, dh});
  };
  for (auto _ : st) {
    Var<float> q = tape.variable(d.q), k = tape.variable(d.k), v = tape.variable(d.v);
    Var<float> s = matmul_nt(split(q), split(k)) * (1.0f / std::sqrt(float(dh))) + tape.constant(mask);
    Var<float> o = matmul(softmax(s), split(v));
    o = reshape(transpose(reshape(o, Shape{kBatch, kHeads, kCtx, dh}), 1, 2), Shape{kBatch, kCtx, kD});
    tape.backward(o, d.g);
    benchmark::DoNotOptimize(q.grad().data());
    tape.reset();
  }
  st.counters["FLOP/s"] = benchmark::Counter(attn_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_charlm_step_weft)->Name("BM_charlm_step/weft")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_causal_attention_fused)->Name("BM_causal_attention/fused")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_causal_attention_masked)->Name("BM_causal_attention/masked")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
