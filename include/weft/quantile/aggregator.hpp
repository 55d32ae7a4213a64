// weft/quantile/aggregator.hpp - quantile aggregation (stacking) of p base models, after
// R. Fakoor, T. Kim, J. Mueller, A. J. Smola, R. J. Tibshirani, "Flexible Model Aggregation for
// Quantile Regression", JMLR 24 (2023) (the code calls the local variant "DQA").
//
// Inputs are base predictions G (n, p, m), G_ijk = g_j(x_i; tau_k), and for local schemes the
// features x_i. Output level k is
//   average  (1/p) sum_j G_ijk
//   coarse   sum_j w_j G_ijk               w on the simplex over models (p weights)
//   medium   sum_j w_jk G_ijk              one simplex per level (p m weights)
//   fine     sum_j sum_l w_jlk G_ijl       one simplex over (model, level) pairs per level
// Weights are softmax(logits) with logits starting at 0 (equal weights: the average); with
// normalize = false they are free (linear stacking), starting at 1/p on each model's own level.
// local = true computes the logits per row with a small network h(x): Linear(d, H) + ELU, then
// (L - 1) x [Dropout, Linear(H, H), ELU], then Linear(H, out); its last layer starts at zero,
// so training starts from the average too.
// Coarse weights keep the output non-crossing whenever every base model is (a convex
// combination of sorted vectors is sorted); medium and fine do not.
//
// Training minimises weft's wis (mean pinball loss) with nn::Adam, full batch by default, on
// out-of-fold base predictions (stacking.hpp): never on in-sample ones. Options: minibatches,
// a margin penalty, a differentiable sort/isotonic transform inside training (then predict()
// applies it too), and early stopping on a validation part followed by a refit on all rows for
// the best step count. Everything is seeded: the same call gives the same bits. predict() and
// weights() are const but switch the local network to evaluation mode: do not call them on one
// object from several threads at once.
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/linalg.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/core/rng.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/optim.hpp"
#include "weft/quantile/monotone.hpp"
#include "weft/quantile/scores.hpp"

WEFT_NAMESPACE_BEGIN
namespace quantile {

enum class Scheme { average, coarse, medium, fine };

inline const char* to_string(Scheme s) noexcept {
  switch (s) {
    case Scheme::coarse: return "coarse";
    case Scheme::medium: return "medium";
    case Scheme::fine: return "fine";
    default: return "average";
  }
}

struct AggregatorOptions {
  Scheme scheme = Scheme::medium;
  bool local = false;       ///< weights from a network of the features (DQA) instead of global ones
  bool normalize = true;    ///< softmax weights (simplex); false: free linear stacking weights
  int steps = 1500;         ///< Adam steps (the maximum when validation_fraction > 0)
  double lr = 0.05;
  double beta1 = 0.9, beta2 = 0.999;
  double weight_decay = 0;  ///< Adam's L2 term
  index_t batch_size = 0;   ///< rows per step; 0 = full batch
  index_t hidden = 32;      ///< local network width H
  int layers = 2;           ///< local network depth L
  double dropout = 0;       ///< local network dropout
  Monotonize train_transform = Monotonize::none;  ///< none, sort or isotonic, differentiated through
  double margin_weight = 0;  ///< lambda of the margin penalty (0: off)
  double margin_delta = 1e-3;  ///< "single" margin delta_kl = delta ...
  std::vector<double> margin_matrix;  ///< ... unless this holds m x m deltas (margin_vec / margin_adapt)
  double validation_fraction = 0;  ///< > 0: early stopping on this share of rows, then refit
  int eval_every = 100;
  int patience = 500;
  std::uint64_t seed = 0;
};

namespace detail {
/// ELU(x) = x for x > 0, exp(x) - 1 otherwise; derivative 1, resp. y + 1 (1 at 0). A unary-op
/// descriptor (core/ops/elementwise.hpp), so forward and backward take the xsimd path.
struct elu_op {
  static constexpr const char* name = "elu";
  template <class T> static T f(T x) { return x > 0 ? x : std::expm1(x); }
  template <class T> static T df(T x, T y) { return x >= 0 ? T(1) : y + T(1); }
#if WEFT_USE_XSIMD
  template <class B> static B fv(B x) { return simd::select(x > B(0), x, simd::expm1(x)); }
  template <class B> static B dfv(B x, B y) { return simd::select(x >= B(0), B(1), y + B(1)); }
#endif
};
template <class T>
Var<T> elu(const Var<T>& x) { return unary<elu_op>(x); }
}  // namespace detail

/// The feature network of local aggregators (see the file comment).
template <class T>
class LocalWeightNet : public nn::Module<T> {
 public:
  std::vector<nn::Linear<T>> layers;
  double dropout = 0;

