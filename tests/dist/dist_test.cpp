// Tests of weft/dist (data parallelism over MPI), run by ctest under mpirun with 1, 2 and 4
// ranks (tests/dist/CMakeLists.txt). Every rank runs every test case in the same order, so the
// collectives line up; the cases use CHECK (never REQUIRE) so that a failure on one rank does
// not skip a collective the others wait in. The exit code is the worst over ranks.
//
// The determinism cases compare a DataParallel run (rank r initialises its model with its own
// seed; DataParallel broadcasts rank 0's) with a single-process run of the same steps on the
// whole global batch, done on every rank without communication.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/rng.hpp"
#include "weft/dist/comm.hpp"
#include "weft/dist/data_parallel.hpp"
#include "weft/dist/reduce.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"
#include "weft/prune/calibration.hpp"

namespace {

using namespace weft;

dist::Communicator* g_comm = nullptr;

template <class T>
struct Problem {
  Tensor<T> x;
  std::vector<int> y;
};

template <class T>
Problem<T> make_problem(index_t n, index_t d, int classes) {
  Problem<T> p;
  Rng rng(7);  // the same data on every rank
  p.x = Tensor<T>(Shape{n, d});
  init::normal(p.x, 0.0, 1.0, rng);
  for (index_t i = 0; i < n; ++i) p.y.push_back(int(rng.below(std::uint64_t(classes))));
  return p;
}

template <class T>
double max_rel_diff(nn::Module<T>& a, nn::Module<T>& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  double num = 0, den = 0;
  for (std::size_t k = 0; k < pa.size(); ++k) {
    const Tensor<T>& u = pa[k].second.value();
    const Tensor<T>& v = pb[k].second.value();
    for (index_t i = 0; i < u.numel(); ++i) {
      num = std::max(num, std::abs(double(u.data()[i]) - double(v.data()[i])));
      den = std::max(den, std::abs(double(v.data()[i])));
    }
  }
  return num / den;
}

/// One SGD step on `rows` (the whole global batch, or this rank's shard of it via dp).
template <class T>
void sgd_step(nn::MLP<T>& model, nn::Optimizer<T>& opt, const Problem<T>& p, const std::vector<index_t>& rows) {
  opt.zero_grad();
  Tape<T> tape;
  std::vector<int> labels;
  Var<T> loss = cross_entropy(model(nn::batch_rows(tape, p.x, rows)), nn::batch_labels(p.y, rows, labels));
  tape.backward(loss);
  opt.step();
}

}  // namespace

TEST_CASE("dist::shard_range partitions any batch into near-equal contiguous parts") {
  for (std::size_t n = 0; n <= 23; ++n)
    for (int size = 1; size <= 5; ++size) {
      std::size_t next = 0, lo = n, hi = 0;
      for (int r = 0; r < size; ++r) {
        const auto rg = dist::shard_range(n, r, size);
        CHECK(rg.first == next);
        next = rg.second;
        lo = std::min(lo, rg.second - rg.first);
        hi = std::max(hi, rg.second - rg.first);
      }
      CHECK(next == n);
      CHECK(hi - lo <= 1);
    }
  CHECK_THROWS_AS(dist::shard_indices(10, 3, 3), ValueError);
  CHECK(dist::shard_indices(10, 1, 3) == std::vector<index_t>{4, 5, 6});
}

TEST_CASE("dist::ShardedBatches: the Trainer's global order for any rank count, disjoint contiguous shards") {
  const auto p = make_problem<double>(29, 3, 2);
  // the order a single-process Trainer visits (seed 5, batch 8, 3 epochs)
  Rng a(1);
  nn::MLP<double> model({3, 2}, a);
  nn::SGD<double> opt(model.parameters(), nn::SGDOptions{});
  nn::TrainerOptions to;
  to.epochs = 3;
  to.batch_size = 8;
  to.seed = 5;
  nn::Trainer<double> tr(opt, to);
  std::vector<std::vector<index_t>> seen;
  std::vector<int> labels;
  tr.fit(29, [&](Tape<double>& tape, const std::vector<index_t>& rows) {
    seen.push_back(rows);
    return cross_entropy(model(nn::batch_rows(tape, p.x, rows)), nn::batch_labels(p.y, rows, labels));
  });
  for (int size : {1, 2, 4, 5, 6}) {  // 29 = 3 x 8 + 5: with 6 ranks the last 5 rows join batch 2
    std::vector<dist::ShardedBatches> ranks;
    for (int r = 0; r < size; ++r) ranks.emplace_back(29, 8, 5, r, size);
    std::size_t k = 0;
    for (int e = 0; e < 3; ++e) {
      for (auto& sb : ranks) sb.next_epoch();
      const std::size_t nb = ranks[0].num_batches();
      CHECK(nb == (size == 6 ? 3u : 4u));
      std::vector<index_t> epoch_rows;
      for (std::size_t b = 0; b < nb; ++b) {
        std::vector<index_t> joined;
        for (auto& sb : ranks) {
          const auto mine = sb.local(b);
          CHECK(!mine.empty());
          joined.insert(joined.end(), mine.begin(), mine.end());
        }
        CHECK(joined == ranks[0].global(b));
        epoch_rows.insert(epoch_rows.end(), joined.begin(), joined.end());
      }
      std::vector<index_t> trainer_rows;
      for (std::size_t b = 0; b < 4; ++b, ++k) trainer_rows.insert(trainer_rows.end(), seen[k].begin(), seen[k].end());
      CHECK(epoch_rows == trainer_rows);  // same global order as one process
    }
  }
  CHECK_THROWS_AS(dist::ShardedBatches(29, 3, 0, 0, 4), ValueError);  // fewer rows than ranks per batch
  dist::ShardedBatches fresh(10, 4, 0, 0, 1);
  CHECK_THROWS_AS(fresh.local(0), ConfigError);  // next_epoch() first
  fresh.next_epoch();
  CHECK_THROWS_AS(fresh.local(3), ValueError);
}

