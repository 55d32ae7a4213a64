// weft/ep/train.hpp - the training recipe (spec 6): per batch, free phase -> error estimator ->
// weight gradients (+ lambda grad L_homeo) -> optimiser step; evaluation; and a small fit loop
// with the recipe's optimisers and cosine decay.
//
//   train_step(net, opt, X, y, options, rng)   one batch; returns loss/accuracy at the free
//                                              state (before the update) and the relax reports
//   evaluate(net, X, y, relax)                 free phase from 0, then the readout; a sample whose
//                                              free phase diverges counts as misclassified
//   fit(net, X, y, fit_options, on_epoch)      epochs of shuffled batches (drop last), SGD with
//                                              momentum and coupled L2 / Adam / AdamW, the learning
//                                              rate decayed to 0 over all steps by a cosine
// Estimators: hep (HepOptions: N = 0 complex step "true e", 1 one-sided, >= 2 Cauchy), rbp
// (exact delta: RBP through implicit differentiation), online (continuous-time, no free phase).
// y is labels or real targets (targets.hpp); with real targets accuracies are NaN.
// Homeostasis: lambda times the M-draw estimate of the gradient, or (homeo_expected) its exact
// expectation 2 (B_l - W_l^T) / n, 2 (W_l - B_l^T) / n.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "weft/ep/estimators.hpp"
#include "weft/ep/gradients.hpp"
#include "weft/ep/homeostasis.hpp"
#include "weft/ep/rbp.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/schedule.hpp"

