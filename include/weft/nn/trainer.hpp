// weft/nn/trainer.hpp - a small training loop with callbacks, and batching/evaluation helpers.
//
//   nn::AdamOptions ao;
//   ao.lr = 1e-3;
//   nn::Adam<float> opt(model.parameters(), ao);
//   nn::Trainer<float> trainer(opt, options);
//   trainer.on_epoch([&](nn::EpochInfo& e) { e.extra = "test acc " + ...; });
//   trainer.fit(train.size(), [&](Tape<float>& tape, const std::vector<index_t>& rows) {
//     return cross_entropy(model(nn::batch_rows(tape, train.x, rows)), nn::batch_labels(train.y, rows, labels));
//   });
//
// Each step: zero gradients, record the loss on the trainer's tape, backward, optional clipping
// by global norm, schedule factor, optimiser step (which runs the optimiser's hooks), step
// callbacks, tape reset. The tape's arena is reused, so steps after the first do not allocate
// for the graph. Shuffling uses weft::Rng with the given seed, so runs are reproducible.
// A NaN or Inf loss, or a non-finite gradient, stops fit() with a ValueError naming the step,
// before the optimiser touches the weights (gradients are zeroed, the tape is reset); with
// TrainerOptions::skip_nonfinite such a batch is skipped instead and counted in
// TrainSummary::skipped_steps. The gradient check reads every gradient once per step.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>  // isatty, fileno: is the progress stream a terminal
#endif

#include "weft/core/autograd/tape.hpp"
#include "weft/core/rng.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/schedule.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

/// A constant holding the given rows of x (leading axis), copied into the tape's arena.
template <class T>
Var<T> batch_rows(Tape<T>& tape, const Tensor<T>& x, const std::vector<index_t>& rows) {
  WEFT_CHECK(x.rank() >= 1, shape, "nn::batch_rows", "expected a tensor of rank >= 1, got a scalar");
  const index_t n = x.dim(0), w = x.shape().stride(0);
  Tensor<T> b = tape.alloc_uninit(x.shape().with(0, index_t(rows.size())));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    WEFT_CHECK(rows[i] >= 0 && rows[i] < n, shape, "nn::batch_rows", "expected row indices in [0, ", n, "), got ",
               rows[i]);
    std::copy(x.data() + rows[i] * w, x.data() + (rows[i] + 1) * w, b.data() + index_t(i) * w);
  }
  return tape.constant(b);
}

/// labels[rows[i]] for each i, written into `out` (reused between steps) and returned.
inline const std::vector<int>& batch_labels(const std::vector<int>& labels, const std::vector<index_t>& rows,
                                            std::vector<int>& out) {
  out.resize(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    WEFT_CHECK(rows[i] >= 0 && std::size_t(rows[i]) < labels.size(), shape, "nn::batch_labels",
               "expected row indices in [0, ", labels.size(), "), got ", rows[i]);
    out[i] = labels[std::size_t(rows[i])];
  }
  return out;
}

/// Index of the largest entry of each row of a (N, C) tensor (first one on ties).
template <class T>
std::vector<int> argmax_rows(const Tensor<T>& logits) {
  WEFT_CHECK(logits.rank() == 2 && logits.dim(1) > 0, shape, "nn::argmax_rows", "expected (N, C) with C > 0, got ",
             logits.shape());
  std::vector<int> out(std::size_t(logits.dim(0)));
  for (index_t i = 0; i < logits.dim(0); ++i) {
    index_t best = 0;
    for (index_t j = 1; j < logits.dim(1); ++j)
      if (real_part(logits(i, j)) > real_part(logits(i, best))) best = j;
    out[std::size_t(i)] = int(best);
  }
  return out;
}

/// Fraction of rows of x classified correctly by forward (called in batches without gradients).
/// Labels must lie in [0, C), C the number of columns forward returns (else ValueError).
template <class T, class F>
double accuracy(F&& forward, const Tensor<T>& x, const std::vector<int>& y, index_t batch = 256) {
  WEFT_CHECK(x.rank() >= 1 && x.dim(0) == index_t(y.size()) && !y.empty(), shape, "nn::accuracy",
             "expected one label per row and a non-empty set, got ", x.shape(), " and ", y.size(), " labels");
  WEFT_CHECK(batch > 0, value, "nn::accuracy", "expected batch > 0, got ", batch);
  Tape<T> tape;
  no_grad ng;
  index_t correct = 0;
  std::vector<index_t> rows;
  for (index_t s = 0; s < x.dim(0); s += batch) {
    rows.clear();
    for (index_t i = s; i < std::min(x.dim(0), s + batch); ++i) rows.push_back(i);
    Var<T> logits = forward(tape, batch_rows(tape, x, rows));
    std::vector<int> pred = argmax_rows(logits.value());
    const index_t C = logits.value().dim(1);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const int label = y[std::size_t(rows[i])];
      WEFT_CHECK(label >= 0 && label < C, value, "nn::accuracy", "expected labels in [0, ", C,
                 ") (the model's number of classes), got ", label, " at row ", rows[i]);
      correct += pred[i] == label;
    }
    tape.reset();
  }
  return double(correct) / double(y.size());
}

