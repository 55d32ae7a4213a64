// bench/ep_bench.cpp - holomorphic EP's hot path beside its baselines, float32 / complex64.
//
// Network: the paper's MLP 784-256-256-10 (two hidden layers of 256 units, sigmoid, separate
// feedback, softmax readout), 32 samples. The N = 4 Cauchy estimate relaxes the phases
// beta_k = 0.5 i^k; with conjugate symmetry k = 0, 2 are real and k = 1 complex (k = 3 is its
// conjugate), i.e. 2 x 32 real columns and 32 complex columns.
//   BM_step/weft/<threads>    one batched relaxation step (u += F(u) for every phase and
//                             sample): split planes, one real GEMM per connection over 128 rows
//   BM_step/gemv_loop         (a) the same step as a loop of per-sample, per-phase complex GEMVs
//                             (std::complex Eigen matrices, the three distinct phases)
//   BM_step/eigen_complex     (b) the same step with std::complex Eigen GEMMs over all columns
//   BM_hep_n4/...             a full N = 4 estimate, 50 nudged steps from u0 (weft: ep::hep_error,
//                             including the input drive and the final phi; gemv_loop:
//                             ep::reference::hep_error; eigen_complex as (b))
//   BM_hep_n4/eigen_complex_all  (b) with all four phases complex (no conjugate symmetry):
//                             128 complex = 256 real columns (how a complex-dtype framework
//                             batches the four phases; bench/peers/torch_peers.py times PyTorch
//                             complex64 on the step at weft's three-phase shape)
// Counters: FLOP/s counts the multiply-adds of the connection products each implementation
// performs (2 flops per real multiply-add, 8 per complex one), so the three read against the
// same roofline; time ratios are the speed-ups.
#include <benchmark/benchmark.h>

#include <complex>
#include <vector>

#include "weft/ep.hpp"

using namespace weft;