  LocalWeightNet() = default;
  LocalWeightNet(index_t in, index_t hidden, int depth, index_t out, double dropout_, Rng& rng) : dropout(dropout_) {
    layers.emplace_back(in, hidden, rng);
    for (int l = 1; l < depth; ++l) layers.emplace_back(hidden, hidden, rng);
    layers.emplace_back(hidden, out, rng);
    layers.back().weight.value().set_zero();
    layers.back().bias.value().set_zero();
  }
  /// Logits (n, out); dropout is active when training and rng is given.
  Var<T> forward(const Var<T>& x, Rng* rng) {
    Var<T> h = detail::elu(layers[0](x));
    for (std::size_t l = 1; l + 1 < layers.size(); ++l) {
      if (rng && dropout > 0 && this->is_training()) {
        Tensor<T> mask = h.tape().alloc_uninit(h.shape());
        for (auto& v : mask) v = rng->uniform() < dropout ? T(0) : T(1.0 / (1.0 - dropout));
        h = h * h.tape().constant(mask);
      }
      h = detail::elu(layers[l](h));
    }
    return layers.back()(h);
  }
  void visit(nn::Members<T>& m) override {
    for (std::size_t i = 0; i < layers.size(); ++i) m.child("layers." + std::to_string(i), layers[i]);
  }
};

template <class T>
class Aggregator {
 public:
  explicit Aggregator(const AggregatorOptions& o = {}) : o_(o) {
    const char* fn = "quantile::Aggregator";
    WEFT_CHECK(o.steps >= 0 && o.lr > 0 && std::isfinite(o.lr) && o.batch_size >= 0 && o.eval_every >= 1 && o.patience >= 1, config, fn,
               "expected steps >= 0, a finite lr > 0, batch_size >= 0, eval_every >= 1, patience >= 1, got ", o.steps, ", ",
               o.lr, ", ", o.batch_size, ", ", o.eval_every, ", ", o.patience);
    WEFT_CHECK(o.dropout >= 0 && o.dropout < 1 && o.hidden >= 1 && o.layers >= 1, config, fn,
               "expected 0 <= dropout < 1, hidden >= 1, layers >= 1, got ", o.dropout, ", ", o.hidden, ", ", o.layers);
    WEFT_CHECK(o.validation_fraction >= 0 && o.validation_fraction < 1 && o.margin_weight >= 0, config, fn,
               "expected 0 <= validation_fraction < 1 and margin_weight >= 0, got ", o.validation_fraction, " and ",
               o.margin_weight);
    WEFT_CHECK(o.train_transform == Monotonize::none || o.train_transform == Monotonize::sort ||
                   o.train_transform == Monotonize::isotonic,
               config, fn, "expected train_transform none, sort or isotonic, got ", to_string(o.train_transform));
    WEFT_CHECK(!(o.local && o.scheme == Scheme::average), config, fn, "expected a weighted scheme for local = true, got average");
    check_optimizer_options(o, fn);
  }
  const AggregatorOptions& options() const noexcept { return o_; }

  /// Trains the weights on G (n, p, m) against y (n); local schemes need features X (n, d).
  /// A fit that throws leaves the aggregator as it was (the work is done on a copy).
  void fit(const Tensor<T>& G, const Tensor<T>& y, const std::vector<double>& levels, const Tensor<T>& X = Tensor<T>()) {
    Aggregator next(*this);
    next.fit_in_place(G, y, levels, X);
    *this = std::move(next);
  }

  /// Aggregated predictions (n, m) (with the in-training transform applied, if one is set).
  Tensor<T> predict(const Tensor<T>& G, const Tensor<T>& X = Tensor<T>()) const {
    WEFT_CHECK(!levels_.empty(), config, "quantile::Aggregator::predict", "expected a fitted aggregator, got one without fit()");
    check_inputs(G, nullptr, levels_, X, false, "quantile::Aggregator::predict");
    Tape<T> tape;
    no_grad ng;
    net_.eval();
    Var<T> out = forward(tape, G, X, nullptr);
    return out.value().clone();
  }

