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
// V5, digits accuracy: s = (64, 64, 10), alpha = 0 (untied after init), 10 epochs, hEP N = 2
// |beta| = 0.5 and exact-delta RBP.
//
// Statistics (issue 21): the test accuracy over seeds is heavy-tailed (a few initialisations
// train slowly under this recipe whatever the error vector, docs/equilibrium_propagation.md), so
// the rows assert the MEDIAN over seeds of each spec quantity against the spec's threshold, and
// for V4 the number of seeds on which lambda 3 beats lambda 0 (at least 80 % of them); the worst
// seed of each quantity is reported, not asserted. The bounds were checked on a calibration run
// of seeds 0..9 (--first-seed 0) before the asserted run of seeds 10..19 (the default; --quick:
// seeds 10..12). Seeds run in parallel (one per thread); each seed's run is single-threaded and
// deterministic. Writes the cosines per epoch to figure-data/ep_homeostasis.csv.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "common/report.hpp"
#include "weft/core/data.hpp"
#include "weft/core/parallel.hpp"
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

V4Run run_v4(const Digits& d, double lambda, int seed, std::ostringstream& series, std::ostringstream& log) {
  Rng rng(std::uint64_t(1000 + seed));
  ep::NetOptions no;
  no.activation = ep::Activation::dsilu;
  no.alpha_deg = 90;
  ep::DenseNet<double> net = ep::make_dense_net<double>({64, 32, 32, 10}, rng, no);
  ep::FitOptions o = recipe(8, std::uint64_t(seed));
  o.train.homeo_lambda = lambda;
  o.train.homeo_draws = 5;
  auto record = [&](index_t epoch) {
    const Alignment a = alignment(net, d.probe);
    const double acc = ep::evaluate(net, d.test.x, d.test.y, eval_relax()).accuracy;
    series << seed << ',' << lambda << ',' << epoch << ',' << a.cos[0] << ',' << a.cos[1] << ',' << a.sym << ','
           << acc << '\n';
  };
  record(0);
  ep::fit<double>(net, d.train.x, d.train.y, o, [&](const ep::EpochInfo& e) { record(e.epoch); });
  const Alignment a = alignment(net, d.probe);
  V4Run r;
  r.min_cos = *std::min_element(a.cos.begin(), a.cos.end());
  r.max_cos = *std::max_element(a.cos.begin(), a.cos.end());
  r.sym = a.sym;
  r.acc = ep::evaluate(net, d.test.x, d.test.y, eval_relax()).accuracy;
  char line[256];
  std::snprintf(line, sizeof line, "V4 seed %d lambda %g: layer cos %.3f %.3f, symmetry %.3f, test acc %.4f, angle %.1f deg\n",
                seed, lambda, a.cos[0], a.cos[1], a.sym, r.acc, ep::weight_angle_deg(net));
  log << line;
  return r;
}

double run_v5(const Digits& d, ep::Estimator est, int seed, std::ostringstream& log) {
  Rng rng(std::uint64_t(2000 + seed));
  ep::NetOptions no;
  no.activation = ep::Activation::dsilu;
  no.alpha_deg = 0;
  ep::DenseNet<double> net = ep::make_dense_net<double>({64, 64, 10}, rng, no);
  ep::FitOptions o = recipe(10, std::uint64_t(seed));
  o.train.estimator = est;
  ep::fit<double>(net, d.train.x, d.train.y, o);
  const double acc = ep::evaluate(net, d.test.x, d.test.y, eval_relax()).accuracy;
  char line[160];
  std::snprintf(line, sizeof line, "V5 seed %d %s: test acc %.4f, weight angle %.1f deg\n", seed,
                est == ep::Estimator::rbp ? "RBP" : "hEP N=2", acc, ep::weight_angle_deg(net));
  log << line;
  return acc;
}

/// Per seed: what run(seed, series, log) returns, the seed's figure series and log lines, or the
/// error that stopped it. Seeds run in parallel; output is written in seed order afterwards.
template <class Result>
struct SeedRuns {
  std::vector<Result> results;
  std::vector<std::string> series, logs, errors;
};

template <class Result, class Run>
SeedRuns<Result> run_seeds(const Args& args, Run run) {
  const std::size_t n = std::size_t(args.seeds);
  SeedRuns<Result> out;
  out.results.resize(n);
  out.series.resize(n);
  out.logs.resize(n);
  out.errors.resize(n);
  parallel_for(0, index_t(n), 1, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) {
      std::ostringstream series, log;
      try {  // an exception must not leave a parallel_for body
        out.results[std::size_t(i)] = run(args.first_seed + int(i), series, log);
      } catch (const std::exception& e) {
        out.errors[std::size_t(i)] = e.what();
      }
      out.series[std::size_t(i)] = series.str();
      out.logs[std::size_t(i)] = log.str();
    }
  });
  bool failed = false;
  for (std::size_t i = 0; i < n; ++i) {
    std::fputs(out.logs[i].c_str(), stderr);
    if (!out.errors[i].empty()) {
      std::fprintf(stderr, "seed %d failed: %s\n", args.first_seed + int(i), out.errors[i].c_str());
      failed = true;
    }
  }
  if (failed) std::exit(1);
  return out;
}

