// bench/core_bench.cpp - core hot paths beside their baselines, in one binary.
//
//  MLP 64-128-10, batch 32, one Adam training step (zero grads, forward, softmax cross
//  entropy, backward, Adam update), float32:
//    BM_mlp_step/weft         weft: nn::MLP + autograd tape + nn::Adam
//    BM_mlp_step/eigen_manual hand-derived gradients written as Eigen expressions (no tape)
//    BM_mlp_step/naive        the same computation as plain scalar loops
//  tiny ViT (8x8 images, patch 2, width 32, depth 2, 4 heads, MLP ratio 2, 10 classes), batch
//  32, one Adam training step, float32 (the model of examples/vit_digits):
//    BM_vit_step/weft         nn::TinyViT + autograd tape + nn::Adam (scripts/bench's peer:
//                             the same architecture in PyTorch, bench/peers/torch_peers.py vit)
//  matmul forward + backward, X (64 x 768) times W (768 x 768), float32:
//    BM_matmul_fwd_bwd/weft   autograd: Y = matmul(X, W), backward gives dX and dW
//    BM_matmul_fwd_bwd/eigen  the three products as Eigen expressions
//    BM_matmul_fwd_bwd/naive  the three products as triple loops in the best simple order
//                             (i-k-j for the two products with a row-streaming inner loop)
// Counters: FLOP/s counts the multiply-adds of the products (2 flops each); the Adam update and
// element-wise work are not counted. Thread count: the argument (1 or 2).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "weft/core/autograd.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/vit.hpp"

using namespace weft;