  /// Effective weights: (S, R) for global schemes, (n, S, R) for local ones, with S sources
  /// (p, or p m for fine) and R output rows (1 for coarse, m otherwise); average: (p, 1) of 1/p.
  Tensor<T> weights(const Tensor<T>& X = Tensor<T>()) const {
    WEFT_CHECK(!levels_.empty(), config, "quantile::Aggregator::weights", "expected a fitted aggregator, got one without fit()");
    if (o_.scheme == Scheme::average) return Tensor<T>(Shape{p_, 1}, T(1.0 / double(p_)));
    WEFT_CHECK(!o_.local || (X.defined() && X.rank() == 2 && X.dim(1) == d_), shape, "quantile::Aggregator::weights",
               "expected features of shape (n, ", d_, ") for a local aggregator, got ", X.defined() ? X.shape() : Shape{});
    Tape<T> tape;
    no_grad ng;
    net_.eval();
    return weight_var(tape, X, nullptr).value().clone();
  }

  /// Training loss (wis + penalty, on the rows of each step) after every step of the last fit.
  const std::vector<double>& history() const noexcept { return history_; }
  /// Steps of the final training run (o.steps, or the early-stopping choice).
  index_t best_steps() const noexcept { return best_steps_; }

 private:
  void fit_in_place(const Tensor<T>& G, const Tensor<T>& y, const std::vector<double>& levels, const Tensor<T>& X) {
    check_inputs(G, &y, levels, X, true, "quantile::Aggregator::fit");
    WEFT_CHECK(o_.margin_matrix.empty() || index_t(o_.margin_matrix.size()) == G.dim(2) * G.dim(2), config,
               "quantile::Aggregator::fit", "expected margin_matrix of ", G.dim(2) * G.dim(2), " values (m x m), got ",
               o_.margin_matrix.size());
    p_ = G.dim(1);
    m_ = G.dim(2);
    d_ = o_.local ? X.dim(1) : 0;
    levels_ = levels;
    history_.clear();
    if (o_.scheme == Scheme::average) return;
    const index_t n = G.dim(0);
    index_t steps = o_.steps;
    if (o_.validation_fraction > 0) {
      Rng split(o_.seed ^ 0x5eedULL);
      std::vector<index_t> perm = split.permutation(n), tr, va;
      const index_t nv = std::max<index_t>(1, index_t(std::floor(o_.validation_fraction * double(n))));
      WEFT_CHECK(n - nv >= 1, shape, "quantile::Aggregator::fit", "expected rows left for training after the validation split, got ", n, " rows");
      for (index_t r = 0; r < n; ++r) (r < nv ? va : tr).push_back(perm[std::size_t(r)]);
      init_params();
      steps = train(G, y, X, tr, &va, o_.steps);
    }
    init_params();
    std::vector<index_t> all(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) all[std::size_t(i)] = i;
    history_.clear();
    train(G, y, X, all, nullptr, steps);
    best_steps_ = steps;
  }

  /// The options Adam and the margin penalty read, checked here rather than inside fit().
  static void check_optimizer_options(const AggregatorOptions& o, const char* fn) {
    WEFT_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, config, fn,
               "expected beta1 and beta2 in [0, 1), got ", o.beta1, " and ", o.beta2);
    WEFT_CHECK(o.weight_decay >= 0 && std::isfinite(o.weight_decay) && std::isfinite(o.margin_weight), config, fn,
               "expected a finite weight_decay >= 0 and a finite margin_weight, got ", o.weight_decay, " and ",
               o.margin_weight);
    WEFT_CHECK(o.margin_delta >= 0 && std::isfinite(o.margin_delta), config, fn,
               "expected a finite margin_delta >= 0, got ", o.margin_delta);
    for (std::size_t i = 0; i < o.margin_matrix.size(); ++i)
      WEFT_CHECK(std::isfinite(o.margin_matrix[i]), config, fn, "expected finite margin_matrix entries, got ",
                 o.margin_matrix[i], " at ", i);
  }

  index_t sources() const { return o_.scheme == Scheme::fine ? p_ * m_ : p_; }
  index_t out_rows() const { return o_.scheme == Scheme::coarse ? 1 : m_; }

