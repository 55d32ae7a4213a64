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
//
// Codes from elsewhere (another framework, a log): track_codes(CodeSpec{size, bits}) registers a
// sequence fed by hand, and observe(codes) takes step t's codes of it and updates the same
// statistics as a quantiser's codes would (checked first: one vector per fed sequence, its size,
// every code in the bit width's range). Fed sequences are never frozen (no quantiser to pin).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/nn/hooks.hpp"
#include "weft/nn/optim.hpp"
#include "weft/quant/quantizer.hpp"

WEFT_NAMESPACE_BEGIN
namespace quant {

struct TrackerOptions {
  double momentum = 0.01;         ///< m of the frequency EMA (and of the code EMA for freezing)
  double freeze_threshold = 0.0;  ///< > 0: iterative freezing at this frequency
};

/// A code sequence fed by hand (OscillationTracker::track_codes): `size` weights whose codes
/// come from a `bits`-bit quantiser. Valid codes: signed [-2^(b-1), 2^(b-1) - 1] (StatsQ, signed
/// LSQ), widened to [-1, 1] at one bit so that StatsQ's {-1, 0} and LSQ's sign codes {-1, +1} both
/// fit; unsigned [0, 2^b - 1].
struct CodeSpec {
  index_t size = 0;
  int bits = 2;
  bool is_signed = true;
  std::string name;
  int lowest() const noexcept { return is_signed ? -(1 << (bits - 1)) : 0; }
  int highest() const noexcept { return is_signed ? std::max((1 << (bits - 1)) - 1, 1) : (1 << bits) - 1; }
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
  /// Moving keeps the hook of attach() working: it reaches the tracker through a shared cell that
  /// the move points at the new object. Not copyable (hooks have one owner).
  OscillationTracker(OscillationTracker&& o) noexcept { *this = std::move(o); }
  OscillationTracker& operator=(OscillationTracker&& o) noexcept {
    if (this != &o) {
      hooks_ = std::move(o.hooks_);  // removes this tracker's own hooks first
      self_ = std::move(o.self_);
      o_ = o.o_;
      entries_ = std::move(o.entries_);
      fed_ = o.fed_;
      steps_ = o.steps_;
      osc_total_ = o.osc_total_;
      flips_total_ = o.flips_total_;
      last_osc_ = o.last_osc_;
      last_flips_ = o.last_flips_;
      win_steps_ = o.win_steps_;
      win_osc_ = o.win_osc_;
      win_flips_ = o.win_flips_;
      if (self_) *self_ = this;
    }
    return *this;
  }
  OscillationTracker(const OscillationTracker&) = delete;
  OscillationTracker& operator=(const OscillationTracker&) = delete;

  /// Tracks the codes of q (a quantiser attached to some layer).
  void track(std::shared_ptr<WeightQuantizer<T>> q, std::string name = {}) {
    WEFT_CHECK(q != nullptr, config, "quant::OscillationTracker::track", "expected a quantiser, got nullptr");
    Entry e;
    e.q = std::move(q);
    e.name = std::move(name);
    entries_.push_back(std::move(e));
  }
  /// Tracks a code sequence fed by observe(codes) instead of read from a quantiser; returns its
  /// index (the one frequency() takes).
  std::size_t track_codes(const CodeSpec& spec) {
    const char* fn = "quant::OscillationTracker::track_codes";
    WEFT_CHECK(spec.size > 0, shape, fn, "expected a code sequence of size > 0, got ", spec.size);
    detail::check_bits(spec.bits, fn);
    Entry e;
    e.spec = spec;
    e.name = spec.name;
    entries_.push_back(std::move(e));
    ++fed_;
    return entries_.size() - 1;
  }
  std::size_t size() const noexcept { return entries_.size(); }

