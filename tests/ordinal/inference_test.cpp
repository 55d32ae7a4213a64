// Tests of weft/ordinal/inference.hpp (through fit_proportional_odds): covariance, standard
// errors, z and p values on MASS::housing against R's polr; the Hessian the covariance inverts
// against differences of the gradient (and the gradient against differences of the NLL); the
// covariance on the original scale against the inverse of a finite-difference Hessian of the
// original-scale NLL; singular and unconverged fits; bad options.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ordinal/ordinal_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/ordinal/baselines.hpp"
#include "weft/ordinal/datasets.hpp"
#include "weft/ordinal/inference.hpp"

namespace weft_unit_ordinal_inference_test {

using namespace weft;
using ordinal::detail::Mat;
using ordinal::detail::Vec;

namespace {

// R 4.2.2 Patched (2022-11-10 r83330), MASS 7.3-58.2, on data/housing.csv (= MASS::housing):
//   library(MASS)
//   fit <- polr(Sat ~ Infl + Type + Cont, weights = Freq, data = housing, Hess = TRUE,
//               control = list(reltol = 1e-14))
//   coef(fit); fit$zeta; vcov(fit); summary(fit)$coefficients; 2 * pnorm(-abs(t))
// printed with sprintf("%.13g"). Order: InflMedium, InflHigh, TypeApartment, TypeAtrium,
// TypeTerrace, ContHigh, Low|Medium, Medium|High. polr's c = -beta, zeta = alpha.
// vcov.polr is ginv(Hessian) mapped from polr's internal cut-point coordinates (zeta_1,
// log(zeta_2 - zeta_1)) to zeta by the delta method; the Hessian is optim's central
// difference of the analytic gradient with ndeps = 1e-3. Refitting with ndeps = 1e-4 and 1e-5
// moves vcov by at most 5.6e-8 of max |vcov| (SEs by 2.9e-8 relative): R's own error.
const double polr_value[8] = {0.56639373259, 1.28881908889, -0.5723499825135, -0.36618635287,
                              -1.091014630394, 0.360283995956, -0.4961351086505, 0.6907082479604};
const double polr_se[8] = {0.1046527840804, 0.1271561472271, 0.1192380114855, 0.155173335895,
                           0.1514860220073, 0.09553579745141, 0.1248472445974, 0.1254719390318};
const double polr_t[8] = {5.41212293172, 10.13571987666, -4.800063129054, -2.359853584108,
                          -7.202081194933, 3.771193684119, -3.973937192209, 5.50488223335};
const double polr_p[8] = {6.228190603098e-08, 3.835380337479e-24, 1.58615623359e-06, 0.01828214912594,
                          5.930036031971e-13, 0.0001624685060438, 7.069421241861e-05, 3.694151292062e-08};
const double polr_vcov[8][8] = {
    {0.01095220521578, 0.005838869601518, -0.0001186327086346, 0.0003571197626266, 0.000119437256099,
     0.0005232714644799, 0.005775203807773, 0.006214154874713},
    {0.005838869601518, 0.01616868577765, -0.001118553384445, -0.0005789762386917, -0.0002820809716091,
     0.001469900382487, 0.00552750478547, 0.006480152306939},
    {-0.0001186327086346, -0.001118553384445, 0.01421770338303, 0.00962121646503, 0.009681480352431,
     -0.001360156264617, 0.00867554589963, 0.008249148176702},
    {0.0003571197626265, -0.0005789762386918, 0.00962121646503, 0.0240787641728, 0.009793331593478,
     -0.001994950952341, 0.008588095514602, 0.008323855066361},
    {0.000119437256099, -0.000282080971609, 0.009681480352431, 0.009793331593478, 0.0229480148636,
     -0.002086081151236, 0.008860680594082, 0.008043843564272},
    {0.0005232714644799, 0.001469900382487, -0.001360156264617, -0.001994950952341, -0.002086081151236,
     0.009127088594676, 0.004438238303849, 0.004703585919821},
    {0.005775203807773, 0.00552750478547, 0.00867554589963, 0.008588095514602, 0.008860680594082,
     0.004438238303849, 0.01558683448357, 0.01436782436697},
    {0.006214154874713, 0.006480152306939, 0.008249148176702, 0.008323855066361, 0.008043843564272,
     0.004703585919821, 0.01436782436697, 0.01574320748441}};

/// +1 for cut points (zeta = alpha), -1 for coefficients (c = -beta): weft's value = sign * polr's.
double polr_sign(index_t i) { return i < 6 ? -1.0 : 1.0; }

/// Mean NLL of the proportional-odds model at phi = (alpha, beta) on the problem's own scale.
double po_nll(const ordinal::detail::Problem<double>& P, const Vec<double>& phi) {
  ordinal::detail::Workspace<double> ws(P);
  return ordinal::detail::po_evaluate(P, phi, ws);
}

}  // namespace

TEST_CASE("ordinal/inference: proportional-odds covariance, SEs, z and p on MASS::housing match R's polr") {
  const auto h = ordinal::load_housing<double>();
  const auto po = ordinal::fit_proportional_odds(h.x, h.y, {}, h.weights);
  REQUIRE(po.converged);
  const auto& inf = po.inference;
  REQUIRE(inf.status == ordinal::InferenceStatus::ok);
  REQUIRE(inf.covariance.shape() == Shape{8, 8});
  MESSAGE("housing: smallest standardised Hessian eigenvalue ", inf.min_eigenvalue);
  CHECK(inf.min_eigenvalue > 1e-3);
  // Tolerances: polr's reference carries up to 5.6e-8 of max |vcov| from its finite-difference
  // Hessian (see above), and the two optima differ by ~1e-7 in the parameters (baselines_test),
  // which moves the Hessian by a few 1e-7 relative. 1e-6 leaves a factor of ~3 over both.
  double vmax = 0, dv = 0, dse = 0, dz = 0, dp = 0, dest = 0;
  for (index_t i = 0; i < 8; ++i)
    for (index_t j = 0; j < 8; ++j) vmax = std::max(vmax, std::abs(polr_vcov[i][j]));
  for (index_t i = 0; i < 8; ++i) {
    dest = std::max(dest, std::abs(inf.estimate(i) - polr_sign(i) * polr_value[i]));
    for (index_t j = 0; j < 8; ++j)
      dv = std::max(dv, std::abs(inf.covariance(i, j) - polr_sign(i) * polr_sign(j) * polr_vcov[i][j]) / vmax);
    dse = std::max(dse, std::abs(inf.std_errors(i) / polr_se[i] - 1));
    dz = std::max(dz, std::abs(inf.z_values(i) / (polr_sign(i) * polr_t[i]) - 1));
    dp = std::max(dp, std::abs(std::log(inf.p_values(i) / polr_p[i])));
  }
  MESSAGE("housing vs polr: estimate ", dest, " abs, vcov ", dv, " of max|vcov|, SE ", dse, " rel, z ", dz,
          " rel, log p ", dp);
  CHECK(dest <= 1e-7);
  CHECK(dv <= 1e-6);
  CHECK(dse <= 1e-6);
  CHECK(dz <= 1e-6);
  CHECK(dp <= 1e-4);  // d log p / dz ~ -z: z = 10.1 with 1e-6 relative error moves log p by ~1e-4
  // the estimate block repeats the model; the covariance is symmetric
  for (index_t j = 0; j < 6; ++j) CHECK(inf.estimate(j) == doctest::Approx(po.model.coef(j, 0)).epsilon(1e-14));
  CHECK(inf.estimate(6) == doctest::Approx(po.model.intercepts(0)).epsilon(1e-14));
  for (index_t i = 0; i < 8; ++i)
    for (index_t j = 0; j < i; ++j) CHECK(inf.covariance(i, j) == inf.covariance(j, i));
  // without standardisation the information is inverted on the original scale directly: the
  // Jacobian map must give the same covariance
  ordinal::BaselineOptions raw;
  raw.standardize = false;
  const auto pr = ordinal::fit_proportional_odds(h.x, h.y, raw, h.weights);
  REQUIRE(pr.inference.status == ordinal::InferenceStatus::ok);
  WEFT_CHECK_CLOSE(pr.inference.covariance, inf.covariance, 1e-9);
  // float: the same numbers to float's resolution of the Hessian terms
  const auto hf = ordinal::load_housing<float>();
  const auto pf = ordinal::fit_proportional_odds(hf.x, hf.y, ordinal::BaselineOptions{}, hf.weights);
  REQUIRE(pf.inference.status == ordinal::InferenceStatus::ok);
  for (index_t i = 0; i < 8; ++i) CHECK(std::abs(double(pf.inference.std_errors(i)) / polr_se[i] - 1) <= 1e-4);
}

TEST_CASE("ordinal/inference: the proportional-odds Hessian equals differences of the gradient (float64)") {
  const auto d = ordinal_test::random_ordinal(120, 3, 4, 71);
  Rng rng(5);
  std::vector<double> w;
  for (index_t i = 0; i < 120; ++i) w.push_back(rng.uniform(0.5, 3.0));
  for (bool standardize : {true, false}) {
    CAPTURE(standardize);
    const auto P = ordinal::detail::make_problem(d.x, d.y, w, {}, 0, standardize, true, "test");
    ordinal::detail::Workspace<double> ws(P);
    const Mat<double> X = P.X1.rightCols(P.p).cast<double>();
    Vec<double> phi(6), g, gp, gm;
    phi << -1.1, 0.4, 1.3, 0.3, -0.2, 0.1;  // alpha increasing, beta: a feasible point
    Mat<double> H, Hp, Hm;
    REQUIRE(std::isfinite(ordinal::detail::po_evaluate(P, phi, ws)));
    ordinal::detail::po_derivatives(P, ws, X, g, H);
    CHECK((H - H.transpose()).cwiseAbs().maxCoeff() <= 1e-15);
    const double h = 1e-6;
    double worst_h = 0, worst_g = 0;
    for (index_t j = 0; j < 6; ++j) {
      Vec<double> tp = phi, tm = phi;
      tp(j) += h;
      tm(j) -= h;
      const double fp = ordinal::detail::po_evaluate(P, tp, ws);
      ordinal::detail::po_derivatives(P, ws, X, gp, Hp);
      const double fm = ordinal::detail::po_evaluate(P, tm, ws);
      ordinal::detail::po_derivatives(P, ws, X, gm, Hm);
      const Vec<double> col = (gp - gm) / (2 * h);
      worst_h = std::max(worst_h, (col - H.col(j)).cwiseAbs().maxCoeff() / std::max(1e-3, H.col(j).cwiseAbs().maxCoeff()));
      worst_g = std::max(worst_g, std::abs((fp - fm) / (2 * h) - g(j)) / std::max(1e-3, std::abs(g(j))));
    }
    CHECK(worst_h <= 1e-6);
    CHECK(worst_g <= 1e-6);
  }
}

TEST_CASE("ordinal/inference: the covariance on the original scale inverts the finite-difference Hessian there") {
  // shifted, unequally scaled features so the Jacobian's -m/s terms matter
  auto d = ordinal_test::random_ordinal(300, 3, 4, 72);
  for (index_t i = 0; i < 300; ++i)
    for (index_t j = 0; j < 3; ++j) d.x(i, j) += 5.0 * double(j + 1);
  const auto po = ordinal::fit_proportional_odds(d.x, d.y);
  REQUIRE(po.inference.status == ordinal::InferenceStatus::ok);
  // second differences of the summed NLL in (alpha, beta) on the raw scale: no weft Hessian used
  const auto P = ordinal::detail::make_problem(d.x, d.y, {}, {}, 0, false, true, "test");
  Vec<double> phi(6);
  for (index_t k = 0; k < 3; ++k) phi(k) = po.model.intercepts(k);
  for (index_t j = 0; j < 3; ++j) phi(3 + j) = po.model.coef(j, 0);
  const double h = 1e-4, W = P.total_weight;
  Mat<double> H(6, 6);
  for (index_t a = 0; a < 6; ++a)
    for (index_t b = 0; b < 6; ++b) {
      auto f = [&](double sa, double sb) {
        Vec<double> t = phi;
        t(a) += sa * h;
        t(b) += sb * h;
        return W * po_nll(P, t);
      };
      H(a, b) = (f(1, 1) - f(1, -1) - f(-1, 1) + f(-1, -1)) / (4 * h * h);
    }
  // compare precisions, H against the inverse of weft's covariance: inverting H instead would
  // multiply its ~1e-7 relative error by the raw-scale condition number (shifted features)
  Mat<double> C(6, 6);
  auto pos = [](index_t i) { return i < 3 ? i + 3 : i - 3; };  // weft's (beta, alpha) -> (alpha, beta)
  for (index_t i = 0; i < 6; ++i)
    for (index_t j = 0; j < 6; ++j) C(pos(i), pos(j)) = po.inference.covariance(i, j);
  const Mat<double> Hw = C.inverse();
  const double worst = (Hw - H).cwiseAbs().maxCoeff() / H.cwiseAbs().maxCoeff();
  MESSAGE("inverse covariance vs finite-difference Hessian: ", worst, " of max |H|");
  CHECK(worst <= 1e-6);  // h^2 truncation (x up to ~25: ~1e-7) and rounding eps W f / h^2 (~1e-9 of |H|)
}

TEST_CASE("ordinal/inference: singular information and unconverged fits give NaN and a status, not numbers") {
  const auto d = ordinal_test::random_ordinal(150, 2, 3, 73);
  auto all_nan = [](const ordinal::Inference<double>& inf) {
    bool nan = true;
    for (index_t i = 0; i < inf.std_errors.numel(); ++i)
      nan = nan && std::isnan(inf.std_errors(i)) && std::isnan(inf.z_values(i)) && std::isnan(inf.p_values(i));
    for (index_t i = 0; i < inf.covariance.numel(); ++i) nan = nan && std::isnan(inf.covariance.flat(i));
    return nan;
  };
  // a duplicated feature: beta_0 + beta_2 is identified, not each
  Tensor<double> dup(Shape{150, 3});
  for (index_t i = 0; i < 150; ++i) {
    dup(i, 0) = d.x(i, 0);
    dup(i, 1) = d.x(i, 1);
    dup(i, 2) = d.x(i, 0);
  }
  const auto fd = ordinal::fit_proportional_odds(dup, d.y);
  CHECK(fd.inference.status == ordinal::InferenceStatus::singular);
  CHECK(fd.inference.min_eigenvalue <= 1e-8);
  CHECK(all_nan(fd.inference));
  CHECK(fd.inference.estimate.all_finite());
  // a constant feature: its column is 0 after centring
  Tensor<double> cst = d.x.clone();
  for (index_t i = 0; i < 150; ++i) cst(i, 1) = 2.5;
  CHECK(ordinal::fit_proportional_odds(cst, d.y).inference.status == ordinal::InferenceStatus::singular);
  // stopped early: not an optimum
  ordinal::BaselineOptions one;
  one.max_iter = 1;
  const auto f1 = ordinal::fit_proportional_odds(d.x, d.y, one);
  REQUIRE(!f1.converged);
  CHECK(f1.inference.status == ordinal::InferenceStatus::not_converged);
  CHECK(all_nan(f1.inference));
  // completely separated classes: no finite MLE, never finite standard errors
  Tensor<double> xs(Shape{60, 1});
  std::vector<int> ys;
  for (index_t i = 0; i < 60; ++i) {
    xs(i, 0) = double(i);
    ys.push_back(int(i / 20));
  }
  const auto fs = ordinal::fit_proportional_odds(xs, ys);
  MESSAGE("separated: converged ", fs.converged, ", min eigenvalue ", fs.inference.min_eigenvalue);
  CHECK(fs.inference.status != ordinal::InferenceStatus::ok);
  CHECK(all_nan(fs.inference));
  // the same data set is fine otherwise; fit_logistic computes no inference
  CHECK(ordinal::fit_proportional_odds(d.x, d.y).inference.status == ordinal::InferenceStatus::ok);
  CHECK(ordinal::fit_logistic(d.x, d.y).inference.status == ordinal::InferenceStatus::not_computed);
}

TEST_CASE("ordinal/inference: singular_tol outside [0, 1) is a ConfigError naming function, expected and got") {
  const auto d = ordinal_test::random_ordinal(60, 2, 3, 74);
  test::Snapshot<double> snap({d.x});
  const std::vector<int> y0 = d.y;
  for (double bad : {-1e-3, 1.0, std::numeric_limits<double>::quiet_NaN()}) {
    ordinal::BaselineOptions o;
    o.singular_tol = bad;
    try {
      ordinal::fit_proportional_odds(d.x, d.y, o);
      FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
      const std::string m = e.what();
      CHECK(m.find("ordinal::fit_proportional_odds") != std::string::npos);
      CHECK(m.find("expected singular_tol in [0, 1)") != std::string::npos);
      CHECK(m.find("got") != std::string::npos);
    }
  }
  CHECK(snap.unchanged());
  CHECK(d.y == y0);
}

}  // namespace weft_unit_ordinal_inference_test
