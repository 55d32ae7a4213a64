// tests/nn/nn_test_util.hpp - helpers for the nn tests: an error check that names the function,
// a finite-difference check of module parameters (perturbing Parameter::value() in place), and
// a fixed random contraction that turns any output into a scalar loss.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/grad_check.hpp"
#include "weft/core/autograd/parameter.hpp"
#include "weft/core/autograd/tape.hpp"

/// CHECK that `expr` throws `type` whose message starts with "weft::<func>: ".
#define WEFT_NN_CHECK_FAILS(expr, type, func) \
  CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

namespace weft::nn_test {

/// sum(R * y) for a fixed tensor R of y's shape: a scalar loss in which every output matters.
template <class T>
Var<T> contract(const Var<T>& y, const Tensor<T>& R) {
  REQUIRE(y.shape() == R.shape());
  return sum(y * y.tape().constant(R));
}

/// Compares the gradients that backward() accumulates into `params` with central differences
/// obtained by perturbing each element of Parameter::value() in place. loss(tape) records a
/// one-element loss on `tape` (it reads the parameters through Tape::param, usually by running
/// a module). Values are restored afterwards; gradients are left holding the analytic ones.
template <class LossFn>
GradCheckResult param_grad_check(const std::vector<Parameter<double>>& params, LossFn&& loss,
                                 double atol = 1e-7, double rtol = 1e-5, double h = 1e-6) {
  std::vector<Parameter<double>> ps = params;
  for (auto& p : ps) p.zero_grad();
  {
    Tape<double> tape;
    Var<double> l = loss(tape);
    tape.backward(l);
  }
  std::vector<Tensor<double>> analytic;
  for (auto& p : ps) analytic.push_back(p.grad().clone());
  auto eval = [&]() {
    Tape<double> tape;
    no_grad ng;
    return loss(tape).value().flat(0);
  };
  GradCheckResult r;
  double worst = -1;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    if (!ps[i].requires_grad()) continue;
    for (index_t j = 0; j < ps[i].numel(); ++j) {
      double& x = ps[i].value().flat(j);
      const double x0 = x;
      x = x0 + h;
      const double lp = eval();
      x = x0 - h;
      const double lm = eval();
      x = x0;
      const double num = (lp - lm) / (2 * h), an = analytic[i].flat(j);
      const double err = std::abs(an - num), scale = std::max(std::abs(an), std::abs(num));
      const double tol = atol + rtol * scale;
      r.max_abs_error = std::max(r.max_abs_error, err);
      r.max_rel_error = std::max(r.max_rel_error, err / std::max(scale, 1e-300));
      ++r.checked;
      if (!(err <= tol)) r.ok = false;
      const double excess = std::isnan(err) ? 1e300 : err - tol;
      if (excess > worst) {
        worst = excess;
        r.worst_input = i;
        r.worst_element = j;
        r.analytic = an;
        r.numeric = num;
      }
    }
  }
  std::ostringstream os;
  os << "param_grad_check (" << r.checked << " elements): " << (r.ok ? "ok" : "MISMATCH") << "; max abs error "
     << r.max_abs_error << "; worst at parameter " << r.worst_input << " ('" << ps[r.worst_input].name()
     << "') element " << r.worst_element << ": analytic " << r.analytic << " vs numeric " << r.numeric;
  r.message = os.str();
  return r;
}

/// Scalar ulp-style closeness: |a - b| <= ulps * eps(T) * max(1, |a|, |b|, scale).
template <class T>
bool close_ulps(T a, T b, double ulps, double scale = 0.0) {
  const double e = double(std::numeric_limits<T>::epsilon());
  const double m = std::max({1.0, std::abs(double(a)), std::abs(double(b)), scale});
  return std::abs(double(a) - double(b)) <= ulps * e * m;
}

}  // namespace weft::nn_test