TEST_CASE_TEMPLATE("dist::DataParallel: steps on shards equal single-process steps on the whole batch", T, float,
                   double) {
  dist::Communicator& comm = *g_comm;
  const auto p = make_problem<T>(44, 12, 4);
  Rng init_rank(100 + std::uint64_t(comm.rank())), init_ref(100);  // rank 0's seed is the reference
  nn::MLP<T> model({12, 16, 4}, init_rank, nn::Activation::tanh);
  nn::MLP<T> ref({12, 16, 4}, init_ref, nn::Activation::tanh);
  nn::SGDOptions so;
  so.lr = 0.2;
  so.momentum = 0.9;
  nn::SGD<T> opt(model.parameters(), so), opt_ref(ref.parameters(), so);
  dist::DataParallelOptions dpo;
  dpo.bucket_bytes = 64 * sizeof(T);  // several buckets, a parameter spanning two
  dist::DataParallel<T> dp(model, opt, comm, dpo);
  CHECK(max_rel_diff(model, ref) == 0.0);  // broadcast from rank 0

  std::vector<index_t> order(44);
  for (index_t i = 0; i < 44; ++i) order[std::size_t(i)] = i;
  Rng shuffle(3);
  shuffle.shuffle(order.begin(), order.end());
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  double worst = 0;
  for (int step = 0; step < 6; ++step) {
    // batches of 13, 13, 13 and 5 rows: shards of unequal size for 2 and 4 ranks
    const std::size_t b = std::size_t(step % 4) * 13, e = std::min<std::size_t>(44, b + 13);
    const std::vector<index_t> rows(order.begin() + std::ptrdiff_t(b), order.begin() + std::ptrdiff_t(e));
    sgd_step(model, opt, p, dp.shard(rows));
    sgd_step(ref, opt_ref, p, rows);
    const double d = max_rel_diff(model, ref);
    INFO("rank ", comm.rank(), " of ", comm.size(), ", step ", step, ": max relative difference ", d);
    CHECK(d <= tol);
    CHECK(dist::max_divergence(comm, model) == 0.0);  // replicas bit-identical
    worst = std::max(worst, d);
  }
  comm.allreduce_max(&worst, 1);
  if (comm.is_root())
    std::fprintf(stderr, "dist determinism (%s, %d ranks): worst relative difference to one process over 6 steps %.3g\n",
                 std::is_same_v<T, float> ? "float" : "double", comm.size(), worst);
  CHECK(dp.reductions() == 6);
  // 12*16+16+16*4+4 = 276 values in buckets of 64; one rank communicates nothing
  CHECK(dp.buckets() == (comm.size() > 1 ? 5u : 0u));
  CHECK(dp.bytes_per_step() == (comm.size() > 1 ? 276 * sizeof(T) : 0u));
}

TEST_CASE("dist::DataParallel: blocking buckets, Adam, clipping after the reduction") {
  dist::Communicator& comm = *g_comm;
  const auto p = make_problem<double>(30, 6, 3);
  Rng a(11 + std::uint64_t(comm.rank())), b(11);
  nn::MLP<double> model({6, 8, 3}, a), ref({6, 8, 3}, b);
  nn::AdamOptions ao;
  ao.lr = 1e-2;
  nn::Adam<double> opt(model.parameters(), ao), opt_ref(ref.parameters(), ao);
  dist::DataParallelOptions dpo;
  dpo.overlap = false;
  dpo.clip_norm = 0.05;
  dist::DataParallel<double> dp(model, opt, comm, dpo);
  std::vector<index_t> rows(30);
  for (index_t i = 0; i < 30; ++i) rows[std::size_t(i)] = i;
  for (int step = 0; step < 4; ++step) {
    // reference: full batch, clip the full gradient, Adam
    opt_ref.zero_grad();
    Tape<double> tape;
    std::vector<int> labels;
    tape.backward(cross_entropy(ref(nn::batch_rows(tape, p.x, rows)), nn::batch_labels(p.y, rows, labels)));
    nn::clip_grad_norm(opt_ref.parameters(), 0.05);
    opt_ref.step();
    sgd_step(model, opt, p, dp.shard(rows));  // (the helper only records, backprops and steps)
  }
  CHECK(max_rel_diff(model, ref) <= 1e-10);
  CHECK(dist::max_divergence(comm, model) == 0.0);
}

