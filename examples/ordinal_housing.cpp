// examples/ordinal_housing.cpp - the proportional-odds baseline checked against R on real data:
// MASS::housing (Copenhagen housing satisfaction, 72 cells with frequency weights, 1681
// respondents), Sat ~ Infl + Type + Cont. R 4.2 / MASS 7.3-58 polr gives residual deviance
// 3479.149 and the coefficients quoted below (../shared/data/README.md); asserted: weft's
// deviance within 5e-4 (R prints 3 decimals), every coefficient and cut point within 1e-5, and
// the standard errors of polr(Hess = TRUE) within 1e-6 relative (polr's finite-difference
// Hessian is good to ~6e-8; tests/ordinal/inference_test.cpp checks the whole covariance).
// Also printed (report only): the unpenalised non-parallel fit (VGAM's cumulative(parallel =
// FALSE) deviance 3470.579) and PRESTO with 5-fold CV on the Brier score.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "common/report.hpp"
#include "weft/ordinal/baselines.hpp"
#include "weft/ordinal/datasets.hpp"
#include "weft/ordinal/presto.hpp"

using namespace weft;

namespace {
weft_examples::Row row(const std::string& claim, const std::string& metric, double value, const std::string& bound,
                       bool asserted, bool holds, double seconds) {
  return weft_examples::make_row("ordinal/housing_polr", claim, metric, value, bound, asserted, holds, 1, seconds);
}
}  // namespace

int main(int argc, char** argv) {
  const weft_examples::Args args(argc, argv, {0}, "proportional odds and PRESTO on the MASS housing data");
  (void)args;
  weft_examples::Stopwatch sw;
  const auto h = ordinal::load_housing<double>();
  const auto po = ordinal::fit_proportional_odds(h.x, h.y, {}, h.weights);
  const double t = sw.seconds();
  // polr reports c = -beta (logit P(y <= k) = zeta_k - x^T c) and zeta = alpha
  const double c[6] = {0.5663937, 1.2888191, -0.5723501, -0.3661866, -1.0910149, 0.3602841};
  const double zeta[2] = {-0.4961353, 0.6907083};
  double worst = 0;
  for (index_t j = 0; j < 6; ++j) {
    worst = std::max(worst, std::abs(-po.model.coef(j, 0) - c[j]));
    std::printf("  %-14s weft %+.7f  polr %+.7f\n", h.feature_names[std::size_t(j)].c_str(), -po.model.coef(j, 0), c[j]);
  }
  for (index_t k = 0; k < 2; ++k) {
    worst = std::max(worst, std::abs(po.model.intercepts(k) - zeta[k]));
    std::printf("  zeta_%d         weft %+.7f  polr %+.7f\n", int(k), po.model.intercepts(k), zeta[k]);
  }
  bool ok = true;
  std::printf("  deviance       weft %.6f  polr 3479.149\n", po.deviance);
  ok = weft_examples::emit(row("proportional-odds fit equals R's polr: residual deviance 3479.149",
                               "weft deviance - 3479.149", po.deviance - 3479.149, "abs <= 5e-4", true,
                               po.converged && std::abs(po.deviance - 3479.149) <= 5e-4, t)) && ok;
  ok = weft_examples::emit(row("... and every coefficient and cut point of polr", "max abs difference to polr", worst, "<= 1e-5",
                               true, worst <= 1e-5, t)) && ok;
  // polr(..., Hess = TRUE, control = list(reltol = 1e-14)) standard errors (R 4.2.2, MASS 7.3-58.2),
  // same order as weft's inference: coefficients, then cut points
  const double se[8] = {0.1046527840804, 0.1271561472271, 0.1192380114855, 0.155173335895,
                        0.1514860220073, 0.09553579745141, 0.1248472445974, 0.1254719390318};
  double se_worst = po.inference.status == ordinal::InferenceStatus::ok ? 0.0 : 1.0;
  for (index_t i = 0; i < 8 && po.inference.status == ordinal::InferenceStatus::ok; ++i)
    se_worst = std::max(se_worst, std::abs(po.inference.std_errors(i) / se[i] - 1));
  ok = weft_examples::emit(row("... and polr's standard errors (Hess = TRUE), on the original scale",
                               "max relative SE difference to polr", se_worst, "<= 1e-6", true, se_worst <= 1e-6, t)) && ok;
  weft_examples::Stopwatch sw2;
  const auto np = ordinal::fit_presto(h.x, h.y, 0.0, {}, h.weights);
  ok = weft_examples::emit(row("non-parallel MLE (PRESTO, lambda = 0) has VGAM's deviance 3470.579",
                               "weft deviance - 3470.579", 2 * 1681 * np.nll - 3470.579, "", false, true, sw2.seconds())) && ok;
  weft_examples::Stopwatch sw3;
  const auto cv = ordinal::presto(h.x, h.y, {}, h.weights);
  ok = weft_examples::emit(row("PRESTO lambda* by 5-fold CV (Brier); 1 = proportional odds chosen", "lambda*/lambda_max",
                               cv.lambda_star / cv.lambda_max, "", false, true, sw3.seconds())) && ok;
  return ok ? 0 : 1;
}