struct TrainerOptions {
  int epochs = 10;
  index_t batch_size = 32;
  std::uint64_t seed = 0;   ///< shuffling seed
  bool shuffle = true;
  bool drop_last = false;   ///< skip a final partial batch
  double clip_norm = 0.0;   ///< clip gradients to this global norm (0: off)
  bool skip_nonfinite = false;  ///< skip a batch whose loss or gradient is NaN/Inf (default: throw)
  /// Progress on `progress_stream`: on a terminal one live line (epoch, step, loss, samples/s),
  /// rewritten with '\r' at most every `progress_interval` seconds; otherwise (a file, a pipe,
  /// a CI log) one plain line per epoch. Off by default (tests stay quiet).
  bool progress = false;
  std::FILE* progress_stream = stderr;
  double progress_interval = 0.25;  ///< seconds between live updates
};

struct StepInfo {
  std::int64_t step;  ///< 0-based global step just taken
  int epoch;
  double loss;
  double lr_factor;
};

struct EpochInfo {
  int epoch;          ///< 0-based
  double mean_loss;   ///< mean training loss over the epoch's steps
  double seconds;     ///< since fit() started
  std::string extra;  ///< appended to the progress line (set it in a callback)
  bool stop = false;  ///< set to end training after this epoch
};

struct TrainSummary {
  int epochs = 0;
  std::int64_t steps = 0;
  std::int64_t skipped_steps = 0;  ///< batches skipped for a non-finite loss or gradient
  double last_epoch_loss = 0;
  double seconds = 0;
};

namespace detail {

/// Whether f is a terminal (POSIX isatty; elsewhere assumed not).
inline bool is_terminal(std::FILE* f) {
#if defined(__unix__) || defined(__APPLE__)
  return f && ::isatty(::fileno(f));
#else
  (void)f;
  return false;
#endif
}

/// The trainer's progress line: live ('\r', throttled) on a terminal, one line per epoch else.
class ProgressLine {
 public:
  ProgressLine(std::FILE* f, double interval, bool live) : f_(f), live_(live), interval_(interval) {}
  /// After a step: `done` of `total` samples of epoch `epoch` (0-based) of `epochs`.
  void step(int epoch, int epochs, index_t done, index_t total, double mean_loss, double rate, double now) {
    if (!live_ || (now - last_ < interval_ && done < total)) return;
    last_ = now;
    std::fprintf(f_, "\repoch %d/%d  %3d%%  loss %.4f  %.0f samples/s ", epoch + 1, epochs,
                 int(100 * done / std::max<index_t>(total, 1)), mean_loss, rate);
    std::fflush(f_);
  }
  /// At the end of an epoch: its final line, with `extra` (callbacks' text) and the time so far.
  void epoch(int epoch, int epochs, double mean_loss, double rate, const std::string& extra, double seconds) {
    std::fprintf(f_, "%sepoch %d/%d  loss %.4f  %.0f samples/s  %s%s%.1fs\n", live_ ? "\r\033[K" : "", epoch + 1,
                 epochs, mean_loss, rate, extra.c_str(), extra.empty() ? "" : "  ", seconds);
    std::fflush(f_);
  }

 private:
  std::FILE* f_;
  bool live_;
  double interval_, last_ = -1e300;
};

/// The first parameter whose gradient holds a NaN or Inf, or -1.
template <class T>
std::ptrdiff_t first_nonfinite_grad(const std::vector<Parameter<T>>& params) {
  for (std::size_t i = 0; i < params.size(); ++i)
    if (!params[i].grad().all_finite()) return std::ptrdiff_t(i);
  return -1;
}

}  // namespace detail

template <class T>
class Trainer {
 public:
  explicit Trainer(Optimizer<T>& opt, const TrainerOptions& o = {}) : opt_(opt), o_(o) {
    WEFT_CHECK(o.epochs >= 0 && o.batch_size > 0 && o.clip_norm >= 0, value, "nn::Trainer",
               "expected epochs >= 0, batch_size > 0 and clip_norm >= 0, got ", o.epochs, ", ", o.batch_size, ", ",
               o.clip_norm);
    WEFT_CHECK(!o.progress || (o.progress_stream && o.progress_interval >= 0 && std::isfinite(o.progress_interval)),
               value, "nn::Trainer", "expected a progress stream and a finite progress_interval >= 0, got ",
               o.progress_stream ? "a stream" : "no stream", " and ", o.progress_interval);
  }

  Trainer& set_schedule(Schedule s) {
    schedule_ = std::move(s);
    return *this;
  }
  Trainer& on_step(std::function<void(const StepInfo&)> f) {
    step_cbs_.push_back(std::move(f));
    return *this;
  }
  Trainer& on_epoch(std::function<void(EpochInfo&)> f) {
    epoch_cbs_.push_back(std::move(f));
    return *this;
  }
  Tape<T>& tape() noexcept { return tape_; }