struct V4Pair {
  V4Run on, off;  // lambda 3, lambda 0
};
struct V5Pair {
  double hep = 0, rbp = 0;
};

template <class T, class F>
std::vector<double> column(const std::vector<T>& v, F f) {
  std::vector<double> c;
  for (const T& x : v) c.push_back(f(x));
  return c;
}

std::string fmt_bound(double b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", b);
  return buf;
}

/// An asserted row on the median over seeds, and a report row with the worst seed.
bool median_rows(const std::string& exp, const std::string& claim, const std::string& what,
                 const std::vector<double>& v, bool at_least, double bound, int seeds, double seconds) {
  const double med = median(v), worst = at_least ? min_of(v) : max_of(v);
  const std::string b = std::string(at_least ? ">= " : "<= ") + fmt_bound(bound);
  const bool ok = at_least ? med >= bound : med <= bound;
  emit(make_row(exp, claim, what + ", median over seeds", med, b, true, ok, seeds, seconds));
  emit(make_row(exp + "_worst", claim, what + ", worst seed (spec bound " + b + " per run)", worst, "", false, true,
                seeds, seconds));
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args(argc, argv, {10, 3, 10},  // seeds 10..19 (0..9 calibrated the bounds)
                  "holomorphic EP and Jacobian homeostasis on the digits (spec V4, V5)");
  const Digits d = load();
  const int S = args.seeds;
  bool ok = true;

  // V4
  Stopwatch t4;
  const auto v4 = run_seeds<V4Pair>(args, [&](int seed, std::ostringstream& series, std::ostringstream& log) {
    V4Pair p;
    p.on = run_v4(d, 3.0, seed, series, log);
    p.off = run_v4(d, 0.0, seed, series, log);
    return p;
  });
  const double s4 = t4.seconds();
  auto series = series_file("ep_homeostasis.csv", "seed,lambda,epoch,cos_layer1,cos_layer2,symmetry,test_accuracy");
  for (const std::string& s : v4.series) series << s;
  const auto& r4 = v4.results;
  const std::vector<double> on_acc = column(r4, [](const V4Pair& p) { return p.on.acc; });
  const std::vector<double> gap = column(r4, [](const V4Pair& p) { return p.on.acc - p.off.acc; });
  const int wins = int(std::count_if(gap.begin(), gap.end(), [](double g) { return g > 0; }));
  const int need = (4 * S) / 5;  // at least 80 % of the seeds
  const std::string c4 = "alpha=90 hEP N=2: homeostasis (lambda 3) aligns e with delta and trains";
  ok &= median_rows("ep/homeostasis_cos", c4, "min hidden-layer cos(delta, e)",
                    column(r4, [](const V4Pair& p) { return p.on.min_cos; }), true, 0.95, S, s4);
  ok &= median_rows("ep/homeostasis_sym", c4, "Jacobian symmetry s/(s+a)",
                    column(r4, [](const V4Pair& p) { return p.on.sym; }), true, 0.90, S, s4);
  ok &= median_rows("ep/homeostasis_acc", c4, "test accuracy", on_acc, true, 0.85, S, s4);
  ok &= emit(make_row("ep/homeostasis_wins", "homeostasis improves accuracy (proto +4..+13 points)",
                      "seeds on which lambda 3 beats lambda 0 in test accuracy", double(wins),
                      ">= " + std::to_string(need) + " of " + std::to_string(S), true, wins >= need, S, s4));
  emit(make_row("ep/homeostasis_gap", "homeostasis improves accuracy (proto +4..+13 points)",
                "test accuracy lambda 3 minus lambda 0, median over seeds", median(gap), "", false, true, S, s4));
  const std::string c0 = "alpha=90 hEP N=2 without homeostasis: e misaligned with delta";
  ok &= median_rows("ep/no_homeostasis_cos", c0, "max hidden-layer cos(delta, e)",
                    column(r4, [](const V4Pair& p) { return p.off.max_cos; }), false, 0.75, S, s4);
  ok &= median_rows("ep/no_homeostasis_sym", c0, "Jacobian symmetry s/(s+a)",
                    column(r4, [](const V4Pair& p) { return p.off.sym; }), false, 0.75, S, s4);

  // V5
  Stopwatch t5;
  const auto v5 = run_seeds<V5Pair>(args, [&](int seed, std::ostringstream&, std::ostringstream& log) {
    V5Pair p;
    p.hep = run_v5(d, ep::Estimator::hep, seed, log);
    p.rbp = run_v5(d, ep::Estimator::rbp, seed, log);
    return p;
  });
  const double s5 = t5.seconds();
  ok &= median_rows("ep/hep_digits", "64-64-10 untied, hEP N=2 beta 0.5, 10 epochs", "test accuracy",
                    column(v5.results, [](const V5Pair& p) { return p.hep; }), true, 0.92, S, s5);
  ok &= median_rows("ep/rbp_digits", "64-64-10 untied, exact-delta RBP, 10 epochs", "test accuracy",
                    column(v5.results, [](const V5Pair& p) { return p.rbp; }), true, 0.93, S, s5);
  return ok ? 0 : 1;
}
