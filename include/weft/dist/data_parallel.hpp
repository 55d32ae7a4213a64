// weft/dist/data_parallel.hpp - data-parallel training over MPI, in the way of PyTorch DDP and
// Horovod: every rank holds the whole model, works on its own shard of each global batch, and
// the gradients are averaged across ranks before the optimiser steps.
//
//   dist::Communicator comm(argc, argv);
//   auto model = nn::MLP<float>({64, 128, 10}, rng, nn::Activation::relu);   // same on every rank
//   nn::Adam<float> opt(model.parameters(), ao);
//   dist::DataParallel<float> dp(model, opt, comm);   // broadcasts rank 0's parameters
//   trainer.fit(train.size(), [&](Tape<float>& tape, const std::vector<index_t>& rows) {
//     const auto& mine = dp.shard(rows);               // this rank's part of the global batch
//     return cross_entropy(model(nn::batch_rows(tape, train.x, mine)), ...);
//   });
//
// What happens:
//   - construction checks that every rank has the same parameters (count, dotted names,
//     shapes, requires_grad; a ConfigError on every rank otherwise, so no rank hangs), then
//     broadcasts every parameter of the model from rank 0 (so ranks may initialise differently);
//   - it installs an optimiser pre-step hook at the front of the hook list (nn::Optimizer::
//     add_pre_step_hook_first), so every other pre-step hook (CGA freezing, D-Pruner's dual
//     importance, the compander's scaling, masks) sees the reduced gradient; the hook is owned
//     by this object (destroying it removes the hook);
//   - the hook packs the gradients of the optimiser's trainable parameters into contiguous
//     buckets of at most bucket_bytes, starts a non-blocking all-reduce of each bucket as soon
//     as it is packed (the packing of bucket k+1 overlaps the reduction of bucket k), waits, and
//     unpacks g <- sum_r w_r g_r. With shard(rows), w_r = (rows of rank r) / (global rows), so
//     that when each rank's loss is the mean over its rows the result is the gradient of the
//     mean loss over the global batch; without shard() it is the plain average (w_r = 1/R).
//
// Determinism: the global batch order comes from the Trainer's seed (the same on every rank),
// shard() gives each rank a contiguous part of it, and the reduction sums per-rank partial
// gradients: one step equals the single-process step on the whole batch up to float round-off
// (the sum is regrouped: tests/dist check 1e-5 relative in float, 1e-12 in double, R = 1, 2, 4).
// Parameters then stay identical across ranks, so state derived from the weights (the
// oscillation tracker and CGA's freezing, compander scales, masks) needs no communication;
// statistics of the data each rank saw do (reduce.hpp).
//
// The tape has no per-parameter "gradient ready" callback, so the reduction starts after the
// whole backward (DDP overlaps it with the backward itself). A rank that fails while the others
// wait in the all-reduce would hang them: wrap main in dist::run, which aborts the job. For the
// same reason every rank must call step() the same number of times: TrainerOptions::
// skip_nonfinite (a rank skipping a batch alone) does not work under DataParallel; a non-finite
// gradient on one rank throws there and dist::run ends the job.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/parameter.hpp"
#include "weft/core/rng.hpp"
#include "weft/dist/comm.hpp"
#include "weft/nn/hooks.hpp"
#include "weft/nn/module.hpp"
#include "weft/nn/optim.hpp"

