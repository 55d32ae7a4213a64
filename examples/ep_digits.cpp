// examples/ep_digits.cpp - generalised holomorphic EP and Jacobian homeostasis on the 8x8 digits
// (spec equilibrium_propagation.md 10, V4 and V5; Laborieux & Zenke, ICLR 2024).
//
// Data: data/digits.csv, x = pixel / 16, row j is test iff j % 5 == 4 (1438 train / 359 test).
// Training (both experiments): dsilu, Adam (lr 0.01, betas .9/.999, eps 1e-8, no decay), cosine
// decay to 0 over all steps, batch 16 (drop last, reshuffled each epoch), free phase gamma 0.5
// with T1 = 150 updates from 0, nudged phases T2 = 60 from u0 (gamma 0.5), evaluation T1 = 150.
//
// V4, homeostasis restores alignment: s = (64, 32, 32, 10), alpha = 90 (independent feedback),
// hEP N = 2, |beta| = 0.5, 8 epochs, lambda in {0, 3}, M = 5 draws per sample. After training,
// on the first 64 test samples (relaxed with gamma 0.5 to 1e-12) the per-sample cosine of the
// exact delta and the exact e in each hidden layer, and the Jacobian symmetry s / (s + a).
// Asserted: lambda 3: min layer cosine >= 0.95, symmetry >= 0.90, test accuracy >= 0.85;
// lambda 0: max layer cosine <= 0.75, symmetry <= 0.75 (worst seed). The accuracy gap is
// reported. Writes the cosines per epoch to figure-data/ep_homeostasis.csv.
// V5, digits accuracy: s = (64, 64, 10), alpha = 0 (untied after init), 10 epochs: hEP N = 2
// |beta| = 0.5 reaches test accuracy >= 0.92 and exact-delta RBP >= 0.93 (worst seed).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "common/report.hpp"
#include "weft/core/data.hpp"
#include "weft/ep.hpp"

using namespace weft;
using namespace weft_examples;

namespace {

struct Digits {
  Dataset<double> train, test, probe;  // probe: the first 64 test samples
};

Digits load() {
  Dataset<double> all = load_digits<double>();
  all.x.array() /= 16.0;
  auto parts = split_mod(all, 5, 4);
  Digits d{std::move(parts.first), std::move(parts.second), {}};
  std::vector<index_t> first(64);
  for (index_t i = 0; i < 64; ++i) first[std::size_t(i)] = i;
  d.probe = subset(d.test, first);
  return d;
}

ep::FitOptions recipe(index_t epochs, std::uint64_t seed) {
  ep::FitOptions o;
  o.epochs = epochs;
  o.batch = 16;
  o.optimizer = ep::OptimizerKind::adam;
  o.lr = 0.01;
  o.seed = seed;
  o.train.free_phase.gamma = 0.5;
  o.train.free_phase.max_iters = 150;
  o.train.hep.N = 2;
  o.train.hep.abs_beta = 0.5;
  o.train.hep.relax.gamma = 0.5;
  o.train.hep.relax.max_iters = 60;
  o.train.rbp.method = ep::RbpMethod::dense;
  return o;
}

ep::RelaxOptions eval_relax() {
  ep::RelaxOptions r;
  r.gamma = 0.5;
  r.max_iters = 150;
  return r;
}

struct Alignment {
  std::vector<double> cos;  // per hidden layer
  double sym = 0;
};

/// cos(delta_l, e_l) per hidden layer on the probe set (exact delta and e by dense LU).
Alignment alignment(const ep::DenseNet<double>& net, const Dataset<double>& probe) {
  ep::RelaxOptions r;
  r.gamma = 0.5;
  r.tol = 1e-12;
  r.max_iters = 2000;
  ep::State<double> u0;
  ep::free_phase(net, probe.x, u0, r);
  const ep::ExactErrors<double> ex = ep::exact_errors(net, probe.x, probe.y, u0);
  std::vector<double> c = ep::cosine_per_layer(ex.delta, ex.e);
  c.pop_back();  // the output layer is not hidden
  return {c, ep::jacobian_symmetry(net)};
}

struct V4Run {
  double min_cos = 0, max_cos = 0, sym = 0, acc = 0;
};

V4Run run_v4(const Digits& d, double lambda, int seed, std::ofstream& series) {
  Rng rng(std::uint64_t(1000 + seed));
  ep::NetOptions no;
  no.activation = ep::Activation::dsilu;
  no.alpha_deg = 90;
  ep::DenseNet<double> net = ep::make_dense_net<double>({64, 32, 32, 10}, rng, no);
  ep::FitOptions o = recipe(8, std::uint64_t(seed));
  o.train.homeo_lambda = lambda;
  o.train.homeo_draws = 5;
  auto log = [&](index_t epoch) {
    const Alignment a = alignment(net, d.probe);
    const double acc = ep::evaluate(net, d.test.x, d.test.y, eval_relax()).accuracy;
    series << seed << ',' << lambda << ',' << epoch << ',' << a.cos[0] << ',' << a.cos[1] << ',' << a.sym << ','
           << acc << '\n';
  };
  log(0);
  ep::fit<double>(net, d.train.x, d.train.y, o, [&](const ep::EpochInfo& e) { log(e.epoch); });
  const Alignment a = alignment(net, d.probe);
  V4Run r;
  r.min_cos = *std::min_element(a.cos.begin(), a.cos.end());
  r.max_cos = *std::max_element(a.cos.begin(), a.cos.end());
  r.sym = a.sym;
  r.acc = ep::evaluate(net, d.test.x, d.test.y, eval_relax()).accuracy;
  std::fprintf(stderr, "V4 seed %d lambda %g: layer cos %.3f %.3f, symmetry %.3f, test acc %.4f, angle %.1f deg\n",
               seed, lambda, a.cos[0], a.cos[1], a.sym, r.acc, ep::weight_angle_deg(net));
  return r;
}

double run_v5(const Digits& d, ep::Estimator est, int seed) {
  Rng rng(std::uint64_t(2000 + seed));
  ep::NetOptions no;
  no.activation = ep::Activation::dsilu;
  no.alpha_deg = 0;
  ep::DenseNet<double> net = ep::make_dense_net<double>({64, 64, 10}, rng, no);
  ep::FitOptions o = recipe(10, std::uint64_t(seed));
  o.train.estimator = est;
  ep::fit<double>(net, d.train.x, d.train.y, o);
  const double acc = ep::evaluate(net, d.test.x, d.test.y, eval_relax()).accuracy;
  std::fprintf(stderr, "V5 seed %d %s: test acc %.4f, weight angle %.1f deg\n", seed,
               est == ep::Estimator::rbp ? "RBP" : "hEP N=2", acc, ep::weight_angle_deg(net));
  return acc;
}

Row asserted_row(const std::string& exp, const std::string& claim, const std::string& metric, double value,
                 const std::string& bound, bool holds, int seeds, double seconds) {
  return make_row(exp, claim, metric, value, bound, true, holds, seeds, seconds);
}

}  // namespace

