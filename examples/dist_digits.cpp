// examples/dist_digits.cpp - the digits examples on several MPI ranks with dist::DataParallel.
//
//   mpirun -n 2 ./dist_digits --mlp     # the MLP 64-128-10 of mlp_digits, global batch 32
//   mpirun -n 2 ./dist_digits --qat     # 2-bit StatsQ QAT with the oscillation tracker and CGA
//
// Every rank loads the whole data set and builds the model with its own seed; DataParallel
// broadcasts rank 0's parameters, each step takes this rank's part of the global batch (the
// Trainer's seed is the same on every rank, so the global batch order is that of a single
// process), and the reduced gradient reaches every hook: the tracker and CGA see the same
// weights on every rank, so their state agrees without communication. At the end the program
// checks that the replicas are bit-identical (dist::max_divergence == 0) and that the test
// accuracy meets the single-process bound (mlp_digits: >= 0.96 over 60 epochs; --quick: 10
// epochs, >= 0.90). Rank 0 prints the rows; any failure on any rank ends the job
// (dist::run). Built only with -DWEFT_WITH_MPI=ON; not part of scripts/reproduce (one
// process), ctest runs both modes on 2 ranks (tests/dist).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/digits.hpp"
#include "weft/dist.hpp"
#include "weft/nn/layers.hpp"
#include "weft/quant/cga.hpp"
#include "weft/quant/statsq.hpp"
#include "weft/quant/tracker.hpp"

