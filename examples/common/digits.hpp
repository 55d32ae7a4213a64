// examples/common/digits.hpp - the digits classification setup shared by the core examples:
// the 1437/360 split (test iff row index % 5 == 0), pixels scaled to [0, 1], and a training run
// of any nn module with AdamW + cosine schedule that records test accuracy per epoch.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/data.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/schedule.hpp"
#include "weft/nn/trainer.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "common/report.hpp"

namespace weft_examples {

struct DigitsSplit {
  weft::Dataset<float> train, test;
};

/// Loads data/digits.csv, scales pixels by 1/16 and splits test iff index % 5 == 0.
inline DigitsSplit load_digits_split() {
  weft::Dataset<float> all = weft::load_digits<float>();
  all.x.array() /= 16.0f;
  auto parts = weft::split_mod(all, 5, 0);
  return {std::move(parts.first), std::move(parts.second)};
}

struct TrainConfig {
  int epochs = 30;
  weft::index_t batch = 32;
  double lr = 1e-3;
  double weight_decay = 1e-4;
  int warmup_epochs = 0;
  bool progress = false;
};

struct TrainResult {
  double test_accuracy = 0;
  std::vector<double> curve;  ///< test accuracy after each epoch
  std::vector<double> losses; ///< mean training loss of each epoch
};

/// Trains `model` (an nn module with operator()(Var) -> logits) and returns the final test
/// accuracy with the per-epoch curve. The seed drives batch order (the model's init is the
/// caller's).
template <class Model>
TrainResult train_digits(Model& model, const DigitsSplit& d, const TrainConfig& c, std::uint64_t seed) {
  using namespace weft;
  nn::AdamOptions ao;
  ao.lr = c.lr;
  ao.weight_decay = c.weight_decay;
  nn::AdamW<float> opt(model.parameters(), ao);
  nn::TrainerOptions to;
  to.epochs = c.epochs;
  to.batch_size = c.batch;
  to.seed = seed;
  to.progress = c.progress;
  nn::Trainer<float> trainer(opt, to);
  const index_t steps_per_epoch = (d.train.size() + c.batch - 1) / c.batch;
  trainer.set_schedule(nn::cosine_schedule(c.epochs * steps_per_epoch, c.warmup_epochs * steps_per_epoch));
  auto forward = [&](Tape<float>&, const Var<float>& x) { return model(x); };
  TrainResult r;
  trainer.on_epoch([&](nn::EpochInfo& e) {
    model.eval();
    const double acc = nn::accuracy<float>(forward, d.test.x, d.test.y);
    model.train();
    r.curve.push_back(acc);
    r.losses.push_back(e.mean_loss);
    e.extra = "test acc " + std::to_string(acc);
  });
  std::vector<int> labels;
  trainer.fit(d.train.size(), [&](Tape<float>& tape, const std::vector<index_t>& rows) {
    return cross_entropy(model(nn::batch_rows(tape, d.train.x, rows)), nn::batch_labels(d.train.y, rows, labels));
  });
  r.test_accuracy = r.curve.empty() ? 0 : r.curve.back();
  return r;
}

/// The core examples' protocol: for each seed s, build a model with make_model(Rng(s)), train it
/// with batch order seed s + 100, write its curve to figure-data/<series>.csv, and emit one row
/// asserting mean test accuracy >= bound. Returns the process exit code.
template <class MakeModel>
int run_digits_experiment(const Args& args, const std::string& experiment, const std::string& claim,
                          const std::string& series, double bound, const TrainConfig& cfg, MakeModel make_model) {
  const Stopwatch clock;
  const DigitsSplit data = load_digits_split();
  auto out = series_file(series + ".csv", "seed,epoch,train_loss,test_accuracy");
  std::vector<double> accs;
  for (int s = 0; s < args.seeds; ++s) {
    weft::Rng rng{static_cast<std::uint64_t>(s)};
    auto model = make_model(rng);
    TrainResult r = train_digits(model, data, cfg, static_cast<std::uint64_t>(s) + 100);
    for (std::size_t e = 0; e < r.curve.size(); ++e)
      out << s << ',' << e + 1 << ',' << r.losses[e] << ',' << r.curve[e] << '\n';
    accs.push_back(r.test_accuracy);
    std::fprintf(stderr, "%s seed %d: test accuracy %.4f (%ld parameters)\n", experiment.c_str(), s,
                 r.test_accuracy, long(model.num_parameters()));
  }
  Row row;
  row.experiment = experiment;
  row.claim = claim;
  row.metric = "test accuracy, mean over seeds (min " + std::to_string(min_of(accs)).substr(0, 5) + ")";
  row.value = mean(accs);
  char b[32];
  std::snprintf(b, sizeof b, ">= %.2f", bound);
  row.bound = b;
  row.holds = row.value >= bound;
  row.seeds = args.seeds;
  row.seconds = clock.seconds();
  return emit(row) ? 0 : 1;
}

}  // namespace weft_examples