int main(int argc, char** argv) {
  const Args args(argc, argv, 3);
  const Digits d = load();
  bool ok = true;

  // V4
  Stopwatch t4;
  auto series = series_file("ep_homeostasis.csv", "seed,lambda,epoch,cos_layer1,cos_layer2,symmetry,test_accuracy");
  std::vector<V4Run> on, off;
  for (int s = 0; s < args.seeds; ++s) {
    on.push_back(run_v4(d, 3.0, s, series));
    off.push_back(run_v4(d, 0.0, s, series));
  }
  double on_cos = 1, on_sym = 1, on_acc = 1, off_cos = -1, off_sym = 0, gap = 0;
  for (int s = 0; s < args.seeds; ++s) {
    on_cos = std::min(on_cos, on[std::size_t(s)].min_cos);
    on_sym = std::min(on_sym, on[std::size_t(s)].sym);
    on_acc = std::min(on_acc, on[std::size_t(s)].acc);
    off_cos = std::max(off_cos, off[std::size_t(s)].max_cos);
    off_sym = std::max(off_sym, off[std::size_t(s)].sym);
    gap += (on[std::size_t(s)].acc - off[std::size_t(s)].acc) / args.seeds;
  }
  const double s4 = t4.seconds();
  const std::string c4 = "alpha=90 hEP N=2: homeostasis (lambda 3) aligns e with delta";
  ok &= emit(asserted_row("ep/homeostasis_cos", c4, "min hidden-layer cos(delta, e), worst seed", on_cos, ">= 0.95",
                          on_cos >= 0.95, args.seeds, s4));
  ok &= emit(asserted_row("ep/homeostasis_sym", c4, "Jacobian symmetry s/(s+a), worst seed", on_sym, ">= 0.90",
                          on_sym >= 0.90, args.seeds, s4));
  ok &= emit(asserted_row("ep/homeostasis_acc", c4, "test accuracy, worst seed", on_acc, ">= 0.85", on_acc >= 0.85,
                          args.seeds, s4));
  const std::string c0 = "alpha=90 hEP N=2 without homeostasis: e misaligned with delta";
  ok &= emit(asserted_row("ep/no_homeostasis_cos", c0, "max hidden-layer cos(delta, e), worst seed", off_cos, "<= 0.75",
                          off_cos <= 0.75, args.seeds, s4));
  ok &= emit(asserted_row("ep/no_homeostasis_sym", c0, "Jacobian symmetry s/(s+a), worst seed", off_sym, "<= 0.75",
                          off_sym <= 0.75, args.seeds, s4));
  emit(make_row("ep/homeostasis_gap", "homeostasis improves accuracy (proto +4..+13 points)",
                "test accuracy lambda 3 minus lambda 0, mean over seeds", gap, "", false, true, args.seeds, s4));

  // V5
  Stopwatch t5;
  std::vector<double> hep, rbp;
  for (int s = 0; s < args.seeds; ++s) {
    hep.push_back(run_v5(d, ep::Estimator::hep, s));
    rbp.push_back(run_v5(d, ep::Estimator::rbp, s));
  }
  const double s5 = t5.seconds();
  ok &= emit(asserted_row("ep/hep_digits", "64-64-10 untied, hEP N=2 beta 0.5, 10 epochs", "test accuracy, worst seed",
                          min_of(hep), ">= 0.92", min_of(hep) >= 0.92, args.seeds, s5));
  ok &= emit(asserted_row("ep/rbp_digits", "64-64-10 untied, exact-delta RBP, 10 epochs", "test accuracy, worst seed",
                          min_of(rbp), ">= 0.93", min_of(rbp) >= 0.93, args.seeds, s5));
  return ok ? 0 : 1;
}