 private:
  /// After backward: true when the loss and every gradient are finite. Otherwise the gradients
  /// are zeroed and the tape reset, then (without skip_nonfinite) a ValueError names the step.
  bool finite_step(double lv, const std::vector<Parameter<T>>& params, int epoch, index_t first_row) {
    const std::ptrdiff_t bad = std::isfinite(lv) ? detail::first_nonfinite_grad(params) : -1;
    if (std::isfinite(lv) && bad < 0) return true;
    opt_.zero_grad();
    tape_.reset();
    if (o_.skip_nonfinite) return false;
    const std::int64_t step = opt_.steps();
    if (!std::isfinite(lv))
      ::weft::detail::fail(ErrorKind::value, "nn::Trainer::fit", "expected a finite loss, got ", lv, " at step ", step,
                   " (epoch ", epoch, ", batch from position ", first_row,
                   "); the weights are those before this step; TrainerOptions::skip_nonfinite skips such batches");
    ::weft::detail::fail(ErrorKind::value, "nn::Trainer::fit", "expected finite gradients, got NaN or Inf in parameter ", bad,
                 " ('", params[std::size_t(bad)].name(), "') at step ", step, " (epoch ", epoch, ", batch from position ",
                 first_row, "); the weights are those before this step; TrainerOptions::skip_nonfinite skips such batches");
  }

 public:

  /// Trains on n samples; loss_fn(tape, rows) records the mean loss of the given rows.
  template <class LossFn>
  TrainSummary fit(index_t n, LossFn&& loss_fn) {
    WEFT_CHECK(n > 0, shape, "nn::Trainer::fit", "expected at least one training sample, got ", n);
    tape_.reset();  // drop a graph left behind by a fit() that threw mid-step
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    Rng rng(o_.seed);
    std::vector<index_t> order(static_cast<std::size_t>(n));
    std::vector<index_t> rows;
    for (index_t i = 0; i < n; ++i) order[std::size_t(i)] = i;
    const std::vector<Parameter<T>> params = opt_.parameters();
    TrainSummary sum;
    detail::ProgressLine line(o_.progress_stream, o_.progress_interval,
                              o_.progress && detail::is_terminal(o_.progress_stream));
    auto since = [&](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
    for (int epoch = 0; epoch < o_.epochs; ++epoch) {
      if (o_.shuffle) rng.shuffle(order.begin(), order.end());
      const auto te = clock::now();
      double loss_sum = 0;
      std::int64_t batches = 0;
      index_t seen = 0;
      for (index_t s = 0; s < n; s += o_.batch_size) {
        const index_t e = std::min(n, s + o_.batch_size);
        if (o_.drop_last && e - s < o_.batch_size && s > 0) break;
        rows.assign(order.begin() + s, order.begin() + e);
        opt_.zero_grad();
        Var<T> loss = loss_fn(tape_, rows);
        WEFT_CHECK(loss.numel() == 1, shape, "nn::Trainer::fit", "expected the loss function to return a scalar, got ",
                   loss.shape());
        const double lv = double(real_part(loss.value().flat(0)));
        if (std::isfinite(lv)) tape_.backward(loss);
        if (!finite_step(lv, params, epoch, s)) {
          ++sum.skipped_steps;
          continue;
        }
        if (o_.clip_norm > 0) clip_grad_norm(params, o_.clip_norm);
        if (schedule_) opt_.set_lr_factor(schedule_(opt_.steps()));
        opt_.step();
        tape_.reset();
        loss_sum += lv;
        ++batches;
        StepInfo si{opt_.steps() - 1, epoch, lv, opt_.lr_factor()};
        for (auto& f : step_cbs_) f(si);
        seen += e - s;
        if (o_.progress)
          line.step(epoch, o_.epochs, seen, n, loss_sum / double(batches), double(seen) / since(te), since(t0));
      }
      const double rate = double(seen) / since(te);
      EpochInfo ei{epoch, batches ? loss_sum / double(batches) : 0.0, since(t0), {}, false};
      for (auto& f : epoch_cbs_) f(ei);
      sum.epochs = epoch + 1;
      sum.last_epoch_loss = ei.mean_loss;
      if (o_.progress) line.epoch(epoch, o_.epochs, ei.mean_loss, rate, ei.extra, ei.seconds);
      if (ei.stop) break;
    }
    sum.steps = opt_.steps();
    sum.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return sum;
  }

 private:
  Optimizer<T>& opt_;
  TrainerOptions o_;
  Tape<T> tape_;
  Schedule schedule_;
  std::vector<std::function<void(const StepInfo&)>> step_cbs_;
  std::vector<std::function<void(EpochInfo&)>> epoch_cbs_;
};

}  // namespace nn
WEFT_NAMESPACE_END