  void check_inputs(const Tensor<T>& G, const Tensor<T>* y, const std::vector<double>& levels, const Tensor<T>& X,
                    bool fitting, const char* fn) const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "quantile::Aggregator works on real tensors: use float or double");
    check_levels(levels, fn);
    WEFT_CHECK(G.defined() && G.rank() == 3 && G.dim(0) >= 1 && G.dim(1) >= 1, shape, fn,
               "expected base predictions of shape (n >= 1, p >= 1, m), got ", G.defined() ? G.shape() : Shape{});
    WEFT_CHECK(G.dim(2) == index_t(levels.size()), shape, fn, "expected ", levels.size(), " levels in G, got shape ", G.shape());
    WEFT_CHECK(fitting || G.dim(1) == p_, shape, fn, "expected ", p_, " base models as in fit(), got shape ", G.shape());
    WEFT_CHECK(G.all_finite(), value, fn, "expected finite base predictions, got NaN or Inf");
    if (y) detail::check_targets(*y, G.dim(0), fn);
    if (o_.local) {
      WEFT_CHECK(X.defined() && X.rank() == 2 && X.dim(0) == G.dim(0) && (fitting || X.dim(1) == d_), shape, fn,
                 "expected features of shape (", G.dim(0), ", ", fitting ? std::string("d") : std::to_string(d_),
                 ") for a local aggregator, got ", X.defined() ? X.shape() : Shape{});
      WEFT_CHECK(X.all_finite(), value, fn, "expected finite features, got NaN or Inf");
    }
  }

  void init_params() {
    const index_t S = sources(), R = out_rows();
    if (o_.local) {
      Rng rng(o_.seed);
      net_ = LocalWeightNet<T>(d_, o_.hidden, o_.layers, S * R, o_.dropout, rng);
      params_ = net_.parameters();
      if (!o_.normalize) {  // free weights start at the average through the last bias
        Tensor<T> b = net_.layers.back().bias.value();
        for (index_t r = 0; r < R; ++r)
          for (index_t s = 0; s < S; ++s) b.flat(r * S + s) = start_weight(s, r);
      }
      return;
    }
    Tensor<T> w(Shape{R, S});  // the softmax layout: one row per output row, sources last
    if (!o_.normalize)
      for (index_t r = 0; r < R; ++r)
        for (index_t s = 0; s < S; ++s) w(r, s) = start_weight(s, r);
    logits_ = Parameter<T>(w, "logits");
    params_ = {logits_};
  }
  T start_weight(index_t s, index_t r) const {
    if (o_.scheme != Scheme::fine) return T(1.0 / double(p_));
    return s % m_ == r ? T(1.0 / double(p_)) : T(0);
  }

  /// Weights as (S, R) (global) or (n, S, R) (local).
  Var<T> weight_var(Tape<T>& tape, const Tensor<T>& X, Rng* rng) const {
    const index_t S = sources(), R = out_rows();
    if (!o_.local) {
      Var<T> w = tape.param(logits_);
      if (o_.normalize) w = softmax(w);
      return transpose(w);
    }
    const index_t n = X.dim(0);
    Var<T> w = reshape(net_.forward(tape.constant(X), rng), Shape{n, R, S});
    if (o_.normalize) w = softmax(w);
    return transpose(w);
  }

  /// The aggregated output before the in-training transform.
  Var<T> combine(Tape<T>& tape, const Tensor<T>& G, const Tensor<T>& X, Rng* rng) const {
    const index_t n = G.dim(0);
    Var<T> g = tape.constant(G), out;
    if (o_.scheme == Scheme::average) {
      out = mean(g, 1);
    } else if (o_.scheme == Scheme::fine) {
      Var<T> w = weight_var(tape, X, rng);
      out = o_.local ? reshape(matmul(reshape(g, Shape{n, 1, p_ * m_}), w), Shape{n, m_})
                     : matmul(reshape(g, Shape{n, p_ * m_}), w);
    } else {
      out = sum(g * weight_var(tape, X, rng), 1);
    }
    return out;
  }
  Var<T> transform(const Var<T>& out) const {
    if (o_.train_transform == Monotonize::sort) return sort_levels(out);
    if (o_.train_transform == Monotonize::isotonic) return isotonic_levels(out);
    return out;
  }
  Var<T> forward(Tape<T>& tape, const Tensor<T>& G, const Tensor<T>& X, Rng* rng) const {
    return transform(combine(tape, G, X, rng));
  }

  /// Adam on rows `tr` for up to `steps` steps; with `va`, evaluates wis on it every eval_every
  /// steps, stops after `patience` steps without improvement and returns the best step count.
  index_t train(const Tensor<T>& G, const Tensor<T>& y, const Tensor<T>& X, const std::vector<index_t>& tr,
                const std::vector<index_t>* va, index_t steps) {
    nn::AdamOptions ao;
    ao.lr = o_.lr;
    ao.beta1 = o_.beta1;
    ao.beta2 = o_.beta2;
    ao.weight_decay = o_.weight_decay;
    nn::Adam<T> opt(params_, ao);
    Rng rng(o_.seed + 1);
    net_.train();
    const index_t ntr = index_t(tr.size());
    const bool full = o_.batch_size == 0 || o_.batch_size >= ntr;
    const Tensor<T> Gt = take(G, tr), yt = take(y, tr), Xt = o_.local ? take(X, tr) : Tensor<T>();
    Tensor<T> Gv, yv, Xv;
    if (va) {
      Gv = take(G, *va);
      yv = take(y, *va);
      if (o_.local) Xv = take(X, *va);
    }
    Tensor<T> delta;
    if (o_.margin_weight > 0 && o_.margin_matrix.empty()) delta = margin_single<T>(m_, o_.margin_delta);
    if (o_.margin_weight > 0 && !o_.margin_matrix.empty()) {
      delta = Tensor<T>(Shape{m_, m_});
      for (index_t i = 0; i < m_ * m_; ++i) delta.flat(i) = T(o_.margin_matrix[std::size_t(i)]);
    }
    std::vector<index_t> order(tr.size());
    for (index_t i = 0; i < ntr; ++i) order[std::size_t(i)] = i;
    index_t cursor = ntr, best_step = 0;
    double best = std::numeric_limits<double>::infinity();
    Tape<T> tape;
    for (index_t step = 1; step <= steps; ++step) {
      Tensor<T> Gb = Gt, yb = yt, Xb = Xt;
      if (!full) {
        if (cursor + o_.batch_size > ntr) {
          rng.shuffle(order.begin(), order.end());
          cursor = 0;
        }
        std::vector<index_t> rows(order.begin() + cursor, order.begin() + cursor + o_.batch_size);
        cursor += o_.batch_size;
        Gb = take(Gt, rows);
        yb = take(yt, rows);
        if (o_.local) Xb = take(Xt, rows);
      }
      opt.zero_grad();
      Var<T> raw = combine(tape, Gb, Xb, &rng);
      Var<T> loss = pinball_loss(transform(raw), yb, levels_);
      if (o_.margin_weight > 0) loss = loss + margin_penalty(raw, delta) * T(o_.margin_weight);
      tape.backward(loss);
      opt.step();
      history_.push_back(double(loss.item()));
      tape.reset();
      if (va && (step % o_.eval_every == 0 || step == steps)) {
        net_.eval();
        double v;
        {
          no_grad ng;
          v = wis(forward(tape, Gv, Xv, nullptr).value(), yv, levels_);
          tape.reset();
        }
        net_.train();
        if (v < best) {
          best = v;
          best_step = step;
        }
        if (step - best_step >= o_.patience) break;
      }
    }
    return va ? std::max<index_t>(best_step, 1) : steps;
  }

  static Tensor<T> take(const Tensor<T>& a, const std::vector<index_t>& rows) {
    const index_t w = a.numel() / a.dim(0);
    Tensor<T> out(a.shape().with(0, index_t(rows.size())));
    for (std::size_t r = 0; r < rows.size(); ++r)
      std::copy(a.data() + rows[r] * w, a.data() + (rows[r] + 1) * w, out.data() + index_t(r) * w);
    return out;
  }

  AggregatorOptions o_;
  index_t p_ = 0, m_ = 0, d_ = 0, best_steps_ = 0;
  std::vector<double> levels_;
  Parameter<T> logits_;
  mutable LocalWeightNet<T> net_;
  std::vector<Parameter<T>> params_;
  std::vector<double> history_;
};

}  // namespace quantile
WEFT_NAMESPACE_END
