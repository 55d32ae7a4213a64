// examples/quantile_diabetes.cpp - quantile aggregation, monotonisation and conformal
// calibration on the diabetes data (442 x 10): the small-scale protocol of
// specs/quantile_aggregation.md, section 8, after Fakoor et al., "Flexible Model Aggregation
// for Quantile Regression", JMLR 2023.
//
// Per split (seed 1000 + s, s = 0..R-1, R = 50; --quick: 1): a random permutation gives 221
// training, 110 calibration and 111 test rows; X and y are standardised with the training mean
// and population sd. Levels 0.05, 0.10, ..., 0.95. Base models: linear quantile regression
// (exact), Gaussian linear, kNN (k = 25). Aggregators (average, global coarse, global medium:
// softmax logits from 0, full-batch Adam lr 0.05, 1500 steps; local medium: MLP H = 32, L = 2,
// Adam lr 1e-3, 1500 steps) are trained on 5-fold out-of-fold base predictions of the training
// rows; base models refit on all training rows give the calibration and test inputs. Then
// sort (and isotonic, compared), split conformal calibration (CQR) of medium + sort on the
// calibration rows, and a final sort.
// Asserted: A1 (sort/isotonic never increase S), A2, A3 (per split), A4 (mean ratio), A5-A7
// (means over splits; coverage is asserted only with >= 20 splits, as per-split coverage has an
// sd near 0.05). Everything else is reported. Writes figure-data/quantile_diabetes_coverage.csv
// (nominal vs empirical coverage before and after CQR, mean over splits).
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "common/report.hpp"
#include "weft/core/data.hpp"
#include "weft/core/io/csv.hpp"
#include "weft/core/parallel.hpp"
#include "weft/quantile.hpp"

using namespace weft;
namespace wq = weft::quantile;