namespace {

constexpr index_t kB = 32, kIn = 64, kHid = 128, kOut = 10;

// 64 batches of random inputs with random labels, used in turn: the loss cannot reach zero, so
// gradients and Adam moments stay in the normal float range as in real training (one batch
// repeated thousands of times drives them into denormals, which are ~100x slower to compute).
struct MlpData {
  static constexpr int batches = 64;
  std::vector<Tensor<float>> x;
  std::vector<std::vector<int>> y;
  int next = 0;
  MlpData() {
    Rng rng(7);
    for (int b = 0; b < batches; ++b) {
      Tensor<float> xb(Shape{kB, kIn});
      init::uniform(xb, 0.0, 1.0, rng);
      x.push_back(xb);
      std::vector<int> yb;
      for (index_t i = 0; i < kB; ++i) yb.push_back(int(rng.below(kOut)));
      y.push_back(yb);
    }
  }
  int advance() { return next = (next + 1) % batches; }
};

double mlp_flops() { return 2.0 * double(kB) * (2.0 * kIn * kHid + 3.0 * kHid * kOut); }

void BM_mlp_step_weft(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  MlpData d;
  Rng rng(1);
  nn::MLP<float> mlp({kIn, kHid, kOut}, rng);
  nn::Adam<float> opt(mlp.parameters());
  Tape<float> tape;
  for (auto _ : st) {
    const int b = d.advance();
    opt.zero_grad();
    Var<float> loss = cross_entropy(mlp(tape.constant(d.x[b])), d.y[b]);
    tape.backward(loss);
    opt.step();
    tape.reset();
  }
  st.counters["FLOP/s"] = benchmark::Counter(mlp_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

// Hand-derived forward/backward with Eigen expressions and an Adam update written inline; the
// activations and gradients live in preallocated members (no allocation per step).
struct ManualMlp {
  using M = RowMatrix<float>;
  using V = Eigen::RowVectorXf;
  M w1, w2, gw1, gw2, m1, v1, m2, v2;
  M h = M(kB, kHid), a = M(kB, kHid), gz = M(kB, kOut), ga = M(kB, kHid);  // activations and their gradients, reused
  V b1, b2, gb1, gb2, mb1, vb1, mb2, vb2;
  int t = 0;
  explicit ManualMlp(nn::MLP<float>& src) {
    w1 = src.layers[0].weight.value().matrix();
    b1 = src.layers[0].bias.value().matrix().row(0);
    w2 = src.layers[1].weight.value().matrix();
    b2 = src.layers[1].bias.value().matrix().row(0);
    for (M* m : {&gw1, &m1, &v1}) m->setZero(w1.rows(), w1.cols());
    for (M* m : {&gw2, &m2, &v2}) m->setZero(w2.rows(), w2.cols());
    for (V* v : {&gb1, &mb1, &vb1}) v->setZero(b1.size());
    for (V* v : {&gb2, &mb2, &vb2}) v->setZero(b2.size());
  }
  template <class P, class G, class Mo, class Vo>
  static void adam(P& p, const G& g, Mo& m, Vo& v, float c1, float c2) {
    m = 0.9f * m + 0.1f * g;
    v = 0.999f * v + 0.001f * g.cwiseAbs2();
    p.array() -= 1e-3f * (m.array() / c1) / ((v.array() / c2).sqrt() + 1e-8f);
  }
  void step(const Tensor<float>& x, const std::vector<int>& y) {
    auto X = x.matrix();
    h.noalias() = X * w1.transpose();
    h.rowwise() += b1;
    a = h.cwiseMax(0.0f);
    gz.noalias() = a * w2.transpose();
    gz.rowwise() += b2;
    // softmax cross entropy gradient, in place on the logits
    for (index_t i = 0; i < gz.rows(); ++i) {
      const float mx = gz.row(i).maxCoeff();
      gz.row(i) = (gz.row(i).array() - mx).exp();
      gz.row(i) /= gz.row(i).sum();
      gz(i, y[std::size_t(i)]) -= 1.0f;
    }
    gz /= float(gz.rows());
    gw2.noalias() = gz.transpose() * a;
    gb2 = gz.colwise().sum();
    ga.noalias() = gz * w2;
    ga = (h.array() > 0.0f).select(ga, 0.0f);
    gw1.noalias() = ga.transpose() * X;
    gb1 = ga.colwise().sum();
    ++t;
    const float c1 = 1.0f - std::pow(0.9f, float(t)), c2 = 1.0f - std::pow(0.999f, float(t));
    adam(w1, gw1, m1, v1, c1, c2);
    adam(b1, gb1, mb1, vb1, c1, c2);
    adam(w2, gw2, m2, v2, c1, c2);
    adam(b2, gb2, mb2, vb2, c1, c2);
  }
};

void BM_mlp_step_eigen_manual(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  MlpData d;
  Rng rng(1);
  nn::MLP<float> mlp({kIn, kHid, kOut}, rng);
  ManualMlp m(mlp);
  for (auto _ : st) {
    const int b = d.advance();
    m.step(d.x[b], d.y[b]);
    benchmark::DoNotOptimize(m.w1.data());
  }
  st.counters["FLOP/s"] = benchmark::Counter(mlp_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

// The same step as plain loops over std::vector: what one writes without a library.
struct NaiveMlp {
  std::vector<float> w1, b1, w2, b2, g1, gb1, g2, gb2, m[4], v[4], h, a, z, gz, ga;
  int t = 0;
  explicit NaiveMlp(nn::MLP<float>& src)
      : w1(src.layers[0].weight.value().begin(), src.layers[0].weight.value().end()),
        b1(src.layers[0].bias.value().begin(), src.layers[0].bias.value().end()),
        w2(src.layers[1].weight.value().begin(), src.layers[1].weight.value().end()),
        b2(src.layers[1].bias.value().begin(), src.layers[1].bias.value().end()) {
    g1.resize(w1.size()); gb1.resize(b1.size()); g2.resize(w2.size()); gb2.resize(b2.size());
    const std::size_t sz[4] = {w1.size(), b1.size(), w2.size(), b2.size()};
    for (int i = 0; i < 4; ++i) m[i].assign(sz[i], 0.0f), v[i].assign(sz[i], 0.0f);
    h.resize(kB * kHid); a.resize(kB * kHid); z.resize(kB * kOut); gz.resize(kB * kOut); ga.resize(kB * kHid);
  }
  void adam(std::vector<float>& p, const std::vector<float>& g, int k, float c1, float c2) {
    for (std::size_t i = 0; i < p.size(); ++i) {
      m[k][i] = 0.9f * m[k][i] + 0.1f * g[i];
      v[k][i] = 0.999f * v[k][i] + 0.001f * g[i] * g[i];
      p[i] -= 1e-3f * (m[k][i] / c1) / (std::sqrt(v[k][i] / c2) + 1e-8f);
    }
  }
  void step(const float* x, const std::vector<int>& y) {
    for (index_t i = 0; i < kB; ++i)
      for (index_t j = 0; j < kHid; ++j) {
        float s = b1[j];
        for (index_t k = 0; k < kIn; ++k) s += x[i * kIn + k] * w1[j * kIn + k];
        h[i * kHid + j] = s;
        a[i * kHid + j] = s > 0 ? s : 0;
      }
    for (index_t i = 0; i < kB; ++i) {
      float mx = -1e30f, sum = 0;
      for (index_t j = 0; j < kOut; ++j) {
        float s = b2[j];
        for (index_t k = 0; k < kHid; ++k) s += a[i * kHid + k] * w2[j * kHid + k];
        z[i * kOut + j] = s;
        mx = s > mx ? s : mx;
      }
      for (index_t j = 0; j < kOut; ++j) sum += (gz[i * kOut + j] = std::exp(z[i * kOut + j] - mx));
      for (index_t j = 0; j < kOut; ++j)
        gz[i * kOut + j] = (gz[i * kOut + j] / sum - (j == y[std::size_t(i)] ? 1.0f : 0.0f)) / float(kB);
    }
    std::fill(g2.begin(), g2.end(), 0.0f); std::fill(gb2.begin(), gb2.end(), 0.0f);
    std::fill(g1.begin(), g1.end(), 0.0f); std::fill(gb1.begin(), gb1.end(), 0.0f);
    for (index_t i = 0; i < kB; ++i)
      for (index_t j = 0; j < kOut; ++j) {
        const float g = gz[i * kOut + j];
        gb2[j] += g;
        for (index_t k = 0; k < kHid; ++k) g2[j * kHid + k] += g * a[i * kHid + k];
      }
    for (index_t i = 0; i < kB; ++i)
      for (index_t k = 0; k < kHid; ++k) {
        float s = 0;
        for (index_t j = 0; j < kOut; ++j) s += gz[i * kOut + j] * w2[j * kHid + k];
        ga[i * kHid + k] = h[i * kHid + k] > 0 ? s : 0;
      }
    for (index_t i = 0; i < kB; ++i)
      for (index_t j = 0; j < kHid; ++j) {
        const float g = ga[i * kHid + j];
        gb1[j] += g;
        for (index_t k = 0; k < kIn; ++k) g1[j * kIn + k] += g * x[i * kIn + k];
      }
    ++t;
    const float c1 = 1.0f - std::pow(0.9f, float(t)), c2 = 1.0f - std::pow(0.999f, float(t));
    adam(w1, g1, 0, c1, c2);
    adam(b1, gb1, 1, c1, c2);
    adam(w2, g2, 2, c1, c2);
    adam(b2, gb2, 3, c1, c2);
  }
};

void BM_mlp_step_naive(benchmark::State& st) {
  MlpData d;
  Rng rng(1);
  nn::MLP<float> mlp({kIn, kHid, kOut}, rng);
  NaiveMlp m(mlp);
  for (auto _ : st) {
    const int b = d.advance();
    m.step(d.x[b].data(), d.y[b]);
    benchmark::DoNotOptimize(m.w1.data());
  }
  st.counters["FLOP/s"] = benchmark::Counter(mlp_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_vit_step_weft(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  MlpData d;  // 64 batches of 32 rows of 64 values in [0, 1), labels in 0..9
  Rng rng(1);
  nn::TinyViT<float> vit(nn::ViTConfig{}, rng);
  nn::Adam<float> opt(vit.parameters());
  Tape<float> tape;
  for (auto _ : st) {
    const int b = d.advance();
    opt.zero_grad();
    Var<float> loss = cross_entropy(vit(tape.constant(d.x[b])), d.y[b]);
    tape.backward(loss);
    opt.step();
    tape.reset();
  }
}

constexpr index_t kM = 64, kK = 768, kN = 768;
double matmul_flops() { return 3.0 * 2.0 * double(kM) * double(kK) * double(kN); }

struct MatmulData {
  Tensor<float> x{Shape{kM, kK}}, w{Shape{kK, kN}}, g{Shape{kM, kN}};
  MatmulData() {
    Rng rng(3);
    init::uniform(x, -1, 1, rng);
    init::uniform(w, -1, 1, rng);
    init::uniform(g, -1, 1, rng);
  }
};

void BM_matmul_fwd_bwd_weft(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  MatmulData d;
  Tape<float> tape;
  for (auto _ : st) {
    Var<float> xv = tape.variable(d.x), wv = tape.variable(d.w);
    Var<float> y = matmul(xv, wv);
    tape.backward(y, d.g);
    benchmark::DoNotOptimize(wv.grad().data());
    tape.reset();
  }
  st.counters["FLOP/s"] = benchmark::Counter(matmul_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_matmul_fwd_bwd_eigen(benchmark::State& st) {
  MatmulData d;
  RowMatrix<float> y(kM, kN), gx(kM, kK), gw(kK, kN);
  for (auto _ : st) {
    y.noalias() = d.x.matrix() * d.w.matrix();
    gx.noalias() = d.g.matrix() * d.w.matrix().transpose();
    gw.noalias() = d.x.matrix().transpose() * d.g.matrix();
    benchmark::DoNotOptimize(gw.data());
  }
  st.counters["FLOP/s"] = benchmark::Counter(matmul_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_matmul_fwd_bwd_naive(benchmark::State& st) {
  MatmulData d;
  std::vector<float> y(kM * kN), gx(kM * kK), gw(kK * kN);
  for (auto _ : st) {
    const float *x = d.x.data(), *w = d.w.data(), *g = d.g.data();
    // y = x w (i-k-j: the inner loop runs along rows of w and y)
    std::fill(y.begin(), y.end(), 0.0f);
    for (index_t i = 0; i < kM; ++i)
      for (index_t k = 0; k < kK; ++k) {
        const float xik = x[i * kK + k];
        for (index_t j = 0; j < kN; ++j) y[std::size_t(i * kN + j)] += xik * w[k * kN + j];
      }
    // gx = g w^T: gx_ik = sum_j g_ij w_kj, both rows contiguous (a dot product per element)
    for (index_t i = 0; i < kM; ++i)
      for (index_t k = 0; k < kK; ++k) {
        float s = 0;
        for (index_t j = 0; j < kN; ++j) s += g[i * kN + j] * w[k * kN + j];
        gx[std::size_t(i * kK + k)] = s;
      }
    // gw = x^T g: gw_kj += x_ik g_ij, i-k-j order again
    std::fill(gw.begin(), gw.end(), 0.0f);
    for (index_t i = 0; i < kM; ++i)
      for (index_t k = 0; k < kK; ++k) {
        const float xik = x[i * kK + k];
        for (index_t j = 0; j < kN; ++j) gw[std::size_t(k * kN + j)] += xik * g[i * kN + j];
      }
    benchmark::DoNotOptimize(gw.data());
  }
  st.counters["FLOP/s"] = benchmark::Counter(matmul_flops(), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_mlp_step_weft)->Name("BM_mlp_step/weft")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_mlp_step_eigen_manual)->Name("BM_mlp_step/eigen_manual")->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_mlp_step_naive)->Name("BM_mlp_step/naive")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_vit_step_weft)->Name("BM_vit_step/weft")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_matmul_fwd_bwd_weft)->Name("BM_matmul_fwd_bwd/weft")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_matmul_fwd_bwd_eigen)->Name("BM_matmul_fwd_bwd/eigen")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_matmul_fwd_bwd_naive)->Name("BM_matmul_fwd_bwd/naive")->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