  /// Reads every tracked quantiser's codes (those of its latest training forward) as step t.
  /// Call once per optimiser step, after the forward pass (attach() does).
  /// Fed sequences (track_codes) take no step here.
  void observe() { step({}); }
  /// One step with step t's codes of the fed sequences: codes[j] for the j-th sequence registered
  /// by track_codes (tracked quantisers are read as observe() reads them). Checks every vector
  /// (count, size, range) before anything changes.
  void observe(const std::vector<std::vector<qcode_t>>& codes) {
    std::vector<const std::vector<qcode_t>*> fed;
    for (const auto& k : codes) fed.push_back(&k);
    check_fed(fed);
    step(fed);
  }
  /// observe({codes}) for a tracker with one fed sequence.
  void observe(const std::vector<qcode_t>& codes) {
    check_fed({&codes});
    step({&codes});
  }
  /// Installs observe() as a pre-step hook of opt (gradients and codes of the step are final).
  /// The tracker owns the hook: destroying it (or detach()) removes it.
  void attach(nn::Optimizer<T>& opt) {
    if (!self_) self_ = std::make_shared<OscillationTracker*>(this);
    std::shared_ptr<OscillationTracker*> self = self_;
    hooks_.add(opt.add_pre_step_hook([self](nn::Optimizer<T>&) { (*self)->observe(); }));
  }
  /// Removes the hooks of every attach().
  void detach() noexcept { hooks_.remove(); }

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
  /// The frequencies f of the i-th tracked quantiser's (or fed sequence's) weights.
  const std::vector<float>& frequency(std::size_t i) const { return entry(i).freq; }
  /// Number of weights frozen by iterative freezing (over all tracked quantisers).
  index_t frozen() const {
    index_t n = 0;
    for (auto& e : entries_)
      if (e.q) n += e.q->frozen_count();
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
    std::shared_ptr<WeightQuantizer<T>> q;  ///< null for a fed sequence
    CodeSpec spec;                          ///< of a fed sequence
    std::string name;
    std::vector<qcode_t> prev;
    std::vector<std::int8_t> dir;
    std::vector<float> freq, ema;
    std::vector<std::uint8_t> flipped;
    bool ready = false;
  };

  /// One step: quantisers' codes, and fed[j] for the j-th fed sequence (none when fed is empty).
  void step(const std::vector<const std::vector<qcode_t>*>& fed) {
    const float m = float(o_.momentum);
    std::int64_t osc = 0, flips = 0;
    bool any = false;
    std::size_t j = 0;
    for (auto& e : entries_) {
      const std::vector<qcode_t>* src = e.q ? &e.q->codes() : fed.empty() ? nullptr : fed[j++];
      if (!src || src->empty()) continue;
      const std::vector<qcode_t>& k = *src;
      if (!e.ready || e.prev.size() != k.size()) {  // the first observation only initialises
        init(e, k);
        continue;
      }
      any = true;
      update(e, k, m, osc, flips);
      if (e.q && o_.freeze_threshold > 0) freeze(e, k, m);
    }
    if (!any) return;
    ++steps_;
    osc_total_ += osc;
    flips_total_ += flips;
    last_osc_ = osc;
    last_flips_ = flips;
  }
  /// Step t of one entry with its codes k: switches, oscillations, frequencies.
  static void update(Entry& e, const std::vector<qcode_t>& k, float m, std::int64_t& osc, std::int64_t& flips) {
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
  }
  /// Checks the codes of the fed sequences (count, sizes, ranges).
  void check_fed(const std::vector<const std::vector<qcode_t>*>& fed) const {
    const char* fn = "quant::OscillationTracker::observe";
    WEFT_CHECK(fed.size() == fed_, shape, fn, "expected one code vector per sequence of track_codes (", fed_, "), got ",
               fed.size());
    std::size_t j = 0;
    for (std::size_t t = 0; t < entries_.size(); ++t) {
      if (entries_[t].q) continue;
      const std::vector<qcode_t>& k = *fed[j++];
      const CodeSpec& c = entries_[t].spec;
      WEFT_CHECK(index_t(k.size()) == c.size, shape, fn, "expected ", c.size, " codes for sequence ", t, ", got ",
                 k.size());
      for (std::size_t i = 0; i < k.size(); ++i)
        WEFT_CHECK(k[i] >= c.lowest() && k[i] <= c.highest(), value, fn, "expected ", c.bits, "-bit ",
                   c.is_signed ? "signed" : "unsigned", " codes in [", c.lowest(), ", ", c.highest(), "] for sequence ",
                   t, ", got ", k[i], " at position ", i);
    }
  }
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
        e.q->freeze_at(index_t(i), e.q->nearest_code(double(e.ema[i])));  // half to even, as torch.round
      e.ema[i] = m * float(k[i]) + (1 - m) * e.ema[i];
    }
  }

  TrackerOptions o_;
  std::vector<Entry> entries_;
  std::size_t fed_ = 0;  // fed sequences among entries_
  std::int64_t steps_ = 0, osc_total_ = 0, flips_total_ = 0, last_osc_ = 0, last_flips_ = 0;
  std::int64_t win_steps_ = 0, win_osc_ = 0, win_flips_ = 0;
  // (the move operations list every member above)
  std::shared_ptr<OscillationTracker*> self_;  // what the hook calls through; follows moves
  nn::HookGroup hooks_;                        // declared last: removed first on destruction
};

}  // namespace quant
WEFT_NAMESPACE_END