namespace weft::dist {

struct DataParallelOptions {
  /// Largest bucket of gradients reduced by one MPI call (bytes; DDP's default is 25 MiB).
  std::size_t bucket_bytes = std::size_t(4) << 20;
  /// Start each bucket's reduction as soon as it is packed (MPI_Iallreduce); false: one
  /// blocking MPI_Allreduce per bucket.
  bool overlap = true;
  /// Broadcast the model's parameters from rank 0 at construction.
  bool broadcast_parameters = true;
  /// Clip the reduced gradient to this global norm (0: off). Use this instead of
  /// TrainerOptions::clip_norm, which clips each rank's partial gradient before the reduction.
  double clip_norm = 0.0;
};

/// The rows of `rows` that rank `rank` of `size` takes: a contiguous part, sizes differing by
/// at most one, the first (n mod size) ranks one longer. Concatenating the parts over ranks in
/// order gives `rows` back.
inline std::pair<std::size_t, std::size_t> shard_range(std::size_t n, int rank, int size) {
  const std::size_t r = std::size_t(rank), s = std::size_t(size), base = n / s, extra = n % s;
  const std::size_t begin = r * base + (r < extra ? r : extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

/// The indices 0..n-1 that rank `rank` owns: a disjoint, contiguous shard of a data set (for a
/// per-rank evaluation or calibration pass; training shards each batch with DataParallel::shard).
inline std::vector<index_t> shard_indices(index_t n, int rank, int size) {
  WEFT_CHECK(n >= 0 && size >= 1 && rank >= 0 && rank < size, value, "dist::shard_indices",
             "expected n >= 0 and 0 <= rank < size, got n = ", n, ", rank = ", rank, ", size = ", size);
  const auto rg = shard_range(std::size_t(n), rank, size);
  std::vector<index_t> out;
  out.reserve(rg.second - rg.first);
  for (std::size_t i = rg.first; i < rg.second; ++i) out.push_back(index_t(i));
  return out;
}

/// Batches for data-parallel training without nn::Trainer: every rank draws the same global
/// order (shuffled with Rng(seed) once per epoch, exactly as nn::Trainer with TrainerOptions::
/// seed does, so the order is the same for any number of ranks and equals a single process's)
/// and keeps its contiguous part of each global batch (shard_range).
///
///   dist::ShardedBatches sb(train.size(), 64, seed, comm.rank(), comm.size());
///   for (int e = 0; e < epochs; ++e) {
///     sb.next_epoch();
///     for (std::size_t b = 0; b < sb.num_batches(); ++b) { const auto rows = sb.local(b); ... }
///   }
/// With DataParallel, pass sb.global(b) to dp.shard() instead, which also sets the weights.
class ShardedBatches {
 public:
  ShardedBatches(index_t n, index_t batch_size, std::uint64_t seed, int rank, int size, bool shuffle = true)
      : rng_(seed), batch_(batch_size), rank_(rank), size_(size), shuffle_(shuffle) {
    const char* fn = "dist::ShardedBatches";
    WEFT_CHECK(n > 0 && batch_size > 0, value, fn, "expected n > 0 and batch_size > 0, got n = ", n,
               ", batch_size = ", batch_size);
    WEFT_CHECK(size >= 1 && rank >= 0 && rank < size, value, fn, "expected 0 <= rank < size, got rank = ", rank,
               ", size = ", size);
    WEFT_CHECK(batch_size >= size, value, fn, "expected a batch of at least one row per rank (", size,
               " ranks), got batch_size = ", batch_size);
    order_.resize(std::size_t(n));
    for (index_t i = 0; i < n; ++i) order_[std::size_t(i)] = i;
  }
  /// Starts the next epoch (reshuffles the global order; the first call starts epoch 0).
  void next_epoch() {
    if (shuffle_) rng_.shuffle(order_.begin(), order_.end());
    ++epoch_;
  }
  int epoch() const noexcept { return epoch_; }
  /// Global batches per epoch: ceil(n / batch_size), less one when the last batch would have
  /// fewer rows than ranks (its rows then join the batch before it).
  std::size_t num_batches() const noexcept {
    const std::size_t n = order_.size(), bs = std::size_t(batch_), nb = (n + bs - 1) / bs;
    return nb > 1 && n % bs != 0 && n % bs < std::size_t(size_) ? nb - 1 : nb;
  }
  /// Global batch b of the current epoch (the same on every rank).
  std::vector<index_t> global(std::size_t b) const {
    const auto rg = bounds(b);
    return std::vector<index_t>(order_.begin() + std::ptrdiff_t(rg.first), order_.begin() + std::ptrdiff_t(rg.second));
  }
  /// This rank's rows of global batch b.
  std::vector<index_t> local(std::size_t b) const {
    const auto g = bounds(b);
    const auto rg = shard_range(g.second - g.first, rank_, size_);
    return std::vector<index_t>(order_.begin() + std::ptrdiff_t(g.first + rg.first),
                                order_.begin() + std::ptrdiff_t(g.first + rg.second));
  }

 private:
  std::pair<std::size_t, std::size_t> bounds(std::size_t b) const {
    WEFT_CHECK(epoch_ >= 0, config, "dist::ShardedBatches", "expected next_epoch() before the first batch, got none");
    const std::size_t nb = num_batches();
    WEFT_CHECK(b < nb, value, "dist::ShardedBatches", "expected a batch index below ", nb, ", got ", b);
    const std::size_t n = order_.size(), begin = b * std::size_t(batch_);
    return {begin, b + 1 == nb ? n : std::min(n, begin + std::size_t(batch_))};
  }
  Rng rng_;
  index_t batch_;
  int rank_, size_;
  bool shuffle_;
  int epoch_ = -1;
  std::vector<index_t> order_;
};

template <class T>
class DataParallel {
 public:
  DataParallel(nn::Module<T>& model, nn::Optimizer<T>& opt, const Communicator& comm,
               const DataParallelOptions& o = {})
      : opt_(&opt), comm_(&comm), o_(o) {
    const char* fn = "dist::DataParallel";
    WEFT_CHECK(o.clip_norm >= 0 && std::isfinite(o.clip_norm), value, fn, "expected a finite clip_norm >= 0, got ",
               o.clip_norm);
    WEFT_CHECK(o.bucket_bytes >= sizeof(T) && o.bucket_bytes / sizeof(T) <= std::size_t(std::numeric_limits<int>::max()),
               value, fn, "expected bucket_bytes in [", sizeof(T), ", INT_MAX * ", sizeof(T), "], got ", o.bucket_bytes);
    auto named = model.named_parameters();
    check_same_model(named, fn);
    if (o.broadcast_parameters)
      for (auto& np : named) {
        Tensor<T>& v = np.second.value();
        comm.broadcast(v.data(), std::size_t(v.numel()), 0);
      }
    hook_ = opt.add_pre_step_hook_first([this](nn::Optimizer<T>& o) { reduce(o); });
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  /// This rank's part of the global batch `rows` (contiguous, sizes within one), and the weight
  /// of this rank's gradient in the next reduction. Needs at least one row per rank.
  const std::vector<index_t>& shard(const std::vector<index_t>& rows) {
    WEFT_CHECK(rows.size() >= std::size_t(comm_->size()), value, "dist::DataParallel::shard",
               "expected a global batch of at least one row per rank (", comm_->size(), " ranks), got ", rows.size(),
               " rows");
    const auto rg = shard_range(rows.size(), comm_->rank(), comm_->size());
    local_.assign(rows.begin() + std::ptrdiff_t(rg.first), rows.begin() + std::ptrdiff_t(rg.second));
    weight_ = double(local_.size()) / double(rows.size());
    return local_;
  }

  /// Averages (or, after shard(), weights and sums) the gradients of the optimiser given at
  /// construction now; its step() does this itself through the hook.
  void reduce_gradients() { reduce(*opt_); }

  /// Bytes of gradient each rank contributes per step (a ring all-reduce moves about
  /// 2 (R - 1) / R times this over each rank's link); 0 on one rank, which communicates nothing.
  std::size_t bytes_per_step() const noexcept { return bytes_; }
  /// Buckets (MPI calls) of the last reduction.
  std::size_t buckets() const noexcept { return buckets_; }
  std::int64_t reductions() const noexcept { return steps_; }
  const Communicator& comm() const noexcept { return *comm_; }

 private:
  // the optimiser comes from the hook's argument: it stays right after the optimiser moved
  void reduce(nn::Optimizer<T>& opt) {
    const double w = weight_ > 0 ? weight_ : 1.0 / double(comm_->size());
    weight_ = 0;  // one shard() per step
    if (comm_->size() == 1) {  // one rank: the gradient is already the global one (w == 1)
      if (o_.clip_norm > 0) nn::clip_grad_norm(opt.parameters(), o_.clip_norm);
      ++steps_;
      return;
    }
    params_.clear();
    for (auto& g : opt.groups())
      for (auto& p : g.params)
        if (p.requires_grad()) params_.push_back(p);
    std::size_t total = 0;
    for (auto& p : params_) total += std::size_t(p.numel());
    const std::size_t cap = o_.bucket_bytes / sizeof(T);
    buffer_.resize(total);
    requests_.clear();
    std::size_t bucket_begin = 0, filled = 0;
    auto flush = [&](std::size_t end) {
      if (end == bucket_begin) return;
      if (o_.overlap)
        requests_.push_back(comm_->iallreduce_sum(buffer_.data() + bucket_begin, end - bucket_begin));
      else
        comm_->allreduce_sum(buffer_.data() + bucket_begin, end - bucket_begin);
      bucket_begin = end;
    };
    for (auto& p : params_) {  // pack w_r g_r, a bucket at a time (a parameter may span buckets)
      const T* gp = p.grad().data();
      const std::size_t n = std::size_t(p.numel());
      for (std::size_t i = 0; i < n; ++i) {
        buffer_[filled++] = T(w * double(gp[i]));
        if (filled - bucket_begin == cap) flush(filled);
      }
    }
    flush(filled);
    for (auto& r : requests_) Communicator::wait(r);
    std::size_t at = 0;
    for (auto& p : params_) {
      T* gp = p.grad().data();
      for (index_t i = 0; i < p.numel(); ++i) gp[i] = buffer_[at++];
    }
    if (o_.clip_norm > 0) nn::clip_grad_norm(params_, o_.clip_norm);
    buckets_ = requests_.empty() ? (total == 0 ? 0 : (total + cap - 1) / cap) : requests_.size();
    bytes_ = total * sizeof(T);
    ++steps_;
  }

  /// Same parameter list on every rank: a 64-bit FNV-1a hash of names, shapes and flags, and
  /// the count, compared by min/max all-reduce (every rank sees the same verdict).
  void check_same_model(std::vector<std::pair<std::string, Parameter<T>>>& named, const char* fn) {
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&h](const void* p, std::size_t n) {
      const unsigned char* c = static_cast<const unsigned char*>(p);
      for (std::size_t i = 0; i < n; ++i) h = (h ^ c[i]) * 1099511628211ull;
    };
    std::int64_t elems = 0;
    for (auto& np : named) {
      mix(np.first.data(), np.first.size());
      const Shape& s = np.second.shape();
      for (int d = 0; d < s.rank(); ++d) {
        const std::int64_t e = s[d];
        mix(&e, sizeof e);
      }
      const char rg = np.second.requires_grad() ? 1 : 0;
      mix(&rg, 1);
      elems += np.second.numel();
    }
    std::uint64_t lo[2] = {h, std::uint64_t(named.size())}, hi[2] = {h, std::uint64_t(named.size())};
    comm_->allreduce_min(lo, 2);
    comm_->allreduce_max(hi, 2);
    WEFT_CHECK(lo[0] == hi[0] && lo[1] == hi[1], config, fn,
               "expected the same parameters (names, shapes, requires_grad) on every rank, got a different model on "
               "some rank (this rank ",
               comm_->rank(), ": ", named.size(), " parameters, ", elems, " elements)");
  }

  nn::Optimizer<T>* opt_;
  const Communicator* comm_;
  DataParallelOptions o_;
  nn::HookHandle hook_;
  std::vector<index_t> local_;
  double weight_ = 0;
  std::vector<Parameter<T>> params_;
  std::vector<T> buffer_;
  std::vector<MPI_Request> requests_;
  std::size_t bytes_ = 0, buckets_ = 0;
  std::int64_t steps_ = 0;
};

}  // namespace weft::dist
