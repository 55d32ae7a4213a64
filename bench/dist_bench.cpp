// bench/dist_bench.cpp - data parallelism over MPI: the all-reduce against message size, and a
// training step of an MLP under DataParallel beside the same step in one process.
//
//   mpirun -n 1 ./bench/dist_bench ; mpirun -n 2 ./bench/dist_bench ; mpirun -n 4 --oversubscribe ...
//
// Every rank runs every benchmark a fixed number of iterations (collectives must line up, so
// Google Benchmark's own iteration-count search is off); rank 0 reports. Counters:
//   BM_allreduce/<floats>: bytes/s of one rank's buffer through MPI_Allreduce (in place, sum);
//   BM_dp_step/<global batch>: a step (forward + backward on this rank's shard, bucketed
//     all-reduce, Adam) of the MLP 64-256-256-10; samples/s counts the global batch, comm_bytes
//     the gradient bytes each rank all-reduces per step (a ring moves 2 (R-1)/R of that per link);
//   BM_single_step/<batch>: the same step on the whole batch in one process, no MPI calls: the
//     baseline the speed-up of R ranks is measured against.
// On a machine with fewer cores than ranks (oversubscription) data parallelism cannot speed up;
// docs/distributed.md reports the figures with that limit.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <vector>

#include "weft/core/autograd/functions/nn.hpp"
#include "weft/dist.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"

namespace {

using namespace weft;
dist::Communicator* g_comm = nullptr;

void BM_allreduce(benchmark::State& state) {
  std::vector<float> buf(std::size_t(state.range(0)), 1.0f);
  for (auto _ : state) {
    g_comm->allreduce_sum(buf.data(), buf.size());
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * std::int64_t(buf.size() * sizeof(float)));
  state.counters["ranks"] = g_comm->size();
}
BENCHMARK(BM_allreduce)->Arg(1 << 8)->Arg(1 << 12)->Arg(1 << 16)->Arg(1 << 20)->Arg(1 << 22)->Iterations(50);

struct StepSetup {
  Tensor<float> x;
  std::vector<int> y;
  std::vector<index_t> rows;
  explicit StepSetup(index_t batch) : x(Shape{batch, 64}), rows(std::size_t(batch)) {
    Rng rng(1);
    init::normal(x, 0.0, 1.0, rng);
    for (index_t i = 0; i < batch; ++i) {
      y.push_back(int(rng.below(10)));
      rows[std::size_t(i)] = i;
    }
  }
};

void step(nn::MLP<float>& m, nn::Optimizer<float>& opt, Tape<float>& tape, const StepSetup& s,
          const std::vector<index_t>& rows, std::vector<int>& labels) {
  opt.zero_grad();
  tape.backward(cross_entropy(m(nn::batch_rows(tape, s.x, rows)), nn::batch_labels(s.y, rows, labels)));
  opt.step();
  tape.reset();
}

void BM_dp_step(benchmark::State& state) {
  const StepSetup s(state.range(0));
  Rng rng(2);
  nn::MLP<float> m({64, 256, 256, 10}, rng);
  nn::Adam<float> opt(m.parameters());
  dist::DataParallel<float> dp(m, opt, *g_comm);
  Tape<float> tape;
  std::vector<int> labels;
  for (auto _ : state) step(m, opt, tape, s, dp.shard(s.rows), labels);
  state.counters["samples/s"] = benchmark::Counter(double(state.iterations() * state.range(0)), benchmark::Counter::kIsRate);
  state.counters["comm_bytes"] = double(dp.bytes_per_step());
  state.counters["ranks"] = g_comm->size();
}
BENCHMARK(BM_dp_step)->Arg(64)->Arg(512)->Iterations(100)->UseRealTime();

void BM_single_step(benchmark::State& state) {
  const StepSetup s(state.range(0));
  Rng rng(2);
  nn::MLP<float> m({64, 256, 256, 10}, rng);
  nn::Adam<float> opt(m.parameters());
  Tape<float> tape;
  std::vector<int> labels;
  for (auto _ : state) step(m, opt, tape, s, s.rows, labels);
  state.counters["samples/s"] = benchmark::Counter(double(state.iterations() * state.range(0)), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_single_step)->Arg(64)->Arg(512)->Iterations(100)->UseRealTime();

/// Reports nothing (ranks other than 0).
class Quiet : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  dist::Communicator comm(argc, argv);
  g_comm = &comm;
  benchmark::Initialize(&argc, argv);
  return dist::run(comm, [&] {
    if (comm.is_root()) {
      benchmark::RunSpecifiedBenchmarks();
    } else {
      Quiet quiet;
      benchmark::RunSpecifiedBenchmarks(&quiet);
    }
    benchmark::Shutdown();
    return 0;
  });
}
