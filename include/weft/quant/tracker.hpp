// weft/quant/tracker.hpp - oscillation metrics over integer codes (Nagel, Fournarakis, Bondarenko,
// Blankevoort, "Overcoming Oscillations in Quantization-Aware Training", ICML 2022), and their
// optional iterative freezing.
//
// For every weight of every tracked quantiser, with k_t its code in the forward pass of step t
// (before the update; spec quantization_ofq.md, Sec. 3):
//   delta_t = k_t - k_{t-1};  switched = delta_t != 0;  d_t = sign(delta_t)
//   osc_t   = switched and d_t == -last_dir    (last_dir: sign of the latest nonzero delta, 0 at first)
//   f_t     = m osc_t + (1 - m) f_{t-1},  m = 0.01, f_0 = 0     (the oscillation frequency, an EMA)
// Aggregates over a window of steps: osc_rate = #oscillations / (#weights #steps), flip_rate =
// #switches / (#weights #steps), flip_frac = the fraction of weights that switched at least once,
// osc_frac(th) = the fraction of weights with f_t > th. Codes, never dequantised values: for LSQ a
// change of s moves values without moving codes, and can move codes without moving the weight.
//
// Iterative freezing (TrackerOptions::freeze_threshold > 0): after each observation, a weight
// with f_t > threshold is frozen at round(EMA_m(k)) (the code average before this step's update,
// rounded half to even, as the reference); its quantiser substitutes that code from the next forward on. Frozen
// weights stay frozen at their first code (the reference re-pins them while f stays above the
// threshold; with a constant code f only decays, so this is a detail). Anneal the threshold with
// set_freeze_threshold (Nagel et al.'s README example: 0.1 -> 0.01).
//
//   quant::OscillationTracker<float> tracker;
//   tracker.track(q1);  tracker.track(q2);     // WeightQuantizer shared pointers
//   tracker.attach(opt);                         // observe() before every optimiser step
//   ... train; tracker.begin_window() when the window starts ...
//   quant::OscillationStats w = tracker.window();   // w.osc_rate(), w.flip_frac(), ...
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/nn/optim.hpp"
#include "weft/quant/quantizer.hpp"

namespace weft::quant {

struct TrackerOptions {
  double momentum = 0.01;         ///< m of the frequency EMA (and of the code EMA for freezing)
  double freeze_threshold = 0.0;  ///< > 0: iterative freezing at this frequency
};

/// Counts over a range of steps; the rates are computed from them.
struct OscillationStats {
  index_t weights = 0;
  std::int64_t steps = 0;
  std::int64_t oscillations = 0;  ///< oscillation events
  std::int64_t flips = 0;         ///< code switches
  index_t flipped = 0;            ///< weights with at least one switch
  double osc_rate() const { return rate(oscillations); }
  double flip_rate() const { return rate(flips); }
  double flip_frac() const { return weights > 0 ? double(flipped) / double(weights) : 0.0; }

 private:
  double rate(std::int64_t events) const {
    return weights > 0 && steps > 0 ? double(events) / (double(weights) * double(steps)) : 0.0;
  }
};

template <class T>
class OscillationTracker {
 public:
  explicit OscillationTracker(const TrackerOptions& o = {}) : o_(o) {
    WEFT_CHECK(o.momentum > 0 && o.momentum <= 1, value, "quant::OscillationTracker", "expected momentum in (0, 1], got ",
               o.momentum);
    check_threshold(o.freeze_threshold, "quant::OscillationTracker");
  }

  /// Tracks the codes of q (a quantiser attached to some layer).
  void track(std::shared_ptr<WeightQuantizer<T>> q, std::string name = {}) {
    WEFT_CHECK(q != nullptr, config, "quant::OscillationTracker::track", "expected a quantiser, got nullptr");
    entries_.push_back(Entry{std::move(q), std::move(name), {}, {}, {}, {}, {}, false});
  }
  std::size_t size() const noexcept { return entries_.size(); }

  /// Reads every tracked quantiser's codes (those of its latest training forward) as step t.
  /// Call once per optimiser step, after the forward pass (attach() does).
  void observe() {
    const float m = float(o_.momentum);
    std::int64_t osc = 0, flips = 0;
    bool any = false;
    for (auto& e : entries_) {
      const std::vector<qcode_t>& k = e.q->codes();
      if (k.empty()) continue;
      if (!e.ready || e.prev.size() != k.size()) {  // the first observation only initialises
        init(e, k);
        continue;
      }
      any = true;
      for (std::size_t i = 0; i < k.size(); ++i) {
        const int delta = int(k[i]) - int(e.prev[i]);
        bool o = false;
        if (delta != 0) {
          const std::int8_t d = delta > 0 ? 1 : -1;
          o = e.dir[i] == -d;
          e.dir[i] = d;
          ++flips;
          e.flipped[i] = 1;
        }
        osc += o;
        e.freq[i] = m * float(o) + (1 - m) * e.freq[i];
        e.prev[i] = k[i];
      }
      if (o_.freeze_threshold > 0) freeze(e, k, m);
    }
    if (!any) return;
    ++steps_;
    osc_total_ += osc;
    flips_total_ += flips;
    last_osc_ = osc;
    last_flips_ = flips;
  }
  /// Installs observe() as a pre-step hook of opt (gradients and codes of the step are final).
  void attach(nn::Optimizer<T>& opt) {
    opt.add_pre_step_hook([this](nn::Optimizer<T>&) { observe(); });
  }