namespace {

using namespace weft;
using namespace weft_examples;

/// Trains `m` with `opt` for `epochs` under DataParallel `dp` (global batch `batch`, cosine
/// schedule when `cosine`); returns the mean loss of the last epoch on this rank's shards.
template <class Model>
double train_dp(Model& m, nn::Optimizer<float>& opt, dist::DataParallel<float>& dp, const DigitsSplit& d, int epochs,
                index_t batch, std::uint64_t seed, bool cosine) {
  nn::TrainerOptions to;
  to.epochs = epochs;
  to.batch_size = batch;
  to.seed = seed;  // the same on every rank: one global batch order
  nn::Trainer<float> tr(opt, to);
  const index_t spe = (d.train.size() + batch - 1) / batch;
  if (cosine) tr.set_schedule(nn::cosine_schedule(epochs * spe, 0));
  std::vector<int> labels;
  const auto sum = tr.fit(d.train.size(), [&](Tape<float>& tape, const std::vector<index_t>& rows) {
    const std::vector<index_t>& mine = dp.shard(rows);
    return cross_entropy(m(nn::batch_rows(tape, d.train.x, mine)), nn::batch_labels(d.train.y, mine, labels));
  });
  return sum.last_epoch_loss;
}

template <class Model>
double accuracy(Model& m, const DigitsSplit& d) {
  auto f = [&](Tape<float>&, const Var<float>& x) { return m(x); };
  return nn::accuracy<float>(f, d.test.x, d.test.y);
}

int run_mlp(const dist::Communicator& comm, bool quick, std::vector<Row>& rows) {
  const Stopwatch clock;
  const DigitsSplit d = load_digits_split();
  Rng rng(std::uint64_t(comm.rank()));  // rank 0's seed wins (broadcast)
  nn::MLP<float> m({64, 128, 10}, rng, nn::Activation::relu);
  nn::AdamOptions ao;
  ao.lr = 3e-3;
  ao.weight_decay = 1e-4;
  nn::AdamW<float> opt(m.parameters(), ao);
  dist::DataParallel<float> dp(m, opt, comm);
  const int epochs = quick ? 10 : 60;
  train_dp(m, opt, dp, d, epochs, 32, 100, true);
  const double acc = accuracy(m, d), div = dist::max_divergence(comm, m);
  const double bound = quick ? 0.90 : 0.96;
  const std::string ranks = "np = " + std::to_string(comm.size());
  rows.push_back(make_row("dist/mlp_digits", "MLP 64-128-10 on digits with DataParallel (" + ranks + ", global batch 32)",
                          "test accuracy, seed 0, " + std::to_string(epochs) + " epochs", acc,
                          ">= " + std::to_string(bound).substr(0, 4), true, acc >= bound, 1, clock.seconds()));
  rows.push_back(make_row("dist/mlp_digits", "replicas stay bit-identical (" + ranks + ")",
                          "max |p - p_rank0| over every parameter", div, "== 0", true, div == 0.0, 1, clock.seconds()));
  rows.push_back(make_row("dist/mlp_digits", "gradient bytes all-reduced per step and rank",
                          std::to_string(dp.buckets()) + " bucket(s)", double(dp.bytes_per_step()), "", false, true, 1,
                          clock.seconds()));
  return 0;
}

int run_qat(const dist::Communicator& comm, bool quick, std::vector<Row>& rows) {
  const Stopwatch clock;
  const DigitsSplit d = load_digits_split();
  Rng rng(std::uint64_t(comm.rank()) + 7);
  nn::MLP<float> m({64, 128, 128, 10}, rng);
  const int float_epochs = quick ? 5 : 20, qat_epochs = quick ? 9 : 60;
  {  // float phase
    nn::Adam<float> opt(m.parameters());
    dist::DataParallel<float> dp(m, opt, comm);
    train_dp(m, opt, dp, d, float_epochs, 64, 1, false);
  }
  quant::StatsQOptions so;
  so.bits = 2;
  nn::Adam<float> opt(m.parameters());
  quant::OscillationTracker<float> tracker;
  quant::CgaController<float> cga;
  for (int i = 0; i < 2; ++i) {
    auto q = std::make_shared<quant::StatsQuantizer<quant::dynamic_bits, float>>(so);
    m.layers[std::size_t(i)].add_transform(q);
    tracker.track(q);
    cga.manage(m.layers[std::size_t(i)], q, i == 0 ? "W1" : "W2");
  }
  tracker.attach(opt);
  cga.set_active(false);
  cga.attach(opt);
  // constructed after the tracker and CGA hooks: its all-reduce still runs first
  dist::DataParallel<float> dp(m, opt, comm);
  const int cga_from = qat_epochs * 2 / 3;
  for (int e = 0; e < qat_epochs; ++e) {
    if (e == cga_from) cga.set_active(true);
    train_dp(m, opt, dp, d, 1, 64, 1000 + std::uint64_t(e), false);
  }
  const double acc = accuracy(m, d), div = dist::max_divergence(comm, m);
  double frozen_lo = cga.mean_frozen_fraction(), frozen_hi = frozen_lo;
  comm.allreduce_min(&frozen_lo, 1);
  comm.allreduce_max(&frozen_hi, 1);
  const std::string ranks = "np = " + std::to_string(comm.size());
  const double bound = quick ? 0.80 : 0.90;
  rows.push_back(make_row("dist/qat_digits",
                          "2-bit StatsQ + tracker + CGA compose with DataParallel (" + ranks + ")",
                          "test accuracy after " + std::to_string(qat_epochs) + " QAT epochs", acc,
                          ">= " + std::to_string(bound).substr(0, 4), true, acc >= bound, 1, clock.seconds()));
  rows.push_back(make_row("dist/qat_digits", "replicas and CGA's frozen sets agree on every rank (" + ranks + ")",
                          "max |p - p_rank0| + spread of the frozen fraction", div + (frozen_hi - frozen_lo), "== 0",
                          true, div == 0.0 && frozen_hi == frozen_lo, 1, clock.seconds()));
  rows.push_back(make_row("dist/qat_digits", "CGA froze weights (" + ranks + ")", "mean frozen fraction", frozen_lo, "",
                          false, true, 1, clock.seconds()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  dist::Communicator comm(argc, argv);
  bool mlp = false, qat = false;
  Args args("the digits MLP and 2-bit QAT with data parallelism over MPI", {0});
  args.flag("--mlp", mlp, "train the MLP 64-128-10 (default)").flag("--qat", qat, "2-bit StatsQ QAT with CGA");
  args.parse(argc, argv);
  return dist::run(comm, [&] {
    std::vector<Row> rows;
    if (mlp || !qat) run_mlp(comm, args.quick, rows);
    if (qat) run_qat(comm, args.quick, rows);
    bool ok = true;
    for (const Row& r : rows) ok = (comm.is_root() ? emit(r) : (!r.asserted || r.holds)) && ok;
    return ok ? 0 : 1;
  });
}