namespace {

using C = std::complex<float>;
using CMat = Eigen::Matrix<C, Eigen::Dynamic, Eigen::Dynamic>;
using CVec = Eigen::Matrix<C, Eigen::Dynamic, 1>;

constexpr index_t kBatch = 32;
constexpr double kAbsBeta = 0.5;

struct Problem {
  ep::DenseNet<float> net;
  Tensor<float> X;
  std::vector<int> y;
  ep::State<float> u0;
  Problem() {
    Rng rng(1);
    ep::NetOptions o;
    o.alpha_deg = 90;
    net = ep::make_dense_net<float>({784, 256, 256, 10}, rng, o);
    X = Tensor<float>(Shape{kBatch, 784});
    for (auto& x : X) x = float(rng.uniform());
    y.resize(kBatch);
    for (auto& v : y) v = int(rng.below(10));
    ep::RelaxOptions fo;
    fo.max_iters = 100;
    ep::free_phase(net, X, u0, fo);
  }
};

const Problem& problem() {
  static const Problem p;
  return p;
}

/// Multiply-adds of the connection products per column and step (W2, B2, W3, B3, V twice).
double macs_per_column() {
  return 256.0 * 256 * 2 + 256.0 * 10 * 2 + 10.0 * 10 * 2;
}

std::vector<C> phases(int count) {  // beta_k = 0.5 i^k, k < count
  std::vector<C> b;
  const C unit[4] = {C(1, 0), C(0, 1), C(-1, 0), C(0, -1)};
  for (int k = 0; k < count; ++k) b.push_back(float(kAbsBeta) * unit[k]);
  return b;
}

C phi(C z) { return ep::phi(ep::Activation::sigmoid, z); }

/// The baselines' complex copy of the network, the per-sample drive and the states.
struct ComplexState {
  CMat W2, B2, W3, B3, V;
  CVec b2, b3, c;
  CMat drive;                 // 256 x batch: W1 x + b1
  std::vector<C> beta;        // per column (phase-major)
  std::vector<int> label;     // per column
  CMat U1, U2, U3;            // s_l x columns
  explicit ComplexState(const std::vector<C>& betas) {
    const Problem& p = problem();
    const auto& n = p.net;
    W2 = n.W[1].value().matrix().cast<C>();
    W3 = n.W[2].value().matrix().cast<C>();
    B2 = n.B[0].value().matrix().cast<C>();
    B3 = n.B[1].value().matrix().cast<C>();
    V = n.V.value().matrix().cast<C>();
    b2 = n.b[1].value().vector().cast<C>();
    b3 = n.b[2].value().vector().cast<C>();
    c = n.c.value().vector().cast<C>();
    const Eigen::MatrixXf d = (p.X.matrix() * n.W[0].value().matrix().transpose()).transpose().colwise() +
                              n.b[0].value().vector();
    drive = d.cast<C>();
    const index_t cols = index_t(betas.size()) * kBatch;
    U1.resize(256, cols);
    U2.resize(256, cols);
    U3.resize(10, cols);
    for (std::size_t k = 0; k < betas.size(); ++k)
      for (index_t b = 0; b < kBatch; ++b) {
        const index_t j = index_t(k) * kBatch + b;
        beta.push_back(betas[k]);
        label.push_back(p.y[std::size_t(b)]);
        U1.col(j) = p.u0.layers[0].matrix().row(b).transpose().cast<C>();
        U2.col(j) = p.u0.layers[1].matrix().row(b).transpose().cast<C>();
        U3.col(j) = p.u0.layers[2].matrix().row(b).transpose().cast<C>();
      }
  }
  index_t columns() const { return index_t(beta.size()); }
  /// G = beta V^T (softmax(V r3 + c) - y) for one column.
  CVec nudge(const CVec& r3, index_t j) const {
    CVec z = V * r3 + c;
    index_t m = 0;
    for (index_t i = 1; i < z.size(); ++i)
      if (z(i).real() > z(m).real()) m = i;
    const C zm = z(m);
    for (index_t i = 0; i < z.size(); ++i) z(i) = std::exp(z(i) - zm);
    z /= z.sum();
    z(label[std::size_t(j)]) -= C(1);
    return beta[std::size_t(j)] * (V.transpose() * z);
  }
  /// (a) one step, column by column, with complex GEMVs.
  void step_gemv() {
    for (index_t j = 0; j < columns(); ++j) {
      const CVec r1 = U1.col(j).unaryExpr(&phi), r2 = U2.col(j).unaryExpr(&phi), r3 = U3.col(j).unaryExpr(&phi);
      const CVec g = nudge(r3, j);
      CVec h1 = drive.col(j % kBatch);
      h1.noalias() += B2 * r2;
      CVec h2 = b2;
      h2.noalias() += W2 * r1;
      h2.noalias() += B3 * r3;
      CVec h3 = b3 + g;
      h3.noalias() += W3 * r2;
      U1.col(j) = h1;  // gamma = 1: u + (h - u) = h
      U2.col(j) = h2;
      U3.col(j) = h3;
    }
  }
  /// (b) one step over all columns with complex GEMMs.
  void step_gemm() {
    const CMat R1 = U1.unaryExpr(&phi), R2 = U2.unaryExpr(&phi), R3 = U3.unaryExpr(&phi);
    CMat Z = V * R3;
    Z.colwise() += c;
    for (index_t j = 0; j < columns(); ++j) {
      auto z = Z.col(j);
      index_t m = 0;
      for (index_t i = 1; i < z.size(); ++i)
        if (z(i).real() > z(m).real()) m = i;
      const C zm = z(m);
      for (index_t i = 0; i < z.size(); ++i) z(i) = std::exp(z(i) - zm);
      z /= z.sum();
      z(label[std::size_t(j)]) -= C(1);
      z *= beta[std::size_t(j)];
    }
    for (index_t j = 0; j < columns(); ++j) U1.col(j) = drive.col(j % kBatch);
    U1.noalias() += B2 * R2;
    U2.noalias() = W2 * R1;
    U2.noalias() += B3 * R3;
    U2.colwise() += b2;
    U3.noalias() = W3 * R2;
    U3.noalias() += V.transpose() * Z;
    U3.colwise() += b3;
  }
  /// e = Re sum_k w_k phi(u_k) / (N beta_k) with weights for the given phase set.
  float estimate(int N, bool conj) const {
    float acc = 0;
    for (index_t j = 0; j < columns(); ++j) {
      const int k = int(j / kBatch);
      const float w = (conj && k > 0 && 2 * k < N) ? 2.0f : 1.0f;
      acc += (w / float(N)) * (U1.col(j).unaryExpr(&phi) / beta[std::size_t(j)]).real().sum();
    }
    return acc;
  }
};

void counters(benchmark::State& st, double macs, int flops_per_mac) {
  st.counters["FLOP/s"] = benchmark::Counter(macs * flops_per_mac * double(st.iterations()), benchmark::Counter::kIsRate);
}

// ---------------------------------------------------------------------------------------------
// one step

void BM_step_weft(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  const Problem& p = problem();
  ep::detail::NetView<float> view(p.net, p.X, p.y.data());
  ep::RelaxOptions o;
  o.vectorize = st.range(1) != 0;
  std::vector<std::complex<float>> b = {C(0.5f, 0), C(-0.5f, 0), C(0, 0.5f)};
  ep::detail::BlockSet<float> set(view, kBatch, b, o.block_rows);
  for (auto& blk : set.blocks)
    for (index_t j = 0; j < blk.columns(); ++j)
      for (index_t l = 1; l <= 3; ++l)
        std::copy_n(p.u0.layers[std::size_t(l - 1)].data() + blk.sample(j) * p.net.size(l), p.net.size(l),
                    blk.re(l, j));
  for (auto _ : st) {
    set.iterate(1, o);
    benchmark::ClobberMemory();
  }
  counters(st, macs_per_column() * 4 * kBatch, 2);  // 2 real + 1 complex (2 planes) phases
  set_num_threads(2);
}

void BM_step_gemv_loop(benchmark::State& st) {
  ComplexState cs(phases(3));
  for (auto _ : st) {
    cs.step_gemv();
    benchmark::ClobberMemory();
  }
  counters(st, macs_per_column() * double(cs.columns()), 8);
}

void BM_step_eigen_complex(benchmark::State& st) {
  ComplexState cs(phases(3));
  for (auto _ : st) {
    cs.step_gemm();
    benchmark::ClobberMemory();
  }
  counters(st, macs_per_column() * double(cs.columns()), 8);
}

// ---------------------------------------------------------------------------------------------
// a full N = 4 estimate, 50 steps

constexpr index_t kSteps = 50;

void BM_hep_n4_weft(benchmark::State& st) {
  set_num_threads(int(st.range(0)));
  const Problem& p = problem();
  ep::HepOptions o;
  o.N = 4;
  o.abs_beta = kAbsBeta;
  o.relax.max_iters = kSteps;
  o.relax.vectorize = st.range(1) != 0;
  for (auto _ : st) {
    auto e = ep::hep_error(p.net, p.X, p.y, p.u0, o);
    benchmark::DoNotOptimize(e.e.layers[0].data());
  }
  counters(st, macs_per_column() * 4 * kBatch * (kSteps + 1), 2);  // + the final evaluation
  set_num_threads(2);
}

void BM_hep_n4_gemv_loop(benchmark::State& st) {
  const Problem& p = problem();
  ep::HepOptions o;
  o.N = 4;
  o.abs_beta = kAbsBeta;
  o.relax.max_iters = kSteps;
  for (auto _ : st) {
    auto e = ep::reference::hep_error(p.net, p.X, p.y, p.u0, o);
    benchmark::DoNotOptimize(e.layers[0].data());
  }
  counters(st, macs_per_column() * 3 * kBatch * (kSteps + 1), 8);
}

void BM_hep_n4_eigen_complex(benchmark::State& st) {
  const int count = int(st.range(0));  // 3: conjugate symmetry; 4: all phases
  for (auto _ : st) {
    ComplexState cs(phases(count));
    for (index_t t = 0; t < kSteps; ++t) cs.step_gemm();
    benchmark::DoNotOptimize(cs.estimate(4, count == 3));
  }
  counters(st, macs_per_column() * count * kBatch * kSteps, 8);
}

}  // namespace

BENCHMARK(BM_step_weft)->ArgNames({"threads", "simd"})->Args({1, 1})->Args({2, 1})->Args({1, 0})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_step_gemv_loop)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_step_eigen_complex)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_hep_n4_weft)->ArgNames({"threads", "simd"})->Args({1, 1})->Args({2, 1})->Args({1, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_hep_n4_gemv_loop)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_hep_n4_eigen_complex)->ArgName("phases")->Arg(3)->Arg(4)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