WEFT_NAMESPACE_BEGIN
namespace ep {

enum class Estimator { hep, rbp, online };

struct TrainOptions {
  Estimator estimator = Estimator::hep;
  RelaxOptions free_phase;   ///< T1 (default 150 updates, gamma 1)
  HepOptions hep;            ///< N, |beta|, the nudged phases (T2)
  RbpOptions rbp;            ///< the RBP loop (T2)
  OnlineOptions online;      ///< the online estimator
  double homeo_lambda = 0;   ///< lambda of Jacobian homeostasis (0 = off)
  index_t homeo_draws = 5;   ///< M draws per sample
  bool homeo_expected = false;  ///< true: the exact expectation of the gradient instead of draws
};

struct StepStats {
  double loss = 0, accuracy = 0;  ///< readout at the free state, before the update
  double homeo_loss = 0;          ///< estimate of L_homeo (when lambda > 0; exact with homeo_expected)
  RelaxReport free, nudged;       ///< the free phase and the estimator's relaxations
};

namespace detail {
inline void check_free(const RelaxReport& r, const char* fn) {
  WEFT_CHECK(r.ok(), value, fn, "expected the free phase to stay finite, got ", r.diverged, " of ", r.columns,
             " samples diverging; lower gamma or the learning rate");
}
}  // namespace detail

/// One training step on the batch (X, y). Gradients are zeroed, then accumulated, then opt steps.
template <class Real>
StepStats train_step(DenseNet<Real>& net, nn::Optimizer<Real>& opt, const Tensor<Real>& X, const TargetsArg<Real>& y,
                     const TrainOptions& o, Rng& rng) {
  const char* fn = "ep::train_step";
  detail::check_net(net, fn);
  detail::check_batch(net, X, y, fn);
  WEFT_CHECK(o.homeo_lambda >= 0 && std::isfinite(o.homeo_lambda) && o.homeo_draws >= 1, value, fn,
             "expected lambda >= 0 and homeo_draws >= 1, got ", o.homeo_lambda, " and ", o.homeo_draws);
  StepStats st;
  opt.zero_grad();
  ReadoutResult<Real> ro;
  if (o.estimator == Estimator::online) {
    OnlineEstimate<Real> est = online_hep(net, X, y, o.online);
    st.nudged = est.report;
    ro = accumulate_gradients(net, X, y, est.u_mean, est.e);
  } else {
    State<Real> u0;
    st.free = free_phase(net, X, u0, o.free_phase);
    detail::check_free(st.free, fn);
    if (o.estimator == Estimator::hep) {
      ErrorEstimate<Real> est = hep_error(net, X, y, u0, o.hep);
      st.nudged = est.report;
      ro = accumulate_gradients(net, X, y, u0, est.e);
    } else {
      RbpResult<Real> r = rbp_error(net, X, y, u0, o.rbp);
      WEFT_CHECK(r.diverged == 0, value, fn, "expected the RBP iteration to stay finite, got ", r.diverged,
                 " samples diverging");
      st.nudged.iterations = r.iterations;
      st.nudged.max_residual = r.max_residual;
      ro = accumulate_gradients(net, X, y, u0, r.delta);
    }
  }
  st.loss = ro.loss;
  st.accuracy = ro.accuracy;
  if (o.homeo_lambda > 0)
    st.homeo_loss = o.homeo_expected ? add_expected_homeostasis_gradient(net, o.homeo_lambda)
                                     : add_homeostasis_gradient(net, X.dim(0) * o.homeo_draws, o.homeo_lambda, rng);
  opt.step();
  return st;
}

struct EvalStats {
  double loss = 0, accuracy = 0;  ///< over the samples whose free phase stayed finite / over all
                                  ///< (accuracy NaN with real targets)
  RelaxReport report;
};

/// Free phase from 0 with `relax`, then the readout. Diverged samples count as errors.
template <class Real>
EvalStats evaluate(const DenseNet<Real>& net, const Tensor<Real>& X, const TargetsArg<Real>& y,
                   const RelaxOptions& relax = {}) {
  const char* fn = "ep::evaluate";
  detail::check_net(net, fn);
  detail::check_batch(net, X, y, fn);
  State<Real> u0;
  EvalStats ev;
  ev.report = free_phase(net, X, u0, relax);
  const index_t batch = X.dim(0);
  for (index_t b = 0; b < batch; ++b)
    if (ev.report.column_diverged[std::size_t(b)])
      for (auto& t : u0.layers) t[b].set_zero();
  const ReadoutResult<Real> ro = readout(net, u0, y);
  double correct = 0;
  for (index_t b = 0; b < batch && y.has_labels(); ++b)
    if (!ev.report.column_diverged[std::size_t(b)] && ro.predictions[std::size_t(b)] == y.label(b)) ++correct;
  ev.loss = ro.loss;
  ev.accuracy = y.has_labels() ? correct / double(batch) : std::nan("");
  return ev;
}

enum class OptimizerKind { sgd, adam, adamw };

struct FitOptions {
  index_t epochs = 10;
  index_t batch = 16;          ///< the last incomplete batch of an epoch is dropped
  OptimizerKind optimizer = OptimizerKind::adam;
  double lr = 0.01;
  double momentum = 0.9;       ///< SGD
  double weight_decay = 0.0;   ///< SGD/Adam: coupled L2; AdamW: decoupled
  bool cosine = true;          ///< cosine decay of the learning rate to 0 over all steps
  std::uint64_t seed = 0;      ///< batch order and homeostasis draws
  TrainOptions train;
};

struct EpochInfo {
  index_t epoch = 0;  ///< 1-based
  index_t steps = 0;  ///< optimiser steps so far
  double loss = 0, accuracy = 0, homeo_loss = 0;  ///< means over the epoch's batches
};

/// Builds the optimiser of FitOptions over net.parameters().
template <class Real>
std::unique_ptr<nn::Optimizer<Real>> make_optimizer(DenseNet<Real>& net, const FitOptions& o) {
  if (o.optimizer == OptimizerKind::sgd) {
    nn::SGDOptions so;
    so.lr = o.lr;
    so.momentum = o.momentum;
    so.weight_decay = o.weight_decay;
    return std::make_unique<nn::SGD<Real>>(net.parameters(), so);
  }
  nn::AdamOptions ao;
  ao.lr = o.lr;
  ao.weight_decay = o.weight_decay;
  return std::make_unique<nn::Adam<Real>>(net.parameters(), ao, o.optimizer == OptimizerKind::adamw);
}

/// Trains on (X, y) for o.epochs; calls on_epoch after each epoch (e.g. to evaluate).
template <class Real>
void fit(DenseNet<Real>& net, const Tensor<Real>& X, const TargetsArg<Real>& y, const FitOptions& o,
         const std::function<void(const EpochInfo&)>& on_epoch = {}) {
  const char* fn = "ep::fit";
  detail::check_net(net, fn);
  detail::check_batch(net, X, y, fn);
  WEFT_CHECK(o.epochs >= 1 && o.batch >= 1 && o.batch <= X.dim(0), value, fn,
             "expected epochs >= 1 and 1 <= batch <= ", X.dim(0), ", got ", o.epochs, " and ", o.batch);
  const index_t n = X.dim(0), per_epoch = n / o.batch, d = X.dim(1);
  std::unique_ptr<nn::Optimizer<Real>> opt = make_optimizer(net, o);
  const nn::Schedule sched = o.cosine ? nn::cosine_schedule(o.epochs * per_epoch) : nn::constant_schedule();
  Rng order(o.seed), draws = Rng(o.seed).stream(1);
  Tensor<Real> xb(Shape{o.batch, d}), tb;
  std::vector<int> yb(y.has_labels() ? std::size_t(o.batch) : 0);
  if (!y.has_labels()) tb = Tensor<Real>(Shape{o.batch, y.values()->dim(1)});
  const Targets<Real> target_batch = y.has_labels() ? Targets<Real>(yb) : Targets<Real>(tb);
  index_t step = 0;
  for (index_t ep = 1; ep <= o.epochs; ++ep) {
    const std::vector<index_t> perm = order.permutation(n);
    EpochInfo info;
    info.epoch = ep;
    for (index_t bi = 0; bi < per_epoch; ++bi) {
      for (index_t i = 0; i < o.batch; ++i) {
        const index_t r = perm[std::size_t(bi * o.batch + i)];
        xb.matrix().row(i) = X.matrix().row(r);
        if (y.has_labels()) yb[std::size_t(i)] = y.label(r);
        else tb.matrix().row(i) = y.values()->matrix().row(r);
      }
      opt->set_lr_factor(sched(step));
      const StepStats s = train_step(net, *opt, xb, target_batch, o.train, draws);
      ++step;
      info.loss += s.loss / double(per_epoch);
      info.accuracy += s.accuracy / double(per_epoch);
      info.homeo_loss += s.homeo_loss / double(per_epoch);
    }
    info.steps = step;
    if (on_epoch) on_epoch(info);
  }
}

}  // namespace ep
WEFT_NAMESPACE_END