namespace {

struct Data {
  Tensor<double> X, y;
};

Data load_diabetes() {
  CsvOptions ws;
  ws.whitespace = true;
  Data d{read_csv<double>(data_path("diabetes_data_raw.csv"), ws),
         read_csv<double>(data_path("diabetes_target.csv")).reshape({-1})};
  WEFT_CHECK(d.X.dim(0) == 442 && d.X.dim(1) == 10 && d.y.numel() == 442, io, "quantile_diabetes",
             "expected 442 x 10 features and 442 targets, got ", d.X.shape(), " and ", d.y.shape());
  return d;
}

/// Rows `idx` of X and y, standardised with the mean and population sd of rows `ref`.
struct Split {
  Tensor<double> Xtr, ytr, Xcal, ycal, Xte, yte;
};
Split make_split(const Data& d, std::uint64_t seed) {
  Rng rng(seed);
  const std::vector<index_t> perm = rng.permutation(442);
  const std::vector<index_t> tr(perm.begin(), perm.begin() + 221), cal(perm.begin() + 221, perm.begin() + 331),
      te(perm.begin() + 331, perm.end());
  const index_t d_ = d.X.dim(1);
  std::vector<double> mx(std::size_t(d_), 0.0), sx(std::size_t(d_), 0.0);
  double my = 0, sy = 0;
  for (index_t i : tr) {
    for (index_t j = 0; j < d_; ++j) mx[std::size_t(j)] += d.X(i, j) / 221.0;
    my += d.y(i) / 221.0;
  }
  for (index_t i : tr) {
    for (index_t j = 0; j < d_; ++j) sx[std::size_t(j)] += std::pow(d.X(i, j) - mx[std::size_t(j)], 2) / 221.0;
    sy += std::pow(d.y(i) - my, 2) / 221.0;
  }
  auto take = [&](const std::vector<index_t>& rows, Tensor<double>& X, Tensor<double>& y) {
    X = Tensor<double>(Shape{index_t(rows.size()), d_});
    y = Tensor<double>(Shape{index_t(rows.size())});
    for (std::size_t r = 0; r < rows.size(); ++r) {
      for (index_t j = 0; j < d_; ++j)
        X(index_t(r), j) = (d.X(rows[r], j) - mx[std::size_t(j)]) / std::sqrt(sx[std::size_t(j)]);
      y(index_t(r)) = (d.y(rows[r]) - my) / std::sqrt(sy);
    }
  };
  Split s;
  take(tr, s.Xtr, s.ytr);
  take(cal, s.Xcal, s.ycal);
  take(te, s.Xte, s.yte);
  return s;
}

/// Sort and isotonic rows never raise the row score: count violations (A1).
index_t theorem_violations(const Tensor<double>& Q, const Tensor<double>& y, const std::vector<double>& tau) {
  const Tensor<double> s0 = wq::row_scores(Q, y, tau);
  const Tensor<double> s1 = wq::row_scores(wq::monotonize(Q, wq::Monotonize::sort), y, tau);
  const Tensor<double> s2 = wq::row_scores(wq::monotonize(Q, wq::Monotonize::isotonic), y, tau);
  index_t bad = 0;
  for (index_t i = 0; i < Q.dim(0); ++i) {
    const double slack = 1e-12 * (1 + s0(i));
    bad += (s1(i) > s0(i) + slack) + (s2(i) > s0(i) + slack);
  }
  return bad;
}

enum Method { LinQR, GaussLin, Knn, Average, Coarse, Medium, MediumSort, MediumIso, LocalSort, Cqr, kMethods };
const char* kNames[kMethods] = {"LinQR",        "GaussLin",        "kNN (k = 25)",           "average",
                                "global coarse", "global medium",  "global medium + sort",   "global medium + isotonic",
                                "local medium (MLP) + sort",       "global medium + sort + CQR + sort"};

/// Everything one split contributes to the table.
struct SplitResult {
  double test_wis[kMethods] = {};
  double cov_before[9] = {}, cov_after[9] = {};
  double best_base_wis = 0, crossing = 0;
  index_t a1_bad = 0, a1_rows = 0;
  bool a2 = false, a3 = false, infinite = false;
};

SplitResult run_split(const Data& data, int s, const std::vector<double>& tau) {
  SplitResult res;
  const Split sp = make_split(data, 1000 + std::uint64_t(s));
  wq::ModelList<double> models;
  models.push_back(std::make_unique<wq::LinearQuantileRegression<double>>());
  models.push_back(std::make_unique<wq::GaussianLinear<double>>());
  models.push_back(std::make_unique<wq::KnnQuantile<double>>(25));
  const Tensor<double> Goof = wq::out_of_fold(models, sp.Xtr, sp.ytr, tau, wq::fold_assignment(221, 5, 7 + std::uint64_t(s)));
  wq::fit_all(models, sp.Xtr, sp.ytr, tau);
  const Tensor<double> Gcal = wq::stack_predictions(models, sp.Xcal), Gte = wq::stack_predictions(models, sp.Xte);

  wq::AggregatorOptions o;
  o.steps = 1500;
  o.lr = 0.05;
  o.scheme = wq::Scheme::average;
  wq::Aggregator<double> avg(o);
  o.scheme = wq::Scheme::coarse;
  wq::Aggregator<double> coarse(o);
  o.scheme = wq::Scheme::medium;
  wq::Aggregator<double> medium(o);
  o.local = true;
  o.lr = 1e-3;
  o.hidden = 32;
  o.layers = 2;
  o.seed = std::uint64_t(s);
  wq::Aggregator<double> local(o);
  avg.fit(Goof, sp.ytr, tau);
  coarse.fit(Goof, sp.ytr, tau);
  medium.fit(Goof, sp.ytr, tau);
  local.fit(Goof, sp.ytr, tau, sp.Xtr);

  // out-of-fold scores (A2, A3) and the base model with the best OOF wis (A4)
  double best_oof = 1e300;
  int best_j = 0;
  for (int j = 0; j < 3; ++j) {
    const double w = wq::wis(wq::base_predictions(Goof, j), sp.ytr, tau);
    if (w < best_oof) best_oof = w, best_j = j;
  }
  const double oof_avg = wq::wis(avg.predict(Goof), sp.ytr, tau);
  const double oof_coarse = wq::wis(coarse.predict(Goof), sp.ytr, tau);
  const double oof_medium = wq::wis(medium.predict(Goof), sp.ytr, tau);
  res.a2 = oof_coarse <= 1.005 * std::min(oof_avg, best_oof);
  res.a3 = oof_medium <= 1.001 * oof_coarse;

  // test predictions of every method
  Tensor<double> Q[kMethods];
  for (int j = 0; j < 3; ++j) Q[j] = wq::base_predictions(Gte, j);
  Q[Average] = avg.predict(Gte);
  Q[Coarse] = coarse.predict(Gte);
  Q[Medium] = medium.predict(Gte);
  Q[MediumSort] = wq::monotonize(Q[Medium], wq::Monotonize::sort);
  Q[MediumIso] = wq::monotonize(Q[Medium], wq::Monotonize::isotonic);
  const Tensor<double> Qlocal = local.predict(Gte, sp.Xte);
  Q[LocalSort] = wq::monotonize(Qlocal, wq::Monotonize::sort);
  for (int k : {int(LinQR), int(GaussLin), int(Knn), int(Average), int(Coarse), int(Medium)}) {
    res.a1_bad += theorem_violations(Q[k], sp.yte, tau);
    res.a1_rows += 2 * Q[k].dim(0);
  }
  res.a1_bad += theorem_violations(Qlocal, sp.yte, tau);
  res.a1_rows += 2 * Qlocal.dim(0);
  res.crossing = wq::crossing_fraction(Q[LinQR]);

  // conformal calibration of medium + sort on the calibration rows, then sort
  wq::ConformalCalibrator<double> cqr;
  cqr.fit(wq::monotonize(medium.predict(Gcal), wq::Monotonize::sort), sp.ycal, tau);
  res.infinite = cqr.infinite();
  Q[Cqr] = cqr.apply(Q[MediumSort]);
  for (int k = 0; k < kMethods; ++k) res.test_wis[k] = wq::wis(Q[k], sp.yte, tau);
  res.best_base_wis = res.test_wis[best_j];
  for (index_t k = 0; k < 9; ++k) {
    res.cov_before[k] = wq::coverage(Q[MediumSort], sp.yte, tau, tau[std::size_t(k)]);
    res.cov_after[k] = wq::coverage(Q[Cqr], sp.yte, tau, tau[std::size_t(k)]);
  }
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace weft_examples;
  const Args args(argc, argv, {50}, "quantile aggregation and conformal calibration on the diabetes data");
  const int R = args.seeds;
  Stopwatch clock;
  const Data data = load_diabetes();
  const std::vector<double> tau = wq::even_levels(19);
  const index_t npairs = 9;

  // splits are independent: two halves run on two threads (each split's arithmetic is the
  // same as in a one-thread run, so the table does not depend on the thread count)
  std::vector<SplitResult> results(static_cast<std::size_t>(R));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(R));
  parallel_for(0, R, 1, [&](index_t lo, index_t hi) {
    for (index_t s = lo; s < hi; ++s) {
      try {
        results[std::size_t(s)] = run_split(data, int(s), tau);
      } catch (...) {
        errors[std::size_t(s)] = std::current_exception();
      }
    }
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);

  std::vector<double> test_wis[kMethods];
  std::vector<double> cov_before[npairs], cov_after[npairs], rel_change, ratio_num, ratio_den, crossing;
  index_t a1_bad = 0, a1_rows = 0, a2_ok = 0, a3_ok = 0, infinite = 0;
  for (const SplitResult& r : results) {
    for (int k = 0; k < kMethods; ++k) test_wis[k].push_back(r.test_wis[k]);
    for (index_t k = 0; k < npairs; ++k) {
      cov_before[k].push_back(r.cov_before[k]);
      cov_after[k].push_back(r.cov_after[k]);
    }
    rel_change.push_back((r.test_wis[Cqr] - r.test_wis[MediumSort]) / r.test_wis[MediumSort]);
    ratio_num.push_back(r.test_wis[MediumSort]);
    ratio_den.push_back(r.best_base_wis);
    crossing.push_back(r.crossing);
    a1_bad += r.a1_bad;
    a1_rows += r.a1_rows;
    a2_ok += r.a2;
    a3_ok += r.a3;
    infinite += r.infinite;
  }
  const double secs = clock.seconds();

  bool ok = true;
  auto row = [&](const std::string& id, const std::string& claim, const std::string& metric, double value,
                 const std::string& bound, bool asserted, bool holds) {
    ok = emit(make_row("quantile/diabetes" + id, claim, metric, value, bound, asserted, holds, R, secs)) && ok;
  };
  const std::string splits = std::to_string(R);
  row(" A1", "sort and isotonic never increase the pinball score of a row (theorem)",
      "violations among " + std::to_string(a1_rows) + " sorted/isotonic test rows (7 methods x splits)", double(a1_bad),
      "= 0", true, a1_bad == 0);
  row(" A2", "global coarse aggregation fits OOF no worse than the average and every base model",
      "splits with OOF wis(coarse) <= 1.005 min(average, LinQR, GaussLin, kNN)", double(a2_ok), "= " + splits, true,
      a2_ok == R);
  row(" A3", "per-level (medium) weights fit OOF no worse than coarse ones",
      "splits with OOF wis(medium) <= 1.001 OOF wis(coarse)", double(a3_ok), "= " + splits, true, a3_ok == R);
  const double ratio = mean(ratio_num) / mean(ratio_den);
  row(" A4", "aggregation (medium + sort) is no worse than the base model with the best OOF wis",
      "mean test wis(medium + sort) / mean test wis(best-OOF base) (spec run 0.986)", ratio, "<= 1.01", true,
      ratio <= 1.01);
  const bool enough = R >= 20;
  const double c90 = mean(cov_after[0]), c80 = mean(cov_after[1]);
  const std::string note = enough ? "" : " (asserted with >= 20 splits)";
  row(" A5", "CQR brings 90% intervals to nominal coverage" + note, "test coverage of [q.05, q.95] after CQR, mean over splits",
      c90, "in [0.87, 0.93]", enough, c90 >= 0.87 && c90 <= 0.93);
  row(" A6", "CQR brings 80% intervals to nominal coverage" + note, "test coverage of [q.10, q.90] after CQR, mean over splits",
      c80, "in [0.76, 0.84]", enough, c80 >= 0.76 && c80 <= 0.84);
  std::vector<double> abs_change;
  for (double v : rel_change) abs_change.push_back(std::abs(v));
  row(" A7", "conformal calibration costs little WIS", "mean over splits of abs(wis(CQR) - wis(sorted)) / wis(sorted)",
      mean(abs_change), "<= 0.03", true, mean(abs_change) <= 0.03);
  row(" CQR change", "signed WIS change from CQR (spec run +0.3%)", "mean of (wis(CQR) - wis(sorted)) / wis(sorted)",
      mean(rel_change), "", false, true);
  row(" raw 90%", "coverage before calibration (spec run 0.892-0.897)", "coverage of [q.05, q.95], medium + sort",
      mean(cov_before[0]), "", false, true);
  row(" raw 80%", "coverage before calibration (spec run 0.792-0.798)", "coverage of [q.10, q.90], medium + sort",
      mean(cov_before[1]), "", false, true);
  row(" crossing", "linear QR predictions cross", "share of LinQR test rows with a crossing", mean(crossing), "", false, true);
  row(" infinite", "calibration set large enough for every level", "splits with an infinite CQR interval",
      double(infinite), "", false, true);
  const char* ref[kMethods] = {"0.220", "0.217", "0.228", "0.2145", "0.2155", "0.2150", "0.2149", "-", "-", "0.216 / 0.215"};
  for (int k = 0; k < kMethods; ++k)
    row(" wis", std::string("test wis (standardised y), spec run ") + ref[k], kNames[k], mean(test_wis[k]), "", false, true);

  auto f = series_file("quantile_diabetes_coverage.csv", "nominal,before,after,before_sd,after_sd,splits");
  for (index_t k = npairs - 1; k >= 0; --k) {
    auto sd = [](const std::vector<double>& v) {
      const double mu = mean(v);
      double s = 0;
      for (double x : v) s += (x - mu) * (x - mu);
      return v.size() > 1 ? std::sqrt(s / double(v.size() - 1)) : 0.0;
    };
    f << 1 - 2 * tau[std::size_t(k)] << ',' << mean(cov_before[k]) << ',' << mean(cov_after[k]) << ','
      << sd(cov_before[k]) << ',' << sd(cov_after[k]) << ',' << R << '\n';
  }
  return ok ? 0 : 1;
}