  /// Starts a window: window() counts from here.
  void begin_window() {
    win_steps_ = steps_;
    win_osc_ = osc_total_;
    win_flips_ = flips_total_;
    for (auto& e : entries_) std::fill(e.flipped.begin(), e.flipped.end(), std::uint8_t(0));
  }
  /// Counts since begin_window() (since the start when it was never called).
  OscillationStats window() const {
    OscillationStats s;
    s.weights = weights();
    s.steps = steps_ - win_steps_;
    s.oscillations = osc_total_ - win_osc_;
    s.flips = flips_total_ - win_flips_;
    for (auto& e : entries_)
      for (std::uint8_t f : e.flipped) s.flipped += f;
    return s;
  }
  /// Oscillations and switches of the latest observed step.
  std::int64_t last_oscillations() const noexcept { return last_osc_; }
  std::int64_t last_flips() const noexcept { return last_flips_; }
  /// Steps observed (the first observation of a quantiser only initialises it).
  std::int64_t steps() const noexcept { return steps_; }

  /// Number of weights currently tracked (those seen at least once).
  index_t weights() const {
    index_t n = 0;
    for (auto& e : entries_) n += index_t(e.prev.size());
    return n;
  }
  /// Fraction of tracked weights whose oscillation frequency f exceeds th.
  double osc_frac(double th) const {
    index_t n = 0, c = 0;
    for (auto& e : entries_) {
      n += index_t(e.freq.size());
      for (float f : e.freq) c += double(f) > th;
    }
    return n > 0 ? double(c) / double(n) : 0.0;
  }
  /// The frequencies f of the i-th tracked quantiser's weights.
  const std::vector<float>& frequency(std::size_t i) const { return entry(i).freq; }
  /// Number of weights frozen by iterative freezing (over all tracked quantisers).
  index_t frozen() const {
    index_t n = 0;
    for (auto& e : entries_) n += e.q->frozen_count();
    return n;
  }
  double freeze_threshold() const noexcept { return o_.freeze_threshold; }
  /// Changes the freezing threshold (0 stops freezing new weights; frozen ones stay frozen).
  void set_freeze_threshold(double th) {
    check_threshold(th, "quant::OscillationTracker::set_freeze_threshold");
    o_.freeze_threshold = th;
  }

 private:
  struct Entry {
    std::shared_ptr<WeightQuantizer<T>> q;
    std::string name;
    std::vector<qcode_t> prev;
    std::vector<std::int8_t> dir;
    std::vector<float> freq, ema;
    std::vector<std::uint8_t> flipped;
    bool ready;
  };
  static void check_threshold(double th, const char* fn) {
    WEFT_CHECK(th >= 0 && th <= 1, value, fn, "expected a freezing threshold in [0, 1], got ", th);
  }
  const Entry& entry(std::size_t i) const {
    WEFT_CHECK(i < entries_.size(), shape, "quant::OscillationTracker", "expected a tracked index below ", entries_.size(),
               ", got ", i);
    return entries_[i];
  }
  static void init(Entry& e, const std::vector<qcode_t>& k) {
    e.prev = k;
    e.dir.assign(k.size(), 0);
    e.freq.assign(k.size(), 0.0f);
    e.flipped.assign(k.size(), 0);
    e.ema.assign(k.begin(), k.end());
    e.ready = true;
  }
  void freeze(Entry& e, const std::vector<qcode_t>& k, float m) {
    const std::vector<std::uint8_t>& fm = e.q->frozen_mask();
    for (std::size_t i = 0; i < k.size(); ++i) {
      if (double(e.freq[i]) > o_.freeze_threshold && (fm.empty() || !fm[i]))
        e.q->freeze_at(index_t(i), qcode_t(std::nearbyint(e.ema[i])));  // half to even, as torch.round
      e.ema[i] = m * float(k[i]) + (1 - m) * e.ema[i];
    }
  }

  TrackerOptions o_;
  std::vector<Entry> entries_;
  std::int64_t steps_ = 0, osc_total_ = 0, flips_total_ = 0, last_osc_ = 0, last_flips_ = 0;
  std::int64_t win_steps_ = 0, win_osc_ = 0, win_flips_ = 0;
};

}  // namespace weft::quant
