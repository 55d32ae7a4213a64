// Tests of weft/reparam/psi.hpp: the compander functions f (atan, erf, asinh), their
// derivatives, their inverses (erfinv especially) and the policy trait.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "weft/reparam/psi.hpp"

namespace weft_unit_reparam_psi_test {

using namespace weft;
using namespace weft::reparam;

namespace {

struct NotAPolicy {
  static constexpr const char* name = "none";
};

template <class Psi>
void check_derivative_by_differences() {
  // central differences of f in double agree with df (f is smooth)
  for (double u : {-6.0, -2.5, -1.0, -0.3, 0.0, 0.2, 0.9, 1.7, 4.0}) {
    const double h = 1e-6;
    const double num = (Psi::f(u + h) - Psi::f(u - h)) / (2 * h);
    CHECK_MESSAGE(std::abs(num - Psi::df(u)) <= 1e-9 * std::max(1.0, std::abs(num)), Psi::name, " at u = ", u);
  }
}

template <class Psi>
void check_inverse_round_trip(double max_abs_y) {
  for (int k = -40; k <= 40; ++k) {
    const double y = max_abs_y * k / 40.0;
    const double u = Psi::finv(y);
    CHECK_MESSAGE(std::isfinite(u), Psi::name, " finv(", y, ")");
    CHECK_MESSAGE(std::abs(Psi::f(u) - y) <= 2e-15 * std::max(1.0, std::abs(y)), Psi::name, " f(finv(", y, ")) = ",
                  Psi::f(u));
  }
}

}  // namespace

static_assert(is_psi_policy_v<AtanPsi> && is_psi_policy_v<ErfPsi> && is_psi_policy_v<AsinhPsi>,
              "the three shipped functions are policies");
static_assert(!is_psi_policy_v<NotAPolicy> && !is_psi_policy_v<int>, "a struct without f, df, finv is not");

TEST_CASE("reparam/psi: values, limits and derivatives of atan, erf and asinh") {
  CHECK(AtanPsi::limit == doctest::Approx(3.141592653589793 / 2).epsilon(1e-15));
  CHECK(ErfPsi::limit == 1.0);
  CHECK(std::isinf(AsinhPsi::limit));
  CHECK(AtanPsi::f(1.0) == doctest::Approx(0.7853981633974483).epsilon(1e-15));
  CHECK(AtanPsi::df(2.0) == doctest::Approx(0.2).epsilon(1e-15));
  CHECK(ErfPsi::df(0.0) == doctest::Approx(2 / std::sqrt(3.141592653589793)).epsilon(1e-15));
  CHECK(AsinhPsi::df(0.75) == doctest::Approx(0.8).epsilon(1e-15));
  // float instantiations use the float functions
  CHECK(AtanPsi::f(0.5f) == std::atan(0.5f));
  CHECK(ErfPsi::f(0.5f) == std::erf(0.5f));
  check_derivative_by_differences<AtanPsi>();
  check_derivative_by_differences<ErfPsi>();
  check_derivative_by_differences<AsinhPsi>();
  // odd functions, increasing, bounded by the limit
  for (double u : {0.1, 1.0, 10.0, 1e6}) {
    CHECK(AtanPsi::f(-u) == -AtanPsi::f(u));
    CHECK(std::abs(AtanPsi::f(u)) < AtanPsi::limit);
    CHECK(std::abs(ErfPsi::f(u)) <= ErfPsi::limit);
  }
}

TEST_CASE("reparam/psi: the inverses undo f (tan, erfinv, sinh)") {
  check_inverse_round_trip<AtanPsi>(1.5);
  check_inverse_round_trip<ErfPsi>(0.9999);
  check_inverse_round_trip<AsinhPsi>(5.0);
  // erfinv at known points and in the far tail, where erfc keeps the precision
  CHECK(ErfPsi::finv(0.5) == doctest::Approx(0.4769362762044699).epsilon(1e-15));
  CHECK(ErfPsi::finv(-0.9) == doctest::Approx(-1.1630871536766743).epsilon(1e-15));
  const double u = ErfPsi::finv(1 - 1e-12);
  CHECK(std::erfc(u) == doctest::Approx(1e-12).epsilon(1e-9));
  CHECK(ErfPsi::finv(0.0) == 0.0);
  CHECK(ErfPsi::finv(1.0) == std::numeric_limits<double>::infinity());
  CHECK(ErfPsi::finv(-1.0) == -std::numeric_limits<double>::infinity());
  CHECK(std::isnan(ErfPsi::finv(1.5)));
  CHECK(std::isnan(ErfPsi::finv(std::numeric_limits<double>::quiet_NaN())));
}

}  // namespace weft_unit_reparam_psi_test