TEST_CASE("dist::DataParallel: other pre-step hooks see the reduced gradient") {
  dist::Communicator& comm = *g_comm;
  const auto p = make_problem<double>(20, 5, 2);
  Rng a(5);
  nn::MLP<double> model({5, 4, 2}, a);
  nn::SGD<double> opt(model.parameters(), nn::SGDOptions{});
  double seen = 0;
  // installed before the DataParallel: it still runs after the all-reduce
  nn::HookHandle h = opt.add_pre_step_hook([&](nn::Optimizer<double>& o) { seen = o.parameters()[0].grad().flat(0); });
  dist::DataParallel<double> dp(model, opt, comm);
  std::vector<index_t> rows(20);
  for (index_t i = 0; i < 20; ++i) rows[std::size_t(i)] = i;
  sgd_step(model, opt, p, dp.shard(rows));
  double lo = seen, hi = seen;
  comm.allreduce_min(&lo, 1);
  comm.allreduce_max(&hi, 1);
  CHECK(lo == hi);
  CHECK(seen != 0.0);
}

TEST_CASE("dist::DataParallel: a different model on some rank is an error on every rank") {
  dist::Communicator& comm = *g_comm;
  Rng a(1);
  nn::MLP<float> model({4, comm.rank() == comm.size() - 1 ? index_t(5) : index_t(6), 2}, a);
  nn::SGD<float> opt(model.parameters(), nn::SGDOptions{});
  if (comm.size() > 1) {
    CHECK_THROWS_WITH_AS(dist::DataParallel<float>(model, opt, comm),
                         doctest::Contains("expected the same parameters"), ConfigError);
    CHECK(opt.num_pre_step_hooks() == 0);
  } else {
    CHECK_NOTHROW(dist::DataParallel<float>(model, opt, comm));
  }
  dist::DataParallelOptions bad;
  bad.bucket_bytes = 1;
  CHECK_THROWS_AS(dist::DataParallel<float>(model, opt, comm, bad), ValueError);  // before any collective
  Rng b(2);
  nn::MLP<float> m2({4, 6, 2}, b);
  nn::SGD<float> o2(m2.parameters(), nn::SGDOptions{});
  dist::DataParallel<float> dp(m2, o2, comm);
  std::vector<index_t> tiny(std::size_t(comm.size() - 1), 0);
  CHECK_THROWS_AS(dp.shard(tiny), ValueError);
}

TEST_CASE("dist::allreduce of calibration statistics equals one calibration over all shards") {
  dist::Communicator& comm = *g_comm;
  const auto p = make_problem<double>(37, 6, 2);
  Rng a(9);
  nn::Linear<double> layer(6, 3, a);
  prune::Calibration<double> all(std::vector<prune::NamedLinear<double>>{{"l", &layer}});
  {
    Tape<double> tape;
    std::vector<index_t> rows(37);
    for (index_t i = 0; i < 37; ++i) rows[std::size_t(i)] = i;
    layer(nn::batch_rows(tape, p.x, rows));
  }
  all.detach();
  prune::Calibration<double> mine(std::vector<prune::NamedLinear<double>>{{"l", &layer}});
  {
    Tape<double> tape;
    const auto rows = dist::shard_indices(37, comm.rank(), comm.size());
    layer(nn::batch_rows(tape, p.x, rows));
  }
  mine.detach();
  dist::allreduce(comm, mine);
  CHECK(mine.stats(0).samples() == 37);
  const auto h1 = all.stats(0).hessian(), h2 = mine.stats(0).hessian();
  CHECK((h1 - h2).cwiseAbs().maxCoeff() <= 1e-12 * h1.cwiseAbs().maxCoeff());
  const auto n1 = all.stats(0).column_norms(), n2 = mine.stats(0).column_norms();
  for (index_t j = 0; j < 6; ++j) CHECK(std::abs(n1.flat(j) - n2.flat(j)) <= 1e-12 * n1.flat(j));
}

TEST_CASE("dist::allreduce_mean and broadcast_parameters") {
  dist::Communicator& comm = *g_comm;
  Tensor<double> t(Shape{3});
  for (index_t i = 0; i < 3; ++i) t.flat(i) = double(comm.rank() + i);
  dist::allreduce_mean(comm, t);
  CHECK(t.flat(0) == doctest::Approx((comm.size() - 1) / 2.0));
  Rng a(20 + std::uint64_t(comm.rank()));
  nn::MLP<float> m({3, 4, 2}, a);
  dist::broadcast_parameters(comm, m);
  CHECK(dist::max_divergence(comm, m) == 0.0);
}

int main(int argc, char** argv) {
  dist::Communicator comm(argc, argv);
  g_comm = &comm;
  doctest::Context ctx(argc, argv);
  if (comm.rank() != 0) ctx.setOption("minimal", true);  // rank 0 reports; the others only failures
  int status = ctx.run();
  comm.allreduce_max(&status, 1);
  return status;
}
